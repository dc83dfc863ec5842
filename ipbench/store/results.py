"""The result store: runs, stages, metrics and artefact digests in SQLite under the work
directory.

Every write commits at once, so a run killed mid-way keeps every result it had finished. The
file is in WAL mode, checked (``PRAGMA quick_check``) when opened, created atomically (never
over an existing file, however damaged), and upgraded in place from older layouts
(``SCHEMA_VERSION``; see docs/store.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipbench.core.errors import IpbenchError
from ipbench.metrics.spec import At, Metric, describe
from ipbench.store.connect import connect, workdir_path
from ipbench.store.transfer import StoreTransfer

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
# PRAGMA user_version of the layout this code writes. 0: before versions (artefact paths as the
# run's command line gave them, attack stages named by the attack alone); 2: artefact paths
# relative to the work directory, attack stages named by their settings, artefact digests.
SCHEMA_VERSION = 2
STORE_FILE = "ipbench.sqlite"


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


class Store(StoreTransfer):
    """A thin layer over one SQLite file; safe to reopen after a crash."""

    def __init__(
        self, workdir: str | Path, create: bool = True,
        upgrade_rows: Callable[[sqlite3.Connection, Path], None] | None = None,
    ) -> None:  # fmt: skip
        """Open (``create``: or make) the store in ``workdir``. A store of an older layout is
        refused with the way out, unless ``upgrade_rows`` is given: migrating old rows needs
        the plugins' stage naming, which this layer must not load, so the upgrade is an
        explicit step (``ipbench migrate``, ``ipbench.engine.migrate.migrate_store``)."""
        from ipbench.store.cache import require_folder

        self.workdir = workdir_path(workdir)
        self.path = self.workdir / STORE_FILE
        if create:
            require_folder(self.workdir, "work directory")
            if not self.path.exists():
                _create(self.path)
        if self.path.is_dir():
            raise IpbenchError(f"{self.path} is a folder, not a result store; move it away")
        if not self.path.is_file():
            raise IpbenchError(f"no result store at {self.path}; run `ipbench run` first")
        if self.path.stat().st_size == 0:
            raise IpbenchError(
                f"{self.path} is an empty (0-byte) file, not a result store; it is left as it "
                "is: move it away to start a new store, or restore it from a backup"
            )
        try:
            self.db = connect(self.path, writer=create or upgrade_rows is not None)
            self.db.row_factory = sqlite3.Row
            problems = [r[0] for r in self.db.execute("PRAGMA quick_check")]
            if problems != ["ok"]:
                raise sqlite3.DatabaseError("; ".join(problems[:3]))
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION and upgrade_rows is None:
                self.db.close()
                raise IpbenchError(
                    f"{self.path} is a store of layout version {version} (this ipbench reads "
                    f"{SCHEMA_VERSION}); upgrade it once, in place, with `ipbench migrate "
                    f"{self.workdir}` (copy the folder first to keep the old layout)"
                )
            if version < SCHEMA_VERSION:
                self._upgrade(upgrade_rows)
        except sqlite3.DatabaseError as exc:
            raise IpbenchError(
                f"{self.path} is damaged or not an ipbench store ({exc}); it is left as it is: "
                "move it away (or recover it with `sqlite3 FILE .recover`) and rerun"
            ) from None

    def _upgrade(self, upgrade_rows: Callable[[sqlite3.Connection, Path], None] | None) -> None:
        """Bring an older store to ``SCHEMA_VERSION`` in place, in one transaction that one
        process runs (the others wait on the write lock, then find it done)."""
        self.db.isolation_level = None
        try:
            self.db.execute("BEGIN IMMEDIATE")
            if self.db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
                self.db.execute("COMMIT")
                return
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            have = {row[1] for row in self.db.execute("PRAGMA table_info(metrics)")}
            for col, typ in METRIC_COLUMNS.items():
                if col not in have:
                    self.db.execute(f"ALTER TABLE metrics ADD COLUMN {col} {typ}")
            if upgrade_rows is not None:
                upgrade_rows(self.db, self.workdir)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        finally:
            self.db.isolation_level = "DEFERRED"

    def close(self) -> None:
        self.db.close()

    # runs ---------------------------------------------------------------------------------
    def start_run(self, run_id: str, fields: dict[str, Any]) -> tuple[RunRecord, bool]:
        """Create the run, or reopen it when the same configuration ran before.

        Returns the record and whether it existed already (a resume).
        """
        now = time.time()
        with self.db:  # one transaction: concurrent starts of one run never collide
            cur = self.db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1)",
                (
                    run_id, now, now, "running", fields["scheme"], fields["dataset"],
                    fields["model"], fields["preset"], fields["seed"], int(fields["reduced"]),
                    json.dumps(fields["config"]), json.dumps(fields["provenance"]),
                ),
            )  # fmt: skip
            existed = cur.rowcount == 0
            if existed:  # a finished run stays done: later attempts only add attacks
                self.db.execute(
                    "UPDATE runs SET status=CASE WHEN status='done' THEN 'done' ELSE 'running' "
                    "END, updated=?, attempts=attempts+1, provenance=? WHERE run_id=?",
                    (now, json.dumps(fields["provenance"]), run_id),
                )
        return self.get_run(run_id, exact=True), existed  # type: ignore[return-value]

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
    def _stage_row(self, row: sqlite3.Row) -> dict[str, Any]:
        """A stage row with its info parsed and its artefact folder resolved against this
        work directory (stored relative to it, so a copied work directory reads its own)."""
        out = dict(row)
        out["info"] = json.loads(out["info"]) if out["info"] else {}
        if out.get("artifact"):
            out["artifact"] = str(self.workdir / out["artifact"])
        return out

    def stage(self, run_id: str, name: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT * FROM stages WHERE run_id=? AND name=?", (run_id, name)
        ).fetchone()
        return None if row is None else self._stage_row(row)

    def stages(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM stages WHERE run_id=? ORDER BY started", (run_id,))
        return [self._stage_row(r) for r in rows]

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

    # artefact digests (the cache's ledger) ---------------------------------------------
    def artifact_record(self, stage: str, key: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT marker_sha256, files FROM artifacts WHERE stage=? AND key=?", (stage, key)
        ).fetchone()
        return None if row is None else {"marker_sha256": row[0], "files": json.loads(row[1])}

    def record_artifact(
        self, stage: str, key: str, marker_sha256: str, files: dict[str, Any]
    ) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO artifacts VALUES (?,?,?,?,?)",
                (stage, key, marker_sha256, json.dumps(files, sort_keys=True), time.time()),
            )

    def forget_artifact(self, stage: str, key: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM artifacts WHERE stage=? AND key=?", (stage, key))

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
        with self.db:  # the stage's numbers replace its earlier ones as a whole
            self.db.execute("DELETE FROM metrics WHERE run_id=? AND stage=?", (run_id, stage))
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


def _create(path: Path) -> None:
    """A new, empty store at ``path``, made under a private name and linked into place, so a
    concurrent creator or an existing file (however damaged) is never overwritten."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.new")
    try:
        db = sqlite3.connect(tmp)
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        for col, typ in METRIC_COLUMNS.items():
            db.execute(f"ALTER TABLE metrics ADD COLUMN {col} {typ}")
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.commit()
        db.execute("PRAGMA journal_mode=DELETE")  # one file to link; WAL is set again on open
        db.close()
        with contextlib.suppress(FileExistsError):  # another process created it first
            os.link(tmp, path)
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
