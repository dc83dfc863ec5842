"""The result store's tables, their layout version, and making a new store file."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    scheme TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    preset TEXT NOT NULL,
    seed INTEGER NOT NULL,
    reduced INTEGER NOT NULL,
    config TEXT NOT NULL,
    provenance TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS stages (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    name TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    status TEXT NOT NULL,
    cached INTEGER NOT NULL DEFAULT 0,
    wall_s REAL,
    started REAL,
    finished REAL,
    artifact TEXT,
    info TEXT,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS artifacts (
    stage TEXT NOT NULL,
    key TEXT NOT NULL,
    marker_sha256 TEXT NOT NULL,
    files TEXT NOT NULL,
    recorded REAL NOT NULL,
    PRIMARY KEY (stage, key)
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    stage TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    note TEXT,
    PRIMARY KEY (run_id, stage, name)
);
"""
# Added later (a store written before has NULL there): what each number means and, for a curve
# point, its curve (ipbench.metrics.spec.At) as data.
METRIC_COLUMNS = {"metric": "TEXT", "param": "TEXT", "x": "TEXT", "label": "TEXT", "spec": "TEXT"}
# Each row's authentication tag (version 3), per table
ADDED_COLUMNS = {
    "metrics": {**METRIC_COLUMNS, "mac": "TEXT"},
    "runs": {"mac": "TEXT"},
    "stages": {"mac": "TEXT"},
}
# PRAGMA user_version of the layout this code writes. 0: before versions (artefact paths as the
# run's command line gave them, attack stages named by the attack alone); 2: artefact paths
# relative to the work directory, attack stages named by their settings, artefact digests;
# 3: every run, stage and metric row authenticated under the owner key.
SCHEMA_VERSION = 3


def add_columns(db: sqlite3.Connection) -> None:
    """The columns added to the first layout's tables, where a table lacks them."""
    for table, columns in ADDED_COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for col, typ in columns.items():
            if col not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {col} {typ}")


def create(path: Path) -> None:
    """A new, empty store at ``path``, made under a private name and linked into place, so a
    concurrent creator or an existing file (however damaged) is never overwritten."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.new")
    try:
        db = sqlite3.connect(tmp)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        add_columns(db)
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.commit()
        db.execute("PRAGMA journal_mode=DELETE")  # one file to link; WAL is set again on open
        db.close()
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
