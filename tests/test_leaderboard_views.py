"""The leaderboard's views of a store: sweeps and their series, provenance, flags on
protection that did not take and on attacks the control defeats, the token gallery, the
curves; the sweep command's input errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from leaderboard_store import REFERENCE, add_run, add_stage, build_board
from typer.testing import CliRunner

from ipbench.cli.main import app
from ipbench.report.leaderboard.build import build
from ipbench.report.leaderboard.collect import RUN_COLUMNS, Collected, default_config, variant
from ipbench.report.leaderboard.plots import sweep_points
from ipbench.report.leaderboard.render import provenance
from ipbench.store.results import Store


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
        add_run(store, f"ad-{seed}", "activedaemon", seed, {})
        add_stage(store, f"ad-{seed}", "evaluate", {
            "A_or": 85.0, "A_ad": 80.0, "A_ud": 82.0, "A_od": -5.0, "A_pd": -2.0,
            "A_dec_raw": 72.0, "A_dec": 79.0, "id_rate": id_rate, "bch_failures": 90.0,
        })  # fmt: skip
    store.close()
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    md = build_board(workdir, ref, tmp_path / "board").read_text()
    assert "## Identity tracing" in md and "| activedaemon ⚠ | 72.00 ± 0.00 | 79.00 ± 0.00 |" in md
    assert "**Warning:** `activedaemon`: protection did not take: A_pd = -2.00" in md
    assert "identity tracing did not take: id_rate = 0.4%" in md


def test_an_attack_that_fails_on_the_unprotected_control_is_called_out(tmp_path):
    """The unprotected run is the control: never flagged for protecting nothing, and an attack
    whose thief gets less than half of A_or from it is named (its column measures the attack)."""
    workdir = tmp_path / "runs"
    store = Store(workdir)
    for scheme, a_ud in (("none", 90.0), ("mlock", 10.0)):
        add_run(store, scheme, scheme, 0, {})
        add_stage(store, scheme, "evaluate", {
            "A_or": 90.0, "A_ad": 88.0 if scheme == "mlock" else 90.0, "A_ud": a_ud,
            "A_od": 0.0, "A_pd": 88.0 - a_ud if scheme == "mlock" else 0.0,
        })  # fmt: skip
        add_stage(store, scheme, "attack:knockoff", {"A_sub": 10.5})  # no copy even of none
        add_stage(store, scheme, "attack:finetune", {"A_ud": 89.0})  # works on none
    store.close()
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    md = build_board(workdir, ref, tmp_path / "board").read_text()
    assert "| none | 90.00 |" in md and "none ⚠" not in md and "`none`:" not in md
    assert "**Control:** `knockoff` leaves the thief 10.50% (A_sub) on the unprotected" in md
    assert "`finetune` leaves" not in md


def test_token_gallery_is_drawn_from_the_examples_a_run_stored(tmp_path):
    """Neither the scheme's code nor the dataset is needed: a scheme today's ipbench does not
    know still gets its gallery row."""
    import torch

    from ipbench.core.tensorio import write_tensors
    from ipbench.store.bundle import TOKEN_EXAMPLES

    workdir, ref = tmp_path / "runs", tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    store = Store(workdir)
    add_run(store, "gone-0", "retired-scheme", 0, {})
    from ipbench.store.cache import StageCache

    x = torch.rand(4, 3, 32, 32)
    cache = StageCache(workdir / "artifacts", store, mac_key=store.signing_key())
    folder, _ = cache.compute(  # a stage folder as a run leaves it: digests, authenticated
        "evaluate", "key",
        lambda work: write_tensors(
            {"clean": x, "authorized": (x + 0.1).clamp(0, 1)}, work / TOKEN_EXAMPLES
        ),
    )  # fmt: skip
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
    from ipbench.metrics.spec import At
    from ipbench.report.leaderboard.aggregate import aggregate
    from ipbench.report.leaderboard.collect import collect
    from ipbench.report.leaderboard.plots import curve_points, make_plots

    store = Store(tmp_path / "runs")
    base = default_config("activedaemon", "synthetic", "smoke")
    assert base is not None
    plain = {**base, "defaults": base, "preset_settings": {}}
    for rid, steps, psnr in (("s1", 100, 20.0), ("s2", 200, 25.0)):
        cfg = {**plain, "scheme_config": {**base["scheme_config"], "token_steps": steps}}
        add_run(store, rid, "activedaemon", 0, cfg)
        add_stage(store, rid, "evaluate", {"A_or": 85.0, "A_ad": 80.0, "A_ud": 10.0, "PSNR": psnr})
    add_run(store, "d", "activedaemon", 0, plain)
    add_stage(store, "d", "evaluate", {"A_or": 85.0, "A_ad": 80.0, "A_ud": 10.0, "PSNR": 30.0})
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
        add_stage(store, "d", stage, metrics)
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


def test_twenty_schemes_get_twenty_distinct_styles_and_the_first_ten_distinct_colours():
    """A 10-colour cycle once drew ActiveDaemon and passport in the same blue."""
    from ipbench.report.leaderboard.plots import series_style

    style = series_style([f"scheme{i:02d}" for i in range(20)])
    assert len(set(style.values())) == 20
    assert len({colour for colour, _ in list(style.values())[:10]}) == 10
    assert len({marker for _, marker in list(style.values())[:10]}) == 10
