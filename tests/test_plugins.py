"""A third-party scheme and attack, each one file in a package of their own with entry points,
reach ``ipbench list``, a run and the leaderboard with no edit to ipbench; editing the scheme's
code recomputes its stages instead of serving them from the cache.

Every command runs in a fresh interpreter (the CLI as a user runs it), with the package on
PYTHONPATH and its dist-info declaring the entry points, as ``pip install`` would leave it.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCHEME = '''
    """A toy input-space scheme: users permute their pixels with a secret permutation and the
    service undoes it, so clean images arrive scrambled."""

    from dataclasses import dataclass

    import torch

    from ipbench.plugin.capabilities import InputSpaceToken
    from ipbench.plugin.contract import Credential, Protected, Scheme
    from ipbench.core.registry import schemes


    @dataclass(frozen=True)
    class ShuffleConfig:
        key_seed: int = 0


    @schemes.register("pixelshuffle")
    class PixelShuffle(Scheme, InputSpaceToken):
        Config = ShuffleConfig
        summary = "toy: a secret pixel permutation"

        def protect(self, ctx):
            size = ctx.model_spec.image_size
            g = torch.Generator().manual_seed(self.config.key_seed + ctx.seed)
            perm = torch.randperm(size * size, generator=g)
            return Protected(self.name, ctx.unprotected(), ctx.model_spec, {"perm": perm})

        def authorize(self, protected, user):
            return Credential(user, "permutation", {"perm": protected.secrets["perm"]})

        def apply(self, credential, x):
            perm = credential.tensors["perm"].to(x.device)
            return x.flatten(2)[:, :, perm].view_as(x)

        def serve(self, protected, x, credential):
            inverse = torch.argsort(protected.secrets["perm"]).to(x.device)
            return protected.model(x.flatten(2)[:, :, inverse].view_as(x))
'''

ATTACK = '''
    """A toy attack: the thief sends noisy clean images without a credential."""

    from dataclasses import dataclass

    import torch

    from ipbench.plugin.attack import Attack, seeded, served_accuracy, test_slice
    from ipbench.metrics.spec import At, pct
    from ipbench.core.registry import attacks


    @dataclass(frozen=True)
    class NoisyConfig:
        sigmas: tuple[float, ...] = (0.0, 0.1)


    @attacks.register("noisy-query")
    class NoisyQuery(Attack):
        Config = NoisyConfig
        summary = "toy: noisy queries without a credential"
        metrics = (pct("A_noisy", "lower", headline=1),)

        def run(self, target, ctx):
            x, y = test_slice(ctx, 200)
            out = {}
            for s in self.config.sigmas:
                noise = torch.randn(x.shape, generator=seeded(ctx.seed, 1)) * s
                out[At("A_noisy", "sigma", s)] = served_accuracy(target, x + noise, y, ctx)
            out["A_noisy"] = max(out.values())
            return out
'''

ENTRY_POINTS = """
[ipbench.schemes]
pixelshuffle = toyplugins.pixelshuffle

