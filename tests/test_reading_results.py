"""Results to compute with (issue 33): ``Results.metrics`` with a curve's metric, parameter and
x, ``Results.curve``; ``show --stage/--metric``, ``runs --scheme``, ``sweep --json`` and its
table's A_pd, attack and flag columns; JSON floats at each metric's declared precision;
``list models`` whole, with ``timm:NAME``. Tiny runs (seconds)."""

from __future__ import annotations

import json
import math
import re

import pytest
from tiny_runs import DATA, TINY, set_args
from typer.testing import CliRunner

import ipbench
from ipbench.api import describe
from ipbench.cli.main import app
from ipbench.core.errors import IpbenchError
from ipbench.metrics.spec import Metric

runner = CliRunner()
BASE = ["--preset", "smoke", "--device", "cpu", "-d", DATA, *set_args(TINY)]
LONG_FLOAT = re.compile(r"\d\.\d{5,}")  # 98.19999933242798: noise printed as digits


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """mlock and none with the prune attack (a curve along ``rate``), through the CLI."""
    wd = tmp_path_factory.mktemp("read") / "w"
    res = runner.invoke(
        app,
        ["run", "-s", "mlock,none", *BASE, "--attacks", "prune", "--workdir", str(wd), "--json"],
    )
    assert res.exit_code == 0, res.output
    return wd, res.stdout, json.loads(res.stdout)


def cli(*args: str) -> object:
    return runner.invoke(app, list(args))


def test_results_metrics_hold_curves_as_columns_and_curve_pivots_them(ran):
    wd, _, data = ran
    res = ipbench.load(wd, runs=[r["run_id"] for r in data["runs"]])
    m = res.metrics
    assert {"metric", "param", "x", "label", "spec"} <= set(m.columns)
    point = m[(m.scheme == "mlock") & (m.name == "A_ud@rate=0.5")].iloc[0]
    assert (point.stage, point.metric, point.param, point.x) == (
        "attack:prune",
        "A_ud",
        "rate",
        0.5,
    )
    curve = res.curve("prune", "A_ud", "rate")
    assert curve.index.name == "rate" and list(curve.columns) == ["mlock", "none"]
    assert list(curve.index) == sorted(curve.index) and 0.5 in curve.index and len(curve) > 2
    assert curve.loc[0.5, "mlock"] == point.value
    assert res.curve("attack:prune", "A_ud", "rate").equals(curve)
    with pytest.raises(IpbenchError, match="its curves: A_ad along rate, A_ud along rate"):
        res.curve("prune", "A_ud", "gamma")


def test_json_floats_are_rounded_to_the_metrics_declared_precision(ran):
    wd, stdout, data = ran
    assert not LONG_FLOAT.search(stdout)
    for m in data["metrics"]:
        if isinstance(m["value"], float) and (m["spec"] or {}).get("fmt") == ".2f":
            assert m["value"] == round(m["value"], 2), m
    shown = json.loads(cli("show", "last", "--workdir", str(wd), "--json").stdout)
    assert not LONG_FLOAT.search(json.dumps([shown["metrics"], shown["stages"]]))
    assert not LONG_FLOAT.search(cli("runs", "--workdir", str(wd), "--json").stdout)


def test_metric_rounded_follows_the_declared_format():
    assert Metric("A").rounded(98.19999933242798) == 98.2
    assert json.dumps(Metric("A").rounded(98.19999933242798)) == "98.2"
    assert Metric("S", fmt=".3f").rounded(0.123456) == 0.123
    assert Metric("L", fmt=".4f").rounded(0.0123456) == 0.0123
    assert Metric("n", fmt=".0f").rounded(1999.6) == 2000.0
    assert Metric("p", fmt="si").rounded(11173962.0) == 11173962.0  # counts keep every digit
    assert Metric("r", fmt=".1%").rounded(0.123456) == 0.123
    assert Metric("g", fmt=".3g").rounded(1234.5) == 1230.0
    assert str(Metric("z").rounded(-0.0001)) == "0.0" and math.isnan(Metric("z").rounded(math.nan))


def test_show_filters_by_stage_and_metric(ran):
    wd, _, _ = ran
    out = cli("show", "last", "--workdir", str(wd), "--stage", "prune", "--metric", "A_ud")
    assert out.exit_code == 0, out.output
    assert "A_ud@rate=0.5" in out.stdout and "attack:prune" in out.stdout
    assert "A_or" not in out.stdout and "evaluate" not in out.stdout and "A_ad" not in out.stdout
    args = ["show", "last", "--workdir", str(wd), "--stage", "evaluate", "--metric", "A_pd"]
    shown = json.loads(cli(*args, "--json").stdout)
    assert [(m["stage"], m["name"]) for m in shown["metrics"]] == [("evaluate", "A_pd")]
    assert [s["name"] for s in shown["stages"]] == ["evaluate"]
    bad = cli("show", "last", "--workdir", str(wd), "--stage", "prun")
    assert bad.exit_code == 2 and "--stage 'prun' matches nothing" in bad.output
    assert "attack:prune" in bad.output  # the valid ones are listed
    bad = cli("show", "last", "--workdir", str(wd), "--metric", "A_xx")
    assert bad.exit_code == 2 and "valid: " in bad.output and "A_ud" in bad.output


def test_runs_filters_by_scheme(ran):
    wd, _, _ = ran
    rows = json.loads(cli("runs", "--workdir", str(wd), "--scheme", "none", "--json").stdout)
    assert [r["scheme"] for r in rows] == ["none"]
    both = json.loads(cli("runs", "--workdir", str(wd), "-s", "none,mlock", "--json").stdout)
    assert {r["scheme"] for r in both} == {"none", "mlock"}
    bad = cli("runs", "--workdir", str(wd), "--scheme", "adip")
    assert bad.exit_code == 2 and "no runs of adip" in bad.output
    assert "its schemes: mlock, none" in bad.output


def test_sweep_prints_json_and_a_pd_attack_and_flag_columns(ran):
    wd, _, _ = ran
    args = ["sweep", "-s", "mlock", *BASE, "--set", "mlock.gamma=0.3,0.5", "--attacks", "prune"]
    args += ["--workdir", str(wd)]
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    assert not LONG_FLOAT.search(result.stdout)
    data = json.loads(result.stdout)
    assert data["field"] == "gamma" and [r["gamma"] for r in data["runs"]] == ["0.3", "0.5"]
    for row in data["runs"]:
        assert {"A_or", "A_ad", "A_ud", "A_pd", "prune A_ud", "flag"} <= set(row)
        assert row["status"] == "done" and isinstance(row["prune A_ud"], float)
    table = cli(*args)  # cached now
    assert table.exit_code == 0, table.output
    header = next(ln for ln in table.stdout.splitlines() if "A_pd" in ln)
    assert "prune A_ud" in header and "flag" in header


def test_list_models_names_timm_and_keeps_whole_descriptions():
    listed = cli("list", "models")
    assert listed.exit_code == 0 and "timm:NAME" in listed.stdout
    models = json.loads(cli("list", "models", "--json").stdout)["models"]
    assert "timm:NAME" in models
    assert all(text.endswith(".") for name, text in models.items() if name != "timm:NAME")

    class Wrapped:
        """A first sentence that runs
        over two lines.

        Details."""

    assert describe(Wrapped) == "A first sentence that runs over two lines."
