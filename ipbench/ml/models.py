"""Model registry. Every model takes images in [0, 1] and normalises inside.

Schemes and attacks act in pixel space (tokens, stickers, reverse-engineered triggers), so the
normalisation belongs to the network, not to the data pipeline.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ipbench.core.errors import IpbenchError, UnknownNameError
from ipbench.core.registry import models

TIMM_PREFIX = "timm:"  # ``--model timm:NAME``: any timm architecture, randomly initialised


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std`` as a layer, saved with the weights."""

    mean: torch.Tensor  # buffers
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


@dataclass(frozen=True)
class ModelSpec:
    """What determines a network's architecture; stored with every saved model."""

    name: str
    num_classes: int
    in_channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


# Element-wise non-linearities: what "a plain network's n-th activation" counts when a scheme
# picks a layer by position (ReLU in fastnet and the papers' nets, GELU in whitenet).
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Mish, nn.Hardswish,
)  # fmt: skip


def activation_names(model: nn.Module) -> list[str]:
    """Names of the model's activation modules, in registration (forward, for ipbench's
    networks) order."""
    return [n for n, m in model.named_modules() if isinstance(m, ACTIVATIONS)]


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The constructor behind a model name: a registered model, or ``timm:NAME`` for any
    architecture timm knows. Called when a request is resolved, so a bad name fails before
    any work starts, with the valid choices."""
    if name.startswith(TIMM_PREFIX):
        return _timm_factory(name.removeprefix(TIMM_PREFIX))
    try:
        return models.get(name)
    except UnknownNameError:  # the valid choices include the timm form
        raise UnknownNameError("model", name, [*models.names(), f"{TIMM_PREFIX}NAME"]) from None


def _timm_factory(arch: str) -> Callable[..., nn.Module]:
    import timm

    if not arch or not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=5, cutoff=0.7)
        hint = f"; close names: {', '.join(close)}" if close else ""
        raise IpbenchError(
            f"unknown timm model {arch!r} (--model {TIMM_PREFIX}{arch}){hint}; timm's names: "
            "python -c \"import timm; print(timm.list_models('*resnet*'))\""
        )

    def factory(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
        """Random initialisation only (pretrained=False: nothing is downloaded), sized to the
        dataset's classes and channels. Architectures with a fixed input size (ViTs) take the
        dataset's ``img_size``; the others (CNNs) have no such argument and take any size."""
        sized: dict[str, Any] = {"num_classes": num_classes, "in_chans": in_channels}
        try:
            return timm.create_model(arch, pretrained=False, img_size=image_size, **sized)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
            return timm.create_model(arch, pretrained=False, **sized)

    return factory


def build_model(spec: ModelSpec) -> nn.Module:
    """``Normalize`` followed by the backbone (registered, or ``timm:NAME``)."""
    factory = model_factory(spec.name)
    net = factory(
        num_classes=spec.num_classes, in_channels=spec.in_channels, image_size=spec.image_size
    )
    return nn.Sequential(Normalize(spec.mean, spec.std), net)


