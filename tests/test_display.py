"""Readable output: numbers with units, plain progress lines when not on a terminal."""

from __future__ import annotations

from rich.console import Console

from ipbench.core import progress
from ipbench.metrics.display import duration, si, value_text
from ipbench.metrics.spec import SHARED


def test_numbers_print_as_a_researcher_reads_them():
    assert si(132547456) == "132.5 M" and si(500) == "500" and si(2048, "B") == "2.0 kB"
    assert duration(4.24) == "4.2 s" and duration(185) == "3 min 05 s"
    assert duration(3720) == "1 h 02 min"
    spec = SHARED["flops"].spec()
    assert value_text("flops", 132547456.0, spec) == "132.5 M"
    assert value_text("capacity", float(2**64), SHARED["capacity"].spec()) == "2^64 users"
    assert value_text("A_pd", 87.4, SHARED["A_pd"].spec()) == "87.40%"
    assert value_text("peak_act_bytes", 3.2e6, SHARED["peak_act_bytes"].spec()) == "3.2 MB"
    assert value_text("latency_ms", 1.234, SHARED["latency_ms"].spec()) == "1.23 ms"
    # a number stored without a description: integral values stay integers
    assert value_text("queries", 500.0) == "500" and value_text("x", 0.25) == "0.25"
    assert value_text("A_ud", None) == "–"


def test_plain_progress_prints_periodic_lines_and_a_final_one(monkeypatch, capsys):
    out = Console(file=None, force_terminal=False, width=200)
    clock = iter(float(t) for t in range(0, 1000))
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    bar = progress.PlainProgress(out, every=3.0)
    with bar:
        task = bar.add_task("neural cleanse", total=10, info="")
        for _ in range(10):
            bar.advance(task)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert lines[0].strip().startswith("neural cleanse ") and "left" in lines[0]
    assert lines[-1].strip().startswith("neural cleanse 10/10 (100%)")
    assert 2 <= len(lines) <= 5  # one line per period, not one per step


def test_a_short_loop_prints_nothing(capsys):
    bar = progress.PlainProgress(Console(force_terminal=False), every=60.0)
    with bar:
        task = bar.add_task("quick", total=3, info="")
        for _ in range(3):
            bar.advance(task)
    assert capsys.readouterr().out == ""


def test_not_a_terminal_gets_plain_progress(monkeypatch):
    monkeypatch.setattr(progress, "console", Console(force_terminal=False, stderr=True))
    assert isinstance(progress.make_progress(), progress.PlainProgress)
    assert list(progress.track(range(3), "loop")) == [0, 1, 2]
