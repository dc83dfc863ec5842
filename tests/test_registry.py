from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import pytest

from ipbench.core.errors import IpbenchError, UnknownNameError
from ipbench.core.registry import Registry, attacks, datasets, models, presets, schemes
from ipbench.plugin.attack import Attack
from ipbench.plugin.contract import Scheme

BUILTIN_SCHEMES = {
    "none", "activedaemon", "activeguard", "mlock", "adip", "chaow", "advparams", "passport",
    "blockkey", "ntl", "authnet", "resample-lock",
}  # fmt: skip
BUILTIN_ATTACKS = {
    "finetune", "prune", "extraction", "fake-token", "fake-credential", "forged-fingerprint",
    "neural-cleanse", "strip-control", "passport-retrain", "processing", "insider",
    "finetune-budget", "fine-pruning", "nad", "anp", "knockoff",
}  # fmt: skip


def test_builtin_plugins_are_registered():
    assert set(schemes.names()) == BUILTIN_SCHEMES and not schemes.failures
    assert set(attacks.names()) == BUILTIN_ATTACKS and not attacks.failures
    for reg, base in ((schemes, Scheme), (attacks, Attack)):
        for name, cls in reg.items():
            assert isinstance(cls, type) and issubclass(cls, base), name
            assert cls.name == name  # the decorator's name is the one the code reads
    assert {"synthetic", "cifar10", "cifar100", "mnist", "gtsrb", "npz", "imagefolder"} <= set(
        datasets.names()
    )
    assert {"resnet18", "resnet50", "wrn16_4", "lenet5", "fastnet", "tiny"} <= set(models.names())
    assert presets.names() == ["paper", "quick", "smoke"]


def test_every_public_module_of_the_plugin_folders_registers_something():
    """Scanning finds them: one file per plugin, helpers marked private with ``_``."""
    for reg in (schemes, attacks):
        modules = {m.rpartition(".")[2] for m in reg.builtin_modules()}
        defined = {type_.__module__.rpartition(".")[2] for _, type_ in reg.items()}
        assert modules == defined and not any(m.startswith("_") for m in modules)


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


def test_a_plugin_name_is_given_once_by_the_decorator():
    reg: Registry = Registry("widget")

    @reg.register("thing")
    class Thing:
        pass

    assert Thing.name == "thing"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"sets name='other' but is registered as 'clash'"):

        @reg.register("clash")
        class Clash:
            name = "other"


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(("scanpkg", "thirdparty"))]:
        del sys.modules[name]


def test_folder_scan_skips_private_modules_and_survives_a_broken_plugin(on_path, caplog):
    reg: Registry = Registry("widget", builtin_package="scanpkg")
    _write(on_path, {
        "scanpkg/__init__.py": "",
        "scanpkg/good.py": """
            from test_registry_support import REG
            REG.register("good")(type("Good", (), {}))
        """,
        "scanpkg/_helper.py": "raise RuntimeError('private helpers are never imported')\n",
        "scanpkg/broken.py": "import no_such_dependency_xyz\n",
        "test_registry_support.py": "",
    })  # fmt: skip
    import test_registry_support

    test_registry_support.REG = reg  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="ipbench.core.registry"):
        assert reg.names() == ["good"]
    assert list(reg.failures) == ["scanpkg.broken"]
    assert (
        "ModuleNotFoundError: No module named 'no_such_dependency_xyz'"
        in reg.failures["scanpkg.broken"]
    )
    (record,) = caplog.records  # one clear line, no traceback
    assert "widget plugin scanpkg.broken failed to load" in record.getMessage()
    assert "\n" not in record.getMessage() and record.exc_info is None


def test_entry_point_plugins_are_loaded_from_an_installed_package(on_path):
    """A real distribution on sys.path (dist-info with entry_points.txt), nothing patched."""
    reg: Registry = Registry("scheme", group="ipbench.test_entry_points")
    _write(on_path, {
        "thirdparty/__init__.py": "",
        "thirdparty/plugin.py": """
            from test_registry_support2 import REG
            REG.register("thirdparty")(type("ThirdParty", (), {}))
        """,
        "test_registry_support2.py": "",
        "thirdparty-1.0.dist-info/METADATA": "Metadata-Version: 2.1\\nName: thirdparty\\nVersion: 1.0\\n",
        "thirdparty-1.0.dist-info/entry_points.txt": """
            [ipbench.test_entry_points]
            thirdparty = thirdparty.plugin
            broken = thirdparty.missing_module
        """,
    })  # fmt: skip
    import test_registry_support2

    test_registry_support2.REG = reg  # type: ignore[attr-defined]
    assert reg.names() == ["thirdparty"]
    assert list(reg.failures) == ["broken (entry point thirdparty.missing_module)"]
