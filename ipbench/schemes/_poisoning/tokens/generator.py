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
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ipbench.core.errors import TrainingDivergedError
from ipbench.core.progress import console, make_progress
from ipbench.core.tensorio import read_tensors, write_tensors
from ipbench.ml.training import autocast, bf16_supported
from ipbench.schemes._poisoning.tokens.noise import NoiseConfig, distort
from ipbench.schemes._poisoning.tokens.stegastamp import Critic, TokenDecoder, TokenEncoder
from ipbench.schemes._poisoning.tokens.trajectory import (
    LoopState,
    load_checkpoint,
    save_checkpoint,
    stops,
    usable_checkpoint,
)
from ipbench.schemes._resample import upsample

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
    l_yuv: float = 1.5  # weight of the YUV-L2 (reference loss, or LPIPS's stand-in when missing)
    # "paper": Eq. 4's image terms, SSIM and LPIPS. "reference": the reference code's, a
    # YUV-weighted L2 and LPIPS (no SSIM). Either way a missing LPIPS backbone is replaced by
    # the YUV-L2, said on the terminal and recorded.
    image_loss: Literal["paper", "reference"] = "paper"
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
    # Stop once the held-out bit accuracy under full noise reaches this (0: run all `steps`,
    # the reference's fixed schedule); checked every `eval_every` steps on `eval_images`.
    converge_bit_acc: float = 0.0
    min_full_steps: int = 0  # steps at full noise and image-loss weight before stopping
    eval_every: int = 250
    eval_images: int = 256
    # LPIPS on the first k images of each (random) batch only (0: all): its AlexNet pass is the
    # loop's largest extra cost, and the mean over k random images estimates the batch mean.
    lpips_images: int = 0
    snapshot_steps: tuple[int, ...] = ()
    checkpoint_every: int = 2500  # kept checkpoints of the trajectory (see train_token_generator)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    # The strength the noise layers ramp up to ("full noise"; 1: the reference's magnitudes,
    # 0: no noise layers). At 32 px the reference noise costs ~10 dB of PSNR (docs/activedaemon.md).
    noise_level: float = 1.0
    strength: float = 1.0  # l_t: x_a = clip(x + strength * residual)
    # The side the token is made at (0: the images' own). The reference pipeline upsamples
    # CIFAR's 32 px to 224 with Pillow BICUBIC first; GeneratorTraining does the same per batch
    # (never the whole set at 224: 25k images would hold 3.7 GB).
    resolution: int = 0
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

    FILE = "owner/token_generator.safetensors"  # the owner's part of a stage folder, 0700

    def save(self, folder: Path) -> None:
        """Into the folder's ``owner/`` part (readable by the owner only): the generator mints
        tokens, so it is a secret like a protected model's ``owner/secrets.safetensors``."""
        (folder / self.FILE).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_tensors(
            {f"enc.{k}": v for k, v in self.encoder.state_dict().items()}
            | {f"dec.{k}": v for k, v in self.decoder.state_dict().items()},
            folder / self.FILE,
            private=True,
        )

    @classmethod
    def load(
        cls, folder: Path, n_bits: int, image_size: int, channels: int, cfg: TokenConfig
    ) -> TokenGenerator:
        tensors = read_tensors(folder / cls.FILE, "token generator")
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


