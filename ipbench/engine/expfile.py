"""``ipbench run --config exp.yaml``: an experiment file, for grids that do not fit on a line.

```yaml
schemes: [mlock, adip]        # or: all
datasets: [synthetic]         # default: the preset's dataset
presets: [smoke]              # default: paper with CUDA, else quick
models: [tiny]                # default: the preset's network for the dataset
seeds: [0, 1, 2]
attacks: [finetune, prune]    # or: all | none (default all)
overrides:                    # as --set: scheme, train, data, eval or attack.NAME.FIELD
  epochs: 6
  attack.finetune.epochs: 3
```

Every key and value is checked before anything runs; each mistake is one error that names
the key, the bad value and the valid choices.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import yaml

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks as attack_registry
from ipbench.engine.grid import Grid, scheme_names

KEYS = ("schemes", "datasets", "presets", "models", "seeds", "attacks", "overrides")


def _names(path: Path, key: str, value: Any) -> tuple[str, ...]:
    """A name or a list of names (strings), never empty."""
    items = value if isinstance(value, list) else [value]
    bad = [v for v in items if not isinstance(v, str) or not v.strip()]
    if bad or not items:
        raise IpbenchError(f"{path}: {key} must be a name or a list of names; got {value!r}")
    return tuple(v.strip() for v in items)


def _seeds(path: Path, value: Any) -> tuple[int, ...]:
    items = value if isinstance(value, list) else [value]
    if not items or any(isinstance(v, bool) or not isinstance(v, int) for v in items):
        raise IpbenchError(f"{path}: seeds must be an integer or a list of integers; got {value!r}")
    return tuple(dict.fromkeys(items))


def _attacks(path: Path, value: Any) -> str:
    if value in ("all", "none"):
        return str(value)
    names = _names(path, "attacks", value)
    valid = attack_registry.names()
    for name in names:
        if name not in valid:
            raise IpbenchError(
                f"{path}: attacks: unknown attack {name!r}; valid: all, none, {', '.join(valid)}"
            )
    return ",".join(names)


def _overrides(path: Path, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise IpbenchError(f"{path}: overrides must be a mapping FIELD: VALUE; got {value!r}")
    out = {}
    for key, v in value.items():
        if not isinstance(key, str) or isinstance(v, dict | list) or v is None:
            raise IpbenchError(
                f"{path}: overrides: {key!r}: {v!r} must be one setting and one value "
                "(a number, a word or true/false); to vary a setting use `ipbench sweep`"
            )
        out[key] = str(v).lower() if isinstance(v, bool) else str(v)
    return out


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading YAML 1.2 (core schema), which PyYAML itself does not: with
    YAML 1.1, ``epochs: 1:30`` is the sexagesimal 90, ``on``/``no`` are booleans and ``017`` is
    octal, each a silent surprise. Here those are text (or decimal 17), and a key given twice
    in one mapping is an error instead of the last one winning."""

    yaml_implicit_resolvers: ClassVar[dict[Any, list[Any]]] = {
        first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(self.construct_scalar(node))
        base = {"0o": 8, "0x": 16}.get(text[:2], 10)
        return int(text[2:] if base != 10 else text, base)


for _tag, _rx, _first in (  # YAML 1.2 core schema; int before float, which also matches 17
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
):
    Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_rx), list(_first))
Yaml12Loader.add_constructor("tag:yaml.org,2002:int", Yaml12Loader.construct_yaml_int)


def read_yaml(text: str, path: str | Path) -> Any:
    """``text`` as YAML 1.2 (``Yaml12Loader``); a mistake is one line naming ``path`` and the
    line it is on."""
    try:
        return yaml.load(text, Loader=Yaml12Loader)  # a SafeLoader: no objects built
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        what = " ".join(filter(None, (exc.context, exc.problem)))
        raise IpbenchError(f"{path}: not valid YAML ({where}{what})") from None
    except yaml.YAMLError as exc:
        raise IpbenchError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None


def read_text_file(path: Path, what: str) -> str:
    """A UTF-8 text file; a missing file, a folder, an unreadable or binary (or UTF-16) file
    is one clear error instead of a traceback."""
    if path.is_dir():
        raise IpbenchError(f"{what} {path} is a folder, not a file")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise IpbenchError(f"{what} {path} not found") from None
    except OSError as exc:
        raise IpbenchError(f"{what} {path} cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise IpbenchError(
            f"{what} {path} is not UTF-8 text (byte {exc.start} is not; a binary or UTF-16 "
            "file?); save it as UTF-8"
        ) from None


def load_grid(path: str | Path) -> Grid:
    """The grid an experiment file describes (names of schemes and attacks checked here;
    datasets, presets, models and overrides by ``grid.expand``)."""
    path = Path(path)
    data = read_yaml(read_text_file(path, "experiment file"), path)
    if not isinstance(data, dict):
        raise IpbenchError(f"{path}: expected a mapping with keys {', '.join(KEYS)}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise IpbenchError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(KEYS)}")
    if "schemes" not in data:
        raise IpbenchError(f"{path}: 'schemes' is required (a list of names, or all)")
    schemes = _names(path, "schemes", data["schemes"])
    try:
        chosen = scheme_names(",".join(schemes))
    except IpbenchError as exc:
        raise IpbenchError(f"{path}: schemes: {exc}") from None

    def optional(key: str) -> tuple[str | None, ...]:
        return _names(path, key, data[key]) if data.get(key) is not None else (None,)

    return Grid(
        schemes=chosen,
        datasets=optional("datasets"),
        presets=optional("presets"),
        models=optional("models"),
        seeds=_seeds(path, data["seeds"]) if "seeds" in data else (0,),
        attacks=_attacks(path, data["attacks"]) if "attacks" in data else "all",
        overrides=_overrides(path, data.get("overrides") or {}),
    )
