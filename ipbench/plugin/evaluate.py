"""The shared evaluation: every scheme is scored through ``query`` on the same test images."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Interval

from ipbench.metrics.accuracy import accuracy, derived
from ipbench.metrics.image_quality import image_quality
from ipbench.metrics.overhead import compare, credential_cost, flops_per_image, measure
from ipbench.metrics.spec import At
from ipbench.ml.datasets import ImageSet
from ipbench.ml.training import to_float_images
from ipbench.plugin.capabilities import InputSpaceToken, StealthViews
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.plugin.credential_memo import memo_for

ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class EvalConfig:
    users: Annotated[int, Interval(ge=1, le=10_000)] = (
        4  # authorized users the test set is shared between (never seen in training)
    )
    batch_size: Annotated[int, Interval(ge=1, le=2**20)] = 500
    quality_images: Annotated[int, Interval(ge=1, le=10**7)] = (
        1000  # test images compared with their authorized versions
    )
    overhead_repeats: Annotated[int, Interval(ge=1, le=10_000)] = (
        5  # timed 1-image queries per path (median kept); few, to stay fast
    )


# Bumped when the evaluate stage records new metrics, so cached evaluations are recomputed.
# 2: overhead (params, FLOPs, memory, latency, credential_ms) for every scheme; 3: the
# stealthiness views of StealthViews schemes (PSNR@token, PSNR@reference, ...)
EVAL_VERSION = 3


def eval_users(seed: int, n: int) -> list[str]:
    """``n`` random 8-character identity strings, reproducible per seed."""
    g = torch.Generator().manual_seed(900_001 + seed)
    idx = torch.randint(0, len(ALPHABET), (n, 8), generator=g)
    return ["".join(ALPHABET[i] for i in row) for row in idx.tolist()]


@torch.no_grad()
def query_logits(
    scheme: Scheme, protected: Protected, x: torch.Tensor, credential: Credential | None,
    device: torch.device, batch_size: int = 500,
) -> torch.Tensor:  # fmt: skip
    """Logits (CPU, float32) of the deployed service for images ``x`` (uint8 or [0, 1]).

    An input-space credential is applied through the process's memo of credentialed images
    (``ipbench.plugin.credential_memo``: exact, so an attack that scores many models on the
    same test images applies a costly token once)."""
    protected.model.to(device).eval()
    memo = None
    if credential is not None and len(x):
        memo = memo_for(scheme, credential, tuple(x.shape[1:]), device)
    outs = []
    for i in range(0, len(x), batch_size):
        raw = x[i : i + batch_size]
        batch = to_float_images(raw).to(device)
        if memo is None:
            out = scheme.query(protected, batch, credential)
        else:  # Scheme.query's steps, with apply memoised
            protected.model.eval()
            out = scheme.serve(protected, memo.apply(raw, batch), credential)
        outs.append(out.float().cpu())
    return torch.cat(outs)


def ad_ud_accuracy(
    scheme: Scheme, protected: Protected, test: ImageSet, device: torch.device, seed: int,
    users: int = EvalConfig.users, batch_size: int = EvalConfig.batch_size,
) -> tuple[float, float, list[str]]:  # fmt: skip
    """A_ad (the test set shared among ``users`` authorized users) and A_ud (no credential).

    The one place the user/credential split is made, so attacks score exactly like evaluate.
    Also returns the users, for metrics that need one of them.
    """
    names = eval_users(seed, max(1, min(users, len(test))))
    chunks = torch.arange(len(test)).tensor_split(len(names))
    ad_logits = torch.cat(
        [
            query_logits(
                scheme, protected, test.x[idx], scheme.authorize(protected, user), device,
                batch_size,
            )
            for user, idx in zip(names, chunks, strict=True)
        ]
    )  # fmt: skip
    ud_logits = query_logits(scheme, protected, test.x, None, device, batch_size)
    return accuracy(ad_logits, test.y), accuracy(ud_logits, test.y), names


def evaluate(
    scheme: Scheme, protected: Protected, test: ImageSet, a_or: float, device: torch.device,
    seed: int, cfg: EvalConfig = EvalConfig(),
) -> dict[str, float | str]:  # fmt: skip
    """A_ad (authorized users, test set shared among them), A_ud (no credential), A_od, A_pd."""
    a_ad, a_ud, users = ad_ud_accuracy(
        scheme, protected, test, device, seed, cfg.users, cfg.batch_size
    )
    out: dict[str, float | str] = {
        "A_or": a_or,
        "A_ad": a_ad,
        "A_ud": a_ud,
        **derived(a_or, a_ad, a_ud),
    }
    out["users_evaluated"] = float(len(users))
    if isinstance(scheme, InputSpaceToken):
        out.update(stealthiness(scheme, protected, test, users[0], cfg))
    return out


def overhead(
    scheme: Scheme, protected: Protected, baseline: torch.nn.Module, x: torch.Tensor, user: str,
    cfg: EvalConfig = EvalConfig(),
) -> dict[str, float]:  # fmt: skip
    """Paper Table X for any scheme: the authorized query path against the unprotected model.

    Params, FLOPs per image, peak activation memory and latency of one query of ``x`` (a
    1-image batch in [0, 1] on the device) under their ``compare`` names (``*_base`` for the
    baseline), plus ``credential_ms``: issuing a user's credential and, for input-space
    schemes, applying it (ActiveDaemon's encoder runs here), with ``credential_flops``.
    """
    cred = scheme.authorize(protected, user)
    baseline = baseline.to(x.device).eval()
    prot = measure(
        lambda b: scheme.query(protected, b, cred), x, protected.model, cfg.overhead_repeats
    )
    out = compare(prot, measure(baseline, x, baseline, cfg.overhead_repeats))
    if isinstance(scheme, InputSpaceToken):
        token = scheme

        def issue() -> object:
            return token.apply(scheme.authorize(protected, user), x)

        out["credential_flops"] = flops_per_image(lambda b: token.apply(cred, b), x)
    else:

        def issue() -> object:
            return scheme.authorize(protected, user)

    out["credential_ms"] = credential_cost(issue, cfg.overhead_repeats)
    return out


GALLERY_IMAGES = 4


@torch.no_grad()
def token_examples(
    scheme: Scheme, protected: Protected, images: torch.Tensor, seed: int,
    device: torch.device | None = None,
) -> dict[str, torch.Tensor]:  # fmt: skip
    """The first test images, clean and as the run's first evaluation user sends them (floats
    in [0, 1], CPU): the leaderboard's token gallery, stored so it needs neither the data nor
    the scheme's code."""
    assert isinstance(scheme, InputSpaceToken)
    x = to_float_images(images[:GALLERY_IMAGES])
    cred = scheme.authorize(protected, eval_users(seed, 1)[0])
    xa = scheme.apply(cred, x if device is None else x.to(device)).clamp(0, 1).cpu()
    return {"clean": x, "authorized": xa}


def stealthiness(
    scheme: InputSpaceToken, protected: Protected, test: ImageSet, user: str, cfg: EvalConfig
) -> dict[str, float | str]:
    """PSNR, SSIM, ERGAS, LPIPS between clean test images and what an authorized user sends
    (the classifier's view), and ``PSNR@VIEW`` etc. for each of a scheme's ``StealthViews``."""
    x = to_float_images(test.x[: cfg.quality_images])
    assert isinstance(scheme, Scheme)
    cred = scheme.authorize(protected, user)
    parts = range(0, len(x), cfg.batch_size)
    xa = torch.cat([scheme.apply(cred, x[i : i + cfg.batch_size]).cpu() for i in parts])
    out = image_quality(x, xa)
    if isinstance(scheme, StealthViews):
        pairs = [scheme.view_pairs(protected, cred, x[i : i + cfg.batch_size]) for i in parts]
        for view in pairs[0] if pairs else ():
            ref = torch.cat([p[view][0].cpu() for p in pairs])
            sent = torch.cat([p[view][1].cpu() for p in pairs])
            out |= {str(At(k, label=view)): v for k, v in image_quality(ref, sent).items()}
    return out
