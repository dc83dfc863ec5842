"""Content-addressed stage artefacts: ``WORKDIR/artifacts/STAGE/KEY/``, one writer each, verified
when read.

One writer per stage: a process computes (stage, key) only while it holds the lock file
``STAGE/KEY.lock`` (``filelock``); another process that needs the same stage waits for the lock
and then reuses the finished folder. The writer computes into a partial folder named for
itself (``KEY.partial-HOST-PID-RANDOM``); a partial folder left by a killed writer is adopted by
the next one (its epoch checkpoints let training resume), and the folder is renamed to ``KEY/``
only when complete, so a folder without a suffix is always a finished stage.

Integrity: the marker ``stage.json`` lists the sha256 and size of every file the stage wrote
and carries an HMAC under the store's owner key (``mac``, ``ipbench.core.authenticity``), and
the store records the marker's own digest (``ledger``), so reading a stage checks that its
files are the ones written, that the marker itself (its metrics) was written by the owner and is
unchanged (with or without its ledger row), and that the folder holds the stage and key it is
filed under. While a stage computes, the key is the active one, so the checkpoints it resumes
from are tagged and checked too. A mismatch is one error naming the file and
the way out (``--recompute STAGE`` or removing the folder); nothing is silently recomputed or
used. See docs/store.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any, Protocol

from filelock import FileLock, Timeout

from ipbench.core.authenticity import TAG, check, sign, signing
from ipbench.core.config import to_jsonable
from ipbench.core.errors import CorruptArtifactError, IpbenchError
from ipbench.core.faults import crash_point
from ipbench.core.integrity import manifest, sha256_bytes, verify_manifest, write_atomic
from ipbench.core.jsonsafe import loads_limited

DONE_MARKER = "stage.json"
ATTEMPTS = "attempts.json"  # compute seconds of this stage's earlier, interrupted attempts
HEARTBEAT_S = 5.0  # how often a running stage records its compute time (lost on a kill: < this)


class Ledger(Protocol):
    """Where the digest of each finished stage's marker is kept (the result store)."""

    def artifact_record(self, stage: str, key: str) -> dict[str, Any] | None: ...

    def record_artifact(
        self, stage: str, key: str, marker_sha256: str, files: dict[str, Any]
    ) -> None: ...

    def forget_artifact(self, stage: str, key: str) -> None: ...


