"""The page across datasets: Table I of one preset for every dataset side by side, measured
beside published, each published cell naming its network; written only where a preset has
pages on two datasets or more."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ipbench.report.leaderboard.build import build
from ipbench.store.results import Store

REFERENCE = """scheme,dataset,model,metric,value,source,note
mlock,alpha,resnet18,A_pd,65.34,Paper Table I,
mlock,beta,resnet18,A_or,69.03,Paper Table I,
"""
# (dataset, scheme) -> A_pd of seeds 0 and 1 (A_or 80, A_od = A_ad - A_or)
A_PD = {
    ("alpha", "mlock"): (60.0, 64.0),
    ("alpha", "passport"): (70.0, 70.0),
    ("beta", "mlock"): (50.0, 50.0),
    ("beta", "passport"): (20.0, 22.0),
}


def _store(workdir: Path, datasets: tuple[str, ...]) -> None:
    store = Store(workdir)
    prov = {"git_commit": "c0ffee", "versions": {"ipbench": "0.1.0"},
            "hardware": {"device": "cpu", "cpu": "Test CPU"}}  # fmt: skip
    for (ds, scheme), pds in A_PD.items():
        if ds not in datasets:
            continue
        for seed, a_pd in enumerate(pds):
            rid = f"{ds}-{scheme}-{seed}"
            store.start_run(rid, {"scheme": scheme, "dataset": ds, "model": "tiny",
                                  "preset": "smoke", "seed": seed, "reduced": True,
                                  "config": {}, "provenance": prov})  # fmt: skip
            store.set_run_status(rid, "done")
            a_ad = 80.0 - seed
            store.begin_stage(rid, "evaluate", "key")
            store.put_metrics(rid, "evaluate", {"A_or": 80.0, "A_ad": a_ad, "A_ud": a_ad - a_pd,
                                                "A_od": a_ad - 80.0, "A_pd": a_pd})  # fmt: skip
            store.finish_stage(rid, "evaluate", wall_s=1.0)
    store.close()


def test_table_one_across_datasets_side_by_side(tmp_path):
    _store(tmp_path / "runs", ("alpha", "beta"))
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    written = build(tmp_path / "runs", tmp_path / "board", reference=ref, tokens=False)
    summary = tmp_path / "board" / "smoke-across-datasets.md"
    assert summary in written
    md = summary.read_text()
    head = next(line for line in md.splitlines() if line.startswith("| scheme"))
    cols = [c.strip() for c in head.strip("|").split("|")]
    # a column group per dataset, a (paper) column only where a published value exists
    assert cols == ["scheme", "alpha A_or", "alpha A_od → 0", "alpha A_pd ↑",
                    "alpha A_pd (paper) ↑", "beta A_or", "beta A_or (paper)", "beta A_od → 0",
                    "beta A_pd ↑"]  # fmt: skip
    rows = [line for line in md.splitlines() if line.startswith("| mlock") or
            line.startswith("| passport")]  # fmt: skip
    # mean A_pd over datasets: mlock (62 + 50) / 2 = 56 > passport (70 + 21) / 2 = 45.5
    assert [r.split("|")[1].strip() for r in rows] == ["mlock", "passport"]
    mlock = [c.strip() for c in rows[0].strip("|").split("|")]
    assert mlock[3] == "62.00 ± 2.83"  # mean ± sample std over the two seeds
    assert mlock[4] == "65.34 (resnet18)"  # the published value names its network
    assert "not a result about the scheme" in md
    csv = pd.read_csv(tmp_path / "board" / "smoke-across-datasets.csv")
    hit = csv[(csv.dataset == "beta") & (csv.scheme == "passport") & (csv.metric == "A_pd")]
    assert hit["mean"].item() == 21.0 and hit["n"].item() == 2
    index = (tmp_path / "board" / "index.html").read_text()
    assert 'href="smoke-across-datasets.html"' in index
    assert (tmp_path / "board" / "smoke-across-datasets.html").exists()


def test_no_page_across_datasets_for_one_dataset(tmp_path):
    _store(tmp_path / "runs", ("alpha",))
    written = build(tmp_path / "runs", tmp_path / "board", tokens=False)
    assert [p.name for p in written] == ["alpha-smoke.md"]
    assert "Across datasets" not in (tmp_path / "board" / "index.html").read_text()
