from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from ipbench.core.config import content_hash, override, parse_assignments
from ipbench.core.errors import IpbenchError


@dataclass(frozen=True)
class Cfg:
    gamma: float = 0.5
    epochs: int = 3
    strategy: Literal["single", "near"] = "single"
    flag: bool = False
    milestones: tuple[float, ...] = (0.5,)
    target: int | None = None


def test_parse_assignments():
    assert parse_assignments(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    with pytest.raises(IpbenchError, match="KEY=VALUE"):
        parse_assignments(["novalue"])


def test_override_coerces_to_field_types():
    cfg = override(
        Cfg(),
        {
            "gamma": "0.2",
            "epochs": "7",
            "strategy": "near",
            "flag": "yes",
            "milestones": "0.3,0.6",
            "target": "5",
        },
    )
    assert cfg == Cfg(0.2, 7, "near", True, (0.3, 0.6), 5)
    assert override(Cfg(), {"target": "none"}).target is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("gama", "1", "unknown config field 'gama'; valid fields: gamma, epochs"),
        ("epochs", "three", "epochs='three' is not a valid int"),
        ("strategy", "far", "is not one of single, near"),
        ("flag", "maybe", "not a valid bool"),
    ],
)
def test_override_rejects_bad_values(key, value, message):
    with pytest.raises(IpbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        override(Cfg(), {key: value})


def test_content_hash_is_stable_and_sensitive():
    assert content_hash(Cfg(), 1) == content_hash(Cfg(), 1)
    assert content_hash(Cfg(), 1) != content_hash(Cfg(gamma=0.6), 1)
    assert content_hash({"b": 1, "a": 2}) == content_hash({"a": 2, "b": 1})
