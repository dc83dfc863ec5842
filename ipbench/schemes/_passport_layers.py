"""Passport layers (Fan et al., NeurIPS 2019) and the surgery that puts them into a network.

A passport layer replaces conv + BN with y = gamma * BN_noaffine(conv(x)) + beta, where gamma and
beta are not parameters but the *same* conv applied to two passport tensors and averaged over
(images, H, W). The passports are never saved with the weights (non-persistent buffers): without
the owner's passport the network runs on whatever passport is installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from ipbench.core.errors import IpbenchError
from ipbench.ml.models import ModelSpec, build_model

SUPPORTED = ("fastnet", "whitenet", "tiny", "resnet18", "resnet50")


class PassportLayer(nn.Module):
    """conv -> (pool) -> BN without affine -> * gamma(passport) + beta(passport)."""

    def __init__(self, conv: nn.Conv2d, channels: int, pool: nn.Module | None = None):
        super().__init__()
        self.conv: nn.Conv2d = conv
        self.pool = pool if pool is not None else nn.Identity()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.passport_gamma: torch.Tensor  # buffers: never saved with the weights
        self.passport_beta: torch.Tensor
        self.register_buffer("passport_gamma", torch.zeros(0), persistent=False)
        self.register_buffer("passport_beta", torch.zeros(0), persistent=False)

    def scale_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """gamma, beta of shape (C,): the conv applied to the passports, averaged."""
        if self.passport_gamma.numel() == 0 or self.passport_beta.numel() == 0:
            raise IpbenchError("passport layer has no passport installed")
        w = self.conv.weight
        gamma = self.conv(self.passport_gamma.to(w.device, w.dtype)).mean((0, 2, 3))
        beta = self.conv(self.passport_beta.to(w.device, w.dtype)).mean((0, 2, 3))
        return gamma, beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.pool(self.conv(x)))
        gamma, beta = self.scale_bias()
        return y * gamma.view(1, -1, 1, 1).to(y.dtype) + beta.view(1, -1, 1, 1).to(y.dtype)


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def passport_sites(model: nn.Module, spec: ModelSpec) -> list[tuple[str, str, str | None]]:
    """(conv, bn, pool-or-None) module paths where passports go in a plain ``build_model``.

    fastnet/whitenet/tiny: the last two convs; ResNet-18/50: every conv of layer4, shortcut included
    (the official ResNet passport configuration).
    """
    if spec.name in ("fastnet", "whitenet", "tiny"):
        backbone = model.get_submodule("1")
        assert isinstance(backbone, nn.Sequential)
        convs = [i for i, m in enumerate(backbone) if isinstance(m, nn.Conv2d)]
        sites = []
        for i in convs[-2:]:
            pool, j = None, i + 1
            while not isinstance(backbone[j], nn.BatchNorm2d):
                if isinstance(backbone[j], nn.MaxPool2d):
                    pool = f"1.{j}"
                j += 1
            sites.append((f"1.{i}", f"1.{j}", pool))
        return sites
    if spec.name in ("resnet18", "resnet50"):
        sites = []
        for name, block in model.get_submodule("1.layer4").named_children():
            base = f"1.layer4.{name}"
            for k in (1, 2, 3):
                if hasattr(block, f"conv{k}"):
                    sites.append((f"{base}.conv{k}", f"{base}.bn{k}", None))
            if block.downsample is not None:
                sites.append((f"{base}.downsample.0", f"{base}.downsample.1", None))
        return sites
    raise IpbenchError(
        f"passport layers are placed for models {', '.join(SUPPORTED)}; got {spec.name!r}"
    )


def build_passport_model(spec: ModelSpec) -> tuple[nn.Module, list[str]]:
    """``build_model(spec)`` with its passport sites replaced; returns the model and the sites
    (each the path of a ``PassportLayer``)."""
    model = build_model(spec)
    sites = passport_sites(model, spec)
    for conv_path, bn_path, pool_path in sites:
        conv, bn = _get(model, conv_path), _get(model, bn_path)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        pool = _get(model, pool_path) if pool_path else None
        _set(model, conv_path, PassportLayer(conv, bn.num_features, pool))
        _set(model, bn_path, nn.Identity())
        if pool_path:
            _set(model, pool_path, nn.Identity())
    return model, [s[0] for s in sites]


def layers(model: nn.Module, sites: list[str]) -> list[PassportLayer]:
    out = [m for m in (_get(model, s) for s in sites) if isinstance(m, PassportLayer)]
    if len(out) != len(sites):
        raise IpbenchError(f"model has no passport layers at {', '.join(sites)}")
    return out


def install(model: nn.Module, sites: list[str], passports: dict[str, torch.Tensor]) -> None:
    """Put ``passports`` (``{site}.gamma`` / ``{site}.beta``) into the model's layers."""
    for site, layer in zip(sites, layers(model, sites), strict=True):
        for part in ("gamma", "beta"):
            p = passports.get(f"{site}.{part}")
            want = layer.conv.in_channels
            if p is None or p.ndim != 4 or p.shape[1] != want:
                got = "missing" if p is None else tuple(p.shape)
                raise IpbenchError(f"passport {site}.{part}: expected (N, {want}, H, W), got {got}")
            setattr(layer, f"passport_{part}", p.to(layer.conv.weight.device))


def installed(model: nn.Module, sites: list[str]) -> dict[str, torch.Tensor]:
    out = {}
    for site, layer in zip(sites, layers(model, sites), strict=True):
        out[f"{site}.gamma"], out[f"{site}.beta"] = layer.passport_gamma, layer.passport_beta
    return out


@contextlib.contextmanager
def using(model: nn.Module, sites: list[str], passports: dict[str, torch.Tensor]) -> Iterator[None]:
    """Run with ``passports`` installed, then put back what was there."""
    before = installed(model, sites)
    install(model, sites, passports)
    try:
        yield
    finally:
        for site, layer in zip(sites, layers(model, sites), strict=True):
            layer.passport_gamma, layer.passport_beta = (
                before[f"{site}.gamma"],
                before[f"{site}.beta"],
            )


@torch.no_grad()
def signs(model: nn.Module, sites: list[str]) -> dict[str, torch.Tensor]:
    """sign(gamma) of every passport layer under the installed passport."""
    return {
        s: torch.sign(layer.scale_bias()[0]).cpu()
        for s, layer in zip(sites, layers(model, sites), strict=True)
    }


@torch.no_grad()
def layer_inputs(model: nn.Module, paths: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The inputs of modules ``paths`` when ``model`` (eval mode) sees images ``x``."""
    got: dict[str, torch.Tensor] = {}
    hooks = [
        _get(model, p).register_forward_pre_hook(
            lambda _m, args, p=p: got.__setitem__(p, args[0].detach().float().cpu())
        )
        for p in paths
    ]
    try:
        model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return got
