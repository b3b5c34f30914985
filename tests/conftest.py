"""Test-wide guards: no test may reach the network (loopback is fine)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("RESTNET_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Decode the bundled CIFAR-10 once for the whole run (and reuse the user's copy), even though
# tests keep private restnet caches.
os.environ.setdefault("RESTNET_DATA_CACHE", str(
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "restnet" / "data" / "cifar10"))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            return real_connect(self, address)
        raise OSError(f"test tried to reach the network ({address}); tests must not download anything")

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private restnet cache for one test."""
    monkeypatch.setenv("RESTNET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One restnet cache for the tiny families that several modules pack (the rpi4 one in test_bundle and
    test_firmware, the pixel-7 one in test_bundle, test_app_tflite and test_pack): a file one module exported
    and verified is copied from the cache by the next, as a warm re-pack does (test_pack checks that it is
    byte for byte the same). Tests of the cache itself, of interruption and of timing keep a cache of their own."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture
def shared(shared_cache, monkeypatch) -> Path:
    """RESTNET_CACHE set to the run-wide ``shared_cache`` for one test."""
    monkeypatch.setenv("RESTNET_CACHE", str(shared_cache))
    return shared_cache
