# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_pod_bridge on real network namespaces: assertions on real netlink state (``ip -j``)."""

from __future__ import annotations

import json
import signal
import os
import stat
import socket
import subprocess
import sys
import threading
import time

import pytest

from integration.conftest import COLLECTIONS_ROOT, IS_ROOT, SUBPROCESS_TIMEOUT, finish, run_subprocess
from lib.bindings import make_binding
from lib.netlab import ip_json, link, link_exists, sh, snapshot

pytestmark = [pytest.mark.root, pytest.mark.skipif(not IS_ROOT, reason="needs root: creates network namespaces")]

if IS_ROOT:
    from ansible_collections.virtnet.podnet.plugins.module_utils import _plumbing, _pod_bridge, _responder_control, _rundir
    from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
    from ansible_collections.virtnet.podnet.plugins.module_utils._rundir import cache_path, lease_path, lock_path
    from ansible_collections.virtnet.podnet.plugins.module_utils._netns import identity as netns_identity

CRASH_CODE = 86


def params(pod, run_dir, **extra):
    out = {"netns": pod.netns, "binding": make_binding(), "run_dir": run_dir}
    out.update(extra)
    return out


def present(p, check=False):
    return _pod_bridge.run(dict(p, state="present"), check_mode=check)


def absent(p, check=False):
    return _pod_bridge.run(dict(p, state="absent"), check_mode=check)


def addrs4(netns, dev):
    return [f"{a['local']}/{a['prefixlen']}" for e in ip_json(netns, "-4", "addr", "show", "dev", dev)
            for a in e.get("addr_info", [])]


def assert_plumbed(pod, result, delegate=True):
    """The pod as the issue wants it after present, from real `ip -j` views.

    With delegate_ip the pod identity (the default) renames the pod interface to eth0-nic and an inert
    link keeps eth0 with the pod's IP (tests/integration/test_pod_identity.py checks that side).
    """
    port = "eth0-nic" if delegate else "eth0"
    br, tap, eth = link(pod.netns, "k6t-eth0"), link(pod.netns, "tap0"), link(pod.netns, port)
    assert br["linkinfo"]["info_kind"] == "bridge"
    assert br["mtu"] == tap["mtu"] == eth["mtu"] == pod.mtu
    assert br["linkinfo"]["info_data"]["stp_state"] == 0
    assert br["linkinfo"]["info_data"]["forward_delay"] == 0
    assert br.get("inet6_addr_gen_mode", "none") == "none"
    assert "UP" in br["flags"] and "UP" in tap["flags"] and "UP" in eth["flags"]
    assert eth["master"] == "k6t-eth0" and tap["master"] == "k6t-eth0"
    assert eth["linkinfo"]["info_slave_data"]["learning"] is False
    assert eth["address"] != pod.mac and int(eth["address"][:2], 16) & 0x02  # locally administered
    assert tap["linkinfo"]["info_kind"] == "tun" and tap["linkinfo"]["info_data"]["type"] == "tap"
    assert tap["linkinfo"]["info_data"]["persist"] is True
    assert result["vm_mac"] == pod.mac and result["tap"] == "tap0" and result["mtu"] == pod.mtu
    assert result["pod_port"] == port
    if delegate:
        assert addrs4(pod.netns, port) == []
        assert addrs4(pod.netns, "eth0") == [f"{pod.ip}/{pod.prefixlen}"]  # kubelet's view
        assert result["ip"] == pod.ip and result["prefixlen"] == pod.prefixlen and result["gateway"] == pod.gateway
    else:
        assert addrs4(pod.netns, "eth0") == [f"{pod.ip}/{pod.prefixlen}"]


# -- present / absent, idempotence, check mode, diff, undo -------------------------

