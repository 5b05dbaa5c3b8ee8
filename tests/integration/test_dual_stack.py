# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Dual-stack delegation end to end (issue 12): pods of the real CNI bridge plugin, the real plumbing,
the node responder, and real DHCP clients behind the VM stand-in's tap relay.

The VM takes the pod's IPv4 address by DHCPv4 and its IPv6 address by DHCPv6, and its IPv6
default route from our Router Advertisements, whose source is the pod gateway's link-local
address (learned before the move). Then it reaches both gateways, and the node reaches it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from integration.conftest import IS_ROOT
from lib import plumbing
from lib.bindings import make_binding
from lib.cni import CniNetwork, tentative
from lib.netlab import ip_json, sh
from lib.paths import module_utils
from lib.processes import Processes, output_of
from lib.responder import ResponderProcess
from lib.standin import TapRelay
from lib.waiting import wait_for

_missing = [tool for tool in ("dhclient", "dhcpcd", "unshare") if shutil.which(tool) is None]
pytestmark = [pytest.mark.root, pytest.mark.skipif(not IS_ROOT, reason="needs root: creates network namespaces"),
              pytest.mark.skipif(bool(_missing), reason=f"missing: {', '.join(_missing)}")]

CLIENT_TIMEOUT = 40


CALICO_GATEWAY6 = "fe80::ecee:eeff:feee:eeee"  # Calico's host-side veth, the default router of its pods


def calico6_pod(lab):
    """A Calico-style dual-stack pod: IPv4 /32 via 169.254.1.1 and IPv6 /128 via the host veth's link-local
    address (no on-link prefix at all); the node owns a global address the VM can ping."""
    pod = lab.add_pod(calico=True)
    index = len(lab.pods)
    pod.ip6, pod.prefixlen6, pod.gateway6 = f"fd00:59:{lab.subnet_index:x}::{index + 9}", 128, \
        f"fd00:59:{lab.subnet_index:x}::1"
    node = ["ip", "-n", lab.node, "-6"]
    sh(*node, "addr", "add", f"{CALICO_GATEWAY6}/64", "dev", pod.host_veth, "nodad")
    sh(*node, "addr", "add", f"{pod.gateway6}/128", "dev", "lo")
    sh(*node, "route", "add", f"{pod.ip6}/128", "dev", pod.host_veth)
    sh("ip", "-n", pod.netns, "-6", "addr", "add", f"{pod.ip6}/128", "dev", "eth0", "nodad")
    sh("ip", "-n", pod.netns, "-6", "route", "add", "default", "via", CALICO_GATEWAY6, "dev", "eth0")
    for netns in (lab.node, pod.netns):  # the probe's echo request leaves from the pod's link-local address
        wait_for(lambda ns=netns: not tentative(ns), 10, what=f"IPv6 DAD done in {netns}")
    return pod


class DualStack:
    """One pod (of the CNI bridge plugin, or Calico-style) plumbed by the real plumbing, the responder, and
    the VM namespace."""

    def __init__(self, lab, tmp_path: Path, families=("4", "6"), calico=False) -> None:
        self.lab, self.tmp = lab, tmp_path
        self.pod = calico6_pod(lab) if calico else CniNetwork(lab, tmp_path, families=families).add_pod()
        self.run_dir = str(tmp_path / "run")
        self.result = plumbing.plumb(self.pod.netns, make_binding(), self.run_dir, dns_servers6=["fd00:96::a"])
        self.responder = ResponderProcess(self.run_dir).start()
        self.vm = lab.add_namespace("vm")
        self.relay = TapRelay(self.pod.netns, self.vm, self.pod.mac, self.pod.mtu).start()
        self.procs = Processes()

    def client(self, argv: list[str], mount_ns: bool = False) -> subprocess.Popen:
        prefix = ["ip", "netns", "exec", self.vm, "unshare", "--uts"] + (["--mount"] if mount_ns else [])
        return self.procs.popen(prefix + argv)

    def addresses(self, family: str) -> list[str]:
        """The VM's global addresses, once usable (an IPv6 one is not while its DAD runs)."""
        return [f"{a['local']}/{a['prefixlen']}" for e in ip_json(self.vm, family, "addr", "show", "dev", self.relay.vm_ifname)
                for a in e.get("addr_info", []) if a.get("scope") == "global" and not a.get("tentative")]

    def default_route(self, family: str) -> dict:
        routes = [r for r in ip_json(self.vm, family, "route", "show") if r.get("dst") == "default"]
        return routes[0] if routes else {}

    def ping(self, source: str, address: str) -> subprocess.CompletedProcess:
        return self.lab.run(source, "ping", "-c", "1", "-W", "3", address, check=False, timeout=15)

    def close(self) -> str:
        output = self.procs.stop_all()
        self.relay.stop()
        self.responder.stop()
        return output


