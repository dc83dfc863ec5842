"""A run's headline numbers as the store holds them: one per attack stage, labelled by the
stage (so an attack run with other settings, ``attack:finetune(epochs=1)``, is its own
``finetune(epochs=1) A_ud`` column and never hides under ``finetune``), and whether the
protection took.

Both the comparison table (``ipbench.report.compare``) and the grid summaries of ``attack`` and
``sweep`` (``ipbench.engine.executors.outcome``) read them here, so they agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks, schemes
from ipbench.engine.request import attack_of_stage
from ipbench.metrics.health import FLAGGED_METRICS, flag_text
from ipbench.metrics.spec import Metric, describe, headline_row

ATTACK = "attack:"


@dataclass(frozen=True)
class Headline:
    """An attack stage's headline: its column, what the number means, the number (None where
    there is none) and the stage's status (``skipped``, ``failed``: why there is none)."""

    stage: str
    column: str
    meaning: Metric
    value: float | None
    status: str


def attack_column(stage: str, metric: str) -> str:
    """The column of an attack stage's metric: ``attack:finetune(epochs=1)``'s ``A_ud`` is
    ``finetune(epochs=1) A_ud``."""
    return f"{stage.removeprefix(ATTACK)} {metric}"


def is_attack_column(column: str) -> bool:
    """Attack columns are ``LABEL METRIC``; the other columns are single words."""
    return " " in column and not column.endswith("_std")


def column_order(column: str) -> tuple[str, bool, str, str]:
    """Attack columns by attack, its default settings before its variants."""
    label, _, metric = column.rpartition(" ")
    base = label.split("(", 1)[0]
    return base, label != base, label, metric


def ordered(columns: Iterable[str]) -> list[str]:
    """The attack columns among ``columns``, in table order."""
    return sorted(dict.fromkeys(c for c in columns if is_attack_column(c)), key=column_order)


def _declared(stage: str) -> tuple[Metric, ...]:
    """The metrics the stage's attack declares today (none for an attack not installed)."""
    name = attack_of_stage(stage).removeprefix(ATTACK)
    return attacks.get(name).metrics if name in attacks else ()


def _headline_names(stage: str) -> tuple[str, ...]:
    name = attack_of_stage(stage).removeprefix(ATTACK)
    return attacks.get(name).headline_names() if name in attacks else ()


def attack_headlines(
    metrics: Iterable[Mapping[str, Any]], stages: Iterable[Mapping[str, Any]]
) -> list[Headline]:
    """One ``Headline`` per attack stage of a run (``Store.metrics`` and ``Store.stages``
    rows): the metric its stored meaning ranks first, else the first of the attack's declared
    ``headline_names()``; a stage without a value (skipped, failed) still has its column,
    named by the attack's declared headline."""
    by_stage: dict[str, list[Mapping[str, Any]]] = {}
    for m in metrics:
        by_stage.setdefault(m["stage"], []).append(m)
    status = {s["name"]: s["status"] for s in stages}
    out = []
    for stage in dict.fromkeys([*status, *by_stage]):
        if not stage.startswith(ATTACK):
            continue
        declared, names = _declared(stage), _headline_names(stage)
        head = headline_row(by_stage.get(stage, []), names)
        if head is not None:
            spec = head.get("spec")
            name = str(head["name"])
            meaning = Metric.from_spec(name, spec) if spec else describe(name, declared)
            value = float(head["value"])
            out.append(Headline(stage, attack_column(stage, name), meaning, value, "done"))
        elif names:
            why = status.get(stage, "done")
            why = "no value" if why == "done" else why
            meaning = describe(names[0], declared)
            out.append(Headline(stage, attack_column(stage, names[0]), meaning, None, why))
    return out


def protects(scheme: str) -> bool:
    """Whether the registered scheme declares that it protects (``Scheme.protects``); the
    unprotected control does not, so it is never flagged and sorts last. A scheme this install
    does not have (a row from another store) counts as protecting."""
    try:
        return bool(schemes.get(scheme).protects)
    except IpbenchError:
        return True


def run_flag(scheme: str, evaluate: Mapping[str, float | None]) -> str:
    """The flag of a run (or of the means over seeds): empty for the unprotected control."""
    if not protects(scheme):
        return ""
    return flag_text({k: evaluate.get(k) for k in FLAGGED_METRICS})
