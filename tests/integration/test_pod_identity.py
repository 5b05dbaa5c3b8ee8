# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pod identity kubelet sees (issue 12): after ``present`` the pod's ``eth0`` still holds its IP.

As KubeVirt does since kubevirt/kubevirt#4552: the pod interface is renamed (``eth0`` ->
``eth0-nic``) and enslaved; a dummy ``eth0`` keeps the original MAC, addresses and MTU; the
pod's own stack never answers ARP or NDP for the VM's address on the bridge. Pods here are
made by the real CNI bridge plugin (dual-stack) or by the lab, and the VM is the stand-in's
tap relay with busybox udhcpc.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from integration.conftest import IS_ROOT
from lib import plumbing
from lib.bindings import make_binding
from lib.cni import CniNetwork
from lib.netlab import NetLab, ip_json, link, link_exists, sh, snapshot
from lib.responder import ResponderProcess
from lib.standin import TapRelay, udhcpc_script

pytestmark = [pytest.mark.root, pytest.mark.skipif(not IS_ROOT, reason="needs root: creates network namespaces")]

CLIENT_TIMEOUT = 40


def keeper_kind():
    """dummy, as KubeVirt's; ifb where the kernel has no dummy driver (this CI's kernel)."""
    from lib.paths import module_utils
    return module_utils("_netlink").keeper_kind()


def addrs(netns, dev, family="-4"):
    return [f"{a['local']}/{a['prefixlen']}" for e in ip_json(netns, family, "addr", "show", "dev", dev)
            for a in e.get("addr_info", []) if a.get("scope") == "global"]


def sysctl(netns, path):
    return NetLab.run(netns, "cat", f"/proc/sys/net/{path}").stdout.strip()


def assert_identity(pod, result):
    """eth0 is a dummy with the pod's MAC, MTU and addresses; eth0-nic is the enslaved veth."""
    eth0, nic, br = link(pod.netns, "eth0"), link(pod.netns, "eth0-nic"), link(pod.netns, "k6t-eth0")
    assert eth0["linkinfo"]["info_kind"] == keeper_kind() and eth0["address"] == pod.mac and eth0["mtu"] == pod.mtu
    assert "UP" in eth0["flags"] and "master" not in eth0
    assert addrs(pod.netns, "eth0") == [f"{pod.ip}/{pod.prefixlen}"]
    assert nic["linkinfo"]["info_kind"] == "veth" and nic["master"] == "k6t-eth0" and "UP" in nic["flags"]
    assert nic["address"] != pod.mac and nic["linkinfo"]["info_slave_data"]["learning"] is False
    assert addrs(pod.netns, "eth0-nic") == []
    assert br["mtu"] == pod.mtu
    assert sysctl(pod.netns, "ipv4/conf/k6t-eth0/arp_ignore") == "1"
    assert sysctl(pod.netns, "ipv4/conf/k6t-eth0/arp_announce") == "2"
    assert sysctl(pod.netns, "ipv6/conf/k6t-eth0/disable_ipv6") == "1"
    assert result["vm_mac"] == pod.mac and result["ip"] == pod.ip and result["pod_port"] == "eth0-nic"


