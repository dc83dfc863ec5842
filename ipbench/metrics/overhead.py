"""Overhead of a deployment (paper Table X): parameters, FLOPs, peak memory, latency per query.

Everything takes a *query function* ``fn(x) -> logits`` rather than a model, so the cost of a
scheme's whole answer path (passport convolutions, decrypted weights, control layers) is
measured the same way as a bare network's. FLOPs follow ``torch.utils.flop_counter``: a
multiply-add counts 2 (the papers' "FLOPs" are multiply-adds, i.e. ``macs = flops / 2``).
"""

from __future__ import annotations

import statistics
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ipbench.core.errors import IpbenchError

QueryFn = Callable[[torch.Tensor], torch.Tensor]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_buffers(model: nn.Module) -> int:
    """Elements in buffers (BN statistics, passports): stored with the model but not trained."""
    return sum(b.numel() for b in model.buffers())


@torch.no_grad()
def flops_per_image(fn: QueryFn, x: torch.Tensor) -> float:
    """FLOPs of one call ``fn(x)`` divided by the batch size ``len(x)``."""
    if x.ndim == 0 or len(x) == 0:
        raise IpbenchError(f"flops_per_image needs a non-empty batch, got shape {tuple(x.shape)}")
    counter = FlopCounterMode(display=False)
    with counter:
        fn(x)
    return counter.get_total_flops() / len(x)


class _PeakTracker(TorchDispatchMode):
    """Bytes of tensor storage created inside the mode and still alive, and their peak.

    Storages are counted once however many views share them, and released when the last tensor
    created in the mode that refers to them is freed. Works on any device, so the CPU gets a
    peak-activation figure too (the process RSS cannot be reset per query).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage ptr -> [bytes, live tensors]
        self.current = self.peak = 0

    def _release(self, key: int) -> None:
        entry = self.live.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.current -= entry[0]
            del self.live[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {
            a.untyped_storage().data_ptr()
            for a in tree_leaves((args, kwargs or {}))
            if isinstance(a, torch.Tensor)
        }
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key == 0:
                continue
            entry = self.live.get(key)
            if entry is None and key in inputs:
                continue  # a view or in-place result of memory allocated before the query
            if entry is None:
                entry = self.live[key] = [storage.nbytes(), 0]
                self.current += entry[0]
                self.peak = max(self.peak, self.current)
            entry[1] += 1
            weakref.finalize(t, self._release, key)
        return out


@torch.no_grad()
def peak_activation_bytes(fn: QueryFn, x: torch.Tensor) -> int:
    """Peak bytes of tensors allocated while answering ``fn(x)`` (inputs and weights excluded)."""
    tracker = _PeakTracker()
    with tracker:
        out = fn(x)
    del out
    return tracker.peak


@dataclass(frozen=True)
class Latency:
    median_ms: float
    repeats: int
    peak_cuda_bytes: int | None  # torch.cuda.max_memory_allocated during the repeats (CUDA only)


@torch.no_grad()
def latency(
    fn: QueryFn, x: torch.Tensor, repeats: int = 5, warmup: int = 1, cpu_threads: int | None = 1
) -> Latency:
    """Median wall time of ``fn(x)``: CUDA events on a GPU, ``perf_counter`` on the CPU.

    On the CPU, ``cpu_threads`` (default 1, a serving worker) fixes the thread count while
    timing: on a loaded machine every multi-threaded op waits at a barrier for a descheduled
    thread, which measured 250 ms for a 1 ms query on this project's shared 2-core box.
    """
    if repeats < 1:
        raise IpbenchError(f"latency needs repeats >= 1, got {repeats}")
    if x.device.type == "cuda":
        for _ in range(warmup):
            fn(x)
        torch.cuda.synchronize(x.device)
        torch.cuda.reset_peak_memory_stats(x.device)
        times: list[float] = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(x)
            end.record()
            torch.cuda.synchronize(x.device)
            times.append(start.elapsed_time(end))
        return Latency(statistics.median(times), repeats, torch.cuda.max_memory_allocated(x.device))
    before = torch.get_num_threads()
    if cpu_threads:
        torch.set_num_threads(cpu_threads)
    try:
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x)
            times.append(1000 * (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(before)
    return Latency(statistics.median(times), repeats, None)


def measure(
    fn: QueryFn, x: torch.Tensor, model: nn.Module | None = None, repeats: int = 5
) -> dict[str, float]:
    """All of the above for one query path: what a scheme puts in ``scheme_metrics``.

    Keys: ``flops`` (per image), ``peak_act_bytes``, ``latency_ms`` (per call on ``x``),
    ``params`` and ``buffers`` (when ``model`` is given), ``peak_cuda_bytes`` (on CUDA).
    """
    out: dict[str, float] = {
        "flops": flops_per_image(fn, x),
        "peak_act_bytes": float(peak_activation_bytes(fn, x)),
    }
    lat = latency(fn, x, repeats)
    out["latency_ms"] = lat.median_ms
    if lat.peak_cuda_bytes is not None:
        out["peak_cuda_bytes"] = float(lat.peak_cuda_bytes)
    if model is not None:
        out["params"] = float(count_params(model))
        out["buffers"] = float(count_buffers(model))
    return out


def compare(
    protected: dict[str, float], base: dict[str, float], suffix: str = "_base"
) -> dict[str, float]:
    """Protected figures under their own names, the unprotected ones with ``suffix``."""
    return {**protected, **{f"{k}{suffix}": v for k, v in base.items()}}


def credential_cost(issue: Callable[[], object], repeats: int = 3) -> float:
    """Median milliseconds of ``issue()``: issuing a credential (and applying a token).

    A zero-argument callable, timed with ``perf_counter`` single-threaded like ``latency``.
    """
    if repeats < 1:
        raise IpbenchError(f"credential_cost needs repeats >= 1, got {repeats}")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    times: list[float] = []
    try:
        with torch.no_grad():
            for _ in range(repeats):
                t0 = time.perf_counter()
                issue()
                times.append(1000 * (time.perf_counter() - t0))
    finally:
        torch.set_num_threads(before)
    return statistics.median(times)
