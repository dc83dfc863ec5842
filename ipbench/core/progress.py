"""Progress for every long loop: a live bar on a terminal, plain periodic lines elsewhere.

A bar redraws in place, which a log file or a pipe cannot show: there it would print nothing
until the end (or garbage). So when stderr is not a terminal, the same calls print one plain
line per task every ``IPBENCH_PROGRESS_EVERY`` seconds (default 10) and one when it finishes.
``IPBENCH_PROGRESS=0`` silences both (tests).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ipbench.core.units import duration

# Status lines go to stderr, so stdout holds only results (tables, JSON) and can be piped.
console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")


def progress_enabled() -> bool:
    """Progress is on unless ``IPBENCH_PROGRESS=0`` (tests and CI logs stay readable)."""
    return os.environ.get("IPBENCH_PROGRESS", "1") not in ("0", "false", "no")


def plain_every() -> float:
    """Seconds between two plain progress lines of one task."""
    try:
        return max(0.0, float(os.environ.get("IPBENCH_PROGRESS_EVERY", "10")))
    except ValueError:
        return 10.0


class ProgressLike(Protocol):
    """What loops call: the subset of ``rich.progress.Progress`` both kinds implement."""

    def __enter__(self) -> ProgressLike: ...
    def __exit__(self, *exc: object) -> None: ...
    def add_task(self, description: str, total: float | None = ..., **fields: Any) -> Any: ...
    def update(self, task_id: Any, **fields: Any) -> None: ...
    def advance(self, task_id: Any, advance: float = 1) -> None: ...


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    info: str = ""
    started: float = field(default_factory=lambda: time.perf_counter())
    last_line: float = field(default_factory=lambda: time.perf_counter())
    finished: bool = False
    printed: bool = False


class PlainProgress:
    """Periodic plain lines (``desc 40/100 (40%) info, 12 s, ~18 s left``) for logs and pipes;
    a task that ends within one period prints nothing."""

    def __init__(self, out: Console, every: float, enabled: bool = True):
        self.out, self.every, self.enabled = out, every, enabled
        self.tasks: list[_Task] = []

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc and exc[0] is None:
            for i, task in enumerate(self.tasks):
                if not task.finished and task.printed:
                    self._line(i, final=True)

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        task = _Task(description, total, float(fields.get("completed", 0) or 0))
        task.info = str(fields.get("info", ""))
        self.tasks.append(task)
        return len(self.tasks) - 1

    def update(self, task_id: int, **fields: Any) -> None:
        task = self.tasks[task_id]
        if "completed" in fields:
            task.completed = float(fields["completed"])
        if "advance" in fields:
            task.completed += float(fields["advance"])
        if "total" in fields:
            task.total = fields["total"]
        if "info" in fields:
            task.info = str(fields["info"])
        if "description" in fields:
            task.description = str(fields["description"])
        self._maybe(task_id)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _maybe(self, task_id: int) -> None:
        task = self.tasks[task_id]
        done = task.total is not None and task.completed >= task.total
        if done and not task.finished:
            # a loop shorter than one period leaves no line: its stage's result line says it
            if task.printed or time.perf_counter() - task.started >= self.every:
                self._line(task_id, final=True)
            task.finished = True
        elif time.perf_counter() - task.last_line >= self.every:
            self._line(task_id)

    def _line(self, task_id: int, final: bool = False) -> None:
        task = self.tasks[task_id]
        now = time.perf_counter()
        task.last_line, task.printed = now, True
        task.finished = task.finished or final
        if not self.enabled:
            return
        elapsed = now - task.started
        if task.total:
            frac = min(1.0, task.completed / task.total)
            count = f"{task.completed:.0f}/{task.total:.0f} ({100 * frac:.0f}%)"
            left = "" if final or frac <= 0 else f", ~{duration(elapsed * (1 - frac) / frac)} left"
        else:
            count, left = f"{task.completed:.0f}", ""
        info = f" {task.info}" if task.info else ""
        self.out.print(
            f"  {task.description} {count}{info}, {duration(elapsed)}{left}",
            highlight=False,
            markup=False,
        )


def make_progress(transient: bool = True) -> ProgressLike:
    """A live bar on a terminal, plain periodic lines otherwise (both off with
    ``IPBENCH_PROGRESS=0``)."""
    if not console.is_terminal:
        return PlainProgress(console, plain_every(), progress_enabled())
    return Progress(  # type: ignore[return-value]
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=not progress_enabled(),
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``items`` with a progress bar (or plain lines): for loops in attacks and evaluation."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as bar:
        task = bar.add_task(description, total=total, info="")
        for item in items:
            yield item
            bar.advance(task)
