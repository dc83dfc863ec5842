"""Reading and writing tensors: safetensors only, with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ipbench.core.errors import CorruptArtifactError


def read_tensors(path: str | Path, what: str = "tensor file") -> dict[str, torch.Tensor]:
    """Load a safetensors file; a truncated or foreign file is a CorruptArtifactError."""
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error type for bad headers
        raise CorruptArtifactError(f"{path}: unreadable {what} ({exc})") from None


def write_tensors(
    tensors: dict[str, torch.Tensor], path: str | Path, private: bool = False
) -> None:
    """Write atomically, so a crash leaves the old file or the new one, never half of one;
    ``private``: readable and writable by the owner only (mode 0600), e.g. a scheme's secrets."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    if private:  # created 0600 before any byte is written, so no window where others can read
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
    if private:
        os.chmod(tmp, 0o600)
    tmp.replace(path)
