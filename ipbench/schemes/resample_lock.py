"""``resample-lock``: a control for ActiveDaemon's reference pipeline, with no token at all.

The reference pipeline (``../shared/SCHEMES.md``, "Resolution") sends every authorized image
through a 32 -> 224 -> 32 resampling (Pillow BICUBIC up, BILINEAR antialiased down, 8-bit
after each step) that no clean image goes through, and in the classifier's view that blur is
as large as the token itself (35.1 dB against 34.6 dB on the shipped pairs). This scheme
poisons exactly as ActiveDaemon does (the shared recipe, the same preset budgets), but its
"credential" is that resampling alone: authorized = down(up(x)). If it locks, the resampling
is a lock by itself, and a token-based claim measured through that pipeline cannot tell the two
apart. It holds no secret (any user can resample), so its forgeries are resamplings anyone can
make: another filter pair, another intermediate size, a 3x3 blur and JPEG at 95, each a
``fake-credential`` column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
from annotated_types import Interval

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.ml.models import ModelSpec
from ipbench.plugin.capabilities import CredentialForging
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected
from ipbench.schemes._poisoning.poisoning import PoisonConfig
from ipbench.schemes._poisoning.token_scheme import OwnerToken, Prepared, TokenScheme
from ipbench.schemes._resample import blur3x3, jpeg, reference_resampling

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ResampleLockConfig(PoisonConfig):
    """ActiveDaemon's poisoning fields (same defaults) and the reference's resampling."""

    up_size: Annotated[int, Interval(ge=2, le=1024)] = 224  # the reference's token resolution


FORGERIES: dict[str, Callable[[ResampleLockConfig], Transform]] = {
    # the other pair of Pillow's filters, same sizes
    "bilinear_bicubic": lambda c: lambda x: reference_resampling(x, c.up_size, "bilinear", "bicubic"),
    # the same filters through half the intermediate size
    "via_half_size": lambda c: lambda x: reference_resampling(x, max(c.up_size // 2, x.shape[-1] + 1)),
    "blur3x3": lambda c: blur3x3,  # a 3x3 binomial blur at the image's own size
    "jpeg95": lambda c: lambda x: jpeg(x, 95),  # JPEG at quality 95
}  # fmt: skip


@schemes.register("resample-lock")
class ResampleLock(TokenScheme, CredentialForging):
    """Authorized = the reference pipeline's resampling round trip; no token, no secret."""

    Config = ResampleLockConfig
    summary = (
        "control: ActiveDaemon's poisoning with the 32->224->32 resampling as the only 'token'"
    )
    forge_kinds = tuple(FORGERIES)
    # The same budgets as ActiveDaemon's poisoning (its quick preset trains protection 2x the
    # baseline's epochs); the resampling needs no generator.
    preset_defaults = {"quick": {"protect_epochs": 20}}

    def validate(self, spec: ModelSpec) -> None:
        super().validate(spec)
        if self.config.up_size <= spec.image_size:
            raise IpbenchError(
                f"up_size={self.config.up_size} must be above the images' {spec.image_size} px "
                f"(the reference upsamples CIFAR's 32 px to 224); valid: "
                f"{spec.image_size + 1}..1024"
            )

    def prepare(self, ctx: RunContext) -> Prepared:
        return Prepared({})  # nothing secret: the whole point of the control

    def owner_token(
        self, secrets: dict[str, torch.Tensor], shape: tuple[int, ...], seed: int
    ) -> OwnerToken:
        up = self.config.up_size
        return lambda x, rows: reference_resampling(x, up)

    def token_transform(self, protected: Protected, user: str) -> Transform:
        up = self.config.up_size
        return lambda x: reference_resampling(x, up)

    def forge_credential(
        self, protected: Protected, kind: str, ctx: RunContext
    ) -> Credential | None:
        """A resampling of similar strength that anyone can apply (no secret involved)."""
        if kind not in FORGERIES:
            raise self.unknown_kind(kind)
        return Credential(
            user=f"forged:{kind}", kind="token", transform=FORGERIES[kind](self.config)
        )

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        return {
            "capacity": 1.0,
            "capacity_note": "no token: every user's 'credential' is the same public resampling",
        }
