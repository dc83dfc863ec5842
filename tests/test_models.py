from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from ipbench.core.registry import models
from ipbench.ml.models import ModelSpec, build_model


@pytest.mark.parametrize(
    "name", ["tiny", "fastnet", "whitenet", "whitenet94", "resnet18", "wrn16_4", "lenet5"]
)
def test_models_map_cifar_shaped_images_to_logits(name):
    spec = ModelSpec(
        name, num_classes=7, in_channels=3, image_size=32, mean=(0.5,) * 3, std=(0.25,) * 3
    )
    model = build_model(spec).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 7)


def test_resnet18_has_the_cifar_stem():
    net = models.get("resnet18")(num_classes=10, in_channels=3, image_size=32)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)
    big = models.get("resnet50")(num_classes=10, in_channels=3, image_size=224)
    assert big.conv1.kernel_size == (7, 7)


def test_lenet5_on_mnist_shape():
    spec = ModelSpec("lenet5", 10, 1, 28, (0.13,), (0.31,))
    assert build_model(spec)(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_normalisation_is_part_of_the_model():
    spec = ModelSpec("tiny", 10, 3, 32, (0.2, 0.4, 0.6), (0.5, 0.5, 0.5))
    model = build_model(spec)
    x = torch.full((1, 3, 2, 2), 0.7)
    assert torch.allclose(model[0](x)[0, :, 0, 0], torch.tensor([1.0, 0.6, 0.2]))
    assert "0.mean" in model.state_dict()


def test_timm_models_take_the_datasets_classes_and_channels():
    """``timm:NAME`` builds timm's architecture, randomly initialised (no download), with the
    task's classes and input channels."""
    import timm

    spec = ModelSpec("timm:test_resnet", 7, 1, 28, (0.13,), (0.31,))
    model = build_model(spec).eval()
    backbone = model[1]
    assert type(backbone) is type(timm.create_model("test_resnet", pretrained=False))
    assert backbone.conv1[0].in_channels == 1 and backbone.num_classes == 7
    with torch.no_grad():
        assert model(torch.rand(2, 1, 28, 28)).shape == (2, 7)
    vit = build_model(ModelSpec("timm:test_vit", 5, 3, 32, (0.5,) * 3, (0.25,) * 3)).eval()
    with torch.no_grad():  # a fixed-size architecture gets the dataset's image size
        assert vit(torch.rand(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("timm:resnt10t", "unknown timm model 'resnt10t'"),
        ("timm:resnt10t", "close names: resnet10t"),
        ("timm:", "timm.list_models"),
        ("resnet7", "valid models: fastnet, lenet5, resnet18, resnet50, timm:NAME, tiny"),
    ],
)
def test_an_unknown_model_name_says_where_names_come_from(name, message):
    from ipbench.core.errors import IpbenchError
    from ipbench.engine.runner import RunRequest, resolve

    with pytest.raises(IpbenchError, match=re.escape(message)):
        resolve(RunRequest(scheme="none", preset="smoke", model=name, device="cpu"))


@pytest.mark.slow
def test_a_timm_model_is_protected_end_to_end_on_smoke(tmp_path):
    """mlock on timm's test_resnet through the whole run; the stored model reloads as timm's."""
    from ipbench.engine.runner import Runner, RunRequest
    from ipbench.plugin.contract import Protected
    from ipbench.store.results import Store

    req = RunRequest(scheme="mlock", preset="smoke", model="timm:test_resnet", device="cpu",
                     workdir=str(tmp_path), attacks="none")  # fmt: skip
    outcome = Runner(req).run()
    values = {(m["stage"], m["name"]): m["value"] for m in outcome.metrics}
    assert values[("baseline", "A_or")] > 50  # learnt, not guessed (synthetic: 10 classes)
    assert values[("evaluate", "params")] == values[("evaluate", "params_base")] > 300_000
    assert ("evaluate", "A_ad") in values and ("evaluate", "A_ud") in values
    run = Store(tmp_path).list_runs()[0]
    assert run.status == "done" and run.model == "timm:test_resnet"
    stages = {s["name"]: s for s in outcome.stages}
    protected = Protected.load(stages["protect"]["artifact"])
    assert type(protected.model[1]).__module__.startswith("timm.")


def test_whitenet94_is_airbench94s_widths_on_the_whitenet_stem():
    """The wider variant differs from whitenet only in its groups' widths (64-256-256)."""
    spec = ModelSpec("whitenet94", 10, 3, 32, (0.5,) * 3, (0.25,) * 3)
    convs = [m for m in build_model(spec).modules() if type(m) is torch.nn.Conv2d]
    assert [c.out_channels for c in convs] == [64, 64, 256, 256, 256, 256]
    narrow = build_model(dataclasses.replace(spec, name="whitenet"))
    narrow_widths = [c.out_channels for c in narrow.modules() if type(c) is torch.nn.Conv2d]
    assert narrow_widths == [64, 64, 128, 128, 128, 128]
