# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_rundir: keys, paths, atomic writes, the records and their validation, the per-pod lock (no root needed)."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat

import pytest
from hypothesis import given
from hypothesis.strategies import text as st_text

from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

from lib.pod_samples import declaration


@pytest.mark.parametrize("netns, key", [
    ("pod1", "pod1"),
    ("/proc/1234/ns/net", "proc-1234-ns-net"),
    ("/run/netns/pod1", "pod1"),  # the same namespace as "pod1": same key and lock
    ("/var/run/netns/cni-1f2e", "cni-1f2e"),
    ("/run/netns/sub/dir", "run-netns-sub-dir"),
    ("/var/run/podns/pod 1", "var-run-podns-pod-1"),
    ("..", "ns-__"),
])
def test_netns_key_is_file_safe(netns, key):
    assert _rundir.netns_key(netns) == key
    assert "/" not in _rundir.state_key(netns, "eth0")
    assert _rundir.state_key(netns, "eth0") == key + "__eth0"


def test_ensure_dirs_root_only(tmp_path):
    run_dir = tmp_path / "run"
    os.umask(0o022)
    _rundir.ensure_dirs(str(run_dir))
    for sub in ("", "pods", "locks", "leases"):
        assert stat.S_IMODE(os.stat(run_dir / sub).st_mode) == 0o700


def test_ensure_dirs_tightens_existing(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    _rundir.ensure_dirs(str(run_dir))
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700


def test_atomic_write_json_mode_content_no_temp_left(tmp_path):
    path = tmp_path / "x.json"
    _rundir.atomic_write_json(str(path), {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    _rundir.atomic_write_json(str(path), {"c": 3})
    assert json.loads(path.read_text()) == {"c": 3}
    assert os.listdir(tmp_path) == ["x.json"]


def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / "x.json"
    _rundir.atomic_write_json(str(path), {"ok": True})
    with pytest.raises(TypeError):
        _rundir.atomic_write_json(str(path), {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["x.json"]


def test_read_json_missing_and_corrupt(tmp_path):
    assert _rundir.read_json(str(tmp_path / "none.json")) is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PodnetError, match="cannot read"):
        _rundir.read_json(str(bad))


def test_remove_tolerates_missing(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    assert _rundir.remove(str(path)) is True
    assert _rundir.remove(str(path)) is False


def test_cache_round_trip_and_stale_detection(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    key = _rundir.state_key("pod1", "eth0")
    _rundir.save_cache(run_dir, key, {"netns_inode": [4, 100], "original": {"mac": "aa:bb:cc:dd:ee:ff"}})
    cache, stale = _rundir.load_cache(run_dir, key, [4, 100])
    assert not stale and cache["original"]["mac"] == "aa:bb:cc:dd:ee:ff"
    assert cache["version"] == _rundir.CACHE_VERSION and cache["key"] == key
    cache, stale = _rundir.load_cache(run_dir, key, [4, 101])  # the namespace was recreated
    assert cache is None and stale is True
    assert _rundir.load_cache(run_dir, "other__eth0", [4, 100]) == (None, False)


def test_cache_of_another_live_namespace_is_not_dropped(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    live = tmp_path / "ns-file"
    live.write_text("")
    st = os.stat(live)
    _rundir.save_cache(run_dir, "k__eth0", {"netns": str(live), "netns_inode": [st.st_dev, st.st_ino]})
    with pytest.raises(PodnetError, match="shares this state key"):
        _rundir.load_cache(run_dir, "k__eth0", [st.st_dev, st.st_ino + 1])
    assert os.path.exists(_rundir.cache_path(run_dir, "k__eth0"))


@given(st_text(min_size=1, max_size=60))
def test_netns_key_is_always_a_plain_file_name(netns):
    key = _rundir.netns_key(netns)
    assert key and "/" not in key and key not in (".", "..")
    assert all(c.isalnum() and c.isascii() or c in "_.-" for c in key)


def _hold_and_report(run_dir, netns, queue, release):
    with _rundir.pod_lock(run_dir, netns):
        queue.put("locked")
        release.wait(30)
    queue.put("released")


def test_pod_lock_serializes_processes(tmp_path):
    run_dir = str(tmp_path / "run")
    ctx = multiprocessing.get_context("fork")
    queue, release = ctx.Queue(), ctx.Event()
    holder = ctx.Process(target=_hold_and_report, args=(run_dir, "pod1", queue, release))
    holder.start()
    try:
        assert queue.get(timeout=30) == "locked"
        import fcntl
        fd = os.open(_rundir.lock_path(run_dir, "pod1"), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # another pod's namespace is not blocked
            with _rundir.pod_lock(run_dir, "pod2"):
                pass
            release.set()
            assert queue.get(timeout=30) == "released"
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now
        finally:
            os.close(fd)
    finally:
        release.set()
        holder.join(30)
    assert stat.S_IMODE(os.stat(_rundir.lock_path(run_dir, "pod1")).st_mode) == 0o600


# -- lease declarations and lease state -------------------------------------------------
def test_declaration_errors_name_every_field():
    with pytest.raises(PodnetError) as info:
        _rundir.validate_declaration(dict(declaration(), vm_mac="nope", ip="10.0.0.300", prefixlen=40, lease_time=1,
                                        search_domains=["-x"], mtu=20, tap="tap with space"))
    text = info.value.msg
    for field in ("vm_mac", "ip:", "prefixlen", "lease_time", "search_domains[0]", "mtu", "tap"):
        assert field in text, field


def test_state_written_atomically_root_only(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.write_lease_state(run_dir, "pod1__eth0", {"state": "bound"})
    path = _rundir.lease_state_path(run_dir, "pod1__eth0")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert _rundir.read_lease_state(run_dir, "pod1__eth0") == {"state": "bound"}
    assert [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")] == []
    assert _rundir.read_lease_state(run_dir, "other") is None
    decl_path = _rundir.write_declaration(run_dir, declaration())
    assert _rundir.read_declaration(decl_path)["ip"] == "10.244.1.10"
    assert _rundir.remove_declaration(run_dir, "pod1__eth0") and not _rundir.remove_declaration(run_dir, "pod1__eth0")
