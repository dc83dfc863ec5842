"""The store's rows authenticated under the owner key: each run, stage and metric row carries
an HMAC (``mac``) of all its other columns, written in the transaction that writes the row and
checked when the row is read (``ipbench.core.authenticity``). A mixin of ``Store``, kept apart
so the store module stays one job."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from ipbench.core.authenticity import matches, results_key, tag
from ipbench.core.owner import existing_owner_key, owner_key

# each authenticated table and the columns that name one of its rows
SEALED = {"runs": ("run_id",), "stages": ("run_id", "name"), "metrics": ("run_id", "stage", "name")}


def row_body(row: sqlite3.Row) -> dict[str, Any]:
    """A row's columns but its tag (``sqlite3.Row`` iterates values, not names)."""
    out = dict(zip(row.keys(), tuple(row), strict=True))
    out.pop("mac", None)
    return out


class StoreSealing:
    """``Store``'s row tags: made on every write, checked on every read."""

    db: sqlite3.Connection
    workdir: Path
    problems: list[str]  # what a reader is told: rows left out, or that nothing was checked
    refused: list[str]  # the part of ``problems`` that left something out
    _read_key: bytes | bool | None = False  # False: not looked up yet
    _write_key: bytes | None = None

    def signing_key(self) -> bytes:
        """The key rows are tagged with: derived from the owner key (made on first use)."""
        if self._write_key is None:
            self._write_key = results_key(owner_key(self.workdir))
        return self._write_key

    def reading_key(self) -> bytes | None:
        """The key rows are checked with; None (and a problem said once) without ``owner/``."""
        if self._read_key is False:
            found = existing_owner_key(self.workdir)
            self._read_key = None if found is None else results_key(found)
            if found is None:
                self.problems.append(
                    f"not verified: {self.workdir}/owner/owner.key is missing or not readable "
                    "by this user, so no row could be checked against it (read as the store's "
                    "owner, or copy its owner/ folder beside it, to verify)"
                )
        return self._read_key  # type: ignore[return-value]

    def _seal(self, table: str, *ids: object) -> None:
        """Tag the rows of ``table`` whose key columns start with ``ids`` (in the caller's
        transaction), as they are stored now."""
        cols = SEALED[table][: len(ids)]
        where = " AND ".join(f"{c}=?" for c in cols) or "1"
        key = self.signing_key()
        for row in self.db.execute(f"SELECT rowid AS _rowid, * FROM {table} WHERE {where}", ids):
            body = row_body(row)
            rowid = body.pop("_rowid")
            self.db.execute(
                f"UPDATE {table} SET mac=? WHERE rowid=?", (tag(key, table, body), rowid)
            )

    def reseal(self) -> None:
        """Tag every row as it is now (``ipbench migrate``: rows of a store from before rows
        were authenticated are vouched for once, by the owner, in the transaction open)."""
        for table in SEALED:
            self._seal(table)

    def _checked(self, table: str, rows: list[sqlite3.Row]) -> list[sqlite3.Row]:
        """``rows`` whose tag verifies; the others are named in ``problems`` and left out."""
        key = self.reading_key()
        if key is None:
            return rows
        kept = []
        for row in rows:
            if matches(key, table, row_body(row), dict(row).get("mac")):
                kept.append(row)
                continue
            ids = ", ".join(str(row[c]) for c in SEALED[table])
            self.refuse(
                f"{table} row ({ids}) does not verify under this store's owner key (edited in "
                "the store, or written without the key): left out"
            )
        return kept

    def refuse(self, problem: str) -> None:
        """Record that something read was left out, and why (once)."""
        for seen in (self.problems, self.refused):
            if problem not in seen:
                seen.append(problem)
