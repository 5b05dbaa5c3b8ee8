# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pods come and go under the collection: identity never reused, nothing left behind (issue 10).

Real namespaces, real netlink, a real responder process. Pods are deleted the way kubelet
deletes them: the namespace goes, nobody runs state=absent.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

import pytest

from integration.conftest import COLLECTIONS_ROOT, IS_ROOT
from lib import dhcpwire, standin
from lib.bindings import make_binding
from lib.netlab import link, sh, snapshot
from lib.waiting import wait_for

pytestmark = [pytest.mark.root, pytest.mark.skipif(not IS_ROOT, reason="needs root")]

if IS_ROOT:
    from ansible_collections.virtnet.podnet.plugins.module_utils import _netns, _pod_bridge, _rundir
    from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

TIMEOUT = 20.0


def params(pod, run_dir, **extra):
    return dict({"netns": pod.netns, "binding": make_binding(), "run_dir": run_dir}, **extra)


def present(p, check=False):
    return _pod_bridge.run(dict(p, state="present"), check_mode=check)


def absent(p, check=False):
    return _pod_bridge.run(dict(p, state="absent"), check_mode=check)


def files_of(run_dir):
    """Every file under the run dir but the responder's pidfile and the legacy-index marker."""
    out = []
    for top, _dirs, names in os.walk(run_dir):
        out += [os.path.relpath(os.path.join(top, n), run_dir) for n in names]
    return sorted(n for n in out if n not in ("podnet-dhcpd.pid", os.path.join("ids", ".indexed")))


def recreate(lab, pod):
    """Delete the pod's namespace without absent, and make a new pod of the same name and IP (as a
    rollout does); the new eth0 has a new MAC. Returns the new namespace's identity."""
    sh("ip", "netns", "del", pod.netns)
    sh("ip", "netns", "add", pod.netns)
    sh("ip", "-n", pod.netns, "link", "set", "lo", "up")
    veth = pod.host_veth + "r"  # the old peer goes with the old namespace, asynchronously
    sh("ip", "-n", lab.node, "link", "add", veth, "mtu", str(pod.mtu), "type", "veth", "peer", "name", "eth0",
       "netns", pod.netns)
    sh("ip", "-n", lab.node, "link", "set", veth, "master", "cni0", "up")
    sh("ip", "-n", pod.netns, "link", "set", "eth0", "mtu", str(pod.mtu), "up")
    sh("ip", "-n", pod.netns, "addr", "add", f"{pod.ip}/{pod.prefixlen}", "dev", "eth0")
    sh("ip", "-n", pod.netns, "route", "add", "default", "via", pod.gateway, "dev", "eth0")
    return _netns.identity(pod.netns_path)


def test_identity_is_the_namespace_cookie(lab):
    pod = lab.add_pod()
    ident = _netns.identity(pod.netns_path)
    assert ident["cookie"] is not None, "this kernel has SO_NETNS_COOKIE (Linux >= 5.14)"
    with _netns.entered(pod.netns) as (_ipr, _path, inside):
        assert inside == ident
    assert _netns.identity(f"/run/netns/{pod.netns}-gone") is None


def plumbed_then_recreated(lab, run_dir, keep_cookie):
    """A pod plumbed, deleted without absent and recreated under its name; its old record rewritten
    with the new namespace's inode, as if the kernel had reused the number (it does, but not on
    demand). Returns ``(params, old record, new identity, the new pod before, its eth0 MAC)``."""
    pod = lab.add_pod()
    p = params(pod, run_dir)
    key = present(p)["key"]
    old = json.load(open(_rundir.cache_path(run_dir, key)))
    new_ident = recreate(lab, pod)
    before, new_mac = snapshot(pod.netns), link(pod.netns, "eth0")["address"]
    old["netns_inode"] = new_ident["inode"]
    if not keep_cookie:
        del old["netns_cookie"]  # as 0.1 wrote it
    _rundir.atomic_write_json(_rundir.cache_path(run_dir, key), old)
    return p, old, new_ident, before, new_mac


