"""Results bundles: every row behind a board in one diff-friendly file, read back anywhere.

A board (``leaderboard/D-P.md``) is only as checkable as the rows behind it, and those live in
one machine's store. ``export_bundle`` writes them as JSON Lines: a header (format, layout
version, ipbench version and commit, the owner key's public fingerprint, dataset and preset),
then one line per run, stage, metric and artefact digest, sorted, plus the token examples the
gallery draws (base64 safetensors). No weights and no secrets: the owner key, key seeds and
protected models stay in the store that made them. ``import_bundle`` writes the rows into a
store, where ``ipbench leaderboard`` reads them as it reads runs made there, so a user can add
runs of their own beside a committed board's.

What is refused, with the reason: a bundle of another store layout or format; runs of a scheme
whose plugin code or preset budget differs from the same scheme's runs already in the store
(``allow_mixed`` imports them labelled ``imported.mixed`` in their provenance). Runs made under
another owner key than the store's are imported labelled ``imported.foreign_owner`` (two
owners draw different secrets; their numbers compare, and the board says whose they are). An
imported run always carries ``imported`` in its provenance (bundle name, owner fingerprint).
The file is parsed with a nesting limit and a size limit, never unpickled.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from ipbench.core.errors import IpbenchError
from ipbench.core.jsonsafe import loads_limited
from ipbench.core.owner import FINGERPRINT_FILE
from ipbench.core.version import __version__
from ipbench.store.results import SCHEMA_VERSION, Store

FORMAT = "ipbench-bundle"
FORMAT_VERSION = 1
# store layouts whose rows a bundle holds alike: layout 3 only adds each row's tag, and tags
# never leave a store (the importing store tags the rows under its own key)
ROW_LAYOUTS = (2, 3)
MAX_BYTES = 256 * 2**20  # a board's rows are a few MB; anything larger is not a bundle
TOKEN_EXAMPLES = "token_examples.safetensors"  # in the evaluate stage's folder
IMPORTED_DIR = "imported"  # WORKDIR/imported/RUN/token_examples.safetensors


def _dump(row: dict[str, Any]) -> str:
    return json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def owner_fingerprint(workdir: Path) -> str | None:
    path = workdir / FINGERPRINT_FILE
    return path.read_text().strip() if path.is_file() else None


def export_bundle(
    store: Store, out: str | Path, dataset: str | None = None, preset: str | None = None
) -> int:
    """Write the finished runs of ``dataset``/``preset`` (all when None) and their rows to
    ``out``; returns how many runs. Byte-stable: the same rows give the same file."""
    runs = [
        r
        for r in store.list_runs()
        if r.status == "done" and dataset in (None, r.dataset) and preset in (None, r.preset)
    ]
    if store.reading_key() is None:
        raise IpbenchError(
            f"{store.workdir} has no owner/owner.key: an export publishes rows as the owner's, "
            "so it needs the key they were written under to check them first"
        )
    if not runs:
        what = " ".join(x for x in (dataset, preset) if x) or "any dataset"
        raise IpbenchError(f"no finished run for {what} in {store.path} to export")
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "schema": SCHEMA_VERSION,
        "dataset": dataset, "preset": preset, "owner_fingerprint": owner_fingerprint(store.workdir),
        "runs": len(runs), "exported_by": f"ipbench {__version__}",
    }  # fmt: skip
    lines = [_dump({"header": header})]
    keys: set[tuple[str, str]] = set()
    for rec in sorted(runs, key=lambda r: r.run_id):
        rows = store.export_run(rec.run_id)
        lines.append(_dump({"table": "runs", **rows["run"]}))
        # a stage still running in a finished run (an attack being added, or a recompute cut
        # off) has no result yet: its row and whatever metrics it left are not published
        unfinished = {st["name"] for st in rows["stages"] if st.get("status") == "running"}
        rows["stages"] = [st for st in rows["stages"] if st["name"] not in unfinished]
        rows["metrics"] = [m for m in rows["metrics"] if m.get("stage") not in unfinished]
        for stage in rows["stages"]:  # the store's order, which tables and pages follow
            lines.append(_dump({"table": "stages", **stage}))
            if stage.get("artifact"):
                parts = Path(stage["artifact"]).parts
                keys.add((parts[-2], parts[-1]) if len(parts) >= 2 else ("", ""))
        for metric in rows["metrics"]:
            lines.append(_dump({"table": "metrics", **metric}))
        found = token_examples_file(store, rec.run_id)
        if found is not None:
            examples = found.read_bytes()
            lines.append(_dump({"table": "files", "run_id": rec.run_id, "name": TOKEN_EXAMPLES,
                                "sha256": hashlib.sha256(examples).hexdigest(),
                                "base64": base64.b64encode(examples).decode()}))  # fmt: skip
    if store.refused:  # every run listed and every row and file read: nothing left out
        raise IpbenchError(f"not exported: {'; '.join(store.refused)}")
    for row in sorted(store.export_artifacts(), key=lambda a: (a["stage"], a["key"])):
        if (row["stage"], row["key"]) in keys:
            lines.append(_dump({"table": "artifacts", **row}))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(lines) + "\n")
    return len(runs)


def imported_examples(workdir: Path, run_id: str) -> Path:
    """Where an import puts a run's token examples (it has no stage folder of its own)."""
    return workdir / IMPORTED_DIR / run_id / TOKEN_EXAMPLES


