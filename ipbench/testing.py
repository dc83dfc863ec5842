"""Conformance kit: the checks every scheme and attack plugin passes, for third-party authors.

One line in a plugin package's tests runs the whole contract on a small, easy task (synthetic
data, the ``tiny`` network, the ``smoke`` budget)::

    def test_my_scheme_conforms(tmp_path):
        ipbench.testing.check_scheme("myscheme", tmp_path)

    def test_my_attack_conforms(tmp_path):
        ipbench.testing.check_attack("myattack", tmp_path, scheme="mlock")

``check_scheme`` runs protect -> save -> load -> authorize -> query -> stolen -> redeploy and
checks what the evaluator and the attacks rely on: answers survive a reload, a redeployed
unmodified stolen copy answers like the original, metadata is JSON, declared capabilities
behave, and on this easy task an authorized user does better than an unauthorized one
(A_ad > A_ud) unless the scheme declares ``protects = False``. ``check_attack`` runs an attack
on such a deployment from the thief's view (the owner's data is refused) and checks its
metrics. Each failure is an ``AssertionError`` that says which property broke.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ipbench.core.authenticity import results_key
from ipbench.core.config import content_hash, override
from ipbench.core.owner import key_seed, owner_key
from ipbench.core.registry import attacks, presets, schemes
from ipbench.engine.request import model_spec_for, preset_config
from ipbench.metrics.spec import At
from ipbench.ml.datasets import load_dataset, make_splits
from ipbench.ml.models import build_model
from ipbench.ml.training import Trainer, to_float_images
from ipbench.plugin.attack import Attack, Target, redeploy, steal
from ipbench.plugin.capabilities import (
    CredentialForging,
    FingerprintAuthentication,
    InputSpaceToken,
    PassportLayers,
    WrappedDeployment,
)
from ipbench.plugin.context import RunContext, ThiefView
from ipbench.plugin.contract import Credential, Protected, Scheme
from ipbench.plugin.evaluate import ad_ud_accuracy
from ipbench.store.cache import StageCache

USER = "kituser1"  # an identity string every scheme accepts (8 ASCII characters at most)
_baselines: dict[str, nn.Module] = {}  # one trained baseline per task, shared in a process
_deployments: dict[str, Protected] = {}  # one protected deployment per scheme config and task


def task_context(
    workdir: str | Path, *, dataset: str = "synthetic", model: str = "tiny",
    preset: str = "smoke", seed: int = 0, max_train: int = 1000, max_test: int = 300,
    attacker_fraction: float = 0.2,
) -> RunContext:  # fmt: skip
    """A run context on a small task, with its unprotected baseline trained (once per process
    per task) and a stage cache under ``workdir``."""
    ds = load_dataset(dataset, download=False)
    splits = make_splits(ds, seed, attacker_fraction, max_train, max_test)
    spec = model_spec_for(model, ds)
    budget = presets.get(preset)
    trainer = Trainer("cpu")
    key = content_hash(ds.fingerprint(), spec, budget.train, seed, max_train, max_test)
    if key not in _baselines:
        torch.manual_seed(seed)
        net = build_model(spec)
        trainer.fit(net, splits.owner.x, splits.owner.y, budget.train, seed=seed, desc="baseline")
        _baselines[key] = net.eval()
    base = _baselines[key]

    def baseline() -> nn.Module:
        copy = build_model(spec)
        copy.load_state_dict(base.state_dict())
        return copy.eval()

    return RunContext(
        spec, budget, seed, torch.device("cpu"), trainer, ThiefView(splits.attacker, splits.test),
        owner_split=splits.owner, data_key=key, baseline=baseline,
        cache=StageCache(Path(workdir) / "artifacts", mac_key=results_key(owner_key(workdir))),
        key_seed=key_seed(workdir, seed),
    )  # fmt: skip


def _scheme(scheme: str | Scheme, preset: str, settings: dict[str, Any] | None) -> Scheme:
    if isinstance(scheme, Scheme):
        return scheme
    cls = schemes.get(scheme)
    return cls(override(preset_config(cls, preset, "scheme"), settings or {}, "scheme"))


def _answers(
    scheme: Scheme, p: Protected, x: torch.Tensor, cred: Credential | None
) -> torch.Tensor:
    return scheme.query(p, x.clone(), cred).float()


def check_scheme(
    scheme: str | Scheme, workdir: str | Path, settings: dict[str, Any] | None = None,
    **task: Any,
) -> dict[str, float]:  # fmt: skip
    """Run the scheme contract end to end on an easy task; returns A_ad and A_ud.

    ``scheme``: a registered name (configured with its smoke values and ``settings``) or an
    instance; ``task``: keyword arguments of ``task_context``.
    """
    ctx = task_context(workdir, **task)
    s = _scheme(scheme, ctx.preset.name, settings)
    name = s.name or type(s).__name__
    assert s.name and schemes.get(s.name) is type(s), f"{name}: not registered under its name"
    s.validate(ctx.model_spec)
    protected = s.protect(ctx)
    assert isinstance(protected, Protected), f"{name}: protect returned {type(protected)}"
    try:
        json.dumps(protected.meta)  # saved as meta.json, read back without unpickling
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{name}: Protected.meta is not JSON-serialisable ({exc})") from None
    folder = Path(workdir) / f"conformance-{name}"
    protected.save(folder)
    loaded = s.load_protected(folder)
    x = to_float_images(ctx.test.x[:64])
    cred = s.authorize(loaded, USER)
    assert isinstance(cred, Credential), f"{name}: authorize returned {type(cred)}"
    # A fresh credential per comparison: a credential may carry state (a sticker's positions
    # drawn per query), and the same user's fresh credential starts from the same state.
    before = _answers(s, protected, x, s.authorize(protected, USER))
    after = _answers(s, loaded, x, cred)
    k = ctx.model_spec.num_classes
    assert after.shape == (len(x), k), f"{name}: query gave {tuple(after.shape)}, not {(len(x), k)}"
    assert torch.allclose(before, after, atol=1e-4), f"{name}: answers change after save/load"
    copy = steal(Target(s, loaded))
    assert isinstance(copy, nn.Module), f"{name}: stolen() is not an nn.Module"
    leaked = secrets_in(copy, loaded.secrets)
    assert not leaked, f"{name}: the stolen artefact carries the owner's secrets {leaked}"
    in_meta = secrets_in_metadata((folder / "meta.json").read_text(), loaded.secrets)
    assert not in_meta, f"{name}: meta.json (copied with the model) holds the secrets {in_meta}"
    again = _answers(s, redeploy(Target(s, loaded), copy).protected, x, s.authorize(loaded, USER))
    assert torch.allclose(after, again, atol=1e-4), (
        f"{name}: redeploy(stolen copy) answers differently from the deployment it was copied from"
    )
    _check_capabilities(s, loaded, x, s.authorize(loaded, USER), ctx)
    a_ad, a_ud, _ = ad_ud_accuracy(s, loaded, ctx.test, ctx.device, ctx.seed)
    if s.protects:
        assert a_ad > a_ud, (
            f"{name}: A_ad {a_ad:.2f} <= A_ud {a_ud:.2f} on an easy task: does query receive "
            "the credential's effect (InputSpaceToken.apply, or serve using the credential)?"
        )
    return {"A_ad": a_ad, "A_ud": a_ud}


def _tensors_of(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every tensor a copied module holds: parameters, buffers (persistent or not) and tensor
    attributes of its submodules."""
    found = [*module.named_parameters(), *module.named_buffers()]
    for prefix, sub in module.named_modules():
        found += [
            (f"{prefix}.{k}" if prefix else k, v)
            for k, v in vars(sub).items()
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter)
        ]
    return found


