"""Rows moved between stores: a Ray step runs against a store private to it and sends its
run's rows and artefact digests back to the driver, which alone writes the grid's store
(ipbench.engine.executors). A mixin of ``Store``, kept apart so the store module stays one job."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import Any

from ipbench.core.errors import IpbenchError
from ipbench.store.sealing import StoreSealing


class StoreTransfer(StoreSealing):
    """``Store``'s export and import of a run's rows and of artefact digests."""

    db: sqlite3.Connection

    def get_run(self, ref: str, exact: bool = False) -> Any:
        raise NotImplementedError  # Store's

    def export_artifacts(self) -> list[dict[str, Any]]:
        """Every artefact digest this store holds, as rows (a Ray step's private store sends
        the digests of the stages it wrote back to the driver with its run rows)."""
        found = self.db.execute("SELECT stage, key, marker_sha256, files, recorded FROM artifacts")
        cols = ("stage", "key", "marker_sha256", "files", "recorded")
        return [dict(zip(cols, r, strict=True)) for r in found]

    def import_artifacts(self, rows: Collection[dict[str, Any]]) -> None:
        """Record digests exported by another store (the same stage and key: the same files)."""
        with self.db:
            for row in rows:
                self._insert("artifacts", row)

    # rows moved between stores (ipbench.engine.executors) ----------------------------------------
    def export_run(self, run_id: str) -> dict[str, Any]:
        """A run's rows as plain data (run, stages, metrics columns as stored), for a worker
        with a private store to send to the driver, whose ``import_run`` writes them. Only
        rows that verify leave the store: a row that does not is an error, never passed on
        to be tagged by the receiving store."""

        def rows(table: str) -> list[dict[str, Any]]:
            found = self.db.execute(
                f"SELECT * FROM {table} WHERE run_id=? ORDER BY rowid", (run_id,)
            ).fetchall()
            kept = self._checked(table, found)
            if len(kept) != len(found):
                raise IpbenchError(
                    f"run {run_id}: {len(found) - len(kept)} {table} row(s) do not verify "
                    "under the store's owner key; not exported"
                )
            return [
                {k: v for k, v in zip(r.keys(), tuple(r), strict=True) if k != "mac"} for r in kept
            ]

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
            # the rows are this store's now: tagged under its key (the exporting store's tags,
            # if any, are another key's)
            for table in ("runs", "stages", "metrics"):
                self._seal(table, run_id)
        return [s["name"] for s in rows["stages"] if s["status"] == "done" and not s["cached"]]

    def _insert(self, table: str, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(
            f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})", tuple(row.values())
        )
