from __future__ import annotations

import pytest
import torch

from ipbench.models import ModelSpec, build_model
from ipbench.registry import models


@pytest.mark.parametrize("name", ["tiny", "fastnet", "whitenet", "resnet18", "wrn16_4", "lenet5"])
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
