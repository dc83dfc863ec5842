"""The Ray executor (``--executor ray``): each step of the grid's plan is a Ray task.

Ray schedules: every task asks for what it needs (one GPU where the cluster has GPUs and the
run may use CUDA, else ``cpus_per_task`` CPUs) and Ray packs the tasks onto the nodes. The
plan's dependencies are object references, so a run's task starts only once the shared
baseline (and token generator) it needs is in the cache: two tasks never train one stage.

A task whose worker dies is re-run by Ray (``max_retries``) and resumes from the stages its
first attempt finished, which are in the shared cache. Rows come back to this process (the
driver), which alone writes the store as each task finishes; a driver that dies loses no
finished stage, and the same command started again recomputes nothing that finished.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ipbench.core.errors import IpbenchError
from ipbench.core.progress import console
from ipbench.engine.executors.outcome import Outcome, read_outcome
from ipbench.engine.executors.plan import Step, plan
from ipbench.engine.executors.progress import GridProgress, ProgressCallback
from ipbench.engine.executors.worker import run_step
from ipbench.engine.request import RunRequest
from ipbench.ml.presets import default_preset_name
from ipbench.store.results import Store

POLL_S = 0.25  # how often the driver asks which steps have started


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise IpbenchError(
            '--executor ray needs Ray, an optional extra: pip install "ipbench[ray]"'
        ) from None
    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (None: start a local one); True if this call did, so
    the caller shuts it down again. Worker output goes to Ray's log files, not this console."""
    ray = _ray()
    if ray.is_initialized():
        return False
    # A cluster started here is this grid's alone: no dashboard to serve.
    options = {"include_dashboard": False} if address is None else {}
    try:
        ray.init(address=address, log_to_driver=False, **options)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise IpbenchError(f"cannot join the Ray cluster at {address!r}: {exc}") from None
    return True


def start_log(ray: Any) -> Any:
    """An actor that records which steps started, in which worker processes (one entry per
    attempt): the driver's view of what is running, since Ray tells a caller only when a task
    has finished. Its class is defined here, inside a function, so that Ray ships it by value
    and its process starts in a second without importing ipbench (and torch)."""

    class StartLog:
        def __init__(self) -> None:
            self.started: dict[str, list[int]] = {}

        def start(self, step_id: str, pid: int) -> None:
            self.started.setdefault(step_id, []).append(pid)

        def snapshot(self) -> dict[str, list[int]]:
            return self.started

    return ray.remote(num_cpus=0)(StartLog).remote()


def placed(req: RunRequest, cluster_gpus: float) -> RunRequest:
    """The request as a worker runs it; its task asks for a GPU where its device is ``cuda``.

    The driver may have no GPU while the workers do: ``auto`` takes one where the cluster has
    any, and the preset it would default to on CUDA is fixed here, so that the driver and the
    worker agree on the run. Inside a task Ray makes its GPU ``cuda`` (CUDA_VISIBLE_DEVICES).
    """
    device = (req.device or "auto").lower()
    req = dataclasses.replace(req, workdir=str(Path(req.workdir).resolve()))
    if req.data_root:
        req = dataclasses.replace(req, data_root=str(Path(req.data_root).expanduser().resolve()))
    if device == "cpu":
        return req
    if device.startswith("cuda") and cluster_gpus < 1:
        raise IpbenchError(
            f"--device {req.device}: the Ray cluster has no GPU; use --device cpu or auto"
        )
    if cluster_gpus < 1:
        return dataclasses.replace(req, device="cpu")
    return dataclasses.replace(req, device="cuda", preset=req.preset or default_preset_name("cuda"))


def execute_ray(
    requests: Sequence[RunRequest], store: Store, address: str | None,
    on_progress: ProgressCallback | None = None, max_retries: int = 3, cpus_per_task: int = 1,
) -> list[Outcome]:  # fmt: skip
    ray = _ray()
    started_here = connect(address)
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        placements = [placed(r, gpus) for r in requests]
        steps = plan(placements)
        return _drive(ray, steps, placements, store, on_progress, max_retries, cpus_per_task)
    finally:
        if started_here:
            ray.shutdown()


