"""Passport, ChaoW and AdvParams on the smoke task: the right credential restores the unprotected
accuracy, a missing or wrong one falls to near chance; plus the exactness of each mechanism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ipbench.core.errors import IpbenchError
from ipbench.core.registry import schemes
from ipbench.core.tensorio import read_tensors
from ipbench.engine.runner import Runner, RunRequest
from ipbench.ml.models import ModelSpec, build_model
from ipbench.schemes import _passport_layers as pl
from ipbench.schemes.advparams import AdvParamsConfig, encrypt, write_values
from ipbench.schemes.chaow import chaotic_permutation, logistic_orbit, permute, unpermute

CHANCE_PLUS = 25.0  # 10 classes: chance is 10%; a working model scores > 90 on the smoke task
SPEC = ModelSpec("tiny", 10, 3, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Runs on the smoke preset sharing one workdir, so the baseline is trained once."""
    workdir = tmp_path_factory.mktemp("modelside")
    done: dict[str, tuple[dict[str, float], Path]] = {}

    def run(scheme: str) -> tuple[dict[str, float], Path]:
        if scheme not in done:
            req = RunRequest(
                scheme=scheme, preset="smoke", workdir=str(workdir), device="cpu", attacks="none"
            )
            out = Runner(req, log=lambda _m: None).run()
            values = {m["name"]: m["value"] for m in out.metrics if m["stage"] == "evaluate"}
            folder = Path(next(s["artifact"] for s in out.stages if s["name"] == "protect"))
            done[scheme] = (values, folder)
        return done[scheme]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["chaow", "advparams"])
def test_key_restores_the_exact_model_and_its_absence_breaks_it(smoke, scheme):
    m, _ = smoke(scheme)
    assert m["A_or"] > 80  # the smoke task is learnt
    assert m["A_ad"] == m["A_or"] and m["A_od"] == 0.0  # bit-exact decryption
    assert m["A_ud"] < CHANCE_PLUS and m["A_td"] < CHANCE_PLUS
    assert m["flops"] == m["flops_base"] and m["params"] == m["params_base"]  # no overhead


@pytest.mark.slow
def test_chaow_is_sensitive_to_the_key(smoke):
    m, _ = smoke("chaow")
    assert m["A_td_near_key"] < CHANCE_PLUS  # x0 off by 1e-12 is as wrong as a random key
    assert m["permuted_pct"] > 90  # default: every conv and linear weight


@pytest.mark.slow
def test_advparams_touches_a_handful_of_weights(smoke):
    m, folder = smoke("advparams")
    assert 1 <= m["params_changed"] <= AdvParamsConfig().max_params
    assert m["params_changed_pct"] < 0.2
    encrypted = read_tensors(folder / "model.safetensors")
    secrets = read_tensors(folder / "owner" / "secrets.safetensors")
    layer, index = secrets["layer"], secrets["index"]
    names = json.loads((folder / "meta.json").read_text())["meta"]["layers"]
    shipped = torch.stack(
        [encrypted[names[i]].flatten()[j] for i, j in zip(layer, index, strict=True)]
    )
    assert torch.equal(shipped - secrets["original"], secrets["delta"])  # the key is not shipped


@pytest.mark.slow
def test_passport_v1_needs_the_passport_and_carries_the_signature(smoke):
    m, folder = smoke("passport")
    assert m["A_ad"] > m["A_or"] - 10
    assert m["A_ud"] < CHANCE_PLUS and m["A_td"] < CHANCE_PLUS
    assert m["signature_detection"] == 100.0
    assert m["flops"] > m["flops_base"]  # the passport convolutions cost FLOPs (Table X)
    assert m["params_with_passport"] > m["params_base"]
    weights = read_tensors(folder / "model.safetensors")
    assert not any("passport" in k for k in weights)  # the stolen artefact has no passport


@pytest.mark.slow
def test_passport_reload_and_ownership_of_an_unrelated_model(smoke):
    smoke("passport")
    scheme = schemes.get("passport")()
    _, folder = smoke("passport")
    prot = scheme.load_protected(folder)
    x = torch.rand(8, 3, 32, 32)
    cred = scheme.authorize(prot, "alice")
    a, b = scheme.query(prot, x, cred), scheme.query(prot, x, cred)
    assert torch.equal(a, b) and not torch.equal(a, scheme.query(prot, x))
    assert scheme.verify_ownership(prot, prot.model)["signature_detection"] == 100.0
    torch.manual_seed(123)
    other, _ = pl.build_passport_model(prot.model_spec)
    assert scheme.verify_ownership(prot, other)["signature_detection"] < 80  # ~50% by chance