[ipbench.attacks]
noisy-query = toyplugins.noisy_query
"""


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("site")
    pkg = root / "toyplugins"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "pixelshuffle.py").write_text(textwrap.dedent(SCHEME).lstrip())
    (pkg / "noisy_query.py").write_text(textwrap.dedent(ATTACK).lstrip())
    info = root / "toyplugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    env = {**os.environ, "PYTHONPATH": str(root), "IPBENCH_PROGRESS": "0", "COLUMNS": "200"}
    return root, env


def ipbench(env: dict[str, str], *args: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ipbench", *args], env=env, cwd=cwd, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def protect_stages(workdir: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(workdir / "ipbench.sqlite")
    rows = db.execute(
        "SELECT s.cache_key, s.cached FROM stages s JOIN runs r ON r.run_id = s.run_id "
        "WHERE r.scheme = 'pixelshuffle' AND s.name = 'protect'"
    ).fetchall()
    db.close()
    return rows


@pytest.mark.slow
def test_a_plugin_package_reaches_list_run_and_leaderboard(plugin_env, tmp_path):
    root, env = plugin_env
    listed = ipbench(env, "list", cwd=tmp_path)
    assert "pixelshuffle" in listed and "noisy-query" in listed and "failed" not in listed
    run = [
        "run", "--scheme", "pixelshuffle", "--preset", "smoke", "--device", "cpu",
        "--workdir", "w", "--attacks", "noisy-query,fake-token",
    ]  # fmt: skip
    out = ipbench(env, *run, cwd=tmp_path)
    assert "A_noisy@sigma=0.1" in out and "PSNR" in out  # its attack, and input-space metrics
    ipbench(env, "leaderboard", "--workdir", "w", "--out", "board", cwd=tmp_path)
    md = (tmp_path / "board" / "synthetic-smoke.md").read_text()
    assert "| pixelshuffle |" in md and "noisy-query: A_noisy" in md
    assert "fake-token: A_td" in md  # a built-in attack ran on it through its capability
    assert (tmp_path / "board" / "synthetic-smoke" / "tokens.png").exists()  # its token gallery

    # A comment-only edit keeps the cached protect stage; a code edit recomputes it.
    ((key, cached),) = protect_stages(tmp_path / "w")
    assert cached == 0
    source = root / "toyplugins" / "pixelshuffle.py"
    text = source.read_text()
    try:
        source.write_text(text.replace("class ShuffleConfig:", "class ShuffleConfig:  # edited"))
        ipbench(env, *run, cwd=tmp_path)
        assert protect_stages(tmp_path / "w") == [(key, 1)]
        source.write_text(
            text.replace("self.config.key_seed + ctx.seed", "self.config.key_seed + 1")
        )
        ipbench(env, *run[:-1], "none", cwd=tmp_path)  # the protect stage is what is asked
        ((new_key, cached),) = protect_stages(tmp_path / "w")  # the same run, recomputed
        assert new_key != key and cached == 0
    finally:
        source.write_text(text)


def test_code_identity_follows_code_not_comments(tmp_path, monkeypatch):
    """The identity covers the plugin's module and the helper modules of its package it
    imports (at any depth); comments and docstrings do not count."""
    from ipbench.core.identity import code_identity, code_modules, forget_loaded_sources

    pkg = tmp_path / "idpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_helper.py").write_text('"""Helper."""\n\ndef scale(x):\n    return 2 * x\n')
    (pkg / "plugin.py").write_text(
        '"""A plugin."""\n\nclass Plugin:\n    def run(self, x):\n'
        "        from idpkg._helper import scale  # imported where used\n\n"
        "        return scale(x)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import idpkg.plugin

    cls = idpkg.plugin.Plugin
    assert code_modules(cls) == ["idpkg._helper", "idpkg.plugin"]
    before = code_identity(cls)
    helper = pkg / "_helper.py"
    helper.write_text('"""Reworded."""\n\ndef scale(x):  # a comment\n    return 2 * x\n')
    forget_loaded_sources()  # as a new process would read them
    assert code_identity(cls) == before  # docstrings and comments do not count
    helper.write_text('"""Helper."""\n\ndef scale(x):\n    return 3 * x\n')
    assert code_identity(cls) == before  # this process loaded (and runs) the old code
    forget_loaded_sources()
    assert code_identity(cls) != before  # a helper's code does
    for name in [m for m in sys.modules if m.startswith("idpkg")]:
        del sys.modules[name]


def test_moving_a_plugins_imports_keeps_its_key_and_a_changed_constant_does_not(
    tmp_path, monkeypatch
):
    """A refactor of the harness moves the modules a plugin imports from: the stage keys of
    stored results must survive it. Only the plugin's definitions count."""
    from ipbench.core.identity import code_identity, forget_loaded_sources

    pkg = tmp_path / "movepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    source = pkg / "plugin.py"
    before_move = (
        '"""A plugin."""\n\nimport math\nfrom collections import OrderedDict\n\n'
        "STEP = 2\n\n\nclass Plugin:\n    def run(self, x):\n"
        "        from os import path  # noqa\n\n        return STEP * math.floor(x)\n"
    )
    source.write_text(before_move)
    monkeypatch.syspath_prepend(str(tmp_path))
    import movepkg.plugin

    cls = movepkg.plugin.Plugin
    key = code_identity(cls)
    after_move = (
        '"""The same plugin, its imports from elsewhere and its text reflowed."""\n\n'
        "from __future__ import annotations\n\nimport math as math\n"
        "from collections import OrderedDict, defaultdict\n\nSTEP = 2\n\n\n"
        "class Plugin:\n    def run(self, x):\n        return (STEP\n"
        "                * math.floor(x))\n"
    )
    source.write_text(after_move)
    forget_loaded_sources()
    assert code_identity(cls) == key
    source.write_text(after_move.replace("STEP = 2", "STEP = 3"))
    forget_loaded_sources()
    assert code_identity(cls) != key
    for name in [m for m in sys.modules if m.startswith("movepkg")]:
        del sys.modules[name]


def test_a_plugins_preset_defaults_do_not_count_but_its_other_class_values_do(
    tmp_path, monkeypatch
):
    """Tuning one preset's budget (``preset_defaults``) must not re-key the stages of another
    preset: those values reach a run only as resolved config fields, which are keyed."""
    from ipbench.core.identity import code_identity, forget_loaded_sources

    pkg = tmp_path / "presetpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    source = pkg / "plugin.py"
    text = (
        "class Plugin:\n    preset_defaults = {'smoke': {'steps': 10}}\n    scale = 2\n\n"
        "    def run(self, x):\n        return self.scale * x\n"
    )
    source.write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    import presetpkg.plugin

    cls = presetpkg.plugin.Plugin
    key = code_identity(cls)
    for edited, same in (
        (text.replace("{'steps': 10}", "{'steps': 400}, 'quick': {}"), True),
        (text.replace("preset_defaults =", "preset_defaults: dict ="), True),
        (text.replace("scale = 2", "scale = 3"), False),  # any other class value counts
        (text.replace("preset_defaults =", "other_defaults ="), False),
    ):
        source.write_text(edited)
        forget_loaded_sources()
        assert (code_identity(cls) == key) is same, edited
    for name in [m for m in sys.modules if m.startswith("presetpkg")]:
        del sys.modules[name]


def test_a_file_edited_during_a_run_keeps_the_identity_of_the_code_loaded(tmp_path, monkeypatch):
    """A long run must not store stages computed by the code it loaded under the key of a file
    edited since: the identity is read when the plugin registers, and kept for the process."""
    from ipbench.core.identity import code_identity, forget_loaded_sources

    pkg = tmp_path / "editpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    source = pkg / "plugin.py"
    source.write_text(
        "from ipbench.core.registry import Registry\n\nREG = Registry('things')\n\n\n"
        "@REG.register('thing')\nclass Thing:\n    def run(self, x):\n        return 2 * x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import editpkg.plugin

    cls = editpkg.plugin.Thing
    source.write_text(source.read_text().replace("2 * x", "3 * x"))  # edited before asked
    loaded = code_identity(cls)
    forget_loaded_sources()
    assert code_identity(cls) != loaded  # a new process would key the edited code
    for name in [m for m in sys.modules if m.startswith("editpkg")]:
        del sys.modules[name]
