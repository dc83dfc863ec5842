"""The common shape of input-token schemes (ActiveDaemon, M-LOCK, ADIP).

They differ only in the token: a subclass says how to prepare it (``prepare``), how to put
it on the owner's training images (``tokenize_train`` once before training, or ``owner_token``,
which can also go on each batch after augmentation) and how a user's credential transforms an
image (``token_transform``). Poisoning, training, querying and saving are here.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ipbench.core.errors import IpbenchError
from ipbench.ml.images import quantize, to_uint8
from ipbench.ml.models import ModelSpec
from ipbench.ml.training import BatchTransform
from ipbench.plugin.capabilities import InputSpaceToken
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.schemes._poisoning.poisoning import PoisonConfig, build_poisoned_set, validate

OwnerToken = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (images, rows) -> images


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` made: the token's secrets, and facts about making it for the record."""

    secrets: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def _after_augment(token: OwnerToken, authorized: torch.Tensor) -> BatchTransform:
    """The trainer's per-batch hook: the token on the batch's authorized images, quantised as a
    user's query would be. ``row[i]`` is image i's position among the authorized images,
    whatever order the poisoned set keeps them in."""
    row = torch.cumsum(authorized.long(), 0) - 1

    def apply(xb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        auth = authorized[idx]
        if not auth.any():
            return xb
        out = xb.clone()
        sel = auth.to(xb.device)
        out[sel] = quantize(token(xb[sel], row[idx[auth]]))
        return out

    return apply


class TokenScheme(Scheme, InputSpaceToken):
    """Protection by data poisoning with an input-space token (config subclasses PoisonConfig)."""

    def __init__(self, config: Any = None):
        super().__init__(config)
        # Checked here, when the run is resolved, so the error comes before any training.
        if self.config.token_after_augment and type(self).owner_token is TokenScheme.owner_token:
            raise IpbenchError(
                f"{self.name} makes its tokens once, before training; token_after_augment=True "
                "needs a token applied per batch (mlock, adip)"
            )
        validate(self.poison_config(), num_classes=2**31)  # ranges now; classes in validate(spec)

    def validate(self, spec: ModelSpec) -> None:
        """The poisoning settings against the task's classes, before any training."""
        validate(self.poison_config(), spec.num_classes)

    def poison_config(self) -> PoisonConfig:
        names = {f.name for f in dataclasses.fields(PoisonConfig)}
        return PoisonConfig(**{n: getattr(self.config, n) for n in names})

    @abstractmethod
    def prepare(self, ctx: RunContext) -> Prepared:
        """Make the token (train a generator, draw a sticker): the tensors kept as secrets and
        what the run records about making them."""

    def owner_token(
        self, secrets: dict[str, torch.Tensor], shape: tuple[int, ...], seed: int
    ) -> OwnerToken | None:
        """The token on the owner's authorized images (``shape``: theirs, N first) as
        ``f(x, rows)``: ``x`` floats in [0, 1], ``rows`` their positions among the N (for
        per-image placements drawn once).

        A scheme whose token is cheap returns one, which lets protection apply it per batch
        after augmentation (``token_after_augment``); None: only ``tokenize_train``.
        """
        return None

    def tokenize_train(
        self, secrets: dict[str, torch.Tensor], x: torch.Tensor, seed: int
    ) -> torch.Tensor:
        """Authorized versions (uint8) of the owner's uint8 images ``x``, for poisoning."""
        token = self.owner_token(secrets, x.shape, seed)
        if token is None:
            raise NotImplementedError(f"{self.name}: implement tokenize_train or owner_token")
        return to_uint8(token(x.float() / 255, torch.arange(len(x))))

    def unauthorized_noise(
        self, pcfg: PoisonConfig, secrets: dict[str, torch.Tensor], x: torch.Tensor, seed: int
    ) -> tuple[PoisonConfig, dict[str, Any]]:
        """The poisoning recipe once the token exists (a scheme may scale D_u's noise to it),
        and what the run records about that choice."""
        return pcfg, {}

    def clean_transform(self, x: torch.Tensor) -> torch.Tensor | None:
        """What happens to the unauthorized (clean) training images, uint8 in, uint8 out;
        None: nothing (the default; a control model resamples them, see ActiveDaemon)."""
        return None

    @abstractmethod
    def token_transform(self, protected: Protected, user: str) -> Any:
        """The function a user's credential applies to a clean image batch in [0, 1]."""

    def protect(self, ctx: RunContext) -> Protected:
        pcfg = self.poison_config()
        k = ctx.model_spec.num_classes
        validate(pcfg, k)
        after = pcfg.token_after_augment
        prepared = self.prepare(ctx)
        secrets = prepared.secrets
        owner = ctx.owner
        pcfg, noise_meta = self.unauthorized_noise(pcfg, secrets, owner.x, ctx.seed)
        poisoned = build_poisoned_set(
            owner.x, owner.y, k, pcfg, ctx.seed,
            (lambda x, idx: x) if after else lambda x, idx: self.tokenize_train(secrets, x, ctx.seed),
            self.clean_transform,
        )  # fmt: skip
        hook = None
        if after:  # authorized images stay clean in the set; the trainer adds the token
            n_auth = int(poisoned.authorized.sum())
            token = self.owner_token(secrets, (n_auth, *poisoned.x.shape[1:]), ctx.seed)
            assert token is not None  # checked in __init__
            hook = _after_augment(token, poisoned.authorized)
        train = ctx.preset.train
        if pcfg.protect_epochs is not None:
            train = dataclasses.replace(train, epochs=pcfg.protect_epochs)
        model = ctx.new_model()
        result = ctx.trainer.fit(
            model, poisoned.x, poisoned.y_true, train, seed=ctx.seed,
            targets_fn=poisoned.targets, checkpoint_dir=ctx.stage_dir, desc=f"{self.name} protection",
            batch_transform=hook,
        )  # fmt: skip
        meta = {
            "authorized_images": int(poisoned.authorized.sum()),
            "unauthorized_images": int((~poisoned.authorized).sum()),
            "train_epochs": train.epochs,
            "token_after_augment": after,
            "train_wall_s": result.wall_s,
            **prepared.meta,
            **noise_meta,
        }
        return Protected(self.name, model, ctx.model_spec, secrets=secrets, meta=meta)

    def authorize(self, protected: Protected, user: str) -> Credential:
        return Credential(user=user, kind="token", transform=self.token_transform(protected, user))

    def apply(self, credential: Credential, x: torch.Tensor) -> torch.Tensor:
        """The user's token on clean images ``x``: ``Scheme.query`` sends these to the model."""
        if credential.transform is None:
            raise IpbenchError(f"{self.name}: a {credential.kind!r} credential carries no token")
        return credential.transform(x)
