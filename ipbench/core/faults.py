"""Deterministic crash points for the reliability tests: ``IPBENCH_KILL_AT=POINT`` makes the
process SIGKILL itself when it reaches ``POINT``, so a test can kill a run exactly inside a
write window (after an epoch checkpoint, after a stage's marker is written but before its
folder is renamed, after a stage is recorded) and check that the next run resumes.

Points: ``checkpoint:DESC:EPOCH`` (the trainer, after saving epoch EPOCH of the fit described
as DESC), ``marker:STAGE`` (the cache, marker written, folder not yet final) and
``recorded:STAGE`` (the runner, stage recorded in the store). Unset, this costs one lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "IPBENCH_KILL_AT"


def crash_point(point: str) -> None:
    """Die here, as a kill -9 would, when ``$IPBENCH_KILL_AT`` names this point."""
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