def token_examples_file(store: Store, run_id: str) -> Path | None:
    """A run's stored token examples: its evaluation's, or an import's copy; None: none, or
    a file that does not match the digest its (authenticated) record holds, which is named
    in ``store.refused``."""
    st = store.stage(run_id, "evaluate")
    want: str | None = None
    path = imported_examples(store.workdir, run_id)
    if st and st.get("artifact") and (Path(st["artifact"]) / TOKEN_EXAMPLES).is_file():
        path = Path(st["artifact"]) / TOKEN_EXAMPLES
        want = _marker_digest(store, Path(st["artifact"]), TOKEN_EXAMPLES)
    elif path.is_file():
        run = store.get_run(run_id, exact=True)
        imported = (run.provenance.get("imported") or {}) if run else {}
        want = (imported.get("files") or {}).get(TOKEN_EXAMPLES)
    else:
        return None
    if store.reading_key() is None:
        return path  # read unverified; the store's problems say so
    if want is None or hashlib.sha256(path.read_bytes()).hexdigest() != want:
        store.refuse(
            f"{path}: not the token examples its run recorded (edited or swapped): left out"
        )
        return None
    return path


def _marker_digest(store: Store, folder: Path, name: str) -> str | None:
    """The sha256 a stage's authenticated marker records for file ``name``; None where the
    marker is missing or does not verify (named in ``store.refused``)."""
    from ipbench.store.cache import DONE_MARKER, check_marker

    key = store.reading_key()
    try:
        marker = loads_limited((folder / DONE_MARKER).read_text(), str(folder / DONE_MARKER))
        check_marker(marker, key, folder / DONE_MARKER, "its numbers are left out")
    except (OSError, IpbenchError) as exc:
        store.refuse(str(exc))
        return None
    return ((marker.get("files") or {}).get(name) or {}).get("sha256")


def read_bundle(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, rows) of a bundle, checked: its format, layout version, size and nesting."""
    path = Path(path)
    if not path.is_file():
        raise IpbenchError(f"{path}: no bundle file there (ipbench export writes one)")
    if path.stat().st_size > MAX_BYTES:
        raise IpbenchError(f"{path}: {path.stat().st_size} bytes, over a bundle's {MAX_BYTES}")
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise IpbenchError(f"{path}: not a bundle (unreadable as UTF-8 text: {exc})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise IpbenchError(f"{path}: empty, not a bundle")
    parsed = [loads_limited(line, f"{path}:{i}") for i, line in enumerate(lines, 1)]
    first = parsed[0]
    header = first.get("header") if isinstance(first, dict) else None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise IpbenchError(f"{path}: not an ipbench bundle (its first line has no header)")
    if header.get("format_version") != FORMAT_VERSION:
        raise IpbenchError(
            f"{path}: bundle format {header.get('format_version')}; this ipbench reads "
            f"{FORMAT_VERSION}"
        )
    if header.get("schema") not in ROW_LAYOUTS:
        raise IpbenchError(
            f"{path}: rows of store layout {header.get('schema')}; this ipbench reads "
            f"{', '.join(map(str, ROW_LAYOUTS))}: import it with the ipbench that exported it, then "
            "`ipbench migrate` that store and export again"
        )
    rows = parsed[1:]
    tables = {"runs", "stages", "metrics", "artifacts", "files"}
    for i, row in enumerate(rows, 2):
        if not isinstance(row, dict) or row.get("table") not in tables:
            raise IpbenchError(f"{path}:{i}: not a bundle row (table one of {sorted(tables)})")
    return header, rows


def _fields(row: dict[str, Any]) -> dict[str, Any]:
    """A bundle row as its table's columns (the ``table`` tag dropped; the row is not changed)."""
    return {k: v for k, v in row.items() if k != "table"}


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """What must agree between two runs of one board: the preset's budget."""
    return {k: config.get(k) for k in ("preset", "train", "data", "eval", "model")}