def _drive(
    ray: Any, steps: list[Step], placements: list[RunRequest], store: Store,
    on_progress: ProgressCallback | None, max_retries: int, cpus_per_task: int,
) -> list[Outcome]:  # fmt: skip
    reporter = start_log(ray)
    task = ray.remote(run_step)
    known = ray.put(store.export_artifacts())  # digests of stages earlier grids wrote
    refs: dict[str, Any] = {}
    for step in steps:
        gpu = step.request.device == "cuda"  # placed(): the run may use one and the cluster has
        refs[step.id] = task.options(
            num_cpus=cpus_per_task, num_gpus=1 if gpu else 0, max_retries=max_retries,
            name=step.id,
        ).remote(step.kind, step.request, step.id, reporter, cpus_per_task, known,
                 *(refs[d] for d in step.deps))  # fmt: skip
    console.print(
        f"[bold]grid[/] {len(placements)} runs as {len(steps)} Ray tasks on "
        f"{ray.cluster_resources().get('CPU', 0):.0f} CPUs, "
        f"{ray.cluster_resources().get('GPU', 0):.0f} GPUs",
        highlight=False,
    )
    progress = GridProgress(steps, len(placements), on_progress)
    record = GridRecord(store, steps, progress)
    by_ref = {refs[step.id]: step for step in steps}
    pending = list(refs.values())
    last_poll = 0.0
    while pending:
        ready, pending = ray.wait(pending, num_returns=1, timeout=POLL_S)
        if time.monotonic() - last_poll >= POLL_S or not ready:
            progress.update(ray.get(reporter.snapshot.remote()))
            last_poll = time.monotonic()
        for ref in ready:
            step = by_ref[ref]
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died more often than retried
                result = {"step": step.id, "run_id": None, "rows": None, "error": str(exc),
                          "input_error": False}  # fmt: skip
            record.take(step, result)
    return record.outcomes(placements)


class GridRecord:
    """The driver's side of the store: each finished step's rows go in as they arrive, and a
    run's status once its last step is in."""

    def __init__(self, store: Store, steps: list[Step], progress: GridProgress) -> None:
        self.store, self.steps, self.progress = store, steps, progress
        self.run_ids: dict[int, str] = {}
        self.errors: dict[int, tuple[str, bool]] = {}  # run -> (why it failed, bad input)
        # per run with rows from this grid, the stages its parts computed (later parts continue
        # the same attempt; see Store.import_run)
        self.computed: dict[str, set[str]] = {}
        # runs whose own stages failed (not only an attack: issue 21 records an attack's failure
        # on the attack), and runs the store had as done before this grid (they stay done)
        self.core_failed: set[int] = set()
        self.was_done: dict[str, bool] = {}

    def take(self, step: Step, result: dict[str, Any]) -> None:
        run_id = result["run_id"]
        if run_id is not None and run_id not in self.was_done:
            before = self.store.get_run(run_id, exact=True)
            self.was_done[run_id] = before is not None and before.status == "done"
        self.store.import_artifacts(result.get("artifacts", []))
        if result["rows"] is not None:
            new = run_id not in self.computed
            done = self.store.import_run(
                result["rows"], new_attempt=new, keep=self.computed.get(run_id, ())
            )
            self.computed.setdefault(run_id, set()).update(done)
        if step.run is not None and run_id is not None:
            self.run_ids[step.run] = run_id
        if result["error"]:
            why = result["error"] if step.kind == "run" else f"{step.id}: {result['error']}"
            # a shared step's failure is that of every run waiting for it
            runs = [step.run] if step.run is not None else [
                s.run for s in self.steps if step.id in s.deps and s.run is not None
            ]  # fmt: skip
            # a step skipped because a step it waits for failed only echoes that failure: the
            # failing step's own reason is the run's, whichever result arrives first
            echo = result["error"].startswith("not run:")
            for run in runs:
                if not echo or run not in self.errors:
                    self.errors[run] = (why, result["input_error"])
                if step.kind != "attack":
                    self.core_failed.add(run)
        self.progress.finish(step.id, not result["error"])
        if (
            step.run is not None
            and step.run in self.run_ids
            and self.progress.run_finished(step.run)
        ):
            run_id = self.run_ids[step.run]
            failed = step.run in self.core_failed and not self.was_done.get(run_id, False)
            self.store.set_run_status(run_id, "failed" if failed else "done")

    def outcomes(self, requests: list[RunRequest]) -> list[Outcome]:
        return [
            read_outcome(self.store, req, self.run_ids.get(i), *self.errors.get(i, (None, False)))
            for i, req in enumerate(requests)
        ]
