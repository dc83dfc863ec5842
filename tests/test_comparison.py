"""Many runs in one command, the comparison table, the Python API and the scriptable CLI
(JSON, piped output, reading commands that never create a store)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import ipbench
from ipbench.cli.main import app
from ipbench.core.errors import IpbenchError
from ipbench.engine.expfile import load_grid
from ipbench.engine.grid import Grid, expand, grid_from_options
from ipbench.report.compare import summarize, value_columns

runner = CliRunner()
CHEAP = {"max_test": "200"}  # the smoke recipe (seconds): a baseline that learns
CHEAP_SET = [a for k, v in CHEAP.items() for a in ("--set", f"{k}={v}")]
GRID = ["--scheme", "none,chaow", "--seeds", "0,1", "--preset", "smoke", "--dataset", "synthetic"]
GRID += ["--attacks", "prune", "--device", "cpu", *CHEAP_SET]


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """The cheap grid (2 schemes x 2 seeds, one attack) run once through the CLI, as JSON."""
    workdir = tmp_path_factory.mktemp("grid") / "w"
    result = runner.invoke(app, ["run", *GRID, "--workdir", str(workdir), "--json"])
    assert result.exit_code == 0, result.output
    return workdir, json.loads(result.stdout)


@pytest.mark.slow
def test_a_grid_runs_every_combination_and_json_parses(ran):
    _, data = ran
    assert len(data["runs"]) == 4 and not data["failed"]
    assert {(r["scheme"], r["seed"]) for r in data["runs"]} == {
        (s, seed) for s in ("none", "chaow") for seed in (0, 1)
    }
    rows = {r["scheme"]: r for r in data["comparison"]}
    assert set(rows) == {"none", "chaow"} and rows["chaow"]["n"] == 2
    # chaow locks the weights (A_pd high), none is the reference: listed last, never flagged
    assert [r["scheme"] for r in data["comparison"]] == ["chaow", "none"]
    assert rows["chaow"]["A_pd"] > 30 and rows["none"]["flag"] == ""
    per_seed = [r["A_pd"] for r in data["runs"] if r["scheme"] == "chaow"]  # JSON: 2 decimals
    assert rows["chaow"]["A_pd"] == pytest.approx(sum(per_seed) / 2, abs=0.01)
    assert rows["chaow"]["A_pd_std"] == pytest.approx(pd.Series(per_seed).std(ddof=1), abs=0.02)
    assert rows["chaow"]["prune A_ud"] is not None and rows["chaow"]["forged"] is None
    assert {m["stage"] for m in data["metrics"]} >= {"baseline", "evaluate", "attack:prune"}


@pytest.mark.slow
def test_the_python_api_returns_the_cli_numbers(ran):
    workdir, data = ran
    res = ipbench.run(
        ["none", "chaow"], seeds=[0, 1], presets="smoke", datasets="synthetic",
        attacks="prune", overrides=CHEAP, workdir=workdir, device="cpu",
    )  # fmt: skip
    assert isinstance(res.table, pd.DataFrame) and len(res.runs) == 4
    cli = pd.DataFrame(data["comparison"])  # JSON: each number at its declared precision
    cols = value_columns(res.table.columns)
    assert list(res.table.scheme) == list(cli.scheme) and list(res.table.n) == list(cli.n)
    for col in (*cols, *(f"{c}_std" for c in cols)):
        got, printed = res.table[col].fillna(-1).tolist(), cli[col].fillna(-1).tolist()
        assert got == pytest.approx(printed, abs=0.0051), col
    assert "chaow" in res.summary() and "A_pd" in res.summary()
    long = res.metrics
    assert set(long.run_id) == set(res.run_ids) and (long.stage == "attack:prune").any()
    loaded = ipbench.load(workdir)
    pd.testing.assert_frame_equal(loaded.table[["scheme", *cols]], res.table[["scheme", *cols]])


@pytest.mark.slow
def test_the_table_is_printed_once_unwrapped_when_piped(ran, tmp_path):
    workdir, _ = ran
    result = runner.invoke(app, ["run", *GRID, "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = [ln for ln in lines if "scheme" in ln and "A_pd" in ln]
    assert len(header) == 1  # one table, every column header on one line
    assert all(c in header[0] for c in ("prune A_ud", "thief best", "time/seed", "flag"))
    chaow = next(ln for ln in lines if "chaow" in ln)
    assert "±" in chaow
    assert "comparison: synthetic, preset smoke" in result.stdout
    # status lines go to stderr, so stdout holds the table only
    assert "✓ evaluate" in result.stderr and "✓ evaluate" not in result.stdout


@pytest.mark.slow
def test_runs_and_show_json_and_headlines(ran):
    workdir, _ = ran
    listed = runner.invoke(app, ["runs", "--workdir", str(workdir), "--json"])
    rows = json.loads(listed.stdout)
    assert len(rows) == 4 and all(isinstance(r["A_pd"], float) for r in rows)
    table = runner.invoke(app, ["runs", "--workdir", str(workdir)])
    assert "A_pd %" in table.stdout and "chaow" in table.stdout
    shown = json.loads(
        runner.invoke(app, ["show", "last", "--workdir", str(workdir), "--json"]).stdout
    )
    assert shown["status"] == "done" and any(m["name"] == "A_ud" for m in shown["metrics"])
    assert {s["name"] for s in shown["stages"]} >= {"baseline", "protect", "evaluate"}


@pytest.mark.slow
def test_attack_takes_attacks_and_the_old_spelling(ran):
    workdir, _ = ran
    new = runner.invoke(app, ["attack", "last", "--attacks", "prune", "--workdir", str(workdir)])
    assert new.exit_code == 0, new.output and "prune" in new.stdout
    old = runner.invoke(app, ["attack", "last", "--attack", "prune", "--workdir", str(workdir)])
    assert old.exit_code == 0 and "deprecated" in old.stderr


@pytest.mark.parametrize("command", [["runs"], ["show", "last"], ["leaderboard"]])
def test_reading_commands_never_create_a_store(tmp_path, command):
    typo = tmp_path / "typo"
    result = runner.invoke(app, [*command, "--workdir", str(typo)])
    assert result.exit_code == 2
    assert "no result store at" in result.output and str(typo) in result.output
    assert not typo.exists()
    with pytest.raises(IpbenchError, match="no result store"):
        ipbench.load(typo)
    assert not typo.exists()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"ipbench {ipbench.__version__}"


def test_list_json_and_the_api_registry():
    data = json.loads(runner.invoke(app, ["list", "--json"]).stdout)
    assert "mlock" in data["schemes"] and "finetune" in data["attacks"]
    reg = ipbench.registered("schemes")
    assert list(reg.columns) == ["kind", "name", "description"]
    assert set(reg.name) == set(data["schemes"])
    with pytest.raises(IpbenchError, match="valid: schemes, attacks"):
        ipbench.registered("scheme")


def test_scheme_all_and_lists_expand_to_checked_requests(tmp_path):
    from ipbench.core.registry import schemes

    grid = grid_from_options("all", "synthetic", "smoke", None, "0,1", "none")
    reqs = expand(grid, str(tmp_path))
    assert len(reqs) == 2 * len(schemes.names()) == grid.size()
    assert [(r.scheme, r.seed) for r in reqs[:2]] == [
        (schemes.names()[0], 0),
        (schemes.names()[0], 1),
    ]
    with pytest.raises(IpbenchError, match="unknown scheme 'mlok'"):
        grid_from_options("mlock,mlok")
    with pytest.raises(IpbenchError, match="unknown dataset"):
        expand(grid_from_options("mlock", "synthetic,cifar11", "smoke"), str(tmp_path))
    assert not (tmp_path / "ipbench.sqlite").exists()  # checked before anything runs


def test_a_failing_run_does_not_stop_a_run_grid(tmp_path, monkeypatch):
    """``ipbench run`` takes the executors' road: a run that crashes is recorded on that run,
    and the next one in the grid still runs (before, ``run`` stopped its grid there)."""
    from typer.testing import CliRunner

    from ipbench.cli.main import app
    from ipbench.schemes.adip import Adip

    def broken(self, ctx):
        raise RuntimeError("protection crashed")

    monkeypatch.setattr(Adip, "protect", broken)
    args = ["run", "-s", "adip,mlock", "--preset", "smoke", "--device", "cpu", "--attacks"]
    args += ["none", "-d", "synthetic:600", "--workdir", str(tmp_path), "--json"]
    for k, v in {"epochs": "1", "max_train": "256", "max_test": "100"}.items():
        args += ["--set", f"{k}={v}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1  # a crash, not bad input
    data = json.loads(result.stdout[result.stdout.index("{") :])
    assert [f["scheme"] for f in data["failed"]] == ["adip"]
    assert "RuntimeError: protection crashed" in data["failed"][0]["error"]
    assert [r["scheme"] for r in data["runs"]] == ["mlock"]  # the grid went on


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_experiment_file_gives_the_grid(tmp_path):
    grid = load_grid(_write(tmp_path, (
        "schemes: [mlock, adip]\ndatasets: synthetic\npresets: [smoke]\nseeds: [0, 1]\n"
        "attacks: [finetune, prune]\noverrides:\n  epochs: 2\n  attack.finetune.epochs: 1\n"
        "  flip: false\n"
    )))  # fmt: skip
    assert grid == Grid(
        schemes=("mlock", "adip"), datasets=("synthetic",), presets=("smoke",), seeds=(0, 1),
        attacks="finetune,prune",
        overrides={"epochs": "2", "attack.finetune.epochs": "1", "flip": "false"},
    )  # fmt: skip
    assert len(expand(grid, str(tmp_path))) == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schemes: [mlock]\nseed: [0]\n", "unknown key 'seed'; valid keys: schemes, datasets"),
        ("datasets: [synthetic]\n", "'schemes' is required"),
        ("schemes: [mlock, nope]\n", "schemes: unknown scheme 'nope'; valid schemes:"),
        ("schemes: mlock\nseeds: [0, a]\n", "seeds must be an integer or a list of integers"),
        ("schemes: mlock\nattacks: [finetun]\n", "unknown attack 'finetun'; valid: all, none,"),
        ("schemes: mlock\noverrides: {gamma: [0.1, 0.2]}\n", "use `ipbench sweep`"),
        ("schemes: [mlock\n", "not valid YAML"),
        ("- mlock\n", "expected a mapping"),
    ],
)
def test_experiment_file_errors_name_the_key_and_the_choices(tmp_path, text, message):
    with pytest.raises(IpbenchError, match=None) as info:
        load_grid(_write(tmp_path, text))
    assert message in str(info.value)


def test_a_config_and_grid_options_do_not_mix(tmp_path):
    path = _write(tmp_path, "schemes: [mlock]\n")
    result = runner.invoke(app, ["run", "--config", str(path), "--scheme", "adip"])
    assert result.exit_code == 2 and "drop --scheme" in result.output
    bad = _write(tmp_path, "schemes: [mlock]\noverrides: {epoch: 3}\n")
    result = runner.invoke(app, ["run", "--config", str(bad), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2 and "unknown setting 'epoch'" in result.output


def _run(scheme: str, seed: int, a_pd: float, **extra: float) -> dict:
    row = {"run_id": f"{scheme}{seed}", "scheme": scheme, "dataset": "d", "preset": "p",
           "model": "m", "seed": seed, "wall_s": 1.0, "id_rate": None}  # fmt: skip
    row |= {c: None for c in value_columns([])} | {"A_pd": a_pd} | extra
    return row


def test_rows_are_ordered_by_a_pd_flagged_then_reference_last():
    runs = pd.DataFrame([
        _run("none", 0, 0.0), _run("weak", 0, -2.0), _run("good", 0, 40.0), _run("good", 1, 50.0),
        _run("best", 0, 80.0), _run("zany", 0, 60.0, id_rate=1.0),
        _run("sick", 0, 6.0, A_or=60.0, A_ad=6.9),
    ])  # fmt: skip
    table = summarize(runs)
    assert list(table.scheme) == ["best", "good", "zany", "sick", "weak", "none"]
    flags = dict(zip(table.scheme, table.flag, strict=True))
    assert flags["weak"] == "protection did not take: A_pd = -2.00"
    assert flags["zany"] == "identity tracing did not take: id_rate = 1.0%" and flags["none"] == ""
    assert flags["sick"] == "protected model did not learn the task: A_ad = 6.90"
    good = table[table.scheme == "good"].iloc[0]
    assert good.A_pd == 45.0 and good.A_pd_std == pytest.approx(math.sqrt(50)) and good.n == 2
    assert math.isnan(good.forged)