def secrets_in(stolen: nn.Module, secrets: dict[str, torch.Tensor], min_size: int = 2) -> list[str]:
    """Names of the owner's secrets (of ``min_size`` or more values, so a coincidental scalar
    does not count) that a stolen artefact holds verbatim."""
    held = [t.detach().cpu().float() for _, t in _tensors_of(stolen)]
    return [
        key
        for key, secret in secrets.items()
        if secret.numel() >= min_size
        and any(
            t.shape == secret.shape and torch.equal(t, secret.detach().cpu().float()) for t in held
        )
    ]


def _numbers(text: str) -> list[float]:
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", text)]


def secrets_in_metadata(
    text: str, secrets: dict[str, torch.Tensor], min_size: int = 2
) -> list[str]:
    """Names of the owner's secrets (``min_size`` or more values) whose values appear, in order,
    among the numbers of a metadata text (JSON a thief copies with the model), whether written
    as a list or inside a string (``"conv #1, filter 6"`` holds ``[1, 6]``); float secrets match
    to float32 precision."""
    found = _numbers(text)
    leaked = []
    for key, secret in secrets.items():
        values = secret.detach().cpu().double().flatten().tolist()
        n = len(values)
        if n < min_size or n > len(found):
            continue
        for i in range(len(found) - n + 1):
            window = found[i : i + n]
            if all(
                abs(a - b) <= 1e-6 * max(1.0, abs(b)) for a, b in zip(window, values, strict=True)
            ):
                leaked.append(key)
                break
    return leaked


