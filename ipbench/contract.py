"""The scheme contract: protect -> Protected, authorize -> Credential, query -> logits.

Every scheme, whatever its mechanism (input tokens, fingerprints, passports, encrypted
weights), is measured through these calls, so one evaluator and one attack suite serve all.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ipbench.errors import CorruptArtifactError, IpbenchError
from ipbench.models import ModelSpec, build_model
from ipbench.tensorio import read_tensors, write_tensors

if TYPE_CHECKING:
    from ipbench.cache import StageCache
    from ipbench.datasets import Splits
    from ipbench.presets import Preset
    from ipbench.training import Trainer


class Capability(str, enum.Enum):
    """Optional abilities a scheme declares, so attacks and metrics know what they may ask."""

    INPUT_SPACE = "input_space"  # apply(credential, x): credentials are image transformations
    IDENTIFY = "identify"  # identify(protected, x): decode who sent an authorized query
    OWNERSHIP = "ownership"  # verify_ownership(protected, model): a watermark or signature
    STOLEN = "stolen"  # stolen(protected) differs from the bare network (control layers, keys)


@dataclass
class Task:
    """Everything a scheme needs to protect a model on a shared task."""

    splits: Splits
    model_spec: ModelSpec
    preset: Preset
    seed: int
    device: torch.device
    trainer: Trainer
    cache: StageCache
    baseline: Callable[[], nn.Module]  # a copy of the cached unprotected model
    stage_dir: Path | None = None  # where the running stage may keep checkpoints

    def new_model(self) -> nn.Module:
        """A freshly initialised network, deterministic under the task's seed."""
        torch.manual_seed(self.seed)
        return build_model(self.model_spec)


@dataclass
class Credential:
    """What an authorized user holds: a token, sticker, passport, key or fingerprint.

    For input-space schemes ``transform`` is the user's token as a function: it turns any
    clean image batch (in [0, 1]) into the images the user sends (the paper's G_a(x, s)).
    """

    user: str
    kind: str
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    transform: Callable[[torch.Tensor], torch.Tensor] | None = field(
        default=None, repr=False, compare=False
    )


