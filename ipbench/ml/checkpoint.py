"""Epoch checkpoints of the shared trainer: weights, momentum buffers, Lookahead's slow
weights; written atomically, read back with errors that say how to restart the stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ipbench.core.authenticity import check_record, sign_record
from ipbench.core.errors import CorruptArtifactError, IpbenchError
from ipbench.core.integrity import sha256_file, write_atomic
from ipbench.core.jsonsafe import loads_limited
from ipbench.core.tensorio import read_tensors, write_tensors

if TYPE_CHECKING:
    from ipbench.ml.training import Lookahead

PURPOSE = "training-checkpoint"  # its tag's purpose (ipbench.core.authenticity)


def save_checkpoint(
    folder: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    epoch: int,
    look: Lookahead | None = None,
    epochs: int | None = None,
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
    digest = sha256_file(folder / "checkpoint.safetensors")
    meta = sign_record({"epoch": epoch, "of": epochs, "sha256": digest}, PURPOSE)
    write_atomic(folder / "checkpoint.json", json.dumps(meta).encode())


def has_checkpoint(folder: Path) -> bool:
    return (folder / "checkpoint.json").exists() and (folder / "checkpoint.safetensors").exists()


def load_checkpoint(
    folder: Path, model: nn.Module, opt: torch.optim.Optimizer, look: Lookahead | None = None,
    epochs: int | None = None,
) -> int:  # fmt: skip
    """The epoch to resume after, with the state restored; the checkpoint must be of this
    training (``epochs`` in all, an epoch within them) and its weights the ones written."""
    meta, weights = folder / "checkpoint.json", folder / "checkpoint.safetensors"
    if not has_checkpoint(folder):
        return 0
    restart = f"delete {folder} to restart the stage"
    try:
        info = loads_limited(meta.read_text(), str(meta))
        epoch = int(info["epoch"])
    except (OSError, ValueError, KeyError, TypeError, IpbenchError) as exc:
        raise CorruptArtifactError(f"{meta}: unreadable ({exc}); {restart}") from None
    check_record(info, PURPOSE, str(meta), restart)  # the owner's, when a store is signing
    total = info.get("of", epochs)
    if epochs is not None and (total != epochs or not 0 <= epoch <= epochs):
        raise CorruptArtifactError(
            f"{meta}: claims epoch {epoch} of {total}, but this training has {epochs} epochs; "
            f"{restart}"
        )
    if "sha256" in info and sha256_file(weights) != info["sha256"]:
        raise CorruptArtifactError(
            f"{weights}: sha256 differs from the one its checkpoint.json recorded; {restart}"
        )
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
