"""The result store: runs, stages, metrics and artefact digests in SQLite under the work
directory.

Every write commits at once, so a run killed mid-way keeps every result it had finished. The
file is in WAL mode, checked (``PRAGMA quick_check``) when opened, created atomically (never
over an existing file, however damaged), and upgraded in place from older layouts
(``SCHEMA_VERSION``; see docs/store.md).

Every run, stage and metric row carries an HMAC under the owner key (``mac``,
``ipbench.core.authenticity``), written with the row and checked when it is read: a row edited
in SQLite, or written by anyone without ``owner/owner.key``, is left out of what a reader gets
and named in ``problems``. A store read without its owner key is read unverified, and
``problems`` says so.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipbench.core.errors import IpbenchError
from ipbench.metrics.spec import At, Metric, describe
from ipbench.store.connect import connect, workdir_path
from ipbench.store.schema import SCHEMA, SCHEMA_VERSION, add_columns
from ipbench.store.schema import create as create_store
from ipbench.store.sealing import row_body
from ipbench.store.transfer import StoreTransfer

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
        self.problems: list[str] = []  # rows left out of what was read, and why
        self.refused: list[str] = []
        if create:
            require_folder(self.workdir, "work directory")
            if not self.path.exists():
                create_store(self.path)
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
            add_columns(self.db)
            if upgrade_rows is not None:
                upgrade_rows(self.db, self.workdir)
            self.reseal()
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
                "INSERT OR IGNORE INTO runs (run_id, created, updated, status, scheme, dataset, "
                "model, preset, seed, reduced, config, provenance, attempts) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,1)",
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
            self._seal("runs", run_id)
        return self.require_run(run_id, exact=True), existed

    def set_run_status(self, run_id: str, status: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE runs SET status=?, updated=? WHERE run_id=?", (status, time.time(), run_id)
            )
            self._seal("runs", run_id)

    def get_run(self, ref: str, exact: bool = False) -> RunRecord | None:
        """By id, unique id prefix, or ``last``; a row that does not verify counts as absent
        (and is named in ``problems``)."""
        if ref == "last" and not exact:  # the newest run that verifies
            newest = self.db.execute("SELECT * FROM runs ORDER BY updated DESC")
            rows = next(([r] for r in newest if self._checked("runs", [r])), [])
        elif exact:
            found = self.db.execute("SELECT * FROM runs WHERE run_id=?", (ref,)).fetchall()
            rows = self._checked("runs", found)
        else:
            found = self.db.execute(
                "SELECT * FROM runs WHERE run_id LIKE ?", (ref + "%",)
            ).fetchall()
            rows = self._checked("runs", found)
            if len(rows) > 1:
                ids = ", ".join(r["run_id"] for r in rows[:5])
                raise IpbenchError(f"run {ref!r} is ambiguous: {ids}")
        return _run(rows[0]) if rows else None

    def require_run(self, ref: str, exact: bool = False) -> RunRecord:
        run = self.get_run(ref, exact)
        if run is None:
            if self.refused:
                raise IpbenchError(f"run {ref!r} in {self.path}: {self.refused[0]}")
            known = [r.run_id for r in self.list_runs()[:10]]
            hint = f"; stored runs: {', '.join(known)}" if known else "; the store is empty"
            raise IpbenchError(f"no run {ref!r} in {self.path}{hint}")
        return run

    def list_runs(self) -> list[RunRecord]:
        found = self.db.execute("SELECT * FROM runs ORDER BY updated DESC").fetchall()
        return [_run(r) for r in self._checked("runs", found)]

    # stages -------------------------------------------------------------------------------
    def _stage_row(self, row: sqlite3.Row) -> dict[str, Any]:
        """A stage row with its info parsed and its artefact folder resolved against this
        work directory (stored relative to it, so a copied work directory reads its own)."""
        out = row_body(row)
        out["info"] = json.loads(out["info"]) if out["info"] else {}
        if out.get("artifact"):
            out["artifact"] = str(self.workdir / out["artifact"])
        return out

    def stage(self, run_id: str, name: str) -> dict[str, Any] | None:
        found = self.db.execute(
            "SELECT * FROM stages WHERE run_id=? AND name=?", (run_id, name)
        ).fetchall()
        rows = self._checked("stages", found)
        return self._stage_row(rows[0]) if rows else None

    def stages(self, run_id: str) -> list[dict[str, Any]]:
        found = self.db.execute(
            "SELECT * FROM stages WHERE run_id=? ORDER BY started", (run_id,)
        ).fetchall()
        return [self._stage_row(r) for r in self._checked("stages", found)]

    def begin_stage(self, run_id: str, name: str, cache_key: str) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO stages (run_id, name, cache_key, status, started) VALUES (?,?,?,?,?)",
                (run_id, name, cache_key, "running", time.time()),
            )
            self._seal("stages", run_id, name)

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
            self._seal("stages", run_id, name)

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
                "INSERT OR REPLACE INTO artifacts (stage, key, marker_sha256, files, recorded) "
                "VALUES (?,?,?,?,?)",
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
            self._seal("metrics", run_id, stage)

    def metrics(self, run_id: str) -> list[dict[str, Any]]:
        """A run's numbers in stage order: stage, name, value, note, and what each means
        (``spec``) and which curve point it is (``metric``, ``param``, ``x``, ``label``); for
        rows written before those columns existed, read back from the name."""
        found = self.db.execute(
            "SELECT m.* FROM metrics m LEFT JOIN stages s ON s.run_id=m.run_id AND "
            "s.name=m.stage WHERE m.run_id=? ORDER BY s.started, m.rowid",
            (run_id,),
        ).fetchall()
        keep = ("stage", "name", "value", "note", "metric", "param", "x", "label", "spec")
        out = []
        for r in self._checked("metrics", found):
            row = {k: r[k] for k in keep}
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
