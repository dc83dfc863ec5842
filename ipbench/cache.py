"""Content-addressed stage artefacts: ``WORKDIR/artifacts/STAGE/KEY/``.

A stage computes into ``KEY.partial/`` (where epoch checkpoints also live, so a killed
training resumes) and the folder is renamed to ``KEY/`` only when it finished, so a folder
without the ``.partial`` suffix is always complete.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipbench.errors import CorruptArtifactError

DONE_MARKER = "stage.json"


class StageCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def lookup(self, stage: str, key: str) -> Path | None:
        """The finished folder of (stage, key), or None."""
        path = self.path(stage, key)
        return path if (path / DONE_MARKER).exists() else None

    def compute(
        self,
        stage: str,
        key: str,
        fn: Callable[[Path], dict[str, Any] | None],
        key_material: Any = None,
    ) -> tuple[Path, bool]:
        """Return ``(folder, hit)``; on a miss, ``fn(work_folder)`` writes the artefacts.

        Whatever ``fn`` returns (metrics, notes) is stored in the marker and comes back through
        ``info`` on later hits, so a cached stage never has to be recomputed to be reported.
        """
        done = self.lookup(stage, key)
        if done is not None:
            return done, True
        work = self.path(stage, key + ".partial")
        work.mkdir(parents=True, exist_ok=True)
        info = fn(work) or {}
        for leftover in work.glob("checkpoint*"):
            leftover.unlink()
        (work / DONE_MARKER).write_text(
            json.dumps(
                {"stage": stage, "key": key, "info": info, "key_material": key_material},
                indent=2,
                default=str,
            )
        )
        final = self.path(stage, key)
        if final.exists():  # a concurrent run finished the same stage first
            shutil.rmtree(work)
        else:
            work.rename(final)
        return final, False

    def info(self, stage: str, key: str) -> dict[str, Any]:
        path = self.lookup(stage, key)
        if path is None:
            return {}
        try:
            return json.loads((path / DONE_MARKER).read_text()).get("info", {})
        except (OSError, ValueError) as exc:
            raise CorruptArtifactError(f"{path / DONE_MARKER}: unreadable ({exc})") from None
