"""One run: resolve names, then baseline -> protect -> evaluate -> attacks, each a cached stage.

Every stage is keyed by a content hash of everything that determines it, so a repeated or
interrupted run reuses what is finished and the unprotected baseline is shared by all schemes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ipbench import __version__
from ipbench.attack import Attack, Target
from ipbench.cache import StageCache
from ipbench.capabilities import InputSpaceToken
from ipbench.config import content_hash, to_jsonable
from ipbench.context import RunContext, ThiefView
from ipbench.contract import Protected
from ipbench.datasets import Splits, load_dataset, make_splits
from ipbench.errors import IpbenchError
from ipbench.evaluate import (
    EVAL_VERSION,
    TOKEN_EXAMPLES,
    eval_users,
    evaluate,
    overhead,
    token_examples,
)
from ipbench.health import run_warnings
from ipbench.metric import At, Metric
from ipbench.models import ModelSpec, build_model
from ipbench.plugins import code_identity
from ipbench.progress import console
from ipbench.provenance import collect
from ipbench.request import (  # noqa: F401  (re-exported: the runner is where users look)
    PRESET_FIELDS,
    Resolved,
    RunRequest,
    attack_request,
    default_config,
    model_spec_for,
    resolve,
    resolve_device,
)
from ipbench.store import Store
from ipbench.tensorio import write_tensors
from ipbench.training import Trainer, to_float_images


def flatten(metrics: Mapping[str | At, float]) -> tuple[dict[str, float], dict[str, list[Any]]]:
    """A stage's results as JSON for its cache marker: values by name, and each curve point's
    parts (metric, param, x, label) by name."""
    values = {str(k): v for k, v in metrics.items()}
    points = {str(k): [k.metric, k.param, k.x, k.label] for k in metrics if isinstance(k, At)}
    return values, points


def unflatten(values: dict[str, float], points: dict[str, list[Any]]) -> dict[str | At, float]:
    """``flatten`` undone: curve points come back as ``At`` keys."""
    return {(At(*points[n]) if n in points else n): v for n, v in values.items()}


@dataclass
class Task:
    """What every stage of a run is computed from: its data, network and shared keys."""

    splits: Splits
    spec: ModelSpec
    data_key: str
    base_key: str
    base_material: dict[str, Any]
    dataset_name: str
    dataset_fingerprint: str


@dataclass
class RunOutcome:
    run_id: str
    resumed: bool
    metrics: list[dict[str, Any]]
    stages: list[dict[str, Any]]


class Runner:
    """Runs one request end to end and records it in the store."""

    def __init__(
        self, request: RunRequest, log: Callable[[str], None] | None = None,
        store: Store | None = None,
    ) -> None:  # fmt: skip
        """``store``: where rows go (default: the work directory's); a Ray worker passes a
        private one and sends its rows to the driver (ipbench.executors)."""
        self.req = request
        self.res = resolve(request)
        self.log = log or (lambda msg: console.print(msg))
        self.store = store if store is not None else Store(request.workdir)
        self.cache = StageCache(Path(request.workdir) / "artifacts")
        self.trainer = Trainer(self.res.device)

    # --- stage machinery ---------------------------------------------------------------------
    def _stage(
        self, name: str, key: str, compute: Callable[[Path], dict[str, Any]], key_material: Any,
        declared: tuple[Metric, ...] = (),
    ) -> Path:  # fmt: skip
        """Run (or reuse) one cached stage and record it with its metrics in the store, each
        described by ``declared`` (the plugin's metrics) or the shared ones."""
        self.store.begin_stage(self.run_id, name, key)
        folder_name = name.replace(":", "-")
        hit = self.cache.lookup(folder_name, key) is not None
        if not hit and self.req.require_cached and name in ("baseline", "protect"):
            self.store.finish_stage(self.run_id, name, status="failed")
            raise IpbenchError(
                f"run {self.run_id}: the cached {name} artefact (key {key}) is missing from "
                f"{self.cache.root}; rerun it with `ipbench run` before attacking"
            )
        self.log(f"[bold cyan]{name}[/] {'(cached) ' if hit else ''}key {key}")

        def timed(work: Path) -> dict[str, Any]:
            t0 = time.perf_counter()
            info = compute(work)
            values, points = flatten(info.get("metrics", {}))
            return {**info, "metrics": values, "points": points, "wall_s": time.perf_counter() - t0}

        try:
            path, hit = self.cache.compute(folder_name, key, timed, key_material)
        except BaseException:
            self.store.finish_stage(self.run_id, name, status="failed")
            raise
        info = self.cache.info(folder_name, key)
        values = unflatten(info.get("metrics", {}), info.get("points", {}))
        self.store.put_metrics(self.run_id, name, values, info.get("notes"), declared)
        self.store.finish_stage(
            self.run_id, name, status=info.get("status", "done"), cached=hit, wall_s=info.get("wall_s"),
            artifact=str(path), info={k: v for k, v in info.items() if k not in ("metrics", "points")},
        )  # fmt: skip
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
        self.log(
            f"data {ds.name}: owner {len(splits.owner)}, attacker {len(splits.attacker)}, "
            f"test {len(splits.test)} images, {ds.num_classes} classes; model {res.model}; device {res.device}"
        )
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
            download=self.req.download,
        )  # fmt: skip

    def prepare_shared(self) -> bool:
        """Compute the scheme's shared sub-stage (``shared_stage``, e.g. ActiveDaemon's token
        generator) into the cache and nothing else: a grid does this once for every run that
        shares it, before those runs start. Records no run; False when the scheme has none."""
        shared = getattr(self.res.scheme, "shared_stage", None)
        if shared is None or shared() is None:
            return False
        self.res.scheme.prepare(self._context(self._task(), None))  # type: ignore[attr-defined]
        return True

    def run(self, until: str | None = None) -> RunOutcome:
        """The whole run; ``until="baseline"`` stops after the baseline stage (the run stays
        ``running``: a grid trains a shared baseline as its own task, then runs the rest)."""
        res, req = self.res, self.req
        label = "reduced setting" if res.preset.reduced else "full recipe"
        why = ""
        if res.preset_defaulted:
            why = " (default: CUDA present)" if res.device.type == "cuda" else " (default: no CUDA)"
        self.log(f"preset [bold]{res.preset.name}[/]{why}: {res.preset.description} [{label}]")
        if tuned := type(res.scheme).preset_defaults.get(res.preset.name):
            sets = ", ".join(f"{k}={getattr(res.scheme.config, k)}" for k in tuned)
            self.log(f"{res.scheme.name} sets for {res.preset.name}: {sets}")
        task = self._task()
        spec, base_material, base_key = task.spec, task.base_material, task.base_key
        scheme = res.scheme
        # The plugin's code identity is part of its keys: edited code is recomputed, not reused.
        protect_material = {
            "scheme": scheme.name, "code": code_identity(type(scheme)), "config": scheme.config,
            "baseline": base_key, **base_material,
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
        code = {f"scheme:{scheme.name}": protect_material["code"]} | {
            f"attack:{a.name}": code_identity(type(a)) for a in res.attacks
        }
        _, resumed = self.store.start_run(
            self.run_id,
            {
                "scheme": scheme.name, "dataset": task.dataset_name, "model": res.model, "preset": res.preset.name,
                "seed": req.seed, "reduced": res.preset.reduced,
                "config": to_jsonable({**config, **self._recorded(), "request": req.stored()}),
                "provenance": {**collect(res.device), "plugin_code": code},
            },
        )  # fmt: skip
        self.log(
            f"run [bold]{self.run_id}[/]{' (resuming)' if resumed else ''}; store {self.store.path}"
        )
        try:
            self._run_stages(task, protect_key, protect_material, until)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.store.set_run_status(self.run_id, status)
            raise
        if until is None:
            self.store.set_run_status(self.run_id, "done")
        return RunOutcome(
            self.run_id, resumed, self.store.metrics(self.run_id), self.store.stages(self.run_id)
        )

    def _run_stages(
        self, task: Task, protect_key: str, protect_material: dict[str, Any], until: str | None
    ) -> None:
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
            return
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

        eval_key = content_hash("evaluate", protect_key, res.eval, a_or, EVAL_VERSION)

        def run_eval(work: Path) -> dict[str, Any]:
            found: dict[str, float | str | None] = {}
            found |= evaluate(res.scheme, protected, splits.test, a_or, res.device, seed, res.eval)
            found |= res.scheme.scheme_metrics(protected, ctx)
            x1 = to_float_images(splits.test.x[:1]).to(res.device)
            user = eval_users(seed, 1)[0]
            found.update(overhead(res.scheme, protected, baseline_copy(), x1, user, res.eval))
            if isinstance(res.scheme, InputSpaceToken):
                examples = token_examples(res.scheme, protected, splits.test.x, seed, res.device)
                write_tensors(examples, work / TOKEN_EXAMPLES)
            metrics = {k: v for k, v in found.items() if not isinstance(v, str)}
            notes = {k: v for k, v in found.items() if isinstance(v, str)}
            return {"metrics": metrics, "notes": notes}

        self._stage(
            "evaluate", eval_key, run_eval, {"protect": protect_key, "eval": res.eval},
            type(res.scheme).metrics,
        )  # fmt: skip
        found = self.cache.info("evaluate", eval_key).get("metrics", {})
        for warning in run_warnings(found):
            self.log(f"[bold yellow]warning:[/] {warning}")

        target = Target(res.scheme, protected)
        for attack in res.attacks:
            reason = attack.skip_reason(res.scheme)
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

            self._stage(f"attack:{attack.name}", key, run_attack, material, type(attack).metrics)
