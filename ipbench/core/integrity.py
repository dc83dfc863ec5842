"""sha256 digests of the files a stage writes, and their check when a stage is read back.

``hashlib`` does the hashing; what is written here is only which files a manifest covers and
the one-line errors a mismatch gives.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ipbench.core.errors import CorruptArtifactError

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """``{relative path: {"sha256", "bytes"}}`` of every file under ``folder`` but ``skip``."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in skip:
            continue
        out[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return out


def verify_manifest(folder: Path, files: dict[str, dict[str, Any]], way_out: str) -> None:
    """Every file the manifest lists is there with its size and digest; else one error that
    names the file and ``way_out`` (how to recompute the stage)."""
    for rel, want in files.items():
        path = folder / rel
        if not path.is_file():
            raise CorruptArtifactError(f"{path}: missing (the stage wrote it); {way_out}")
        size = path.stat().st_size
        if size != want["bytes"]:
            raise CorruptArtifactError(
                f"{path}: {size} bytes, but the stage wrote {want['bytes']} (truncated or "
                f"replaced); {way_out}"
            )
        if sha256_file(path) != want["sha256"]:
            raise CorruptArtifactError(
                f"{path}: sha256 differs from the one recorded when it was written (the file "
                f"was modified or swapped); {way_out}"
            )


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write to a unique temporary name beside ``path``, flush to disk, rename over it;
    ``mode`` is set when the file is created (0o600: the owner's secrets)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
