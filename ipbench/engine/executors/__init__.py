"""Executors run a grid of runs: here one after another, on N local processes, or as tasks on a
Ray cluster.

Every command that runs (``ipbench run``, ``ipbench sweep``, ``ipbench attack``) and the Python
API's ``ipbench.run()`` turns its arguments into a list of ``RunRequest`` (all checked before anything
runs) and hands them to ONE function::

    outcomes = execute(requests, executor="local" | "processes" | "ray", ray_address=None)

which returns one ``Outcome`` per request, in order (run id, done/failed and why, stages
computed and reused), after writing every row to the store of the requests' work directory.
``summary_table(outcomes, title)`` is the table the commands print at the end; ``on_progress``
receives a ``ProgressEvent`` (runs done / running / failed / waiting, time left) whenever the
grid moves. Ray is imported only when ``executor="ray"``; see docs/ray.md for the design
(shared stages first, rows to the driver, retries) and the set-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ipbench.core.errors import IpbenchError
from ipbench.core.owner import owner_key
from ipbench.engine.executors.outcome import Outcome, failures, summary_table
from ipbench.engine.executors.progress import ProgressCallback, ProgressEvent
from ipbench.engine.request import RunRequest
from ipbench.store.cache import require_folder
from ipbench.store.results import Store

__all__ = ["EXECUTORS", "Outcome", "ProgressEvent", "execute", "failures", "summary_table"]

EXECUTORS = ("local", "processes", "ray")


def execute(
    requests: Sequence[RunRequest], *, executor: str = "local", ray_address: str | None = None,
    on_progress: ProgressCallback | None = None, max_retries: int = 3, workers: int | None = None,
) -> list[Outcome]:  # fmt: skip
    """Run every request with ``executor``; a failed run is reported, not raised.

    ``ray_address``: a running cluster (``auto``, ``HOST:PORT``, ``ray://HOST:10001``); None
    starts a local one for this grid (or uses the one this process already joined).
    ``max_retries``: how often Ray re-runs a step whose worker died. ``workers``: processes of
    ``executor="processes"`` (None: one per core).
    """
    if executor not in EXECUTORS:
        raise IpbenchError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    if ray_address and executor != "ray":
        raise IpbenchError(f"--ray-address {ray_address!r} needs --executor ray")
    if workers is not None and executor != "processes":
        raise IpbenchError(f"--workers {workers} needs --executor processes")
    if not requests:
        return []
    workdirs = {str(Path(r.workdir).resolve()) for r in requests}
    if len(workdirs) > 1:
        raise IpbenchError(f"a grid writes one store; its runs name several: {sorted(workdirs)}")
    store = Store(requests[0].workdir)
    try:
        _check_workdir(Path(requests[0].workdir))
        if executor == "local":
            from ipbench.engine.executors.local import execute_local

            return execute_local(requests, store, on_progress)
        if executor == "processes":
            from ipbench.engine.executors.processes import execute_processes

            return execute_processes(requests, store, workers, on_progress)
        from ipbench.engine.executors.ray import execute_ray

        return execute_ray(requests, store, ray_address, on_progress, max_retries)
    finally:
        store.close()


def _check_workdir(workdir: Path) -> None:
    """What every run writes beside the store, checked before any run is recorded (not a
    failed run per request): the artefact folder, and the owner key (made on first use; a
    missing, replaced or damaged one is its own clear error)."""
    artifacts = workdir / "artifacts"
    if artifacts.exists() and not artifacts.is_dir():
        raise IpbenchError(
            f"{artifacts} is a file, not the folder of cached artefacts; move it away"
        )
    require_folder(artifacts, "artifact folder")
    owner_key(workdir)