class StageCache:
    def __init__(
        self, root: str | Path, ledger: Ledger | None = None, recompute: Collection[str] = (),
        log: Callable[[str], None] | None = None, mac_key: bytes | None = None,
    ) -> None:  # fmt: skip
        self.root = Path(root)
        self.mac_key = mac_key  # None: markers neither tagged nor checked (no store)
        self.ledger = ledger
        self.recompute = set(recompute)  # stage folder names to recompute once in this process
        self.log = log or (lambda _m: None)
        self._verified: dict[tuple[str, str], dict[str, Any]] = {}
        self._recomputed: set[tuple[str, str]] = set()
        self._me = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def way_out(self, stage: str, key: str) -> str:
        return f"rerun with --recompute {stage} to recompute it, or remove {self.path(stage, key)}"

    # --- reading -----------------------------------------------------------------------------
    def lookup(self, stage: str, key: str, wait: bool = False) -> Path | None:
        """The finished, verified folder of (stage, key), or None when there is none.

        ``wait``: where another process holds the stage's lock (computing it, or recomputing
        it after ``--recompute``), wait for it first, so a reader gets its result rather than
        "missing" (writers wait in ``compute`` already). A folder that exists but fails its
        check raises ``CorruptArtifactError``."""
        path = self.path(stage, key)
        if wait and not path.exists() and (self.root / stage / f"{key}.lock").exists():
            with self.lock(stage, key):
                pass
        if not path.exists() or self._pending_recompute(stage, key):
            return None
        self._marker(stage, key)
        return path

    def _pending_recompute(self, stage: str, key: str) -> bool:
        """``--recompute`` named this stage and this process has not recomputed it yet."""
        return stage in self.recompute and (stage, key) not in self._recomputed

    def info(self, stage: str, key: str) -> dict[str, Any]:
        """What the stage's compute returned (metrics, notes), from its verified marker."""
        if not self.path(stage, key).exists():
            return {}
        return dict(self._marker(stage, key).get("info", {}))

    def compute_record(self, stage: str, key: str) -> dict[str, Any]:
        """Attempts and total compute seconds of a finished stage (empty for older ones)."""
        return dict(self._marker(stage, key).get("compute", {}))

    def _marker(self, stage: str, key: str) -> dict[str, Any]:
        """The stage's marker after checking the folder against it and the ledger."""
        if (stage, key) in self._verified:
            return self._verified[(stage, key)]
        folder = self.path(stage, key)
        marker_path = folder / DONE_MARKER
        way_out = self.way_out(stage, key)
        if not marker_path.is_file():
            raise CorruptArtifactError(
                f"{marker_path} is missing, so the {stage} artefact in {folder} cannot be "
                f"trusted; {way_out}"
            )
        raw = marker_path.read_bytes()
        try:
            marker = loads_limited(raw.decode("utf-8", "replace"), str(marker_path))
            if not isinstance(marker, dict):
                raise ValueError("not a JSON object")
        except (ValueError, IpbenchError) as exc:
            raise CorruptArtifactError(f"{marker_path}: unreadable ({exc}); {way_out}") from None
        if marker.get("stage") != stage or marker.get("key") != key:
            raise CorruptArtifactError(
                f"{marker_path} describes stage {marker.get('stage')!r} key "
                f"{marker.get('key')!r}, not the {stage} {key} it is filed under (folders "
                f"swapped or copied); {way_out}"
            )
        record = self.ledger.artifact_record(stage, key) if self.ledger else None
        digest = sha256_bytes(raw)
        if record is not None and record["marker_sha256"] != digest:
            raise CorruptArtifactError(
                f"{marker_path} was modified after the stage wrote it (its sha256 differs from "
                f"the store's record); {way_out}"
            )
        if "files" not in marker and self.mac_key is not None:
            raise CorruptArtifactError(
                f"{marker_path} predates integrity records (no file digests): run `ipbench "
                f"migrate --workdir WORKDIR` once to vouch for the store's stages; {way_out}"
            )
        if "files" not in marker:  # written before stages recorded digests, read without a key
            with self.lock(stage, key):
                marker, digest = self._adopt_legacy(stage, key, marker)
        else:
            check_marker(marker, self.mac_key, marker_path, way_out)
            verify_manifest(folder, marker["files"], way_out)
            if record is None and self.ledger is not None:
                self.ledger.record_artifact(stage, key, digest, marker["files"])
        self._verified[(stage, key)] = marker
        return marker

    def _adopt_legacy(
        self, stage: str, key: str, marker: dict[str, Any]
    ) -> tuple[dict[str, Any], str]:
        """A stage from before integrity records: digest its files now, once, and say so."""
        folder = self.path(stage, key)
        current = json.loads((folder / DONE_MARKER).read_bytes())
        if "files" in current:  # another process upgraded it while we waited for the lock
            marker = current
        else:
            marker = seal_marker(
                {**current, "files": manifest(folder, skip=(DONE_MARKER,))}, self.mac_key
            )
            write_atomic(folder / DONE_MARKER, dump_marker(marker))
            self.log(
                f"[yellow]notice:[/] stage {stage} {key} predates integrity records; "
                "digests recorded now"
            )
        digest = sha256_bytes((folder / DONE_MARKER).read_bytes())
        if self.ledger is not None:
            self.ledger.record_artifact(stage, key, digest, marker["files"])
        return marker, digest

    # --- writing -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, stage: str, key: str) -> Iterator[None]:
        """Hold the stage's lock; say so when another process holds it and we wait."""
        (self.root / stage).mkdir(parents=True, exist_ok=True)
        # One lock object per file in this process (is_singleton), so a holder that checks the
        # same stage again (a legacy marker upgraded inside compute) re-enters instead of
        # waiting on itself.
        lock = FileLock(str(self.root / stage / f"{key}.lock"), is_singleton=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.log(f"waiting for another process computing {stage} {key} ({lock.lock_file})")
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

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
        if self._pending_recompute(stage, key):
            self._discard(stage, key)
        done = self.lookup(stage, key)
        if done is not None:
            return done, True
        with self.lock(stage, key):
            done = self.lookup(stage, key)  # finished by another process while we waited
            if done is not None:
                return done, True
            return self._compute_locked(stage, key, fn, key_material), False

    def _discard(self, stage: str, key: str) -> None:
        """``--recompute``: remove the finished folder (and its record) once per process."""
        with self.lock(stage, key):
            final = self.path(stage, key)
            if final.exists():
                trash = final.with_name(f"{key}.discarded-{self._me}")
                final.rename(trash)
                shutil.rmtree(trash)
                self.log(f"recomputing {stage} {key} (--recompute)")
            if self.ledger is not None:
                self.ledger.forget_artifact(stage, key)
            self._verified.pop((stage, key), None)
            self._recomputed.add((stage, key))

    def _claim_partial(self, stage: str, key: str) -> tuple[Path, list[float]]:
        """This process's partial folder: a killed writer's leftover adopted (we hold the
        lock, so its writer is gone), else a new one; and the earlier attempts' seconds."""
        work = self.path(stage, f"{key}.partial-{self._me}")
        leftovers = sorted(
            (p for p in (self.root / stage).glob(f"{key}.partial*") if p.is_dir()),
            key=lambda p: p.stat().st_mtime,
        )
        if leftovers:
            leftovers.pop().rename(work)
            for stale in leftovers:
                shutil.rmtree(stale, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        earlier: list[float] = []
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads((work / ATTEMPTS).read_text())
            earlier = [float(s) for s in data["seconds"]]
        return work, earlier

    def _compute_locked(
        self, stage: str, key: str, fn: Callable[[Path], dict[str, Any] | None], key_material: Any
    ) -> Path:
        work, earlier = self._claim_partial(stage, key)
        resumed = f" (resuming attempt {len(earlier) + 1})" if earlier else ""
        self.log(f"[dim]computing {stage} {key}{resumed}[/]")
        t0 = time.perf_counter()
        stop = threading.Event()

        def heartbeat() -> None:  # so a killed attempt's compute still counts
            while not stop.wait(HEARTBEAT_S):
                spent = [*earlier, time.perf_counter() - t0]
                with contextlib.suppress(OSError):
                    write_atomic(work / ATTEMPTS, json.dumps({"seconds": spent}).encode())

        beat = threading.Thread(target=heartbeat, daemon=True)
        beat.start()
        try:
            with signing(self.mac_key):  # the checkpoints the stage writes and resumes from
                info = fn(work) or {}
        finally:
            stop.set()
            beat.join()
        seconds = [*earlier, time.perf_counter() - t0]
        for leftover in (*work.glob("checkpoint*"), work / ATTEMPTS):
            leftover.unlink(missing_ok=True)
        marker = {
            "stage": stage, "key": key, "info": info, "key_material": to_jsonable(key_material),
            "compute": {"attempts": len(seconds), "seconds": seconds, "total_s": sum(seconds)},
            "files": manifest(work, skip=(DONE_MARKER,)),
        }  # fmt: skip
        marker = seal_marker(marker, self.mac_key)
        blob = dump_marker(marker)
        write_atomic(work / DONE_MARKER, blob)
        crash_point(f"marker:{stage}")
        final = self.path(stage, key)
        try:
            work.rename(final)
        except OSError:
            if not final.exists():
                raise
            # Another writer finished first although we held the lock (a filesystem whose
            # locks do not work, see docs/store.md): theirs stands, ours goes.
            shutil.rmtree(work)
            return final
        if self.ledger is not None:
            self.ledger.record_artifact(stage, key, sha256_bytes(blob), marker["files"])
        self._verified[(stage, key)] = marker
        return final


MARKER_PURPOSE = "stage-marker"


def seal_marker(marker: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    """The marker with its tag under ``key``, over the marker as it reads back from its file."""
    return sign(
        json.loads(dump_marker({k: v for k, v in marker.items() if k != TAG})), key, MARKER_PURPOSE
    )


def check_marker(marker: dict[str, Any], key: bytes | None, where: Path, way_out: str) -> None:
    """A marker that ``key`` did not tag is one ``CorruptArtifactError``; no key: nothing to
    check. Its tag covers its metrics and the digests of every file beside it."""
    migrate = "if the store predates authenticated records, run `ipbench migrate --workdir WORKDIR` once; else "
    check(marker, key, MARKER_PURPOSE, str(where), migrate + way_out)


def dump_marker(marker: dict[str, Any]) -> bytes:
    """A marker's bytes as written to ``stage.json``."""
    return json.dumps(marker, indent=2, default=str).encode()


def require_folder(path: Path, what: str) -> None:
    """A folder the caller will write under: an error naming it when it is a file or not
    writable."""
    if path.exists() and not path.is_dir():
        raise IpbenchError(f"{what} {path} is a file, not a folder; pass another path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IpbenchError(f"{what} {path} cannot be created ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise IpbenchError(f"{what} {path} is not writable; pass a folder you can write to")