@pytest.fixture
def stack(lab, tmp_path, request):
    net = DualStack(lab, tmp_path, **getattr(request, "param", {}))
    try:
        yield net
    finally:
        print(net.close())
        print(net.responder.log())


def gateway_link_local(lab) -> str:
    return [a["local"] for e in ip_json(lab.node, "-6", "addr", "show", "dev", "cnib0") for a in e["addr_info"]
            if a["scope"] == "link"][0]


def link_local_ready(netns: str, ifname: str) -> bool:
    addrs = [a for e in ip_json(netns, "-6", "addr", "show", "dev", ifname) for a in e.get("addr_info", [])]
    return any(a["scope"] == "link" and not a.get("tentative") for a in addrs)


def dhcpcd_argv(tmp_path: Path, ifname: str, *flags: str) -> list[str]:
    """dhcpcd with its state on a tmpfs of its own mount namespace (no host DUID, no leftover lease)."""
    conf = tmp_path / "dhcpcd.conf"
    conf.write_text("noipv4ll\nipv6rs\nnohook resolv.conf\nnohook hostname\n")
    inner = ("mount -t tmpfs podnet6 /var/lib/dhcpcd && mount -t tmpfs podnet6 /run/dhcpcd && "
             f"exec dhcpcd -f {conf} -c /bin/true {' '.join(flags)} -B -d -t {CLIENT_TIMEOUT} {ifname}")
    return ["sh", "-c", inner]


def test_dhcpcd_gets_both_addresses_and_both_default_routes(stack, lab, tmp_path):
    pod = stack.pod
    assert stack.result["ipv6"] == {"address": pod.ip6, "prefixlen": pod.prefixlen6, "gateway": gateway_link_local(lab)}
    proc = stack.client(dhcpcd_argv(tmp_path, stack.relay.vm_ifname), mount_ns=True)

    def configured():
        assert proc.poll() is None, output_of(proc)
        return (f"{pod.ip}/{pod.prefixlen}" in stack.addresses("-4") and any(a.startswith(pod.ip6 + "/")
                for a in stack.addresses("-6")) and stack.default_route("-4") and stack.default_route("-6"))
    wait_for(configured, CLIENT_TIMEOUT, what="dhcpcd to apply both addresses and both default routes")
    assert stack.default_route("-4")["gateway"] == pod.gateway
    assert stack.default_route("-6")["gateway"] == gateway_link_local(lab)
    for address in (pod.gateway, pod.gateway6):
        ping = stack.ping(stack.vm, address)
        assert ping.returncode == 0, f"{address}: {ping.stdout}{ping.stderr}"
    ping = stack.ping(lab.node, pod.ip6)  # and the node reaches the VM at the pod's IPv6 address
    assert ping.returncode == 0, ping.stdout + ping.stderr

    # vm_pod_network_info reports both leases (the responder writes its state at most every half second)
    def info():
        return module_utils("_pod_bridge").info({"netns": pod.netns, "binding": make_binding(),
                                                 "run_dir": stack.run_dir})
    wait_for(lambda: ((info()["lease_state"] or {}).get("ipv6") or {}).get("state") == "bound", 10,
             what="the IPv6 lease state bound")
    shown = info()
    assert shown["in_sync"] and shown["ipv6"]["address"] == pod.ip6 and shown["lease_state"]["state"] == "bound", shown


