"""The owner's key seed: secrets are drawn from it, not from the published run seed."""

from __future__ import annotations

import pytest
import torch

from ipbench.core.errors import IpbenchError
from ipbench.core.owner import key_digest, key_seed, owner_key, record_key_seed
from ipbench.core.registry import presets, schemes


def test_key_seed_is_stable_in_a_store_and_differs_between_stores(tmp_path, monkeypatch):
    monkeypatch.delenv("IPBENCH_OWNER_KEY")  # fresh random keys, as outside the tests
    a, b = tmp_path / "a", tmp_path / "b"
    assert key_seed(a, 0) == key_seed(a, 0)  # reruns and resumes redraw the same secrets
    assert key_seed(a, 0) != key_seed(a, 1)
    assert key_seed(a, 0) != key_seed(b, 0)  # another owner, other secrets for the same seed
    assert key_seed(a, 0) not in (0, 1) and key_digest(key_seed(a, 0)) != key_digest(0)
    # a copied owner folder reproduces the store's secrets elsewhere
    (tmp_path / "c" / "owner").mkdir(parents=True)
    (tmp_path / "c" / "owner" / "owner.key").write_bytes((a / "owner" / "owner.key").read_bytes())
    assert key_seed(tmp_path / "c", 0) == key_seed(a, 0)


def test_a_given_owner_key_makes_the_same_secrets_in_every_new_store(tmp_path, monkeypatch):
    monkeypatch.setenv("IPBENCH_OWNER_KEY", "ab" * 32)
    assert key_seed(tmp_path / "a", 3) == key_seed(tmp_path / "b", 3)
    assert (tmp_path / "a" / "owner" / "owner.key").read_text() == "ab" * 32
    monkeypatch.setenv("IPBENCH_OWNER_KEY", "xyz")
    with pytest.raises(IpbenchError, match="IPBENCH_OWNER_KEY must be 64 hex digits"):
        key_seed(tmp_path / "c", 3)


def test_owner_files_are_private(tmp_path):
    owner_key(tmp_path)
    record_key_seed(tmp_path, "run1", 42)
    assert (tmp_path / "owner").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "owner" / "owner.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "owner" / "runs" / "run1.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("content", [b"", b"not hex", b"abcd"])
def test_a_damaged_owner_key_is_one_clear_error(tmp_path, content):
    (tmp_path / "owner").mkdir()
    (tmp_path / "owner" / "owner.key").write_bytes(content)
    with pytest.raises(IpbenchError, match="not an ipbench owner key"):
        key_seed(tmp_path, 0)


def test_a_thief_view_has_no_key(tmp_path):
    from ipbench.testing import task_context

    ctx = task_context(tmp_path, max_train=200, max_test=50)
    ctx.secret_generator("x")  # the owner draws
    with pytest.raises(IpbenchError, match="not part of a thief's view"):
        ctx.for_thief().secret_generator("x")
    with pytest.raises(IpbenchError, match="not part of a thief's view"):
        ctx.for_thief().secret_seed("x")


def test_the_mlock_sticker_is_not_the_run_seed_draw(tmp_path, monkeypatch):
    """The issue's case: the sticker used to equal torch.rand(3, 4, 4) under the run seed."""
    from ipbench.testing import task_context

    cls = schemes.get("mlock")
    scheme = cls(cls.Config())
    ctx = task_context(tmp_path, max_train=200, max_test=50)
    sticker = scheme.prepare(ctx).secrets["sticker"]
    s = scheme.config.sticker_size
    for seed in (ctx.seed, 1_000_003 * scheme.config.sticker_seed + ctx.seed):
        public = torch.rand(3, s, s, generator=torch.Generator().manual_seed(seed))
        assert not torch.equal(sticker, public)
    monkeypatch.delenv("IPBENCH_OWNER_KEY")  # another owner
    other = task_context(tmp_path / "other-store", max_train=200, max_test=50)
    assert not torch.equal(sticker, scheme.prepare(other).secrets["sticker"])
    assert presets.get("smoke")  # the task above is the smoke budget's


