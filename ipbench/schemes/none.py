"""``none``: the unprotected model. Its accuracy is A_or, the reference every scheme is held to."""

from __future__ import annotations

from dataclasses import dataclass

from ipbench.core.registry import schemes
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential, Protected, Scheme


@dataclass(frozen=True)
class NoneConfig:
    """No protection, so nothing to configure."""


@schemes.register("none")
class NoProtection(Scheme):
    """The baseline: the task's unprotected model served to everyone."""

    Config = NoneConfig
    summary = "unprotected model (gives A_or)"
    protects = False

    def protect(self, ctx: RunContext) -> Protected:
        return Protected(self.name, ctx.unprotected(), ctx.model_spec, meta={"note": "unprotected"})

    def authorize(self, protected: Protected, user: str) -> Credential:
        return Credential(user=user, kind="none")
