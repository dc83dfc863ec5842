"""Optional abilities of a scheme, as typed interfaces an attack or metric can ask for.

A scheme declares a capability by inheriting its class and implementing its methods (an
unimplemented one makes the scheme impossible to instantiate, so a declaration is never
empty). An attack names the capabilities it needs in ``Attack.requires``; the generic
``Attack.skip_reason`` records a skipped pair with the missing ones named, and inside ``run``
``capability(scheme, Cls)`` hands back the scheme typed as that capability. Generic code tests
capabilities, never scheme names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import torch
from torch import nn

from ipbench.core.errors import IpbenchError

if TYPE_CHECKING:
    from ipbench.plugin.context import RunContext
    from ipbench.plugin.contract import Credential, Protected


class InputSpaceToken(ABC):
    """Credentials are image transformations: a user sends ``apply(credential, x)`` instead
    of ``x`` (a token, sticker or trigger). Needed for stealthiness (PSNR, SSIM, ERGAS, LPIPS),
    the token gallery and token attacks (fake tokens, Neural Cleanse). ``Scheme.query`` applies
    the credential this way before the network answers."""

    @abstractmethod
    def apply(self, credential: Credential, x: torch.Tensor) -> torch.Tensor:
        """The images (floats in [0, 1], same shape as ``x``) a holder of ``credential`` sends."""


class StealthViews(ABC):
    """The token is made at another size than the image the classifier reads (ActiveDaemon's
    reference pipeline: 32 -> 224 px, token, back to 32), so "how visible is it" has more than
    one honest answer. ``PSNR`` etc. stay the classifier's view (what the network reads
    against the user's own image); each view named here adds ``PSNR@VIEW`` etc."""

    stealth_views: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def view_pairs(
        self, protected: Protected, credential: Credential, x: torch.Tensor
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per view: (reference image, what the holder of ``credential`` sends) for clean
        images ``x`` in [0, 1], both in [0, 1] and the same shape; views not defined for these
        settings are left out."""


class CredentialForging(ABC):
    """The scheme can make fake credentials of the kinds in ``forge_kinds`` without the
    owner's secret (a random passport, a wrong key), for the fake-credential attack."""

    forge_kinds: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def forge_credential(
        self, protected: Protected, kind: str, ctx: RunContext
    ) -> Credential | None:
        """A fake credential of ``kind``, made from the thief's view ``ctx`` only; None where
        this deployment cannot make that kind (call ``unknown_kind`` for any other kind)."""

    def unknown_kind(self, kind: str) -> IpbenchError:
        """The error for a kind this scheme does not forge, naming the valid ones."""
        name = getattr(self, "name", type(self).__name__)
        valid = ", ".join(self.forge_kinds) or "(none)"
        return IpbenchError(
            f"scheme {name!r} forges no credential of kind {kind!r}; valid: {valid}"
        )


class SharedStage(ABC):
    """The scheme computes a cached sub-stage that runs differing only in later settings share
    (ActiveDaemon's token generator): a grid computes it once, before the runs that need it."""

    @abstractmethod
    def shared_stage(self) -> tuple[str, Any] | None:
        """The sub-stage as (name, material keying it); None: none for these settings."""

    @abstractmethod
    def compute_shared(self, ctx: RunContext) -> None:
        """Compute (or find cached) the sub-stage for ``ctx``'s task, and nothing else."""


class WrappedDeployment(ABC):
    """``stolen()`` is a wrapper (a control layer) around a network that a thief can call
    directly; the wrapper answers in the task's own classes only."""

    @abstractmethod
    def bare_network(self, stolen: nn.Module) -> nn.Module:
        """The network inside the stolen artefact ``stolen``."""


class PassportLayers(ABC):
    """The network's layers take their scale and bias from passport tensors fed at inference
    (Fan et al.); a thief holding the weights may train passports of its own."""

    @abstractmethod
    def installed_passports(
        self, protected: Protected, model: nn.Module
    ) -> dict[str, torch.Tensor]:
        """The passports ``model`` (a copy of ``stolen(protected)``) runs on now."""

    @abstractmethod
    def install_passports(
        self, protected: Protected, model: nn.Module, passports: dict[str, torch.Tensor]
    ) -> None:
        """Make ``model`` run on ``passports`` (tensors may carry gradients)."""

    @abstractmethod
    def passport_credential(self, passports: dict[str, torch.Tensor]) -> Credential:
        """The credential a user holding ``passports`` would present."""

    @abstractmethod
    def signature_match(
        self, protected: Protected, model: nn.Module, passports: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        """``signature_detection``: percent of the owner's signature bits ``model`` carries
        under ``passports``."""


class FingerprintAuthentication(ABC):
    """Users open a session by submitting a fingerprint input the service recognises; the
    method that makes fingerprints is public, so a thief can run it on stolen weights."""

    @abstractmethod
    def authenticates(self, protected: Protected, x: torch.Tensor) -> torch.Tensor:
        """Per submitted image: does the service accept it as some user's fingerprint (bool)."""

    @abstractmethod
    def craft_fingerprints(
        self, model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
        confidences: torch.Tensor, *, eps: float, steps: int, lr: float, alpha: float,
        batch_size: int,
    ) -> torch.Tensor:  # fmt: skip
        """The public fingerprint generator run on ``model``: per row, an image near ``x[i]``
        classified as ``targets[i]`` with confidence ``confidences[i]`` (within ``eps``)."""

    @abstractmethod
    def session_credential(self, fingerprint: torch.Tensor) -> Credential:
        """The credential of a session opened with the image ``fingerprint``."""


CAPABILITIES: tuple[type, ...] = (
    InputSpaceToken,
    StealthViews,
    CredentialForging,
    WrappedDeployment,
    PassportLayers,
    FingerprintAuthentication,
)

C = TypeVar("C")


def capabilities_of(scheme: object) -> list[str]:
    """Names of the capabilities ``scheme`` (a class or an instance) declares."""
    cls = scheme if isinstance(scheme, type) else type(scheme)
    return [c.__name__ for c in CAPABILITIES if issubclass(cls, c)]


def capability(scheme: object, cap: type[C]) -> C:
    """``scheme`` typed as capability ``cap``; a clear error when it lacks it."""
    if not isinstance(scheme, cap):
        name = getattr(scheme, "name", type(scheme).__name__)
        raise IpbenchError(f"scheme {name!r} lacks capability {cap.__name__}")
    return scheme