@pytest.mark.parametrize("calico", [False, True], ids=["flannel-24", "calico-32"])
def test_present_idempotent_check_diff_and_exact_undo(lab, run_dir, calico):
    pod = lab.add_pod(calico=calico)
    p = params(pod, run_dir, tap_uid=107, tap_gid=107, dns_servers=["10.96.0.10"],
               search_domains=["default.svc.cluster.local"], hostname="vm1", lease_time=3600)
    before = snapshot(pod.netns)

    predicted = present(p, check=True)
    assert snapshot(pod.netns) == before, "check mode changed the pod"
    assert not os.path.exists(cache_path(run_dir, predicted["key"]))
    assert predicted["changed"] and predicted["changes"]

    real = present(p)
    assert real["changed"] and real["warnings"] == [] and real["housekeeping"] == []
    assert real["changes"] == predicted["changes"]
    assert real["diff"] == predicted["diff"]
    assert_plumbed(pod, real)
    # sysfs gives the numeric ids (`ip -j` would resolve them to names where they exist)
    owner = [lab.run(pod.netns, "cat", f"/sys/class/net/tap0/{attr}").stdout.strip() for attr in ("owner", "group")]
    assert owner == ["107", "107"]

    # diff: links and addresses before and after
    assert real["diff"]["before"]["addresses"]["eth0"] == [f"{pod.ip}/{pod.prefixlen}"]
    assert real["diff"]["after"]["addresses"]["eth0-nic"] == []
    assert real["diff"]["after"]["addresses"]["eth0"] == [f"{pod.ip}/{pod.prefixlen}"]
    assert real["diff"]["after"]["links"]["eth0-nic"]["master"] == "k6t-eth0"
    assert real["diff"]["before"]["links"]["eth0"]["mac"] == pod.mac
    assert set(real["diff"]["after"]["links"]) == {"eth0", "eth0-nic", "k6t-eth0", "tap0"}

    # routes for option 121: link route first, default last
    routes = real["routes"]
    assert routes[-1] == {"dst": "0.0.0.0/0", "gateway": pod.gateway}
    if calico:
        assert routes[0] == {"dst": "169.254.1.1/32", "gateway": None}
    else:
        assert routes[0] == {"dst": f"{pod.ip.rsplit('.', 1)[0]}.0/24", "gateway": None}
    assert f"mac={pod.mac}" in real["qemu_args"][3] and "ifname=tap0,script=no,downscript=no" in real["qemu_args"][1]
    assert "<interface type='ethernet'>" in real["libvirt_interface_xml"] and pod.mac in real["libvirt_interface_xml"]

    # the lease declaration the responder reads
    with open(lease_path(run_dir, real["key"])) as handle:
        lease = json.load(handle)
    assert lease["vm_mac"] == pod.mac and lease["ip"] == pod.ip and lease["prefixlen"] == pod.prefixlen
    assert lease["gateway"] == pod.gateway and lease["mtu"] == pod.mtu and lease["routes"] == routes
    assert lease["dns_servers"] == ["10.96.0.10"] and lease["hostname"] == "vm1" and lease["lease_time"] == 3600
    assert lease["netns"] == pod.netns_path and lease["bridge"] == "k6t-eth0" and lease["tap"] == "tap0"

    # root-only files
    for path in (cache_path(run_dir, real["key"]), lease_path(run_dir, real["key"])):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for sub in ("", "pods", "leases", "locks"):
        assert stat.S_IMODE(os.stat(os.path.join(run_dir, sub)).st_mode) == 0o700

    plumbed = snapshot(pod.netns)
    again = present(p)
    assert again["changed"] is False and again["changes"] == []
    assert present(p, check=True)["changed"] is False
    assert snapshot(pod.netns) == plumbed

    info = _pod_bridge.info(p)
    assert info["plumbed"] and info["in_sync"] and info["drift"] == []
    assert info["original"]["mac"] == pod.mac and info["lease"]["ip"] == pod.ip

    predicted_undo = absent(p, check=True)
    assert snapshot(pod.netns) == plumbed, "check mode changed the pod"
    undo = absent(p)
    assert undo["changed"] and undo["changes"] == predicted_undo["changes"]
    assert undo["diff"] == predicted_undo["diff"]
    assert snapshot(pod.netns) == before, "absent did not restore the pod exactly"
    assert not os.path.exists(cache_path(run_dir, real["key"]))
    assert not os.path.exists(lease_path(run_dir, real["key"]))
    assert absent(p)["changed"] is False


