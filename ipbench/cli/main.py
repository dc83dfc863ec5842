"""The ``ipbench`` command line: run, attack, list, show, runs, leaderboard, sweep.

Results (tables, JSON) go to stdout and status lines to stderr, so ``ipbench run ... > out``
keeps the table and ``--json`` output parses. Piped output is never wrapped or cut.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import typer

from ipbench.cli import bundles as cli_bundles
from ipbench.cli import read as cli_read
from ipbench.cli.common import (
    DATA_ROOT_HELP,
    JSON_HELP,
    RECOMPUTE_HELP,
    WORKDIR_HELP,
    err,
    out,
    print_error,
    print_json,
    print_problems,
    user_errors,
)
from ipbench.core.config import parse_assignments
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks, schemes
from ipbench.core.units import duration
from ipbench.core.version import __version__
from ipbench.report.tables import comparison_table, metrics_table, run_title

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="ipbench: train, attack and score active DNN IP-protection schemes on shared tasks.",
)
EXECUTOR_HELP = (
    "local: one run after another here; processes: the runs on --workers local processes; "
    "ray: tasks on a Ray cluster (docs/ray.md)"
)
WORKERS_HELP = "processes of --executor processes (default: one per CPU core)"
RAY_ADDRESS_HELP = "the Ray cluster to join (auto, HOST:PORT); default: start a local one"


def executor_option() -> Any:
    return typer.Option("local", "--executor", help=EXECUTOR_HELP)


def ray_address_option() -> Any:
    return typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP)


def workers_option() -> Any:
    return typer.Option(None, "--workers", help=WORKERS_HELP)


def run_grid(
    requests: list[Any], executor: str, ray_address: str | None, title: str,
    workers: int | None = None,
) -> list[Any]:  # fmt: skip
    """Run ``requests`` through the chosen executor and print the summary table."""
    from ipbench.engine.executors import execute, summary_table

    outcomes = execute(requests, executor=executor, ray_address=ray_address, workers=workers)
    out().print(summary_table(outcomes, title))
    return outcomes


def exit_on_failures(outcomes: list[Any]) -> None:
    """One red line per failed run; exit 2 when every failure was bad input (as a single
    command's input errors), 1 when a run crashed."""
    failed = [o for o in outcomes if o.status != "done"]
    for o in failed:
        said = o.run_id is not None and o.run_id in (o.error or "")  # the error names the run
        said = said or len(outcomes) == 1  # one run: the command names it
        where = "" if said else f"run {o.run_id or '-'} (seed {o.request.seed}): "
        print_error(f"{where}{o.error}")
    if failed:
        raise typer.Exit(2 if all(o.input_error for o in failed) else 1)


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


@app.command()
def run(
    scheme: str = typer.Option(
        None, "--scheme", "-s", help="scheme(s), comma-separated, or 'all' (ipbench list schemes)"
    ),
    dataset: str = typer.Option(
        None, "--dataset", "-d", help="dataset(s), comma-separated (default: the preset's)"
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="network(s) (default: the preset's); timm:NAME for any timm architecture",
    ),
    preset: str = typer.Option(
        None, "--preset", "-p", help="smoke | quick | paper (default: paper with CUDA, else quick)"
    ),
    seeds: str = typer.Option("0", "--seeds", "--seed", help="seed(s), comma-separated: 0,1,2"),
    config: str = typer.Option(
        None, "--config", "-c", help="experiment file (YAML) instead of the options above"
    ),
    set_: list[str] = typer.Option(
        None,
        "--set",
        help="override a config field: --set strategy=near; for one scheme's runs only: "
        "--set SCHEME.FIELD=VALUE (repeatable)",
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
    recompute: list[str] = typer.Option(None, "--recompute", help=RECOMPUTE_HELP),
    new_attacks: bool = typer.Option(
        False, "--new-attacks", help="with --attacks all: also run attacks a stored run has not met"
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    executor: str = executor_option(),
    ray_address: str = ray_address_option(),
    workers: int | None = workers_option(),
    demo_key: bool = typer.Option(
        False,
        "--demo-key",
        help="a new store's owner key is the public demo key (never for "
        "real secrets): the README's Quick start numbers reproduce on any machine",
    ),
) -> None:
    """Protect, evaluate and attack: one run per scheme x dataset x preset x model x seed
    (each cached and resumable), then the comparison table."""
    from ipbench.api import Results, records
    from ipbench.core.owner import demo_key_environment
    from ipbench.core.progress import console
    from ipbench.engine.executors import execute, failures
    from ipbench.engine.expfile import load_grid
    from ipbench.engine.grid import expand, grid_from_options

    with user_errors(), demo_key_environment(demo_key):
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
        for r in requests:  # the way out of a failed integrity check, for every run
            r.recompute = tuple(recompute or ())
            r.new_attacks = new_attacks
        if len(requests) > 1:
            console.print(f"[bold]{len(requests)} runs[/] ({grid.size()} combinations)")
        started = time.perf_counter()
        outcomes = execute(requests, executor=executor, ray_address=ray_address, workers=workers)
        failed = failures(outcomes)
        ids = list(dict.fromkeys(o.run_id for o in outcomes if o.run_id and o.status == "done"))
        res = Results.from_store(workdir, ids, failed)
        if as_json:
            data = res.to_json()
            data["metrics"] = records(res.metrics)
            print_json(data)
        elif ids:
            o = out()
            if len(ids) == 1:
                from ipbench.api import open_store

                store = open_store(workdir)
                o.print(metrics_table(run_title(store.require_run(ids[0])), store.metrics(ids[0])))
                store.close()
            for table in comparison_table(res.table):
                o.print(table)
            wall = duration(time.perf_counter() - started)
            o.print(f"{len(ids)} run(s) in {wall}; every number: ipbench show RUN")
        exit_on_failures(outcomes)


@app.command()
def attack(
    run_refs: list[str] = typer.Argument(
        ..., metavar="RUN", help="run ids (several: one grid), unique prefixes, or 'last'"
    ),
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
    recompute: list[str] = typer.Option(None, "--recompute", help=RECOMPUTE_HELP),
    executor: str = executor_option(),
    ray_address: str = ray_address_option(),
    workers: int | None = workers_option(),
) -> None:
    """Attack stored runs, reusing their cached models; results join each run's record."""
    from ipbench.api import open_store
    from ipbench.engine.request import attack_request, resolve
    from ipbench.engine.runner import attack_stage_name

    with user_errors():
        if old_spelling:
            err.print("note: --attack is deprecated; the option is --attacks, as on `run`")
        names = attacks_ or old_spelling
        if not names:
            raise IpbenchError(f"give --attacks (all, or: {', '.join(attacks.names())})")
        store = open_store(workdir)
        overrides = parse_assignments(set_)
        requests = [
            attack_request(store, ref, names, overrides, workdir, data_root, device)
            for ref in dict.fromkeys(run_refs)
        ]
        for request in requests:
            request.recompute = tuple(recompute or ())
        outcomes = run_grid(
            requests, executor, ray_address, f"attacks on {len(requests)} runs", workers
        )
        for o in outcomes:
            if o.status != "done":
                continue
            res = resolve(o.request)
            wanted = {attack_stage_name(a.name, a.config, res.preset.name) for a in res.attacks}
            rows = [m for m in store.metrics(o.run_id) if m["stage"] in wanted]
            out().print(metrics_table(run_title(store.require_run(o.run_id)), rows))
        store.close()
        exit_on_failures(outcomes)


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
    data_root: str = typer.Option(
        None, "--data-root", help="unused (the gallery reads stored images)"
    ),
    tokens: bool = typer.Option(True, "--tokens/--no-tokens", help="draw the token gallery"),
    bundles: list[str] = typer.Option(
        None, "--from", help="results bundle(s) instead of --workdir's store (repeatable)"
    ),
) -> None:
    """Write markdown + CSV tables, an HTML site (index.html, sortable, offline) and plots per
    dataset and preset from the result store, or from results bundles alone (--from)."""
    import tempfile

    from ipbench.api import open_store
    from ipbench.report.leaderboard.build import build
    from ipbench.store.bundle import import_bundle
    from ipbench.store.results import Store

    with user_errors(), tempfile.TemporaryDirectory(prefix="ipbench-bundles-") as scratch:
        if bundles:  # a throwaway store holding the bundles' rows and nothing else
            workdir = scratch
            store = Store(scratch)
            try:
                for bundle in bundles:
                    import_bundle(store, bundle)
            finally:
                store.close()
        open_store(workdir).close()  # a missing store is an error, never created
        o = out()
        problems: list[str] = []
        for path in build(
            workdir, out_dir, dataset, preset, reference, data_root, tokens, problems
        ):
            o.print(f"wrote {path}, {path.with_suffix('.csv')} and {path.with_suffix('.html')}")
        print_problems(problems)
        o.print(f"open {os.path.join(out_dir, 'index.html')} in a browser")


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
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
    executor: str = executor_option(),
    ray_address: str = ray_address_option(),
    workers: int | None = workers_option(),
) -> None:
    """One `ipbench run` per value of a setting (and per seed), e.g. the poisoning ratio gamma;
    a row per run: A_or, A_ad, A_ud, A_pd, each attack's headline and the flag."""
    from ipbench.engine.executors import execute, failures
    from ipbench.engine.executors.outcome import outcome_record
    from ipbench.engine.sweep import plan, swept_field

    with user_errors():
        settings = parse_assignments(set_)
        requests = plan(
            scheme, dataset, preset, settings, seeds, workdir, data_root, device, attacks_
        )  # fmt: skip
        if not as_json:
            exit_on_failures(
                run_grid(requests, executor, ray_address, f"sweep of {scheme}", workers)
            )
            return
        outcomes = execute(requests, executor=executor, ray_address=ray_address, workers=workers)
        field = swept_field(settings).removeprefix(f"{scheme}.")
        runs = [{field: o.request.overrides.get(field)} | outcome_record(o) for o in outcomes]
        print_json({"workdir": workdir, "scheme": scheme, "field": field, "runs": runs,
                    "failed": failures(outcomes)})  # fmt: skip
        exit_on_failures(outcomes)


cli_read.register(app)
cli_bundles.register(app)


BUG_REPORT = (
    "ipbench hit an internal error (a bug, not a problem with your input): please report it "
    "with the command line and the traceback above to the ipbench issue tracker"
)


def main() -> None:
    """The console entry: input errors are one line and exit code 2 (also those raised
    outside a command's own handler); anything else is a bug, shown with its traceback and
    how to report it (exit code 1)."""
    import sqlite3
    import traceback

    try:
        app()
    except IpbenchError as exc:
        print_error(str(exc))
        sys.exit(2)
    except sqlite3.DatabaseError as exc:  # a store damaged after it was opened and checked
        print_error(
            f"the result store is damaged ({exc}); move it away or recover it with "
            "`sqlite3 FILE .recover`"
        )
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; finished stages are kept, rerun the command to resume")
        sys.exit(130)
    except Exception:
        traceback.print_exc()
        err.print(f"[bold red]{BUG_REPORT}[/]", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
