"""Test-wide guards: no test may reach the network (loopback is fine)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

PHASES = ("all", "parallel", "quiet")


def pytest_addoption(parser):
    parser.addoption("--phase", choices=PHASES, default="all", help=(
        "which tests to run: all; parallel (all but those marked quiet, for pytest-xdist workers); quiet (only "
        "those: they time the host against a quiet machine, so no other worker may run beside them). "
        "scripts/test.sh runs parallel, then quiet."))


def pytest_collection_modifyitems(config, items):
    phase = config.getoption("--phase")
    if phase == "all":
        return
    keep = [it for it in items if (it.get_closest_marker("quiet") is not None) == (phase == "quiet")]
    if len(keep) < len(items):
        config.hook.pytest_deselected(items=[it for it in items if it not in keep])
        items[:] = keep

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the cores: each gets its share of intra-op threads, for itself and the processes it starts.
    # Two workers on 2 cores with torch's default 2 threads each trained 7x slower than with 1 each (a thread
    # waits at every OpenMP barrier for its partner, descheduled by the other worker's threads).
    _share = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ["OMP_NUM_THREADS"] = str(_share)
    import torch

    torch.set_num_threads(_share)

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
    test_firmware, whose anchors test_limits' weak board shares, the pixel-7 one in test_bundle, test_app_tflite
    and test_pack): a file one module exported and verified is copied from the cache by the next, as a warm
    re-pack does (test_pack checks that it is byte for byte the same). Tests of the cache itself, of
    interruption and of timing keep a cache of their own.
    Under pytest-xdist every worker uses the same folder (the run's temporary root): the cache's entries are
    written by atomic renames, and two workers that build one entry write the same bytes."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # one folder per worker under the run's root
    path = root / "shared-cache"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture
def shared(shared_cache, monkeypatch) -> Path:
    """RESTNET_CACHE set to the run-wide ``shared_cache`` for one test."""
    monkeypatch.setenv("RESTNET_CACHE", str(shared_cache))
    return shared_cache
