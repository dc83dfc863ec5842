"""Stealthiness between an image and its authorized version: PSNR, SSIM, ERGAS, LPIPS.

Images are float tensors ``(N, C, H, W)`` in [0, 1]; every function returns the mean over
images. LPIPS needs its ImageNet backbone; when that cannot be loaded it is reported missing
with the reason, never computed on a random backbone.
"""

from __future__ import annotations

import copy
import functools
import warnings
from pathlib import Path

import torch

from ipbench.core.errors import IpbenchError

ERGAS_RATIO = 4.0  # torchmetrics' default, used by the NDSS'24 token paper's reference code


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise IpbenchError(
            f"image metrics need two (N, C, H, W) tensors of one shape, got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean over images of 10 log10(range^2 / MSE); identical images give +inf."""
    _check(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).mean().item()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> float:
    """Mean SSIM (pytorch-msssim, 11x11 Gaussian window, sigma 1.5)."""
    from pytorch_msssim import ssim as _ssim

    _check(x, y)
    return _ssim(x.float(), y.float(), data_range=data_range, size_average=True).item()


def ergas(x: torch.Tensor, y: torch.Tensor, ratio: float = ERGAS_RATIO) -> float:
    """100 r sqrt(mean_c (RMSE_c / mean_c(x))^2), per image, averaged; ``x`` is the reference."""
    _check(x, y)
    ref, test = x.double().flatten(2), y.double().flatten(2)
    rmse = (test - ref).pow(2).mean(2).sqrt()
    mean = ref.mean(2).clamp_min(1e-12)
    return (100 * ratio * (rmse / mean).pow(2).mean(1).sqrt()).mean().item()


ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's ImageNet AlexNet, LPIPS's backbone


def _lpips_model() -> tuple[torch.nn.Module | None, str]:
    """LPIPS-alex with its ImageNet backbone, or ``(None, reason)``: a copy of the one loaded,
    so a caller that moves or trains it (the token generator takes it to its device) leaves
    every other caller's alone (a GPU run once fed CPU images to a model moved to cuda)."""
    model, reason = _load_lpips()
    return (copy.deepcopy(model) if model is not None else None), reason


@functools.lru_cache(maxsize=1)
def _load_lpips() -> tuple[torch.nn.Module | None, str]:
    """LPIPS-alex with its ImageNet backbone, or ``(None, reason)``; never a random backbone.

    Order: torchvision's cached AlexNet; the file ``ipbench weights lpips`` converts; a
    torchvision download, tried only where the network answers (``ipbench.core.network.online``).
    """
    from ipbench.ml.weights import load_lpips_weights, lpips_weights_path

    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    converted = lpips_weights_path()
    try:
        import lpips

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if hub_file.exists():
                return lpips.LPIPS(net="alex", verbose=False).eval(), ""
            if converted.exists():
                model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
                result = model.load_state_dict(load_lpips_weights(converted), strict=False)
                # lins.N are the same modules as linN; the scaling layer holds constants
                left = [k for k in result.missing_keys if not k.startswith(("lins.", "scaling"))]
                if left or result.unexpected_keys:
                    return None, f"LPIPS weights {converted} lack {left or result.unexpected_keys}"
                return model.eval(), ""
            from ipbench.core.network import online

            if online():
                return lpips.LPIPS(net="alex", verbose=False).eval(), ""
    except IpbenchError as exc:  # a corrupt converted file: say so, never compute on it
        return None, f"LPIPS backbone unusable: {exc}"
    except Exception as exc:  # a download that failed after all
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, f"LPIPS backbone (AlexNet, ImageNet weights) could not be loaded: {reason}"
    return None, (
        f"LPIPS backbone (ImageNet AlexNet) not found ({hub_file} or {converted}) and no "
        "network; run: ipbench weights lpips"
    )


def lpips_ready() -> bool:
    """Whether LPIPS with its ImageNet backbone can be computed here (loads it once)."""
    return _load_lpips()[0] is not None


def lpips_distance(x: torch.Tensor, y: torch.Tensor) -> float | str:
    """Mean LPIPS-alex distance, or a string saying why it is missing."""
    _check(x, y)
    model, reason = _lpips_model()
    if model is None:
        return reason
    with torch.no_grad():
        d = model(x.float().cpu() * 2 - 1, y.float().cpu() * 2 - 1)
    return d.mean().item()


def image_quality(x: torch.Tensor, y: torch.Tensor) -> dict[str, float | str]:
    """All four stealthiness metrics between clean ``x`` and authorized ``y``."""
    return {
        "PSNR": psnr(x, y),
        "SSIM": ssim(x, y),
        "ERGAS": ergas(x, y),
        "LPIPS": lpips_distance(x, y),
    }
