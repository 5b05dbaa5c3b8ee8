# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_responder_control.ensure_responder (``responder: auto``) where systemd knows podnet-dhcpd.service.

Issue 18: with the unit installed but stopped or failed, ``responder: auto`` used to start an
unmanaged, unsandboxed responder, which then held the pidfile the unit needs. Where systemd is
PID 1 and has the unit, it must never start one - in check mode neither - and must say which
unit to start. The systemd paths are injected: nothing here touches the machine's systemd.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_control as control
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

UNIT = "podnet-dhcpd.service"


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A node's paths under tmp_path: run dir, installed code, systemd's runtime dir and unit dirs;
    spawn_daemon records its calls instead of starting anything."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    code = tmp_path / "lib"
    responder = code / control.RESPONDER_RELPATH
    responder.parent.mkdir(parents=True)
    responder.write_text("# the node role's copy\n")
    etc = tmp_path / "etc-systemd-system"
    lib = tmp_path / "lib-systemd-system"
    etc.mkdir()
    lib.mkdir()
    spawned = []

    def fake_spawn(run_dir_, pidfile, log_file, python=None, pythonpath=None, timeout=10.0):
        spawned.append({"run_dir": run_dir_, "pidfile": pidfile, "pythonpath": pythonpath})
        return 4242

    monkeypatch.setattr(control, "spawn_daemon", fake_spawn)

    class Node:
        params = {"run_dir": str(run_dir), "responder_pythonpath": str(code),
                  "responder_log_file": str(tmp_path / "podnet-dhcpd.log")}
        pidfile = str(run_dir / "podnet-dhcpd.pid")
        systemd_dir = tmp_path / "run-systemd-system"
        unit_dirs = (str(etc), str(lib))

        def __init__(self):
            self.etc, self.lib, self.spawned = etc, lib, spawned

        def boot_systemd(self):
            self.systemd_dir.mkdir()

        def install_unit(self, where=None, enabled=False):
            where = where or self.etc
            path = where / UNIT
            path.write_text("[Service]\nExecStart=/usr/local/sbin/podnet-dhcpd\n")
            if enabled:
                wants = self.etc / "multi-user.target.wants"
                wants.mkdir(exist_ok=True)
                (wants / UNIT).symlink_to(path)
            return path

        def ensure(self, check_mode=False, unit_grace=0.0):
            return control.ensure_responder(self.params, check_mode, systemd_dir=str(self.systemd_dir),
                                            unit_dirs=self.unit_dirs, unit_grace=unit_grace)

    return Node()


@pytest.mark.parametrize("check_mode", [False, True])
def test_unit_known_to_systemd_but_stopped_is_an_error_not_a_second_responder(node, check_mode):
    node.boot_systemd()
    path = node.install_unit(enabled=True)
    with pytest.raises(PodnetError) as caught:
        node.ensure(check_mode=check_mode)
    msg = caught.value.msg
    assert UNIT in msg and f"`systemctl start {UNIT}`" in msg
    assert str(path) in msg and "enabled" in msg and node.pidfile in msg
    assert caught.value.details["unit"] == UNIT and caught.value.details["unit_state"] == "enabled"
    assert node.spawned == []


def test_unit_in_the_vendor_dir_disabled_counts_too(node):
    node.boot_systemd()
    path = node.install_unit(where=node.lib)
    with pytest.raises(PodnetError, match="disabled") as caught:
        node.ensure()
    assert str(path) in caught.value.msg and node.spawned == []


def test_masked_unit_says_unmask_first(node):
    node.boot_systemd()
    (node.etc / UNIT).symlink_to(os.devnull)
    with pytest.raises(PodnetError) as caught:
        node.ensure()
    assert caught.value.details["unit_state"] == "masked"
    assert f"`systemctl unmask {UNIT} && systemctl start {UNIT}`" in caught.value.msg
    assert node.spawned == []


def test_a_running_responder_is_found_whatever_systemd_knows(node):
    node.boot_systemd()
    node.install_unit(enabled=True)
    fd = os.open(node.pidfile, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"777\n")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert node.ensure() == (None, 777)
        assert node.ensure(check_mode=True) == (None, 777)
    finally:
        os.close(fd)
    assert node.spawned == []


def test_a_unit_started_a_moment_ago_is_waited_for(node):
    """The node role's handler restarts the unit just before the module runs: its responder takes the
    pidfile a moment later. That is no error, and still no second responder."""
    node.boot_systemd()
    node.install_unit(enabled=True)
    fd = os.open(node.pidfile, os.O_RDWR | os.O_CREAT, 0o600)
    timer = threading.Timer(0.3, lambda: (os.write(fd, b"778\n"), fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)))
    timer.start()
    try:
        started = time.monotonic()
        assert node.ensure(check_mode=True, unit_grace=5.0) == (None, 778)
        assert time.monotonic() - started < 3.0
    finally:
        timer.join()
        os.close(fd)
    assert node.spawned == []


def test_the_unit_grace_is_bounded(node):
    node.boot_systemd()
    node.install_unit()
    started = time.monotonic()
    with pytest.raises(PodnetError):
        node.ensure(unit_grace=0.5)
    assert 0.5 <= time.monotonic() - started < 3.0 and node.spawned == []


def test_systemd_without_the_unit_starts_the_daemon(node):
    """systemd is PID 1 but the role ran with node_service_manager=daemon (no unit): as before."""
    node.boot_systemd()
    text, pid = node.ensure()
    assert pid == 4242 and text.startswith("start podnet-dhcpd") and len(node.spawned) == 1
    assert node.spawned[0]["pidfile"] == node.pidfile


def test_no_systemd_ignores_a_unit_file_and_starts_the_daemon(node):
    """A container image may carry the unit without systemd running: nothing would start it."""
    node.install_unit(enabled=True)
    text, pid = node.ensure()
    assert pid == 4242 and len(node.spawned) == 1


def test_check_mode_without_systemd_predicts_the_start(node):
    text, pid = node.ensure(check_mode=True)
    assert text.startswith("start podnet-dhcpd") and pid is None and node.spawned == []


def test_systemd_unit_lookup_order(tmp_path):
    runtime = tmp_path / "run-systemd"
    first, second = tmp_path / "a", tmp_path / "b"
    for directory in (first, second):
        directory.mkdir()
        (directory / UNIT).write_text("")
    dirs = (str(first), str(second))
    assert control.systemd_unit(str(runtime), dirs) is None  # systemd is not PID 1
    runtime.mkdir()
    assert control.systemd_unit(str(runtime), dirs) == str(first / UNIT)
    assert control.systemd_unit(str(runtime), (str(tmp_path / "none"),)) is None


def test_default_paths_are_systemds():
    assert control.SYSTEMD_RUNTIME_DIR == "/run/systemd/system"
    assert control.UNIT_DIRS[0] == "/etc/systemd/system"  # where the node role installs the unit
    assert "/usr/lib/systemd/system" in control.UNIT_DIRS
