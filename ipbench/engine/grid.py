"""Many runs from one command: a grid of schemes x datasets x presets x models x seeds.

Two steps, kept apart on purpose:

- ``expand(grid, ...)`` turns the grid into a list of ``RunRequest``, every name and setting
  checked before the first run trains (a typo in the tenth scheme fails at once, not after nine
  trained);
- ``ipbench.engine.executors.execute(requests, executor=...)`` runs them: the one road every
  command (``run``, ``attack``, ``sweep``) and ``ipbench.run()`` takes, with one outcome type
  (``Outcome``) and one error policy (a run's error is recorded on that run and the others go
  on). Each request is a self-contained, picklable dataclass, and every run is cached and
  resumable in the store under ``request.workdir``, so an executor may run them anywhere that
  shares that work directory, in any order, and rerun a failed one.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.engine.request import (
    PRESET_FIELDS,
    RunRequest,
    is_attack_key,
    resolve,
    scheme_settings,
)
from ipbench.engine.sweep import parse_seeds
from ipbench.ml.presets import TrainConfig
from ipbench.plugin.evaluate import EvalConfig


@dataclass(frozen=True)
class Grid:
    """What to run: every combination of the lists, with the same attacks and overrides.

    ``None`` in ``datasets``, ``presets`` or ``models`` means the preset's default.
    """

    schemes: tuple[str, ...]
    datasets: tuple[str | None, ...] = (None,)
    presets: tuple[str | None, ...] = (None,)
    models: tuple[str | None, ...] = (None,)
    seeds: tuple[int, ...] = (0,)
    attacks: str = "all"
    overrides: dict[str, str] = field(default_factory=dict)

    def size(self) -> int:
        return (
            len(self.schemes) * len(self.datasets) * len(self.presets) * len(self.models)
            * len(self.seeds)
        )  # fmt: skip


def split_names(text: str | None, option: str = "--dataset") -> tuple[str | None, ...]:
    """``"a, b"`` -> ``("a", "b")``; not given -> ``(None,)`` (the preset's default). Given but
    empty, or with an empty entry (``''``, ``a,,b``), is a typo, refused with the option named."""
    if text is None:
        return (None,)
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise IpbenchError(
            f"{option} {text!r} names an empty {option.lstrip('-')}; give comma-separated names, "
            f"or leave {option} out for the preset's default"
        )
    return names


def scheme_names(text: str) -> tuple[str, ...]:
    """``all`` or comma-separated scheme names (each checked, the unknown ones named)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise IpbenchError(f"--scheme names no scheme; valid: all, {', '.join(schemes.names())}")
    if "all" in names:
        return tuple(schemes.names())
    for name in names:
        schemes.get(name)  # an unknown name lists the valid ones
    return tuple(dict.fromkeys(names))


def grid_from_options(
    scheme: str, dataset: str | None = None, preset: str | None = None,
    model: str | None = None, seeds: str = "0", attacks: str = "all",
    overrides: dict[str, str] | None = None,
) -> Grid:  # fmt: skip
    """The grid the ``run`` command's options describe (comma-separated lists)."""
    return Grid(
        schemes=scheme_names(scheme), datasets=split_names(dataset, "--dataset"),
        presets=split_names(preset, "--preset"), models=split_names(model, "--model"), seeds=tuple(parse_seeds(seeds)), attacks=attacks,
        overrides=dict(overrides or {}),
    )  # fmt: skip


def expand(
    grid: Grid, workdir: str, data_root: str | None = None, device: str | None = None,
    download: bool = True,
) -> list[RunRequest]:  # fmt: skip
    """One checked ``RunRequest`` per combination, in the order dataset, preset, model, scheme,
    seed (so one scheme's seeds run back to back)."""
    check_shared_settings(grid.overrides, grid.schemes)
    settings = {s: scheme_settings(grid.overrides, s, grid.schemes) for s in grid.schemes}
    requests = []
    combos = itertools.product(grid.datasets, grid.presets, grid.models, grid.schemes, grid.seeds)
    for dataset, preset, model, scheme, seed in combos:
        req = RunRequest(
            scheme=scheme, dataset=dataset, model=model, preset=preset, seed=seed,
            overrides=dict(settings[scheme]), data_root=data_root, workdir=workdir,
            device=device, attacks=grid.attacks, download=download,
        )  # fmt: skip
        resolve(req)  # every name, field and value checked now, not after hours of training
        requests.append(req)
    return requests


def check_shared_settings(overrides: dict[str, str], names: tuple[str, ...]) -> None:
    """A scheme field given to every scheme of a grid (``--set strength=0.5``) that some of
    them lack is an error naming those and the per-scheme form, before anything runs."""
    common = {f.name for t in (TrainConfig, EvalConfig) for f in dataclasses.fields(t)}
    common |= set(PRESET_FIELDS)
    for key, value in overrides.items():
        field_name = key.removeprefix("scheme.")
        if is_attack_key(key) or "." in field_name or (field_name in common and field_name == key):
            continue  # an attack's, another layer's or one scheme's setting
        have = [n for n in names if field_name in _fields(n)]
        lack = [n for n in names if n not in have]
        if have and lack:
            who = f"scheme {lack[0]} has" if len(lack) == 1 else f"schemes {', '.join(lack)} have"
            raise IpbenchError(
                f"--set {key}={value}: {who} no setting {field_name!r} "
                f"(it is a setting of {', '.join(have)}); set it for those alone with "
                + " ".join(f"--set {n}.{field_name}={value}" for n in have)
            )


def _fields(scheme: str) -> set[str]:
    return {f.name for f in dataclasses.fields(schemes.get(scheme).Config)}
