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

from pathlib import Path
from typing import Any

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


def load_grid(path: str | Path) -> Grid:
    """The grid an experiment file describes (names of schemes and attacks checked here;
    datasets, presets, models and overrides by ``grid.expand``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise IpbenchError(f"experiment file {path} not found") from None
    except yaml.YAMLError as exc:
        raise IpbenchError(f"{path}: not valid YAML ({exc})") from None
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
