"""Did a run's protection and identity tracing take? One rule, read by terminal and tables.

A scheme that did not lock (A_pd below ``A_PD_FLOOR``: unauthorized users lose next to nothing;
on the smoke task NTL's A_pd of 0.6, A_ud 97.0 against A_ad 97.6, is no lock) or whose identities
cannot be read back (id_rate near 0) still produces numbers; they must not be read as a result
about the scheme without this flag. Nor can a lock whose protected model failed to learn the
task for its own users: A_pd is A_ad - A_ud, so a model that serves authorized users at a
fraction of the unprotected accuracy (resampling control on CIFAR-100 quick: A_ad 6.86 against
A_or 60.31, A_pd 5.87, just above the floor) says nothing about the scheme's lock either.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

A_PD_FLOOR = 5.0  # points of accuracy unauthorized users lose, below which the lock "did not take"
ID_RATE_FLOOR = 10.0  # percent of identities decoded exactly, below which tracing "did not take"
# Share of the unprotected accuracy A_or that authorized users keep, below which the protected
# model "did not learn the task". Half: every CIFAR-10 and CIFAR-100 quick row that trained keeps
# at least 0.66 of it (39.76 of 60.31 at worst); the two that did not keep 0.11 and 0.39.
A_AD_SHARE_FLOOR = 0.5
FLAGGED_METRICS = ("A_pd", "id_rate", "A_or", "A_ad")  # what run_warnings reads


def run_warnings(metrics: Mapping[str, float | None]) -> list[str]:
    """Human-readable warnings for one run's evaluate metrics (empty: nothing to flag)."""
    out = []
    a_pd = metrics.get("A_pd")
    if a_pd is not None and a_pd < A_PD_FLOOR:
        out.append(
            f"protection did not take: A_pd = {a_pd:.2f} (unauthorized users lose under "
            f"{A_PD_FLOOR:g} points)"
        )
    a_or, a_ad = metrics.get("A_or"), metrics.get("A_ad")
    if a_or is not None and a_ad is not None and a_or > 0 and a_ad < A_AD_SHARE_FLOOR * a_or:
        out.append(
            f"protected model did not learn the task: A_ad = {a_ad:.2f} (authorized users keep "
            f"under {A_AD_SHARE_FLOOR:g} of A_or = {a_or:.2f})"
        )
    id_rate = metrics.get("id_rate")
    if id_rate is not None and id_rate < ID_RATE_FLOOR:
        out.append(
            f"identity tracing did not take: id_rate = {id_rate:.1f}% of identities decoded exactly"
        )
    return out


def flag_text(metrics: Mapping[str, float | None]) -> str:
    """``run_warnings`` cut to what a table cell needs (``protection did not take: A_pd =
    -2.00``); empty when nothing is flagged."""
    found = run_warnings({k: v for k, v in metrics.items() if v is not None})
    return "; ".join(re.sub(r"(= -?[\d.]+%?).*", r"\1", w) for w in found)