@dataclass
class Protected:
    """A protected deployment as data: the network, the scheme's secrets and metadata.

    Saved as ``model.safetensors`` + ``secrets.safetensors`` + ``meta.json``; loading rebuilds
    the architecture from the stored ``ModelSpec``, so nothing is ever unpickled.
    """

    scheme: str
    model: nn.Module
    model_spec: ModelSpec
    secrets: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(
        default_factory=dict, repr=False, compare=False
    )  # caches, never saved

    FILES: ClassVar[tuple[str, ...]] = ("model.safetensors", "secrets.safetensors", "meta.json")

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_tensors(self.model.state_dict(), folder / "model.safetensors")
        write_tensors(self.secrets, folder / "secrets.safetensors")
        meta = {"scheme": self.scheme, "model_spec": self.model_spec.__dict__, "meta": self.meta}
        (folder / "meta.json").write_text(json.dumps(meta, indent=2, default=list))

    @classmethod
    def load(
        cls,
        folder: str | Path,
        build: Callable[[ModelSpec, dict[str, Any]], nn.Module] | None = None,
    ) -> Protected:
        """Read a saved deployment; ``build`` lets a scheme rebuild a modified architecture."""
        folder = Path(folder)
        missing = [f for f in cls.FILES if not (folder / f).exists()]
        if missing:
            raise CorruptArtifactError(f"{folder}: missing {', '.join(missing)}")
        try:
            raw = json.loads((folder / "meta.json").read_text())
            spec_d = raw["model_spec"]
            spec = ModelSpec(
                **{**spec_d, "mean": tuple(spec_d["mean"]), "std": tuple(spec_d["std"])}
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptArtifactError(
                f"{folder}/meta.json: unreadable protected-model metadata ({exc})"
            ) from None
        state = read_tensors(folder / "model.safetensors", "protected model")
        secrets = read_tensors(folder / "secrets.safetensors", "scheme secrets")
        model = build(spec, raw["meta"]) if build else build_model(spec)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CorruptArtifactError(
                f"{folder}: weights do not fit the architecture ({exc})"
            ) from None
        model.eval()
        return cls(raw["scheme"], model, spec, secrets, raw["meta"])


@dataclass
class EvalContext:
    """What a scheme's own metrics may use: the splits, the device and the unprotected model."""

    splits: Splits
    device: torch.device
    seed: int
    trainer: Trainer
    baseline: Callable[[], nn.Module]


class Scheme(ABC):
    """Base class of every protection scheme plugin.

    Subclasses set ``name``, ``Config`` (a dataclass whose defaults are the paper's values) and
    ``capabilities``, and implement ``protect``, ``authorize`` and ``query``.
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    summary: ClassVar[str] = ""
    forge_kinds: ClassVar[tuple[str, ...]] = ()  # fake credentials forge_credential can make

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities

    @abstractmethod
    def protect(self, task: Task) -> Protected:
        """Train or modify the model; returns the protected deployment."""

    @abstractmethod
    def authorize(self, protected: Protected, user: str) -> Credential:
        """Issue the credential of user ``user`` (an identity string)."""

    @abstractmethod
    def query(
        self, protected: Protected, x: torch.Tensor, credential: Credential | None = None
    ) -> torch.Tensor:
        """What the deployed service answers for images ``x`` in [0, 1]: logits ``(N, K)``."""

    def stolen(self, protected: Protected) -> nn.Module:
        """Exactly what a thief who copies the deployed artefact holds."""
        return protected.model

    def redeploy(self, protected: Protected, model: nn.Module) -> Protected:
        """The deployment users would query if ``model`` (a thief's modified copy of
        ``stolen(protected)``) were served in its place; the secrets stay the owner's.

        Override when ``stolen`` wraps the network (ActiveGuard's control layer)."""
        return dataclasses.replace(protected, model=model, runtime={})

    def load_protected(self, folder: str | Path) -> Protected:
        """Read back what ``protect`` returned; override when the architecture is modified."""
        return Protected.load(folder)

    def scheme_metrics(
        self, protected: Protected, ctx: EvalContext
    ) -> dict[str, float | str | None]:
        """Numbers only this scheme has (A_dec, watermark checks, fraction of weights touched).

        Recorded in the evaluate stage beside the shared metrics. A float is a value; a string
        is a note with no value (e.g. why a metric is missing).
        """
        return {}

    # Optional capabilities ------------------------------------------------------------------
    def apply(self, credential: Credential, x: torch.Tensor) -> torch.Tensor:
        """INPUT_SPACE: the images the user sends when holding ``credential``."""
        if not self.has(Capability.INPUT_SPACE) or credential.transform is None:
            raise IpbenchError(f"scheme {self.name!r} has no input-space credentials")
        return credential.transform(x)

    def forge_credential(
        self, protected: Protected, kind: str, ctx: EvalContext
    ) -> Credential | None:
        """A fake credential of ``kind`` (one of ``forge_kinds``), made without the owner's
        secret, for the fake-credential attack; None where this deployment cannot make that
        kind (e.g. it needs ``ctx.baseline`` and there is none)."""
        raise IpbenchError(
            f"scheme {self.name!r} forges no credential of kind {kind!r}; "
            f"valid: {', '.join(self.forge_kinds) or '(none)'}"
        )

    def identify(self, protected: Protected, x: torch.Tensor) -> list[str | None]:
        """IDENTIFY: who sent each query (None where it cannot tell)."""
        raise IpbenchError(f"scheme {self.name!r} cannot identify users")

    def verify_ownership(self, protected: Protected, model: nn.Module) -> dict[str, float]:
        """OWNERSHIP: evidence that ``model`` derives from ``protected``."""
        raise IpbenchError(f"scheme {self.name!r} has no ownership verification")
