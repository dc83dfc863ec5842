"""Fake credentials against model-side schemes: a random passport, a wrong chaotic key, ...

Each scheme says which fakes it can make (``Scheme.forge_kinds``) and makes them
(``Scheme.forge_credential``) with its own forging code, so the attack stays generic. Every
fake is scored through the deployed service's normal credential path, and so is the owner's
genuine credential (``A_ad@owner``): the path itself is shown to work before fakes are judged.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipbench.attacks._common import served_accuracy, test_slice

from ipbench.attack import Attack, AttackContext
from ipbench.contract import EvalContext, Scheme
from ipbench.errors import IpbenchError
from ipbench.registry import attacks


@dataclass(frozen=True)
class FakeCredentialConfig:
    kinds: tuple[str, ...] = ()  # empty: every kind the scheme forges
    max_test: int = 2000  # test images scored per credential (0: the whole test split)


@attacks.register("fake-credential")
class FakeCredential(Attack):
    """The thief submits credentials it forged without the owner's secret."""

    name = "fake-credential"
    Config = FakeCredentialConfig
    summary = "forged passports / keys through the credential path (random passport, wrong key)"
    headline = ("A_td",)

    def skip_reason(self, scheme: Scheme) -> str | None:
        if not scheme.forge_kinds:
            return f"{scheme.name} forges no credentials (Scheme.forge_kinds is empty)"
        bad = [k for k in self.config.kinds if k not in scheme.forge_kinds]
        if bad:
            return f"{scheme.name} forges {', '.join(scheme.forge_kinds)}, not {', '.join(bad)}"
        return super().skip_reason(scheme)

    def run(self, ctx: AttackContext) -> dict[str, float]:
        reason = self.skip_reason(ctx.scheme)
        if reason:
            raise IpbenchError(reason)
        x, y = test_slice(ctx, self.config.max_test)
        ectx = EvalContext(ctx.splits, ctx.device, ctx.seed, ctx.trainer, ctx.baseline)  # type: ignore[arg-type]
        owner = ctx.scheme.authorize(ctx.protected, "owner")
        out = {"A_ad@owner": served_accuracy(ctx, x, y, owner)}
        for kind in self.config.kinds or ctx.scheme.forge_kinds:
            fake = ctx.scheme.forge_credential(ctx.protected, kind, ectx)
            if fake is not None:
                out[f"A_td@{kind}"] = served_accuracy(ctx, x, y, fake)
        forged = [v for k, v in out.items() if k.startswith("A_td@")]
        out["A_td"] = max(forged) if forged else float("nan")
        return out
