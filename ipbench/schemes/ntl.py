"""Non-Transferable Learning, applicability authorization (Wang et al., ICLR 2022; conditionWang/NTL).

The model keeps its accuracy on the authorized domain, the owner's images carrying a patch, and
loses it everywhere else. Training minimises, per batch (reference code ``ntl_cifar_stl.py``)::

    L = KL(f(x_src), y) - min(1, alpha * KL(f(x_aux), y)) * min(1, beta * MMD(g(x_src), g(x_aux)))

with x_src the patched images (source domain), x_aux the same images without the patch
(auxiliary domain), g the feature extractor and MMD the multi-kernel Gaussian MMD of the code
(5 kernels, bandwidths x2 apart around the mean pairwise distance). Defaults are the code's:
alpha = beta = 0.1, and its patch (``add_watermark``): +80/255 on the red channel wherever the
row or the column index is even, clipped. ``patch=sticker`` swaps in M-LOCK's 4x4 sticker
(same size, placement and seed rule as ``mlock``) to compare the two on equal terms.

Choices where paper and code leave room: the KL terms are the code's ``KLDivLoss`` (mean over
N x K elements, i.e. cross-entropy / K), scaled by K so the source term is the shared trainer's
cross-entropy and the aux term keeps the code's weight relative to it; the MMD is taken on a
mid-network map (``feature_layer``: a ResNet's ``layer2``, a plain network's second activation; the
code uses VGG ``features[:10]``, after two conv stages); no GAN-augmented neighbour domains (the code's
optional extra auxiliary data); training from scratch with the preset's recipe and SGD (the
code fine-tunes an ImageNet VGG with Adam lr 1e-4 for 100 epochs; ``init=baseline`` starts
from the task's unprotected model instead).

Batch norm: the reference's VGG has none. In a network with batch norms (every preset's), the
source and auxiliary passes both feed the running statistics, and the MMD term drives the two
domains' features apart, so the running statistics end as a blend that fits neither domain: the
served model (eval mode) then answers every query with one class (CIFAR-10 quick, whitenet:
A_ad 10.0, A_ud 10.0; in train mode, each batch normalised by its own statistics, patched 84.2%
and plain 4.8%). So after training the owner re-estimates the running statistics on the
authorized domain (``bn_calibration_images`` patched owner images, no augmentation, a plain
average): the model is served as it saw its source batches. On that stored model this gave
A_ad 84.0 and A_ud 11.7 (1,000 test images); statistics from plain images instead give 10.5
and 4.4. ``bn_calibration_images=0`` keeps the blended statistics, for the record.

Measured on the smoke task (tiny network, 4-20 epochs): with the code's weights the subtracted
term never engages. Patched and plain images give nearly the same features (MMD ~0.02 at the
default feature layer), so min(1, beta MMD) ~0.002 scales the auxiliary term's gradient to
nothing and the model classifies plain images as well as patched ones (A_ud ~ A_ad ~ 97%).
Larger weights (alpha = 1, beta = 10) make it bite but destabilise the source domain too
(A_ad 36-78%, A_ud 18-45%). The product form needs the code's long Adam fine-tuning, where the
source loss vanishes first; see docs/schemes.md.

Capacity: one patch per model, shared by every user: 1. Input-space capability: the patched
image is what a user sends, so PSNR/SSIM/ERGAS/LPIPS measure the patch's visibility, fake tokens
and Neural Cleanse apply (Neural Cleanse searches for a patch that opens the model); the
fake-credential attack sends a patch of the same kind with other parameters.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt, Interval
from torch import nn

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.images import quantize
from ipbench.ml.models import ModelSpec, activation_names
from ipbench.ml.training import to_float_images
from ipbench.plugin.capabilities import InputSpaceToken
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.schemes._modelside import forged_generator
from ipbench.schemes._shared_secret import SharedSecretForging
from ipbench.schemes.mlock import paste, positions


@dataclass(frozen=True)
class NTLConfig:
    """Defaults are the reference code's (alpha = beta = 0.1, its red-grid patch)."""

    alpha: Annotated[float, Ge(0)] = 0.1  # weight of the auxiliary-domain KL (clipped at 1)
    beta: Annotated[float, Ge(0)] = (
        0.1  # weight of the MMD between source and auxiliary features (clipped at 1)
    )
    mmd_kernels: Annotated[int, Ge(1)] = 5
    feature_layer: str = "auto"  # module whose output the MMD compares (see feature_module)
    mmd_kernel_mul: Annotated[float, Gt(0)] = 2.0
    patch: Literal["grid", "sticker"] = "grid"
    grid_value: Annotated[int, Interval(ge=0, le=255)] = (
        80  # grid patch: added to the channel (8-bit units), clipped at 255
    )
    grid_channel: Annotated[int, Ge(0)] = 0  # red
    sticker_size: Annotated[int, Ge(1)] = 4  # sticker patch: M-LOCK's
    sticker_seed: int = 0
    protect_epochs: Annotated[int, Ge(1)] | None = None  # None: the preset's epochs
    # scratch: a fresh network, as M-LOCK trains (equal terms); baseline: fine-tune the cached
    # unprotected model (the code fine-tunes an ImageNet-pretrained VGG).
    init: Literal["baseline", "scratch"] = "scratch"
    # Weight of the subtracted term against the source cross-entropy; None: K, the code's
    # ratio (its KL terms are cross-entropy / K).
    aux_weight: float | None = None
    # patched owner images the batch-norm running statistics are re-estimated on after
    # training (0: keep the statistics training blended from both domains; see the docstring)
    bn_calibration_images: Annotated[int, Ge(0)] = 10_000


