"""Typed metrics: formats, names of curve points and their reading back, descriptions."""

from __future__ import annotations

import pytest

from ipbench.metrics.spec import SHARED, At, Metric, describe, legacy_metric, pct


@pytest.mark.parametrize(
    ("point", "name"),
    [
        (At("A_ud", "rate", 0.5), "A_ud@rate=0.5"),
        (At("A_ud", "rate", 0.0), "A_ud@rate=0"),
        (At("A_sub", label="hard"), "A_sub@hard"),
        (At("A_ad", "epochs", 4, "last"), "A_ad@last,epochs=4"),
        (At("A_ad", "to", "cifar100"), "A_ad@to=cifar100"),
        (At("A_or"), "A_or"),
    ],
)
def test_curve_points_name_themselves_as_before_and_read_back(point, name):
    assert str(point) == name  # the names stored runs and reference.csv already use
    back = At.parse(name)
    assert str(back) == name and (back.metric, back.param, back.label) == (
        point.metric, point.param, point.label,
    )  # fmt: skip
    assert back.x == (float(point.x) if isinstance(point.x, int | float) else point.x)


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        (SHARED["A_ad"], 81.8349, "81.83"),
        (SHARED["SSIM"], 0.96234, "0.962"),
        (SHARED["LPIPS"], 0.00271, "0.0027"),
        (SHARED["params"], 2_345_678, "2.35M"),
        (SHARED["peak_act_bytes"], 390e6, "390.00MB"),
        (SHARED["capacity"], 2.0**64, "2^64"),
        (SHARED["capacity"], 200, "200"),
        (Metric("odd", fmt=".4f"), 0.123456, "0.1235"),
        (SHARED["A_ad"], float("nan"), "–"),
    ],
)
def test_formats(metric, value, text):
    assert metric.format(value) == text


def test_descriptions_prefer_the_plugin_then_shared_then_legacy_rules():
    declared = (pct("A_ud", "lower", headline=1),)
    assert describe("A_ud", declared).headline == 1
    assert describe("A_ud@rate=0.5", declared).headline == 0  # a curve point never headlines
    assert describe("PSNR").unit == "dB" and describe("PSNR").better == "higher"
    assert describe("permuted_pct").fmt == ".6f" == legacy_metric("permuted_pct").fmt
    assert Metric.from_spec("x", describe("SSIM").spec()) == Metric("x", "", "higher", ".3f")
    with pytest.raises(ValueError):
        Metric("bad", fmt="%d")
