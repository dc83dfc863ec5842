"""Opening the result store's SQLite file: read-write for the commands that write, read-only
where this user cannot write the store (a read-only folder, a copy on read-only media), so the
reading commands (``runs``, ``show``, ``leaderboard``) still work there."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ipbench.core.errors import IpbenchError


def workdir_path(workdir: str | Path) -> Path:
    """``--workdir`` as a path; an empty one is refused (it would silently mean the current
    folder)."""
    if not str(workdir).strip():
        raise IpbenchError("--workdir '' is empty; give a folder (the default is ipbench-runs)")
    return Path(workdir)


def connect(path: Path, writer: bool, timeout: float = 60) -> sqlite3.Connection:
    """The store at ``path``, in WAL mode where it can be written. A store this user cannot
    write is an error for a ``writer`` and opened read-only otherwise: ``mode=ro`` (shares
    the write-ahead log with a writer that can), else ``immutable=1`` where SQLite cannot
    make its ``-shm`` file beside it (nothing can write there, so nothing changes under it)."""
    if os.access(path.parent, os.W_OK) and os.access(path, os.W_OK):
        db = sqlite3.connect(path, timeout=timeout)
        db.execute("PRAGMA journal_mode=WAL")
        return db
    if writer:
        raise IpbenchError(f"the result store {path} is read-only; pass a --workdir you can write")
    uri = path.resolve().as_uri()
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=timeout)
    try:
        db.execute("PRAGMA user_version").fetchone()
        return db
    except sqlite3.OperationalError:  # no -shm and no way to make one
        db.close()
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", uri=True, timeout=timeout)