@pytest.mark.parametrize("stack", [{"calico": True}], indirect=True, ids=["calico-32-128"])
def test_a_calico_style_pod_with_a_link_local_gateway_and_a_128(stack, lab, tmp_path):
    pod = stack.pod
    assert stack.result["ipv6"] == {"address": pod.ip6, "prefixlen": 128, "gateway": CALICO_GATEWAY6}
    proc = stack.client(dhcpcd_argv(tmp_path, stack.relay.vm_ifname), mount_ns=True)

    def configured():
        assert proc.poll() is None, output_of(proc)
        return (f"{pod.ip}/32" in stack.addresses("-4") and f"{pod.ip6}/128" in stack.addresses("-6")
                and stack.default_route("-4") and stack.default_route("-6"))
    wait_for(configured, CLIENT_TIMEOUT, what="dhcpcd to apply the /32, the /128 and both default routes")
    assert stack.default_route("-6")["gateway"] == CALICO_GATEWAY6
    assert not [r for r in ip_json(stack.vm, "-6", "route", "show") if r.get("dst", "").startswith("fd00:59")], \
        "a /128 pod's VM must get no on-link prefix"
    for address in (pod.gateway, pod.gateway6):
        ping = stack.ping(stack.vm, address)
        assert ping.returncode == 0, f"{address}: {ping.stdout}{ping.stderr}"


def test_dhclient_6_gets_the_address_and_the_kernel_takes_our_router_advertisement(stack, lab, tmp_path):
    pod, ifname = stack.pod, stack.relay.vm_ifname
    script = tmp_path / "apply.sh"
    script.write_text('#!/bin/sh\ncase "$reason" in BOUND6|RENEW6|REBIND6|REBOOT6)\n'
                      '  ip -6 addr replace "$new_ip6_address/128" dev "$interface";;\nesac\nexit 0\n')
    script.chmod(0o755)
    lease_file = tmp_path / "dhclient6.leases"
    lease_file.touch()
    # The VM's kernel takes the default route from our RA (accept_ra, as in any guest), dhclient the address.
    sh("ip", "netns", "exec", stack.vm, "sysctl", "-qw", f"net.ipv6.conf.{ifname}.accept_ra=2")
    # dhclient -6 binds to the NIC's link-local address, usable once its DAD is done.
    wait_for(lambda: link_local_ready(stack.vm, ifname), 10, what=f"a link-local address on {ifname}")
    proc = stack.client(["dhclient", "-6", "-d", "-v", "-lf", str(lease_file), "-pf", str(tmp_path / "d6.pid"),
                         "-sf", str(script), ifname])

    def bound():
        assert proc.poll() is None, output_of(proc)
        return f"{pod.ip6}/128" in stack.addresses("-6") and stack.default_route("-6")
    wait_for(bound, CLIENT_TIMEOUT, what="dhclient -6 to apply the address, and the RA's default route")
    assert stack.default_route("-6")["gateway"] == gateway_link_local(lab)
    text = lease_file.read_text()
    assert f"iaaddr {pod.ip6}" in text and "fd00:96::a" in text, text
    ping = stack.ping(stack.vm, pod.gateway6)
    assert ping.returncode == 0, ping.stdout + ping.stderr


@pytest.mark.parametrize("stack", [{"families": ("6",)}], indirect=True, ids=["ipv6-only"])
def test_an_ipv6_only_pod_is_delegated_by_dhcpv6_alone(stack, lab, tmp_path):
    pod = stack.pod
    assert stack.result["ip"] is None and stack.result["ipv6"]["address"] == pod.ip6
    proc = stack.client(dhcpcd_argv(tmp_path, stack.relay.vm_ifname, "-6"), mount_ns=True)

    def configured():
        assert proc.poll() is None, output_of(proc)
        return any(a.startswith(pod.ip6 + "/") for a in stack.addresses("-6")) and stack.default_route("-6")
    wait_for(configured, CLIENT_TIMEOUT, what="dhcpcd -6 to apply the address and the default route")
    ping = stack.ping(stack.vm, pod.gateway6)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    plumbing.unplumb(pod.netns, make_binding(), stack.run_dir)
    restored = [a["local"] for e in ip_json(pod.netns, "-6", "addr", "show", "dev", "eth0") for a in e["addr_info"]]
    assert pod.ip6 in restored, restored
