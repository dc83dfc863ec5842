"""Fake-credential and reverse-engineering attacks: each is first shown to work where it should
(genuine token, owner's credential, owner's window, a learnable visible token) before its
numbers against a deployment are trusted. Smoke preset, synthetic data, tiny network."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import STICKER_EPOCHS, run_context

from ipbench.attacks.fake_token import FakeToken, keep_positions, other_image
from ipbench.attacks.forged_fingerprint import (
    ForgedFingerprint,
    candidate_grid,
    forge_fingerprints,
)
from ipbench.attacks.neural_cleanse import CostSchedule, NeuralCleanse, NeuralCleanseConfig
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks, presets, schemes
from ipbench.engine.request import attack_of_stage
from ipbench.engine.runner import Runner, RunRequest
from ipbench.ml.datasets import load_dataset, make_splits
from ipbench.ml.training import Trainer, to_float_images
from ipbench.plugin.attack import Target
from ipbench.plugin.contract import Protected
from ipbench.schemes.activeguard import ActiveGuard

CHANCE_PLUS = 25.0  # 10 classes: chance is 10%


@pytest.fixture(scope="module")
def deploy(sticker_store):
    """Smoke runs sharing one workdir (the visible-token tests' too); returns stage metrics,
    stages, the attacked target and the thief's view of the run."""
    workdir = sticker_store
    done: dict[str, tuple] = {}

    def run(scheme: str, attack_names: str, **overrides: str):
        if scheme not in done:
            req = RunRequest(
                scheme=scheme, preset="smoke", workdir=str(workdir), device="cpu",
                overrides=overrides, attacks=attack_names,
            )  # fmt: skip
            runner = Runner(req, log=lambda _m: None)
            out = runner.run()
            stages = {attack_of_stage(s["name"]): s for s in out.stages}
            metrics: dict[str, dict[str, float]] = {}
            for m in out.metrics:
                metrics.setdefault(attack_of_stage(m["stage"]), {})[m["name"]] = m["value"]
            res = runner.res
            protected = res.scheme.load_protected(Path(stages["protect"]["artifact"]))
            preset = res.preset
            splits = make_splits(
                load_dataset("synthetic"), 0, preset.attacker_fraction, preset.max_train,
                preset.max_test,
            )  # fmt: skip
            base = Protected.load(Path(stages["baseline"]["artifact"])).model
            spec = protected.model_spec
            ctx = run_context(splits, spec, preset, Trainer("cpu"), lambda: base).for_thief()
            done[scheme] = (metrics, stages, Target(res.scheme, protected), ctx)
        return done[scheme]

    return run


# --- fake-token -------------------------------------------------------------------------------
@pytest.mark.slow
def test_fake_token_endpoints_reproduce_genuine_and_clean_accuracy(deploy):
    m, _, _, _ = deploy("adip", "fake-token,fake-credential", protect_epochs=STICKER_EPOCHS["adip"])
    ev, atk = m["evaluate"], m["attack:fake-token"]
    assert ev["A_ad"] > 85 and ev["A_ud"] < CHANCE_PLUS  # the deployment is really locked
    assert abs(atk["A_fake@gamma_f=1"] - ev["A_ad"]) < 2  # the whole token is the genuine one
    assert abs(atk["A_fake@gamma_f=0"] - ev["A_ud"]) < 2  # no token is a clean image
    assert atk["A_fake@gaussian"] < ev["A_ud"] + 15  # noise of the token's scale opens nothing
    assert atk["token_sigma"] > 0
    assert sum(k.startswith("A_fake@gamma_f=") for k in atk) == 11  # Fig. 4's sweep, 0..1
    assert atk["A_td"] == max(atk["A_fake@gaussian"], atk["A_fake@mismatched"])


@pytest.mark.slow
def test_fake_credential_is_skipped_on_an_input_space_scheme(deploy):
    _, stages, _, _ = deploy(
        "adip", "fake-token,fake-credential", protect_epochs=STICKER_EPOCHS["adip"]
    )
    assert "adip lacks capability CredentialForging" in str(stages["attack:fake-credential"])


def test_deteriorated_masks_keep_exact_nested_fractions():
    rank = keep_positions(3, 8, 8, torch.Generator().manual_seed(0))
    kept = [(rank < round(g * 64)).float() for g in (0.0, 0.3, 1.0)]
    assert [float(k.mean()) for k in kept] == [0.0, round(0.3 * 64) / 64, 1.0]
    assert bool((kept[1] <= kept[2]).all())  # what 0.3 keeps, 1.0 keeps too
    other = other_image(50, torch.Generator().manual_seed(0))
    assert bool((other != torch.arange(50)).all())  # never an image's own token


def test_bad_attack_settings_are_refused_with_the_valid_ones():
    with pytest.raises(IpbenchError, match="valid: gaussian, deteriorated, mismatched"):
        FakeToken.Config(modes=("gaussian", "sticker"))
    with pytest.raises(IpbenchError, match="steps, batch_size"):
        NeuralCleanseConfig(steps=0)


# --- fake-credential --------------------------------------------------------------------------
# A passport forged from the pretrained model's features on the thief's own images is a real
# threat (about 65 on the smoke task), so only the random passport is expected to fail.
@pytest.mark.slow
@pytest.mark.parametrize(
    ("scheme", "failing"),
    [("passport", ("random_passport",)), ("chaow", ("random_key", "near_key"))],
)
def test_fake_credentials_fail_where_the_owners_pass(deploy, scheme, failing):
    m, stages, _, _ = deploy(scheme, "fake-credential,fake-token")
    ev, atk = m["evaluate"], m["attack:fake-credential"]
    assert abs(atk["A_ad@owner"] - ev["A_ad"]) < 1e-6 and ev["A_ad"] > 80  # the path works
    kinds = schemes.get(scheme).forge_kinds
    assert {f"A_td@{k}" for k in kinds} <= set(atk)
    for k in failing:
        assert atk[f"A_td@{k}"] < ev["A_ad"] - 50
    assert atk["A_td"] == max(atk[f"A_td@{k}"] for k in kinds)
    skipped = str(stages["attack:fake-token"])
    assert "lacks capability InputSpaceToken" in skipped


@pytest.mark.slow
def test_random_passport_far_below_genuine_and_unknown_kind_is_refused(deploy):
    m, _, target, ctx = deploy("passport", "fake-credential,fake-token")
    assert m["attack:fake-credential"]["A_td@random_passport"] < CHANCE_PLUS
    atk = attacks.get("fake-credential")(attacks.get("fake-credential").Config(kinds=("bogus",)))
    assert "not bogus" in atk.skip_reason(target.scheme)
    with pytest.raises(IpbenchError, match="forges no credential of kind 'bogus'; valid: random"):
        target.scheme.forge_credential(target.protected, "bogus", ctx)


# --- forged fingerprints ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def guarded(deploy):
    """ActiveGuard's authentication around the smoke baseline (no owner library needed)."""
    _, _, target, ctx = deploy("passport", "fake-credential,fake-token")
    model = ctx.unprotected()
    meta = {"num_classes": 10, "seed": 0}
    prot = Protected("activeguard", model, target.protected.model_spec,
                     {"confidences": torch.tensor([0.2, 0.3, 0.4])}, meta)  # fmt: skip
    return Target(ActiveGuard(), prot), ctx


@pytest.mark.slow
def test_fingerprint_made_with_the_owners_windows_authenticates(guarded):
    (scheme, protected), ctx = (guarded[0].scheme, guarded[0].protected), guarded[1]
    cfg = ForgedFingerprint.Config(cw_steps=200)
    x = to_float_images(ctx.thief.data.x[:40])
    owner_windows = tuple(protected.secrets["confidences"].tolist())
    images, _ = forge_fingerprints(
        scheme, protected.model, x, owner_windows, 4, cfg, 10, torch.Generator().manual_seed(0)
    )
    assert float(scheme.authenticates(protected, images).float().mean()) >= 0.75


@pytest.mark.slow
def test_forged_fingerprint_rates_are_fractions(guarded):
    cfg = ForgedFingerprint.Config(windows=(0.15, 0.3), per_window=3, cw_steps=200, max_test=200)
    out = {str(k): v for k, v in ForgedFingerprint(cfg).run(*guarded).items()}
    assert 0.0 <= out["auth_rate"] <= 1.0
    assert out["auth_rate@c=0.15"] == 0.0  # 0.15 is 0.05 from every owner window
    assert out["auth_rate@c=0.3"] > 0.5  # a correct guess opens a session ...
    assert out["A_td"] > 80  # ... and the session is served by the bare network


def test_candidate_grid_is_the_papers():
    grid = candidate_grid((0.10, 0.50), 0.01)
    assert len(grid) == 20 and grid[0] == 0.10 and grid[-1] == 0.48
    assert {0.2, 0.3, 0.4} <= set(grid)


# --- neural cleanse ---------------------------------------------------------------------------
# The sticker schemes' smoke deployments as the lock tests make them (conftest.STICKER_EPOCHS).
@pytest.mark.slow
@pytest.mark.parametrize("scheme", sorted(STICKER_EPOCHS))
def test_neural_cleanse_recovers_a_visible_token(deploy, scheme):
    m, _, target, ctx = deploy(
        scheme, "fake-token,fake-credential", protect_epochs=STICKER_EPOCHS[scheme]
    )
    assert m["evaluate"]["A_ud"] < CHANCE_PLUS  # locked without the sticker
    cfg = NeuralCleanseConfig(steps=300, eval_every=50, max_test=500)
    out = NeuralCleanse(cfg).run(target, ctx)
    assert out["A_re"] > m["evaluate"]["A_ud"] + 30
    assert out["A_ud"] == out["A_re"] and 0 < out["mask_l1"] < 32 * 32


def test_cost_schedule_doubles_above_and_shrinks_below_the_threshold():
    s = CostSchedule(NeuralCleanseConfig(patience=2, threshold=90.0, init_cost=1e-3))
    costs = [s.step(a) for a in (95, 95, 95, 95, 10, 10)]
    assert costs == pytest.approx([1e-3, 2e-3, 2e-3, 4e-3, 4e-3, 4e-3 / 1.5])


def test_every_attack_names_its_headline():
    for name in ("fake-token", "fake-credential", "forged-fingerprint", "neural-cleanse"):
        cls = attacks.get(name)
        names = cls.headline_names()
        assert names and all("@" not in h for h in names)
    assert presets.get("smoke")  # the fixtures' preset exists
