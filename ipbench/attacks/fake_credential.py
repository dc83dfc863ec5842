"""Fake credentials against model-side schemes: a random passport, a wrong chaotic key, ...

A ``CredentialForging`` scheme says which fakes it can make (``forge_kinds``) and makes them
(``forge_credential``, from the thief's view only) with its own forging code, so the attack
stays generic. Every fake is scored through the deployed service's normal credential path, and so is the owner's
genuine credential (``A_ad@owner``): the path itself is shown to work before fakes are judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from annotated_types import Ge

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks
from ipbench.metrics.spec import At, Results, pct
from ipbench.plugin.attack import Attack, Target, served_accuracy, test_slice
from ipbench.plugin.capabilities import CredentialForging, capability
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Scheme


@dataclass(frozen=True)
class FakeCredentialConfig:
    kinds: tuple[str, ...] = ()  # empty: every kind the scheme forges
    max_test: Annotated[int, Ge(0)] = (
        2000  # test images scored per credential (0: the whole test split)
    )


@attacks.register("fake-credential")
class FakeCredential(Attack):
    """The thief submits credentials it forged without the owner's secret."""

    Config = FakeCredentialConfig
    summary = "forged passports / keys through the credential path (random passport, wrong key)"
    preset_defaults = {"smoke": {"max_test": 500}}
    metrics = (
        pct("A_td", "lower", 1, "the best forged credential's accuracy"),
        pct("A_ad", "higher", 0, "the owner's genuine credential, through the same path"),
    )
    requires = (CredentialForging,)

    def skip_reason(self, scheme: Scheme) -> str | None:
        reason = super().skip_reason(scheme)
        if reason or not isinstance(scheme, CredentialForging):
            return reason
        if not scheme.forge_kinds:
            return f"{scheme.name} forges no credentials (its forge_kinds is empty)"
        bad = [k for k in self.config.kinds if k not in scheme.forge_kinds]
        if bad:
            return f"{scheme.name} forges {', '.join(scheme.forge_kinds)}, not {', '.join(bad)}"
        return None

    def run(self, target: Target, ctx: RunContext) -> Results:
        reason = self.skip_reason(target.scheme)
        if reason:
            raise IpbenchError(reason)
        forger = capability(target.scheme, CredentialForging)
        x, y = test_slice(ctx, self.config.max_test)
        owner = target.scheme.authorize(target.protected, "owner")
        out: Results = {At("A_ad", label="owner"): served_accuracy(target, x, y, ctx, owner)}
        forged = []
        for kind in self.config.kinds or forger.forge_kinds:
            fake = forger.forge_credential(target.protected, kind, ctx.for_thief())
            if fake is not None:
                forged.append(served_accuracy(target, x, y, ctx, fake))
                out[At("A_td", label=kind)] = forged[-1]
        out["A_td"] = max(forged) if forged else float("nan")
        return out
