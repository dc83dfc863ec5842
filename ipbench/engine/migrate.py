"""Rows of a store written before ``SCHEMA_VERSION`` 2, upgraded in place (one transaction,
run by ``migrate_store``: ``ipbench migrate WORKDIR``).

- Artefact paths were stored as the run's command line named them (absolute, or relative to
  the directory the run started in); they become relative to the work directory.
- Attack stages were named by the attack alone, so a second setting replaced the first; each
  row is renamed by the settings its cached stage records (``attack_stage_name``), and its
  metrics are read back from that stage, so a row never mixes two settings' numbers.

Stage folders themselves get their digests on first read (``StageCache``), not here.
"""

from __future__ import annotations

import ast
import json
import sqlite3
from pathlib import Path
from typing import Any

ARTIFACTS = "artifacts"


def relative_artifact(stored: str, workdir: Path) -> str:
    """``/old/place/wd/artifacts/baseline/KEY`` or ``wd/artifacts/...`` -> ``artifacts/
    baseline/KEY`` (from the last ``artifacts`` folder on); other paths are kept."""
    parts = Path(stored).parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == ARTIFACTS:
            return Path(*parts[i:]).as_posix()
    return stored


def _marker(workdir: Path, folder: str) -> dict[str, Any] | None:
    try:
        data = json.loads((workdir / folder / "stage.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def stored_config(value: Any) -> dict[str, Any] | None:
    """An attack config as a stage marker holds it: a JSON object, or (markers written before
    they stored JSON) the dataclass's repr, ``PruneConfig(rates=(0.5,), max_test=None)``, read
    with ``ast.literal_eval`` per field (nothing is executed); None when neither."""
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        return None
    try:
        call = ast.parse(value, mode="eval").body
        if not isinstance(call, ast.Call) or call.args:
            return None
        return {kw.arg: _plain(ast.literal_eval(kw.value)) for kw in call.keywords if kw.arg}
    except (SyntaxError, ValueError):
        return None


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def upgrade_rows(db: sqlite3.Connection, workdir: Path) -> None:
    """The older rows of ``db`` (a transaction is open) in the current layout: paths and
    attack names as version 2 writes them, markers authenticated (version 3)."""
    _rename_rows(db, workdir)
    sealed = seal_markers(db, workdir)
    digested = sum("predates" in line for line in sealed)
    if sealed:
        print(
            f"{len(sealed)} stage marker(s) authenticated under the owner key"
            + (f", {digested} of them given file digests first" if digested else "")
        )


def _rename_rows(db: sqlite3.Connection, workdir: Path) -> None:
    """Version 0's rows in version 2's layout (relative paths, attack stages by setting)."""
    from ipbench.engine.request import attack_stage_name

    rows = db.execute("SELECT run_id, name, artifact FROM stages").fetchall()
    for run_id, name, artifact in rows:
        if not artifact:
            continue
        rel = relative_artifact(artifact, workdir)
        if rel != artifact:
            db.execute(
                "UPDATE stages SET artifact=? WHERE run_id=? AND name=?", (rel, run_id, name)
            )
    presets = dict(db.execute("SELECT run_id, preset FROM runs").fetchall())
    attack_rows = db.execute(
        "SELECT run_id, name, artifact, status FROM stages WHERE name LIKE 'attack:%'"
    ).fetchall()
    for run_id, name, artifact, status in attack_rows:
        if "(" in name or not artifact:
            continue
        marker = _marker(workdir, artifact)
        material = (marker or {}).get("key_material") or {}
        config = stored_config(material.get("config"))
        if config is None:
            continue
        renamed = attack_stage_name(name.split(":", 1)[1], config, presets[run_id])
        if renamed != name:
            db.execute(
                "DELETE FROM stages WHERE run_id=? AND name=?", (run_id, renamed)
            )  # an older row under the new name loses to the latest setting's
            db.execute(
                "UPDATE stages SET name=? WHERE run_id=? AND name=?", (renamed, run_id, name)
            )
        # The row's metrics may mix two settings (a later one replaced some names): keep
        # only the names the stage it points to recorded.
        info = (marker or {}).get("info") or {}
        if status == "done" and isinstance(info.get("metrics"), dict):
            names = set(info["metrics"]) | set(info.get("notes") or {})
            have = db.execute(
                "SELECT name FROM metrics WHERE run_id=? AND stage=?", (run_id, name)
            ).fetchall()
            for (metric,) in have:
                if metric not in names:
                    db.execute(
                        "DELETE FROM metrics WHERE run_id=? AND stage=? AND name=?",
                        (run_id, name, metric),
                    )
        if renamed != name:
            db.execute(
                "UPDATE metrics SET stage=? WHERE run_id=? AND stage=?", (renamed, run_id, name)
            )


def seal_markers(db: sqlite3.Connection, workdir: Path) -> list[str]:
    """Vouch, once and under the owner key, for the stage markers of a store from before
    markers were authenticated; returns a line per marker sealed. A marker without file
    digests gets them now; one whose bytes differ from the digest the store recorded for it
    is left unsealed (it changed after it was written) and is refused when read."""
    from ipbench.core.authenticity import TAG, results_key
    from ipbench.core.integrity import manifest, sha256_bytes, write_atomic
    from ipbench.core.owner import owner_key
    from ipbench.store.cache import DONE_MARKER, dump_marker, seal_marker

    key = results_key(owner_key(workdir))
    recorded = {
        (s, k): d for s, k, d in db.execute("SELECT stage, key, marker_sha256 FROM artifacts")
    }
    done = []
    for path in sorted((workdir / "artifacts").glob(f"*/*/{DONE_MARKER}")):
        folder = path.parent
        stage, stage_key = folder.parent.name, folder.name
        if "." in stage_key:  # a partial or discarded folder, never read as a stage
            continue
        raw = path.read_bytes()
        try:
            marker = json.loads(raw)
        except ValueError:
            continue  # unreadable: refused when read, as before
        if not isinstance(marker, dict) or TAG in marker:
            continue
        if "files" not in marker:
            marker = {**marker, "files": manifest(folder, skip=(DONE_MARKER,))}
            done.append(
                f"stage {stage} {stage_key} predates integrity records; digests recorded now"
            )
        elif recorded.get((stage, stage_key), sha256_bytes(raw)) != sha256_bytes(raw):
            continue
        else:
            done.append(f"stage {stage} {stage_key}: marker authenticated")
        sealed = seal_marker(marker, key)
        blob = dump_marker(sealed)
        write_atomic(path, blob)
        db.execute(
            "INSERT OR REPLACE INTO artifacts (stage, key, marker_sha256, files, recorded) "
            "VALUES (?,?,?,?,strftime('%s','now'))",
            (stage, stage_key, sha256_bytes(blob), json.dumps(sealed["files"], sort_keys=True)),
        )
    return done


def migrate_store(workdir: str | Path) -> tuple[int, int]:
    """Upgrade the store in ``workdir`` to the current layout, in place, in one transaction
    (a store that is current is left as it is). Returns (version before, version after).

    Explicit on purpose: renaming old attack rows needs each attack's stage naming, which
    opening a store must never load (``ipbench.store`` imports no plugin code)."""
    from ipbench.store.results import SCHEMA_VERSION, STORE_FILE, Store

    path = Path(workdir) / STORE_FILE
    before = None
    if path.is_file() and path.stat().st_size:
        db = sqlite3.connect(path)
        try:
            before = db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError:
            before = None  # Store names the damage below
        finally:
            db.close()
    Store(workdir, create=False, upgrade_rows=upgrade_rows).close()
    return (SCHEMA_VERSION if before is None else before), SCHEMA_VERSION