@pytest.mark.parametrize("calico", [False, True], ids=["flannel-24", "calico-32"])
def test_present_keeps_the_pod_identity_and_absent_restores_it(lab, run_dir, calico):
    pod = lab.add_pod(calico=calico)
    binding = make_binding()
    before = snapshot(pod.netns)

    predicted = plumbing.plumb(pod.netns, binding, run_dir, check_mode=True)
    assert snapshot(pod.netns) == before, "check mode changed the pod"
    real = plumbing.plumb(pod.netns, binding, run_dir)
    assert real["changes"] == predicted["changes"] and real["diff"] == predicted["diff"]
    assert any("set eth0 down and rename it to eth0-nic" in c for c in real["changes"]), real["changes"]
    assert_identity(pod, real)
    assert real["diff"]["after"]["links"]["eth0"]["kind"] == keeper_kind()
    assert real["diff"]["after"]["addresses"]["eth0"] == [f"{pod.ip}/{pod.prefixlen}"]
    assert real["diff"]["after"]["links"]["eth0-nic"]["master"] == "k6t-eth0"

    assert sysctl(pod.netns, "ipv4/conf/all/arp_ignore") == "1"  # no link of the pod answers for the pod IP
    again = plumbing.plumb(pod.netns, binding, run_dir)
    assert again["changed"] is False and again["changes"] == [], again["changes"]

    predicted = plumbing.unplumb(pod.netns, binding, run_dir, check_mode=True)
    real = plumbing.unplumb(pod.netns, binding, run_dir)
    assert real["changes"] == predicted["changes"] and real["diff"] == predicted["diff"]
    assert snapshot(pod.netns) == before
    assert sysctl(pod.netns, "ipv4/conf/all/arp_ignore") == "0"
    assert link(pod.netns, "eth0")["linkinfo"]["info_kind"] == "veth"
    assert plumbing.unplumb(pod.netns, binding, run_dir)["changed"] is False


def test_pod_identity_off_keeps_the_layout_of_0_2(lab, run_dir):
    pod = lab.add_pod()
    before = snapshot(pod.netns)
    result = plumbing.plumb(pod.netns, make_binding(), run_dir, pod_identity=False)
    assert link(pod.netns, "eth0")["master"] == "k6t-eth0" and not link_exists(pod.netns, "eth0-nic")
    assert addrs(pod.netns, "eth0") == [] and result["pod_port"] == "eth0"
    undo = plumbing.unplumb(pod.netns, make_binding(), run_dir)
    assert undo["warnings"] == [], undo["warnings"]  # nothing was renamed: nothing to say about it
    assert snapshot(pod.netns) == before


def test_ethernet_mode_has_no_pod_identity_and_no_warning(lab, run_dir):
    pod = lab.add_pod()
    before = snapshot(pod.netns)
    binding = make_binding(delegate_ip=False)
    assert plumbing.plumb(pod.netns, binding, run_dir)["pod_port"] == "eth0"
    undo = plumbing.unplumb(pod.netns, binding, run_dir)
    assert undo["warnings"] == [], undo["warnings"]
    assert snapshot(pod.netns) == before


def test_a_record_of_an_older_version_keeps_its_layout(lab, run_dir):
    """A pod plumbed by 0.2 (no identity) is not rebuilt under the VM by a rerun; absent undoes it."""
    pod = lab.add_pod()
    before = snapshot(pod.netns)
    path = plumbing.plumb(pod.netns, make_binding(), run_dir, pod_identity=False)["cache_path"]
    with open(path) as handle:
        record = json.load(handle)
    for name in ("pod_identity", "pod_port", "keeper_kind"):
        record.pop(name, None)
    with open(path, "w") as handle:
        json.dump(record, handle)
    again = plumbing.plumb(pod.netns, make_binding(), run_dir)
    assert again["changed"] is False, again["changes"]
    assert any("without the pod identity" in w for w in again["warnings"]), again["warnings"]
    assert link(pod.netns, "eth0")["master"] == "k6t-eth0"
    plumbing.unplumb(pod.netns, make_binding(), run_dir)
    assert snapshot(pod.netns) == before


def test_a_taken_renamed_name_is_refused_before_any_change(lab, run_dir):
    pod = lab.add_pod()
    sh("ip", "-n", pod.netns, "link", "add", "eth0-nic", "type", "bridge")
    before = snapshot(pod.netns)
    with pytest.raises(Exception, match="eth0-nic exists"):
        plumbing.plumb(pod.netns, make_binding(), run_dir)
    assert snapshot(pod.netns) == before


# -- pods of the real CNI bridge plugin, a VM with a real DHCP client ---------------------------

