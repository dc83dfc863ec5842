"""The result store: runs, stages and metrics in SQLite under the work directory.

Every write commits at once, so a run killed mid-way keeps every result it had finished.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipbench.errors import IpbenchError
from ipbench.metric import At, Metric, describe

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
# Added later (a store written before has NULL there): what each number means and, for a curve
# point, its curve (ipbench.metric.At) as data.
METRIC_COLUMNS = {"metric": "TEXT", "param": "TEXT", "x": "TEXT", "label": "TEXT", "spec": "TEXT"}


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
            have = {row[1] for row in self.db.execute("PRAGMA table_info(metrics)")}
            with self.db:
                for col, typ in METRIC_COLUMNS.items():
                    if col not in have:
                        self.db.execute(f"ALTER TABLE metrics ADD COLUMN {col} {typ}")
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

    # rows moved between stores (ipbench.executors) ----------------------------------------
    def export_run(self, run_id: str) -> dict[str, Any]:
        """A run's rows as plain data (run, stages, metrics columns as stored), for a worker
        with a private store to send to the driver, whose ``import_run`` writes them."""

        def rows(table: str) -> list[dict[str, Any]]:
            found = self.db.execute(
                f"SELECT * FROM {table} WHERE run_id=? ORDER BY rowid", (run_id,)
            )
            return [dict(r) for r in found]

        (run,) = rows("runs")
        return {"run": run, "stages": rows("stages"), "metrics": rows("metrics")}

    def import_run(
        self, rows: dict[str, Any], *, new_attempt: bool, keep: Collection[str] = ()
    ) -> list[str]:
        """Write an exported run's rows in one transaction; returns the stages they computed.

        ``new_attempt``: the rows start an attempt at the run (as ``start_run``: an existing
        record counts one more attempt); otherwise they are another part of the attempt (a grid
        runs a run's baseline, its main stages and each attack as tasks of their own), whose
        plugins join the run's provenance. ``keep``: stages this attempt recorded as computed;
        a later part that found them in the cache does not replace that record.
        """
        run = rows["run"]
        run_id = run["run_id"]
        existing = self.get_run(run_id, exact=True)
        with self.db:
            if existing is None:
                self._insert("runs", {**run, "attempts": 1})
            elif new_attempt:
                self.db.execute(
                    "UPDATE runs SET status=?, updated=?, attempts=attempts+1, provenance=? "
                    "WHERE run_id=?",
                    (run["status"], run["updated"], run["provenance"], run_id),
                )
            else:
                prov = existing.provenance
                code = {
                    **prov.get("plugin_code", {}),
                    **json.loads(run["provenance"]).get("plugin_code", {}),
                }
                self.db.execute(
                    "UPDATE runs SET provenance=? WHERE run_id=?",
                    (json.dumps({**prov, "plugin_code": code}), run_id),
                )
            for stage in rows["stages"]:
                if not (stage["name"] in keep and stage["cached"]):
                    self._insert("stages", stage)
            for metric in rows["metrics"]:
                self._insert("metrics", metric)
        return [s["name"] for s in rows["stages"] if s["status"] == "done" and not s["cached"]]

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(
            f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})", tuple(row.values())
        )

    # metrics ------------------------------------------------------------------------------
    def put_metrics(
        self,
        run_id: str,
        stage: str,
        values: Mapping[str | At, float | None],
        notes: dict[str, str] | None = None,
        declared: tuple[Metric, ...] = (),
    ) -> None:
        """Record a stage's numbers (a key is a name or a curve point ``At``) and notes, each
        with its ``Metric`` (the plugin's ``declared`` ones, else the shared ones)."""
        notes = notes or {}
        rows = []
        for key, value in values.items():
            point = key if isinstance(key, At) else At.parse(key)
            name = str(key)
            spec = describe(name, declared).spec()
            rows.append((name, value, notes.get(name), point, spec))
        for name in set(notes) - {r[0] for r in rows}:
            rows.append((name, None, notes[name], At.parse(name), describe(name, declared).spec()))
        with self.db:
            for name, value, note, point, spec in rows:
                self.db.execute(
                    "INSERT OR REPLACE INTO metrics (run_id, stage, name, value, note, metric, "
                    "param, x, label, spec) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        run_id, stage, name, None if value is None else float(value), note,
                        point.metric, point.param, None if point.x is None else json.dumps(point.x),
                        point.label, json.dumps(spec),
                    ),
                )  # fmt: skip

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        """A run's numbers in stage order: stage, name, value, note, and what each means
        (``spec``) and which curve point it is (``metric``, ``param``, ``x``, ``label``); for
        rows written before those columns existed, read back from the name."""
        rows = self.db.execute(
            "SELECT m.stage, m.name, m.value, m.note, m.metric, m.param, m.x, m.label, m.spec "
            "FROM metrics m LEFT JOIN stages s ON s.run_id=m.run_id AND s.name=m.stage "
            "WHERE m.run_id=? ORDER BY s.started, m.rowid",
            (run_id,),
        )
        out = []
        for r in rows:
            row = dict(r)
            if row["metric"] is None:  # an older store: the name is all there is
                point = At.parse(row["name"])
                row.update(metric=point.metric, param=point.param, x=point.x, label=point.label)
            else:
                row["x"] = None if row["x"] is None else json.loads(row["x"])
            row["spec"] = json.loads(row["spec"]) if row["spec"] else None
            out.append(row)
        return out


def _run(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"], status=row["status"], scheme=row["scheme"], dataset=row["dataset"],
        model=row["model"], preset=row["preset"], seed=row["seed"], reduced=bool(row["reduced"]),
        config=json.loads(row["config"]), provenance=json.loads(row["provenance"]),
        created=row["created"], updated=row["updated"], attempts=row["attempts"],
    )  # fmt: skip
