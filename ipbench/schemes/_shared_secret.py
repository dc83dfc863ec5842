"""Shared by schemes whose one secret (a key, patch or mask) is held by every authorized user
(blockkey, ntl, authnet): the forgery hook and the metrics such a scheme records."""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

from ipbench.plugin.capabilities import CredentialForging
from ipbench.schemes._modelside import accuracy_with

if TYPE_CHECKING:
    from ipbench.plugin.context import RunContext
    from ipbench.plugin.contract import Credential, Protected


class SharedSecretForging(CredentialForging):
    """One forgery kind, made by ``forge(protected, seed)`` without the owner's secret."""

    @abstractmethod
    def forge(self, protected: Protected, seed: int) -> Credential:
        """A secret of the deployment's kind drawn at random (the thief's guess)."""

    def forge_credential(
        self, protected: Protected, kind: str, ctx: RunContext
    ) -> Credential | None:
        if kind in self.forge_kinds:
            return self.forge(protected, ctx.seed)
        raise self.unknown_kind(kind)

    def shared_secret_metrics(
        self, protected: Protected, ctx: RunContext, secret: str
    ) -> dict[str, float | str | None]:
        """A_td of the forgery, and capacity 1: every user holds the one ``secret``."""
        return {
            "A_td": accuracy_with(self, protected, ctx, self.forge(protected, ctx.seed)),  # type: ignore[arg-type]
            "capacity": 1.0,
            "capacity_note": f"one {secret} per trained model, shared by every user (capacity 1)",
        }