def _vm_leases(lab, tmp_path, pod):
    """The VM stand-in behind the pod's tap runs busybox udhcpc until it holds the pod's IPv4."""
    vm = lab.add_namespace(f"vm-{pod.netns[-9:-7]}")
    relay = TapRelay(pod.netns, vm, pod.mac, pod.mtu).start()
    argv = ["ip", "netns", "exec", vm, "unshare", "--uts", "busybox", "udhcpc", "-i", relay.vm_ifname, "-f", "-q",
            "-n", "-t", "8", "-T", "1", "-s", udhcpc_script(tmp_path)]
    env = dict(os.environ, PODNET_RESOLV=str(tmp_path / f"resolv-{vm}"))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{pod.ip}/{pod.prefixlen}" in addrs(vm, relay.vm_ifname), proc.stdout
    return vm, relay


def _neighbour(netns, address):
    entries = ip_json(netns, "neigh", "show", "to", address)
    return entries[0] if entries else {}


def test_cni_pods_vm_reachable_kubelet_sees_the_ip_and_absent_restores(lab, run_dir, tmp_path):
    cni = CniNetwork(lab, tmp_path)
    pod, other = cni.add_pod(), cni.add_pod()
    assert cni.check(pod).returncode == 0  # the plugin's own CHECK passes on its untouched pod
    before = snapshot(pod.netns)

    result = plumbing.plumb(pod.netns, make_binding(), run_dir)
    assert_identity(pod, result)
    # kubelet's view: `ip -4 addr show dev eth0` (and -6) still give the pod's addresses
    assert addrs(pod.netns, "eth0") == [f"{pod.ip}/{pod.prefixlen}"]
    assert addrs(pod.netns, "eth0", "-6") == [f"{pod.ip6}/{pod.prefixlen6}"]
    # The IPv6 address is delegated too; the VM's router is the gateway's link-local address.
    gateway_ll = [a["local"] for e in ip_json(lab.node, "-6", "addr", "show", "dev", "cnib0") for a in e["addr_info"]
                  if a["scope"] == "link"]
    assert result["ipv6"] == {"address": pod.ip6, "prefixlen": pod.prefixlen6, "gateway": gateway_ll[0]}
    assert result["warnings"] == []
    # The plugin's CHECK cannot pass under bridge binding: it wants eth0 to be its veth.
    assert cni.check(pod).returncode != 0

    # No VM yet: whatever answers ARP/NDP for the pod's addresses now would be the pod's own stack.
    # (The node knew the pod's MAC from before the move: forgotten first.)
    sh("ip", "-n", lab.node, "neigh", "flush", "dev", "cnib0")
    lab.run(lab.node, "ping", "-c", "1", "-W", "1", pod.ip, check=False)
    lab.run(lab.node, "ping", "-6", "-c", "1", "-W", "1", pod.ip6, check=False)
    for address in (pod.ip, pod.ip6):
        assert _neighbour(lab.node, address).get("lladdr") is None, _neighbour(lab.node, address)
    sh("ip", "-n", lab.node, "neigh", "flush", "dev", "cnib0")

    responder = ResponderProcess(run_dir).start()
    relay = None
    try:
        vm, relay = _vm_leases(lab, tmp_path, pod)
        for source in (lab.node, other.netns):
            ping = lab.run(source, "ping", "-c", "1", "-W", "3", pod.ip, check=False, timeout=15)
            assert ping.returncode == 0, f"from {source}: {ping.stdout}{ping.stderr}"
        assert _neighbour(lab.node, pod.ip).get("lladdr") == pod.mac
    finally:
        if relay is not None:
            relay.stop()
        responder.stop()

    plumbing.unplumb(pod.netns, make_binding(), run_dir)
    assert snapshot(pod.netns) == before
    assert cni.check(pod).returncode == 0, cni.check(pod).stdout