def test_a_recreated_pod_never_takes_the_old_pods_record(lab, run_dir):
    """A record keyed by inode alone would give the new pod the old pod's IP and MAC, or refuse it
    ("plumbed under another name"): here only the cookie tells the two namespaces apart."""
    p, old, new_ident, before, new_mac = plumbed_then_recreated(lab, run_dir, keep_cookie=True)
    _rundir.register(run_dir, "proc-1-ns-net__eth0", {"inode": new_ident["inode"], "cookie": None}, "eth0")
    result = present(p)
    assert result["vm_mac"] == new_mac != old["original"]["mac"], "the new pod got the old pod's MAC"
    record = json.load(open(result["cache_path"]))
    assert record["netns_cookie"] == new_ident["cookie"]
    assert any("recorded for a namespace that is gone" in h for h in result["housekeeping"])
    absent(p)
    assert snapshot(p["netns"]) == before, "absent put the old pod's configuration on the new pod"


def test_a_record_of_01_with_a_reused_inode_is_told_apart_by_the_live_mac(lab, run_dir):
    """Records written by 0.1 have no cookie: the inode plus the live pod interface's MAC decide."""
    p, old, _new_ident, before, new_mac = plumbed_then_recreated(lab, run_dir, keep_cookie=False)
    result = present(p)
    assert result["vm_mac"] == new_mac != old["original"]["mac"]
    absent(p)
    assert snapshot(p["netns"]) == before


def test_two_names_of_one_namespace_share_a_lock_and_a_record(lab, run_dir):
    pod = lab.add_pod()
    holder = subprocess.Popen(["ip", "netns", "exec", pod.netns, "sleep", "60"])
    try:
        by_path = f"/proc/{holder.pid}/ns/net"
        wait_for(lambda: _netns.identity(by_path) == _netns.identity(pod.netns_path), TIMEOUT, "the holder to enter the pod")
        assert _rundir.lock_path(run_dir, _netns.identity(by_path)) == \
            _rundir.lock_path(run_dir, _netns.identity(pod.netns_path))
        present(params(pod, run_dir))
        with pytest.raises(PodnetError, match="plumbed under another name of the same namespace"):
            present(dict(params(pod, run_dir), netns=by_path))
    finally:
        holder.kill()
        holder.wait(TIMEOUT)
    absent(params(pod, run_dir))


def test_absent_on_a_vanished_pod_removes_every_record_under_its_lock(lab, run_dir):
    pod = lab.add_pod()
    p = params(pod, run_dir)
    present(p)
    assert files_of(run_dir), "present wrote no records: this test shows nothing"
    sh("ip", "netns", "del", pod.netns)
    predicted = absent(p, check=True)
    assert predicted["housekeeping"] and files_of(run_dir)
    result = absent(p)
    assert result["changed"] is False and result["housekeeping"]
    assert files_of(run_dir) == [], "records of a deleted pod outlived it"
    assert absent(p)["housekeeping"] == [], "a second absent has nothing left to do"


def test_a_replug_leaves_only_the_live_pods_files(lab, run_dir):
    pods = [lab.add_pod(), lab.add_pod(), lab.add_pod()]
    for pod in pods:
        present(params(pod, run_dir))
    count = len(files_of(run_dir))
    for pod in pods:
        absent(params(pod, run_dir))
    assert files_of(run_dir) == [], "absent left files behind (locks, index entries)"
    for pod in pods:
        present(params(pod, run_dir))
    assert len(files_of(run_dir)) == count


@pytest.mark.parametrize("netns, message", [
    ("pod\x00x", "a control character"),
    ("/run/netns/pod\x00x", "a control character"),
    ("/run/netns/pod\nx", "a control character"),
    ("x" * 300, "not a valid namespace name"),
    ("/run/netns/" + "x" * 300, "cannot be looked up"),
])
def test_bad_netns_values_are_clear_errors(run_dir, netns, message):
    with pytest.raises(PodnetError, match=message):
        present({"netns": netns, "binding": make_binding(), "run_dir": run_dir})


def test_a_dot_named_pod_is_served(lab, run_dir):
    """A netns named '.pod…' validates; its declaration must not be a hidden file the responder skips."""
    pod = lab.add_pod()
    dotted = "." + pod.netns
    sh("ip", "netns", "attach", dotted, str(_pid_in(pod)))  # a second name of the same namespace
    try:
        result = present(dict(params(pod, run_dir), netns=dotted))
        assert not os.path.basename(result["lease_path"]).startswith(".")
        absent(dict(params(pod, run_dir), netns=dotted))
    finally:
        sh("ip", "netns", "del", dotted, check=False)


def _pid_in(pod):
    proc = subprocess.Popen(["ip", "netns", "exec", pod.netns, "sleep", "30"])
    _PIDS.append(proc)
    wait_for(lambda: _netns.identity(f"/proc/{proc.pid}/ns/net") == _netns.identity(pod.netns_path),
             TIMEOUT, "a process in the pod")
    return proc.pid


