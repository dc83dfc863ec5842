"""Results authenticated by the owner key: an HMAC on every record a reader trusts.

A sha256 kept beside a file proves only that the two agree; whoever edits one can edit the
other (issue 34: a forged ``stage.json`` became the stored result once its ledger row was
gone). Every stage marker, metric row, run row, stage row and resumable checkpoint therefore
carries an HMAC-SHA256 under a key derived from the store's owner key
(``ipbench.core.owner``): a thief or an editor without ``owner/owner.key`` can copy, delete or
change records, but cannot make one that verifies.

The tag covers a record's canonical JSON (sorted keys, no whitespace) with a ``purpose`` in
front, so a tag made for one kind of record never verifies as another. ``hmac`` and
``hashlib`` do the cryptography; what is written here is which fields each record's tag
covers and the one place (``active_key``) that says which key the running stage signs with.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import json
from collections.abc import Iterator
from typing import Any

from ipbench.core.errors import CorruptArtifactError

TAG = "mac"  # the field a signed JSON record keeps its tag in
_ACTIVE: contextvars.ContextVar[bytes | None] = contextvars.ContextVar("ipbench_mac", default=None)


def results_key(owner_key: bytes) -> bytes:
    """The key that tags results: one-way from the owner key, never the key itself, so the
    key that makes secrets is used for nothing else."""
    return hmac.new(owner_key, b"ipbench-results-mac-v1", hashlib.sha256).digest()


def canonical(obj: Any) -> bytes:
    """One byte string per value: sorted keys, no whitespace, floats as Python writes them."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()


def tag(key: bytes, purpose: str, obj: Any) -> str:
    """The hex HMAC-SHA256 of ``obj`` for ``purpose`` (a stage marker, a metric row, ...)."""
    return hmac.new(key, purpose.encode() + b"\0" + canonical(obj), hashlib.sha256).hexdigest()


def matches(key: bytes, purpose: str, obj: Any, given: object) -> bool:
    """Whether ``given`` is the tag of ``obj``; constant-time."""
    return isinstance(given, str) and hmac.compare_digest(tag(key, purpose, obj), given)


@contextlib.contextmanager
def signing(key: bytes | None) -> Iterator[None]:
    """Make ``key`` the one the code running inside signs and checks its checkpoints with
    (the stage cache sets it around a stage's computation)."""
    token = _ACTIVE.set(key)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active_key() -> bytes | None:
    """The key of the stage being computed; None outside a store (a library call, a test)."""
    return _ACTIVE.get()


def sign(record: dict[str, Any], key: bytes | None, purpose: str) -> dict[str, Any]:
    """``record`` with its tag under ``key`` (as it is, without its old tag, where no key)."""
    body = {k: v for k, v in record.items() if k != TAG}
    return body if key is None else {**body, TAG: tag(key, purpose, body)}


def check(
    record: dict[str, Any], key: bytes | None, purpose: str, where: str, way_out: str
) -> None:
    """Refuse a record that ``key`` did not tag: a missing or wrong tag is one
    ``CorruptArtifactError`` naming ``where`` and ``way_out``. Nothing to check without a key."""
    if key is None:
        return
    if TAG not in record:
        raise CorruptArtifactError(
            f"{where} carries no authentication tag (written before records were "
            f"authenticated, or not by this store); {way_out}"
        )
    body = {k: v for k, v in record.items() if k != TAG}
    if not matches(key, purpose, body, record[TAG]):
        raise CorruptArtifactError(
            f"{where} does not verify under this store's owner key (edited, forged, or from "
            f"another store); {way_out}"
        )


def sign_record(record: dict[str, Any], purpose: str) -> dict[str, Any]:
    """``sign`` under the active key: a checkpoint written while a stage computes."""
    return sign(record, active_key(), purpose)


def check_record(record: dict[str, Any], purpose: str, where: str, way_out: str) -> None:
    """``check`` under the active key: a checkpoint read back while a stage computes."""
    check(record, active_key(), purpose, where, way_out)
