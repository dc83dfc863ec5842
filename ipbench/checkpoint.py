"""Epoch checkpoints of the shared trainer: weights, momentum buffers, Lookahead's slow
weights; written atomically, read back with errors that say how to restart the stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ipbench.errors import CorruptArtifactError
from ipbench.tensorio import read_tensors, write_tensors

if TYPE_CHECKING:
    from ipbench.training import Lookahead


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    epoch: int,
    look: Lookahead | None = None,
) -> None:
    """Model weights, momentum buffers and Lookahead's slow weights after ``epoch``; atomic."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, group in enumerate(opt.param_groups):
        for j, p in enumerate(group["params"]):
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"opt.{i}.{j}"] = buf
    if look is not None:
        tensors.update({f"slow.{k}": v for k, v in look.slow.items()})
    write_tensors(tensors, folder / "checkpoint.safetensors")
    (folder / "checkpoint.json").write_text(json.dumps({"epoch": epoch}))


def has_checkpoint(folder: Path) -> bool:
    return (folder / "checkpoint.json").exists() and (folder / "checkpoint.safetensors").exists()


def load_checkpoint(
    folder: Path, model: nn.Module, opt: torch.optim.Optimizer, look: Lookahead | None = None
) -> int:
    meta, weights = folder / "checkpoint.json", folder / "checkpoint.safetensors"
    if not has_checkpoint(folder):
        return 0
    try:
        epoch = int(json.loads(meta.read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptArtifactError(
            f"{meta}: unreadable ({exc}); delete {folder} to restart the stage"
        ) from None
    tensors = read_tensors(weights, "training checkpoint")
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(state)
    for i, group in enumerate(opt.param_groups):
        for j, p in enumerate(group["params"]):
            buf = tensors.get(f"opt.{i}.{j}")
            if buf is not None:
                opt.state[p]["momentum_buffer"] = buf.to(p.device)
    if look is not None:
        for k, slow in look.slow.items():
            saved = tensors.get(f"slow.{k}")
            if saved is None:
                raise CorruptArtifactError(
                    f"{weights}: no Lookahead state for {k}; delete {folder} to restart the stage"
                )
            slow.copy_(saved)
    return epoch
