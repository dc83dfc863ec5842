"""Secret-key block-wise transformation (AprilPyone & Kiya, 2020-2021): the model learns keyed images.

"Block-wise image transformation with secret key for adversarially robust defense" (IEEE TIFS
2021) and its model-protection variant ("Training DNN model with secret key for model
protection", GCCE 2020; "A protection method of trained CNN model with a secret key from
unauthorized access", APSIPA Trans. 2021). Every image is cut into non-overlapping M x M blocks;
each block, read as a vector of M*M*C 8-bit values, is transformed with the same secret key:

- ``shuffle`` (pixel shuffling, the papers' model-protection default): the M*M*C positions are
  permuted by a key permutation;
- ``negpos`` (negative/positive transform): each position whose key bit is 1 is replaced by
  255 - value;
- ``ffx`` (format-preserving encryption): each position's value goes through a keyed bijection
  of the 256 levels. The papers use FFX (an AES-based Feistel FPE); ipbench draws one random
  bijection of {0..255} per block position from the key, which is what FFX provides to the
  network (a keyed, position-dependent permutation of the value domain) without the cipher.

The model is trained from scratch on key-transformed images only (the transform is applied to
every augmented batch, so training sees exactly what a user sends); authorized users transform
their queries with the key, unauthorized users send plain images. Defaults: M = 4 (the papers'
CIFAR-10 block size), pixel shuffling. Where the papers are silent: the key is drawn from
(run seed, ``key_seed``); images are quantised to 8 bits before the transform (the papers work
on 8-bit images); protection trains with the preset's recipe. Published CIFAR-10 numbers
(A_or, A_ad, A_od; FFX, M = 4, network unnamed) are in ``leaderboard/reference.csv``.

Capacity: one key per model (every user holds the same key; a new key needs a new model): 1.
Input-space capability: the transformed image is what the user sends, so PSNR, SSIM, ERGAS and
LPIPS measure how far the keyed image is from the plain one. These schemes scramble the image
on purpose (low PSNR is expected and is not a stealthiness failure, they are not meant to be
invisible). Fake tokens and Neural Cleanse apply (a thief looking for an input change that
unlocks the model); the fake-credential attack sends a random key of the same kind.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import torch
from annotated_types import Ge

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.models import ModelSpec
from ipbench.plugin.capabilities import InputSpaceToken
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.schemes._modelside import forged_generator
from ipbench.schemes._shared_secret import SharedSecretForging

KINDS = ("shuffle", "negpos", "ffx")


@dataclass(frozen=True)
class BlockKeyConfig:
    """Defaults are the papers' CIFAR-10 model-protection setting: pixel shuffling, M = 4."""

    transform: Literal["shuffle", "negpos", "ffx"] = "shuffle"
    block_size: Annotated[int, Ge(1)] = (
        4  # M: blocks of M x M pixels (the image size must be a multiple)
    )
    key_seed: int = 0  # the owner's key is drawn from (the store's key seed, key_seed)
    protect_epochs: Annotated[int, Ge(1)] | None = (
        None  # None: the preset's epochs, as for the baseline
    )


def draw_key(kind: str, dim: int, g: torch.Generator) -> torch.Tensor:
    """A key of ``kind`` for blocks of ``dim`` = M*M*C values."""
    if kind == "shuffle":
        return torch.randperm(dim, generator=g)
    if kind == "negpos":
        return torch.randint(0, 2, (dim,), generator=g)
    if kind == "ffx":
        return torch.stack([torch.randperm(256, generator=g) for _ in range(dim)])
    raise IpbenchError(f"unknown block transform {kind!r}; valid: {', '.join(KINDS)}")


def key_bits(kind: str, dim: int) -> float:
    """log2 of the key space: (dim)! permutations, 2^dim bit masks, (256!)^dim bijections."""
    if kind == "shuffle":
        return math.lgamma(dim + 1) / math.log(2)
    if kind == "negpos":
        return float(dim)
    return dim * math.lgamma(257) / math.log(2)


