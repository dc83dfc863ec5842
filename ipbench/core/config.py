"""Config dataclasses: overriding fields by name (``--set k=v``) and hashing them for caches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ipbench.core.errors import IpbenchError
from ipbench.core.validation import check_fields

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

C = TypeVar("C", bound="DataclassInstance")


def parse_assignments(pairs: list[str] | None) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``, with a clear error for a malformed pair."""
    out: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise IpbenchError(f"--set expects KEY=VALUE, got {pair!r}")
        if key.strip() in out:
            raise IpbenchError(
                f"--set {key.strip()} is given twice ({key.strip()}={out[key.strip()]} and "
                f"{pair.strip()}); give each setting once"
            )
        out[key.strip()] = value.strip()
    return out


def _coerce(value: Any, typ: Any, key: str) -> Any:
    """Turn a CLI string into the field's declared type (int, float, bool, str, tuples, ...)."""
    if not isinstance(value, str):
        return value
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("none", "null") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except IpbenchError as exc:
                errors.append(str(exc))
        raise IpbenchError(f"cannot read {key}={value!r}: {'; '.join(errors)}")
    if origin is typing.Literal:
        if value not in args:
            raise IpbenchError(f"{key}={value!r} is not one of {', '.join(map(str, args))}")
        return value
    if origin in (tuple, list):
        item = args[0] if args else str
        parts = [p for p in value.replace(" ", "").split(",") if p]
        items = [_coerce(p, item, key) for p in parts]
        return tuple(items) if origin is tuple else items
    try:
        if typ is bool:
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if typ in (int, float, str):
            return typ(value)
    except ValueError:
        raise IpbenchError(f"{key}={value!r} is not a valid {typ.__name__}") from None
    return value


def field_names(cfg_type: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cfg_type)]


def override(cfg: C, values: Mapping[str, Any], what: str = "config") -> C:
    """Return a copy of dataclass ``cfg`` with fields replaced; unknown keys are an error, and
    every field of the result is checked against its declared range (``ipbench.core.validation``)."""
    hints = typing.get_type_hints(type(cfg))
    names = field_names(type(cfg))
    changes = {}
    for key, raw in values.items():
        if key not in names:
            raise IpbenchError(f"unknown {what} field {key!r}; valid fields: {', '.join(names)}")
        changes[key] = _coerce(raw, hints[key], key)
    out = dataclasses.replace(cfg, **changes)
    check_fields(out, what)
    return out


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples and paths -> plain JSON values, for hashing and the store."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def content_hash(*parts: Any, length: int = 16) -> str:
    """A stable hash of JSON-able parts: the cache key of a stage."""
    blob = json.dumps([to_jsonable(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]
