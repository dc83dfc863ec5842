"""What a Ray worker does with one step: run it against a private store, send the rows back.

Artefacts go to the shared work directory's stage cache (``WORKDIR/artifacts``), written as
``KEY.partial`` and renamed when complete, so a worker killed mid-stage leaves nothing a later
attempt could mistake for finished, and its retry resumes from the last finished stage (and
from the last epoch checkpoint inside a training stage). Rows (run, stages, metrics) go to a
SQLite file private to the step, and come back to the driver as data: only the driver writes
the grid's store, so no two machines ever write one SQLite file (which network filesystems do
not lock reliably).

Importing this module does not import Ray: a step is an ordinary function of plain data.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import torch

from ipbench.engine.executors.outcome import describe_error
from ipbench.engine.executors.plan import StepKind
from ipbench.engine.request import RunRequest


def plain(markup: str) -> str:
    """A log line without rich's markup: worker output goes to plain log files."""
    from rich.text import Text

    return Text.from_markup(markup).plain


def run_step(
    kind: StepKind, request: RunRequest, step_id: str, reporter: Any, threads: int,
    known: list[dict[str, Any]], *deps: Any,
) -> dict[str, Any]:  # fmt: skip
    """Run one step; returns ``{"step", "run_id", "rows", "artifacts", "error", "input_error"}``.

    ``known``: the artefact digests the driver's store held when the grid started; with those
    its dependencies wrote (``artifacts`` of their results) the step verifies every stage it
    reads against the digest recorded when the stage was written, as a run in one process does.

    ``deps`` are the results of the steps this one waits for (Ray passes them resolved); if one
    of them failed, this step does not run. A failure inside the step comes back as ``error``
    with the rows recorded up to it (the finished stages), never as a lost result; only the
    death of the worker itself is left to Ray, which retries the step.
    """
    from ipbench.core.owner import key_environment, owner_key
    from ipbench.engine.runner import Runner
    from ipbench.store.results import Store

    if reporter is not None:
        reporter.start.remote(step_id, os.getpid())
    failed = [d for d in deps if d.get("error")]
    if failed:
        return {"step": step_id, "run_id": None, "rows": None, "artifacts": [],
                "error": f"not run: step {failed[0]['step']} failed",
                "input_error": failed[0].get("input_error", False)}  # fmt: skip
    torch.set_num_threads(max(1, threads))
    # The private store holds the grid's owner key: the stage markers and rows it signs are
    # then the grid store's own, and a later command on that store verifies them.
    try:
        shared_key = owner_key(request.workdir).hex()
    except Exception as exc:  # a missing or replaced key: the step's error, as any other
        why, bad = describe_error(exc)
        return {"step": step_id, "run_id": None, "rows": None, "artifacts": [],
                "error": why, "input_error": bad}  # fmt: skip
    with (
        key_environment(shared_key),
        tempfile.TemporaryDirectory(prefix="ipbench-step-") as private,
    ):
        store = Store(private)
        store.import_artifacts([*known, *(row for d in deps for row in d.get("artifacts", []))])
        error, bad_input, runner = None, False, None
        try:
            runner = Runner(
                request, log=lambda msg: print(f"[{step_id}] {plain(msg)}"), store=store
            )
            if kind == "prepare":
                runner.prepare_shared()
            else:
                runner.run(until="baseline" if kind == "baseline" else None)
        except Exception as exc:
            error, bad_input = describe_error(exc)
        run_id = getattr(runner, "run_id", None)
        rows = store.export_run(run_id) if run_id is not None else None
        artifacts = store.export_artifacts()
        store.close()
    return {
        "step": step_id,
        "run_id": run_id,
        "rows": rows,
        "artifacts": artifacts,
        "error": error,
        "input_error": bad_input,
    }
