"""The board's notes: attacks that fail without any lock (the control check), and what a
scheme's row means where its numbers alone would mislead (``row_notes.csv``, package data).

A row note is evidence a reader needs beside the number, such as "this lock is carried by the
reference pipeline's resampling, not the token" with the document that shows it. It lives in
a data file, not in the scheme's code, so writing one re-keys no stage.
"""

from __future__ import annotations

import csv
import io
from importlib.resources import files

import pandas as pd

from ipbench.report.compare import protects
from ipbench.report.leaderboard.collect import attack_of, attack_stage
from ipbench.report.leaderboard.page import Page, headline

# attack headlines that count what the thief gets, for the control check
THIEF_GAINS = ("A_ud", "A_sub", "A_re")
ROW_NOTES = "row_notes.csv"  # scheme, dataset ("*": every dataset), note


def attack_names(agg: pd.DataFrame) -> list[str]:
    """The attacks with a stage on this page."""
    return sorted({a for a in map(attack_of, agg.stage) if a})


def control_notes(page: Page, schemes: list[str]) -> list[str]:
    """Attacks that fail on the unprotected control (the scheme that does not ``protect``): a headline that
    counts what the thief gets (its accuracy without a credential, its copy's accuracy) below
    half of A_or on a model with no lock means that on this task the attack, not a lock, is
    what stops the thief, so its column says nothing about the schemes."""
    controls = [s for s in schemes if not protects(s)]
    if not controls:
        return []
    reference = controls[0]
    a_or = page.value(reference, "evaluate", "A_or")
    if a_or is None or a_or["n"] == 0:
        return []
    notes = []
    for attack in attack_names(page.agg):
        stage = attack_stage(attack)
        head = headline(attack, page.agg[page.agg.stage == stage])
        got = page.value(reference, stage, head) if head in THIEF_GAINS else None
        if got is not None and got["n"] and float(got["mean"]) < float(a_or["mean"]) / 2:
            notes.append(
                f"`{attack}` leaves the thief {float(got['mean']):.2f}% ({head}) on the "
                f"unprotected `{reference}` model (A_or {float(a_or['mean']):.2f}): the attack "
                "fails here without any lock, so its column measures the attack's setting, "
                "not the schemes."
            )
    return notes


def row_notes(dataset: str, schemes: list[str]) -> list[str]:
    """The packaged notes on this page's rows, in the rows' order (`` `scheme`:** note``, to
    follow a bold lead-in)."""
    text = files("ipbench.report.leaderboard").joinpath(ROW_NOTES).read_text(encoding="utf-8")
    found = [r for r in csv.DictReader(io.StringIO(text)) if r["dataset"] in (dataset, "*")]
    return [f"`{s}`:** {r['note']}" for s in schemes for r in found if r["scheme"] == s]
