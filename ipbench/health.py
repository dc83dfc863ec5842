"""Did a run's protection and identity tracing take? One rule, read by terminal and tables.

A scheme that did not lock (A_pd <= 0: unauthorized users lose nothing) or whose identities
cannot be read back (id_rate near 0) still produces numbers; they must not be read as a result
about the scheme without this flag.
"""

from __future__ import annotations

from collections.abc import Mapping

ID_RATE_FLOOR = 10.0  # percent of identities decoded exactly, below which tracing "did not take"


def run_warnings(metrics: Mapping[str, float | None]) -> list[str]:
    """Human-readable warnings for one run's evaluate metrics (empty: nothing to flag)."""
    out = []
    a_pd = metrics.get("A_pd")
    if a_pd is not None and a_pd <= 0:
        out.append(f"protection did not take: A_pd = {a_pd:.2f} (unauthorized users lose nothing)")
    id_rate = metrics.get("id_rate")
    if id_rate is not None and id_rate < ID_RATE_FLOOR:
        out.append(
            f"identity tracing did not take: id_rate = {id_rate:.1f}% of identities decoded exactly"
        )
    return out
