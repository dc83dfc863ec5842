"""Results bundles: the rows behind a board, exported, read back and regenerating the board
byte for byte; refused or labelled where they would mix with a store's own runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_runs import run_tiny
from typer.testing import CliRunner

from ipbench.cli.main import app
from ipbench.core.errors import IpbenchError
from ipbench.store.bundle import export_bundle, import_bundle, read_bundle
from ipbench.store.results import Store


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory) -> Path:
    wd = tmp_path_factory.mktemp("bundle-store")
    run_tiny(wd, scheme="none")
    run_tiny(wd, scheme="mlock")
    return wd


def cli(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def board_files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_a_board_regenerates_byte_for_byte_from_its_bundle_alone(store_dir, tmp_path):
    bundle = tmp_path / "synthetic-smoke.bundle.jsonl"
    cli("export", "--workdir", str(store_dir), "--out", str(bundle))
    text = bundle.read_text()
    assert "owner.key" not in text and 'safetensors"' not in text.replace(
        '"name":"token_examples.safetensors"', ""
    )  # rows and token examples, no weights
    header, rows = read_bundle(bundle)
    assert header["runs"] == 2 and {r["table"] for r in rows} >= {"runs", "stages", "metrics"}
    cli("leaderboard", "--workdir", str(store_dir), "--out", str(tmp_path / "from-store"))
    cli("leaderboard", "--from", str(bundle), "--out", str(tmp_path / "from-bundle"))
    a, b = board_files(tmp_path / "from-store"), board_files(tmp_path / "from-bundle")
    assert a.keys() == b.keys() and any(k.endswith("-smoke.md") for k in a)
    assert [k for k in a if a[k] != b[k]] == []
    again = tmp_path / "again.jsonl"  # export is byte-stable
    cli("export", "--workdir", str(store_dir), "--out", str(again))
    assert again.read_bytes() == bundle.read_bytes()


def test_a_bundle_from_another_owner_is_labelled_on_the_board(store_dir, tmp_path, monkeypatch):
    bundle = tmp_path / "b.jsonl"
    store = Store(store_dir, create=False)
    export_bundle(store, bundle)
    store.close()
    mine = tmp_path / "mine"
    monkeypatch.setenv("IPBENCH_OWNER_KEY", "7a" * 32)  # another owner's store
    run_tiny(mine, scheme="none")
    target = Store(mine, create=False)
    (own,) = [r.run_id for r in target.list_runs()]
    own_metrics = target.metrics(own)
    ids = import_bundle(target, bundle)
    runs = {r.run_id: r for r in target.list_runs()}
    assert own not in ids and target.metrics(own) == own_metrics  # this store's run is kept
    target.close()
    assert ids and all(runs[i].provenance["imported"]["foreign_owner"] for i in ids)
    cli("leaderboard", "--workdir", str(mine), "--out", str(tmp_path / "board"))
    md = next((tmp_path / "board").glob("*-smoke.md")).read_text()
    assert "Imported rows, labelled" in md and "another owner key" in md


def test_a_bundle_of_other_code_is_refused_unless_labelled(store_dir, tmp_path):
    bundle = tmp_path / "b.jsonl"
    store = Store(store_dir, create=False)
    export_bundle(store, bundle)
    store.close()
    lines = bundle.read_text().splitlines()
    edited = []
    for line in lines:
        row = json.loads(line)
        if row.get("table") == "runs" and row["scheme"] == "mlock":
            prov = json.loads(row["provenance"])
            prov["plugin_code"]["scheme:mlock"] = "0" * 16  # made by other mlock code
            row["provenance"] = json.dumps(prov)
            row["run_id"] = "aaaaaaaaaaaa"
        edited.append(json.dumps(row) if "table" in row else line)
    edited = [
        e.replace(f'"run_id": "{_mlock_id(lines)}"', '"run_id": "aaaaaaaaaaaa"') for e in edited
    ]
    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(edited) + "\n")
    mixed = tmp_path / "mixed"
    shutil.copytree(store_dir, mixed)
    target = Store(mixed, create=False)
    with pytest.raises(IpbenchError, match="mlock's code 0000000000000000 differs"):
        import_bundle(target, other)
    assert "aaaaaaaaaaaa" not in {r.run_id for r in target.list_runs()}  # nothing written
    import_bundle(target, other, allow_mixed=True)
    rec = target.get_run("aaaaaaaaaaaa", exact=True)
    target.close()
    assert rec is not None and "differs" in rec.provenance["imported"]["mixed"][0]


def _mlock_id(lines: list[str]) -> str:
    for line in lines:
        row = json.loads(line)
        if row.get("table") == "runs" and row["scheme"] == "mlock":
            return row["run_id"]
    raise AssertionError("no mlock run")


HEADER = '{"header": {"format": "ipbench-bundle", "format_version": 1, "schema": 2}}\n'


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty, not a bundle"),
        ('{"rows": 1}\n', "not an ipbench bundle"),
        ('{"header": {"format": "ipbench-bundle", "format_version": 9}}\n', "bundle format 9"),
        (
            '{"header": {"format": "ipbench-bundle", "format_version": 1, "schema": 0}}\n',
            "store layout 0",
        ),
        ("[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 32"),
        (
            '{"header": {"format": "ipbench-bundle", "format_version": 1, "schema": 2}}\n'
            '{"table": "weights"}\n',
            "not a bundle row",
        ),
    ],
)
def test_a_damaged_bundle_is_one_clear_error(tmp_path, content, message):
    path = tmp_path / "b.jsonl"
    path.write_text(content)
    with pytest.raises(IpbenchError, match=message):
        read_bundle(path)


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_stage_still_running_in_a_finished_run_is_not_exported(store_dir, tmp_path):
    """An attack being added to a finished run, or a recompute cut off by a crash, leaves a
    `running` stage row: it has no result yet, so neither it nor its old metrics are published."""
    wd = tmp_path / "wd"
    shutil.copytree(store_dir, wd)
    store = Store(wd)
    run = next(r for r in store.list_runs() if r.scheme == "mlock")
    assert store.stage(run.run_id, "evaluate")["status"] == "done"
    store.begin_stage(run.run_id, "evaluate", "a-new-key")  # recomputing, then cut off
    store.close()
    bundle = tmp_path / "b.jsonl"
    cli("export", "--workdir", str(wd), "--out", str(bundle))
    _, rows = read_bundle(bundle)
    mine = [r for r in rows if r.get("run_id") == run.run_id]
    assert not any(r["table"] == "stages" and r["status"] == "running" for r in rows)
    # neither the cut-off stage's row nor the metrics its earlier computation left
    assert not any(r["table"] == "stages" and r["name"] == "evaluate" for r in mine)
    assert not any(r["table"] == "metrics" and r["stage"] == "evaluate" for r in mine)
    assert {r["name"] for r in mine if r["table"] == "stages"} == {"baseline", "protect"}
    assert any(r["table"] == "metrics" and r["stage"] == "baseline" for r in mine)


def test_every_committed_board_regenerates_from_its_committed_bundle(tmp_path):
    """Every board in leaderboard/ has a bundle of its name in leaderboard/bundles/, and its
    Markdown, CSV and HTML regenerate byte for byte from the bundles alone (issue 35): the
    committed numbers are checkable by anyone, with no store and no GPU. The pages across
    datasets and the index come from all the bundles together, as the documented command
    (`ipbench leaderboard --from B1 --from B2 ... --out leaderboard`) makes them."""
    boards = sorted((REPO / "leaderboard").glob("*.md"))
    assert boards, "no committed board"
    bundles = sorted((REPO / "leaderboard" / "bundles").glob("*.jsonl"))
    for board in boards:
        if board.stem.endswith("-across-datasets"):
            continue
        bundle = REPO / "leaderboard" / "bundles" / f"{board.stem}.jsonl"
        assert bundle.is_file(), f"{board.name} has no bundle {bundle.name}"
    out = tmp_path / "board"
    cli("leaderboard", *(a for b in bundles for a in ("--from", str(b))), "--out", str(out))
    for board in boards:
        stem = board.stem
        for ext in ("md", "csv", "html"):
            made = (out / f"{stem}.{ext}").read_bytes()
            assert made == board.with_suffix(f".{ext}").read_bytes(), f"{stem}.{ext} differs"
    index = REPO / "leaderboard" / "index.html"
    assert (out / "index.html").read_bytes() == index.read_bytes(), "index.html differs"
