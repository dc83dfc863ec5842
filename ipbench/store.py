"""The result store: runs, stages and metrics in SQLite under the work directory.

Every write commits at once, so a run killed mid-way keeps every result it had finished.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipbench.errors import IpbenchError

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
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    stage TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    note TEXT,
    PRIMARY KEY (run_id, stage, name)
);
"""


@dataclass
class RunRecord:
    run_id: str
    status: str
    scheme: str
    dataset: str
    model: str
    preset: str
    seed: int
    reduced: bool
    config: dict[str, Any]
    provenance: dict[str, Any]
    created: float
    updated: float
    attempts: int


class Store:
    """A thin layer over one SQLite file; safe to reopen after a crash."""

    def __init__(self, workdir: str | Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.path = self.workdir / "ipbench.sqlite"
        try:
            self.db = sqlite3.connect(self.path, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise IpbenchError(f"{self.path}: not a usable ipbench store ({exc})") from None
        self.db.row_factory = sqlite3.Row

    def close(self) -> None:
        self.db.close()

    # runs ---------------------------------------------------------------------------------
    def start_run(self, run_id: str, fields: dict[str, Any]) -> tuple[RunRecord, bool]:
        """Create the run, or reopen it when the same configuration ran before.

        Returns the record and whether it existed already (a resume).
        """
        now = time.time()
        existing = self.get_run(run_id, exact=True)
        with self.db:
            if existing:
                self.db.execute(
                    "UPDATE runs SET status='running', updated=?, attempts=attempts+1, provenance=? WHERE run_id=?",
                    (now, json.dumps(fields["provenance"]), run_id),
                )
            else:
                self.db.execute(
                    "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1)",
                    (
                        run_id, now, now, "running", fields["scheme"], fields["dataset"],
                        fields["model"], fields["preset"], fields["seed"], int(fields["reduced"]),
                        json.dumps(fields["config"]), json.dumps(fields["provenance"]),
                    ),
                )  # fmt: skip
        return self.get_run(run_id, exact=True), existing is not None  # type: ignore[return-value]

    def set_run_status(self, run_id: str, status: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET status=?, updated=? WHERE run_id=?", (status, time.time(), run_id)
            )

    def get_run(self, ref: str, exact: bool = False) -> RunRecord | None:
        """By id, unique id prefix, or ``last``."""
        if ref == "last" and not exact:
            row = self.db.execute("SELECT * FROM runs ORDER BY updated DESC LIMIT 1").fetchone()
        elif exact:
            row = self.db.execute("SELECT * FROM runs WHERE run_id=?", (ref,)).fetchone()
        else:
            rows = self.db.execute(
                "SELECT * FROM runs WHERE run_id LIKE ?", (ref + "%",)
            ).fetchall()
            if len(rows) > 1:
                ids = ", ".join(r["run_id"] for r in rows[:5])
                raise IpbenchError(f"run {ref!r} is ambiguous: {ids}")
            row = rows[0] if rows else None
        return _run(row) if row else None

    def require_run(self, ref: str) -> RunRecord:
        run = self.get_run(ref)
        if run is None:
            known = [r.run_id for r in self.list_runs()[:10]]
            hint = f"; stored runs: {', '.join(known)}" if known else "; the store is empty"
            raise IpbenchError(f"no run {ref!r} in {self.path}{hint}")
        return run

    def list_runs(self) -> list[RunRecord]:
        return [_run(r) for r in self.db.execute("SELECT * FROM runs ORDER BY updated DESC")]

    # stages -------------------------------------------------------------------------------
    def stage(self, run_id: str, name: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM stages WHERE run_id=? AND name=?", (run_id, name)
        ).fetchone()
        if row is None:
            return None
        out = dict(row)
        out["info"] = json.loads(out["info"]) if out["info"] else {}
        return out

    def stages(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM stages WHERE run_id=? ORDER BY started", (run_id,))
        return [{**dict(r), "info": json.loads(r["info"]) if r["info"] else {}} for r in rows]

    def begin_stage(self, run_id: str, name: str, cache_key: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO stages (run_id, name, cache_key, status, started) VALUES (?,?,?,?,?)",
                (run_id, name, cache_key, "running", time.time()),
            )

    def finish_stage(
        self, run_id: str, name: str, *, status: str = "done", cached: bool = False,
        wall_s: float | None = None, artifact: str | None = None, info: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        with self.db:
            self.db.execute(
                "UPDATE stages SET status=?, cached=?, wall_s=?, finished=?, artifact=?, info=? "
                "WHERE run_id=? AND name=?",
                (
                    status,
                    int(cached),
                    wall_s,
                    time.time(),
                    artifact,
                    json.dumps(info or {}, default=str),
                    run_id,
                    name,
                ),
            )

    # metrics ------------------------------------------------------------------------------
    def put_metrics(
        self,
        run_id: str,
        stage: str,
        values: dict[str, float | None],
        notes: dict[str, str] | None = None,
    ) -> None:
        notes = notes or {}
        with self.db:
            for name, value in values.items():
                self.db.execute(
                    "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?)",
                    (run_id, stage, name, None if value is None else float(value), notes.get(name)),
                )
            for name in set(notes) - set(values):
                self.db.execute(
                    "INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?)",
                    (run_id, stage, name, None, notes[name]),
                )

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT m.stage, m.name, m.value, m.note FROM metrics m LEFT JOIN stages s "
            "ON s.run_id=m.run_id AND s.name=m.stage WHERE m.run_id=? ORDER BY s.started, m.rowid",
            (run_id,),
        )
        return [dict(r) for r in rows]


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"], status=row["status"], scheme=row["scheme"], dataset=row["dataset"],
        model=row["model"], preset=row["preset"], seed=row["seed"], reduced=bool(row["reduced"]),
        config=json.loads(row["config"]), provenance=json.loads(row["provenance"]),
        created=row["created"], updated=row["updated"], attempts=row["attempts"],
    )  # fmt: skip
