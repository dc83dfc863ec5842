"""The driver's view of a grid: runs done / running / failed / waiting, and the time left.

Both executors report through ``GridProgress``, so a grid reads the same locally and on Ray:
one line each time a count changes, and an ``on_progress`` callback with the same numbers
(and which steps are running in which processes) for programs that drive a grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ipbench.core.progress import console
from ipbench.engine.executors.plan import Step


@dataclass(frozen=True)
class ProgressEvent:
    runs: int
    done: int
    running: int
    failed: int
    waiting: int
    elapsed_s: float
    left_s: float | None  # None until a step has finished
    running_steps: dict[str, list[int]] = field(default_factory=dict)  # step id -> attempt pids


ProgressCallback = Callable[[ProgressEvent], None]


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class GridProgress:
    """Counts runs by the state of their steps; the time left is the elapsed time scaled by
    the steps still to finish over those finished (on Ray the rate already includes how many
    run at once)."""

    def __init__(
        self, steps: Iterable[Step], runs: int, on_progress: ProgressCallback | None = None
    ) -> None:
        self.steps = {s.id: s for s in steps}
        self.runs = runs
        self.on_progress = on_progress
        self.started: dict[str, list[int]] = {}
        self.finished: set[str] = set()
        self.failed_runs: set[int] = set()
        self.t0 = time.perf_counter()
        self._last: tuple[int, ...] | None = None

    def _run_steps(self, run: int) -> list[str]:
        return [i for i, s in self.steps.items() if s.run == run]

    def update(self, started: dict[str, list[int]]) -> None:
        """``started``: every step that has started, with one pid per attempt."""
        self.started = {k: list(v) for k, v in started.items()}
        self._emit()

    def finish(self, step_id: str, ok: bool) -> None:
        self.finished.add(step_id)
        run = self.steps[step_id].run
        if not ok and run is not None:
            self.failed_runs.add(run)
        self._emit()

    def run_finished(self, run: int) -> bool:
        return all(i in self.finished for i in self._run_steps(run))

    def event(self) -> ProgressEvent:
        finished_runs = {r for r in range(self.runs) if self.run_finished(r)}
        failed = len(self.failed_runs & finished_runs)
        # a run is running from the start of its first step to the end of its last
        active = {self.steps[i].run for i in {*self.started, *self.finished}} - finished_runs
        running = len(active - {None})
        elapsed = time.perf_counter() - self.t0
        left = None
        if self.finished:
            left = elapsed * (len(self.steps) - len(self.finished)) / len(self.finished)
        return ProgressEvent(
            runs=self.runs, done=len(finished_runs) - failed, running=running, failed=failed,
            waiting=self.runs - len(finished_runs) - running, elapsed_s=elapsed, left_s=left,
            running_steps={i: p for i, p in self.started.items() if i not in self.finished},
        )  # fmt: skip

    def _emit(self) -> None:
        ev = self.event()
        if self.on_progress is not None:
            self.on_progress(ev)
        counts = (ev.done, ev.running, ev.failed, ev.waiting)
        if counts == self._last or self.runs < 2:  # one run: its own stage lines say it all
            return
        self._last = counts
        left = "" if ev.left_s is None else f", about {_duration(ev.left_s)} left"
        console.print(
            f"[bold]grid[/] {ev.done}/{ev.runs} runs done, {ev.running} running, "
            f"{ev.failed} failed, {ev.waiting} waiting; {_duration(ev.elapsed_s)} elapsed{left}",
            highlight=False,
        )
