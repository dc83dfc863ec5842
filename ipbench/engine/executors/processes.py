"""The process executor (``--executor processes --workers N``): the grid's plan on N local
processes, without Ray.

Why: one run at a time leaves cores idle where a run cannot use them all (a small network's
training on two threads keeps about 1.6 cores busy), and the slowest run of a grid (a token
generator) then sets the pace for all. Here the plan's steps (``ipbench.engine.executors.plan``:
a shared baseline and a scheme's shared sub-stage first, each once) go to a pool of N worker
processes with ``threads // N`` torch threads each, and each run's attacks stay in its run's
step (split per attack, every step would load its data again).

A step runs as under Ray (``worker.run_step``): against a private store, artefacts in the shared
cache written ``.partial`` then renamed, rows sent back to this process, which alone writes the
grid's store (``ray.GridRecord``) as each step finishes. A worker that dies fails its step and
the runs waiting for it, never the grid; the same command resumes from the finished stages.
Results agree with ``--executor local`` up to the float order of the thread count.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import torch

from ipbench.core.errors import IpbenchError
from ipbench.core.progress import console
from ipbench.engine.executors.outcome import Outcome
from ipbench.engine.executors.plan import Step, plan
from ipbench.engine.executors.progress import GridProgress, ProgressCallback
from ipbench.engine.executors.ray import GridRecord
from ipbench.engine.executors.worker import run_step
from ipbench.engine.request import RunRequest
from ipbench.store.results import Store

MAX_WORKERS = 256


def default_workers() -> int:
    """One worker per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _absolute(req: RunRequest) -> RunRequest:
    req = dataclasses.replace(req, workdir=str(Path(req.workdir).resolve()))
    if req.data_root:
        req = dataclasses.replace(req, data_root=str(Path(req.data_root).expanduser().resolve()))
    return req


def execute_processes(
    requests: Sequence[RunRequest], store: Store, workers: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[Outcome]:  # fmt: skip
    """Run the grid's steps on ``workers`` processes (None: one per core); see the module."""
    workers = default_workers() if workers is None else workers
    if not 1 <= workers <= MAX_WORKERS:
        raise IpbenchError(f"--workers {workers}: valid 1..{MAX_WORKERS}")
    placements = [_absolute(r) for r in requests]
    steps = plan(placements, split_attacks=False)
    threads = max(1, torch.get_num_threads() // workers)
    console.print(
        f"[bold]grid[/] {len(placements)} runs as {len(steps)} steps on {workers} processes, "
        f"{threads} torch thread(s) each",
        highlight=False,
    )
    progress = GridProgress(steps, len(placements), on_progress)
    record = GridRecord(store, steps, progress)
    known = store.export_artifacts()  # digests of stages earlier grids wrote
    results: dict[str, dict[str, Any]] = {}
    waiting = list(steps)
    running: dict[Future[dict[str, Any]], Step] = {}
    started: dict[str, list[int]] = {}
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    broken = None  # why the pool broke, if a worker died: the steps not started fail with it
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        while waiting or running:
            for step in [s for s in waiting if all(d in results for d in s.deps)]:
                if broken is not None:
                    waiting.remove(step)
                    results[step.id] = _failed(step, f"not run: {broken}")
                    record.take(step, results[step.id])
                    continue
                if len(running) >= workers:
                    break
                deps = [results[d] for d in step.deps]
                future = pool.submit(
                    run_step, step.kind, step.request, step.id, None, threads, known, *deps
                )
                running[future] = step
                waiting.remove(step)
                started[step.id] = [0]  # the pool does not say which process took it
            progress.update(started)
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                step = running.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                    broken = f"a worker process died ({exc})"
                    result = _failed(step, broken)
                except Exception as exc:  # could not be sent or returned (pickling)
                    result = _failed(step, f"{type(exc).__name__}: {exc}")
                results[step.id] = result
                record.take(step, result)
    return record.outcomes(placements)


def _failed(step: Step, why: str) -> dict[str, Any]:
    return {"step": step.id, "run_id": None, "rows": None, "error": why, "input_error": False}
