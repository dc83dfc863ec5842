"""The token generator's loop: convergence rule, cap, and checkpoints shared along a trajectory."""

from __future__ import annotations

import dataclasses

import torch

from ipbench.schemes._poisoning.tokens.generator import TokenConfig, train_token_generator
from ipbench.schemes._poisoning.tokens.noise import NoiseConfig

N_BITS = 16


def _images() -> torch.Tensor:
    return torch.randint(0, 256, (64, 3, 16, 16), generator=torch.Generator().manual_seed(0)).to(
        torch.uint8
    )


def _cfg(**kw) -> TokenConfig:
    base = TokenConfig(
        steps=40, batch_size=8, lr=1e-3, secret_only_steps=4, image_ramp_steps=4,
        noise_ramp_steps=4, eval_every=10, eval_images=16, checkpoint_every=20, stn=False,
        noise=NoiseConfig(), precision="fp32",
    )  # fmt: skip
    return dataclasses.replace(base, **kw)


def _weights(gen) -> dict[str, torch.Tensor]:
    return gen.encoder.state_dict() | {f"d.{k}": v for k, v in gen.decoder.state_dict().items()}


def test_training_stops_at_the_first_evaluation_that_meets_the_criterion_after_the_ramps():
    dev = torch.device("cpu")
    _, stats = train_token_generator(_images(), N_BITS, _cfg(converge_bit_acc=0.01), dev, 0)
    # ramps end at step 8; step 10 is the first evaluation at full strength, and 1% is met
    assert stats["steps"] == 10 and stats["converged"]
    assert [h["step"] for h in stats["history"]] == [10] and stats["history"][0]["full"]
    _, capped = train_token_generator(_images(), N_BITS, _cfg(converge_bit_acc=0.9999), dev, 0)
    assert capped["steps"] == 40 and not capped["converged"]
    assert [h["step"] for h in capped["history"]] == [10, 20, 30, 40]


def test_a_longer_run_resumes_the_shorter_ones_trajectory_bitwise(tmp_path):
    dev, x = torch.device("cpu"), _images()
    straight, _ = train_token_generator(x, N_BITS, _cfg(steps=40), dev, 0)
    short, _ = train_token_generator(x, N_BITS, _cfg(steps=20), dev, 0, checkpoint_dir=tmp_path)
    assert (tmp_path / "step_20.safetensors").exists()
    longer, stats = train_token_generator(
        x, N_BITS, _cfg(steps=40), dev, 0, checkpoint_dir=tmp_path
    )
    assert stats["resumed_from_step"] == 20 and stats["steps"] == 40
    a, b = _weights(straight), _weights(longer)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["step"] for h in stats["history"]] == [10, 20, 30, 40]
    # a shorter cap never starts from a state beyond it
    again, s20 = train_token_generator(x, N_BITS, _cfg(steps=30), dev, 0, checkpoint_dir=tmp_path)
    assert s20["resumed_from_step"] == 20 and s20["steps"] == 30
    assert not all(torch.equal(_weights(short)[k], _weights(again)[k]) for k in a)
