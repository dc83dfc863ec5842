"""The leaderboard from a synthetic store: rows, mean ± std, published values, skipped attacks,
plots, determinism; reference.csv checks; the sweep command's input errors."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from leaderboard_store import REFERENCE, add_run, add_stage, build_board
from typer.testing import CliRunner

from ipbench.cli.main import app
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.report.leaderboard.collect import default_config
from ipbench.report.leaderboard.reference import load_reference
from ipbench.store.results import Store

EVAL = {  # scheme -> seed -> A_ad, A_ud
    "mlock": {0: (79.0, 10.0), 1: (81.0, 12.0)},
    "passport": {0: (70.0, 9.0), 1: (72.0, 11.0)},
}


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, Path]:
    workdir = tmp_path / "runs"
    store = Store(workdir)
    # An older run of the same configuration, superseded by the later one of seed 0.
    add_run(store, "old-mlock-0", "mlock", 0, {})
    add_stage(store, "old-mlock-0", "evaluate", {"A_ad": 1.0, "A_ud": 1.0})
    for scheme, by_seed in EVAL.items():
        for seed, (a_ad, a_ud) in by_seed.items():
            rid = f"{scheme}-{seed}"
            add_run(store, rid, scheme, seed, {})
            metrics = {"A_or": 85.0, "A_ad": a_ad, "A_ud": a_ud, "A_od": a_ad - 85,
                       "A_pd": a_ad - a_ud, "params": 1000.0, "params_base": 1000.0,
                       "latency_ms": 1.5, "credential_ms": 0.5}  # fmt: skip
            notes = {}
            if scheme == "mlock":
                metrics.update({"PSNR": 26.0 + seed, "SSIM": 0.95, "ERGAS": 44.0})
                notes = {"LPIPS": "no backbone weights offline"}
            add_stage(store, rid, "evaluate", metrics, notes)
            add_stage(store, rid, "attack:prune", {
                "A_ud": 10.0 + seed, "A_ad@rate=0.0": a_ad, "A_ad@rate=0.5": a_ad - 20,
                "A_ud@rate=0.0": a_ud, "A_ud@rate=0.5": a_ud + 1,
            })  # fmt: skip
            add_stage(store, rid, "attack:fake-token", {"A_fake": 11.0, "A_fake@gamma_f=0.3": 12.0,
                                                     "A_fake@gamma_f=0.9": 60.0})  # fmt: skip
            if scheme == "passport":
                add_stage(store, rid, "attack:extraction", {},
                       {"skipped": "skipped: extraction targets mlock only"}, status="skipped")  # fmt: skip
            else:
                add_stage(store, rid, "attack:extraction", {"A_sub": 20.0 + seed})
    add_run(store, "failed-mlock", "mlock", 2, {}, status="failed")
    # A sweep run: mlock with gamma changed from the default.
    base = default_config("mlock", "synthetic", "smoke")
    assert base is not None
    swept = {**base, "scheme_config": {**base["scheme_config"], "gamma": 0.1}}
    add_run(store, "mlock-gamma", "mlock", 0, swept)
    add_stage(store, "mlock-gamma", "evaluate", {"A_ad": 30.0, "A_ud": 10.0})
    store.close()
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    return workdir, ref


def test_tables_have_rows_mean_std_and_published_values(synthetic, tmp_path):
    workdir, ref = synthetic
    md_path = build_board(workdir, ref, tmp_path / "board")
    assert md_path.name == "synthetic-smoke.md"
    md = md_path.read_text()
    assert "| mlock | 85.00 ± 0.00 | 80.00 ± 1.41 | 90.50 |" in md  # A_or, A_ad ± std, A_ad (paper)
    assert "| passport | 85.00 ± 0.00 | 71.00 ± 1.41 |" in md
    assert "missing: no backbone weights offline" in md  # LPIPS note
    assert "26.50 ± 0.71 | 25.04" in md  # PSNR mean ± std beside the paper's
    assert "reduced CPU setting" in md and "abc123" in md and "seeds: 0, 1" in md
    assert "failed-mlock (mlock, failed)" in md  # ignored runs are named
    assert "n/a[^1]" in md and "[^1]: extraction on passport: extraction targets mlock only" in md
    assert "gamma=0.1" in md  # the sweep run is listed apart, not in the main tables
    csv = pd.read_csv(md_path.with_suffix(".csv"))
    row = csv[(csv.block == "accuracy") & (csv.scheme == "mlock") & (csv.metric == "A_ad")].iloc[0]
    assert row["mean"] == 80.0 and math.isclose(row["std"], math.sqrt(2), rel_tol=1e-5)
    assert row["n"] == 2 and row["published"] == 90.5 and row["source"] == "Test paper Table I"
    rob = csv[(csv.block == "robustness") & (csv.metric == "extraction:A_sub")]
    assert list(rob.scheme) == ["mlock"] and rob["mean"].iloc[0] == 20.5
    params = csv[(csv.block == "overhead") & (csv.scheme == "passport") & (csv.metric == "params")]
    assert params["published"].iloc[0] == 9e6  # a '*' reference row holds for every dataset


def test_regeneration_is_byte_identical_and_plots_are_written(synthetic, tmp_path):
    workdir, ref = synthetic
    first = build_board(workdir, ref, tmp_path / "a")
    second = build_board(workdir, ref, tmp_path / "b")
    files = sorted(
        p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file()
    )
    assert {str(f) for f in files} >= {
        "synthetic-smoke.md", "synthetic-smoke.csv", "synthetic-smoke/prune.png",
        "synthetic-smoke/deteriorated-token.png", "synthetic-smoke/poisoning-ratio.png",
    }  # fmt: skip
    for f in files:
        a, b = (tmp_path / "a" / f).read_bytes(), (tmp_path / "b" / f).read_bytes()
        assert len(a) > 0 and a == b, f
    assert "](synthetic-smoke/prune.png)" in first.read_text() == second.read_text()


def _recorded_store(workdir: Path) -> None:
    """Runs as today's runner records them: their defaults, preset settings and metric specs."""
    from ipbench.metrics.spec import At, Metric, pct

    store = Store(workdir)
    base = default_config("mlock", "synthetic", "smoke")
    assert base is not None
    plain = {**base, "defaults": base, "preset_settings": {}}
    swept = {**plain, "scheme_config": {**base["scheme_config"], "gamma": 0.1}}
    declared = (
        pct("A_weird", "lower", headline=2),
        Metric("odd", "", "neither", ".4f", headline=1),  # the stored rank decides the column
    )
    for rid, config, a_ad in (("new-default", plain, 80.0), ("new-gamma", swept, 30.0)):
        add_run(store, rid, "mlock", 0, config)
        add_stage(store, rid, "evaluate", {"A_or": 85.0, "A_ad": a_ad, "A_ud": 10.0})
        store.begin_stage(rid, "attack:custom", "key")
        store.put_metrics(rid, "attack:custom", {
            "A_weird": 12.0, "odd": 0.123456, At("A_weird", "knob", 0.5): 11.0,
            At("A_weird", "knob", 1.0): 9.0,
        }, declared=declared)  # fmt: skip
        store.finish_stage(rid, "attack:custom")
    store.close()


