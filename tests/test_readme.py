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