def test_the_kit_finds_a_secret_in_a_stolen_copy():
    """The conformance kit's leak check sees parameters, non-persistent buffers and plain
    tensor attributes (ActiveGuard's control layer held its confidence table as a buffer)."""
    from torch import nn

    from ipbench.schemes._activeguard.fingerprint import ControlLayer
    from ipbench.testing import secrets_in

    table = torch.tensor([0.2, 0.3, 0.4])
    leaky = ControlLayer(nn.Linear(4, 3), table, 0.05, 3, 0)
    assert secrets_in(leaky, {"confidences": table}) == ["confidences"]
    holder = nn.Linear(4, 3)
    holder.key = torch.arange(6.0)  # a plain attribute
    assert secrets_in(holder, {"key": torch.arange(6.0), "other": torch.ones(5)}) == ["key"]
    assert secrets_in(holder, {"w": holder.weight.detach().clone()}) == ["w"]
    clean = ControlLayer(nn.Linear(4, 3), torch.empty(0), 0.05, 3, 0)
    assert secrets_in(clean, {"confidences": table}) == []


def _key_of(folder: str) -> str:
    try:
        return owner_key(folder).hex()
    except IpbenchError as exc:
        return f"error: {exc}"


def test_processes_racing_to_make_the_key_agree_on_one(tmp_path, monkeypatch):
    """Eight processes start on a new store at once: none reads a half-written key, all get
    the same one (a plain O_EXCL create let a reader see the empty file: 2 of 40 rounds)."""
    import multiprocessing

    monkeypatch.delenv("IPBENCH_OWNER_KEY")  # each process draws its own candidate

    with multiprocessing.get_context("fork").Pool(8) as pool:
        for i in range(20):
            got = pool.map(_key_of, [str(tmp_path / f"store{i}")] * 8)
            assert len(set(got)) == 1 and not got[0].startswith("error"), got


def test_a_missing_replaced_or_mismatched_key_is_refused_never_replaced(tmp_path, monkeypatch):
    """``rm owner/owner.key`` used to make a new key silently and retrain finished runs with new
    secrets under the same ids; a replaced key or another $IPBENCH_OWNER_KEY went unnoticed."""
    monkeypatch.delenv("IPBENCH_OWNER_KEY")
    first = owner_key(tmp_path)
    key_file = tmp_path / "owner" / "owner.key"
    assert (tmp_path / "owner-key.fingerprint").is_file()
    assert first.hex() not in (tmp_path / "owner-key.fingerprint").read_text()
    saved = key_file.read_bytes()
    key_file.unlink()
    with pytest.raises(IpbenchError, match="is missing, but this store's runs were made"):
        key_seed(tmp_path, 0)
    assert not key_file.exists()  # nothing was made in its place
    key_file.write_bytes(b"cd" * 32)  # another key put in its place
    with pytest.raises(IpbenchError, match="not the key this store's runs were made with"):
        key_seed(tmp_path, 0)
    key_file.write_bytes(saved)
    assert owner_key(tmp_path) == first  # restored: accepted again
    monkeypatch.setenv("IPBENCH_OWNER_KEY", "ef" * 32)
    with pytest.raises(IpbenchError, match="does not hold this store's owner key"):
        key_seed(tmp_path, 0)
    monkeypatch.setenv("IPBENCH_OWNER_KEY", first.hex())
    assert owner_key(tmp_path) == first  # the same key given twice is fine


def test_a_key_readable_by_others_is_warned_about_and_made_private(tmp_path, capsys):
    owner_key(tmp_path)
    (tmp_path / "owner").chmod(0o755)
    (tmp_path / "owner" / "owner.key").chmod(0o644)
    owner_key(tmp_path)
    assert "readable by other users" in capsys.readouterr().err
    assert (tmp_path / "owner").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "owner" / "owner.key").stat().st_mode & 0o777 == 0o600
