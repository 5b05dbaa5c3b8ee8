# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp_responder: the loop's own duties - counters, the event log, budgets (no sockets)."""

from __future__ import annotations

import fcntl
import glob
import json
import logging
import logging.handlers
import os
import socket
import re
import threading
from pathlib import Path

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as dr
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir as rundir
from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_pod as responder_pod
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import Pod

from lib.pod_samples import declaration


def test_sigusr1_reports_every_counter(responder, caplog):
    responder.pods["pod1__eth0"] = Pod("pod1__eth0", declaration(), None)
    responder.stats["received"] = 7
    responder._on_usr1()
    assert responder.stats_wanted
    with caplog.at_level(logging.INFO, logger="podnet-dhcpd"):
        responder.report_stats()
    line = caplog.records[-1].getMessage()
    assert line.startswith("stats pods=1 serving=0 received=7 ")
    for name in responder.stats:
        assert f" {name}=" in line
    assert not responder.stats_wanted


def test_lease_events_survive_a_rotation_made_by_a_log_line(responder, tmp_path):
    """M4: the file handler rotates when any line fills the file - also a LOG line, which used to
    leave the event stream on the closed file, every later lease event silently lost."""
    path = tmp_path / "podnet-dhcpd.log"
    handler = logging.handlers.RotatingFileHandler(str(path), maxBytes=400, backupCount=50)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    dr.LOG.addHandler(handler)
    level = dr.LOG.level
    dr.LOG.setLevel(logging.INFO)  # as main() sets it: the LOG lines must reach the file
    try:
        responder.event_stream = handler.stream
        responder.log_handler = handler
        pod = Pod("pod1__eth0", declaration(), None)
        for i in range(40):
            dr.LOG.info("padding line %d %s", i, "x" * 60)  # rotates the file under the event stream
            responder._write_event(pod, f"event {i}")
    finally:
        dr.LOG.setLevel(level)
        dr.LOG.removeHandler(handler)
        handler.close()
    text = "".join(open(f).read() for f in glob.glob(str(path) + "*"))
    assert "padding line 39" in text
    assert len(glob.glob(str(path) + "*")) > 2  # it did rotate, more than once
    missing = [i for i in range(40) if f"event {i}\n" not in text]
    assert missing == []
    assert responder.stats["lost_lines"] == 0


def test_a_lost_event_line_is_counted_and_said_once(responder, tmp_path, caplog):
    pod = Pod("pod1__eth0", declaration(), None)
    stream = open(tmp_path / "closed.log", "w")
    stream.close()
    responder.event_stream = stream
    with caplog.at_level(logging.ERROR, logger="podnet-dhcpd"):
        responder._write_event(pod, "one")
        responder._write_event(pod, "two")
    assert responder.stats["lost_lines"] == 2
    assert len([r for r in caplog.records if "cannot write lease events" in r.getMessage()]) == 1


# -- L3: the loop never waits on a file or a lock ---------------------------------------------------

def _in_thread(func, timeout=5.0):
    """Run ``func`` in a thread; True when it returned within ``timeout`` (a blocked loop would not)."""
    done = threading.Event()

    def body():
        try:
            func()
        finally:
            done.set()

    threading.Thread(target=body, daemon=True).start()
    return done.wait(timeout)


def test_collect_never_waits_for_a_pod_lock(responder, tmp_path):
    """A module run holding a gone pod's lock used to stall the loop - DHCP for every pod - until it
    let go. Now the pod is collected at a later rescan instead."""
    decl = declaration(netns=str(tmp_path / "gone-netns"), netns_inode=[4, 1])
    lease = rundir.save_declaration(responder.run_dir, decl)
    pod = Pod(decl["key"], decl, None)
    responder.pods[pod.key] = pod
    lock = rundir.lock_path(responder.run_dir, rundir.record_identity(decl))
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    holder = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        assert _in_thread(lambda: responder.collect(pod)), "collect() waited for the lock"
        assert os.path.exists(lease) and pod.key in responder.pods  # not collected while held
    finally:
        os.close(holder)
    responder.collect(pod)
    assert not os.path.exists(lease) and pod.key not in responder.pods


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_a_declaration_that_is_not_a_regular_file_is_refused_without_blocking(responder, tmp_path, kind, caplog):
    """Owner check and read on one descriptor, opened O_NOFOLLOW|O_NONBLOCK: a FIFO used to block the
    loop in open(); a link was followed to a file elsewhere, checked and read by path."""
    leases = os.path.join(responder.run_dir, rundir.LEASES)
    path = os.path.join(leases, "pod1__eth0.json")
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    else:
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps(declaration()))
        target.chmod(0o600)
        os.symlink(target, path)
    with caplog.at_level(logging.ERROR, logger="podnet-dhcpd"):
        assert _in_thread(responder.rescan), "rescan() blocked on the declaration"
    assert responder.pods == {}
    assert any("ignoring lease declaration" in r.getMessage() for r in caplog.records)


