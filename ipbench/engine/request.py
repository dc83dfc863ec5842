"""What the user asked for, resolved: names looked up, presets and ``--set`` overrides applied.

Kept apart from the runner so the CLI, sweeps and the leaderboard can resolve a request (and
check it) without running anything.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from rich.markup import escape

from ipbench.core.config import override, to_jsonable
from ipbench.core.errors import IpbenchError
from ipbench.core.registry import attacks, datasets, models, presets, schemes
from ipbench.ml.datasets import Dataset, Splits, split_spec
from ipbench.ml.models import ModelSpec, model_factory
from ipbench.ml.presets import Preset, TrainConfig, default_preset_name
from ipbench.plugin.attack import Attack
from ipbench.plugin.contract import Scheme
from ipbench.plugin.evaluate import EvalConfig
from ipbench.store.results import Store

PRESET_FIELDS = ("attacker_fraction", "max_train", "max_test")
ATTACK_PREFIX = "attack."
ROUTES = ("scheme", "train", "data", "eval", "attack")  # --set prefixes that are not schemes


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


def scheme_settings(
    overrides: dict[str, str], scheme: str, grid: tuple[str, ...] | None = None
) -> dict[str, str]:
    """The settings of ``scheme``'s runs in a grid of schemes ``grid``: ``SCHEME.FIELD=V``
    is ``FIELD=V`` for that scheme's runs only (winning over a ``FIELD`` given to all) and
    dropped for the others; a prefix naming a scheme outside the grid is an error."""
    grid = grid or (scheme,)
    shared, mine = {}, {}
    for key, value in overrides.items():
        prefix, dot, rest = key.partition(".")
        if not dot or prefix in ROUTES or prefix not in schemes:
            shared[key] = value
        elif prefix not in grid:
            raise IpbenchError(
                f"--set {key}={value} is for scheme {prefix}, which is not run here (schemes: "
                f"{', '.join(grid)}); add it to --scheme or drop the setting"
            )
        elif prefix == scheme:
            mine[rest] = value
    return {**{k: v for k, v in shared.items() if k not in mine}, **mine}


def preset_config(cls: type[Scheme] | type[Attack], preset: str, what: str) -> Any:
    """A plugin's config: the paper's defaults, then its own values for ``preset``."""
    return override(cls.Config(), cls.preset_defaults.get(preset, {}), what)


def _setting_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(_setting_text(v) for v in value)
    return "none" if value is None else str(value)


def attack_stage_name(name: str, config: Any, preset: str) -> str:
    """The stage an attack configuration is stored under: ``attack:NAME`` for the settings
    ``ipbench run`` uses on ``preset`` (the paper's defaults with the preset's own values),
    ``attack:NAME(field=value; ...)`` for any other, naming the fields that differ. Each
    configuration is its own stage row and its own leaderboard variant."""
    if name not in attacks:
        return f"attack:{name}"
    default = to_jsonable(preset_config(attacks.get(name), preset, f"attack {name}"))
    mine = to_jsonable(config)
    diff = {k: v for k, v in sorted(mine.items()) if k in default and default[k] != v}
    if not diff:
        return f"attack:{name}"
    return f"attack:{name}({'; '.join(f'{k}={_setting_text(v)}' for k, v in diff.items())})"


def attack_of_stage(stage: str) -> str:
    """``attack:NAME(settings)`` -> ``attack:NAME``: the attack a (variant) stage ran."""
    return stage.split("(", 1)[0]


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
    # stages to recompute although cached (their folders are removed first): baseline,
    # protect, evaluate, attack:NAME, attacks (all of this run's), or a sub-stage's folder name
    recompute: tuple[str, ...] = ()
    # ``--attacks all`` on a stored run: also run attacks installed since it was made (without
    # this they are named and left out, so a new plugin never silently joins old runs)
    new_attacks: bool = False

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


SEED_LIMIT = (
    2**32
)  # seeds are combined arithmetically into generator seeds; this keeps them in range


def check_seed(seed: int) -> int:
    """A run seed: an integer in 0 .. 2**32 - 1."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise IpbenchError(
            f"--seed {seed!r} is invalid; valid: an integer from 0 to {SEED_LIMIT - 1}"
        )
    return seed


