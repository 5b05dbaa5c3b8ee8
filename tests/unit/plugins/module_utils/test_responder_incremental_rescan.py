# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp_responder: inotify events name what changed, and only that is looked at (no sockets).

A full rescan lists and stats every declaration and namespace; per inotify event it was most of
the responder's CPU per pod. Events on a declaration load or forget that pod only; an event in
/run/netns checks the pods on that entry; lost events fall back to the full rescan."""

from __future__ import annotations

import os
import struct

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as dr
from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_sockets as sockets
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir as rundir

from lib.pod_samples import declaration


@pytest.fixture
def responder(tmp_path):
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    r = dr.Responder(str(tmp_path / "run"), machine_id=str(machine_id))
    if r.inotify is None:
        pytest.skip("inotify unavailable")
    r.rescan_wanted = False
    yield r
    r.close()


def _not_a_namespace(tmp_path, name="ns-file"):
    """A netns path that exists but holds no namespace: the pod is kept, never served nor collected."""
    path = tmp_path / name
    path.write_text("")
    return str(path)


def _declare(responder, tmp_path, key="pod1__eth0", netns=None):
    decl = declaration(key=key, netns=netns or _not_a_namespace(tmp_path), netns_inode=None)
    return decl, rundir.save_declaration(responder.run_dir, decl)


def _event(wd, mask, name=b""):
    padded = name + b"\0" * (-len(name) % 16) if name else b""
    return struct.pack("=iIII", wd, mask, 0, len(padded)) + padded


def test_a_new_declaration_is_loaded_from_its_event_without_a_full_rescan(responder, tmp_path, monkeypatch):
    monkeypatch.setattr(responder, "rescan", lambda: pytest.fail("a full rescan"))
    decl, _path = _declare(responder, tmp_path)
    responder.on_inotify()
    assert list(responder.pods) == [decl["key"]]
    assert responder.pods[decl["key"]].decl == decl
    assert not responder.rescan_wanted


def test_a_deleted_declaration_forgets_its_pod_and_its_state(responder, tmp_path):
    decl, path = _declare(responder, tmp_path)
    responder.on_inotify()
    rundir.write_lease_state(responder.run_dir, decl["key"], {"version": 1, "key": decl["key"]})
    os.unlink(path)
    responder.on_inotify()
    assert responder.pods == {}
    assert rundir.read_lease_state(responder.run_dir, decl["key"]) is None
    assert not responder.rescan_wanted


def test_a_declaration_renamed_away_or_in(responder, tmp_path):
    decl, path = _declare(responder, tmp_path)
    responder.on_inotify()
    hidden = os.path.join(os.path.dirname(path), ".parked.json")
    os.rename(path, hidden)  # away: as if deleted (rescan skips hidden names)
    responder.on_inotify()
    assert responder.pods == {}
    os.rename(hidden, path)  # back in, under its own name
    responder.on_inotify()
    assert list(responder.pods) == [decl["key"]]


def test_a_declaration_renamed_to_another_key_is_not_trusted(responder, tmp_path):
    decl, path = _declare(responder, tmp_path)
    responder.on_inotify()
    os.rename(path, rundir.lease_path(responder.run_dir, "other__eth0"))
    responder.on_inotify()
    assert responder.pods == {}
    assert "other__eth0" in responder.bad_files


def test_a_changed_declaration_is_reloaded_and_a_bad_one_dropped(responder, tmp_path):
    decl, path = _declare(responder, tmp_path)
    responder.on_inotify()
    rundir.save_declaration(responder.run_dir, dict(decl, ip="10.244.1.11"))
    responder.on_inotify()
    assert responder.pods[decl["key"]].decl["ip"] == "10.244.1.11"
    with open(path + ".tmp", "w") as handle:
        handle.write('{"version": 1}')
    os.rename(path + ".tmp", path)
    responder.on_inotify()
    assert responder.pods == {}
    assert decl["key"] in responder.bad_files
    os.unlink(path)
    responder.on_inotify()
    assert decl["key"] not in responder.bad_files  # as the full rescan forgets a bad file that is gone


def test_temp_files_are_not_looked_at(responder, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(responder, "_load_declaration", lambda key, path: seen.append(key))
    with open(os.path.join(responder.leases_dir, ".tmp-x.json"), "w") as handle:
        handle.write("{}")
    responder.on_inotify()
    assert seen == [] and not responder.rescan_wanted


def test_a_namespace_event_checks_the_pods_on_that_entry(responder, tmp_path, monkeypatch):
    pods = {}
    for key, netns in (("a__eth0", "/run/netns/pch-a"), ("b__eth0", "/var/run/netns/pch-b"),
                       ("c__eth0", "/run/netns/pch-c"), ("d__eth0", _not_a_namespace(tmp_path, "elsewhere"))):
        pods[key] = dr.Pod(key, declaration(key=key, netns=netns), None)
    responder.pods.update(pods)
    checked = []
    monkeypatch.setattr(responder, "check_pod", lambda pod: checked.append(pod.key))
    events = [(-7, sockets.IN_DELETE, "pch-a"), (-7, sockets.IN_CREATE, "pch-b")]
    monkeypatch.setattr(responder.inotify, "read_events", lambda: events)
    monkeypatch.setitem(responder.inotify.watches, dr.NETNS_DIR, -7)
    responder.on_inotify()
    # The two entries named, and the pod whose netns is on no /run/netns path (as the full rescan did).
    assert sorted(checked) == ["a__eth0", "b__eth0", "d__eth0"]
    assert not responder.rescan_wanted


@pytest.mark.parametrize("events", [None, [(12345, sockets.IN_CREATE, "x.json")], [(-1, sockets.IN_IGNORED, "")]],
                         ids=["lost events", "unknown watch", "event on the directory itself"])
def test_what_names_no_file_falls_back_to_a_full_rescan(responder, monkeypatch, events):
    monkeypatch.setattr(responder.inotify, "read_events", lambda: events)
    monkeypatch.setattr(responder, "rescan_some", lambda *a: pytest.fail("acted on a partial view"))
    responder.on_inotify()
    assert responder.rescan_wanted


def test_an_overflowed_queue_reads_as_lost_events():
    events = []
    assert sockets.parse_events(_event(1, sockets.IN_CREATE, b"a.json") + _event(-1, sockets.IN_Q_OVERFLOW), events)
    events = []
    assert not sockets.parse_events(_event(1, sockets.IN_CREATE, b"a.json") + _event(2, sockets.IN_DELETE, b"pod"), events)
    assert events == [(1, sockets.IN_CREATE, "a.json"), (2, sockets.IN_DELETE, "pod")]
    assert sockets.parse_events(_event(1, sockets.IN_CREATE, b"a.json")[:-3], [])  # cut short: never trusted


def test_a_real_overflow_falls_back_to_a_full_rescan(tmp_path):
    """The kernel's own IN_Q_OVERFLOW: more events than max_queued_events."""
    try:
        limit = int(open("/proc/sys/fs/inotify/max_queued_events").read())
    except OSError:
        pytest.skip("no inotify limits")
    if limit > 20000:
        pytest.skip("max_queued_events too large to overflow quickly")
    ino = sockets.Inotify()
    try:
        folder = tmp_path / "d"
        folder.mkdir()
        ino.watch(str(folder), sockets.IN_CREATE | sockets.IN_DELETE)
        path = folder / "f"
        for _round in range(limit // 2 + 10):
            path.touch()
            path.unlink()
        assert ino.read_events() is None
    finally:
        ino.close()


def test_events_that_fit_one_read_take_one_read(tmp_path, monkeypatch):
    """No second read only to hear EAGAIN: the next event would have fitted in the first."""
    ino = sockets.Inotify()
    try:
        ino.watch(str(tmp_path), sockets.IN_CREATE)
        (tmp_path / "a.json").touch()
        (tmp_path / "b.json").touch()
        reads = []
        real = os.read
        monkeypatch.setattr(os, "read", lambda fd, size: reads.append(size) or real(fd, size))
        assert [name for _wd, _mask, name in ino.read_events()] == ["a.json", "b.json"]
        assert len(reads) == 1
        monkeypatch.undo()
        assert ino.read_events() == []
    finally:
        ino.close()
