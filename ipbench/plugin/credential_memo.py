"""A memo of credentialed images: ``scheme.apply(credential, batch)`` computed once per batch.

Why: an attack scores the thief's model many times on the same test images (after every
fine-tuning epoch, at every pruning rate, for every recipe), and an input-space token turns
those images into the same authorized images each time. Where the token is costly to apply
(a generator network, a 32 -> 224 -> 32 resampling round trip) that repetition was most of an
attack's time: resample-lock's smoke fine-tuning spent 89 of its 134 s resampling the same
500 test images (``python -m cProfile``, 2026-12-08).

The memo is exact, so no stored result changes and no stage is re-keyed:

- an entry is used only for the same scheme class and config, the same user and kind, a
  credential that gives the same bytes on a fixed probe batch (so another seed's secrets, or a
  credential issued against another model, never hit), and a batch with the same bytes
  (BLAKE2b over the batch as passed, dtype and shape included);
- a credential whose ``apply`` is not deterministic (the probe applied twice differs) is never
  memoised: every batch is applied afresh, as before;
- it stands in for the ``apply`` step of ``Scheme.query``, which no scheme may override;
- what the memo returns is a copy, so a ``serve`` that writes into its input cannot change it.

Entries live for the process, least recently used first out, within ``MEMO_BYTES``.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable

import torch

from ipbench.plugin.capabilities import InputSpaceToken
from ipbench.plugin.contract import Credential, Scheme

MEMO_BYTES = 1 << 30  # at most 1 GiB of credentialed images held (CIFAR's test set: 123 MB)
PROBE_IMAGES = 2
PROBE_SEED = 20_261_208

_lock = threading.Lock()
_entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
_held = 0
_stats = {"hits": 0, "misses": 0}


def digest(t: torch.Tensor) -> str:
    """BLAKE2b of a tensor's bytes, dtype and shape (any device, any dtype)."""
    flat = t.detach().contiguous().cpu().reshape(-1)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(flat.view(torch.uint8).numpy().data)
    return h.hexdigest()


class CredentialMemo:
    """``apply`` of one scheme and credential, memoised per batch (see the module docstring).

    Build it with :func:`memo_for`, which returns None where memoising would not be exact.
    """

    def __init__(self, scheme: InputSpaceToken, credential: Credential, signature: Hashable):
        self.scheme = scheme
        self.credential = credential
        self.key = signature

    def apply(self, raw: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """``scheme.apply(credential, batch)``, where ``batch`` is ``raw`` as the model reads
        it (``raw``: the images as passed, hashed for the key)."""
        global _held
        key = (self.key, digest(raw), str(batch.device), str(batch.dtype))
        with _lock:
            hit = _entries.get(key)
            if hit is not None:
                _entries.move_to_end(key)
                _stats["hits"] += 1
                return hit.clone()
        out = self.scheme.apply(self.credential, batch)
        size = out.element_size() * out.nelement()
        with _lock:
            _stats["misses"] += 1
            if size <= MEMO_BYTES and key not in _entries:
                _entries[key] = out.clone()
                _held += size
                while _held > MEMO_BYTES:
                    _, old = _entries.popitem(last=False)
                    _held -= old.element_size() * old.nelement()
        return out


def memo_for(
    scheme: Scheme, credential: Credential, image_shape: tuple[int, ...], device: torch.device
) -> CredentialMemo | None:
    """A memo of ``scheme.apply(credential, .)`` for images of ``image_shape`` (C, H, W), or
    None where it would not be exact (no input-space token, ``apply`` not deterministic)."""
    if not isinstance(scheme, InputSpaceToken):
        return None
    g = torch.Generator().manual_seed(PROBE_SEED)
    probe = torch.rand((PROBE_IMAGES, *image_shape), generator=g).to(device)
    first = scheme.apply(credential, probe.clone())
    if not torch.equal(first, scheme.apply(credential, probe.clone())):
        return None
    config = getattr(scheme, "config", None)
    signature = (
        type(scheme).__module__, type(scheme).__qualname__, repr(config),
        credential.user, credential.kind, digest(first),
    )  # fmt: skip
    return CredentialMemo(scheme, credential, signature)


def clear() -> None:
    """Forget every entry (tests; a long-lived process that wants its memory back)."""
    global _held
    with _lock:
        _entries.clear()
        _held = 0
        _stats.update(hits=0, misses=0)


def stats() -> dict[str, int]:
    """Hits and misses since the last :func:`clear`, and the bytes held."""
    with _lock:
        return {**_stats, "entries": len(_entries), "bytes": _held}
