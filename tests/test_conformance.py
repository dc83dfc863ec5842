"""Every registered scheme and attack passes the conformance kit (``ipbench.testing``), the same
one-line check a third-party plugin author runs; and the kit catches the mistakes it exists for.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from ipbench.core.registry import attacks, schemes
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.testing import check_attack, check_scheme

# Schemes whose protection needs more than the smoke budget to be learnt on the easy task.
SETTINGS = {
    "mlock": {"placement": "bottom_right", "protect_epochs": 8},  # a fixed sticker: learnt fast
    "adip": {"protect_epochs": 8},
    "activeguard": {"cw_steps": 100, "fp_retries": 0},
    # a consistent token and smoke's old 4 poisoned epochs suffice for the contract
    "activedaemon": {"token_steps": 15, "secret_only_steps": 15, "protect_epochs": 4},
}
FAST = {"none"}  # the rest train or search for more than a few seconds


def _marks(name: str, fast: set[str]) -> list:
    return [] if name in fast else [pytest.mark.slow]


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=_marks(n, FAST)) for n in sorted(schemes.names())]
)
def test_every_scheme_conforms(name, tmp_path_factory):
    acc = check_scheme(name, tmp_path_factory.mktemp("kit"), SETTINGS.get(name))
    assert 0 <= acc["A_ud"] <= 100 and 0 <= acc["A_ad"] <= 100


# The scheme each attack is checked on (one that has the capabilities it requires), and budgets
# that keep the check short.
ATTACK_CASES = {
    "finetune": ("none", {"epochs": 1, "budgets": (0, 1)}),
    "prune": ("chaow", {"rates": (0.0, 0.5)}),
    "extraction": ("none", {"queries": 200, "epochs": 2}),
    "fake-token": ("adip", {"max_test": 200}),
    "fake-credential": ("chaow", {"max_test": 200}),
    "forged-fingerprint": ("activeguard", {"per_window": 1, "cw_steps": 20, "max_test": 100}),
    "neural-cleanse": ("adip", {"steps": 20, "eval_every": 10, "max_test": 100}),
    "strip-control": ("activeguard", {"max_test": 200}),
    "passport-retrain": ("passport", {"epochs": 1, "max_test": 200}),
    "processing": ("adip", {"qualities": (100,), "scales": (0.5,), "max_test": 100}),
    "insider": ("chaow", {"queries": 200, "epochs": 2}),
    "knockoff": ("chaow", {"queries": 200, "epochs": 2, "dataset": "synthetic:1000"}),
    "finetune-budget": ("none", {"fractions": (0.01,), "shots": (1,), "steps": 5}),
    "fine-pruning": ("chaow", {"rates": (0.5,), "epochs": 1, "max_test": 200}),
    "nad": ("chaow", {"teacher_epochs": 1, "epochs": 1, "max_test": 200}),
    "anp": ("chaow", {"iterations": 5, "max_test": 200}),
}
SCHEME_BUDGET = {"activeguard": {"cw_steps": 20, "fp_retries": 0}, "adip": {"protect_epochs": 8}}


def test_every_attack_has_a_conformance_case():
    assert set(ATTACK_CASES) == set(attacks.names())


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=_marks(n, {"fake-credential"})) for n in sorted(ATTACK_CASES)],
)
def test_every_attack_conforms(name, tmp_path_factory):
    scheme, settings = ATTACK_CASES[name]
    out = check_attack(
        name, tmp_path_factory.mktemp("kit"), scheme, settings, SCHEME_BUDGET.get(scheme)
    )
    assert out


# --- the kit catches what it is for ----------------------------------------------------------
@dataclass(frozen=True)
class _Config:
    pass


class _CopiedFromTheOldTemplate(Scheme):
    """A model-side scheme whose service ignores the credential: A_ad = A_ud."""

    Config = _Config

    def protect(self, ctx):
        return Protected(self.name, ctx.unprotected(), ctx.model_spec, {"key": torch.ones(3)})

    def authorize(self, protected, user):
        return Credential(user, "key", {"key": protected.secrets["key"]})


def test_a_scheme_that_ignores_its_credential_fails_the_kit(tmp_path, monkeypatch):
    monkeypatch.setattr(schemes, "_items", {**schemes._items})
    schemes.register("ignores-credential")(_CopiedFromTheOldTemplate)
    with pytest.raises(AssertionError, match=r"A_ad .* <= A_ud .* does query receive"):
        check_scheme("ignores-credential", tmp_path)


def test_an_attack_reading_the_owners_data_fails_the_kit(tmp_path, monkeypatch):
    from ipbench.core.errors import IpbenchError
    from ipbench.metrics.spec import pct
    from ipbench.plugin.attack import Attack

    @dataclass(frozen=True)
    class Cfg:
        pass

    class Peeks(Attack):
        Config = Cfg
        metrics = (pct("A_ud", "lower", 1),)

        def run(self, target, ctx):
            return {"A_ud": float(len(ctx.owner))}

    monkeypatch.setattr(attacks, "_items", {**attacks._items})
    attacks.register("peeks")(Peeks)
    with pytest.raises(IpbenchError, match="owner's training data is not part of a thief's view"):
        check_attack("peeks", tmp_path)


def test_the_readme_scheme_template_passes_the_kit(tmp_path, monkeypatch):
    """The template a new author copies is a working scheme, not a trap (A_ad > A_ud)."""
    import re
    import sys
    import types
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (code,) = re.findall(r"```python\n(# ipbench/schemes/myscheme.py.*?)```", readme, re.S)
    monkeypatch.setattr(schemes, "_items", {**schemes._items})
    module = types.ModuleType("readme_template")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(
        compile(code.replace('"myscheme"', '"readme-template"'), "README.md", "exec"), vars(module)
    )
    acc = check_scheme("readme-template", tmp_path)
    assert acc["A_ad"] > 50 and acc["A_ud"] < 25


def test_the_readme_attack_template_passes_the_kit(tmp_path, monkeypatch):
    """The attack a new author copies runs from the thief's view and names its headline."""
    import re
    import sys
    import types
    from pathlib import Path

    from ipbench.core.registry import attacks

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    (code,) = re.findall(r"```python\n(# ipbench/attacks/myattack.py.*?)```", readme, re.S)
    assert "from ipbench.plugin import" in code and code.count("from ipbench") == 1
    monkeypatch.setattr(attacks, "_items", {**attacks._items})
    module = types.ModuleType("readme_attack")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code.replace('"myattack"', '"readme-attack"'), "README.md", "exec"), vars(module))
    got = check_attack("readme-attack", tmp_path, scheme="mlock")
    assert set(got) >= {"A_ud", "A_ad"} and 0 <= got["A_ud"] <= 100
    strong = check_attack("readme-attack", tmp_path / "strong", "mlock", {"sigma": 50.0})
    assert strong["A_ad"] < got["A_ad"]  # its setting acts: huge noise ruins the copy


def test_the_kit_finds_secrets_in_the_metadata_a_thief_copies():
    """ActiveGuard's meta.json once held its watermark's map verbatim and its conv filter in a
    sentence; the kit now reads metadata as well as tensors."""
    import json

    import torch

    from ipbench.testing import secrets_in_metadata

    a, b = 23.917330932617188, 4.6120452880859375
    secrets = {
        "wm_map": torch.tensor([a, b], dtype=torch.float64),
        "wm_layer_filter": torch.tensor([1, 6]),
        "fp_ok": torch.ones(30, dtype=torch.uint8),
    }
    old = json.dumps({"meta": {"wm_conv": "conv #1, filter 6", "wm_map": [a, b], "k": 10}})
    assert sorted(secrets_in_metadata(old, secrets)) == ["wm_layer_filter", "wm_map"]
    clean = json.dumps({"meta": {"num_classes": 10, "fp_slots": 30, "seed": 0, "w": 1.5}})
    assert secrets_in_metadata(clean, secrets) == []
