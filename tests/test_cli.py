from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from ipbench.cli.main import app

runner = CliRunner()
FAST = ["--set", "epochs=1", "--set", "max_train=300", "--set", "max_test=100", "--attacks", "none"]


def test_list_shows_every_registry():
    from ipbench.core.registry import attacks, schemes

    result = runner.invoke(app, ["list"], terminal_width=200)
    assert result.exit_code == 0
    rows = {line.split("│")[1].strip() for line in result.output.splitlines() if "│" in line}
    assert len(schemes.names()) >= 8 and len(attacks.names()) >= 9
    assert {*schemes.names(), *attacks.names()} <= rows  # every plugin has its own row
    assert {"cifar10", "synthetic", "resnet18", "smoke", "quick", "paper"} <= rows
    for title in ("schemes", "attacks", "datasets", "models", "presets"):
        assert title in result.output
    assert "failed to load" not in result.output
    models = runner.invoke(app, ["list", "models"])
    assert "lenet5" in models.output and "cifar10" not in models.output


def test_list_names_a_plugin_that_failed_to_load(monkeypatch):
    from ipbench.core.registry import schemes

    monkeypatch.setitem(schemes.failures, "ipbench.schemes.broken", "ImportError: no bchlib")
    result = runner.invoke(app, ["list", "schemes"], terminal_width=200)
    assert result.exit_code == 0 and "activedaemon" in result.output
    assert "ipbench.schemes.broken" in result.output
    assert "failed to load: ImportError: no bchlib" in result.output


def test_unknown_scheme_is_one_clear_error(tmp_path):
    result = runner.invoke(app, ["run", "--scheme", "nope", "--workdir", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown scheme 'nope'; valid schemes:" in result.output
    assert "none" in result.output.partition("valid schemes:")[2]
    assert "Traceback" not in result.output


def test_missing_data_root_is_one_clear_error(tmp_path):
    missing = tmp_path / "no-such-dir"
    result = runner.invoke(
        app,
        [
            "run",
            "--scheme",
            "none",
            "--dataset",
            "cifar10",
            "--preset",
            "smoke",
            "--data-root",
            str(missing),
            "--workdir",
            str(tmp_path / "w"),
        ],
    )
    assert result.exit_code == 2
    assert "cifar10: no cifar-10-batches-py/" in result.output and "--data-root" in result.output
    assert "Traceback" not in result.output


def test_bad_setting_names_valid_ones(tmp_path):
    result = runner.invoke(
        app,
        [
            "run",
            "--scheme",
            "none",
            "--preset",
            "smoke",
            "--set",
            "epoch=3",
            "--workdir",
            str(tmp_path),
        ],
    )
    assert (
        result.exit_code == 2
        and "unknown setting 'epoch'" in result.output
        and "epochs" in result.output
    )


def test_run_then_show_and_runs(tmp_path):
    workdir = str(tmp_path / "w")
    result = runner.invoke(
        app,
        [
            "run",
            "--scheme",
            "none",
            "--preset",
            "smoke",
            "--device",
            "cpu",
            "--workdir",
            workdir,
            *FAST,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "A_or" in result.output and "A_pd" in result.output and "preset smoke" in result.output
    assert "reduced" in result.output
    shown = runner.invoke(app, ["show", "last", "--workdir", workdir])
    assert (
        shown.exit_code == 0
        and "baseline" in shown.output
        and "A_or" in shown.output
        and "status done" in shown.output
    )
    listed = runner.invoke(app, ["runs", "--workdir", workdir])
    assert listed.exit_code == 0 and "none" in listed.output and "synthetic" in listed.output
    missing = runner.invoke(app, ["show", "zzzz", "--workdir", workdir])
    assert missing.exit_code == 2 and "no run 'zzzz'" in missing.output


def test_the_cli_starts_without_torchvision():
    """``ipbench list`` (every plugin registered) leaves torchvision unimported: it costs ~1.5 s
    of every start (its ops pull in torch._dynamo) and only the token noise layers use it."""
    code = (
        "import sys; from typer.testing import CliRunner; from ipbench.cli.main import app; "
        "out = CliRunner().invoke(app, ['list']); assert out.exit_code == 0, out.output; "
        "assert 'activedaemon' in out.output; "
        "sys.exit('torchvision imported' if 'torchvision' in sys.modules else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