def mmd(a: torch.Tensor, b: torch.Tensor, kernels: int = 5, mul: float = 2.0) -> torch.Tensor:
    """Multi-kernel Gaussian MMD between feature batches ``a`` and ``b`` (the NTL code's)."""
    total = torch.cat([a.flatten(1), b.flatten(1)]).float()
    n, m = len(total), len(a)
    d2 = torch.cdist(total, total).pow(2)
    bandwidth = d2.detach().sum() / max(1, n * n - n) / mul ** (kernels // 2)
    k = sum(torch.exp(-d2 / (bandwidth * mul**i).clamp_min(1e-12)) for i in range(kernels))
    return k[:m, :m].mean() + k[m:, m:].mean() - k[:m, m:].mean() - k[m:, :m].mean()


def grid_patch(x: torch.Tensor, value: float, channel: int) -> torch.Tensor:
    """The code's patch: ``value`` added to ``channel`` where row or column index is even."""
    h, w = x.shape[-2:]
    even = (torch.arange(h, device=x.device) % 2 == 0)[:, None] | (
        torch.arange(w, device=x.device) % 2 == 0
    )[None, :]
    out = x.clone()
    out[:, channel] = (out[:, channel] + value * even).clamp(0, 1)
    return out


def feature_module(model: nn.Module, name: str) -> nn.Module:
    """The module whose output the MMD compares: ``name``, or (auto) a ResNet's ``layer2`` /
    a plain network's second activation (ReLU, GELU, ...), a mid-network map as in the code (VGG ``features[:10]``)."""
    modules = dict(model.named_modules())
    if name != "auto":
        if name not in modules:
            raise IpbenchError(f"ntl feature_layer {name!r} is not a module of the network")
        return modules[name]
    for n, m in modules.items():
        if n.endswith("layer2"):
            return m
    acts = activation_names(model)
    if len(acts) < 2:
        raise IpbenchError(
            "ntl cannot pick a feature layer here (fewer than 2 activations); "
            "set feature_layer=<module>"
        )
    return modules[acts[1]]


@torch.no_grad()
def calibrate_batch_norm(
    model: nn.Module, images: torch.Tensor, transform: Any, batch_size: int = 500
) -> int:
    """Re-estimate every batch norm's running statistics as the plain average over
    ``transform(images[i:j], idx)`` (uint8 images, float [0, 1] to the transform); the number
    of batch norms reset."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(images) == 0:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    was_training = model.training
    model.train()
    dev = next(model.parameters()).device
    try:
        for start in range(0, len(images), batch_size):
            idx = torch.arange(start, min(start + batch_size, len(images)))
            xb = to_float_images(images[idx]).to(dev)
            model(transform(xb, idx))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return len(norms)


@schemes.register("ntl")
class NTL(Scheme, InputSpaceToken, SharedSecretForging):
    """Non-transferable learning: only patched (authorized-domain) images are classified well."""

    Config = NTLConfig
    summary = "NTL applicability authorization (ICLR'22): KL - KL_aux x MMD, patch credential"
    forge_kinds = ("random_patch",)
    # quick: protection trains 2x the baseline's epochs, as M-LOCK's does (equal terms).
    preset_defaults = {"quick": {"protect_epochs": 12}}

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        if c.patch not in ("grid", "sticker"):
            raise IpbenchError(f"ntl patch={c.patch!r}; valid: grid, sticker")
        if c.alpha < 0 or c.beta < 0 or c.mmd_kernels < 1 or c.mmd_kernel_mul <= 1:
            raise IpbenchError(
                "ntl needs alpha, beta >= 0, mmd_kernels >= 1, mmd_kernel_mul > 1; got "
                f"{c.alpha}, {c.beta}, {c.mmd_kernels}, {c.mmd_kernel_mul}"
            )
        if not 0 <= c.grid_value <= 255:
            raise IpbenchError(f"ntl grid_value must be in 0..255, got {c.grid_value}")
        if c.protect_epochs is not None and c.protect_epochs < 1:
            raise IpbenchError(f"protect_epochs must be >= 1 (or None), got {c.protect_epochs}")

    def validate(self, spec: ModelSpec) -> None:
        c = self.config
        if c.patch == "grid" and not 0 <= c.grid_channel < spec.in_channels:
            raise IpbenchError(f"ntl grid_channel must be in 0..{spec.in_channels - 1}")
        if c.patch == "sticker" and not 0 < c.sticker_size <= spec.image_size:
            raise IpbenchError(f"ntl sticker_size must be in 1..{spec.image_size}")

    # --- the patch ---------------------------------------------------------------------------
    def make_patch(self, spec: ModelSpec, g: torch.Generator) -> dict[str, torch.Tensor]:
        c = self.config
        if c.patch == "grid":
            return {"grid": torch.tensor([c.grid_value / 255, float(c.grid_channel)])}
        s = c.sticker_size
        return {"sticker": torch.rand(spec.in_channels, s, s, generator=g)}

    @staticmethod
    def patched(
        patch: dict[str, torch.Tensor], x: torch.Tensor, top_left: tuple | None = None
    ) -> torch.Tensor:
        """``x`` carrying ``patch`` (sticker at ``top_left`` positions, or random ones)."""
        if "grid" in patch:
            value, channel = patch["grid"].tolist()
            return grid_patch(x, value, int(channel))
        sticker = patch["sticker"].to(x.device)
        if top_left is None:  # reproducible placements
            g = torch.Generator().manual_seed(0)
            top_left = positions(len(x), x.shape[-1], sticker.shape[-1], "random", g)
        return paste(x, sticker, *top_left, 1.0)

    # --- the contract ------------------------------------------------------------------------
    def protect(self, ctx: RunContext) -> Protected:
        c = self.config
        self.validate(ctx.model_spec)
        g = ctx.secret_generator("ntl", "patch", c.sticker_seed)
        patch = self.make_patch(ctx.model_spec, g)
        owner, k, dev = ctx.owner, ctx.model_spec.num_classes, ctx.device
        size = ctx.model_spec.image_size
        s = c.sticker_size
        where = positions(len(owner), size, s, "random", torch.Generator().manual_seed(ctx.seed))
        y_all = owner.y.to(dev)
        model = ctx.unprotected() if c.init == "baseline" else ctx.new_model()
        feats: list[torch.Tensor] = []
        layer = feature_module(model, c.feature_layer)
        hook = layer.register_forward_hook(lambda _m, _a, out: feats.append(out.flatten(1)))
        batch: dict[str, torch.Tensor] = {}

        def to_source(xb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            feats.clear()
            batch["aux"], batch["idx"] = xb, idx
            tl = (where[0][idx].to(xb.device), where[1][idx].to(xb.device))
            return quantize(self.patched(patch, xb, tl))

        def ntl_term(m: nn.Module) -> torch.Tensor:
            src_feat = feats[-1]
            aux_out = m(batch["aux"].contiguous(memory_format=torch.channels_last))
            aux_feat = feats[-1]
            kl_aux = F.cross_entropy(aux_out.float(), y_all[batch["idx"].to(dev)]) / k
            dis = mmd(src_feat, aux_feat, c.mmd_kernels, c.mmd_kernel_mul)
            term = (c.alpha * kl_aux).clamp(max=1) * (c.beta * dis).clamp(max=1)
            return -(k if c.aux_weight is None else c.aux_weight) * term

        train = ctx.preset.train
        if c.protect_epochs is not None:
            train = dataclasses.replace(train, epochs=c.protect_epochs)
        try:
            result = ctx.trainer.fit(
                model, owner.x, owner.y, train, seed=ctx.seed, batch_transform=to_source,
                extra_loss=ntl_term, checkpoint_dir=ctx.stage_dir, desc=f"{self.name} protection",
            )  # fmt: skip
        finally:
            hook.remove()

        def authorized(xb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            tl = (where[0][idx].to(xb.device), where[1][idx].to(xb.device))
            return quantize(self.patched(patch, xb, tl))

        n_cal = min(c.bn_calibration_images, len(owner))
        calibrated = calibrate_batch_norm(model, owner.x[:n_cal], authorized) if n_cal else 0
        meta = {"patch": c.patch, "train_epochs": train.epochs, "train_wall_s": result.wall_s,
                "bn_calibrated": calibrated, "bn_calibration_images": n_cal}  # fmt: skip
        secrets = {f"patch.{n}": v for n, v in patch.items()}
        return Protected(self.name, model, ctx.model_spec, secrets=secrets, meta=meta)

    def _credential(self, user: str, patch: dict[str, torch.Tensor]) -> Credential:
        g = torch.Generator().manual_seed(zlib.crc32(user.encode()))  # per-user placements

        def transform(x: torch.Tensor) -> torch.Tensor:
            if "grid" in patch:
                return quantize(self.patched(patch, x))
            s = patch["sticker"].shape[-1]
            return quantize(self.patched(patch, x, positions(len(x), x.shape[-1], s, "random", g)))

        tensors = {f"patch.{n}": v for n, v in patch.items()}
        return Credential(user, "patch", tensors, transform=transform)

    @staticmethod
    def _patch_of(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {n[len("patch.") :]: v for n, v in tensors.items() if n.startswith("patch.")}

    def authorize(self, protected: Protected, user: str) -> Credential:
        """Every authorized user holds the owner's patch (one patch per model)."""
        return self._credential(user, self._patch_of(protected.secrets))

    def apply(self, credential: Credential, x: torch.Tensor) -> torch.Tensor:
        if credential.transform is None:
            return quantize(self.patched(self._patch_of(credential.tensors), x))
        return credential.transform(x)

    def forge(self, protected: Protected, seed: int) -> Credential:
        """A patch of the same kind, other parameters: the grid on another channel with another
        strength, or a random sticker of the same size."""
        g = forged_generator(seed, 21)
        patch = self._patch_of(protected.secrets)
        if "grid" in patch:
            channels = protected.model_spec.in_channels
            channel = int(patch["grid"][1]) + 1 + int(torch.randint(0, 2, (1,), generator=g))
            value = 40 + float(torch.randint(0, 81, (1,), generator=g))
            fake = {"grid": torch.tensor([value / 255, float(channel % channels)])}
        else:
            fake = {"sticker": torch.rand(patch["sticker"].shape, generator=g)}
        return self._credential("forger", fake)

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        return self.shared_secret_metrics(protected, ctx, "patch")
