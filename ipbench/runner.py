"""One run: resolve names, then baseline -> protect -> evaluate -> attacks, each a cached stage.

Every stage is keyed by a content hash of everything that determines it, so a repeated or
interrupted run reuses what is finished and the unprotected baseline is shared by all schemes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ipbench import __version__
from ipbench.attack import Attack, AttackContext
from ipbench.cache import StageCache
from ipbench.config import content_hash, override, to_jsonable
from ipbench.contract import EvalContext, Protected, Scheme, Task
from ipbench.datasets import Dataset, Splits, load_dataset, make_splits, split_spec
from ipbench.errors import IpbenchError
from ipbench.evaluate import EVAL_VERSION, EvalConfig, eval_users, evaluate, overhead
from ipbench.models import ModelSpec, build_model
from ipbench.presets import Preset, TrainConfig, default_preset_name
from ipbench.progress import console
from ipbench.provenance import collect
from ipbench.registry import attacks, datasets, models, presets, schemes
from ipbench.store import Store
from ipbench.training import Trainer, to_float_images

PRESET_FIELDS = ("attacker_fraction", "max_train", "max_test")
ATTACK_PREFIX = "attack."


def is_attack_key(key: str) -> bool:
    return key.startswith(ATTACK_PREFIX)


def attack_overrides(overrides: dict[str, str]) -> dict[str, dict[str, str]]:
    """``attack.NAME.FIELD=v`` settings grouped by attack name (names checked here)."""
    out: dict[str, dict[str, str]] = {}
    for key, value in overrides.items():
        if not is_attack_key(key):
            continue
        name, dot, fld = key[len(ATTACK_PREFIX) :].rpartition(".")
        if not dot or not name or not fld:
            raise IpbenchError(f"attack settings are attack.NAME.FIELD=VALUE; got {key!r}")
        attacks.get(name)  # an unknown attack name lists the valid ones
        out.setdefault(name, {})[fld] = value
    return out


def build_attacks(names: list[str], preset: Preset, overrides: dict[str, str]) -> list[Attack]:
    """Attacks configured by paper defaults, then the preset's budget, then ``--set``.

    Settings for attacks not selected are still checked, so a typo never passes silently.
    """
    per_attack = attack_overrides(overrides)
    built = {}
    for name in dict.fromkeys([*names, *per_attack]):
        cls = attacks.get(name)
        cfg = override(cls.Config(), preset.attack_defaults.get(name, {}), f"attack {name}")
        built[name] = cls(override(cfg, per_attack.get(name, {}), f"attack {name}"))
    return [built[n] for n in names]


@dataclass
class RunRequest:
    """What the user asked for, as names and strings (straight from the CLI)."""

    scheme: str
    dataset: str | None = None
    model: str | None = None
    preset: str | None = None
    seed: int = 0
    overrides: dict[str, str] = field(default_factory=dict)
    data_root: str | None = None
    workdir: str = "ipbench-runs"
    device: str | None = None
    attacks: str = "all"
    download: bool = True
    # ``ipbench attack``: baseline and protect must come from the cache, never be retrained
    require_cached: bool = False
    expect_run: str | None = None  # ``ipbench attack``: the stored run this must rebuild

    def stored(self) -> dict[str, Any]:
        """What ``ipbench attack`` needs to rebuild this run (attack settings excluded)."""
        return {
            "scheme": self.scheme, "dataset": self.dataset, "model": self.model,
            "preset": self.preset, "seed": self.seed,
            "overrides": {k: v for k, v in self.overrides.items() if not is_attack_key(k)},
        }  # fmt: skip


@dataclass
class Resolved:
    """The request with every name looked up and every override applied."""

    scheme: Scheme
    preset: Preset
    dataset: str
    model: str
    device: torch.device
    attacks: list[Attack]
    eval: EvalConfig
    preset_defaulted: bool


@dataclass
class RunOutcome:
    run_id: str
    resumed: bool
    metrics: list[dict[str, Any]]
    stages: list[dict[str, Any]]


def resolve_device(name: str | None) -> torch.device:
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise IpbenchError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise IpbenchError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return dev


def _route_overrides(
    overrides: dict[str, str], scheme_cfg: Any, train: TrainConfig, preset: Preset, ev: EvalConfig
) -> tuple[Any, TrainConfig, Preset, EvalConfig]:
    """``--set k=v``: a scheme field first, then training, preset and evaluation fields.

    Prefixes ``scheme.``, ``train.``, ``data.`` and ``eval.`` pick one explicitly.
    """
    targets = {
        "scheme": (scheme_cfg, [f.name for f in dataclasses.fields(scheme_cfg)]),
        "train": (train, [f.name for f in dataclasses.fields(train)]),
        "data": (preset, list(PRESET_FIELDS)),
        "eval": (ev, [f.name for f in dataclasses.fields(ev)]),
    }
    buckets: dict[str, dict[str, str]] = {k: {} for k in targets}
    for key, value in overrides.items():
        prefix, dot, rest = key.partition(".")
        if dot and prefix in targets:
            if rest not in targets[prefix][1]:
                raise IpbenchError(
                    f"unknown {prefix} field {rest!r}; valid: {', '.join(targets[prefix][1])}"
                )
            buckets[prefix][rest] = value
            continue
        owner = next((t for t, (_, names) in targets.items() if key in names), None)
        if owner is None:
            valid = "; ".join(
                f"{t}: {', '.join(names) or '-'}" for t, (_, names) in targets.items()
            )
            raise IpbenchError(f"unknown setting {key!r}; valid settings ({valid})")
        buckets[owner][key] = value
    scheme_cfg = override(scheme_cfg, buckets["scheme"], "scheme")
    train = override(train, buckets["train"], "train")
    ev = override(ev, buckets["eval"], "eval")
    preset = override(preset, buckets["data"], "preset") if buckets["data"] else preset
    return scheme_cfg, train, dataclasses.replace(preset, train=train), ev


def resolve(req: RunRequest) -> Resolved:
    """Look up every name before any work starts, so bad input fails at once and clearly."""
    scheme_cls = schemes.get(req.scheme)
    device = resolve_device(req.device)
    preset_name = req.preset or default_preset_name(device)
    preset: Preset = presets.get(preset_name)
    dataset = req.dataset or preset.default_dataset
    datasets.get(split_spec(dataset)[0])
    model = req.model or preset.model_for(dataset)
    models.get(model)
    base_cfg = override(scheme_cls.Config(), preset.scheme_defaults.get(req.scheme, {}), "scheme")
    plain = {k: v for k, v in req.overrides.items() if not is_attack_key(k)}
    scheme_cfg, _, preset, ev = _route_overrides(
        plain, base_cfg, preset.train, preset, EvalConfig()
    )
    if req.attacks in ("all", ""):
        names = attacks.names()
    elif req.attacks == "none":
        names = []
    else:
        names = [a.strip() for a in req.attacks.split(",") if a.strip()]
    attack_objs = build_attacks(names, preset, req.overrides)
    return Resolved(
        scheme_cls(scheme_cfg), preset, dataset, model, device, attack_objs, ev, req.preset is None
    )


def model_spec_for(name: str, ds: Dataset) -> ModelSpec:
    c, h, w = ds.shape
    if h != w:
        raise IpbenchError(f"{ds.name}: images are {h}x{w}; ipbench models expect square images")
    return ModelSpec(name, ds.num_classes, c, h, ds.mean, ds.std)


class Runner:
    """Runs one request end to end and records it in the store."""

    def __init__(self, request: RunRequest, log: Callable[[str], None] | None = None):
        self.req = request
        self.res = resolve(request)
        self.log = log or (lambda msg: console.print(msg))
        self.store = Store(request.workdir)
        self.cache = StageCache(Path(request.workdir) / "artifacts")
        self.trainer = Trainer(self.res.device)

    # --- stage machinery ---------------------------------------------------------------------
    def _stage(
        self, name: str, key: str, compute: Callable[[Path], dict[str, Any]], key_material: Any
    ) -> Path:
        """Run (or reuse) one cached stage and record it with its metrics in the store."""
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
            return {**info, "wall_s": time.perf_counter() - t0}

        try:
            path, hit = self.cache.compute(folder_name, key, timed, key_material)
        except BaseException:
            self.store.finish_stage(self.run_id, name, status="failed")
            raise
        info = self.cache.info(folder_name, key)
        self.store.put_metrics(self.run_id, name, info.get("metrics", {}), info.get("notes"))
        self.store.finish_stage(
            self.run_id, name, status=info.get("status", "done"), cached=hit, wall_s=info.get("wall_s"),
            artifact=str(path), info={k: v for k, v in info.items() if k not in ("metrics",)},
        )  # fmt: skip
        return path

    # --- the run -----------------------------------------------------------------------------
    def run(self) -> RunOutcome:
        res, req = self.res, self.req
        label = "reduced setting" if res.preset.reduced else "full recipe"
        why = ""
        if res.preset_defaulted:
            why = " (default: CUDA present)" if res.device.type == "cuda" else " (default: no CUDA)"
        self.log(f"preset [bold]{res.preset.name}[/]{why}: {res.preset.description} [{label}]")
        ds = load_dataset(res.dataset, req.data_root, download=req.download)
        splits = make_splits(
            ds, req.seed, res.preset.attacker_fraction, res.preset.max_train, res.preset.max_test
        )
        spec = model_spec_for(res.model, ds)
        self.log(
            f"data {ds.name}: owner {len(splits.owner)}, attacker {len(splits.attacker)}, "
            f"test {len(splits.test)} images, {ds.num_classes} classes; model {res.model}; device {res.device}"
        )
        data_key = content_hash(
            ds.fingerprint(),
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
        scheme = res.scheme
        protect_material = {
            "scheme": scheme.name, "version": getattr(scheme, "version", 1), "config": scheme.config,
            "baseline": base_key, **base_material,
        }  # fmt: skip
        protect_key = content_hash("protect", protect_material)
        config = {
            "scheme": scheme.name, "scheme_config": scheme.config, "dataset": res.dataset,
            "dataset_fingerprint": ds.fingerprint(), "model": spec, "preset": res.preset.name,
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
        _, resumed = self.store.start_run(
            self.run_id,
            {
                "scheme": scheme.name, "dataset": ds.name, "model": res.model, "preset": res.preset.name,
                "seed": req.seed, "reduced": res.preset.reduced,
                "config": to_jsonable({**config, "request": req.stored()}),
                "provenance": collect(res.device),
            },
        )  # fmt: skip
        self.log(
            f"run [bold]{self.run_id}[/]{' (resuming)' if resumed else ''}; store {self.store.path}"
        )
        try:
            self._run_stages(splits, spec, base_key, protect_key, base_material, protect_material)
        except BaseException as exc:
            status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            self.store.set_run_status(self.run_id, status)
            raise
        self.store.set_run_status(self.run_id, "done")
        return RunOutcome(
            self.run_id, resumed, self.store.metrics(self.run_id), self.store.stages(self.run_id)
        )

    def _run_stages(
        self, splits: Splits, spec: ModelSpec, base_key: str, protect_key: str,
        base_material: dict[str, Any], protect_material: dict[str, Any],
    ) -> None:  # fmt: skip
        res, seed = self.res, self.req.seed
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

        base_dir = self._stage("baseline", base_key, train_baseline, base_material)
        a_or = float(self.cache.info("baseline", base_key)["metrics"]["A_or"])

        def baseline_copy() -> torch.nn.Module:
            return Protected.load(base_dir).model.to(res.device)

        task = Task(
            splits, spec, res.preset, seed, res.device, self.trainer, self.cache, baseline_copy
        )

        def protect(work: Path) -> dict[str, Any]:
            task.stage_dir = work
            protected = res.scheme.protect(task)
            protected.save(work)
            return {"metrics": {}, "scheme_meta": protected.meta}

        prot_dir = self._stage("protect", protect_key, protect, protect_material)
        protected = res.scheme.load_protected(prot_dir)
        protected.model.to(res.device)

        eval_key = content_hash("evaluate", protect_key, res.eval, a_or, EVAL_VERSION)

        def run_eval(work: Path) -> dict[str, Any]:
            ectx = EvalContext(splits, res.device, seed, self.trainer, baseline_copy)
            found = evaluate(res.scheme, protected, splits.test, a_or, res.device, seed, res.eval)
            found.update(res.scheme.scheme_metrics(protected, ectx))
            x1 = to_float_images(splits.test.x[:1]).to(res.device)
            user = eval_users(seed, 1)[0]
            found.update(overhead(res.scheme, protected, baseline_copy(), x1, user, res.eval))
            metrics = {k: v for k, v in found.items() if not isinstance(v, str)}
            notes = {k: v for k, v in found.items() if isinstance(v, str)}
            return {"metrics": metrics, "notes": notes}

        self._stage("evaluate", eval_key, run_eval, {"protect": protect_key, "eval": res.eval})

        for attack in res.attacks:
            reason = attack.skip_reason(res.scheme)
            key = content_hash("attack", attack.name, attack.config, protect_key)

            def run_attack(
                work: Path, attack: Attack = attack, reason: str | None = reason
            ) -> dict[str, Any]:
                if reason:
                    return {"status": "skipped", "notes": {"skipped": reason}}
                ctx = AttackContext(
                    res.scheme,
                    protected,
                    splits,
                    self.trainer,
                    res.preset,
                    seed,
                    res.device,
                    baseline_copy,
                    self.req.data_root,
                    self.req.download,
                )
                return {"metrics": attack.run(ctx)}

            self._stage(
                f"attack:{attack.name}",
                key,
                run_attack,
                {"attack": attack.name, "config": attack.config, "protect": protect_key},
            )


def attack_request(
    store: Store, run_ref: str, names: str, overrides: dict[str, str], workdir: str,
    data_root: str | None = None, device: str | None = None,
) -> RunRequest:  # fmt: skip
    """The request that adds attacks ``names`` to stored run ``run_ref``, reusing its stages."""
    rec = store.require_run(run_ref)
    stored = rec.config.get("request")
    if not stored:
        raise IpbenchError(
            f"run {rec.run_id} was recorded without its request; rerun it with `ipbench run`"
        )
    plain = [k for k in overrides if not is_attack_key(k)]
    if plain:
        raise IpbenchError(
            f"ipbench attack takes attack settings only (attack.NAME.FIELD=VALUE); got "
            f"{', '.join(map(repr, plain))}; other settings make a new run: use `ipbench run`"
        )
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if chosen == ["all"]:
        chosen = attacks.names()
    if not chosen:
        raise IpbenchError(f"--attack names no attack; valid attacks: {', '.join(attacks.names())}")
    for name in chosen:
        attacks.get(name)
    return RunRequest(
        **{**stored, "overrides": {**stored["overrides"], **overrides}},
        data_root=data_root, workdir=workdir, device=device, attacks=",".join(chosen),
        require_cached=True, expect_run=rec.run_id,
    )  # fmt: skip
