"""Overhead metrics against hand-computed parameter, FLOP and memory counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ipbench.core.errors import IpbenchError
from ipbench.metrics import overhead as oh


def test_linear_params_and_flops_by_hand():
    lin = nn.Linear(4, 3)  # 4*3 weights + 3 biases; 4*3 multiply-adds = 24 FLOPs per image
    assert oh.count_params(lin) == 15
    assert oh.flops_per_image(lin, torch.randn(5, 4)) == 24.0


def test_conv_flops_by_hand():
    conv = nn.Conv2d(2, 3, 3, bias=False)  # 5x5 -> 3x3 outputs, 3*9 positions x 2*9 MACs
    assert oh.count_params(conv) == 2 * 3 * 9
    assert oh.flops_per_image(conv, torch.randn(2, 2, 5, 5)) == 2 * (3 * 9) * (2 * 9)


def test_buffers_are_counted_apart_from_params():
    bn = nn.BatchNorm2d(4)
    assert oh.count_params(bn) == 8 and oh.count_buffers(bn) == 4 + 4 + 1


def test_peak_activation_memory_by_hand():
    x = torch.randn(1000)  # 4000 bytes per float32 intermediate
    assert oh.peak_activation_bytes(lambda t: (t * 2 + 1).relu_(), x) == 8000  # t*2, then +1
    assert oh.peak_activation_bytes(lambda t: t * 2 + t * 3, x) == 12000  # three alive at once
    assert oh.peak_activation_bytes(lambda t: t.view(10, 100).t() * 1, x) == 4000  # views free


def test_measure_reports_every_figure_and_compare_suffixes():
    conv = nn.Conv2d(1, 1, 3)
    got = oh.measure(conv, torch.randn(1, 1, 5, 5), conv, repeats=2)
    assert got["flops"] == 162 and got["params"] == 10 and got["peak_act_bytes"] == 36
    assert got["latency_ms"] > 0
    threads = torch.get_num_threads()
    oh.latency(conv, torch.randn(1, 1, 5, 5), repeats=1, cpu_threads=1)
    assert torch.get_num_threads() == threads  # the timing thread count is put back
    both = oh.compare(got, {"flops": 1.0})
    assert both["flops"] == 162 and both["flops_base"] == 1.0


def test_bad_inputs_are_clear_errors():
    with pytest.raises(IpbenchError, match="non-empty batch"):
        oh.flops_per_image(nn.Identity(), torch.empty(0, 3))
    with pytest.raises(IpbenchError, match="repeats >= 1"):
        oh.latency(nn.Identity(), torch.randn(1, 3), repeats=0)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["none", "mlock"])
def test_evaluate_stage_records_overhead_for_every_scheme(tmp_path, scheme):
    from ipbench.engine.runner import Runner, RunRequest

    req = RunRequest(
        scheme=scheme, preset="smoke", workdir=str(tmp_path), device="cpu", attacks="none",
        overrides={"epochs": "1", "max_train": "300", "max_test": "100"},
    )  # fmt: skip
    out = Runner(req, log=lambda _m: None).run()
    m = {x["name"]: x["value"] for x in out.metrics if x["stage"] == "evaluate"}
    for key in ("params", "flops", "peak_act_bytes", "latency_ms", "credential_ms"):
        assert m[key] is not None and m[key] >= 0, key
        assert key == "credential_ms" or m[f"{key}_base"] > 0
    assert m["params"] == m["params_base"] and m["flops"] >= m["flops_base"]
    assert m["users_evaluated"] >= 1
    if scheme == "mlock":  # the sticker is pasted when the credential is applied
        assert "credential_flops" in m
