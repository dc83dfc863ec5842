"""The owner's part of a store: the key that the secrets of every run are drawn from.

A scheme's secrets (stickers, masks, keys, passports, fingerprints, token encoders) must not be
derivable from anything a thief sees. The run seed is published (it is part of the run's id
and of every table), so secrets are drawn from a *key seed* instead: an HMAC of the run seed
under the store's owner key, a random 256-bit key kept in ``WORKDIR/owner/owner.key``, written
owner-only. The same store therefore reproduces its runs bitwise (resume, reruns, grids); a
second store draws different secrets for the same seed, as two owners would. To reproduce a
store's secrets elsewhere, copy its ``owner/`` folder (``owner.key``) into the new workdir,
or set ``$IPBENCH_OWNER_KEY`` (64 hex digits) before a new store's first run (the tests do).

Only a one-way digest of the key seed enters stage keys; the key seed itself is written only
under ``owner/`` (``owner/runs/RUN.json``), never to the run record or the leaderboard.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

from ipbench.core.errors import IpbenchError
from ipbench.core.integrity import write_atomic

OWNER_DIR = "owner"
KEY_FILE = "owner.key"
KEY_BYTES = 32
KEY_ENV = "IPBENCH_OWNER_KEY"


def owner_dir(workdir: str | Path) -> Path:
    """``WORKDIR/owner``, created readable by the owner only."""
    folder = Path(workdir) / OWNER_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def _new_key() -> str:
    """A new store's key: ``$IPBENCH_OWNER_KEY`` where set (the same secrets in every new
    store, e.g. for tests or to reproduce an experiment bit for bit), else 256 fresh bits."""
    given = os.environ.get(KEY_ENV, "").strip()
    if not given:
        return secrets.token_hex(KEY_BYTES)
    try:
        ok = len(bytes.fromhex(given)) == KEY_BYTES
    except ValueError:
        ok = False
    if not ok:
        raise IpbenchError(
            f"${KEY_ENV} must be {KEY_BYTES * 2} hex digits (an owner key), got {given[:12]!r}..."
        )
    return given


FINGERPRINT_FILE = "owner-key.fingerprint"  # beside owner/: public, one-way


@contextlib.contextmanager
def demo_key_environment(enabled: bool) -> Iterator[None]:
    """``$IPBENCH_OWNER_KEY`` set to the public demo key inside the block (``enabled``), as
    it was after it: a command's ``--demo-key`` never leaks into an in-process caller."""
    if not enabled:
        yield
        return
    with key_environment(demo_key_hex()):
        yield


@contextlib.contextmanager
def key_environment(key_hex: str) -> Iterator[None]:
    """``$IPBENCH_OWNER_KEY`` set to ``key_hex`` inside the block and restored after it: a new
    store made inside (a grid worker's private store) holds that key."""
    previous = os.environ.get(KEY_ENV)
    os.environ[KEY_ENV] = key_hex
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(KEY_ENV, None)
        else:
            os.environ[KEY_ENV] = previous


def demo_key_hex() -> str:
    """The public demo key (``ipbench run --demo-key``): published in this source, so anyone's
    store draws the same secrets and the README's Quick start reproduces. Never for real
    secrets: whoever reads this line can forge every credential it protects."""
    return hashlib.sha256(b"ipbench public demo key: not a secret").hexdigest()


def fingerprint(key: bytes) -> str:
    """A public, one-way name of an owner key: which key made a store's runs."""
    return hashlib.sha256(b"ipbench-owner-fingerprint:" + key).hexdigest()[:16]


def _parse_key(raw: bytes) -> bytes:
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return b""
    return key if len(key) == KEY_BYTES else b""


def _guard_permissions(folder: Path, path: Path) -> None:
    """A key readable by others is warned about and made owner-only (where we own it)."""
    for target, mode in ((folder, 0o700), (path, 0o600)):
        try:
            st = target.stat()
            if st.st_mode & 0o077 and st.st_uid == os.getuid():
                os.chmod(target, mode)
                print(
                    f"warning: {target} was readable by other users; made owner-only ({mode:o})",
                    file=sys.stderr,
                )
        except OSError:
            pass