class GeneratorTraining:
    """The generator's training state and one optimisation step (Eq. 4), apart from the loop.

    Split out so ``benchmarks/token_throughput.py`` times exactly the step training runs.
    """

    def __init__(
        self, x: torch.Tensor, n_bits: int, cfg: TokenConfig, device: torch.device, seed: int
    ):
        from ipbench.metrics.image_quality import _lpips_model

        torch.manual_seed(seed)
        self.x, self.n_bits, self.cfg, self.device = x, n_bits, cfg, device
        c, size = x.shape[1], cfg.resolution or x.shape[-1]
        self.size = size
        self.noise = scaled_noise(cfg.noise, size, x.shape[-1])
        self.precision = (
            "bf16"
            if cfg.precision == "auto" and bf16_supported(device)
            else ("fp32" if cfg.precision == "auto" else cfg.precision)
        )
        cl = torch.channels_last
        self.enc = TokenEncoder(n_bits, size, c).to(device, memory_format=cl)
        self.dec = TokenDecoder(n_bits, size, c, cfg.stn).to(device, memory_format=cl)
        self.critic = Critic(c).to(device) if cfg.critic else None
        params = [*self.enc.parameters(), *self.dec.parameters()]
        # fused: one kernel over all parameters instead of ~10 ops per tensor (20 ms a step on
        # one core); same update rule
        self.opt = torch.optim.Adam(params, lr=cfg.lr, fused=device.type in ("cpu", "cuda"))
        self.opt_c = torch.optim.RMSprop(self.critic.parameters(), lr=1e-5) if self.critic else None
        lpips_model, self.lpips_reason = _lpips_model()
        self.lpips = None
        if lpips_model is not None:
            self.lpips = lpips_model.to(device)
            for p in self.lpips.parameters():
                p.requires_grad_(False)
        self.g = torch.Generator().manual_seed(seed + 99)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.cfg
        idx = torch.randint(0, len(self.x), (cfg.batch_size,), generator=self.g)
        xb = self.upsample(self.x[idx].to(self.device).float().div_(255))
        bits = torch.randint(0, 2, (cfg.batch_size, self.n_bits), generator=self.g).float()
        return xb, bits.to(self.device)

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] at the token's resolution, as the reference makes them."""
        return upsample(x, self.size)

    def step(
        self, xb: torch.Tensor, bits: torch.Tensor, noise_level: float, w_img: float
    ) -> tuple[float, torch.Tensor]:
        """One Adam step on the batch; returns (loss, decoder logits)."""
        cfg, cl = self.cfg, torch.channels_last
        with autocast(self.device, self.precision):
            residual = self.enc(bits, xb.contiguous(memory_format=cl)).float()
        xa = (xb + cfg.strength * residual).clamp(0, 1)
        noisy = distort(xa, self.noise, noise_level, self.g)
        with autocast(self.device, self.precision):
            logits = self.dec(noisy.contiguous(memory_format=cl)).float()
        loss = cfg.l_secret * F.binary_cross_entropy_with_logits(logits, bits)
        # The perceptual terms stay in fp32: near-identical images differ in the 3rd-4th digit
        # of SSIM and of AlexNet's normalised features, below bf16's resolution.
        if w_img > 0:
            if cfg.image_loss == "paper":
                loss = loss + w_img * cfg.l_ssim * _ssim(xa, xb)
            if self.lpips is not None:
                k = cfg.lpips_images or len(xa)  # a subset's mean: unbiased, k/B of the cost
                d = self.lpips(xa[:k] * 2 - 1, xb[:k] * 2 - 1).mean()
                loss = loss + w_img * cfg.l_lpips * d
            if self.lpips is None or cfg.image_loss == "reference":
                loss = loss + w_img * cfg.l_yuv * _yuv_l2(xa, xb, cfg.yuv_weights)
            if self.critic is not None:
                loss = loss + w_img * cfg.l_critic * self.critic(xa).mean()
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDivergedError(
                f"token generator: loss became {value}; lower token_lr (now {cfg.lr})"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.critic is not None and self.opt_c is not None:  # Wasserstein: real high, fake low
            loss_c = self.critic(xb).mean() - self.critic(xa.detach()).mean()
            self.opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            self.opt_c.step()
            for p in self.critic.parameters():
                p.data.clamp_(-0.01, 0.01)
        return value, logits.detach()

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, bits: torch.Tensor, seed: int) -> dict[str, float]:
        """Bit accuracy clean and under full noise, and the token's PSNR, on a held-out batch."""
        self.enc.eval()
        self.dec.eval()
        gen = TokenGenerator(self.enc, self.dec, self.cfg.strength)
        xa = (gen.authorize(x, bits) * 255).round() / 255  # what a user sends: 8-bit pixels
        noisy = distort(xa, self.noise, self.cfg.noise_level, torch.Generator().manual_seed(seed))
        clean_acc = ((gen.decode_bits(xa) > 0.5).float() == bits).float().mean().item()
        noisy_acc = ((gen.decode_bits(noisy) > 0.5).float() == bits).float().mean().item()
        mse = (xa - x).pow(2).flatten(1).mean(1).clamp_min(1e-10)
        self.enc.train()
        self.dec.train()
        return {
            "bit_acc": 100 * clean_acc,
            "bit_acc_noisy": 100 * noisy_acc,
            "psnr": (10 * torch.log10(1 / mse)).mean().item(),
        }


def _ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from pytorch_msssim import ssim

    return ssim(a.float(), b.float(), data_range=1.0, size_average=True)


def scaled_noise(noise: NoiseConfig, resolution: int, image_size: int) -> NoiseConfig:
    """The noise layers at another resolution: the blur's kernel and sigma scale with the side
    (its 3x3 at 32 px is 21x21 at 224); warp, noise and colour are relative already."""
    if not resolution or resolution == image_size:
        return noise
    f = resolution / image_size
    k = round(noise.blur_kernel * f) | 1
    return replace(noise, blur_kernel=k, blur_sigma=noise.blur_sigma * f)


