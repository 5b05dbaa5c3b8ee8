"""The VM stand-in for the tests: playbooks/files/vm_standin.py, loaded by its path.

That file is the one implementation (the demo and molecule run it as a script; it needs
only the standard library). Everything here is its code:

- ``TapRelay(pod_netns, vm_netns, vm_mac, mtu, tap="tap0", vm_ifname=None)``: qemu's part, a
  veth into the "VM" namespace relayed to the pod's tap (``frames``, ``dhcp_replies``);
- ``udhcpc_script(directory)``: busybox udhcpc's event script (address, MTU, option 121 or
  router, resolv.conf via ``PODNET_RESOLV``, events to ``PODNET_UDHCPC_LOG``);
- ``open_tap(pod_netns, tap)``: a non-blocking fd on the pod's tap, as qemu holds it;
- ``netns_entered(netns)`` / ``setns(fd)``: this thread in another network namespace, with
  a libc fallback where ``os.setns`` is missing (Python 3.11).
"""

from __future__ import annotations

import importlib.util
import sys

from lib.paths import STANDIN


def _load():
    name = "podnet_vm_standin"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, STANDIN)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # one copy per process, whoever loads it first
    spec.loader.exec_module(module)
    return module


vm_standin = _load()
TapRelay = vm_standin.TapRelay
udhcpc_script = vm_standin.udhcpc_script
open_tap = vm_standin.open_tap
netns_entered = vm_standin.netns_entered
setns = vm_standin.setns
complete_l4_checksum = vm_standin.complete_l4_checksum
dhcp_reply_of = vm_standin.dhcp_reply_of

__all__ = ["TapRelay", "complete_l4_checksum", "dhcp_reply_of", "netns_entered", "open_tap", "setns",
           "udhcpc_script", "vm_standin"]
