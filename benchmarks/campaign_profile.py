"""Where a campaign's time goes: every stage's compute time from a result store, per scheme and
per attack, as the markdown tables of docs/results.md (issue 35, item 2).

The store records each stage's ``wall_s`` (the sum of its attempts' compute, kept when a later
run reuses the stage from the cache), so the profile needs no extra instrumentation and can be
drawn again from any store or imported bundle. It reads what ran, not what else shared the
machine: say that beside the figures (two jobs on two cores roughly double each).

    python benchmarks/campaign_profile.py --workdir RUNS --dataset cifar10 --preset quick
    python benchmarks/campaign_profile.py --workdir RUNS --dataset cifar10 --preset quick --since 2026-12-07T14:50
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections import defaultdict

from ipbench.report.leaderboard.collect import stored_defaults, variant
from ipbench.store.results import Store

SHARED = ("baseline",)  # computed once for every scheme of a (dataset, preset, seed)


def minutes(seconds: float | None) -> str:
    """``12 min 05 s`` (``-`` for a stage without a time)."""
    if seconds is None:
        return "-"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def profile(
    workdir: str, dataset: str, preset: str, seed: int = 0, since: float | None = None
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """(scheme -> stage -> seconds, stage names in first-seen order) of the default-setting runs
    of (``dataset``, ``preset``, ``seed``); stages finished before ``since`` (a Unix time) are
    left out, so a profile can cover one campaign of a store that holds older stages too."""
    store = Store(workdir, create=False)
    table: dict[str, dict[str, float]] = defaultdict(dict)
    order: list[str] = []
    try:
        for run in store.list_runs():
            if (run.dataset, run.preset, run.seed) != (dataset, preset, seed):
                continue
            if variant(run.config, stored_defaults(run.config)):
                continue  # a setting's variant (e.g. the control model) is not the campaign
            for st in store.stages(run.run_id):
                if st.get("wall_s") is None or st.get("status") != "done":
                    continue
                if since is not None and (st.get("finished") or 0) < since:
                    continue
                name = str(st["name"])
                table[run.scheme][name] = float(st["wall_s"])
                if name not in order:
                    order.append(name)
    finally:
        store.close()
    return dict(table), order


def markdown(table: dict[str, dict[str, float]], order: list[str]) -> str:
    """Two tables: stage by scheme (with each scheme's total, the shared baseline apart), and
    each attack's total over the schemes with its share of all attack time."""
    first = {"protect": 0, "evaluate": 1}
    stages = sorted((s for s in order if s not in SHARED), key=lambda s: (first.get(s, 2), s))
    head = ["scheme", *stages, "total (without baseline)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scheme in sorted(
        table, key=lambda s: -sum(v for k, v in table[s].items() if k not in SHARED)
    ):
        row = table[scheme]
        total = sum(v for k, v in row.items() if k not in SHARED)
        lines.append(
            "| "
            + " | ".join([scheme, *(minutes(row.get(s)) for s in stages), minutes(total)])
            + " |"
        )
    per_attack: dict[str, float] = defaultdict(float)
    for row in table.values():
        for k, v in row.items():
            if k.startswith("attack:"):
                per_attack[k.removeprefix("attack:")] += v
    all_attacks = sum(per_attack.values()) or 1.0
    lines += ["", "| attack | schemes | total | share of attack time |", "|---|---|---|---|"]
    for name, secs in sorted(per_attack.items(), key=lambda kv: -kv[1]):
        n = sum(1 for row in table.values() if f"attack:{name}" in row)
        lines.append(f"| {name} | {n} | {minutes(secs)} | {100 * secs / all_attacks:.0f}% |")
    base = [row["baseline"] for row in table.values() if "baseline" in row]
    grand = sum(v for row in table.values() for k, v in row.items() if k not in SHARED)
    lines += ["", f"Baseline (shared): {minutes(base[0] if base else None)}; every other stage: "
              f"{minutes(grand)}; together {minutes(grand + (base[0] if base else 0))}."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--since", default=None, help="ISO time (UTC): only stages finished after it")
    args = ap.parse_args()
    since = None
    if args.since:
        since = dt.datetime.fromisoformat(args.since).replace(tzinfo=dt.timezone.utc).timestamp()
    table, order = profile(args.workdir, args.dataset, args.preset, args.seed, since)
    print(markdown(table, order))


if __name__ == "__main__":
    main()