def resolve_device(name: str | None) -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` with N a GPU this machine has (``mps`` where
    PyTorch has it); anything else (``meta``, ``cpu:99``) is an error naming the valid ones."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    valid = ["auto", "cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(n_gpu)] if n_gpu else [])
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        valid.append("mps")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        dev = None
    if dev is not None and dev.type == "cuda" and not n_gpu:
        raise IpbenchError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    canonical = (
        None if dev is None else (dev.type if dev.index is None else f"{dev.type}:{dev.index}")
    )
    if canonical not in valid:
        raise IpbenchError(f"unknown device {name!r}; valid: {', '.join(valid)}")
    return dev  # type: ignore[return-value]


def _check_name(value: str | None, option: str, choices: list[str]) -> None:
    """An option given as an empty string is an error, never a silent default."""
    if value is not None and not value.strip():
        raise IpbenchError(f"{option} {value!r} is empty; valid: {', '.join(choices)}")


def attack_names(spec: str) -> list[str]:
    """``--attacks``: ``all``, ``none`` or comma-separated registered names, each once."""
    if spec == "all":
        return attacks.names()
    if spec == "none":
        return []
    names = [a.strip() for a in spec.split(",")]
    valid = f"valid: all, none, or comma-separated names of {', '.join(attacks.names())}"
    if not spec.strip() or any(not n for n in names):
        raise IpbenchError(f"--attacks {spec!r} names an empty attack; {valid}")
    for name in names:
        attacks.get(name)
    if len(set(names)) < len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise IpbenchError(f"--attacks {spec!r} names {', '.join(twice)} twice; name each once")
    return names


def _owner(key: str, targets: dict[str, tuple[Any, list[str]]], scheme: str) -> str:
    """The one of ``targets`` that has a field ``key`` (given without a prefix)."""
    owners = [t for t, (_, names) in targets.items() if key in names]
    if not owners:
        valid = "; ".join(
            f"{t}{f' {scheme}' if t == 'scheme' else ''}: {', '.join(names) or '(no settings)'}"
            for t, (_, names) in targets.items()
        )  # fmt: skip
        raise IpbenchError(
            f"unknown setting {key!r}{f' for scheme {scheme}' if scheme else ''}; valid "
            f"settings ({valid}); SCHEME.FIELD=VALUE sets a field for one scheme's runs"
        )
    if len(owners) > 1:
        both = " and ".join(f"{t}.{key}" for t in owners)
        raise IpbenchError(f"setting {key!r} is ambiguous: it is {both}; add the prefix")
    return owners[0]


def _route_overrides(
    overrides: dict[str, str], scheme_cfg: Any, train: TrainConfig, preset: Preset, ev: EvalConfig,
    scheme: str = "",
) -> tuple[Any, TrainConfig, Preset, EvalConfig]:  # fmt: skip
    """``--set k=v`` to the scheme, training, data or evaluation field named ``k``.

    Prefixes ``scheme.``, ``train.``, ``data.`` and ``eval.`` pick one explicitly; an
    unprefixed name that two of them own is an error naming both, never a silent choice. An
    unknown name is an error naming ``scheme``, the scheme whose runs lack it.
    """
    targets = {
        "scheme": (scheme_cfg, [f.name for f in dataclasses.fields(scheme_cfg)]),
        "train": (train, [f.name for f in dataclasses.fields(train)]),
        "data": (preset, list(PRESET_FIELDS)),
        "eval": (ev, [f.name for f in dataclasses.fields(ev)]),
    }
    buckets: dict[str, dict[str, str]] = {k: {} for k in targets}
    spelled: dict[tuple[str, str], str] = {}  # (target, field) -> the key that set it
    for key, value in overrides.items():
        prefix, dot, rest = key.partition(".")
        if dot and prefix in targets:
            if rest not in targets[prefix][1]:
                whose = f"{prefix} {scheme}" if prefix == "scheme" and scheme else prefix
                raise IpbenchError(
                    f"unknown {whose} field {rest!r}; valid: "
                    f"{', '.join(targets[prefix][1]) or '(it has no settings)'}"
                )
            target, name = prefix, rest
        else:
            target, name = _owner(key, targets, scheme), key
        if first := spelled.get((target, name)):  # epochs and train.epochs: never the last
            raise IpbenchError(
                f"setting {target}.{name} is given twice ({first}={overrides[first]} and "
                f"{key}={value}); give each setting once"
            )
        spelled[target, name] = key
        buckets[target][name] = value
    scheme_cfg = override(scheme_cfg, buckets["scheme"], "scheme")
    train = override(train, buckets["train"], "train")
    ev = override(ev, buckets["eval"], "eval")
    preset = override(preset, buckets["data"], "preset") if buckets["data"] else preset
    return scheme_cfg, train, dataclasses.replace(preset, train=train), ev


def resolve(req: RunRequest) -> Resolved:
    """Look up every name before any work starts, so bad input fails at once and clearly."""
    _check_name(req.scheme, "--scheme", schemes.names())
    scheme_cls = schemes.get(req.scheme)
    check_seed(req.seed)
    device = resolve_device(req.device)
    _check_name(req.preset, "--preset", presets.names())
    preset_name = req.preset or default_preset_name(device)
    preset: Preset = presets.get(preset_name)
    _check_name(req.dataset, "--dataset", datasets.names())
    dataset = req.dataset or preset.default_dataset
    datasets.get(split_spec(dataset)[0])
    _check_name(req.model, "--model", [*models.names(), "timm:NAME"])
    model = req.model or preset.model_for(dataset)
    model_factory(model)
    base_cfg = preset_config(scheme_cls, preset.name, "scheme")
    overrides = scheme_settings(req.overrides, req.scheme)
    plain = {k: v for k, v in overrides.items() if not is_attack_key(k)}
    scheme_cfg, _, preset, ev = _route_overrides(
        plain, base_cfg, preset.train, preset, EvalConfig(), req.scheme
    )
    names = attack_names(req.attacks)
    attack_objs = build_attacks(names, preset, overrides)
    return Resolved(
        scheme_cls(scheme_cfg), preset, dataset, model, device, attack_objs, ev, req.preset is None
    )


CORE_STAGES = ("baseline", "protect", "evaluate")


def task_lines(res: Resolved, ds: Dataset, splits: Splits) -> list[str]:
    """What a run is about to do, as the lines it prints first (rich markup; user text, i.e.
    names, paths and values, escaped)."""
    label = "reduced setting" if res.preset.reduced else "full recipe"
    why = ""
    if res.preset_defaulted:
        why = " (default: CUDA present)" if res.device.type == "cuda" else " (default: no CUDA)"
    lines = [f"preset [bold]{res.preset.name}[/]{why}: {res.preset.description} \\[{label}]"]
    if tuned := type(res.scheme).preset_defaults.get(res.preset.name):
        sets = ", ".join(f"{k}={getattr(res.scheme.config, k)}" for k in tuned)
        lines.append(f"{res.scheme.name} sets for {res.preset.name}: {escape(sets)}")
    lines.append(
        f"data {escape(ds.name)}: owner {len(splits.owner)}, attacker {len(splits.attacker)}, "
        f"test {len(splits.test)} images, {ds.num_classes} classes; model {escape(res.model)}; "
        f"device {res.device}"
    )
    return lines


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
    chosen = attack_names(names.strip())
    if not chosen:
        raise IpbenchError(f"--attack names no attack; valid attacks: {', '.join(attacks.names())}")
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
