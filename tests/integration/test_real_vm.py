# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real VM gets its pod's IP: qemu (TCG) on the tap vm_pod_bridge made, served by podnet-dhcpd.

Per test: a NetLab (real namespaces, deleted even on failure), the pod plumbed by the real
module code in-process, the responder as a process with its own run dir, then qemu started
INSIDE the pod's namespace on the persistent tap0 with Debian's cloud kernel and a busybox
initramfs (tests/lib/vm_image.py, cached outside the repository). The VM's /init runs
udhcpc once, prints the lease and what it applied on the serial console, pings the gateway
and powers off; the test reads the console with a hard timeout and kills qemu past it.
"""

from __future__ import annotations

import os
import shutil

import pytest

from integration.conftest import IS_ROOT
from lib import plumbing, vm_image
from lib.bindings import make_binding
from lib.netlab import NetLab, ip_json, link
from lib.responder import ResponderProcess, lease_state
from lib.waiting import wait_for

pytestmark = [pytest.mark.root, pytest.mark.slow]

if not IS_ROOT:
    pytest.skip("needs root: network namespaces, taps", allow_module_level=True)
if shutil.which(vm_image.QEMU) is None:
    pytest.skip(f"{vm_image.QEMU} not found: install qemu-system-x86 (tools/system_deps_vm.sh)", allow_module_level=True)

# A boot to lease takes seconds; the no-lease VM waits out udhcpc's 5 tries x 2 s on top.
BOOT_TIMEOUT = 120


@pytest.fixture(scope="module")
def image():
    return vm_image.build()


class Env:
    """One lab, one run dir, one responder; closed in reverse even when the test failed."""

    def __init__(self, tmp_path) -> None:
        self.run_dir = str(tmp_path / "run")
        os.makedirs(self.run_dir, mode=0o700)
        self.lab = NetLab()
        self.responder = ResponderProcess(self.run_dir)

    def plumb(self, calico: bool = False):
        pod = self.lab.add_pod(calico=calico)
        result = plumbing.plumb(pod.netns, make_binding(), self.run_dir)
        assert result["changed"] and result["vm_mac"] == pod.mac and result["ip"] == pod.ip
        return pod, result

    def close(self) -> None:
        try:
            self.responder.stop()
        finally:
            self.lab.close()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    e.lab.start()
    e.responder.start()
    try:
        yield e
    finally:
        e.close()


def boot(image, pod, nic_args):
    return vm_image.check_finished(vm_image.boot(image, pod.netns, nic_args, timeout=BOOT_TIMEOUT), BOOT_TIMEOUT)


def assert_got_the_pod(result, pod, lab: NetLab) -> None:
    """Lease values as DHCP delivered them, the kernel state the VM applied, the gateway reached."""
    console = result.console()
    lease, state = result.lease, result.state
    assert lease is not None, f"no lease on the console:\n{console}"
    assert lease["ip"] == pod.ip, console
    assert int(lease["prefix"]) == pod.prefixlen, console
    assert lease["mac"] == pod.mac, console
    assert int(lease["mtu"]) == pod.mtu, console
    assert lease["router"] == pod.gateway, console
    assert state == {"addr": f"{pod.ip}/{pod.prefixlen}", "mtu": str(pod.mtu), "mac": pod.mac,
                     "gateway": pod.gateway}, console
    assert result.ping == "ok", console
    # The gateway lives only in the node namespace: it answered the VM at the pod's original MAC.
    neigh = ip_json(lab.node, "neigh", "show", pod.ip)
    assert any(n.get("lladdr") == pod.mac for n in neigh), neigh


def test_real_vm_gets_the_pod_address(env, image):
    pod, result = env.plumb()
    env.responder.wait_serving(result["key"])
    # Plain NIC (no host_mtu): the MTU the VM ends up with can only come from DHCP.
    vm = boot(image, pod, vm_image.tap_nic(pod.mac))
    assert_got_the_pod(vm, pod, env.lab)
    assert f"default via {pod.gateway} dev eth0" in vm.routes, vm.console()
    log = env.responder.log()
    assert f"mac={pod.mac} ip={pod.ip} msg=DISCOVER reply=OFFER" in log
    assert f"mac={pod.mac} ip={pod.ip} msg=REQUEST(selecting) reply=ACK" in log
    state = wait_for(lambda: lease_state(env.run_dir, result["key"]).get("state") == "bound"
                     and lease_state(env.run_dir, result["key"]), 10, what="lease state bound")
    assert state["ip"] == pod.ip and state["vm_mac"] == pod.mac
    assert link(pod.netns, "tap0")["linkinfo"]["info_data"]["persist"] is True  # qemu left the tap to us


def test_real_vm_calico_32_routes_through_option_121(env, image):
    pod, result = env.plumb(calico=True)
    assert pod.prefixlen == 32 and pod.gateway == "169.254.1.1"
    env.responder.wait_serving(result["key"])
    # The NIC exactly as the module tells a launcher to attach it.
    vm = boot(image, pod, result["qemu_args"])
    assert_got_the_pod(vm, pod, env.lab)
    # A /32 has no on-link subnet: the gateway is reachable only through option 121's link route.
    assert vm.lease["routes"] == f"{pod.gateway}/32>0.0.0.0,0.0.0.0/0>{pod.gateway}", vm.console()
    assert f"{pod.gateway} dev eth0 scope link" in vm.routes, vm.console()
    assert f"default via {pod.gateway} dev eth0" in vm.routes, vm.console()


def test_real_vm_with_another_mac_gets_nothing(env, image):
    pod, result = env.plumb()
    env.responder.wait_serving(result["key"])
    other = "52:54:00:" + pod.mac[9:] if not pod.mac.startswith("52:54:00:") else "52:54:01:" + pod.mac[9:]
    vm = boot(image, pod, vm_image.tap_nic(other))
    assert vm.lease is None, vm.console()
    assert vm.first("PODNET-NOLEASE") == f"PODNET-NOLEASE mac={other}", vm.console()
    assert "msg=DISCOVER" not in env.responder.log()