def test_ethernet_mode_leaves_addresses(lab, run_dir):
    pod = lab.add_pod()
    p = params(pod, run_dir, binding=make_binding(delegate_ip=False))
    before = snapshot(pod.netns)
    result = present(p)
    assert_plumbed(pod, result, delegate=False)
    assert result["ip"] is None and result["lease_path"] is None
    assert not os.path.exists(lease_path(run_dir, result["key"]))
    assert present(p)["changed"] is False
    absent(p)
    assert snapshot(pod.netns) == before


def test_extra_routes_and_secondary_address_restored_with_protocol_and_scope(lab, run_dir):
    pod = lab.add_pod()
    sh("ip", "-n", pod.netns, "addr", "add", f"{pod.ip.rsplit('.', 1)[0]}.200/24", "dev", "eth0")
    sh("ip", "-n", pod.netns, "route", "add", "10.96.0.0/12", "via", pod.gateway, "dev", "eth0", "proto", "static",
       "metric", "50")
    sh("ip", "-n", pod.netns, "route", "add", "192.0.2.0/24", "dev", "eth0", "scope", "link", "proto", "dhcp")
    sh("ip", "-n", pod.netns, "route", "add", "198.51.100.0/24", "via", pod.gateway, "dev", "eth0", "table", "100")
    before = snapshot(pod.netns)
    p = params(pod, run_dir)
    present(p)
    assert ip_json(pod.netns, "-4", "route", "show", "dev", "eth0-nic") == []
    absent(p)
    assert snapshot(pod.netns) == before