def test_version_is_the_collections(capsys):
    galaxy = (Path(__file__).resolve().parents[4] / "galaxy.yml").read_text()
    version = re.search(r"^version:\s*(\S+)", galaxy, re.M).group(1)
    with pytest.raises(SystemExit) as exited:
        dr.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"podnet-dhcpd {version}"


class _ClosableSocket:
    def __init__(self):
        self.real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()


def test_socket_lines_obey_the_pods_log_budget(responder, monkeypatch):
    """M1's loop reopened a pod's socket every second, two lines each time outside any budget: now
    its socket lines count against the pod's own line budget, as its lease events do."""
    lines = []
    monkeypatch.setattr(responder, "_write_event", lambda pod, text, *args: lines.append(text))
    pod = Pod("pod1__eth0", declaration(), None)
    for _cycle in range(100):
        pod.sock = _ClosableSocket()
        responder.close_socket(pod, "send failed")
    assert lines[0] == "socket closed: send failed"
    assert len(lines) == responder_pod.LOG_LINES_PER_WINDOW
    assert responder.stats["suppressed_lines"] == 100 - responder_pod.LOG_LINES_PER_WINDOW


def _denying(real, denied_path):
    """``real`` (os.stat, os.open), except that ``denied_path`` fails as a ptrace-protected /proc path does."""
    def call(path, *args, **kwargs):
        if str(path) == denied_path:
            raise PermissionError(1, "Operation not permitted")
        return real(path, *args, **kwargs)
    return call


def test_a_namespace_we_may_not_open_is_not_a_gone_one(responder, tmp_path, monkeypatch, caplog):
    """Under the unit (ProtectProc=noaccess, no CAP_SYS_PTRACE) a /proc/PID/ns/net of another user
    fails with EACCES/EPERM. Any error used to read as "namespace gone": the pod's records - the
    only copy of what `absent` restores - were collected. Only a missing path means gone."""
    netns = tmp_path / "proc-ns-net"
    netns.write_text("")
    decl = declaration(netns=str(netns), netns_inode=[4, 1])
    lease = rundir.save_declaration(responder.run_dir, decl)
    pod = Pod(decl["key"], decl, None)
    responder.pods[pod.key] = pod
    monkeypatch.setattr(os, "stat", _denying(os.stat, str(netns)))
    monkeypatch.setattr(os, "open", _denying(os.open, str(netns)))
    with caplog.at_level(logging.WARNING, logger="podnet-dhcpd"):
        responder.rescan()
    monkeypatch.undo()
    assert os.path.exists(lease) and pod.key in responder.pods
    assert any("Operation not permitted" in r.getMessage() for r in caplog.records)


def test_identity_refuses_to_guess_when_it_may_not_open_the_namespace(monkeypatch):
    from ansible_collections.virtnet.podnet.plugins.module_utils import _netns
    from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

    def denied(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(_netns.os, "open", denied)
    with pytest.raises(PodnetError, match="cannot tell whether network namespace /proc/1/ns/net still exists"):
        _netns.identity("/proc/1/ns/net")
    monkeypatch.undo()
    assert _netns.identity("/nonexistent/ns/net") is None


def test_ensure_daemon_never_starts_a_second_responder_where_systemd_has_the_unit(tmp_path, monkeypatch, capsys):
    from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_control as control
    unit = tmp_path / "podnet-dhcpd.service"
    unit.write_text("[Service]\n")
    monkeypatch.setattr(control, "systemd_unit", lambda *args, **kwargs: str(unit))
    monkeypatch.setattr(control, "spawn_daemon", lambda *args, **kwargs: pytest.fail("spawned a responder"))
    code = dr.main(["--ensure-daemon", "--run-dir", str(tmp_path / "run"), "--pidfile", str(tmp_path / "pid"),
                    "--log-file", str(tmp_path / "log")])
    assert code == 1
    assert "systemctl start podnet-dhcpd.service" in capsys.readouterr().err


class _SlowClosingSocket(_ClosableSocket):
    """A packet socket whose close() blocks, as the kernel's does (an RCU grace period, ~16 ms)."""

    def __init__(self, release):
        super().__init__()
        self.release, self.closed = release, threading.Event()

    def close(self):
        self.release.wait(10)
        super().close()
        self.closed.set()


def test_closing_a_pods_socket_never_blocks_the_loop(responder):
    """Closing a bound packet socket waits for synchronize_net() in the kernel: ~16 ms each, measured,
    on the loop's one thread - a node draining 1,000 pods stopped DHCP for every other pod for ~16 s."""
    release = threading.Event()
    pod = Pod("pod1__eth0", declaration(), None)
    pod.sock = sock = _SlowClosingSocket(release)
    assert _in_thread(lambda: responder.close_socket(pod, "namespace gone"), timeout=5.0), \
        "close_socket() waited for the socket's close"
    assert pod.sock is None and not sock.closed.is_set()
    release.set()
    assert responder.closer.drain() and sock.closed.is_set(), "closed soon after, and before the responder exits"