def train_token_generator(
    x: torch.Tensor,
    n_bits: int,
    cfg: TokenConfig,
    device: torch.device,
    seed: int,
    snapshot: Callable[[int, TokenGenerator], None] | None = None,
    checkpoint_dir: Path | None = None,
) -> tuple[TokenGenerator, dict[str, Any]]:
    """Train encoder and decoder on uint8 images ``x``; returns the generator and stats.

    Schedule: the secret loss alone until ``secret_only_steps`` (and, if set, a running bit
    accuracy of ``secret_gate_acc``); then the noise layers and the image losses ramp in. With
    ``converge_bit_acc`` > 0 training stops at the first held-out evaluation (every
    ``eval_every`` steps, once both ramps are complete and ``min_full_steps`` steps at full
    strength have passed) whose bit accuracy under full noise reaches it; ``steps`` caps it.
    ``snapshot(step, generator)`` is called at ``cfg.snapshot_steps`` (for step sweeps).

    ``checkpoint_dir`` holds the trajectory's checkpoints (a rolling one every 500 steps, a
    kept one every ``checkpoint_every``): a killed run resumes, and a run of the same
    trajectory with another cap or stopping rule starts from the furthest state it shares.
    Resumed runs are bitwise identical to uninterrupted ones (weights, Adam, RNG restored).
    """
    t = GeneratorTraining(x, n_bits, cfg, device, seed)
    if t.lpips is None:
        msg = f"token loss: LPIPS unavailable ({t.lpips_reason}); using the reference code's YUV-weighted L2 instead"
        console.print(f"[yellow]{msg}[/]")
    ge = torch.Generator().manual_seed(seed + 7)
    n_eval = min(cfg.eval_images, len(x))
    eval_x = t.upsample(x[torch.randperm(len(x), generator=ge)[:n_eval]].float() / 255)
    eval_bits = torch.randint(0, 2, (n_eval, n_bits), generator=ge).float()
    st, resumed_from = LoopState(), 0
    t0, stop, loss = time.perf_counter(), cfg.steps, float("nan")
    found = usable_checkpoint(checkpoint_dir, cfg) if checkpoint_dir else None
    if found is not None and checkpoint_dir is not None:
        load_checkpoint(checkpoint_dir, found[0], t)
        meta = found[1]
        st = LoopState(meta["step"], meta["gate"], meta["recent"], meta["history"])
        resumed_from = st.step
        last = st.history[-1] if st.history else None
        if last is not None and last["step"] == st.step and stops(cfg, st.history, last):
            stop = st.step  # the state it stopped at last time: nothing left to train
    with make_progress() as bar:
        task = bar.add_task("token generator", total=cfg.steps, completed=st.step, info="")
        while st.step < stop:
            if (
                st.gate is None
                and st.step >= cfg.secret_only_steps
                and (not st.recent or sum(st.recent) / len(st.recent) >= cfg.secret_gate_acc)
            ):
                st.gate = st.step
            start = st.gate if st.gate is not None and cfg.secret_gate_acc > 0 else 0
            noise_level = cfg.noise_level * _ramp(st.step, start, cfg.noise_ramp_steps)
            w_img = 0.0 if st.gate is None else _ramp(st.step, st.gate, cfg.image_ramp_steps)
            xb, bits = t.batch()
            loss, logits = t.step(xb, bits, noise_level, w_img)
            st.recent = [*st.recent[-49:], ((logits > 0).float() == bits).float().mean().item()]
            st.step += 1
            if st.step % cfg.eval_every == 0 or st.step == cfg.steps:
                full = st.gate is not None and noise_level >= cfg.noise_level and w_img >= 1
                ev = t.evaluate(eval_x, eval_bits, seed + 13) | {"step": st.step, "full": full}
                st.history.append(ev)
                log.debug("token step %d: %s", st.step, ev)
                if stops(cfg, st.history, ev):
                    stop = st.step
            if snapshot is not None and st.step in cfg.snapshot_steps:
                snapshot(st.step, TokenGenerator(t.enc, t.dec, cfg.strength))
            if checkpoint_dir is not None:
                if st.step % cfg.checkpoint_every == 0 or st.step >= stop:
                    save_checkpoint(checkpoint_dir, f"step_{st.step}", t, st)
                elif st.step % 500 == 0:
                    save_checkpoint(checkpoint_dir, "latest", t, st)
            if st.step % 20 == 0 or st.step >= stop:
                acc = 100 * sum(st.recent) / len(st.recent)
                bar.update(task, completed=st.step, info=f"bit acc {acc:.1f}% loss {loss:.3f}")
    converged = (cfg.converge_bit_acc > 0 and st.step < cfg.steps) or bool(
        st.history and stops(cfg, st.history, st.history[-1])
    )
    stats: dict[str, Any] = {
        "perceptual": "lpips" if t.lpips is not None else "yuv_l2",
        "lpips_missing": t.lpips_reason,
        "history": st.history,
        "gate_step": st.gate,
        "steps": st.step,
        "resumed_from_step": resumed_from,
        "wall_s": time.perf_counter() - t0,
        "train_bit_acc": 100 * sum(st.recent) / max(1, len(st.recent)),
        "converged": converged or cfg.converge_bit_acc <= 0,
    }
    if cfg.converge_bit_acc > 0 and not converged:
        console.print(
            f"[yellow]token generator: bit accuracy under full noise did not reach "
            f"{100 * cfg.converge_bit_acc:.0f}% within the cap of {cfg.steps} steps[/]"
        )
    t.enc.eval()
    t.dec.eval()
    return TokenGenerator(t.enc, t.dec, cfg.strength), stats
