"""The leaderboard's HTML site: escaping, row order, flags, (paper) values only for the same
network, links to run pages, figure titles; and, in headless Chromium, tables, figures,
sorting by a header click and a screenshot."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ipbench.report.leaderboard.build import build
from ipbench.store.results import Store

# scheme -> (A_ad, A_ud) for seeds 0 and 1; adip's protection did not take (A_pd < 0)
EVAL = {
    "adip": ((60.0, 62.0), (61.0, 63.0)),
    "mlock": ((80.0, 11.0), (82.0, 13.0)),
    "passport": ((70.0, 9.0), (72.0, 11.0)),
}
HOSTILE = "<script>alert('x')</script> & co"
REFERENCE = """scheme,dataset,model,metric,value,source,note
mlock,synthetic,tiny,A_ad,90.5,Same-network paper Table I,
passport,synthetic,resnet18,A_ad,93.0,Other-network paper Table I,
adip,*,any,capacity_published,252,Capacity paper,
"""


def _store(workdir: Path) -> None:
    """Two seeds of three schemes, with wall times, a hostile note and a pruning curve."""
    store = Store(workdir)
    for scheme, seeds in EVAL.items():
        for seed, (a_ad, a_ud) in enumerate(seeds):
            rid = f"{scheme}-{seed}"
            prov = {"git_commit": "c0ffee", "versions": {"ipbench": "0.1.0"},
                    "hardware": {"device": "cpu", "cpu": "Test CPU"}}  # fmt: skip
            store.start_run(rid, {"scheme": scheme, "dataset": "synthetic", "model": "tiny",
                                  "preset": "smoke", "seed": seed, "reduced": True,
                                  "config": {"comment": HOSTILE},
                                  "provenance": prov})  # fmt: skip
            store.set_run_status(rid, "done")
            evaluate = {"A_or": 85.0, "A_ad": a_ad, "A_ud": a_ud, "A_od": a_ad - 85,
                        "A_pd": a_ad - a_ud}  # fmt: skip
            prune = {"A_ud": 20.0 + seed, "A_ud@rate=0.0": a_ud, "A_ud@rate=0.5": a_ud + 5}
            stages = {"evaluate": (evaluate, {"LPIPS": HOSTILE}), "attack:prune": (prune, None)}
            for i, (name, (metrics, notes)) in enumerate(stages.items()):
                store.begin_stage(rid, name, "key")
                store.put_metrics(rid, name, metrics, notes)
                store.finish_stage(rid, name, wall_s=1.5 + i)
    store.close()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    _store(tmp_path / "runs")
    ref = tmp_path / "reference.csv"
    ref.write_text(REFERENCE)
    build(tmp_path / "runs", tmp_path / "board", reference=ref, tokens=False)
    return tmp_path / "board"


def _section(html: str, title: str) -> str:
    start = html.index(f"<h2>{title}</h2>")
    return html[start : html.index("</section>", start)]


def test_the_site_escapes_orders_flags_and_links(site):
    html = (site / "synthetic-smoke.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    run_page = (site / "synthetic-smoke" / "runs" / "mlock-0.html").read_text()
    assert "<script>alert" not in run_page and "&lt;script&gt;alert" in run_page
    accuracy = _section(html, "Accuracy (Table I)")
    # rows by mean A_pd, highest first; adip (A_pd -2) last and flagged on its row
    rows = re.findall(r"<tr[^>]*>\s*<td[^>]*>(\w+)", accuracy)
    assert rows == ["mlock", "passport", "adip"]
    flagged = re.findall(r'<tr class="flagged" title="([^"]+)"><td[^>]*>(\w+)', accuracy)
    assert [s for _, s in flagged] == ["adip"] and "protection did not take" in flagged[0][0]
    # directions in the headers
    assert ">A_ud ↓</th>" in accuracy and ">A_ad ↑</th>" in accuracy
    # a mean links to the first seed's run page (at its stage), and to each seed's
    assert 'href="synthetic-smoke/runs/mlock-0.html#evaluate">81.00 ± 1.41</a>' in accuracy
    assert (
        'href="synthetic-smoke/runs/mlock-1.html#evaluate" title="run mlock-1">s1</a>' in accuracy
    )
    assert (site / "synthetic-smoke" / "runs" / "mlock-1.html").exists()
    # provenance: commit, preset label, wall times (2 stages: 1.5 s + 2.5 s per run)
    assert "c0ffee" in html and "reduced CPU setting" in html
    assert "24.0 s over 6 runs" in html and 'data-sort="4.0" class="num">4.0</td>' in html
    assert 'src="synthetic-smoke/prune.png"' in html
    index = (site / "index.html").read_text()
    assert 'href="synthetic-smoke.html"' in index and (site / "static" / "sortable.js").exists()


def test_paper_values_sit_beside_measured_ones_only_for_the_same_network(site):
    md = (site / "synthetic-smoke.md").read_text()
    # mlock's paper used tiny (as here): beside the measured value; passport's used resnet18
    assert "| mlock | 85.00 ± 0.00 | 81.00 ± 1.41 | 90.50 |" in md
    assert "| passport | 85.00 ± 0.00 | 71.00 ± 1.41 |  |" in md
    other = md[md.index("## Published numbers on other networks") :]
    assert "| passport | A_ad | 93.00 | resnet18 | tiny | Other-network paper Table I |" in other
    assert "| adip | capacity_published |" not in other  # 'any': independent of the network
    csv = pd.read_csv(site / "synthetic-smoke.csv")
    acc = csv[(csv.block == "accuracy") & (csv.metric == "A_ad")].set_index("scheme")
    assert acc.loc["mlock", "published"] == 90.5 and pd.isna(acc.loc["passport", "published"])
    moved = csv[csv.block == "other-models"].iloc[0]
    assert (moved.scheme, moved.published) == ("passport", 93.0) and "resnet18" in moved.note


def test_figures_name_dataset_and_preset(tmp_path, monkeypatch):
    import ipbench.report.leaderboard.plots as plots

    titles = []
    real = plots._save

    def save(fig, path):
        titles.append(fig.get_suptitle())
        real(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    _store(tmp_path / "runs")
    build(tmp_path / "runs", tmp_path / "board", tokens=False)
    assert titles == ["pruning: synthetic, preset smoke"]


def _chromium() -> str | None:
    found = os.environ.get("IPBENCH_CHROMIUM") or shutil.which("chromium")
    return found or shutil.which("chromium-browser")


def _numbers(page, table: str, column: int) -> list[float]:
    cells = page.locator(f'table[data-table="{table}"] tbody tr td:nth-child({column})')
    return [float(c.get_attribute("data-sort")) for c in cells.all()]


def test_the_page_in_headless_chromium(site, tmp_path):
    """Opened from file:// in a real browser: tables, figures, header-click sorting, a link
    to a run page, and a screenshot."""
    browser_path = _chromium()
    if browser_path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Chromium (Debian package `chromium`; see .ci/run)")
        pytest.skip("no Chromium installed (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, headless=True)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto((site / "index.html").as_uri())
        page.click('a[href="synthetic-smoke.html"] >> nth=0')
        page.wait_for_load_state("load")
        assert page.title() == "ipbench leaderboard: synthetic, preset smoke"
        # a 1,440-px screen holds the page; so does a 600-px one, where wide tables wrap or
        # scroll inside their own box instead of widening the page
        assert page.evaluate("document.documentElement.scrollWidth") <= 1440
        page.set_viewport_size({"width": 600, "height": 900})
        assert page.evaluate("document.documentElement.scrollWidth") <= 600
        page.set_viewport_size({"width": 1440, "height": 900})
        for name in ("accuracy-table-i", "robustness", "runs"):
            assert page.locator(f'table[data-table="{name}"] tbody tr').count() >= 3
        images = page.locator("figure img")
        assert images.count() == 1
        assert images.first.evaluate("img => img.complete && img.naturalWidth > 0")
        acc = "accuracy-table-i"
        heads = page.locator(f'table[data-table="{acc}"] thead th')
        a_ud = next(i for i in range(heads.count()) if heads.nth(i).inner_text().startswith("A_ud"))
        before = _numbers(page, acc, a_ud + 1)
        assert before == [12.0, 10.0, 62.5]  # by A_pd: mlock, passport, adip
        heads.nth(a_ud).click()  # A_ud is better low: the first click sorts ascending
        assert _numbers(page, acc, a_ud + 1) == [10.0, 12.0, 62.5]
        assert heads.nth(a_ud).get_attribute("aria-sort") == "ascending"
        heads.nth(a_ud).click()
        assert _numbers(page, acc, a_ud + 1) == [62.5, 12.0, 10.0]
        shot = tmp_path / "leaderboard.png"
        page.screenshot(path=str(shot), full_page=True)
        page.click(f'table[data-table="{acc}"] a:text("81.00 ± 1.41")')
        page.wait_for_load_state("load")
        assert page.url.endswith("synthetic-smoke/runs/mlock-0.html#evaluate")
        assert "Run mlock-0: mlock, seed 0" in page.inner_text("h1")
        browser.close()
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_a_scheme_run_on_several_networks_gets_only_network_independent_paper_values(tmp_path):
    from ipbench.report.leaderboard.page import Page
    from ipbench.report.leaderboard.reference import load_reference

    ref_file = tmp_path / "reference.csv"
    ref_file.write_text(REFERENCE)
    page = Page("synthetic", "smoke", pd.DataFrame(columns=["scheme", "name", "spec"]),
                load_reference(ref_file), models={"mlock": "", "adip": ""})  # fmt: skip
    assert page.comparable("mlock", "A_ad") is None  # tiny in the paper; several here
    assert page.other[("mlock", "A_ad")]["model"] == "several"
    assert page.comparable("adip", "capacity_published")["value"] == 252
