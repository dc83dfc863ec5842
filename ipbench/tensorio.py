"""Reading and writing tensors: safetensors only, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ipbench.errors import CorruptArtifactError


def read_tensors(path: str | Path, what: str = "tensor file") -> dict[str, torch.Tensor]:
    """Load a safetensors file; a truncated or foreign file is a CorruptArtifactError."""
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type for bad headers
        raise CorruptArtifactError(f"{path}: unreadable {what} ({exc})") from None


def write_tensors(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write atomically, so a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)
