"""``extraction`` (Copycat): train a substitute on the service's answers to the thief's images.

ActiveDaemon paper Table V: the thief sends 2,500 of its own images to the deployed service
with no credential and trains a fresh network of the same architecture on the answers, either
the top class (``hard``) or the returned probabilities (``soft``). A protected service answers
unauthorized queries badly, so the substitute should learn little.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from ipbench.attacks._common import first, thief_data, thief_train
from ipbench.metrics.accuracy import accuracy

from ipbench.attack import Attack, AttackContext
from ipbench.errors import IpbenchError
from ipbench.evaluate import eval_users, query_logits
from ipbench.models import build_model
from ipbench.registry import attacks

LABELS = ("hard", "soft")


@dataclass(frozen=True)
class ExtractionConfig:
    queries: int = 2500  # paper Table V
    labels: tuple[str, ...] = ("hard",)
    epochs: int | None = None  # the substitute's training budget (None: the preset's)
    batch_size: int | None = None  # None: the preset's (lr scales linearly with a smaller one)
    max_test: int | None = None


@attacks.register("extraction")
class Extraction(Attack):
    """Copycat: a substitute trained on unauthorized answers; its test accuracy is A_sub."""

    name = "extraction"
    Config = ExtractionConfig
    summary = "Copycat model extraction with unauthorized queries (paper Table V)"
    headline = ("A_sub",)

    def run(self, ctx: AttackContext) -> dict[str, float]:
        c = self.config
        bad = [m for m in c.labels if m not in LABELS]
        if bad or not c.labels:
            raise IpbenchError(
                f"extraction labels {', '.join(bad) or '(none)'} unknown; valid: {', '.join(LABELS)}"
            )
        x = thief_data(ctx, c.queries).x
        answers = query_logits(ctx.scheme, ctx.protected, x, None, ctx.device)
        test = first(ctx.splits.test, c.max_test)
        victim = query_logits(  # what authorized users get: the function worth stealing
            ctx.scheme, ctx.protected, test.x,
            ctx.scheme.authorize(ctx.protected, eval_users(ctx.seed, 1)[0]), ctx.device,
        ).argmax(1)  # fmt: skip
        cfg = thief_train(ctx, c.epochs or ctx.preset.train.epochs, batch_size=c.batch_size)
        out: dict[str, float] = {"queries": float(len(x))}
        for mode in c.labels:
            targets = answers.argmax(1) if mode == "hard" else answers.softmax(1)
            torch.manual_seed(ctx.seed + 23)
            sub = build_model(ctx.protected.model_spec)
            ctx.trainer.fit(sub, x, targets, cfg, seed=ctx.seed + 23, desc=f"substitute {mode}")
            logits = ctx.trainer.predict(sub, test.x, cfg.eval_batch_size)
            out[f"A_sub@{mode}"] = accuracy(logits, test.y)
            agree = 100.0 * float((logits.argmax(1) == victim).float().mean())
            out[f"A_sub_vs_victim_agreement@{mode}"] = agree
        best = max(c.labels, key=lambda m: out[f"A_sub@{m}"])
        out["A_sub"] = out[f"A_sub@{best}"]
        out["A_sub_vs_victim_agreement"] = out[f"A_sub_vs_victim_agreement@{best}"]
        return out
