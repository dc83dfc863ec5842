"""``ipbench export`` and ``ipbench import``: the rows behind a board, as a results bundle
(``ipbench.store.bundle``), so a board can be checked and extended on another machine."""

from __future__ import annotations

import typer

from ipbench.cli.common import WORKDIR_HELP, out, user_errors


def export(
    out_file: str = typer.Option(..., "--out", "-o", help="bundle file to write (.jsonl)"),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    dataset: str = typer.Option(None, "--dataset", "-d", help="only this dataset's runs"),
    preset: str = typer.Option(None, "--preset", "-p", help="only this preset's runs"),
) -> None:
    """Write the finished runs (rows, metrics, digests, token examples; no weights, no secrets)
    to a bundle that `ipbench import` and `ipbench leaderboard --from` read."""
    from ipbench.api import open_store
    from ipbench.store.bundle import export_bundle

    with user_errors():
        store = open_store(workdir)
        try:
            n = export_bundle(store, out_file, dataset, preset)
        finally:
            store.close()
        out().print(f"wrote {n} run(s) to {out_file}")


def import_(
    bundle: str = typer.Argument(..., help="a bundle written by `ipbench export`"),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    allow_mixed: bool = typer.Option(
        False, "--allow-mixed", help="import runs whose code or preset differs, labelled"
    ),
) -> None:
    """Add a bundle's runs to a store (made if new), beside its own: `ipbench leaderboard`
    then shows both. Runs that would mix silently with the store's are refused."""
    from ipbench.store.bundle import import_bundle
    from ipbench.store.results import Store

    with user_errors():
        store = Store(workdir)
        try:
            ids = import_bundle(store, bundle, allow_mixed)
        finally:
            store.close()
        out().print(f"imported {len(ids)} run(s) from {bundle} into {workdir}")


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command("import")(import_)
