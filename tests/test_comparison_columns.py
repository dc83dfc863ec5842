"""The comparison's attack columns come from what each attack declares as its headline, one
per attack stage: an attack run with other settings (``attack:finetune(epochs=1)``) is its own
labelled column, never a "-" under the default's (issue 33), and a stage without a number says
why. Stores written by hand, so nothing trains."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

import ipbench
from ipbench.core.registry import attacks
from ipbench.report.compare import comparison, per_run, value_columns
from ipbench.report.tables import comparison_table
from ipbench.store.results import Store

EVALUATE = {"A_or": 98.19999933242798, "A_ad": 97.0, "A_ud": 10.0, "A_od": -1.2, "A_pd": 87.0}


def add_run(store: Store, run_id: str, scheme: str, seed: int = 0) -> None:
    fields = {"scheme": scheme, "dataset": "synthetic", "model": "tiny", "preset": "smoke",
              "seed": seed, "reduced": True, "config": {}, "provenance": {}}  # fmt: skip
    store.start_run(run_id, fields)
    store.set_run_status(run_id, "done")
    stage(store, run_id, "evaluate", EVALUATE)


def stage(store: Store, run_id: str, name: str, values: dict, status: str = "done") -> None:
    """A stage as the runner records it: its numbers described by the attack's declaration."""
    attack = name.removeprefix("attack:").split("(")[0]
    declared = attacks.get(attack).metrics if name.startswith("attack:") else ()
    notes = {"skipped": "lacks capability"} if status == "skipped" else None
    store.begin_stage(run_id, name, "key")
    store.put_metrics(run_id, name, values, notes, declared)
    store.finish_stage(run_id, name, status=status)


def text(df) -> str:
    console = Console(width=400, record=True)
    for table in comparison_table(df):
        console.print(table)
    return console.export_text()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    yield s
    s.close()


def test_an_attack_with_other_settings_is_its_own_labelled_column(store):
    """The bug: ``attack.finetune.epochs=1`` stored as ``attack:finetune(epochs=1)`` showed "-"
    under ``finetune A_ud`` although it ran."""
    add_run(store, "r1", "mlock")
    stage(store, "r1", "attack:finetune(epochs=1)", {"A_ud": 31.5, "A_ad": 90.0})
    df = comparison(store, ["r1"])
    assert df.loc[0, "finetune(epochs=1) A_ud"] == 31.5
    assert "finetune A_ud" not in df.columns  # no empty column for a default that did not run
    assert df.loc[0, "thief_best"] == 31.5
    table = text(df)
    assert "finetune(epochs=1) A_ud" in table and "31.50" in table
    # beside the default: both columns, the default first
    stage(store, "r1", "attack:finetune", {"A_ud": 50.0, "A_ad": 91.0})
    df = comparison(store, ["r1"])
    attack_cols = value_columns(df.columns)[6:-1]
    assert attack_cols == ["finetune A_ud", "finetune(epochs=1) A_ud"]
    assert (df.loc[0, "finetune A_ud"], df.loc[0, "finetune(epochs=1) A_ud"]) == (50.0, 31.5)


def test_columns_are_the_attacks_declared_headlines(store):
    add_run(store, "r1", "mlock")
    stage(store, "r1", "attack:extraction", {"A_sub": 12.0, "A_sub_vs_victim_agreement": 20.0})
    stage(store, "r1", "attack:neural-cleanse", {"A_re": 80.0, "mask_l1": 3.0})
    stage(store, "r1", "attack:fake-token", {"A_td": 40.0, "A_fake@gaussian": 40.0})
    stage(store, "r1", "attack:passport-retrain", {}, status="skipped")
    row = per_run(store, ["r1"]).iloc[0]
    for name, metric in (("extraction", "A_sub"), ("neural-cleanse", "A_re"),
                         ("fake-token", "A_td"), ("passport-retrain", "A_fake")):  # fmt: skip
        assert metric == attacks.get(name).headline_names()[0]
        assert f"{name} {metric}" in row.index
    assert row["forged"] == 40.0  # a forged credential's accuracy (A_td, A_fake) by metric
    assert row["thief_best"] == 80.0  # the highest thief accuracy, whichever attack
    # a skipped attack keeps its column and says so: never a bare "-"
    assert row["unscored"] == {"passport-retrain A_fake": "skipped"}
    df = comparison(store, ["r1"])
    assert df.loc[0, "unscored"] == {"passport-retrain A_fake": "skipped"}
    line = next(ln for ln in text(df).splitlines() if "mlock" in ln)
    assert "skipped" in line and "12.00" in line and "80.00" in line


def test_rows_stored_without_a_meaning_fall_back_to_the_declared_headline(store):
    add_run(store, "r1", "mlock")
    stage(store, "r1", "attack:prune", {"A_ud": 14.0, "A_ad": 80.0, "rate_best": 0.5})
    with store.db:  # an older store (names only), migrated: its rows vouched for as they are
        store.db.execute("UPDATE metrics SET spec=NULL")
        store.reseal()
    assert per_run(store, ["r1"]).iloc[0]["prune A_ud"] == 14.0


def test_seeds_average_per_column_and_a_scheme_without_the_stage_shows_a_dash(store):
    for seed in (0, 1):
        add_run(store, f"m{seed}", "mlock", seed)
        stage(store, f"m{seed}", "attack:finetune(epochs=1)", {"A_ud": 30.0 + 2 * seed})
    add_run(store, "n0", "none")
    df = comparison(store, ["m0", "m1", "n0"]).set_index("scheme")
    assert df.loc["mlock", "finetune(epochs=1) A_ud"] == 31.0
    assert df.loc["mlock", "finetune(epochs=1) A_ud_std"] == pytest.approx(2**0.5)
    none = next(ln for ln in text(df.reset_index()).splitlines() if ln.startswith("│ none"))
    assert "–" in none  # the attack did not run on that scheme: nothing to say but "–"


def test_json_numbers_are_rounded_to_the_declared_precision(store, tmp_path):
    add_run(store, "r1", "mlock")
    stage(store, "r1", "attack:finetune(epochs=1)", {"A_ud": 31.123456789})
    data = ipbench.load(tmp_path, runs=["r1"]).to_json()
    row = data["comparison"][0]
    assert row["A_or"] == 98.2 and row["finetune(epochs=1) A_ud"] == 31.12
    assert data["runs"][0]["A_or"] == 98.2
    assert "98.19999" not in json.dumps(data)
