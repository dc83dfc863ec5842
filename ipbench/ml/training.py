"""The one trainer every scheme uses: tensors on the device, batched augmentation, SGD.

Speed comes from keeping the whole training set as a uint8 tensor on the compute device and
augmenting whole batches there; reproducibility from drawing every random number from
generators seeded by (seed, epoch), so a run resumed from an epoch checkpoint continues exactly
as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ipbench.core.errors import IpbenchError, TrainingDivergedError
from ipbench.core.faults import crash_point
from ipbench.core.progress import make_progress
from ipbench.ml.augment import crop_flip, draw_params
from ipbench.ml.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from ipbench.ml.presets import TrainConfig

TargetsFn = Callable[[int], torch.Tensor]  # epoch -> labels (N,) or soft targets (N, K)
ExtraLoss = Callable[[nn.Module], torch.Tensor]  # model -> a regulariser added to the loss
BatchTransform = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (batch, indices) -> batch


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def resolve_precision(cfg: TrainConfig, device: torch.device) -> str:
    """``auto`` -> bf16 where the hardware runs it natively (CUDA, AVX-512-BF16/AMX CPUs)."""
    if cfg.precision == "bf16" and not bf16_supported(device):
        raise IpbenchError(f"precision=bf16 is not supported on {device}; use precision=fp32")
    if cfg.precision == "auto":
        return "bf16" if bf16_supported(device) else "fp32"
    return cfg.precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def lr_at(step: int, total: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """The learning rate at a step: linear warm-up, then the preset's schedule (stateless)."""
    warm = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "multistep":
        passed = sum(step >= round(m * total) for m in cfg.milestones)
        return cfg.lr * cfg.lr_gamma**passed
    if cfg.schedule == "triangle":
        peak = cfg.lr_peak_frac * total
        if step < peak:
            return cfg.lr * (cfg.lr_start_frac + (1 - cfg.lr_start_frac) * step / peak)
        t = (step - peak) / max(1.0, total - peak)
        return cfg.lr * (1 + (cfg.lr_end_frac - 1) * t)
    t = (step - warm) / max(1, total - warm)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "onecycle":
        return cfg.lr * max(0.0, 1.0 - t)
    raise IpbenchError(
        f"unknown schedule {cfg.schedule!r}; valid: multistep, cosine, onecycle, constant, triangle"
    )


def _epoch_seed(seed: int, epoch: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + epoch * 7919 + salt) % (2**63)


def to_float_images(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] -> float [0, 1]."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def param_groups(
    model: nn.Module, params: list[nn.Parameter], cfg: TrainConfig
) -> list[dict[str, Any]]:
    """SGD parameter groups: BatchNorm biases apart when ``cfg.norm_bias_lr_scale`` != 1.

    Each group carries ``lr_scale`` (its multiple of the scheduled lr); the BN-bias group's
    weight decay is divided by the same factor, so that lr x decay, the shrinkage per step,
    is the same for every parameter (airbench's decoupled form).
    """
    scale = cfg.norm_bias_lr_scale
    if scale == 1.0:
        return [{"params": params, "lr_scale": 1.0, "weight_decay": cfg.weight_decay}]
    norm_biases = {
        id(m.bias)
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
    }
    biases = [p for p in params if id(p) in norm_biases]
    others = [p for p in params if id(p) not in norm_biases]
    groups = [
        {"params": biases, "lr_scale": scale, "weight_decay": cfg.weight_decay / scale},
        {"params": others, "lr_scale": 1.0, "weight_decay": cfg.weight_decay},
    ]
    return [g for g in groups if g["params"]]


class _StopForward(Exception):
    pass


@torch.no_grad()
def init_from_data(model: nn.Module, x: torch.Tensor, device: torch.device) -> int:
    """Call ``init_from_data(input)`` on every submodule that has one and whose
    ``initialised`` flag is not set, with the input that module sees when the model runs on
    images ``x`` (the trainer passes the first ``cfg.data_init_images`` training images,
    unaugmented, in fp32). Returns how many layers were set. The forward stops after the last
    such layer, runs in eval mode (BatchNorm statistics untouched) and draws no random
    numbers, so the result depends on ``x`` alone. Layers of a trained or loaded model carry
    the flag and are left alone (fine-tuning keeps the stem it was trained with).
    """
    layers = [
        m
        for m in model.modules()
        if callable(getattr(m, "init_from_data", None)) and not bool(getattr(m, "initialised", 0))
    ]
    if not layers or len(x) == 0:
        return 0
    pending = set(map(id, layers))

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if id(module) in pending:
            cast(Any, module).init_from_data(args[0].float())
            pending.discard(id(module))
            if not pending:
                raise _StopForward

    handles = [m.register_forward_pre_hook(hook) for m in layers]
    was_training = model.training
    model.eval()
    try:
        model(to_float_images(x.to(device)))
    except _StopForward:
        pass
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return len(layers)