def test_the_same_store_gives_the_same_tables_after_a_preset_edit(tmp_path, monkeypatch):
    """Variants, formats and headlines come from what the runs recorded, not today's code."""
    workdir, ref = tmp_path / "runs", tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    _recorded_store(workdir)
    before = build_board(workdir, ref, tmp_path / "a").read_text()
    assert "| mlock | 85.00 | 80.00 | 90.50 |" in before  # the default run heads the table
    assert "gamma=0.1" in before.partition("## Sweeps")[2]
    assert "custom: odd" in before and "0.1235" in before  # stored headline rank and format
    # "Edit the preset": smoke now sets gamma=0.1 for mlock. Resolved with today's code, the
    # sweep run would pass for the default; the store still says what each run was.
    mlock = schemes.get("mlock")
    monkeypatch.setattr(mlock, "preset_defaults", {"smoke": {"gamma": 0.1}})
    assert default_config("mlock", "synthetic", "smoke")["scheme_config"]["gamma"] == 0.1
    after = build_board(workdir, ref, tmp_path / "b").read_text()
    assert after == before


def test_curves_are_read_from_the_stored_columns(tmp_path):
    from ipbench.report.leaderboard.aggregate import aggregate
    from ipbench.report.leaderboard.collect import collect
    from ipbench.report.leaderboard.plots import curve_points

    _recorded_store(tmp_path)
    agg = aggregate(collect(Store(tmp_path)))
    pts = curve_points(agg, "attack:custom", "knob")
    assert sorted(zip(pts.x, pts["mean"], strict=True)) == [(0.5, 11.0), (1.0, 9.0)]
    assert set(pts.metric) == {"A_weird"}


