"""The common shape of input-token schemes (ActiveDaemon, M-LOCK, ADIP).

They differ only in the token: a subclass says how to prepare it (``prepare``), how to put
it on the owner's training images (``tokenize_train``) and how a user's credential
transforms an image (``token_transform``). Poisoning, training, querying and saving are here.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from typing import Any

import torch

from ipbench.contract import Capability, Credential, Protected, Scheme, Task
from ipbench.poisoning import PoisonConfig, build_poisoned_set, validate


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """What a user really sends: an 8-bit image."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def quantize(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


class TokenScheme(Scheme):
    """Protection by data poisoning with an input-space token (config subclasses PoisonConfig)."""

    capabilities = frozenset({Capability.INPUT_SPACE})

    def poison_config(self) -> PoisonConfig:
        names = {f.name for f in dataclasses.fields(PoisonConfig)}
        return PoisonConfig(**{n: getattr(self.config, n) for n in names})

    @abstractmethod
    def prepare(self, task: Task) -> dict[str, torch.Tensor]:
        """Make the token (train a generator, draw a sticker); returns tensors kept as secrets."""

    @abstractmethod
    def tokenize_train(
        self, secrets: dict[str, torch.Tensor], x: torch.Tensor, seed: int
    ) -> torch.Tensor:
        """Authorized versions (uint8) of the owner's uint8 images ``x``, for poisoning."""

    @abstractmethod
    def token_transform(self, protected: Protected, user: str) -> Any:
        """The function a user's credential applies to a clean image batch in [0, 1]."""

    def protect(self, task: Task) -> Protected:
        pcfg = self.poison_config()
        k = task.model_spec.num_classes
        validate(pcfg, k)
        secrets = self.prepare(task)
        owner = task.splits.owner
        poisoned = build_poisoned_set(
            owner.x,
            owner.y,
            k,
            pcfg,
            task.seed,
            lambda x, idx: self.tokenize_train(secrets, x, task.seed),
        )
        train = task.preset.train
        if pcfg.protect_epochs is not None:
            train = dataclasses.replace(train, epochs=pcfg.protect_epochs)
        model = task.new_model()
        result = task.trainer.fit(
            model, poisoned.x, poisoned.y_true, train, seed=task.seed,
            targets_fn=poisoned.targets, checkpoint_dir=task.stage_dir, desc=f"{self.name} protection",
        )  # fmt: skip
        meta = {
            "authorized_images": int(poisoned.authorized.sum()),
            "unauthorized_images": int((~poisoned.authorized).sum()),
            "train_epochs": train.epochs,
            "train_wall_s": result.wall_s,
            **getattr(self, "prepare_meta", {}),
        }
        return Protected(self.name, model, task.model_spec, secrets=secrets, meta=meta)

    def authorize(self, protected: Protected, user: str) -> Credential:
        return Credential(user=user, kind="token", transform=self.token_transform(protected, user))

    @torch.no_grad()
    def query(
        self, protected: Protected, x: torch.Tensor, credential: Credential | None = None
    ) -> torch.Tensor:
        protected.model.eval()
        if credential is not None:
            x = self.apply(credential, x)
        return protected.model(x)