_PIDS = []


@pytest.fixture(autouse=True)
def _reap():
    yield
    while _PIDS:
        proc = _PIDS.pop()
        proc.kill()
        proc.wait(TIMEOUT)


# -- the responder forgets deleted pods ------------------------------------------------------

@pytest.fixture
def responder(run_dir, tmp_path):
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    log = tmp_path / "dhcpd.log"
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder",
                             "--run-dir", run_dir, "--log-file", str(log)], env=env)
    yield proc, log
    proc.terminate()
    proc.wait(TIMEOUT)


def fd_targets(pid):
    """What the process's descriptors point at ("socket:[inode]", paths); one closed meanwhile is left out."""
    targets = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return targets


def packet_socket_in(pod, pid):
    """The one packet socket of the pod's namespace that ``pid`` holds, as its fd target."""
    lines = sh("ip", "netns", "exec", pod.netns, "cat", "/proc/net/packet").stdout.splitlines()[1:]
    held = {f"socket:[{line.split()[-1]}]" for line in lines if line.strip()} & fd_targets(pid)
    assert len(held) == 1, (lines, held)
    return held.pop()


def collected(run_dir, proc, log):
    """The pod's records are gone; a responder that died or left some says so, with its log."""
    left = files_of(run_dir)
    if left and proc.poll() is not None:
        raise AssertionError(f"the responder exited ({proc.returncode}) leaving {left}:\n{log.read_text()}")
    return not left


def test_the_responder_closes_and_collects_a_deleted_pod(lab, run_dir, responder):
    proc, log = responder
    pod = lab.add_pod()
    present(params(pod, run_dir))
    wait_for(lambda: log.exists() and "serving on tap0" in log.read_text(), TIMEOUT, "the responder to serve the pod")
    # That socket, not a count of descriptors: a rescan holds a directory or a namespace open for a moment.
    sock = packet_socket_in(pod, proc.pid)
    sh("ip", "netns", "del", pod.netns)
    try:
        wait_for(lambda: collected(run_dir, proc, log), TIMEOUT, "the responder to collect the deleted pod's records")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: left {files_of(run_dir)}; responder log:\n{log.read_text()}") from None
    assert "records removed (namespace gone)" in log.read_text()
    assert sock not in fd_targets(proc.pid), "the pod's packet socket is still open"
    assert proc.poll() is None


NASTY = [None, True, 5, -1, 1.5, 2 ** 70, "", "x" * 300, "a\x00b", "\n", "../../etc", [], [None], [[1]], {}, {"dst": 5},
         [{"dst": "10.0.0.0/8", "gateway": "x"}], "0.0.0.0", "ff:ff:ff:ff:ff:ff", "/run/netns/nope"]


def test_bad_declarations_hurt_only_their_own_pod(lab, run_dir, responder):
    """Random garbage in 200 declarations beside a good one: the good pod is still served, the responder
    lives and logs no traceback (issue 10: "routes": 5 or a NUL in netns ended the process)."""
    proc, log = responder
    pod = lab.add_pod()
    decl = present(params(pod, run_dir))
    wait_for(lambda: log.exists() and "serving on tap0" in log.read_text(), TIMEOUT, "the responder to serve the pod")
    good = json.load(open(decl["lease_path"]))
    rng = random.Random(1410)
    for index in range(200):
        bad = dict(good, key=f"bad{index}__eth0")
        for field in rng.sample(sorted(good), rng.randint(1, 4)):
            if field != "key":
                bad[field] = rng.choice(NASTY)
        path = os.path.join(run_dir, "leases", f"bad{index}__eth0.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(bad, handle)
    os.kill(proc.pid, signal.SIGHUP)
    wait_for(lambda: log.read_text().count("ignoring lease declaration") >= 100, TIMEOUT, "the responder to read them")
    fd = standin.open_tap(pod.netns)
    try:
        os.write(fd, dhcpwire.client_frame(pod.mac, 1, 0xBADDEC1))
        reply = dhcpwire.read_reply(fd, 0xBADDEC1, timeout=10)
    finally:
        os.close(fd)
    assert reply is not None and reply[1]["yiaddr"] == pod.ip, "the good pod is no longer served"
    assert proc.poll() is None and "Traceback" not in log.read_text()
