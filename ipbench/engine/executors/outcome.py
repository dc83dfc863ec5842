"""What a grid reports per run, read back from the store, and the table printed at its end.

Both executors build their outcomes here from the same store rows, so a grid's summary reads
the same whichever executor ran it.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

from rich import box
from rich.table import Table

from ipbench.core.errors import IpbenchError
from ipbench.engine.headline import attack_headlines, ordered, run_flag
from ipbench.engine.request import RunRequest
from ipbench.metrics.display import json_row
from ipbench.store.results import Store

# The headline numbers of a run (the unprotected model's accuracy, the protected model's for
# authorized and unauthorized users, the difference); then each attack's headline and the
# flag; the rest is in `ipbench show RUN`.
HEADLINE = (("baseline", "A_or"), ("evaluate", "A_ad"), ("evaluate", "A_ud"), ("evaluate", "A_pd"))


@dataclass
class Outcome:
    request: RunRequest
    run_id: str | None  # None: the run failed before it was recorded
    status: str  # done | failed
    error: str | None = None
    input_error: bool = False  # the run failed on bad input (an IpbenchError), not a crash
    computed: list[str] = field(default_factory=list)  # stages computed for this run
    cached: list[str] = field(default_factory=list)  # stages reused from the cache
    stage_s: float = 0.0  # time spent in the computed stages
    headline: dict[str, float | None] = field(default_factory=dict)
    # per attack stage (``finetune(epochs=1) A_ud``): its headline; why there is none
    attacks: dict[str, float | None] = field(default_factory=dict)
    unscored: dict[str, str] = field(default_factory=dict)
    flag: str = ""  # the protection or the tracing did not take (``ipbench.metrics.health``)


def describe_error(exc: Exception) -> tuple[str, bool]:
    """A failed run's reason, and whether it is bad input (an IpbenchError says it all in its
    message) rather than a crash (whose type is part of the reason; the traceback is logged)."""
    if isinstance(exc, IpbenchError):
        return str(exc), True
    traceback.print_exc()
    return f"{type(exc).__name__}: {exc}", False


def read_outcome(
    store: Store, request: RunRequest, run_id: str | None, error: str | None,
    input_error: bool = False,
) -> Outcome:  # fmt: skip
    """The outcome of ``request`` as the store records it (``error``: why it failed)."""
    if run_id is None:
        reason = error or "failed before it was recorded"
        return Outcome(request, None, "failed", reason, input_error)
    stages, metrics = store.stages(run_id), store.metrics(run_id)
    values = {(m["stage"], m["name"]): m["value"] for m in metrics}
    computed = [s["name"] for s in stages if s["status"] == "done" and not s["cached"]]
    heads = attack_headlines(metrics, stages)
    evaluate = {name: value for (stage, name), value in values.items() if stage == "evaluate"}
    return Outcome(
        request, run_id, "failed" if error else "done", error, input_error, computed,
        [s["name"] for s in stages if s["status"] == "done" and s["cached"]],
        sum(s["wall_s"] or 0.0 for s in stages if s["name"] in computed),
        {name: values.get((stage, name)) for stage, name in HEADLINE},
        {h.column: h.value for h in heads}, {h.column: h.status for h in heads if h.value is None},
        run_flag(request.scheme, evaluate),
    )  # fmt: skip


def failures(outcomes: list[Outcome]) -> list[dict[str, str]]:
    """The failed runs of a grid, as ``Results.failed`` and ``--json`` list them."""
    return [
        {"scheme": o.request.scheme, "seed": str(o.request.seed), "error": o.error or ""}
        for o in outcomes
        if o.status != "done"
    ]


def outcome_record(o: Outcome) -> dict[str, object]:
    """A run of a grid as ``--json`` prints it: what was asked, how it went, its numbers."""
    return json_row(
        {"run_id": o.run_id, "scheme": o.request.scheme, "seed": o.request.seed,
         "settings": dict(o.request.overrides), "status": o.status, "error": o.error}
        | o.headline | o.attacks | {"unscored": o.unscored, "flag": o.flag}
        | {"computed": o.computed, "cached": o.cached}
    )  # fmt: skip


def _described(req: RunRequest) -> dict[str, str]:
    named = {"scheme": req.scheme, "dataset": req.dataset, "model": req.model, "preset": req.preset}
    return {k: str(v) for k, v in named.items() if v is not None} | dict(req.overrides)


def summary_table(outcomes: list[Outcome], title: str) -> Table:
    """One row per run: what varies across the grid (what is the same for every run is in
    the title), its status, how many stages it computed and reused, and its headline numbers.
    Why a run failed is not here: the commands print it under the table."""
    described = [_described(o.request) for o in outcomes]
    keys = list(dict.fromkeys(k for d in described for k in d))
    varying = [k for k in keys if len({d.get(k) for d in described}) > 1]
    fixed = (
        ", ".join(f"{k}={described[0][k]}" for k in keys if k not in varying) if outcomes else ""
    )
    table = Table(
        title=f"{title}: {fixed}" if fixed else title, title_justify="left",
        box=box.SIMPLE_HEAD, pad_edge=False,
    )  # fmt: skip
    table.add_column("run", no_wrap=True, min_width=12)
    table.add_column("seed", justify="right")
    table.add_column("settings", overflow="fold", min_width=8)
    table.add_column("status", no_wrap=True)  # why a run failed: a line under the table
    # stages computed for the run / reused from the cache (which ones: `ipbench show RUN`)
    table.add_column("new/reused", justify="right", no_wrap=True)
    attacks = ordered(c for o in outcomes for c in o.attacks)
    for name in [*(n for _, n in HEADLINE), *attacks]:
        table.add_column(name, justify="right", min_width=5)
    table.add_column("flag")
    for o, d in zip(outcomes, described, strict=True):
        settings = " ".join(f"{k}={d[k]}" for k in varying if k in d) or "-"
        status = "done" if o.status == "done" else f"[red]{o.status}[/]"
        nums = [o.headline.get(n) for _, n in HEADLINE] + [o.attacks.get(c) for c in attacks]
        why = [None] * len(HEADLINE) + [o.unscored.get(c) for c in attacks]
        cells = [f"{v:.2f}" if v is not None else w or "-" for v, w in zip(nums, why, strict=True)]
        table.add_row(
            o.run_id or "-", str(o.request.seed), settings, status,
            f"{len(o.computed)}/{len(o.cached)}", *cells,
            f"[bold yellow]{o.flag}[/]" if o.flag else "",
        )  # fmt: skip
    return table
