"""The attacks a reviewer expects against active locks (issue 19), each first shown to work
where it must on the smoke task: synthetic data, the tiny network, smoke budgets."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from conftest import STICKER_EPOCHS
from test_attacks_model import attacked

from ipbench.attacks.processing import blur, jpeg, resize
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks, schemes

CHANCE_PLUS = 25.0  # 10 classes: chance is 10%
ADIP = {"protect_epochs": STICKER_EPOCHS["adip"]}  # the lock tests' smoke deployment


@pytest.fixture(scope="module")
def workdir(sticker_store) -> Path:
    return sticker_store  # one store: the baseline and ADIP's deployment train once a session


# --- processing -------------------------------------------------------------------------------
@pytest.mark.slow
def test_jpeg_100_keeps_an_invisible_token_and_heavy_blur_breaks_it(workdir):
    m = attacked(workdir, "adip", "processing", **ADIP)
    ev, got = m["evaluate"], m["attack:processing"]
    assert ev["A_ad"] > 85 and ev["A_ud"] < CHANCE_PLUS  # the deployment is really locked
    assert got["A_ad_clean"] == pytest.approx(ev["A_ad"], abs=3)  # same users, other slice
    assert abs(got["A_ad@jpeg,quality=100"] - got["A_ad_clean"]) <= 2
    assert abs(got["A_ad@jpeg444,quality=100"] - got["A_ad_clean"]) <= 2
    assert got["A_ad@blur,sigma=2"] < got["A_ad_clean"] - 30  # the token is washed out
    assert got["A_ad_jpeg"] == got["A_ad@jpeg,quality=75"]
    assert got["A_ad_worst"] == min(v for k, v in got.items() if "@" in k)


def test_processing_is_skipped_without_an_input_space_token():
    reason = attacks.get("processing")().skip_reason(schemes.get("passport")())
    assert reason is not None and "lacks capability InputSpaceToken" in reason


def test_processings_are_what_they_say():
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(4, 1, 8, 8), size=32, mode="bilinear")
    x = x.expand(4, 3, 32, 32)  # no colour: 4:2:0 chroma subsampling loses nothing
    assert (jpeg(x, 100) - x).abs().mean() < 0.01 < (jpeg(x, 10) - x).abs().mean()
    gray = x[:, :1]
    assert jpeg(gray, 90).shape == gray.shape and (jpeg(gray, 90) - gray).abs().mean() < 0.02
    flat = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(blur(flat, 2.0), flat) and torch.allclose(resize(flat, 0.5), flat)
    assert torch.allclose(resize(x, 1.0), x, atol=1e-6)
    white = torch.rand(2, 3, 32, 32)
    assert (blur(white, 2.0) - white).abs().mean() > 0.15  # white noise loses most of itself
    # colour detail: 4:2:0 halves the colour planes' resolution, 4:4:4 at quality 100 keeps it
    assert (jpeg(white, 100, "4:4:4") - white).abs().mean() < 0.005
    assert (jpeg(white, 100) - white).abs().mean() > 0.1
    with pytest.raises(IpbenchError, match=r"4:2:2.*valid: 4:2:0, 4:4:4"):
        jpeg(white, 90, "4:2:2")


# --- insider ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_insider_distillation_copies_an_unprotected_model(workdir):
    # a copy as good as the victim needs the budget smoke had before the quick start's cut
    m = attacked(workdir, "none", "insider", **{"attack.insider.epochs": "15"})
    victim, got = m["evaluate"]["A_ud"], m["attack:insider"]
    assert got["A_sub"] == max(got["A_sub@hard"], got["A_sub@soft"])
    assert got["A_sub"] >= victim - 15 and got["A_sub_vs_victim_agreement"] > 2 * CHANCE_PLUS


@pytest.mark.slow
def test_insider_distillation_walks_through_a_lock_that_stops_copycat(workdir):
    m = attacked(workdir, "adip", "insider,extraction", **ADIP)
    ev, inside, outside = m["evaluate"], m["attack:insider"], m["attack:extraction"]
    assert ev["A_ud"] < CHANCE_PLUS and inside["queries"] == outside["queries"]
    assert inside["A_sub"] > ev["A_ud"] + 40  # the credential's answers teach a free copy
    assert inside["A_sub"] > outside["A_sub"] + 30  # ... that unauthorized answers do not


# --- finetune-budget --------------------------------------------------------------------------
@pytest.mark.slow
def test_finetune_budget_curve_is_monotone_in_data_on_an_unprotected_model(workdir):
    # the curve this test reads (the smoke preset's own budget is two fractions, one shot count)
    curve_settings = {"fractions": "0.01,0.05,0.2", "shots": "1,10", "steps": "60"}
    m = attacked(
        workdir, "none", "finetune-budget", **{"attack.finetune-budget.variant": "reinit"},
        **{f"attack.finetune-budget.{k}": v for k, v in curve_settings.items()},
    )  # fmt: skip
    got = m["attack:finetune-budget"]
    # smoke: the thief holds 400 images, a fifth of a 2,000-image training set
    sizes = [got[f"images@fraction={f}"] for f in ("0.01", "0.05", "0.2")]
    assert sizes == [20, 100, 400] and got["images@shots=1"] == 10
    curve = [got[f"A_ud@fraction={f}"] for f in ("0.01", "0.05", "0.2")]
    assert all(b >= a - 1 for a, b in itertools.pairwise(curve)), curve
    assert curve[-1] > curve[0] + 3  # a fresh head learns more from more data
    assert got["A_ud"] == max(curve[-1], got["A_ud@preset,fraction=0.2"])  # the thief's best
    assert got["A_ud@shots=10"] >= got["A_ud@shots=1"] - 1


@pytest.mark.slow
def test_finetune_budget_finds_how_little_data_opens_a_lock(workdir):
    m = attacked(workdir, "adip", "finetune-budget", **ADIP)
    ev, got = m["evaluate"], m["attack:finetune-budget"]
    assert ev["A_ud"] < CHANCE_PLUS
    assert got["A_ud"] > ev["A_ud"] + 50  # on the easy task a few hundred labels open it
    opened = [
        got["images@" + k.split("@")[1].split(",")[-1]]  # per budget, whatever the recipe
        for k, v in got.items()
        if k.startswith("A_ud@") and v >= ev["A_ad"] - 10
    ]
    assert opened and got["images_to_unlock"] == min(opened)


@pytest.mark.slow
def test_fine_pruning_against_a_lock_reports_each_rate(workdir):
    m = attacked(workdir, "adip", "fine-pruning", **ADIP)
    got = m["attack:fine-pruning"]
    for rate in ("0.5", "0.9"):
        assert {f"A_ud@rate={rate}", f"A_ad@pruned,rate={rate}"} <= set(got)
    assert (
        got["A_ud"]
        == got[f"A_ud@rate={got['rate_best']:g}"]
        == max(got["A_ud@rate=0.5"], got["A_ud@rate=0.9"])
    )


@pytest.mark.slow
def test_nad_against_a_lock_reports_teacher_and_student(workdir):
    m = attacked(workdir, "adip", "nad", **ADIP)
    got = m["attack:nad"]
    assert got["images"] == 100  # 5% of the smoke training set
    assert {"A_ud", "A_ad", "A_ud@teacher", "A_ad@teacher"} <= set(got)


@pytest.mark.slow
def test_anp_against_a_lock_reports_each_threshold(workdir):
    m = attacked(workdir, "adip", "anp", **ADIP)
    got = m["attack:anp"]
    assert got["images"] == 20 and got["pruned"] in (
        got["pruned@threshold=0.2"],
        got["pruned@threshold=0.5"],
    )
    assert got["A_ud"] == max(got["A_ud@threshold=0.2"], got["A_ud@threshold=0.5"])


# --- knockoff ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_knockoff_copies_an_unprotected_model_from_a_transfer_set(workdir):
    m = attacked(
        workdir, "none", "knockoff",
        **{"attack.knockoff.dataset": "synthetic:1000", "attack.knockoff.epochs": "15"},
    )  # fmt: skip
    victim, got = m["evaluate"]["A_ud"], m["attack:knockoff"]
    assert got["queries"] == 400
    for role in ("outsider", "insider"):
        assert got[f"A_sub@{role}"] == got[f"A_sub@{role}-soft"] >= victim - 15
    assert got["A_sub"] == max(got["A_sub@outsider"], got["A_sub@insider"])


@pytest.mark.slow
def test_knockoff_outsider_is_locked_out_and_insider_is_not(workdir):
    m = attacked(workdir, "adip", "knockoff", **ADIP)
    ev, got = m["evaluate"], m["attack:knockoff"]
    assert got["A_sub@insider"] > got["A_sub@outsider"] + 30
    assert got["A_sub"] == got["A_sub@insider"] and ev["A_ud"] < CHANCE_PLUS


def test_knockoff_draws_its_queries_from_the_transfer_set_and_checks_its_shape():
    from types import SimpleNamespace

    from ipbench.attacks.knockoff import Knockoff, KnockoffConfig
    from ipbench.core.errors import IpbenchError

    with pytest.raises(IpbenchError, match="roles"):
        KnockoffConfig(roles=("spy",))
    atk = Knockoff(KnockoffConfig(dataset="synthetic:1000", queries=300))
    view = SimpleNamespace(test=SimpleNamespace(x=torch.zeros(1, 3, 32, 32, dtype=torch.uint8)))
    ctx = SimpleNamespace(thief=view, data_root=None, download=False, seed=0)
    x = atk.query_images(ctx)
    assert x.shape == (300, 3, 32, 32) and torch.equal(x, atk.query_images(ctx))  # seeded
    assert not torch.equal(x, atk.query_images(SimpleNamespace(**{**vars(ctx), "seed": 1})))
    ctx.thief = SimpleNamespace(test=SimpleNamespace(x=torch.zeros(1, 1, 28, 28)))
    with pytest.raises(IpbenchError, match="the service takes"):
        atk.query_images(ctx)