def import_bundle(store: Store, path: str | Path, allow_mixed: bool = False) -> list[str]:
    """Write a bundle's runs into ``store``; returns their ids. Refuses rows that would mix
    silently with the store's own (see the module docstring); ``allow_mixed`` labels them."""
    header, rows = read_bundle(path)
    name = Path(path).name
    mine = owner_fingerprint(store.workdir)
    theirs = header.get("owner_fingerprint")
    existing = [r for r in store.list_runs() if r.status == "done"]
    problems: list[str] = []
    by_run: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["table"] == "runs":
            by_run[row["run_id"]] = {"run": _fields(row), "stages": [], "metrics": [], "files": []}
    for row in rows:
        if row["table"] in ("stages", "metrics", "files"):
            rid = row.get("run_id")
            if rid not in by_run:
                raise IpbenchError(f"{path}: a row names run {rid}, which the bundle does not hold")
            by_run[rid][row["table"]].append(_fields(row))
    for parts in by_run.values():  # every file checked before anything is written
        for f in parts["files"]:
            f["data"] = base64.b64decode(f["base64"])
            if hashlib.sha256(f["data"]).hexdigest() != f["sha256"]:
                raise IpbenchError(
                    f"{path}: run {parts['run']['run_id']}'s {f['name']} does not match its sha256"
                )
    for rid, parts in by_run.items():
        run = parts["run"]
        config = loads_limited(run["config"], f"{path}: run {rid} config")
        prov = loads_limited(run["provenance"], f"{path}: run {rid} provenance")
        code = (prov.get("plugin_code") or {}).get(f"scheme:{run['scheme']}")
        for other in existing:
            if (other.scheme, other.dataset, other.preset) != (
                run["scheme"],
                run["dataset"],
                run["preset"],
            ) or other.run_id == rid:
                continue
            their_code = other.provenance.get("plugin_code", {}).get(f"scheme:{other.scheme}")
            if code and their_code and code != their_code:
                problems.append(
                    f"run {rid}: {run['scheme']}'s code {code} differs from this store's run "
                    f"{other.run_id} ({their_code})"
                )
            elif _comparable(config) != _comparable(other.config):
                problems.append(
                    f"run {rid}: preset {run['preset']}'s budget differs from this store's run "
                    f"{other.run_id} of {run['scheme']}"
                )
            break
    if problems and not allow_mixed:
        shown = "; ".join(dict.fromkeys(problems))
        raise IpbenchError(
            f"{path}: refused, it would mix with this store's runs: {shown}. Import it into a "
            "new --workdir, or pass --allow-mixed to import it labelled"
        )
    imported: dict[str, Any] = {"bundle": name, "owner_fingerprint": theirs}
    if mine and theirs and mine != theirs:  # another owner's secrets: comparable, but labelled
        imported["foreign_owner"] = True
    if problems:
        imported["mixed"] = list(dict.fromkeys(problems))
    own = {r.run_id: r for r in store.list_runs() if "imported" not in r.provenance}
    kept = [rid for rid in by_run if rid in own]  # the same configuration, run here: ours wins
    for rid in kept:
        del by_run[rid]
    for rid, parts in by_run.items():
        run = parts["run"]
        prov = json.loads(run["provenance"])
        own_files = {f["name"]: f["sha256"] for f in parts["files"]}
        run["provenance"] = json.dumps({**prov, "imported": {**imported, "files": own_files}})
        store.import_run(
            {"run": run, "stages": parts["stages"], "metrics": parts["metrics"]},
            new_attempt=False,
        )
        for f in parts["files"]:
            target = imported_examples(store.workdir, rid)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(f["data"])
    store.import_artifacts([_fields(r) for r in rows if r["table"] == "artifacts"])
    return list(by_run)


__all__ = ["export_bundle", "import_bundle", "loads_limited", "read_bundle"]