class Lookahead:
    """Slow weights for Lookahead as airbench runs it (every floating tensor of the state dict,
    BatchNorm statistics included): every ``every`` steps ``slow += (1 - d) (fast - slow)``
    with ``d = decay * (step / total)^3``, then ``fast = slow``; after the last step the model
    holds the slow weights. Early on d is ~0 (plain SGD); late in the run the weights average
    over the noisy last steps, as an EMA would, at no extra cost at evaluation.
    """

    def __init__(self, model: nn.Module, every: int, decay: float):
        self.every, self.decay = every, decay
        self.slow = {
            k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()
        }

    @torch.no_grad()
    def _pull(self, model: nn.Module, decay: float) -> None:
        state = model.state_dict()
        for k, slow in self.slow.items():
            slow.lerp_(state[k], 1.0 - decay)
            state[k].copy_(slow)

    def after_step(self, model: nn.Module, step: int, total: int) -> None:
        """``step`` counts steps done (1-based)."""
        if step % self.every == 0:
            self._pull(model, self.decay * (step / total) ** 3)
        if step == total:
            self._pull(model, 1.0)


@dataclass
class TrainResult:
    epochs: int
    steps: int
    final_loss: float
    wall_s: float
    images_per_s: float
    resumed_from_epoch: int = 0


CHECKPOINT_EVERY_S = 30.0