def test_chaotic_permutation_is_a_bit_exact_bijection():
    w = torch.randn(7, 5, 3, 3)
    perm = chaotic_permutation(3.995, 0.3141, w.numel(), 1000)
    assert torch.equal(torch.sort(perm).values, torch.arange(w.numel()))
    enc = permute(w, perm)
    assert not torch.equal(enc, w) and torch.equal(unpermute(enc, perm), w)
    orbit = logistic_orbit(3.995, 0.3141, 10_000, 1000)
    assert len(torch.unique(orbit)) == 10_000  # no collapse to a periodic orbit
    near = chaotic_permutation(3.995, 0.3141 + 1e-12, w.numel(), 1000)
    assert (near == perm).float().mean() < 0.05


def test_advparams_decryption_writes_back_the_exact_weights():
    torch.manual_seed(0)
    model = build_model(SPEC).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
    layers = [n for n, _ in model.named_parameters() if n.endswith("weight") and _.ndim > 1]
    cfg = AdvParamsConfig(max_params=3, steps_per_param=2, target_accuracy=0.0)
    key = encrypt(model, layers, x, y, cfg)
    assert len(key["layer"]) == 3 and key["delta"].abs().min() > 0
    assert key["trace"][-1] <= key["trace"][0]
    write_values(model, layers, key)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("scheme", "settings", "message"),
    [
        ("chaow", {"r_low": "3.0"}, "3.5699 < r_low < r_high <= 4"),
        ("advparams", {"step_size": "0"}, "step_size=0.0 is invalid; valid: a finite number > 0"),
        (
            "passport",
            {"passport_images": "0"},
            "passport_images=0 is invalid; valid: an integer >= 1",
        ),
    ],
)
def test_bad_settings_are_one_clear_error(tmp_path, scheme, settings, message):
    req = RunRequest(scheme=scheme, preset="smoke", workdir=str(tmp_path), device="cpu",
                     overrides=settings)  # fmt: skip
    with pytest.raises(IpbenchError, match=message.replace("(", r"\(")):
        Runner(req, log=lambda _m: None).run()


def test_unknown_layer_names_list_the_valid_ones():
    from ipbench.schemes.advparams import candidate_layers
    from ipbench.schemes.chaow import select_layers

    model = build_model(SPEC)
    with pytest.raises(
        IpbenchError, match=r"ChaoW layers '1\.99' are not conv/linear modules; valid: all, 1\.0"
    ):
        select_layers(model, "1.0,1.99")
    with pytest.raises(IpbenchError, match=r"AdvParams layers '1\.1' are not conv/linear"):
        candidate_layers(model, "1.1")
    assert select_layers(model, "1.17") == ["1.17.weight"]


def test_advparams_encrypts_whitenet_without_its_frozen_whitening_stem():
    # whitenet's stem is fixed from data (requires_grad False): encrypting on whitenet crashed
    # in autograd on CIFAR-10 quick, and a key there would be a weight no fine-tune can move
    from ipbench.schemes.advparams import candidate_layers

    torch.manual_seed(0)
    model = build_model(ModelSpec("whitenet", 10, 3, 32, (0.5,) * 3, (0.25,) * 3)).eval()
    params = dict(model.named_parameters())
    frozen = [n for n, p in params.items() if n.endswith("weight") and p.ndim > 1
              and not p.requires_grad]  # fmt: skip
    assert frozen  # the stem
    layers = candidate_layers(model, "all")
    assert layers and not set(frozen) & set(layers)
    assert all(params[n].requires_grad for n in layers)
    x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
    key = encrypt(model, layers, x, y, AdvParamsConfig(max_params=2, steps_per_param=1))
    assert len(key["layer"]) == 2
    with pytest.raises(IpbenchError, match=r"names frozen weights .*valid \(trainable\): all"):
        candidate_layers(model, frozen[0].removesuffix(".weight"))


def test_passport_placement_needs_a_supported_model():
    with pytest.raises(IpbenchError, match="placed for models fastnet, whitenet, tiny, resnet18"):
        pl.build_passport_model(ModelSpec("lenet5", 10, 1, 28, (0.5,), (0.5,)))


def test_passport_sites_follow_the_paper():
    spec = ModelSpec("resnet18", 10, 3, 32, (0.5,) * 3, (0.25,) * 3)
    model, sites = pl.build_passport_model(spec)
    assert sites == [
        "1.layer4.0.conv1", "1.layer4.0.conv2", "1.layer4.0.downsample.0",
        "1.layer4.1.conv1", "1.layer4.1.conv2",
    ]  # fmt: skip
    assert isinstance(model.get_submodule("1.layer4.0.bn1"), torch.nn.Identity)
    assert model.get_submodule("1.layer4.0.downsample.0").norm.affine is False
    _, fast = pl.build_passport_model(SPEC)
    assert len(fast) == 2  # the last two convs of the plain nets
