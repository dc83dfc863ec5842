"""Valid values of config fields, declared beside each field and checked before any work.

A field states its range with ``typing.Annotated`` and the constraint types of the
``annotated-types`` package (the vocabulary pydantic and others share), e.g.::

    epochs: Annotated[int, Ge(1)] = 120
    gamma: Annotated[float, Interval(gt=0, lt=1)] = 0.5
    milestones: tuple[Annotated[float, Interval(gt=0, lt=1)], ...] = (0.5, 0.75)

A plugin's plain dataclass keeps working: a field without a declaration is still checked
against its type (an int is an int, a float is a finite number, a ``Literal`` is one of its
values). ``check_fields`` runs whenever a config is built from defaults and ``--set`` values
(``ipbench.core.config.override``), so a bad value fails when the request is resolved, before
anything is recorded, loaded or trained. Pydantic would do the same checks but would make
every plugin author's config a pydantic model; reading ``Annotated`` metadata ourselves keeps
configs plain dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import annotated_types as at

from ipbench.core.errors import IpbenchError

__all__ = ["Check", "InvalidSettingError", "check_fields", "describe_constraint"]


class InvalidSettingError(IpbenchError):
    """A config field holds a value outside its declared range or type."""


@dataclass(frozen=True)
class Check:
    """A constraint no ``annotated-types`` class states: ``ok(value)`` must hold; ``text``
    says what is valid (it follows "valid: " in the error)."""

    ok: Callable[[Any], bool]
    text: str


def describe_constraint(c: Any) -> str:
    """One constraint in words, as an error names it."""
    if isinstance(c, at.Interval):
        parts = []
        for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            bound = getattr(c, attr)
            if bound is not None:
                parts.append(f"{op} {bound}")
        return " and ".join(parts)
    for cls, op in ((at.Gt, ">"), (at.Ge, ">="), (at.Lt, "<"), (at.Le, "<=")):
        if isinstance(c, cls):
            return f"{op} {next(iter(dataclasses.asdict(c).values()))}"
    if isinstance(c, at.MinLen):
        return f"at least {c.min_length} item(s)"
    if isinstance(c, at.MaxLen):
        return f"at most {c.max_length} item(s)"
    if isinstance(c, Check):
        return c.text
    return str(c)


def _holds(c: Any, value: Any) -> bool:
    if isinstance(c, at.Interval):
        return all(_holds(part, value) for part in c)
    checks: dict[type, Callable[[Any, Any], bool]] = {
        at.Gt: lambda c, v: v > c.gt,
        at.Ge: lambda c, v: v >= c.ge,
        at.Lt: lambda c, v: v < c.lt,
        at.Le: lambda c, v: v <= c.le,
        at.MinLen: lambda c, v: len(v) >= c.min_length,
        at.MaxLen: lambda c, v: len(v) <= c.max_length,
        Check: lambda c, v: bool(c.ok(v)),
    }
    for cls, fn in checks.items():
        if isinstance(c, cls):
            return fn(c, value)
    return True  # a constraint this checker does not know (e.g. Doc) restricts nothing


def _split(hint: Any) -> tuple[Any, list[Any]]:
    """``Annotated[T, c1, c2]`` -> ``(T, [c1, c2])``; anything else -> ``(hint, [])``."""
    if typing.get_origin(hint) is typing.Annotated:
        base, *meta = typing.get_args(hint)
        return base, list(meta)
    return hint, []


def _type_error(value: Any, base: Any) -> str | None:
    """Why ``value`` does not fit type ``base`` (None: it fits)."""
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        reasons = [_value_error(value, a) for a in args if a is not type(None)]
        return None if any(r is None for r in reasons) else " or ".join(r or "" for r in reasons)
    if origin is typing.Literal:
        return None if value in args else "one of " + ", ".join(map(str, args))
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return "a comma-separated list"
        items = args[:1] if len(args) == 2 and args[1] is Ellipsis else args
        if len(args) > 1 and args[1] is not Ellipsis and len(value) != len(args):
            return f"{len(args)} comma-separated values"
        for i, v in enumerate(value):
            problem = _value_error(v, items[i if len(items) > 1 else 0] if items else Any)
            if problem:
                return f"items that are {problem}"
        return None
    if base is bool:
        return None if isinstance(value, bool) else "true or false"
    if base is int:  # every int ends up in a 64-bit one (torch, numpy, SQLite)
        if not isinstance(value, int) or isinstance(value, bool):
            return "an integer"
        return None if -(2**63) <= value < 2**63 else "an integer of 64 bits (below 2**63)"
    if base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok and math.isfinite(value) else "a finite number"
    if base is str:
        return None if isinstance(value, str) else "a string"
    return None


def _value_error(value: Any, hint: Any) -> str | None:
    base, constraints = _split(hint)
    if (problem := _type_error(value, base)) is not None:
        return problem + "".join(f", {describe_constraint(c)}" for c in constraints)
    if value is None:
        return None
    failed = [c for c in constraints if not _holds(c, value)]
    if failed:
        kind = _type_error(None, base) or ""
        words = " and ".join(describe_constraint(c) for c in constraints)
        return f"{kind} {words}".strip() if kind.startswith("a") else words
    return None


def check_fields(cfg: Any, what: str) -> None:
    """Every field of dataclass ``cfg`` against its declared type and constraints; the first
    bad one is an error naming the field, its value and what is valid."""
    hints = typing.get_type_hints(type(cfg), include_extras=True)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        problem = _value_error(value, hints.get(f.name, Any))
        if problem is not None:
            raise InvalidSettingError(
                f"{what} setting {f.name}={value!r} is invalid; valid: {problem}"
            )
