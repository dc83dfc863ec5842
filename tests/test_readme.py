"""The README's Python API examples run as written (smoke size), in a fresh interpreter and an
empty folder, so a renamed function or a changed result breaks this test, not a reader."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def api_blocks() -> list[str]:
    """The ```python blocks of the README's "Python API" section, in order."""
    text = README.read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_has_api_examples():
    blocks = api_blocks()
    assert len(blocks) >= 2 and "ipbench.run(" in blocks[0] and "ipbench.load(" in blocks[1]


@pytest.mark.slow
def test_the_readme_api_examples_run(tmp_path):
    script = "\n".join(api_blocks())
    env = {**os.environ, "IPBENCH_OFFLINE": "1", "IPBENCH_PROGRESS": "0"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "chaow" in done.stdout and "A_pd" in done.stdout  # res.summary() was printed
    assert (tmp_path / "ipbench-runs" / "ipbench.sqlite").is_file()
    assert (tmp_path / "leaderboard-out" / "synthetic-smoke.md").is_file()


QUICK_START_NOISE = 5.0  # points; the README states it beside the table


def quick_start_rows() -> dict[str, dict[str, str]]:
    """The README's Quick start table, by scheme then column."""
    text = README.read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        rows[cells[0]] = dict(zip(head, cells, strict=True))
    return rows


def test_the_quick_start_table_states_its_key_and_noise():
    text = README.read_text().split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    assert "--demo-key" in text and f"{QUICK_START_NOISE:g} points" in text
    assert {"none", "chaow", "mlock", "activedaemon"} <= set(quick_start_rows())


@pytest.mark.slow
def test_the_quick_start_table_is_what_the_command_prints(tmp_path):
    """Three of the Quick start's rows, run as the README says (its public demo key, smoke,
    synthetic), agree with the table within the noise it states (CPU kernels and thread
    counts move training a little; the key no longer does)."""
    import json

    from typer.testing import CliRunner

    from ipbench.cli.main import app

    readme = quick_start_rows()
    res = CliRunner().invoke(app, [
        "run", "-s", "none,chaow,mlock", "--preset", "smoke", "--dataset", "synthetic",
        "--attacks", "none", "--demo-key", "--workdir", str(tmp_path), "--json",
    ])  # fmt: skip
    assert res.exit_code == 0, res.output
    got = {r["scheme"]: r for r in json.loads(res.stdout[res.stdout.index("{") :])["comparison"]}
    for scheme in ("none", "chaow", "mlock"):
        for col in ("A_or", "A_ad", "A_ud", "A_pd"):
            want = float(readme[scheme][col])
            assert abs(got[scheme][col] - want) <= QUICK_START_NOISE, (scheme, col, want)
