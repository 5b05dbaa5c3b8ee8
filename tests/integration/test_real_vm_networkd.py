# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Debian 12 guest whose network systemd-networkd configures gets its pod's IP (issue 12).

The second real VM, beside test_real_vm.py's busybox udhcpc: the DHCP client most cloud images
run. tests/lib/vm_guest.py builds it once from Debian's packages (mmdebstrap, cached outside
the repository) and boots it under qemu TCG inside the pod's namespace on the persistent tap0
the real plumbing made, with podnet-dhcpd serving the pod. systemd as PID 1 starts udev and
systemd-networkd (DHCP=yes, IPv6AcceptRA=yes); a oneshot unit waits for networkd (bounded),
prints the lease, the addresses, routes and ping results on the serial console and powers off.
Per test: a NetLab (real namespaces, deleted even on failure), its own run dir and responder.
"""

from __future__ import annotations

import ipaddress
import os
import shutil

import pytest

from integration.conftest import IS_ROOT
from lib import plumbing, vm_guest, vm_image
from lib.bindings import make_binding
from lib.cni import CNI_PLUGIN, CniNetwork
from lib.netlab import NetLab, ip_json
from lib.responder import ResponderProcess, lease_state
from lib.waiting import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

if not IS_ROOT:
    pytest.skip("needs root: network namespaces, taps, mmdebstrap", allow_module_level=True)
if shutil.which(vm_image.QEMU) is None:
    pytest.skip(f"{vm_image.QEMU} not found: the Debian guest boots under qemu-system-x86 (tools/system_deps_vm.sh)",
                allow_module_level=True)

# systemd under TCG reaches the report in seconds; the guest itself gives up on networkd after
# vm_guest.WAIT_ONLINE seconds per family, so this only catches a hung guest.
BOOT_TIMEOUT = 180


@pytest.fixture(scope="module")
def image():
    try:
        return vm_guest.build()
    except vm_guest.GuestUnavailable as exc:  # no mmdebstrap, no mke2fs, or no Debian mirror (and no cache)
        # The only real-VM IPv6 test: CI must not pass without it.
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true, yet the Debian guest is unavailable: {exc}")
        pytest.skip(f"Debian guest unavailable: {exc}")


class Env:
    """One lab, one run dir, one responder; closed in reverse even when the test failed."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.run_dir = str(tmp_path / "run")
        os.makedirs(self.run_dir, mode=0o700)
        self.lab = NetLab()
        self.responder = ResponderProcess(self.run_dir)

    def plumb(self, pod):
        result = plumbing.plumb(pod.netns, make_binding(), self.run_dir)
        assert result["changed"] and result["vm_mac"] == pod.mac and result["ip"] == pod.ip
        self.responder.wait_serving(result["key"])
        return result

    def close(self) -> None:
        try:
            self.responder.stop()
        finally:
            self.lab.close()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    try:
        e.lab.start()
        e.responder.start()
        yield e
    finally:
        e.close()


def boot(image, pod, nic_args, ping6=None):
    result = vm_guest.boot(image, pod.netns, nic_args, ping6=ping6, timeout=BOOT_TIMEOUT)
    return vm_image.check_finished(result, BOOT_TIMEOUT)


def assert_got_the_pod(result, pod, lab: NetLab) -> None:
    """networkd's lease, the kernel state it applied, the gateway reached from the guest."""
    console = result.console()
    lease, state = result.lease, result.state
    assert lease is not None, f"networkd got no IPv4 lease; console:\n{console}"
    assert lease["ip"] == pod.ip, console
    assert int(lease["prefix"]) == pod.prefixlen, console
    assert lease["mac"] == pod.mac, console
    assert int(lease["mtu"]) == pod.mtu, console
    assert state == {"addr": f"{pod.ip}/{pod.prefixlen}", "mtu": str(pod.mtu), "mac": pod.mac,
                     "gateway": pod.gateway}, console
    assert result.ping == "ok", console
    # The gateway lives only in the node namespace: it answered the guest at the pod's original MAC.
    neigh = ip_json(lab.node, "neigh", "show", pod.ip)
    assert any(n.get("lladdr") == pod.mac for n in neigh), neigh


def default_route(routes: list[str], gateway: str) -> bool:
    return any(r.startswith(f"default via {gateway} dev ") for r in routes)


def test_networkd_guest_gets_the_pod_address(env, image):
    pod = env.lab.add_pod()
    result = env.plumb(pod)
    # Plain NIC (no host_mtu): the MTU the guest ends up with can only come from DHCP.
    vm = boot(image, pod, vm_image.tap_nic(pod.mac))
    assert_got_the_pod(vm, pod, env.lab)
    assert default_route(vm.routes, pod.gateway), vm.console()
    assert vm.lease["router"] == pod.gateway, vm.console()
    log = env.responder.log()
    assert f"mac={pod.mac} ip={pod.ip} msg=DISCOVER reply=OFFER" in log, log
    assert f"mac={pod.mac} ip={pod.ip} msg=REQUEST(selecting) reply=ACK" in log, log
    state = wait_for(lambda: lease_state(env.run_dir, result["key"]).get("state") == "bound"
                     and lease_state(env.run_dir, result["key"]), 10, what="lease state bound")
    assert state["ip"] == pod.ip and state["vm_mac"] == pod.mac


def test_networkd_guest_calico_32_routes_through_option_121(env, image):
    pod = env.lab.add_pod(calico=True)
    assert pod.prefixlen == 32 and pod.gateway == "169.254.1.1"
    result = env.plumb(pod)
    # The NIC exactly as the module tells a launcher to attach it.
    vm = boot(image, pod, result["qemu_args"])
    assert_got_the_pod(vm, pod, env.lab)
    # RFC 3442 as networkd applies it: the gateway's link route, then the default route through it.
    assert vm.lease["routes"] == f"{pod.gateway}/32>0.0.0.0,0.0.0.0/0>{pod.gateway}", vm.console()
    assert any(r.startswith(f"{pod.gateway} dev ") and "scope link" in r for r in vm.routes), vm.console()
    assert default_route(vm.routes, pod.gateway), vm.console()


@pytest.mark.skipif(not os.access(CNI_PLUGIN, os.X_OK), reason=f"{CNI_PLUGIN} missing: containernetworking-plugins")
def test_networkd_guest_dual_stack_gets_the_pod_ipv6(env, image):
    cni = CniNetwork(env.lab, env.tmp_path)  # the real bridge plugin: eth0 with fd00:58:<n>::x/64 as well
    pod = cni.add_pod()
    assert pod.ip6 and pod.gateway6, pod
    env.plumb(pod)
    vm = boot(image, pod, vm_image.tap_nic(pod.mac), ping6=pod.gateway6)
    console = vm.console()
    assert_got_the_pod(vm, pod, env.lab)  # IPv4 as on a single-stack pod
    assert default_route(vm.routes, pod.gateway), console
    # IPv6: the pod's address by DHCPv6 (IA_NA, so networkd adds it as a /128), the pod's prefix
    # on-link and the default route via a link-local router from the RA, the pod's gateway answers.
    state6 = vm.state6
    assert state6 is not None and state6["addr"].split("/")[0] == pod.ip6, console
    prefix = ipaddress.IPv6Network(f"{pod.ip6}/{pod.prefixlen6}", strict=False)
    assert any(r.startswith(f"{prefix} dev ") for r in vm.routes6), console
    assert ipaddress.IPv6Address(state6["gateway"]).is_link_local, console
    assert default_route(vm.routes6, state6["gateway"]), console
    assert vm.ping6 == "ok", console
