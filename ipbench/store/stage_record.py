"""What a run's stages record and show: metrics as JSON for a stage's marker, the line a
finished stage leaves on screen, and the records a run passes between its stages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ipbench.metrics.display import duration, value_text
from ipbench.metrics.spec import At, Metric, describe
from ipbench.ml.datasets import Splits
from ipbench.ml.models import ModelSpec


def flatten(metrics: Mapping[str | At, float]) -> tuple[dict[str, float], dict[str, list[Any]]]:
    """A stage's results as JSON for its cache marker: values by name, and each curve point's
    parts (metric, param, x, label) by name."""
    values = {str(k): v for k, v in metrics.items()}
    points = {str(k): [k.metric, k.param, k.x, k.label] for k in metrics if isinstance(k, At)}
    return values, points


def unflatten(values: dict[str, float], points: dict[str, list[Any]]) -> dict[str | At, float]:
    """``flatten`` undone: curve points come back as ``At`` keys."""
    return {(At(*points[n]) if n in points else n): v for n, v in values.items()}


def stage_line(name: str, info: dict[str, Any], cached: bool, declared: tuple[Metric, ...]) -> str:
    """The line a finished stage leaves on screen: name, headline numbers, wall time."""
    values = {k: v for k, v in info.get("metrics", {}).items() if "@" not in k}
    if name == "evaluate":
        shown = [n for n in ("A_ad", "A_ud", "A_pd") if n in values]
    else:
        ranked = sorted(
            (m.headline, n) for n in values if (m := describe(n, declared)).headline > 0
        )
        shown = [ranked[0][1]] if ranked else [n for n in ("A_or",) if n in values]
    head = "  ".join(f"{n} {value_text(n, values[n], describe(n, declared).spec())}" for n in shown)
    if info.get("status") == "skipped":
        head = f"skipped: {info.get('notes', {}).get('skipped', '')}"
    wall = info.get("wall_s")
    when = duration(wall) if wall is not None else "-"
    return f"[green]✓[/] [bold]{name}[/] {head}  [dim]{when}{' (cached)' if cached else ''}[/]"


@dataclass
class Task:
    """What every stage of a run is computed from: its data, network and shared keys."""

    splits: Splits
    spec: ModelSpec
    data_key: str
    base_key: str
    base_material: dict[str, Any]
    dataset_name: str
    dataset_fingerprint: str


@dataclass
class RunOutcome:
    run_id: str
    resumed: bool
    metrics: list[dict[str, Any]]
    stages: list[dict[str, Any]]
