"""The local executor: the runs one after another in this process (``--executor local``).

A run that fails is recorded as failed and the grid goes on with the next; the finished
stages of every run stay in the cache and the store, so the same command resumes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ipbench.engine.executors.outcome import Outcome, describe_error, read_outcome
from ipbench.engine.executors.plan import Step
from ipbench.engine.executors.progress import GridProgress, ProgressCallback
from ipbench.engine.request import RunRequest
from ipbench.store.results import Store


def execute_local(
    requests: Sequence[RunRequest], store: Store, on_progress: ProgressCallback | None = None
) -> list[Outcome]:
    from ipbench.engine.runner import Runner

    steps = [Step(f"run:{i}", "run", req, i) for i, req in enumerate(requests)]
    progress = GridProgress(steps, len(requests), on_progress)
    outcomes = []
    for step in steps:
        progress.update({**progress.started, step.id: [os.getpid()]})
        runner, error, bad_input = None, None, False
        try:
            runner = Runner(step.request, store=store)
            runner.run()
        except Exception as exc:  # recorded, and the grid goes on; Ctrl-C stops it
            error, bad_input = describe_error(exc)
        progress.finish(step.id, error is None)
        run_id = getattr(runner, "run_id", None)
        outcomes.append(read_outcome(store, step.request, run_id, error, bad_input))
    return outcomes