def _conv_bn(ci: int, co: int, pool: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(ci, co, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return [*layers, nn.BatchNorm2d(co), nn.ReLU(inplace=True)]


def _plain_net(widths: Sequence[int], in_channels: int, num_classes: int) -> nn.Sequential:
    """conv -> [conv, pool]* -> global max-pool -> linear: the fastest shape that learns CIFAR."""
    layers = _conv_bn(in_channels, widths[0])
    for ci, co in itertools.pairwise(widths):
        layers += _conv_bn(ci, co, pool=True)
    return nn.Sequential(
        *layers,
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(widths[-1], num_classes, bias=False),
    )


@models.register("fastnet")
def fastnet(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """Four 3x3 convs (32-64-128-256), ~57 M multiply-adds at 32x32: the CPU quick preset."""
    return _plain_net((32, 64, 128, 256), in_channels, num_classes)


class WhiteningConv(nn.Conv2d):
    """A frozen 2x2 conv that whitens image patches; its weights come from the training images.

    ``init_from_data(x)`` sets the filters to the eigenvectors of the covariance of every
    ``k x k`` patch of ``x`` (the layer's own input: normalised images), scaled by
    ``1 / sqrt(eigenvalue + eps)``, each once as is and once negated, so that a following GELU
    passes both signs (Jordan's airbench; Page's DAWNBench ResNet whitened the same way). The
    first layer then starts as a decorrelating transform instead of noise: the network needs no
    epochs to learn what the pixel statistics already say. Frozen, so it costs no gradient.
    """

    initialised: torch.Tensor  # a buffer: set once from data, saved with the weights

    def __init__(self, in_channels: int, kernel_size: int = 2, eps: float = 5e-4):
        width = 2 * in_channels * kernel_size**2
        super().__init__(in_channels, width, kernel_size, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)
        assert self.bias is not None  # bias=True above
        with torch.no_grad():
            self.bias.zero_()
        # saved with the weights: a trained or loaded layer is never set again (fine-tuning a
        # stolen model on other data must not replace its stem)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Whitening filters from ``x`` (N, C, H, W), this layer's input; deterministic (fp64)."""
        c, (kh, kw) = self.in_channels, self.kernel_size
        patches = x.double().unfold(2, kh, 1).unfold(3, kw, 1)  # N, C, H', W', kh, kw
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * kh * kw)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.T.flip(0)
        filters = (eigenvectors / torch.sqrt(eigenvalues.clamp_min(0) + self.eps)[:, None]).view(
            -1, c, kh, kw
        )
        self.weight.copy_(torch.cat((filters, -filters)).to(self.weight.dtype))
        self.initialised.fill_(True)


class Scale(nn.Module):
    """Multiplies by a constant: keeps the logits small at the start (airbench: 1/9)."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def _frozen_scale_bn(channels: int) -> nn.BatchNorm2d:
    """BN with its scale fixed at 1 and only the bias trained (the trainer scales the bias lr),
    momentum 0.4 and tiny eps as in airbench: with few, large steps the running statistics must
    follow the weights quickly."""
    bn = nn.BatchNorm2d(channels, eps=1e-12, momentum=0.4)
    bn.weight.requires_grad_(False)
    return bn


def _dirac_conv(ci: int, co: int) -> nn.Conv2d:
    """3x3 conv whose first ``ci`` filters start as the identity (airbench): a fresh network
    passes its input through, which lets a large learning rate work from the first step."""
    conv = nn.Conv2d(ci, co, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[: min(ci, co)])
    return conv


def _whiten_group(ci: int, co: int) -> list[nn.Module]:
    """conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU; pooling before the first BN puts
    the element-wise work at a quarter of the resolution."""
    return [
        _dirac_conv(ci, co), nn.MaxPool2d(2), _frozen_scale_bn(co), nn.GELU(),
        _dirac_conv(co, co), _frozen_scale_bn(co), nn.GELU(),
    ]  # fmt: skip


def _whitenet(widths: Sequence[int], in_channels: int, num_classes: int) -> nn.Sequential:
    whiten = WhiteningConv(in_channels)
    layers: list[nn.Module] = [whiten, nn.GELU()]
    ci = whiten.out_channels
    for co in widths:
        layers += _whiten_group(ci, co)
        ci = co
    return nn.Sequential(
        *layers,
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(ci, num_classes, bias=False),
        Scale(1 / 9),
    )


@models.register("whitenet")
def whitenet(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """airbench93's network in ipbench: a data-whitening 2x2 stem, then three groups of two 3x3
    convs (64-128-128) with GELU and bias-only BN; ~54 M multiply-adds per 32x32 image, as
    many as ``fastnet``.

    One flat ``nn.Sequential`` like ``fastnet``, so surgery by layer position (passports,
    pruning) finds conv -> [pool] -> BN in the same places. The whitening needs data: the
    trainer calls ``init_from_data`` on it before the first step (see ``ipbench.ml.training``).
    """
    return _whitenet((64, 128, 128), in_channels, num_classes)


@models.register("whitenet94")
def whitenet94(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """airbench94's network: ``whitenet`` with groups of 64-256-256 (~4x the multiply-adds of
    the 128-wide groups). airbench uses the same recipe for both, so the quick preset's
    ``TrainConfig`` fits it unchanged. About 1.5x slower per step on this project's CPU; at a
    20-minute budget it reaches 93.82% against whitenet's 93.04%, level with airbench's own
    loop (``benchmarks/time_to_accuracy.py``, ``docs/results.md``). The quick preset keeps
    ``whitenet``: at its ~5-minute budget the narrow one is within 0.2 points, and switching would
    change every stored result.
    """
    return _whitenet((64, 256, 256), in_channels, num_classes)


@models.register("tiny")
def tiny(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """Four 3x3 convs (8-16-32-64): trains in seconds, for the smoke preset and tests."""
    return _plain_net((8, 16, 32, 64), in_channels, num_classes)


def _torchvision_resnet(
    arch: str, num_classes: int, in_channels: int, image_size: int
) -> nn.Module:
    import torchvision

    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    if image_size <= 64:  # CIFAR-style stem: 3x3 stride-1 conv, no max-pool
        net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
    return net


@models.register("resnet18")
def resnet18(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """torchvision ResNet-18; CIFAR stem (3x3, no max-pool) for images up to 64 px."""
    return _torchvision_resnet("resnet18", num_classes, in_channels, image_size)


@models.register("resnet50")
def resnet50(num_classes: int, in_channels: int = 3, image_size: int = 224) -> nn.Module:
    """torchvision ResNet-50; CIFAR stem for images up to 64 px."""
    return _torchvision_resnet("resnet50", num_classes, in_channels, image_size)


class _WideBasic(nn.Module):
    def __init__(self, ci: int, co: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(ci), nn.Conv2d(ci, co, 3, stride, 1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(co), nn.Conv2d(co, co, 3, 1, 1, bias=False)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.short = (
            nn.Conv2d(ci, co, 1, stride, bias=False) if stride != 1 or ci != co else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = torch.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(self.drop(torch.relu(self.bn2(y))))
        return y + (self.short(o) if not isinstance(self.short, nn.Identity) else x)


class WideResNet(nn.Module):
    """WRN-depth-k (Zagoruyko & Komodakis); not in timm or torchvision at CIFAR resolution."""

    def __init__(
        self, depth: int, k: int, num_classes: int, in_channels: int = 3, dropout: float = 0.0
    ):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * k, 32 * k, 64 * k]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
        ci = widths[0]
        for stage, co in enumerate(widths[1:]):
            for i in range(n):
                layers.append(_WideBasic(ci, co, 2 if (i == 0 and stage > 0) else 1, dropout))
                ci = co
        layers += [nn.BatchNorm2d(ci), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(ci, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@models.register("wrn16_4")
def wrn16_4(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """Wide ResNet 16-4 (2.7 M parameters)."""
    return WideResNet(16, 4, num_classes, in_channels)


@models.register("wrn28_10")
def wrn28_10(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """Wide ResNet 28-10 (36 M parameters), ActiveGuard's CIFAR-10 network."""
    return WideResNet(28, 10, num_classes, in_channels)


class LeNet5(nn.Module):
    """LeNet-5 (ReLU, max-pool), sized from the input so it runs on 28x28 and 32x32."""

    def __init__(self, num_classes: int, in_channels: int = 1, image_size: int = 28):
        super().__init__()
        pad = 2 if image_size == 28 else 0
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(),
        )  # fmt: skip
        side = ((image_size + 2 * pad - 4) // 2 - 4) // 2
        self.classifier = nn.Sequential(
            nn.Linear(16 * side * side, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@models.register("lenet5")
def lenet5(num_classes: int, in_channels: int = 1, image_size: int = 28) -> nn.Module:
    """LeNet-5 as in ActiveGuard's MNIST experiments."""
    return LeNet5(num_classes, in_channels, image_size)
