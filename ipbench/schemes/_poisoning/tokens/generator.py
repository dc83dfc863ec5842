"""Training and using the token generator (ActiveDaemon's stage 1).

Loss (paper Eq. 4): l_m * BCE(bits) + l_p1 * SSIM + l_p2 * LPIPS + l_c * critic, with the
paper's weights (-2, 1.5, 1.5, 0.5). Where LPIPS's ImageNet backbone cannot be loaded, the
reference code's YUV-weighted L2 takes its place, and the substitution is logged and recorded.
As in the reference code, the secret loss trains alone at first and the image losses ramp in.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ipbench.errors import TrainingDivergedError
from ipbench.progress import console, make_progress
from ipbench.schemes._poisoning.tokens.noise import NoiseConfig, distort
from ipbench.schemes._poisoning.tokens.stegastamp import Critic, TokenDecoder, TokenEncoder
from ipbench.tensorio import read_tensors, write_tensors
from ipbench.training import autocast, bf16_supported

log = logging.getLogger(__name__)
YUV = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.14714119, -0.28886916, 0.43601035],
        [0.61497538, -0.51496512, -0.10001026],
    ]
)


@dataclass(frozen=True)
class TokenConfig:
    """Token-generator training; defaults are the paper's weights and the reference recipe."""

    steps: int = 140_000  # reference code; presets shorten it
    batch_size: int = 50
    lr: float = 1e-4
    l_secret: float = 1.5  # l_m
    l_ssim: float = -2.0  # l_p1 (negative: SSIM is maximised)
    l_lpips: float = 1.5  # l_p2
    l_critic: float = 0.5  # l_c, used only with critic=True
    l_yuv: float = 1.5  # weight of the YUV-L2 that replaces LPIPS when its backbone is missing
    yuv_weights: tuple[float, float, float] = (1.0, 100.0, 100.0)
    critic: bool = False  # the reference code disables it
    stn: bool = True
    secret_only_steps: int = 1_500  # reference: secret loss alone first
    # Also wait until the running bit accuracy reaches this (0: the reference's fixed schedule).
    # Short CPU budgets need it: image losses switched on before the decoder reads any bit
    # collapse the token to nothing. Noise and image-loss ramps start when the gate opens.
    secret_gate_acc: float = 0.0
    image_ramp_steps: int = 15_000  # reference: image-loss weights ramped in
    noise_ramp_steps: int = 10_000
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    strength: float = 1.0  # l_t: x_a = clip(x + strength * residual)
    precision: str = "auto"  # bf16 autocast where the hardware runs it natively


