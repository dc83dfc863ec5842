from __future__ import annotations

import pytest

from ipbench.errors import IpbenchError, UnknownNameError
from ipbench.registry import Registry, attacks, datasets, models, presets, schemes


def test_builtin_plugins_are_registered():
    assert "none" in schemes.names()
    assert {"synthetic", "cifar10", "cifar100", "mnist", "gtsrb", "npz", "imagefolder"} <= set(
        datasets.names()
    )
    assert {"resnet18", "resnet50", "wrn16_4", "lenet5", "fastnet", "tiny"} <= set(models.names())
    assert presets.names() == ["paper", "quick", "smoke"]
    assert isinstance(attacks.names(), list)


def test_unknown_name_lists_valid_choices():
    with pytest.raises(UnknownNameError) as info:
        schemes.get("nope")
    msg = str(info.value)
    assert "'nope'" in msg and "none" in msg and msg.startswith("unknown scheme")
    assert isinstance(info.value, IpbenchError)


def test_register_decorator_and_duplicates():
    reg: Registry = Registry("widget")

    @reg.register("a")
    def a():
        return 1

    assert reg.get("a") is a and "a" in reg and list(reg) == ["a"]
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(lambda: 2)


def test_entry_point_plugins_are_loaded(monkeypatch):
    """A third-party package registers through the entry-point group, without touching ipbench."""
    reg: Registry = Registry("scheme", group="test.group")
    loaded = []

    class FakeEP:
        name = "thirdparty"

        def load(self):
            loaded.append(True)
            reg.register("thirdparty")(object)

    class BrokenEP:
        name = "broken"

        def load(self):
            raise ImportError("missing dependency")

    import ipbench.registry as r

    monkeypatch.setattr(
        r, "entry_points", lambda group: [FakeEP(), BrokenEP()] if group == "test.group" else []
    )
    assert reg.names() == ["thirdparty"]  # the broken plugin is skipped with a warning
    assert loaded == [True]