def test_ipv6_recorded_kept_for_kubelet_and_restored(lab, run_dir):
    pod = lab.add_pod()
    sh("ip", "-n", pod.netns, "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
    before = snapshot(pod.netns)
    p = params(pod, run_dir)
    result = present(p)
    assert "fd00:10::10" in [a["address"] for a in result["original"]["ipv6"]]
    v6 = [a["local"] for e in ip_json(pod.netns, "-6", "addr", "show", "dev", "eth0") for a in e["addr_info"]]
    assert "fd00:10::10" in v6
    bridge_v6 = ip_json(pod.netns, "-6", "addr", "show", "dev", "k6t-eth0")
    assert not bridge_v6 or not bridge_v6[0].get("addr_info"), "the bridge must not autoconfigure IPv6"
    absent(p)
    assert snapshot(pod.netns) == before


def test_pod_mtu_taken_and_mtu_and_up_state_restored(lab, run_dir):
    pod = lab.add_pod(mtu=1400)
    p = params(pod, run_dir)
    before = snapshot(pod.netns)
    result = present(p)
    assert result["mtu"] == 1400 and link(pod.netns, "tap0")["mtu"] == 1400
    assert link(pod.netns, "k6t-eth0")["mtu"] == 1400
    # Someone changes the pod interface after plumbing: absent still restores the recorded state.
    sh("ip", "-n", pod.netns, "link", "set", "eth0-nic", "mtu", "1300")
    sh("ip", "-n", pod.netns, "link", "set", "eth0-nic", "down")
    undo = absent(p)
    assert any("restore MTU of eth0 to 1400" in c and "set eth0 up" in c for c in undo["changes"])
    assert snapshot(pod.netns) == before


def test_info_reports_drift(lab, run_dir):
    pod = lab.add_pod()
    p = params(pod, run_dir)
    present(p)
    sh("ip", "-n", pod.netns, "link", "del", "tap0")
    info = _pod_bridge.info(p)
    assert info["in_sync"] is False
    assert any("tap0" in d for d in info["drift"])
    repaired = present(p)
    assert repaired["changed"] and all("tap0" in c for c in repaired["changes"])
    assert _pod_bridge.info(p)["in_sync"] is True
    absent(p)


def test_absent_when_links_are_gone(lab, run_dir):
    pod = lab.add_pod()
    p = params(pod, run_dir)
    before = snapshot(pod.netns)
    present(p)
    sh("ip", "-n", pod.netns, "link", "del", "tap0")
    sh("ip", "-n", pod.netns, "link", "del", "k6t-eth0")
    result = absent(p)
    assert result["changed"]
    assert snapshot(pod.netns) == before


def test_absent_never_deletes_a_foreign_link_sharing_the_group(lab, run_dir):
    pod = lab.add_pod()
    p = params(pod, run_dir)
    present(p)
    group = str(_plumbing.link_group("k6t-eth0"))
    sh("ip", "-n", pod.netns, "link", "add", "foreign0", "group", group, "type", "veth", "peer", "name", "foreign1")
    result = absent(p)
    assert "delete tap tap0" in result["changes"] and "delete bridge k6t-eth0 (releases eth0-nic)" in result["changes"]
    assert link_exists(pod.netns, "foreign0") and link_exists(pod.netns, "foreign1")
    assert not link_exists(pod.netns, "tap0") and not link_exists(pod.netns, "k6t-eth0")


def test_absent_when_namespace_is_gone(lab, run_dir):
    pod = lab.add_pod()
    p = params(pod, run_dir)
    key = present(p)["key"]
    sh("ip", "netns", "del", pod.netns)
    lab.namespaces.remove(pod.netns)
    result = absent(p)
    assert result["changed"] is False
    assert not os.path.exists(cache_path(run_dir, key)) and not os.path.exists(lease_path(run_dir, key))
    assert absent(p)["changed"] is False


def test_absent_on_never_plumbed_pod_is_ok(lab, run_dir):
    pod = lab.add_pod()
    before = snapshot(pod.netns)
    result = absent(params(pod, run_dir))
    assert result["changed"] is False and snapshot(pod.netns) == before


def test_netns_by_proc_path(lab, run_dir):
    pod = lab.add_pod()
    holder = subprocess.Popen(["ip", "netns", "exec", pod.netns, "cat"], stdin=subprocess.PIPE)
    try:
        path = f"/proc/{holder.pid}/ns/net"
        # `ip netns exec` execs cat in the same pid once it entered the namespace
        deadline = time.monotonic() + 10
        while os.stat(path).st_ino != os.stat(pod.netns_path).st_ino:
            assert time.monotonic() < deadline, "ip netns exec did not enter the namespace"
            time.sleep(0.01)
        before = snapshot(pod.netns)
        p = params(pod, run_dir, netns=path)
        result = present(p)
        assert result["key"] == f"proc-{holder.pid}-ns-net__eth0"
        assert_plumbed(pod, result)
        absent(p)
        assert snapshot(pod.netns) == before
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


def test_name_and_run_netns_path_are_the_same_pod(lab, run_dir):
    pod = lab.add_pod()
    before = snapshot(pod.netns)
    by_name = params(pod, run_dir)
    by_path = params(pod, run_dir, netns=pod.netns_path)
    assert present(by_name)["key"] == present(by_path)["key"] == f"{pod.netns}__eth0"
    assert present(by_path)["changed"] is False
    assert absent(by_path)["changed"] is True
    assert snapshot(pod.netns) == before


def test_stale_cache_from_an_earlier_namespace_is_dropped(lab, run_dir):
    pod = lab.add_pod()
    p = params(pod, run_dir)
    key = present(p)["key"]
    with open(cache_path(run_dir, key)) as handle:
        cache = json.load(handle)
    absent(p)
    cache["netns_inode"], cache["netns_cookie"] = [0, 1], 1  # as if recorded for a namespace that no longer exists
    from ansible_collections.virtnet.podnet.plugins.module_utils._rundir import atomic_write_json
    atomic_write_json(cache_path(run_dir, key), cache)
    result = present(p)
    assert result["changed"]
    assert_plumbed(pod, result)
    absent(p)


# -- bad input: one clear message, nothing changed -----------------------------------

def _bad(lab, run_dir, setup):
    pod = lab.add_pod(**setup.get("pod", {}))
    if setup.get("prepare"):
        setup["prepare"](pod)
    before = snapshot(pod.netns)
    p = params(pod, run_dir)
    p.update(setup.get("params", {}))
    if "binding" in setup:
        p["binding"] = setup["binding"]
    with pytest.raises(PodnetError) as err:
        present(p)
    assert snapshot(pod.netns) == before
    assert not os.path.isdir(os.path.join(run_dir, "pods")) or os.listdir(os.path.join(run_dir, "pods")) == []
    return err.value


BAD_INPUTS = {
    "missing-namespace": ({"params": {"netns": "pnt-no-such-pod"}}, "not found"),
    "missing-pod-interface": ({"binding": make_binding(pod_interface="eth1")}, "eth1 not found"),
    "enslaved-to-other-master": ({"prepare": lambda pod: (
        sh("ip", "-n", pod.netns, "link", "add", "br-other", "type", "bridge"),
        sh("ip", "-n", pod.netns, "link", "set", "eth0", "master", "br-other"))}, "enslaved to br-other"),
    "tap-name-too-long": ({"binding": make_binding(tap="tap-name-far-too-long")}, "binding.tap"),
    "pod-interface-name-too-long": ({"binding": make_binding(pod_interface="eth0-much-too-long")},
                                    "binding.pod_interface"),
    "delegate-without-any-address": ({"pod": {"with_ip": False}}, "no IPv4 and no global IPv6 address"),
    "ipv4-without-gateway": ({"pod": {"with_gateway": False}}, "no route through a gateway"),
    "calico-without-gateway": ({"pod": {"calico": True, "with_gateway": False}}, "no route through a gateway"),
    "binding-not-from-plan": ({"binding": {"tap": "tap0", "bridge": "k6t-eth0"}}, "binding"),
    "binding-inconsistent": ({"binding": make_binding(connectivity="ethernet")}, "binding.connectivity"),
    "tap-exists-not-a-tap": ({"prepare": lambda pod: sh("ip", "-n", pod.netns, "link", "add", "tap0", "type",
                                                        "bridge")}, "not a tap"),
    "bad-dns-server": ({"params": {"dns_servers": ["not-an-ip"]}}, "dns_servers[0]"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_one_message_nothing_changed(lab, run_dir, case):
    setup, expected = BAD_INPUTS[case]
    error = _bad(lab, run_dir, setup)
    assert expected in error.msg
    assert "\n" not in error.msg, f"one line, not several: {error.msg!r}"
    assert "Traceback" not in error.msg


# -- crash after every step -----------------------------------------------------------

def _ip_is_safe(pod, run_dir, key):
    """The pod's IP is on eth0 or recorded in the cache: never lost."""
    if link_exists(pod.netns, "eth0") and f"{pod.ip}/{pod.prefixlen}" in addrs4(pod.netns, "eth0"):
        return True
    with open(cache_path(run_dir, key)) as handle:
        cache = json.load(handle)
    return any(a["address"] == pod.ip for a in cache["original"]["ipv4"])


def _crash(p, step):
    code, dummy, err = finish(run_subprocess(p, env={_pod_bridge.CRASH_ENV: step}))
    assert code == CRASH_CODE, f"expected a crash after {step}: {err}"


# Steps a fresh run never takes need drift first: (setup after a full present, state of the crashing run).
DRIFT_FIRST = {
    "absent_tap": (("link", "set", "tap0", "group", "default"), "absent"),
    "absent_bridge": (("link", "set", "tap0", "group", "default"), "absent"),
}


@pytest.mark.parametrize("then", ["present", "absent"])
@pytest.mark.parametrize("step", _plumbing.PRESENT_STEPS if IS_ROOT else [])
def test_crash_after_present_step(lab, run_dir, step, then):
    pod = lab.add_pod(calico=step in ("delegate", "lease"))
    p = dict(params(pod, run_dir), state="present")
    before = snapshot(pod.netns)
    key = _rundir.state_key(pod.netns, "eth0")
    if step in DRIFT_FIRST:
        present(p)
        sh("ip", "-n", pod.netns, *DRIFT_FIRST[step][0])
    _crash(p, step)
    assert _ip_is_safe(pod, run_dir, key)
    if then == "present":
        result = present(p)
        # A crash after the last (or only) step left nothing to do.
        assert result["changed"] == (step != "lease" and step not in DRIFT_FIRST)
        assert_plumbed(pod, result)
        assert present(p)["changed"] is False
        assert os.path.exists(lease_path(run_dir, key))
        absent(p)
    else:
        absent(p)
    assert snapshot(pod.netns) == before
    assert not os.path.exists(cache_path(run_dir, key))


@pytest.mark.parametrize("step", _plumbing.ABSENT_STEPS if IS_ROOT else [])
def test_crash_after_absent_step(lab, run_dir, step):
    pod = lab.add_pod(calico=True)
    p = params(pod, run_dir)
    before = snapshot(pod.netns)
    key = present(p)["key"]
    if step in DRIFT_FIRST:
        sh("ip", "-n", pod.netns, *DRIFT_FIRST[step][0])
    _crash(dict(p, state="absent"), step)
    assert _ip_is_safe(pod, run_dir, key) or step == "absent_cache"
    absent(p)
    assert snapshot(pod.netns) == before
    assert not os.path.exists(cache_path(run_dir, key))


# -- concurrency -----------------------------------------------------------------------

def _blocked_on(path):
    inode = os.stat(path).st_ino
    with open("/proc/locks") as handle:
        return any("->" in line and line.split()[6 if "->" in line.split()[1] else 5].endswith(f":{inode}")
                   for line in handle)


def test_concurrent_runs_serialize(lab, run_dir, tmp_path):
    pod = lab.add_pod()
    p = dict(params(pod, run_dir), state="present")
    fifo = tmp_path / "pause"
    os.mkfifo(fifo)
    first = run_subprocess(p, env={_pod_bridge.PAUSE_ENV: "bridge", _pod_bridge.PAUSE_FIFO_ENV: str(fifo)})
    opened = {}
    opener = threading.Thread(target=lambda: opened.setdefault("fd", os.open(fifo, os.O_WRONLY)), daemon=True)
    opener.start()
    opener.join(SUBPROCESS_TIMEOUT)  # returns once the first run sits paused, lock held
    assert "fd" in opened, "first run never reached its pause point"
    second = run_subprocess(p)
    lock = lock_path(run_dir, netns_identity(f"/run/netns/{pod.netns}"))
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    while not _blocked_on(lock):
        assert second.poll() is None, "second run finished while the first held the lock"
        assert time.monotonic() < deadline, "second run never waited on the lock"
        time.sleep(0.005)
    # The first run is mid-way (bridge only): the second waits instead of interleaving.
    assert link_exists(pod.netns, "k6t-eth0") and not link_exists(pod.netns, "tap0")
    os.close(opened["fd"])
    code1, r1, err1 = finish(first)
    code2, r2, err2 = finish(second)
    assert code1 == 0 and code2 == 0, (err1, err2)
    assert r1["changed"] and r2["changed"] is False and r2["changes"] == []
    assert_plumbed(pod, r1)
    absent(p)


# -- through ansible-playbook ------------------------------------------------------------

def stop_responder(run_dir):
    """Stop a responder the module started for this run dir, and wait until it is gone."""
    pidfile = os.path.join(run_dir, "podnet-dhcpd.pid")
    pid = _responder_control.running_pid(pidfile)
    if not pid:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _responder_control.running_pid(pidfile) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a state with a deadline: the process holds no event we can await
    assert not _responder_control.running_pid(pidfile), f"responder {pid} did not stop"


def test_ansible_playbook_present_check_idempotent_absent(lab, run_dir, tmp_path):
    pod = lab.add_pod()
    before = snapshot(pod.netns)
    out = tmp_path / "out"
    out.mkdir()
    playbook = tmp_path / "play.yml"
    playbook.write_text(f"""
- hosts: localhost
  gather_facts: false
  vars:
    netns: {pod.netns}
    run_dir: {run_dir}
  module_defaults:
    virtnet.podnet.vm_pod_bridge:
      responder_pythonpath: {COLLECTIONS_ROOT}
      responder_log_file: {run_dir}/podnet-dhcpd.log
  tasks:
    - name: plan
      virtnet.podnet.vm_network_plan:
        vm: {{kind: VM, metadata: {{name: vm1}}}}
      register: plan
    - name: predict
      virtnet.podnet.vm_pod_bridge:
        netns: "{{{{ netns }}}}"
        binding: "{{{{ plan.plan[0] }}}}"
        run_dir: "{{{{ run_dir }}}}"
        hostname: vm1
      check_mode: true
      diff: true
      register: predicted
    - name: plumb
      virtnet.podnet.vm_pod_bridge:
        netns: "{{{{ netns }}}}"
        binding: "{{{{ plan.plan[0] }}}}"
        run_dir: "{{{{ run_dir }}}}"
        hostname: vm1
      diff: true
      register: plumbed
    - name: again
      virtnet.podnet.vm_pod_bridge:
        netns: "{{{{ netns }}}}"
        binding: "{{{{ plan.plan[0] }}}}"
        run_dir: "{{{{ run_dir }}}}"
        hostname: vm1
      register: again
    - name: info
      virtnet.podnet.vm_pod_network_info:
        netns: "{{{{ netns }}}}"
        binding: "{{{{ plan.plan[0] }}}}"
        run_dir: "{{{{ run_dir }}}}"
      register: info
    - name: bad input
      virtnet.podnet.vm_pod_bridge:
        netns: "{{{{ netns }}}}"
        binding: "{{{{ plan.plan[0] | combine({{'tap': 'a-tap-name-too-long'}}) }}}}"
        run_dir: "{{{{ run_dir }}}}"
      register: bad
      ignore_errors: true
    - name: dump
      ansible.builtin.copy:
        content: "{{{{ {{'predicted': predicted, 'plumbed': plumbed, 'again': again, 'info': info,
                     'bad': bad}} | to_json }}}}"
        dest: {out}/before.json
        mode: "0600"
    - name: unplumb
      virtnet.podnet.vm_pod_bridge:
        netns: "{{{{ netns }}}}"
        binding: "{{{{ plan.plan[0] }}}}"
        run_dir: "{{{{ run_dir }}}}"
        state: absent
      register: unplumbed
    - name: dump absent
      ansible.builtin.copy:
        content: "{{{{ unplumbed | to_json }}}}"
        dest: {out}/after.json
        mode: "0600"
""")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    try:
        proc = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
             "-e", f"ansible_python_interpreter={sys.executable}", str(playbook)],
            capture_output=True, text=True, timeout=300, env=env, check=False)
        responder_pid = _responder_control.running_pid(os.path.join(run_dir, "podnet-dhcpd.pid"))
    finally:
        stop_responder(run_dir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    results = json.loads((out / "before.json").read_text())
    predicted, plumbed, again = results["predicted"], results["plumbed"], results["again"]
    assert predicted["changed"] and plumbed["changed"] and again["changed"] is False
    # responder=auto (the module's default) started the node's responder once, from the collection on disk.
    assert predicted["changes"][-1].startswith("start podnet-dhcpd") and predicted["responder_pid"] is None
    assert plumbed["responder_pid"] == again["responder_pid"] == responder_pid > 0
    assert predicted["changes"] == plumbed["changes"]
    assert predicted["diff"] == plumbed["diff"]
    assert plumbed["vm_mac"] == pod.mac and plumbed["ip"] == pod.ip
    assert results["info"]["in_sync"] is True
    assert results["bad"]["failed"] and "binding.tap" in results["bad"]["msg"]
    assert "Traceback" not in json.dumps(results["bad"])
    assert json.loads((out / "after.json").read_text())["changed"] is True
    assert str(COLLECTIONS_ROOT) in os.environ.get("ANSIBLE_COLLECTIONS_PATH", "")
    assert snapshot(pod.netns) == before


# -- the raw rtnetlink readers agree with pyroute2 -------------------------------------------

def test_raw_readers_match_pyroute2(lab, run_dir):
    from pyroute2 import IPRoute
    from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as nl
    from ansible_collections.virtnet.podnet.plugins.module_utils._netns import entered

    pod = lab.add_pod(calico=True)
    sh("ip", "-n", pod.netns, "addr", "add", "fd00:10::10/64", "dev", "eth0", "nodad")
    p = params(pod, run_dir, tap_uid=107, tap_gid=108, binding=make_binding(delegate_ip=False))
    present(p)
    with entered(pod.netns) as (lazy, _path, _inode):
        ipr = IPRoute()
        try:
            for name in ("eth0", "k6t-eth0", "tap0", "lo"):
                raw = nl.get_link(lazy, name)
                msg = ipr.link("get", ifname=name)[0]
                assert raw["index"] == msg["index"] and raw["mac"] == msg.get("address")
                assert raw["mtu"] == msg.get("mtu") and raw["master"] == msg.get("master")
                assert raw["kind"] == msg.get(("linkinfo", "kind")) and raw["group"] == (msg.get("group") or 0)
                assert raw["up"] == bool(msg["flags"] & 1)
                if raw["kind"] == "tun":
                    assert (raw["uid"], raw["gid"], raw["tun_type"]) == (107, 108, 2)
                if name == "eth0":
                    assert raw["learning"] is False
            for family in (socket.AF_INET, socket.AF_INET6):
                raw = nl.addresses_by_index(lazy, family)
                ref = {}
                for msg in ipr.get_addr(family=family):
                    ref.setdefault(msg["index"], []).append((msg.get("local") or msg.get("address"), msg["prefixlen"]))
                assert {i: [(a["address"], a["prefixlen"]) for a in v] for i, v in raw.items()} == ref
            index = ipr.link_lookup(ifname="eth0")[0]
            ref_routes = [(m.get("dst"), m["dst_len"], m.get("gateway"), m["proto"], m["scope"])
                          for m in ipr.get_routes(family=socket.AF_INET)
                          if m.get("oif") == index and (m.get("table") or m["table"]) != 255]
            assert [(r["dst"], r["dst_len"], r["gateway"], r["proto"], r["scope"]) for r in nl.routes(lazy, index)] \
                == ref_routes
        finally:
            ipr.close()
    absent(p)


def test_a_cni_veths_txqlen_0_is_restored(lab, run_dir):
    """A CNI's veth has txqlen 0; the DHCP filters' ingress qdisc makes the kernel raise it to 1000."""
    pod = lab.add_pod()
    lab.run(pod.netns, "ip", "link", "set", "dev", "eth0", "txqueuelen", "0")
    before = snapshot(pod.netns)
    p = params(pod, run_dir)
    present(p)
    assert link(pod.netns, "eth0-nic").get("txqlen") == 1000, "the kernel no longer raises it: this test shows nothing"
    result = absent(p)
    assert "restore txqlen of eth0 to 0" in "; ".join(result["changes"])
    assert link(pod.netns, "eth0").get("txqlen", 0) == 0  # `ip -j` leaves out a txqlen of 0
    assert snapshot(pod.netns) == before
