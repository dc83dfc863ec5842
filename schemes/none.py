"""``none``: the unprotected model. Its accuracy is A_or, the reference every scheme is held to."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ipbench.contract import Credential, Protected, Scheme, Task
from ipbench.registry import schemes


@dataclass(frozen=True)
class NoneConfig:
    """No protection, so nothing to configure."""


@schemes.register("none")
class NoProtection(Scheme):
    """The baseline: the task's unprotected model served to everyone."""

    name = "none"
    Config = NoneConfig
    summary = "unprotected model (gives A_or)"

    def protect(self, task: Task) -> Protected:
        return Protected(self.name, task.baseline(), task.model_spec, meta={"note": "unprotected"})

    def authorize(self, protected: Protected, user: str) -> Credential:
        return Credential(user=user, kind="none")

    @torch.no_grad()
    def query(
        self, protected: Protected, x: torch.Tensor, credential: Credential | None = None
    ) -> torch.Tensor:
        protected.model.eval()
        return protected.model(x)