@dataclass
class TokenGenerator:
    encoder: TokenEncoder
    decoder: TokenDecoder
    strength: float = 1.0

    def authorize(self, x: torch.Tensor, bits: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """x_a = clip(x + strength * G_e(x, s)) for float images in [0, 1]; bits (N, n) or (n,)."""
        dev = next(self.encoder.parameters()).device
        if bits.ndim == 1:
            bits = bits.expand(len(x), -1)
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = x[i : i + batch_size].to(dev)
                res = self.encoder(bits[i : i + batch_size].to(dev), xb)
                out.append((xb + self.strength * res).clamp(0, 1).to(x.device))
        return torch.cat(out) if out else x.clone()

    def decode_bits(self, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Bit probabilities (N, n) read from authorized images."""
        dev = next(self.decoder.parameters()).device
        with torch.no_grad():
            return torch.cat(
                [
                    torch.sigmoid(self.decoder(x[i : i + batch_size].to(dev))).cpu()
                    for i in range(0, len(x), batch_size)
                ]
            )

    def save(self, folder: Path) -> None:
        write_tensors(
            {f"enc.{k}": v for k, v in self.encoder.state_dict().items()}
            | {f"dec.{k}": v for k, v in self.decoder.state_dict().items()},
            folder / "token_generator.safetensors",
        )

    @classmethod
    def load(
        cls, folder: Path, n_bits: int, image_size: int, channels: int, cfg: TokenConfig
    ) -> TokenGenerator:
        tensors = read_tensors(folder / "token_generator.safetensors", "token generator")
        enc, dec = (
            TokenEncoder(n_bits, image_size, channels),
            TokenDecoder(n_bits, image_size, channels, cfg.stn),
        )
        enc.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("enc.")})
        dec.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("dec.")})
        return cls(enc.eval(), dec.eval(), cfg.strength)


def _yuv_l2(a: torch.Tensor, b: torch.Tensor, weights: tuple[float, float, float]) -> torch.Tensor:
    if a.shape[1] != 3:
        return (a - b).pow(2).mean()
    yuv = YUV.to(a.device)
    diff = torch.einsum("ij,bjhw->bihw", yuv, a - b)
    return (diff.pow(2).mean(dim=(0, 2, 3)) * torch.tensor(weights, device=a.device)).sum()


def _ramp(step: int, start: int, length: int) -> float:
    if step < start:
        return 0.0
    return 1.0 if length <= 0 else min(1.0, (step - start) / length)


def train_token_generator(
    x: torch.Tensor, n_bits: int, cfg: TokenConfig, device: torch.device, seed: int
) -> tuple[TokenGenerator, dict[str, Any]]:
    """Train encoder, decoder (and critic) on uint8 images ``x``; returns the generator and stats."""
    from pytorch_msssim import ssim

    from ipbench.metrics.image_quality import _lpips_model

    torch.manual_seed(seed)
    c, size = x.shape[1], x.shape[-1]
    precision = (
        "bf16"
        if cfg.precision == "auto" and bf16_supported(device)
        else ("fp32" if cfg.precision == "auto" else cfg.precision)
    )
    enc = TokenEncoder(n_bits, size, c).to(device, memory_format=torch.channels_last)
    dec = TokenDecoder(n_bits, size, c, cfg.stn).to(device, memory_format=torch.channels_last)
    critic = Critic(c).to(device) if cfg.critic else None
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=cfg.lr)
    opt_c = torch.optim.RMSprop(critic.parameters(), lr=1e-5) if critic else None
    lpips_model, lpips_reason = _lpips_model()
    if lpips_model is None:
        msg = f"token loss: LPIPS unavailable ({lpips_reason}); using the reference code's YUV-weighted L2 instead"
        console.print(f"[yellow]{msg}[/]")
    else:
        lpips_model = lpips_model.to(device)
    g = torch.Generator().manual_seed(seed + 99)
    stats: dict[str, Any] = {
        "perceptual": "lpips" if lpips_model is not None else "yuv_l2",
        "lpips_missing": lpips_reason,
    }
    t0, recent, gate = time.perf_counter(), [], None
    with make_progress() as bar:
        task = bar.add_task("token generator", total=cfg.steps, info="")
        for step in range(cfg.steps):
            idx = torch.randint(0, len(x), (cfg.batch_size,), generator=g)
            xb = x[idx].to(device).float() / 255
            bits = torch.randint(0, 2, (cfg.batch_size, n_bits), generator=g).float().to(device)
            with autocast(device, precision):
                residual = enc(bits, xb.contiguous(memory_format=torch.channels_last)).float()
            xa = (xb + cfg.strength * residual).clamp(0, 1)
            if (
                gate is None
                and step >= cfg.secret_only_steps
                and (not recent or sum(recent) / len(recent) >= cfg.secret_gate_acc)
            ):
                gate = step
                stats["gate_step"] = step
            start = gate if gate is not None and cfg.secret_gate_acc > 0 else 0
            noise_level = _ramp(step, start, cfg.noise_ramp_steps)
            with autocast(device, precision):
                logits = dec(
                    distort(xa, cfg.noise, noise_level, g).contiguous(
                        memory_format=torch.channels_last
                    )
                ).float()
            loss_secret = F.binary_cross_entropy_with_logits(logits, bits)
            w_img = 0.0 if gate is None else _ramp(step, gate, cfg.image_ramp_steps)
            loss = cfg.l_secret * loss_secret
            if w_img > 0:
                loss = loss + w_img * cfg.l_ssim * ssim(xa, xb, data_range=1.0, size_average=True)
                if lpips_model is not None:
                    loss = loss + w_img * cfg.l_lpips * lpips_model(xa * 2 - 1, xb * 2 - 1).mean()
                else:
                    loss = loss + w_img * cfg.l_yuv * _yuv_l2(xa, xb, cfg.yuv_weights)
                if critic is not None:
                    loss = loss + w_img * cfg.l_critic * critic(xa).mean()
            if not math.isfinite(loss.item()):
                raise TrainingDivergedError(
                    f"token generator: loss became {loss.item()} at step {step}; lower lr (now {cfg.lr})"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if critic is not None and opt_c is not None:  # Wasserstein critic: real high, fake low
                loss_c = critic(xb).mean() - critic(xa.detach()).mean()
                opt_c.zero_grad(set_to_none=True)
                loss_c.backward()
                opt_c.step()
                for p in critic.parameters():
                    p.data.clamp_(-0.01, 0.01)
            with torch.no_grad():
                recent.append(((logits > 0).float() == bits).float().mean().item())
            recent = recent[-50:]
            if step % 100 == 0:
                log.debug(
                    "token step %d: bit acc %.1f%%, loss %.4f",
                    step,
                    100 * sum(recent) / len(recent),
                    loss.item(),
                )
            if step % 20 == 0 or step == cfg.steps - 1:
                bar.update(
                    task,
                    completed=step + 1,
                    info=f"bit acc {100 * sum(recent) / len(recent):.1f}% loss {loss.item():.3f}",
                )
    stats.update(
        {
            "steps": cfg.steps,
            "wall_s": time.perf_counter() - t0,
            "train_bit_acc": 100 * sum(recent) / max(1, len(recent)),
        }
    )
    return TokenGenerator(enc.eval(), dec.eval(), cfg.strength), stats
