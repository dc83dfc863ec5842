"""What the user asked for, resolved: names looked up, presets and ``--set`` overrides applied.

Kept apart from the runner so the CLI, sweeps and the leaderboard can resolve a request (and
check it) without running anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from ipbench.attack import Attack
from ipbench.config import override, to_jsonable
from ipbench.contract import Scheme
from ipbench.datasets import Dataset, split_spec
from ipbench.errors import IpbenchError
from ipbench.evaluate import EvalConfig
from ipbench.models import ModelSpec, model_factory
from ipbench.presets import Preset, TrainConfig, default_preset_name
from ipbench.registry import attacks, datasets, presets, schemes
from ipbench.store import Store

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


def preset_config(cls: type[Scheme] | type[Attack], preset: str, what: str) -> Any:
    """A plugin's config: the paper's defaults, then its own values for ``preset``."""
    return override(cls.Config(), cls.preset_defaults.get(preset, {}), what)


def build_attacks(names: list[str], preset: Preset, overrides: dict[str, str]) -> list[Attack]:
    """Attacks configured by paper defaults, then their own values for the preset, then ``--set``.

    Settings for attacks not selected are still checked, so a typo never passes silently.
    """
    per_attack = attack_overrides(overrides)
    built = {}
    for name in dict.fromkeys([*names, *per_attack]):
        cls = attacks.get(name)
        cfg = preset_config(cls, preset.name, f"attack {name}")
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
    """``--set k=v`` to the scheme, training, data or evaluation field named ``k``.

    Prefixes ``scheme.``, ``train.``, ``data.`` and ``eval.`` pick one explicitly; an
    unprefixed name that two of them own is an error naming both, never a silent choice.
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
        owners = [t for t, (_, names) in targets.items() if key in names]
        if not owners:
            valid = "; ".join(
                f"{t}: {', '.join(names) or '-'}" for t, (_, names) in targets.items()
            )
            raise IpbenchError(f"unknown setting {key!r}; valid settings ({valid})")
        if len(owners) > 1:
            both = " and ".join(f"{t}.{key}" for t in owners)
            raise IpbenchError(f"setting {key!r} is ambiguous: it is {both}; add the prefix")
        buckets[owners[0]][key] = value
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
    model_factory(model)
    base_cfg = preset_config(scheme_cls, preset.name, "scheme")
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


def default_config(scheme: str, dataset: str, preset: str) -> dict[str, Any] | None:
    """The configuration ``ipbench run`` uses without ``--set``, or None when unknown (a scheme
    or preset no longer registered): such runs count as the default configuration.

    Under ``"legacy"``: what a run stored before a field existed did: the config classes' own
    defaults (fields are added with a backward-compatible default), even where the preset now
    sets another value, or the class's ``LEGACY`` value where a scheme defaults to new behaviour.
    """
    try:
        req = RunRequest(
            scheme=scheme, dataset=dataset, preset=preset, device="cpu", attacks="none"
        )
        res = resolve(req)
    except IpbenchError:
        return None
    cfg_cls = type(res.scheme.config)
    return {
        "scheme_config": to_jsonable(res.scheme.config),
        "train": to_jsonable(res.preset.train),
        "data": {f: getattr(res.preset, f) for f in PRESET_FIELDS},
        "eval": to_jsonable(res.eval),
        "legacy": {
            "scheme_config": {**to_jsonable(cfg_cls()), **getattr(cfg_cls, "LEGACY", {})},
            "train": to_jsonable(type(res.preset.train)()),
            "eval": to_jsonable(type(res.eval)()),
        },
    }
