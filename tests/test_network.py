"""Offline detection: decided once per process, and IPBENCH_OFFLINE never touches a socket."""

from __future__ import annotations

import socket

import pytest

from ipbench import network


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
    from ipbench.datasets.locate import downloads_allowed

    assert downloads_allowed(True) is False and len(calls) == 1
