"""The leaderboard from a synthetic store: rows, mean ± std, published values, skipped attacks,
plots, determinism; reference.csv checks; the sweep command's input errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ipbench.cli import app
from ipbench.errors import IpbenchError
from ipbench.leaderboard.build import build
from ipbench.leaderboard.collect import RUN_COLUMNS, Collected, default_config, variant
from ipbench.leaderboard.plots import sweep_points
from ipbench.leaderboard.reference import load_reference
from ipbench.leaderboard.render import provenance
from ipbench.registry import schemes
from ipbench.store import Store

REFERENCE = """scheme,dataset,model,metric,value,source,note
mlock,synthetic,tiny,A_ad,90.5,Test paper Table I,
mlock,synthetic,tiny,PSNR,25.036,Test paper Table III,
passport,*,tiny,params,9000000,Test paper Table X,model C
"""

EVAL = {  # scheme -> seed -> A_ad, A_ud
    "mlock": {0: (79.0, 10.0), 1: (81.0, 12.0)},
    "passport": {0: (70.0, 9.0), 1: (72.0, 11.0)},
}


def _run(store: Store, run_id: str, scheme: str, seed: int, config: dict, status: str = "done"):
    prov = {"git_commit": "abc123", "versions": {"ipbench": "0.1.0"},
            "hardware": {"device": "cpu", "cpu": "Test CPU"}}  # fmt: skip
    fields = {"scheme": scheme, "dataset": "synthetic", "model": "tiny", "preset": "smoke",
              "seed": seed, "reduced": True, "config": config, "provenance": prov}  # fmt: skip
    store.start_run(run_id, fields)
    store.set_run_status(run_id, status)


def _stage(store: Store, run_id: str, name: str, metrics: dict, notes=None, status="done"):
    store.begin_stage(run_id, name, "key")
    store.put_metrics(run_id, name, metrics, notes)
    store.finish_stage(run_id, name, status=status, artifact=None)


@pytest.fixture
def synthetic(tmp_path: Path) -> tuple[Path, Path]:
    workdir = tmp_path / "runs"
    store = Store(workdir)
    # An older run of the same configuration, superseded by the later one of seed 0.
    _run(store, "old-mlock-0", "mlock", 0, {})
    _stage(store, "old-mlock-0", "evaluate", {"A_ad": 1.0, "A_ud": 1.0})
    for scheme, by_seed in EVAL.items():
        for seed, (a_ad, a_ud) in by_seed.items():
            rid = f"{scheme}-{seed}"
            _run(store, rid, scheme, seed, {})
            metrics = {"A_or": 85.0, "A_ad": a_ad, "A_ud": a_ud, "A_od": a_ad - 85,
                       "A_pd": a_ad - a_ud, "params": 1000.0, "params_base": 1000.0,
                       "latency_ms": 1.5, "credential_ms": 0.5}  # fmt: skip
            notes = {}
            if scheme == "mlock":
                metrics.update({"PSNR": 26.0 + seed, "SSIM": 0.95, "ERGAS": 44.0})
                notes = {"LPIPS": "no backbone weights offline"}
            _stage(store, rid, "evaluate", metrics, notes)
            _stage(store, rid, "attack:prune", {
                "A_ud": 10.0 + seed, "A_ad@rate=0.0": a_ad, "A_ad@rate=0.5": a_ad - 20,
                "A_ud@rate=0.0": a_ud, "A_ud@rate=0.5": a_ud + 1,
            })  # fmt: skip
            _stage(store, rid, "attack:fake-token", {"A_fake": 11.0, "A_fake@gamma_f=0.3": 12.0,
                                                     "A_fake@gamma_f=0.9": 60.0})  # fmt: skip
            if scheme == "passport":
                _stage(store, rid, "attack:extraction", {},
                       {"skipped": "skipped: extraction targets mlock only"}, status="skipped")  # fmt: skip
            else:
                _stage(store, rid, "attack:extraction", {"A_sub": 20.0 + seed})
    _run(store, "failed-mlock", "mlock", 2, {}, status="failed")
    # A sweep run: mlock with gamma changed from the default.
    base = default_config("mlock", "synthetic", "smoke")
    assert base is not None
    swept = {**base, "scheme_config": {**base["scheme_config"], "gamma": 0.1}}
    _run(store, "mlock-gamma", "mlock", 0, swept)
    _stage(store, "mlock-gamma", "evaluate", {"A_ad": 30.0, "A_ud": 10.0})
    store.close()
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    return workdir, ref


def _build(workdir: Path, ref: Path, out: Path) -> Path:
    (md,) = build(workdir, out, reference=ref, tokens=False)
    return md


def test_tables_have_rows_mean_std_and_published_values(synthetic, tmp_path):
    workdir, ref = synthetic
    md_path = _build(workdir, ref, tmp_path / "board")
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
    first = _build(workdir, ref, tmp_path / "a")
    second = _build(workdir, ref, tmp_path / "b")
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
    from ipbench.metric import At, Metric, pct

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
        _run(store, rid, "mlock", 0, config)
        _stage(store, rid, "evaluate", {"A_or": 85.0, "A_ad": a_ad, "A_ud": 10.0})
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
    before = _build(workdir, ref, tmp_path / "a").read_text()
    assert "| mlock | 85.00 | 80.00 | 90.50 |" in before  # the default run heads the table
    assert "gamma=0.1" in before.partition("## Sweeps")[2]
    assert "custom: odd" in before and "0.1235" in before  # stored headline rank and format
    # "Edit the preset": smoke now sets gamma=0.1 for mlock. Resolved with today's code, the
    # sweep run would pass for the default; the store still says what each run was.
    mlock = schemes.get("mlock")
    monkeypatch.setattr(mlock, "preset_defaults", {"smoke": {"gamma": 0.1}})
    assert default_config("mlock", "synthetic", "smoke")["scheme_config"]["gamma"] == 0.1
    after = _build(workdir, ref, tmp_path / "b").read_text()
    assert after == before


def test_curves_are_read_from_the_stored_columns(tmp_path):
    from ipbench.leaderboard.aggregate import aggregate
    from ipbench.leaderboard.collect import collect
    from ipbench.leaderboard.plots import curve_points

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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "gammma=0.1,0.3"], "unknown setting 'gammma'"),
        (["--set", "gamma=0.1,abc"], "gamma='abc' is not a valid float"),
        (["--set", "gamma=0.1,1.5"], "gamma=1.5 is invalid; valid: a finite number > 0 and < 1"),
        (["--set", "gamma=0.1"], "exactly one setting"),
        (["--set", "gamma=0.1,0.3", "--seeds", "0,x"], "--seeds '0,x'"),
    ],
)
def test_sweep_rejects_bad_fields_and_values_before_running(tmp_path, args, message):
    res = CliRunner().invoke(app, ["sweep", "--scheme", "mlock", "--preset", "smoke",
                                   "--device", "cpu", "--workdir", str(tmp_path), *args])  # fmt: skip
    assert res.exit_code == 2 and message in res.output.replace("\n", " "), res.output
    assert not (tmp_path / "ipbench.sqlite").exists()  # nothing ran


def test_a_run_stored_before_a_field_existed_is_not_the_current_default():
    # quick sets protect_epochs=20 for mlock; a run stored without the field trained with the
    # class default (None: the preset's epochs), so it is a variant, not the default.
    base = default_config("mlock", "cifar10", "quick")
    assert base is not None and base["scheme_config"]["protect_epochs"] == 20
    assert variant(base, base) == {}
    old = {**base, "scheme_config": dict(base["scheme_config"])}
    del old["scheme_config"]["protect_epochs"]
    assert variant(old, base) == {"scheme_config.protect_epochs": "null"}
    # M-LOCK defaults to token_after_augment=True; runs from before the field put the sticker on
    # before augmentation, which the config's LEGACY value records.
    assert base["scheme_config"]["token_after_augment"] is True
    del old["scheme_config"]["token_after_augment"]
    assert variant(old, base) == {
        "scheme_config.protect_epochs": "null",
        "scheme_config.token_after_augment": "false",
    }


def test_sweep_series_are_split_by_the_other_changed_settings():
    v = json.dumps
    agg = pd.DataFrame(
        [
            ("mlock", v({}), "evaluate", "A_ad", 80.0, 0.0, 1),
            ("mlock", v({"scheme_config.gamma": "0.9"}), "evaluate", "A_ad", 85.0, 0.0, 1),
            ("mlock", v({"scheme_config.protect_epochs": "null"}), "evaluate", "A_ad", 75.0, 0.0, 1),
            ("mlock", v({"scheme_config.gamma": "0.1", "scheme_config.protect_epochs": "null"}),
             "evaluate", "A_ad", 41.0, 0.0, 1),
            ("adip", v({}), "evaluate", "A_ad", 70.0, 0.0, 1),  # never swept: no series
        ],
        columns=["scheme", "variant", "stage", "name", "mean", "std", "n"],
    )  # fmt: skip
    runs = pd.DataFrame({"scheme": ["mlock", "adip"], "dataset": "cifar10", "preset": "quick"})
    pts = sweep_points(runs, agg, "gamma")
    got = {(r.scheme, r.x, r.mean) for r in pts.itertuples()}
    assert got == {
        ("mlock", 0.5, 80.0), ("mlock", 0.9, 85.0),
        ("mlock (protect_epochs=None)", 0.5, 75.0), ("mlock (protect_epochs=None)", 0.1, 41.0),
    }  # fmt: skip


def test_provenance_names_the_scheme_settings_the_preset_sets():
    row = {c: "x" for c in RUN_COLUMNS} | {
        "scheme": "mlock", "seed": 0, "reduced": True, "updated": 1.0, "preset_settings": "null",
    }  # fmt: skip

    def text(r: dict, preset: str) -> str:
        runs = pd.DataFrame([r], columns=RUN_COLUMNS)
        return "\n".join(provenance(Collected(runs, pd.DataFrame(), pd.DataFrame()), preset))

    # A run stored before runs recorded them: the scheme class's declaration.
    assert "mlock: protect_epochs=20" in text(row, "quick")
    assert "mlock: protect_epochs=6, sticker_size=8" in text(row, "smoke")
    assert "preset sets" not in text(row | {"scheme": "chaow"}, "smoke")  # nothing for chaow
    # A run that recorded them: the store, whatever the code says today.
    recorded = row | {"preset_settings": json.dumps({"protect_epochs": 7})}
    assert "mlock: protect_epochs=7" in text(recorded, "quick")


def test_tracing_block_and_a_flag_on_protection_that_did_not_take(tmp_path):
    workdir = tmp_path / "runs"
    store = Store(workdir)
    for seed, id_rate in ((0, 0.2), (1, 0.6)):
        _run(store, f"ad-{seed}", "activedaemon", seed, {})
        _stage(store, f"ad-{seed}", "evaluate", {
            "A_or": 85.0, "A_ad": 80.0, "A_ud": 82.0, "A_od": -5.0, "A_pd": -2.0,
            "A_dec_raw": 72.0, "A_dec": 79.0, "id_rate": id_rate, "bch_failures": 90.0,
        })  # fmt: skip
    store.close()
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    md = _build(workdir, ref, tmp_path / "board").read_text()
    assert "## Identity tracing" in md and "| activedaemon ⚠ | 72.00 ± 0.00 | 79.00 ± 0.00 |" in md
    assert "**Warning:** `activedaemon`: protection did not take: A_pd = -2.00" in md
    assert "identity tracing did not take: id_rate = 0.4%" in md


def test_an_attack_that_fails_on_the_unprotected_control_is_called_out(tmp_path):
    """The unprotected run is the control: never flagged for protecting nothing, and an attack
    whose thief gets less than half of A_or from it is named (its column measures the attack)."""
    workdir = tmp_path / "runs"
    store = Store(workdir)
    for scheme, a_ud in (("none", 90.0), ("mlock", 10.0)):
        _run(store, scheme, scheme, 0, {})
        _stage(store, scheme, "evaluate", {
            "A_or": 90.0, "A_ad": 88.0 if scheme == "mlock" else 90.0, "A_ud": a_ud,
            "A_od": 0.0, "A_pd": 88.0 - a_ud if scheme == "mlock" else 0.0,
        })  # fmt: skip
        _stage(store, scheme, "attack:knockoff", {"A_sub": 10.5})  # no copy even of none
        _stage(store, scheme, "attack:finetune", {"A_ud": 89.0})  # works on none
    store.close()
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    md = _build(workdir, ref, tmp_path / "board").read_text()
    assert "| none | 90.00 |" in md and "none ⚠" not in md and "`none`:" not in md
    assert "**Control:** `knockoff` leaves the thief 10.50% (A_sub) on the unprotected" in md
    assert "`finetune` leaves" not in md


def test_token_gallery_is_drawn_from_the_examples_a_run_stored(tmp_path):
    """Neither the scheme's code nor the dataset is needed: a scheme today's ipbench does not
    know still gets its gallery row."""
    import torch

    from ipbench.evaluate import TOKEN_EXAMPLES
    from ipbench.tensorio import write_tensors

    workdir, ref = tmp_path / "runs", tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    store = Store(workdir)
    _run(store, "gone-0", "retired-scheme", 0, {})
    folder = tmp_path / "evaluate-artefact"
    folder.mkdir()
    x = torch.rand(4, 3, 32, 32)
    write_tensors({"clean": x, "authorized": (x + 0.1).clamp(0, 1)}, folder / TOKEN_EXAMPLES)
    store.begin_stage("gone-0", "evaluate", "key")
    store.put_metrics("gone-0", "evaluate", {"A_ad": 80.0, "A_ud": 10.0})
    store.finish_stage("gone-0", "evaluate", artifact=str(folder))
    store.close()
    (md,) = build(workdir, tmp_path / "board", reference=ref, data_root=str(tmp_path / "no"))
    assert (tmp_path / "board" / "synthetic-smoke" / "tokens.png").stat().st_size > 0
    assert "token gallery" in md.read_text() and "left out" not in md.read_text()


def test_processing_and_budget_curves_and_token_sweeps_are_plotted(tmp_path):
    """The benign-processing series (one stage, labelled series), the fine-tuning budget
    curve and ActiveDaemon's sweeps of non-accuracy metrics each get their figure."""
    from ipbench.leaderboard.aggregate import aggregate
    from ipbench.leaderboard.collect import collect
    from ipbench.leaderboard.plots import curve_points, make_plots
    from ipbench.metric import At

    store = Store(tmp_path / "runs")
    base = default_config("activedaemon", "synthetic", "smoke")
    assert base is not None
    plain = {**base, "defaults": base, "preset_settings": {}}
    for rid, steps, psnr in (("s1", 100, 20.0), ("s2", 200, 25.0)):
        cfg = {**plain, "scheme_config": {**base["scheme_config"], "token_steps": steps}}
        _run(store, rid, "activedaemon", 0, cfg)
        _stage(store, rid, "evaluate", {"A_or": 85.0, "A_ad": 80.0, "A_ud": 10.0, "PSNR": psnr})
    _run(store, "d", "activedaemon", 0, plain)
    _stage(store, "d", "evaluate", {"A_or": 85.0, "A_ad": 80.0, "A_ud": 10.0, "PSNR": 30.0})
    for stage, metrics in (
        ("attack:processing", {
            "A_ad_worst": 40.0, At("A_ad", "quality", 100, "jpeg"): 80.0,
            At("A_ad", "quality", 75, "jpeg"): 40.0, At("A_ad", "scale", 0.5, "resize"): 60.0,
        }),
        ("attack:finetune-budget", {
            "A_ud": 70.0, At("A_ud", "fraction", 0.01): 30.0, At("A_ud", "fraction", 0.1): 70.0,
            At("A_ad", "fraction", 0.01): 75.0, At("A_ad", "fraction", 0.1): 79.0,
        }),
    ):  # fmt: skip
        _stage(store, "d", stage, metrics)
    store.close()
    col = collect(Store(tmp_path / "runs"))
    agg = aggregate(col)
    jpeg = curve_points(agg, "attack:processing", "quality", "jpeg")
    assert sorted(zip(jpeg.x, jpeg["mean"], strict=True)) == [(75.0, 40.0), (100.0, 80.0)]
    assert set(jpeg.metric) == {"A_ad jpeg"}
    assert curve_points(agg, "attack:processing", "sigma", "blur").empty
    made = {p.name for _, p in make_plots(col.runs, agg, tmp_path / "fig", "synthetic", "smoke")}
    assert {"processing.png", "finetune-budget-fraction.png", "sweep-token-steps.png"} <= made
    assert "finetune-budget-shots.png" not in made and "sweep-noise-fraction.png" not in made
