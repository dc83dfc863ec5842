"""One run: resolve names, then baseline -> protect -> evaluate -> attacks, each a cached stage
keyed by a content hash of everything that determines it, so a repeated or interrupted run
reuses what is finished and the unprotected baseline is shared by all schemes."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from rich.markup import escape

from ipbench.core.config import content_hash, to_jsonable
from ipbench.core.errors import IpbenchError
from ipbench.core.faults import crash_point
from ipbench.core.identity import code_identity
from ipbench.core.owner import key_digest, key_seed, record_key_seed
from ipbench.core.progress import console, make_progress
from ipbench.core.provenance import collect
from ipbench.core.tensorio import write_tensors
from ipbench.core.version import __version__
from ipbench.engine.request import (  # noqa: F401  (re-exported: the runner is where users look)
    PRESET_FIELDS,
    Resolved,
    RunRequest,
    attack_request,
    attack_stage_name,
    default_config,
    model_spec_for,
    resolve,
    resolve_device,
    task_lines,
)
from ipbench.engine.reruns import check_recompute, held_note, recompute_notes, unmet_attacks
from ipbench.metrics.health import run_warnings
from ipbench.metrics.image_quality import lpips_ready
from ipbench.metrics.spec import Metric
from ipbench.ml.datasets import load_dataset, make_splits
from ipbench.ml.models import build_model
from ipbench.ml.training import Trainer, to_float_images
from ipbench.plugin.attack import Attack, Target
from ipbench.plugin.capabilities import InputSpaceToken, SharedStage
from ipbench.plugin.context import RunContext, ThiefView
from ipbench.plugin.contract import Protected
from ipbench.plugin.evaluate import (
    EVAL_VERSION,
    eval_users,
    evaluate,
    overhead,
    token_examples,
)
from ipbench.store.bundle import TOKEN_EXAMPLES
from ipbench.store.cache import StageCache
from ipbench.store.results import Store
from ipbench.store.stage_record import RunOutcome, Task, flatten, stage_line, unflatten


class Runner:
    """Runs one request end to end and records it in the store."""

    def __init__(
        self, request: RunRequest, log: Callable[[str], None] | None = None,
        store: Store | None = None,
    ) -> None:  # fmt: skip
        """``store``: where rows go (default: the work directory's); a Ray worker passes a
        private one and sends its rows to the driver (ipbench.engine.executors)."""
        self.req = request
        self.res = resolve(request)
        self.log = log or (lambda msg: console.print(msg))
        self.workdir = Path(request.workdir)
        self.store = store if store is not None else Store(self.workdir)
        recompute = check_recompute(request.recompute, self.res, self.workdir / "artifacts")
        for note in recompute_notes(self.res, recompute):
            self.log(f"[yellow]note:[/] {note}")
        self.cache = StageCache(
            self.workdir / "artifacts", self.store, recompute, self.log, self.store.signing_key()
        )
        self.trainer = Trainer(self.res.device)
        self.failed_attacks: list[BaseException] = []

    # --- stage machinery ---------------------------------------------------------------------
    def _stage(
        self, name: str, key: str, compute: Callable[[Path], dict[str, Any]], key_material: Any,
        declared: tuple[Metric, ...] = (), folder_name: str | None = None,
    ) -> Path:  # fmt: skip
        """Run (or reuse) one cached stage and record it with its metrics in the store, each
        described by ``declared`` (the plugin's metrics) or the shared ones."""
        self.store.begin_stage(self.run_id, name, key)
        folder_name = folder_name or name.replace(":", "-")
        try:
            # ``ipbench attack`` reads baseline and protect only: wait for a process computing them
            hit = self.cache.lookup(folder_name, key, wait=self.req.require_cached) is not None
        except BaseException:
            self.store.finish_stage(self.run_id, name, status="failed")
            raise
        if not hit and self.req.require_cached and name in ("baseline", "protect"):
            self.store.finish_stage(self.run_id, name, status="failed")
            raise IpbenchError(
                f"run {self.run_id}: the cached {name} artefact (key {key}) is missing from "
                f"{self.cache.root}; rerun it with `ipbench run` before attacking"
            )

        def timed(work: Path) -> dict[str, Any]:
            t0 = time.perf_counter()
            info = compute(work)
            values, points = flatten(info.get("metrics", {}))
            return {**info, "metrics": values, "points": points, "wall_s": time.perf_counter() - t0}

        try:
            path, hit = self.cache.compute(folder_name, key, timed, key_material)
            info = self.cache.info(folder_name, key)
        except BaseException:
            self.store.finish_stage(self.run_id, name, status="failed")
            raise
        values = unflatten(info.get("metrics", {}), info.get("points", {}))
        # A stage resumed after a kill took the compute of all its attempts, not just the last.
        spent = self.cache.compute_record(folder_name, key)
        wall_s = spent.get("total_s", info.get("wall_s"))
        self.log(stage_line(name, info | {"wall_s": wall_s}, hit, declared))
        self.store.put_metrics(self.run_id, name, values, info.get("notes"), declared)
        self.store.finish_stage(
            self.run_id, name, status=info.get("status", "done"), cached=hit, wall_s=wall_s,
            artifact=path.relative_to(self.workdir).as_posix(),
            info={k: v for k, v in info.items() if k not in ("metrics", "points")} | spent,
        )  # fmt: skip
        crash_point(f"recorded:{name}")
        return path

    def _recorded(self) -> dict[str, Any]:
        """Stored with the run (not part of its id), so the leaderboard needs only the store:
        the configuration this request has without ``--set`` and the scheme's own settings
        for the preset."""
        res = self.res
        cls = type(res.scheme)
        return {
            "defaults": default_config(res.scheme.name, res.dataset, res.preset.name),
            "preset_settings": dict(cls.preset_defaults.get(res.preset.name, {})),
        }

    # --- the run -----------------------------------------------------------------------------
    def _task(self) -> Task:
        """Load the data and check every plugin's settings against it, before any training."""
        res, req = self.res, self.req
        ds = load_dataset(res.dataset, req.data_root, download=req.download)
        splits = make_splits(
            ds, req.seed, res.preset.attacker_fraction, res.preset.max_train, res.preset.max_test
        )
        spec = model_spec_for(res.model, ds)
        # Every plugin's settings against the task, before any training (baseline included).
        res.scheme.validate(spec)
        for attack in res.attacks:
            attack.validate(spec)
        # Nothing is printed before the request and its data passed every check: bad input
        # is the one line of its error.
        for line in task_lines(res, ds, splits):
            self.log(line)
        fingerprint = ds.fingerprint()
        data_key = content_hash(
            fingerprint,
            req.seed,
            res.preset.attacker_fraction,
            res.preset.max_train,
            res.preset.max_test,
        )
        # The package version is part of every key: a new release never reuses stale artefacts.
        base_material = {
            "data": data_key,
            "model": spec,
            "train": res.preset.train,
            "seed": req.seed,
            "ipbench": __version__,
        }
        base_key = content_hash("baseline", base_material)
        return Task(splits, spec, data_key, base_key, base_material, ds.name, fingerprint)

    def _context(self, task: Task, baseline: Callable[[], torch.nn.Module] | None) -> RunContext:
        res = self.res
        return RunContext(
            task.spec, res.preset, self.req.seed, res.device, self.trainer,
            ThiefView(task.splits.attacker, task.splits.test), owner_split=task.splits.owner,
            data_key=task.data_key, baseline=baseline, cache=self.cache,
            code=code_identity(type(res.scheme)), data_root=self.req.data_root,
            download=self.req.download, key_seed=key_seed(self.workdir, self.req.seed),
        )  # fmt: skip

    def prepare_shared(self) -> bool:
        """Compute the scheme's shared sub-stage (``shared_stage``, e.g. ActiveDaemon's token
        generator) into the cache and nothing else: a grid does this once for every run that
        shares it, before those runs start. Records no run; False when the scheme has none."""
        scheme = self.res.scheme
        if not isinstance(scheme, SharedStage) or scheme.shared_stage() is None:
            return False
        scheme.compute_shared(self._context(self._task(), None))
        return True

    def run(self, until: str | None = None) -> RunOutcome:
        """The whole run; ``until="baseline"`` stops after the baseline stage (the run stays
        ``running``: a grid trains a shared baseline as its own task, then runs the rest)."""
        res, req = self.res, self.req
        task = self._task()  # checks every plugin's settings, then says what runs
        spec, base_material, base_key = task.spec, task.base_material, task.base_key
        scheme = res.scheme
        # Secrets come from the store's key seed, not the published run seed (ipbench.core.owner);
        # its one-way digest keys the protected model, since other secrets make another model.
        self.key_seed = key_seed(self.req.workdir, req.seed)
        # The plugin's code identity is part of its keys: edited code is recomputed, not reused.
        protect_material = {
            "scheme": scheme.name, "code": code_identity(type(scheme)), "config": scheme.config,
            "baseline": base_key, "key": key_digest(self.key_seed), **base_material,
        }  # fmt: skip
        protect_key = content_hash("protect", protect_material)
        config = {
            "scheme": scheme.name, "scheme_config": scheme.config, "dataset": res.dataset,
            "dataset_fingerprint": task.dataset_fingerprint, "model": spec, "preset": res.preset.name,
            "train": res.preset.train, "data": {f: getattr(res.preset, f) for f in PRESET_FIELDS},
            "eval": res.eval, "seed": req.seed,
        }  # fmt: skip
        # The attack list is not part of the run id: attacks only add stages, so `--attacks`
        # and a later `ipbench attack` extend the same run; each attack stage is keyed by its
        # own config.
        self.run_id = content_hash("run", config, length=12)
        if req.expect_run and self.run_id != req.expect_run:
            raise IpbenchError(
                f"run {req.expect_run} does not rebuild from its stored request (got run "
                f"{self.run_id}; ipbench {__version__} or the data changed); rerun it with `ipbench run`"
            )
        held = unmet_attacks(req, res, self.store.get_run(self.run_id, exact=True))
        if held:  # --attacks all never silently adds an attack to an old run
            res.attacks = [a for a in res.attacks if a not in held]
            self.log(held_note(self.run_id, held))
        code = {f"scheme:{scheme.name}": protect_material["code"]} | {
            f"attack:{a.name}": code_identity(type(a)) for a in res.attacks
        }
        record, resumed = self.store.start_run(
            self.run_id,
            {
                "scheme": scheme.name, "dataset": task.dataset_name, "model": res.model, "preset": res.preset.name,
                "seed": req.seed, "reduced": res.preset.reduced,
                "config": to_jsonable({**config, **self._recorded(), "request": req.stored()}),
                "provenance": {**collect(res.device), "plugin_code": code},
            },
        )  # fmt: skip
        self.log(
            f"run [bold]{self.run_id}[/]{' (resuming)' if resumed else ''}; store "
            f"{escape(str(self.store.path))}"
        )
        record_key_seed(self.req.workdir, self.run_id, self.key_seed)
        try:
            found = self._run_stages(task, protect_key, protect_material, until)
        except BaseException as exc:
            # A run finished before keeps its recorded numbers and its status; only this
            # attempt failed (e.g. an artefact found damaged), and the error says so.
            if record.status != "done":
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                self.store.set_run_status(self.run_id, status)
            raise
        if until is None and found is not None:
            # The run is its baseline, protection and evaluation; each attack is recorded on its
            # own stage, so an attack that fails never turns a finished run into a failed one.
            target, ctx = found
            self.store.set_run_status(self.run_id, "done")
            self._run_attacks(target, ctx, protect_key)
            if self.failed_attacks:
                raise self.failed_attacks[0]
        return RunOutcome(
            self.run_id, resumed, self.store.metrics(self.run_id), self.store.stages(self.run_id)
        )

    def _run_stages(
        self, task: Task, protect_key: str, protect_material: dict[str, Any], until: str | None
    ) -> tuple[Target, RunContext] | None:
        """Baseline, protection and evaluation: the run itself (only the baseline when
        ``until`` is "baseline"; None then)."""
        res, seed = self.res, self.req.seed
        splits, spec, base_key = task.splits, task.spec, task.base_key
        train_cfg = res.preset.train

        def train_baseline(work: Path) -> dict[str, Any]:
            torch.manual_seed(seed)
            model = build_model(spec)
            result = self.trainer.fit(
                model,
                splits.owner.x,
                splits.owner.y,
                train_cfg,
                seed=seed,
                checkpoint_dir=work,
                desc="baseline",
            )
            Protected("none", model, spec, meta={"train": dataclasses.asdict(result)}).save(work)
            a_or = self.trainer.accuracy(
                model, splits.test.x, splits.test.y, train_cfg.eval_batch_size
            )
            return {"metrics": {"A_or": a_or}, "train": dataclasses.asdict(result)}

        base_dir = self._stage("baseline", base_key, train_baseline, task.base_material)
        if until == "baseline":
            return None
        a_or = float(self.cache.info("baseline", base_key)["metrics"]["A_or"])

        def baseline_copy() -> torch.nn.Module:
            return Protected.load(base_dir).model.to(res.device)

        ctx = self._context(task, baseline_copy)

        def protect(work: Path) -> dict[str, Any]:
            protected = res.scheme.protect(dataclasses.replace(ctx, stage_dir=work))
            protected.save(work)
            return {"metrics": {}, "scheme_meta": protected.meta}

        prot_dir = self._stage("protect", protect_key, protect, protect_material)
        protected = res.scheme.load_protected(prot_dir)
        protected.model.to(res.device)

        # whether LPIPS can be computed is part of the key: installing its weights later
        # recomputes the evaluations that recorded it as missing
        eval_key = content_hash(
            "evaluate", protect_key, res.eval, a_or, EVAL_VERSION, {"lpips": lpips_ready()}
        )

        def run_eval(work: Path) -> dict[str, Any]:
            found: dict[str, float | str | None] = {}
            token = isinstance(res.scheme, InputSpaceToken)
            parts = ["accuracy", "scheme metrics", "overhead", *(["token examples"] * token)]
            with make_progress() as bar:  # the parts, so a long evaluation shows where it is
                task = bar.add_task("evaluate", total=len(parts), info=parts[0])

                def done(i: int) -> None:
                    bar.update(task, completed=i + 1, info=([*parts, ""])[i + 1])

                found |= evaluate(
                    res.scheme, protected, splits.test, a_or, res.device, seed, res.eval
                )
                done(0)
                found |= res.scheme.scheme_metrics(protected, ctx)
                done(1)
                x1 = to_float_images(splits.test.x[:1]).to(res.device)
                user = eval_users(seed, 1)[0]
                found.update(overhead(res.scheme, protected, baseline_copy(), x1, user, res.eval))
                done(2)
                if token:
                    examples = token_examples(
                        res.scheme, protected, splits.test.x, seed, res.device
                    )
                    write_tensors(examples, work / TOKEN_EXAMPLES)
                    done(3)
            metrics = {k: v for k, v in found.items() if not isinstance(v, str)}
            notes = {k: v for k, v in found.items() if isinstance(v, str)}
            return {"metrics": metrics, "notes": notes}

        self._stage(
            "evaluate", eval_key, run_eval, {"protect": protect_key, "eval": res.eval},
            type(res.scheme).metrics,
        )  # fmt: skip
        found = self.cache.info("evaluate", eval_key).get("metrics", {})
        # ``none`` is the unprotected reference: that it does not lock is its job
        for warning in run_warnings(found) if res.scheme.protects else []:
            self.log(f"[bold yellow]warning:[/] {warning}")

        return Target(res.scheme, protected), ctx

    def _run_attacks(self, target: Target, ctx: RunContext, protect_key: str) -> None:
        """Each attack configuration as its own stage (``attack_stage_name``); a failure is
        recorded on that stage and the next attack runs; the first failure is raised after."""
        for attack in self.res.attacks:
            reason = attack.skip_reason(self.res.scheme)
            material = {
                "attack": attack.name, "code": code_identity(type(attack)),
                "config": attack.config, "protect": protect_key,
            }  # fmt: skip
            key = content_hash("attack", material)

            def run_attack(
                work: Path, attack: Attack = attack, reason: str | None = reason
            ) -> dict[str, Any]:
                if reason:
                    return {"status": "skipped", "notes": {"skipped": reason}}
                thief = dataclasses.replace(ctx.for_thief(), code=code_identity(type(attack)))
                return {"metrics": attack.run(target, thief)}

            name = attack_stage_name(attack.name, attack.config, self.res.preset.name)
            try:
                self._stage(
                    name, key, run_attack, material, type(attack).metrics,
                    folder_name=f"attack-{attack.name}",
                )  # fmt: skip
            except Exception as exc:
                self.store.finish_stage(
                    self.run_id,
                    name,
                    status="failed",
                    info={"error": f"{type(exc).__name__}: {exc}"},
                )
                self.log(f"[bold red]{escape(name)} failed:[/] {escape(str(exc))}")
                self.failed_attacks.append(exc)
