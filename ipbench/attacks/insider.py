"""``insider``: an authorized user distils a token-free copy of the service it may query.

The thief is a paying customer: it holds one valid credential (its own, under a user name no
evaluation user has) and its own unlabeled images (the attacker split, labels unused). It sends
``queries`` of them *with* the credential, so the service answers as it answers every
authorized user, and trains a fresh network of the same architecture on the answers: the top
class (``hard``, Copycat; Correia-Silva et al., IJCNN 2018) or the returned probabilities
(``soft``, knowledge distillation at temperature 1; Hinton et al., 2015: the service returns
probabilities, not logits at a temperature of the thief's choice). The substitute is queried
on clean test images with no credential at all: ``A_sub`` is what the lock is worth against a
user who resells the model.

Same budget as ``extraction`` (Copycat, ActiveDaemon Table V: 2,500 queries, the preset's
training recipe), so the two compare directly: ``extraction`` is the outsider, this the insider.
A lock that answers authorized users correctly cannot stop this attack; the number says by how
little a substitute falls short of the victim.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipbench.attacks.extraction import Extraction, ExtractionConfig
from ipbench.core.registry import attacks
from ipbench.plugin.attack import Target
from ipbench.plugin.context import RunContext
from ipbench.plugin.contract import Credential

# The thief's own user name: at most 8 ASCII characters (the shortest identity a registered
# token scheme encodes; a 13-character name failed such runs), never an evaluation user's
# ("!" is not in their alphabet).
INSIDER = "insider!"


@dataclass(frozen=True)
class InsiderConfig(ExtractionConfig):
    labels: tuple[str, ...] = ("hard", "soft")


@attacks.register("insider")
class Insider(Extraction):
    """Distillation by an authorized user: a substitute trained on credentialed answers."""

    Config = InsiderConfig
    summary = "insider distillation: one valid credential, own unlabeled images, hard/soft labels"
    preset_defaults = {
        "smoke": {"queries": 400, "epochs": 4},  # ~2 s: hard and soft labels
        "quick": {"epochs": 30, "batch_size": 64, "max_test": 2000},  # as extraction
    }

    def credential(self, target: Target, ctx: RunContext) -> Credential | None:
        return target.scheme.authorize(target.protected, INSIDER)