def _check_capabilities(
    s: Scheme, p: Protected, x: torch.Tensor, cred: Credential, ctx: RunContext
) -> None:
    name = s.name
    if isinstance(s, InputSpaceToken):
        sent = s.apply(cred, x)
        assert sent.shape == x.shape, f"{name}: apply changed the image shape"
        assert float(sent.min()) >= 0 and float(sent.max()) <= 1, f"{name}: apply left [0, 1]"
    if isinstance(s, CredentialForging):
        assert s.forge_kinds, f"{name}: CredentialForging with no forge_kinds"
        for kind in s.forge_kinds:  # from the thief's view: owner data is refused
            fake = s.forge_credential(p, kind, ctx.for_thief())
            assert fake is None or isinstance(fake, Credential), f"{name}: forged {kind}"
    if isinstance(s, WrappedDeployment):
        stolen = s.stolen(p)
        assert s.bare_network(stolen) is not stolen, f"{name}: bare_network did not unwrap"
    if isinstance(s, PassportLayers):
        model = s.stolen(p)
        held = s.installed_passports(p, model)
        assert held and all(isinstance(v, torch.Tensor) for v in held.values()), name
    if isinstance(s, FingerprintAuthentication):
        ok = s.authenticates(p, x)
        assert ok.dtype == torch.bool and ok.shape == (len(x),), f"{name}: authenticates"


def check_attack(
    attack: str | Attack, workdir: str | Path, scheme: str | Scheme = "none",
    settings: dict[str, Any] | None = None, scheme_settings: dict[str, Any] | None = None,
    **task: Any,
) -> dict[str, float]:  # fmt: skip
    """Run an attack on ``scheme``'s deployment of an easy task from the thief's view; checks
    that it applies, returns finite numbers and names its headline metrics."""
    ctx = task_context(workdir, **task)
    if isinstance(attack, Attack):
        a = attack
    else:
        cls = attacks.get(attack)
        a = cls(override(preset_config(cls, ctx.preset.name, "attack"), settings or {}, "attack"))
    s = _scheme(scheme, ctx.preset.name, scheme_settings)
    reason = a.skip_reason(s)
    assert reason is None, f"{a.name} does not apply to {s.name}: {reason}"
    a.validate(ctx.model_spec)
    key = content_hash(s.name, s.config, ctx.data_key)
    if key not in _deployments:  # attacks work on copies (steal): one deployment serves all
        _deployments[key] = s.protect(ctx)
    out = a.run(Target(s, _deployments[key]), ctx.for_thief())
    assert out and all(isinstance(k, str | At) for k in out), f"{a.name}: no named metrics"
    bad = {str(k): v for k, v in out.items() if not isinstance(v, float | int) or math.isinf(v)}
    assert not bad, f"{a.name}: metrics must be finite numbers; got {bad}"
    missing = [h for h in a.headline_names() if h not in out]
    assert not missing, f"{a.name}: headline metrics {missing} not returned"
    return {str(k): float(v) for k, v in out.items()}