def checkpoint_interval_s() -> float:
    """Seconds between epoch checkpoints: ``$IPBENCH_CHECKPOINT_EVERY_S``, else 30 (0: every
    epoch). A crash loses at most this much training. A ResNet-18 checkpoint (weights, momentum
    buffers, digest) takes ~0.2 s to save; on an H100 the paper preset's 120 epochs of 10,800
    images took 75 s where the trainer's throughput gives 46 s: saving every epoch was most of
    the difference."""
    raw = os.environ.get("IPBENCH_CHECKPOINT_EVERY_S", "")
    try:
        value = float(raw) if raw else CHECKPOINT_EVERY_S
    except ValueError:
        raise IpbenchError(
            f"IPBENCH_CHECKPOINT_EVERY_S={raw!r} is not a number of seconds (0: every epoch)"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise IpbenchError(f"IPBENCH_CHECKPOINT_EVERY_S={raw!r} must be >= 0 seconds")
    return value


class Trainer:
    """Trains and evaluates models for every scheme; one instance per device."""

    def __init__(self, device: str | torch.device = "cpu", desc_prefix: str = ""):
        self.device = torch.device(device)
        self.desc_prefix = desc_prefix

    def _prepare(self, model: nn.Module) -> nn.Module:
        # channels_last pays on CUDA and on oneDNN CPUs alike (measured 1.3-1.5x on 2 AVX-512 cores)
        return model.to(self.device, memory_format=torch.channels_last)

    def fit(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        cfg: TrainConfig,
        *,
        seed: int,
        targets_fn: TargetsFn | None = None,
        extra_loss: ExtraLoss | None = None,
        batch_transform: BatchTransform | None = None,
        params: list[nn.Parameter] | None = None,
        checkpoint_dir: str | Path | None = None,
        desc: str = "train",
    ) -> TrainResult:
        """Train ``model`` in place on images ``x`` with labels (or soft targets) ``y``.

        ``targets_fn(epoch)`` replaces ``y`` each epoch (label strategies re-drawn per epoch);
        ``extra_loss(model)`` adds a regulariser (watermarks, passport signs);
        ``batch_transform(xb, idx)`` changes each augmented batch (floats in [0, 1]; ``idx``
        the images' indices in ``x``), for what augmentation must not move; ``params``
        restricts what is trained (default: every parameter). With ``checkpoint_dir``, the
        state after an epoch is saved there (after the last one, and after any other once
        ``checkpoint_interval_s()`` has passed since the last save) and a later call resumes
        from it.
        """
        if len(x) != len(y):
            raise IpbenchError(f"{len(x)} images but {len(y)} labels")
        if len(x) == 0:
            raise IpbenchError("cannot train on an empty set")
        dev = self.device
        precision = resolve_precision(cfg, dev)
        model = self._prepare(model)
        x_dev = x.to(dev)
        params = [p for p in (params or list(model.parameters())) if p.requires_grad]
        opt = torch.optim.SGD(
            param_groups(model, params, cfg), lr=cfg.lr, momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
        )  # fmt: skip
        n, bs = len(x), min(cfg.batch_size, len(x))
        steps_per_epoch = math.ceil(n / bs)
        total = cfg.epochs * steps_per_epoch
        ckpt = Path(checkpoint_dir) if checkpoint_dir else None
        t0 = time.perf_counter()
        if not (ckpt and has_checkpoint(ckpt)):  # a checkpoint holds data-set layers already
            init_from_data(model, x[: cfg.data_init_images], dev)
        look = (
            Lookahead(model, cfg.lookahead_every, cfg.lookahead_decay)
            if cfg.lookahead_every > 0
            else None
        )
        start_epoch = load_checkpoint(ckpt, model, opt, look, cfg.epochs) if ckpt else 0
        step, last_loss = start_epoch * steps_per_epoch, float("nan")
        # alternating flips: which half of the images is mirrored in even epochs, for the run
        flip_base = None
        if cfg.flip and cfg.flip_mode == "alternate":
            g0 = torch.Generator().manual_seed(_epoch_seed(seed, 0, 2))
            flip_base = torch.rand(n, generator=g0) < 0.5
        every_s, saved_at = checkpoint_interval_s(), time.perf_counter()
        with make_progress() as bar:
            task = bar.add_task(f"{self.desc_prefix}{desc}", total=total, completed=step, info="")
            for epoch in range(start_epoch, cfg.epochs):
                model.train()
                torch.manual_seed(_epoch_seed(seed, epoch, 1))  # dropout and friends
                g = torch.Generator().manual_seed(_epoch_seed(seed, epoch))
                perm = torch.randperm(n, generator=g)
                aug = draw_params(n, cfg.crop_padding, cfg.flip, g, flip_base, epoch)
                targets = (targets_fn(epoch) if targets_fn else y).to(dev)
                loss_sum = torch.zeros((), device=dev)
                for i in range(0, n, bs):
                    idx = perm[i : i + bs]
                    xb = crop_flip(  # on the stored dtype (uint8: a quarter of the bytes)
                        x_dev[idx.to(dev)], cfg.crop_padding, aug["dy"][idx], aug["dx"][idx],
                        aug["flip"][idx], cfg.crop_pad_mode,
                    )  # fmt: skip
                    xb = to_float_images(xb)
                    if batch_transform is not None:
                        xb = batch_transform(xb, idx)
                    xb = xb.contiguous(memory_format=torch.channels_last)
                    lr = lr_at(step, total, steps_per_epoch, cfg)
                    for group in opt.param_groups:
                        group["lr"] = lr * group["lr_scale"]
                    with autocast(dev, precision):
                        out = model(xb)
                    loss = F.cross_entropy(
                        out.float(), targets[idx.to(dev)], label_smoothing=cfg.label_smoothing
                    )
                    if extra_loss is not None:
                        loss = loss + extra_loss(model)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    loss_sum += loss.detach()
                    step += 1
                    if look is not None:
                        look.after_step(model, step, total)
                    if step % 20 == 0 or i + bs >= n:
                        last_loss = float(loss.detach())
                        if not math.isfinite(float(loss_sum)):
                            raise TrainingDivergedError(
                                f"{desc}: loss became {float(loss_sum)} at epoch {epoch + 1}, "
                                f"step {step}; lower lr (now {cfg.lr}) or check the data"
                            )
                        bar.update(
                            task,
                            completed=step,
                            info=f"ep {epoch + 1}/{cfg.epochs} loss {last_loss:.3f}",
                        )
                last = epoch + 1 == cfg.epochs
                if ckpt and (last or time.perf_counter() - saved_at >= every_s):
                    save_checkpoint(ckpt, model, opt, epoch + 1, look, cfg.epochs)
                    saved_at = time.perf_counter()
                    crash_point(f"checkpoint:{desc}:{epoch + 1}")
        wall = time.perf_counter() - t0
        done = (cfg.epochs - start_epoch) * n
        return TrainResult(
            cfg.epochs, step, last_loss, wall, done / wall if wall > 0 else 0.0, start_epoch
        )

    @torch.no_grad()
    def predict(
        self, model: nn.Module, x: torch.Tensor, batch_size: int = 1000, precision: str = "fp32"
    ) -> torch.Tensor:
        """Logits (float32, on the CPU) for images ``x`` (uint8 or float in [0, 1]).

        No test-time augmentation: a flipped authorized image would carry a flipped token, so
        TTA is not neutral between schemes and the shared protocol leaves it out.
        """
        model = self._prepare(model)
        was_training = model.training
        model.eval()
        outs = []
        for i in range(0, len(x), batch_size):
            xb = to_float_images(x[i : i + batch_size].to(self.device))
            xb = xb.contiguous(memory_format=torch.channels_last)
            with autocast(self.device, precision):
                outs.append(model(xb).float().cpu())
        model.train(was_training)
        return torch.cat(outs) if outs else torch.empty(0)

    def accuracy(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
    ) -> float:
        """Top-1 accuracy in percent, evaluated in fp32 like every number ipbench reports."""
        logits = self.predict(model, x, batch_size)
        return 100.0 * (logits.argmax(1) == y).float().mean().item()