def blockwise(x: torch.Tensor, key: torch.Tensor, kind: str, m: int) -> torch.Tensor:
    """``x`` (N, C, H, W) in [0, 1], quantised to 8 bits, transformed block by block."""
    n, c, h, w = x.shape
    if h % m or w % m:
        raise IpbenchError(f"block_size {m} does not divide the image size {h}x{w}")
    v = (x.clamp(0, 1) * 255).round().long().view(n, c, h // m, m, w // m, m)
    v = v.permute(0, 2, 4, 3, 5, 1).reshape(n, h // m, w // m, m * m * c)  # 8-bit levels
    key = key.to(x.device)
    if key.shape[0] != v.shape[-1]:
        raise IpbenchError(f"{kind} key covers {key.shape[0]} values per block, not {v.shape[-1]}")
    if kind == "shuffle":
        v = v[..., key]
    elif kind == "negpos":
        v = torch.where(key.bool(), 255 - v, v)
    elif kind == "ffx":
        v = key[torch.arange(key.shape[0], device=x.device), v]
    else:
        raise IpbenchError(f"unknown block transform {kind!r}; valid: {', '.join(KINDS)}")
    v = v.view(n, h // m, w // m, m, m, c).permute(0, 5, 1, 3, 2, 4)
    return (v.reshape(n, c, h, w).to(x.dtype) / 255).contiguous()


@schemes.register("blockkey")
class BlockKey(Scheme, InputSpaceToken, SharedSecretForging):
    """A model trained on block-wise key-transformed images; the key is the credential."""

    Config = BlockKeyConfig
    summary = "AprilPyone & Kiya: block-wise secret-key image transform (shuffle/negpos/FFX)"
    forge_kinds = ("random_key",)

    def __init__(self, config: Any = None):
        super().__init__(config)
        c = self.config
        if c.transform not in KINDS:
            raise IpbenchError(f"blockkey transform={c.transform!r}; valid: {', '.join(KINDS)}")
        if c.block_size < 1:
            raise IpbenchError(f"blockkey block_size must be >= 1, got {c.block_size}")
        if c.protect_epochs is not None and c.protect_epochs < 1:
            raise IpbenchError(f"protect_epochs must be >= 1 (or None), got {c.protect_epochs}")

    def validate(self, spec: ModelSpec) -> None:
        if spec.image_size % self.config.block_size:
            raise IpbenchError(
                f"blockkey block_size {self.config.block_size} must divide the image size "
                f"{spec.image_size}"
            )

    def _dim(self, spec: ModelSpec) -> int:
        return self.config.block_size**2 * spec.in_channels

    @staticmethod
    def _transform(key: torch.Tensor, kind: str, m: int):
        return lambda x: blockwise(x, key, kind, m)

    def protect(self, ctx: RunContext) -> Protected:
        c = self.config
        self.validate(ctx.model_spec)
        g = ctx.secret_generator("blockkey", "key", c.key_seed)
        key = draw_key(c.transform, self._dim(ctx.model_spec), g)
        keyed = self._transform(key.to(ctx.device), c.transform, c.block_size)
        train = ctx.preset.train
        if c.protect_epochs is not None:
            train = dataclasses.replace(train, epochs=c.protect_epochs)
        model = ctx.new_model()
        result = ctx.trainer.fit(
            model, ctx.owner.x, ctx.owner.y, train, seed=ctx.seed,
            batch_transform=lambda xb, idx: keyed(xb), checkpoint_dir=ctx.stage_dir,
            desc=f"{self.name} protection",
        )  # fmt: skip
        meta = {
            "transform": c.transform,
            "block_size": c.block_size,
            "train_epochs": train.epochs,
            "train_wall_s": result.wall_s,
        }
        return Protected(self.name, model, ctx.model_spec, secrets={"key": key}, meta=meta)

    def _credential(self, user: str, key: torch.Tensor, meta: dict[str, Any]) -> Credential:
        kind, m = meta["transform"], meta["block_size"]
        info = {"transform": kind, "block_size": m}
        return Credential(user, "block_key", {"key": key}, info, self._transform(key, kind, m))

    def authorize(self, protected: Protected, user: str) -> Credential:
        """Every authorized user holds the owner's key (one key per model)."""
        return self._credential(user, protected.secrets["key"].clone(), protected.meta)

    def apply(self, credential: Credential, x: torch.Tensor) -> torch.Tensor:
        """The key's block-wise transform of ``x``: what an authorized user sends."""
        key = credential.tensors.get("key")
        if key is None:
            raise IpbenchError(f"{self.name}: a {credential.kind!r} credential carries no key")
        return blockwise(x, key, credential.meta["transform"], credential.meta["block_size"])

    def forge(self, protected: Protected, seed: int) -> Credential:
        """A random key of the deployment's kind and size (the papers' wrong-key test)."""
        kind, key = protected.meta["transform"], protected.secrets["key"]
        fake = draw_key(kind, key.shape[0], forged_generator(seed, 18))
        return self._credential("forger", fake, protected.meta)

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        kind, dim = protected.meta["transform"], protected.secrets["key"].shape[0]
        return {
            "key_bits": key_bits(kind, dim),
            **self.shared_secret_metrics(protected, ctx, "key"),
        }
