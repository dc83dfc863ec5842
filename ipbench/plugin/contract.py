"""The scheme contract: protect -> Protected, authorize -> Credential, query -> logits.

Every scheme, whatever its mechanism (input tokens, fingerprints, passports, encrypted
weights), is measured through these calls, so one evaluator and one attack suite serve all.
What a scheme can do beyond them is a typed capability (``ipbench.plugin.capabilities``).
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from ipbench.core.errors import CorruptArtifactError
from ipbench.core.tensorio import read_tensors, write_tensors
from ipbench.metrics.spec import Metric
from ipbench.ml.models import ModelSpec, build_model
from ipbench.plugin.capabilities import InputSpaceToken

if TYPE_CHECKING:
    from ipbench.plugin.context import RunContext


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

    Saved as ``model.safetensors`` + ``meta.json`` (the deployed artefact) and
    ``owner/secrets.safetensors`` (the owner's part: its own folder, readable by the owner
    only, never handed to an attack); loading rebuilds the architecture from the stored
    ``ModelSpec``, so nothing is ever unpickled.
    """

    scheme: str
    model: nn.Module
    model_spec: ModelSpec
    secrets: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(
        default_factory=dict, repr=False, compare=False
    )  # caches, never saved

    SECRETS: ClassVar[str] = "owner/secrets.safetensors"
    FILES: ClassVar[tuple[str, ...]] = ("model.safetensors", SECRETS, "meta.json")

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_tensors(self.model.state_dict(), folder / "model.safetensors")
        secrets = folder / self.SECRETS
        secrets.parent.mkdir(mode=0o700, exist_ok=True)
        write_tensors(self.secrets, secrets, private=True)
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
        secrets = read_tensors(folder / cls.SECRETS, "scheme secrets")
        model = build(spec, raw["meta"]) if build else build_model(spec)
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CorruptArtifactError(
                f"{folder}: weights do not fit the architecture ({exc})"
            ) from None
        model.eval()
        return cls(raw["scheme"], model, spec, secrets, raw["meta"])


class Scheme(ABC):
    """Base class of every protection scheme plugin.

    A plugin is one module: a ``Config`` dataclass whose defaults are the paper's values, a
    subclass registered with ``@schemes.register("name")`` (the one place its name is given;
    the decorator sets ``name``), and ``protect``, ``authorize`` and, where the credential acts
    on the model rather than on the input, ``serve``. Capabilities (``ipbench.plugin.capabilities``)
    are declared by inheriting them.
    """

    name: ClassVar[str] = ""  # set by the registry's decorator
    Config: ClassVar[type[Any]]
    summary: ClassVar[str] = ""
    # False only for the unprotected reference, where A_ad = A_ud by design.
    protects: ClassVar[bool] = True
    # What this scheme's own numbers (scheme_metrics) mean, beyond the shared ones.
    metrics: ClassVar[tuple[Metric, ...]] = ()
    # Config values per preset name, for fields whose paper value does not fit a budget (e.g.
    # fewer token-generator steps on a CPU); the user's --set still wins. Like timm's
    # default_cfgs: a scheme's tuning lives with the scheme, presets hold budgets only.
    preset_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "query" in cls.__dict__:  # the evaluator's entry point must stay the same for all
            raise TypeError(
                f"{cls.__qualname__} overrides Scheme.query; override serve instead (query "
                "applies an input-space credential, then calls serve)"
            )

    def validate(self, spec: ModelSpec) -> None:
        """Check the settings against the task (classes, image size, network) before any
        training starts; raise ``IpbenchError`` naming the bad value and the valid range."""
        return None

    @abstractmethod
    def protect(self, ctx: RunContext) -> Protected:
        """Train or modify the model (owner's data: ``ctx.owner``); the protected deployment."""

    @abstractmethod
    def authorize(self, protected: Protected, user: str) -> Credential:
        """Issue the credential of user ``user`` (an identity string)."""

    @torch.no_grad()
    def query(
        self, protected: Protected, x: torch.Tensor, credential: Credential | None = None
    ) -> torch.Tensor:
        """What the deployed service answers for clean images ``x`` in [0, 1] sent by a holder
        of ``credential`` (None: no credential): logits ``(N, K)``.

        This is the evaluator's one entry point: for an ``InputSpaceToken`` scheme the
        credential is applied to ``x`` here, then ``serve`` answers. Override ``serve``, not
        this, so every scheme is measured the same way.
        """
        protected.model.eval()
        if credential is not None and isinstance(self, InputSpaceToken):
            x = self.apply(credential, x)
        return self.serve(protected, x, credential)

    def serve(
        self, protected: Protected, x: torch.Tensor, credential: Credential | None
    ) -> torch.Tensor:
        """The deployment's answer to images ``x`` as they arrive (any input-space token is
        on them already). Override where the credential acts on the model (a passport, a
        decryption key, an authenticated session)."""
        return protected.model(x)

    def stolen(self, protected: Protected) -> nn.Module:
        """Exactly what a thief who copies the deployed artefact holds."""
        return protected.model

    def redeploy(self, protected: Protected, model: nn.Module) -> Protected:
        """The deployment users would query if ``model`` (a thief's modified copy of
        ``stolen(protected)``) were served in its place; the secrets stay the owner's.

        Override when ``stolen`` wraps the network (a ``WrappedDeployment``)."""
        return dataclasses.replace(protected, model=model, runtime={})

    def load_protected(self, folder: str | Path) -> Protected:
        """Read back what ``protect`` returned; override when the architecture is modified."""
        return Protected.load(folder)

    def scheme_metrics(
        self, protected: Protected, ctx: RunContext
    ) -> dict[str, float | str | None]:
        """Numbers only this scheme has (A_dec, watermark checks, fraction of weights touched).

        Recorded in the evaluate stage beside the shared metrics. A float is a value; a string
        is a note with no value (e.g. why a metric is missing).
        """
        return {}