def test_repository_reference_rows_all_cite_a_source():
    ref = load_reference()
    assert len(ref) > 50 and (ref.source.str.len() > 0).all()
    ad = ref[(ref.scheme == "activedaemon") & (ref.dataset == "cifar10")].set_index("metric")
    assert ad.loc["A_pd", "value"] == 81.06 and ad.loc["PSNR", "value"] == 32.051


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("mlock,cifar10,,A_ad,90,,", "line 3: empty source"),
        ("mlock,cifar10,,A_ad,ninety,Paper,", "line 3: value 'ninety' is not a number"),
        ("mlock,cifar10,,A_ad", "line 3: expected 7 fields"),
    ],
)
def test_malformed_reference_names_the_row(tmp_path, line, message):
    bad = tmp_path / "reference.csv"
    bad.write_text(REFERENCE.splitlines()[0] + "\nadip,cifar10,,A_or,92,Paper,\n" + line + "\n")
    with pytest.raises(IpbenchError, match=message):
        load_reference(bad)


def test_leaderboard_cli_writes_files_and_reports_errors(synthetic, tmp_path):
    workdir, ref = synthetic
    out = tmp_path / "cli"
    cli = CliRunner()
    res = cli.invoke(app, ["leaderboard", "--workdir", str(workdir), "--out", str(out),
                           "--reference", str(ref), "--no-tokens"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (out / "synthetic-smoke.md").exists() and (out / "synthetic-smoke.csv").exists()
    res = cli.invoke(app, ["leaderboard", "--workdir", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no result store" in res.output


def test_adjacent_schemes_within_one_std_over_seeds_are_flagged(tmp_path):
    """Table I marks two schemes whose A_pd differ by less than their spread over seeds: the
    seeds do not order them (issue 35 item 5); a scheme clearly apart is not marked."""
    workdir = tmp_path / "runs"
    store = Store(workdir)
    for scheme, pds in {
        "mlock": (69.0, 71.0),
        "passport": (68.0, 70.5),
        "adip": (30.0, 31.0),
    }.items():
        for seed, pd_ in enumerate(pds):
            add_run(store, f"{scheme}-{seed}", scheme, seed, {})
            add_stage(store, f"{scheme}-{seed}", "evaluate",
                      {"A_or": 85.0, "A_ad": 80.0, "A_ud": 80.0 - pd_, "A_pd": pd_})  # fmt: skip
    store.close()
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    md = build_board(workdir, ref, tmp_path / "board").read_text()
    table = md.split("## Accuracy (Table I)")[1].split("##")[0]
    rows = {ln.split("|")[1].strip(): ln for ln in table.splitlines() if ln.startswith("| ")}
    assert "≈" in rows["mlock"] and "≈" in rows["passport"] and "≈" not in rows["adip"]
    assert "`mlock` and `passport`" in table and "do not resolve the order" in table


def test_an_attack_a_scheme_never_met_says_not_run(tmp_path):
    """A blank robustness cell would read as "no result"; a row whose runs lack the attack
    altogether (never run on them) says so, unlike one that ran and was skipped (n/a)."""
    store = Store(tmp_path / "runs")
    for scheme in ("mlock", "passport"):
        add_run(store, scheme, scheme, 0, {})
        add_stage(store, scheme, "evaluate", {"A_or": 85.0, "A_ad": 80.0, "A_ud": 10.0})
    add_stage(store, "mlock", "attack:prune", {"A_ud": 12.0})
    store.close()
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    md = build_board(tmp_path / "runs", ref, tmp_path / "board").read_text()
    robustness = md.split("## Robustness", 1)[1].split("\n## ", 1)[0]
    assert "| mlock | 12.00 |" in robustness and "| passport | not run |" in robustness


def test_row_notes_name_their_scheme_and_only_reach_its_pages():
    """The packaged notes: every row names a registered scheme and a dataset, and a page
    gets only the notes of its own rows and dataset."""
    from ipbench.core.registry import schemes
    from ipbench.report.leaderboard.notes import row_notes

    c10 = row_notes("cifar10", ["mlock", "activedaemon", "resample-lock"])
    assert [n.split("`")[1] for n in c10] == ["activedaemon", "resample-lock"]
    assert row_notes("cifar10", ["mlock"]) == []
    assert any("23.55" in n for n in row_notes("cifar100", ["activedaemon"]))
    assert not any("23.55" in n for n in c10)
    import csv
    from importlib.resources import files

    text = files("ipbench.report.leaderboard").joinpath("row_notes.csv").read_text()
    for row in csv.DictReader(text.splitlines()):
        assert row["scheme"] in schemes.names() and row["dataset"] and row["note"]
