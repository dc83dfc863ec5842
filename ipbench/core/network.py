"""Whether this machine can reach the download servers, decided once per process.

Offline machines must not try the network on every run (each attempt prints a urlopen error and
can stall for its timeout), so the answer is cached: ``IPBENCH_OFFLINE=1`` says no outright;
otherwise one short TCP connection to torchvision's download host decides.
"""

from __future__ import annotations

import functools
import os
import socket

DOWNLOAD_HOST = ("download.pytorch.org", 443)


def offline_by_setting() -> bool:
    return os.environ.get("IPBENCH_OFFLINE", "").lower() in ("1", "true", "yes")


@functools.lru_cache(maxsize=1)
def online(timeout: float = 2.0) -> bool:
    """True when the download host answers a TCP connection within ``timeout`` seconds."""
    if offline_by_setting():
        return False
    try:
        with socket.create_connection(DOWNLOAD_HOST, timeout=timeout):
            return True
    except OSError:
        return False
