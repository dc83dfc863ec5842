"""``processing``: the ordinary processing an authorized query meets on its way, and A_ad after it.

Not a thief: an authorized user's image, with its token already applied, is JPEG-compressed,
resized down and back up, blurred or made noisy (a photo app, a CDN, a camera) before the
service sees it. A token that breaks under JPEG 75 locks out its own users, so the headline is
A_ad after JPEG at ``headline_quality``; every other setting is a point of a curve per
processing (``At("A_ad", param, x, processing)``). ``A_ad_clean`` is the same users' accuracy
without processing (the curves' reference, equal to the evaluate stage's A_ad).

``jpeg`` saves as a photo app does (Pillow's defaults: 4:2:0 chroma subsampling, colour at
half resolution); ``jpeg444`` at the same qualities keeps full colour resolution (4:4:4, as
cameras' and editors' high-quality settings save), which separates what quantisation does to a
token from what halving its colour resolution does.

Levels follow CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019, ``make_cifar_c.py``): JPEG
qualities 80, 65, 58, 50, 40, Gaussian noise sigma 0.04..0.10, Gaussian blur sigma 0.4..1.0,
to which we add JPEG 100, 90 and 75 (the web default) and stronger blur and noise (2.0, 0.2) so
the curves reach where a token must fail. CIFAR-10-C has no resize; ``resize`` scales by
0.9 .. 0.5 with bilinear antialiased interpolation and back up bilinearly (our choice). Each
processed image is re-quantised to 8 bits, as sent. Applies to input-space schemes only: for
the others the credential never passes through the image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from annotated_types import Ge, Gt, Interval
from torch.nn import functional as F

from ipbench.attacks.fake_token import genuine
from ipbench.core.errors import IpbenchError
from ipbench.core.progress import track
from ipbench.core.registry import attacks
from ipbench.metrics.spec import At, Results, pct
from ipbench.ml.images import quantize, to_uint8
from ipbench.plugin.attack import Attack, Target, seeded, served_accuracy, test_slice
from ipbench.plugin.capabilities import InputSpaceToken
from ipbench.plugin.context import RunContext

PROCESSINGS = ("jpeg", "jpeg444", "resize", "blur", "noise")
PARAM = {
    "jpeg": "quality", "jpeg444": "quality", "resize": "scale", "blur": "sigma", "noise": "sigma"
}  # fmt: skip


@dataclass(frozen=True)
class ProcessingConfig:
    processings: tuple[str, ...] = PROCESSINGS
    qualities: tuple[Annotated[int, Interval(ge=1, le=100)], ...] = (
        100,
        90,
        80,
        75,
        65,
        58,
        50,
        40,
    )  # CIFAR-10-C + 100, 90, 75
    scales: tuple[Annotated[float, Interval(gt=0, le=1)], ...] = (
        0.9,
        0.75,
        0.5,
    )  # down then back up (our choice)
    blur_sigmas: tuple[Annotated[float, Gt(0)], ...] = (
        0.4,
        0.6,
        0.7,
        0.8,
        1.0,
        2.0,
    )  # CIFAR-10-C + 2.0
    noise_sigmas: tuple[Annotated[float, Ge(0)], ...] = (
        0.04,
        0.06,
        0.08,
        0.09,
        0.10,
        0.2,
    )  # CIFAR-10-C + 0.2
    headline_quality: Annotated[int, Interval(ge=1, le=100)] = (
        75  # the headline: A_ad after JPEG at this quality
    )
    max_test: Annotated[int, Ge(0)] = 2000  # test images sent per setting (0: the whole test split)
    users: Annotated[int, Ge(1)] = (
        4  # authorized users the images are shared between, as in evaluate
    )
    batch_size: Annotated[int, Ge(1)] = 500

    def __post_init__(self) -> None:
        bad = [p for p in self.processings if p not in PROCESSINGS]
        if bad or not self.processings:
            raise IpbenchError(
                f"processing processings {bad or '()'} invalid; valid: {', '.join(PROCESSINGS)}"
            )
        if any(not 1 <= q <= 100 for q in (*self.qualities, self.headline_quality)):
            raise IpbenchError(f"processing qualities must lie in 1..100; got {self.qualities}")
        if any(not 0 < s <= 1 for s in self.scales):
            raise IpbenchError(f"processing scales must lie in (0, 1]; got {self.scales}")
        if any(s < 0 for s in (*self.blur_sigmas, *self.noise_sigmas)):
            raise IpbenchError("processing sigmas must be >= 0")


def jpeg(x: torch.Tensor, quality: int, subsampling: str = "4:2:0") -> torch.Tensor:
    """Each image of ``x`` (floats in [0, 1], 1 or 3 channels) through JPEG at ``quality``;
    ``subsampling`` "4:2:0" is Pillow's (libjpeg's) default, as a photo app saves it, "4:4:4"
    keeps the colour planes at full resolution."""
    if subsampling not in ("4:2:0", "4:4:4"):
        raise IpbenchError(f"JPEG subsampling {subsampling!r} invalid; valid: 4:2:0, 4:4:4")
    from PIL import Image

    out = []
    for img in to_uint8(x).cpu().permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img.squeeze(-1) if img.shape[-1] == 1 else img).save(
            buf, format="JPEG", quality=int(quality), subsampling=subsampling
        )
        back = np.asarray(Image.open(buf).convert("L" if img.shape[-1] == 1 else "RGB"))
        out.append(torch.from_numpy(back.copy()).view(*img.shape))
    return torch.stack(out).permute(0, 3, 1, 2).float().to(x.device) / 255


def resize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Down to ``scale`` of the side (bilinear, antialiased), then back up (bilinear)."""
    h, w = x.shape[-2:]
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    down = F.interpolate(x, size=small, mode="bilinear", align_corners=False, antialias=True)
    return F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur, kernel radius ceil(3 sigma), reflected borders."""
    radius = math.ceil(3 * sigma)
    if sigma == 0 or radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def noise(x: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    """Additive Gaussian noise N(0, sigma^2) per pixel (values in [0, 1] units)."""
    return x + sigma * torch.randn(x.shape, generator=g).to(x.device)


@attacks.register("processing")
class Processing(Attack):
    """A_ad after JPEG, resize, blur and noise applied to authorized queries."""

    Config = ProcessingConfig
    requires = (InputSpaceToken,)
    summary = "benign processing of authorized queries: JPEG, resize, blur, noise (CIFAR-10-C)"
    metrics = (
        pct("A_ad_jpeg", "higher", 1, "A_ad after JPEG at the headline quality (75)"),
        pct("A_ad_worst", "higher", 2, "the lowest A_ad over every processing and level"),
        pct("A_ad_clean", "higher", 0, "A_ad of the same queries, unprocessed"),
        pct("A_ad", "higher", 0, "A_ad after one processing (label) at one level"),
    )
    preset_defaults = {
        "smoke": {
            "qualities": (100, 75, 40),
            "scales": (0.5,),
            "blur_sigmas": (0.7, 2.0),
            "noise_sigmas": (0.06, 0.2),
            "max_test": 500,
        },
        "quick": {"max_test": 2000},
    }

    def levels(self) -> dict[str, tuple[float, ...]]:
        c = self.config
        qualities = tuple(dict.fromkeys((*c.qualities, c.headline_quality)))
        return {
            "jpeg": qualities, "jpeg444": qualities, "resize": c.scales, "blur": c.blur_sigmas,
            "noise": c.noise_sigmas,
        }  # fmt: skip

    def run(self, target: Target, ctx: RunContext) -> Results:
        c = self.config
        x, y = test_slice(ctx, c.max_test)
        sent = genuine(target, ctx, x, c.users, c.batch_size)  # what authorized users send
        g = seeded(ctx.seed, 41)
        process: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
            "jpeg": lambda v, q: jpeg(v, int(q)),
            "jpeg444": lambda v, q: jpeg(v, int(q), "4:4:4"),
            "resize": resize,
            "blur": blur,
            "noise": lambda v, s: noise(v, s, g),
        }
        out: Results = {"A_ad_clean": served_accuracy(target, quantize(sent), y, ctx)}
        levels = self.levels()
        todo = [(name, level) for name in c.processings for level in levels[name]]
        for name, level in track(todo, "processing levels"):
            acc = served_accuracy(target, quantize(process[name](sent, level)), y, ctx)
            out[At("A_ad", PARAM[name], level, name)] = acc
        curve = [v for k, v in out.items() if isinstance(k, At)]
        out["A_ad_worst"] = min(curve)
        if "jpeg" in c.processings:
            out["A_ad_jpeg"] = out[At("A_ad", "quality", c.headline_quality, "jpeg")]
        return out
