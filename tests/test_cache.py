"""restnet.cache and restnet.atomic: an entry survives a kill at any rename, stale temporary files are
swept, and the keys entries are filed under never change (a changed key recomputes every cache)."""
from __future__ import annotations

import hashlib
import os
import subprocess

import pytest
import torch

from restnet import atomic, cache


class _Killed(BaseException):
    """Stands for SIGKILL at one rename inside cache.seal."""


@pytest.mark.parametrize("kill_at", [0, 1, 2])
def test_replacing_a_checkpoint_never_leaves_it_unreadable(kill_at, tmp_path, monkeypatch):
    """A kill between the entry's rename and its digest's used to leave a new entry under the old digest:
    the resumed run discarded it and started over (a flaky CI run of test_method_cli showed it)."""
    path = tmp_path / "checkpoint.pt"
    cache.atomic_save({"epoch": 1}, path)
    real, calls = os.replace, []

    def replace(src, dst):
        if len(calls) == kill_at:
            raise _Killed
        calls.append(dst)
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)  # every rename, the entry's (cache) and its digest's (atomic)
    with pytest.raises(_Killed):
        cache.atomic_save({"epoch": 2}, path)
    monkeypatch.setattr(os, "replace", real)
    assert cache.cached(path) == {"epoch": 1 if kill_at < 2 else 2}
    cache.atomic_save({"epoch": 3}, path)  # and the next write after the kill seals as usual
    assert cache.cached(path) == {"epoch": 3}
    assert (tmp_path / "checkpoint.pt.sha256").read_text().split() == [cache._digests(path)[0]]


def test_temporary_files_of_killed_writers_are_swept_and_live_ones_kept(tmp_path):
    path = tmp_path / "checkpoint.pt"
    gone = _dead_pid()
    stale, live = tmp_path / f".checkpoint.pt.{gone}.x1.tmp", tmp_path / f".checkpoint.pt.{os.getpid()}.x2.tmp"
    stale_digest = tmp_path / f".checkpoint.pt.sha256.{gone}.x3.tmp"
    for p in (stale, live, stale_digest):
        p.write_bytes(b"half")
    cache.atomic_save({"epoch": 1}, path)
    assert not stale.exists() and not stale_digest.exists() and live.exists()


def test_an_exporters_temporary_file_is_its_own_and_swept_when_its_writer_is_gone(tmp_path):
    """Two processes exporting one cache slot at once (a shared cache under two workers) never share a
    temporary file; the name keeps the format's ending last; a killed exporter's file is swept."""
    mine = atomic.private_temp(tmp_path / "model", ".onnx2tf.tflite")
    assert mine.name == f".model.{os.getpid()}.tmp.onnx2tf.tflite"
    stale = tmp_path / f".model.{_dead_pid()}.tmp.pte"
    for p in (mine, stale):
        p.write_bytes(b"half")
    atomic.private_temp(tmp_path / "model", ".pte")  # the next writer's name: dead writers' files are swept
    assert mine.exists() and not stale.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_json_entry_is_sealed_with_the_sha256_of_its_bytes_and_a_user_file_is_not(tmp_path):
    entry, out = tmp_path / "e.json", tmp_path / "out.json"
    cache.atomic_write_json({"b": 1, "a": [2]}, entry)
    assert entry.read_bytes() == b'{\n  "a": [\n    2\n  ],\n  "b": 1\n}'
    assert (tmp_path / "e.json.sha256").read_text() == hashlib.sha256(entry.read_bytes()).hexdigest()
    atomic.atomic_write_bytes(b"x", out)
    assert out.read_bytes() == b"x" and not (tmp_path / "out.json.sha256").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "e.json.sha256", "out.json"]  # no temp left


def test_cache_keys_are_the_ones_earlier_caches_were_filed_under():
    """Pinned values (computed before the module moved out of restnet/training): a change here renames
    every cache entry, so every stage recomputes and a pack's files may differ."""
    assert cache.key_of(front="a", point=(1, 2), res=64, cfg={"lr": 0.01}) == "bb21e71ae2ee1510"
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    assert cache.state_digest(module) == "fad4d63b554cbb0a"