def owner_key(workdir: str | Path) -> bytes:
    """The store's owner key, made on first use, and guarded after that.

    The store records the key's fingerprint (``WORKDIR/owner-key.fingerprint``) when the key is
    made. A key file that is missing, replaced or unreadable, or ``$IPBENCH_OWNER_KEY`` naming
    another key, is one clear error with the way out: a silent new key would retrain every run
    with new secrets under the same run ids. Processes racing to make the key agree, and none
    reads a half-written key: each writes its candidate to a private file, syncs it, then
    hard-links it into place, which succeeds for exactly one of them."""
    folder = owner_dir(workdir)
    path = folder / KEY_FILE
    recorded_file = Path(workdir) / FINGERPRINT_FILE
    recorded = recorded_file.read_text().strip() if recorded_file.is_file() else None
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise IpbenchError(f"{path} is not a file; restore this store's owner key there")
    if not path.exists():
        if recorded is not None:
            raise IpbenchError(
                f"{path} is missing, but this store's runs were made with the owner key of "
                f"fingerprint {recorded}: restore owner/ from a copy of this store (or set "
                f"${KEY_ENV} to that key); to start over with new secrets, use a new --workdir"
            )
        _create_key(path)
    key = _parse_key(path.read_bytes())
    if not key:
        raise IpbenchError(
            f"{path}: not an ipbench owner key ({KEY_BYTES * 2} hex digits expected); restore "
            "it from a copy of this store's owner/ folder, or use a new --workdir"
        )
    _guard_permissions(folder, path)
    if recorded is None:
        write_atomic(recorded_file, fingerprint(key).encode())  # a new store, or one made before
    elif recorded != fingerprint(key):
        raise IpbenchError(
            f"{path} is not the key this store's runs were made with (fingerprint "
            f"{fingerprint(key)}, recorded {recorded}): restore the original owner/ folder, or "
            "use a new --workdir for a new key"
        )
    given = os.environ.get(KEY_ENV, "").strip()
    if given and _parse_key(given.encode()) != key:
        _new_key()  # a malformed value: that error first
        raise IpbenchError(
            f"${KEY_ENV} does not hold this store's owner key (fingerprint {fingerprint(key)}): "
            f"unset it to use the store's key, or use a new --workdir for that key"
        )
    return key


def existing_owner_key(workdir: str | Path) -> bytes | None:
    """The store's owner key where its file exists (guarded as ``owner_key``); None where it
    does not or this user may not read it (another user reading the owner's store): such a
    reader reads it unverified and is told so. Never makes a key."""
    path = Path(workdir) / OWNER_DIR / KEY_FILE
    try:
        if not path.exists() or not os.access(path, os.R_OK):
            return None
    except OSError:  # the owner/ folder itself is closed to this user
        return None
    return owner_key(workdir)


def _create_key(path: Path) -> None:
    tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(_new_key().encode())
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process made it first: its key is the store's
    except OSError as exc:  # e.g. a filesystem without hard links
        raise IpbenchError(
            f"cannot create the owner key {path} ({exc}); create it by hand with "
            f"`python -c 'import secrets; print(secrets.token_hex({KEY_BYTES}))' > {path}`"
        ) from None
    finally:
        tmp.unlink()


def key_seed(workdir: str | Path, run_seed: int) -> int:
    """The key seed of run seed ``run_seed`` in this store: 63 bits, unrelated to the run
    seed for anyone without the owner key."""
    mac = hmac.new(owner_key(workdir), f"ipbench-key-seed:{run_seed}".encode(), hashlib.sha256)
    return int.from_bytes(mac.digest()[:8], "big") >> 1


def key_digest(seed: int) -> str:
    """A one-way digest of a key seed, for stage keys (secrets differ, so artefacts differ)."""
    return hashlib.sha256(f"ipbench-key-digest:{seed}".encode()).hexdigest()[:16]


def derive(seed: int, purpose: tuple[object, ...], bits: int = 63) -> int:
    """An integer of ``bits`` bits drawn from key seed ``seed`` for ``purpose`` (a scheme's
    name and salt): independent draws for independent secrets."""
    text = json.dumps([seed, *map(str, purpose)])
    digest = hashlib.sha256(f"ipbench-secret:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)


def record_key_seed(workdir: str | Path, run_id: str, seed: int) -> None:
    """Write the run's key seed into the owner's part of the store (and nowhere else)."""
    runs = owner_dir(workdir) / "runs"
    runs.mkdir(mode=0o700, exist_ok=True)
    write_atomic(runs / f"{run_id}.json", json.dumps({"key_seed": seed}).encode(), mode=0o600)
