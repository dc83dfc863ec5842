"""Results authenticated by the owner key (issue 34, item 1): each tampering route that a
plain digest beside the data let through is refused, or left out of what readers print."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ipbench.cli.main import app
from ipbench.core.authenticity import check_record, results_key, sign_record, signing
from ipbench.core.errors import CorruptArtifactError, IpbenchError
from ipbench.core.integrity import manifest, sha256_bytes
from ipbench.store.results import Store

cli = CliRunner()


def _copy(tmp_path: Path, finished) -> Path:
    src, _ = finished
    wd = tmp_path / "wd"
    shutil.copytree(src, wd)
    return wd


def _evaluate_folder(wd: Path) -> Path:
    return next(p for p in (wd / "artifacts" / "evaluate").iterdir() if p.is_dir())


def _forge_marker(folder: Path, wd: Path, a_ad: float = 99.9) -> None:
    """A_ad rewritten, digests made to agree again, the ledger row made to agree too: all a
    plain digest could check."""
    path = folder / "stage.json"
    marker = json.loads(path.read_text())
    marker["info"]["metrics"]["A_ad"] = a_ad
    marker["files"] = manifest(folder, skip=("stage.json",))
    blob = json.dumps(marker, indent=2).encode()
    path.write_bytes(blob)
    db = sqlite3.connect(wd / "ipbench.sqlite")
    with db:
        db.execute(
            "UPDATE artifacts SET marker_sha256=? WHERE stage='evaluate'", (sha256_bytes(blob),)
        )
    db.close()


def test_a_forged_marker_is_refused_with_or_without_its_ledger_row(tmp_path, finished):
    from tiny_runs import run_tiny

    wd = _copy(tmp_path, finished)
    _forge_marker(_evaluate_folder(wd), wd)
    with pytest.raises(CorruptArtifactError, match="does not verify under this store's owner key"):
        run_tiny(wd)
    for leftover in wd.glob("ipbench.sqlite*"):  # the whole ledger gone
        leftover.unlink()
    with pytest.raises(CorruptArtifactError, match="does not verify"):
        run_tiny(wd)


def test_a_file_its_manifest_and_its_row_edited_together_are_refused(tmp_path, finished):
    from tiny_runs import run_tiny

    wd = _copy(tmp_path, finished)
    folder = next(p for p in (wd / "artifacts" / "protect").iterdir() if p.is_dir())
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-7] ^= 0x10
    weights.write_bytes(bytes(data))
    marker = json.loads((folder / "stage.json").read_text())
    marker["files"] = manifest(folder, skip=("stage.json",))
    blob = json.dumps(marker, indent=2).encode()
    (folder / "stage.json").write_bytes(blob)
    db = sqlite3.connect(wd / "ipbench.sqlite")
    with db:
        db.execute(
            "UPDATE artifacts SET marker_sha256=?, files=? WHERE stage='protect'",
            (sha256_bytes(blob), json.dumps(marker["files"], sort_keys=True)),
        )
    db.close()
    with pytest.raises(CorruptArtifactError, match="does not verify"):
        run_tiny(wd)


def test_an_edited_value_never_reaches_show_runs_leaderboard_or_export(tmp_path, finished):
    wd = _copy(tmp_path, finished)
    db = sqlite3.connect(wd / "ipbench.sqlite")
    with db:
        db.execute("UPDATE metrics SET value=99.9 WHERE name='A_ad' AND stage='evaluate'")
    db.close()
    shown = cli.invoke(app, ["show", "last", "--workdir", str(wd), "--json"])
    assert shown.exit_code == 0, shown.output
    body = shown.stdout
    assert "99.9" not in body and '"A_ud"' in body
    assert "metrics row" in shown.stderr and "does not verify" in shown.stderr
    listed = cli.invoke(app, ["runs", "--workdir", str(wd), "--json"])
    assert listed.exit_code == 0 and "99.9" not in listed.stdout
    board = cli.invoke(app, ["leaderboard", "--workdir", str(wd), "--out", str(tmp_path / "lb")])
    assert board.exit_code == 0, board.output
    page = next((tmp_path / "lb").glob("*.md")).read_text()
    assert "99.90" not in page and "**Left out:** metrics row" in page
    exported = cli.invoke(app, ["export", "--workdir", str(wd), "--out", str(tmp_path / "b.jsonl")])
    assert exported.exit_code == 2 and "not exported" in exported.stderr
    assert not (tmp_path / "b.jsonl").exists()


def test_an_edited_run_row_is_refused_by_name(tmp_path, finished):
    wd = _copy(tmp_path, finished)
    db = sqlite3.connect(wd / "ipbench.sqlite")
    with db:
        db.execute("UPDATE runs SET scheme='none'")  # an mlock run relabelled
    db.close()
    store = Store(wd, create=False)
    assert store.list_runs() == []
    with pytest.raises(IpbenchError, match=r"runs row .* does not verify"):
        store.require_run("last")


def test_rows_written_without_the_key_are_read_unverified_and_said_so(tmp_path, finished):
    wd = _copy(tmp_path, finished)
    shutil.rmtree(wd / "owner")
    store = Store(wd, create=False)
    assert len(store.list_runs()) == 1
    assert any("not verified" in p and "owner.key is missing" in p for p in store.problems)


def test_an_edited_gallery_image_is_left_out(tmp_path, finished):
    from ipbench.store.bundle import TOKEN_EXAMPLES, token_examples_file

    wd = _copy(tmp_path, finished)
    store = Store(wd, create=False)
    run_id = store.list_runs()[0].run_id
    found = token_examples_file(store, run_id)
    assert found is not None and not store.problems
    data = bytearray(found.read_bytes())
    data[-3] ^= 0x01
    found.write_bytes(bytes(data))
    assert token_examples_file(store, run_id) is None
    assert any(TOKEN_EXAMPLES in p for p in store.problems)


def test_an_edited_checkpoint_record_is_refused_only_under_a_key():
    key = results_key(b"k" * 32)
    with signing(key):
        record = sign_record({"step": 500, "sha256": "ab"}, "token-trajectory")
        check_record(record, "token-trajectory", "ckpt", "delete it")
        with pytest.raises(CorruptArtifactError, match="does not verify"):
            check_record({**record, "step": 9000}, "token-trajectory", "ckpt", "delete it")
        with pytest.raises(CorruptArtifactError, match="does not verify"):  # another purpose
            check_record(record, "training-checkpoint", "ckpt", "delete it")
        with pytest.raises(CorruptArtifactError, match="no authentication tag"):
            check_record({"step": 500}, "token-trajectory", "ckpt", "delete it")
    check_record({"step": 9000}, "token-trajectory", "ckpt", "delete it")  # no store, no key


def test_a_token_trajectory_checkpoint_edited_is_never_resumed(tmp_path):
    """A changed step or tensor in ActiveDaemon's trajectory is refused (it used to resume
    training from the forged state under the same keys)."""
    from ipbench.schemes._poisoning.tokens.generator import GeneratorTraining, TokenConfig
    from ipbench.schemes._poisoning.tokens.trajectory import (
        LoopState,
        load_checkpoint,
        save_checkpoint,
        usable_checkpoint,
    )

    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    cfg = TokenConfig(steps=1000)
    t = GeneratorTraining(x, 16, cfg, torch.device("cpu"), seed=0)
    with signing(results_key(b"o" * 32)):
        save_checkpoint(tmp_path, "step_500", t, LoopState(step=500))
        name, _ = usable_checkpoint(tmp_path, cfg)
        load_checkpoint(tmp_path, name, t)
        weights = tmp_path / "step_500.safetensors"
        original = weights.read_bytes()
        tensors = bytearray(original)
        tensors[-5] ^= 0x01
        weights.write_bytes(bytes(tensors))
        with pytest.raises(CorruptArtifactError, match="sha256 differs"):
            load_checkpoint(tmp_path, name, t)
        weights.write_bytes(original)
        meta = json.loads((tmp_path / "step_500.json").read_text())
        meta["step"] = 900
        (tmp_path / "step_500.json").write_text(json.dumps(meta))
        with pytest.raises(CorruptArtifactError, match="does not verify"):
            usable_checkpoint(tmp_path, cfg)
        # nested past any parser's depth: one clear error, not a RecursionError or a resume
        (tmp_path / "step_500.json").write_text("[" * 200_000 + "]" * 200_000)
        with pytest.raises(IpbenchError, match="nested deeper than 32 levels"):
            usable_checkpoint(tmp_path, cfg)
        with pytest.raises(IpbenchError, match="nested deeper than 32 levels"):
            load_checkpoint(tmp_path, name, t)
        (tmp_path / "step_500.json").write_text('{"step": 5')  # a torn write is passed over
        assert usable_checkpoint(tmp_path, cfg) is None
    assert hashlib.sha256(original).hexdigest() == meta["sha256"]


def test_a_marker_nested_200000_deep_is_one_clear_error(tmp_path, finished):
    from tiny_runs import run_tiny

    wd = _copy(tmp_path, finished)
    marker = _evaluate_folder(wd) / "stage.json"
    marker.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(CorruptArtifactError, match="nested deeper than 32 levels"):
        run_tiny(wd)
