"""Offline detection: decided once per process, and IPBENCH_OFFLINE never touches a socket."""

from __future__ import annotations

import socket

import pytest

from ipbench.core import network


@pytest.fixture(autouse=True)
def _fresh():
    network.online.cache_clear()
    yield
    network.online.cache_clear()


def test_offline_setting_answers_without_a_connection(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("network touched")

    monkeypatch.setattr(socket, "create_connection", boom)
    monkeypatch.setenv("IPBENCH_OFFLINE", "1")
    assert network.online() is False


def test_the_network_is_asked_once_per_process(monkeypatch):
    calls = []

    def refuse(*a, **k):
        calls.append(a)
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("IPBENCH_OFFLINE")
    assert network.online() is False and network.online() is False
    assert len(calls) == 1
    from ipbench.ml.datasets.locate import downloads_allowed

    assert downloads_allowed(True) is False and len(calls) == 1


def test_an_offline_machine_is_asked_once_and_nothing_downloads(monkeypatch, tmp_path):
    """LPIPS's backbone and a missing dataset both consult the one cached answer: one
    connection attempt for the process, no download call after it."""
    import urllib.request

    from ipbench.core.errors import IpbenchError
    from ipbench.metrics import image_quality
    from ipbench.ml.datasets import load_dataset

    calls = []

    def refuse(*a, **k):
        calls.append(a)
        raise OSError("unreachable")

    def no_download(*a, **k):
        raise AssertionError("a download was attempted on an offline machine")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    monkeypatch.delenv("IPBENCH_OFFLINE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached AlexNet
    monkeypatch.setenv("IPBENCH_CACHE", str(tmp_path / "cache"))  # no converted weights
    image_quality._load_lpips.cache_clear()
    try:
        model, reason = image_quality._lpips_model()
        assert model is None and "no network" in reason and len(calls) == 1
        with pytest.raises(IpbenchError, match="cifar10"):
            load_dataset("cifar10", str(tmp_path / "data"), download=True)
        assert len(calls) == 1 and not (tmp_path / "data" / "cifar-10-batches-py").exists()
    finally:
        image_quality._load_lpips.cache_clear()
