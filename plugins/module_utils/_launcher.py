# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: what a VM launcher needs, and ready libvirt and qemu snippets."""

from __future__ import annotations

from xml.sax.saxutils import escape

from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_facts


def _attr(value):
    return escape(str(value), {"'": "&apos;", '"': "&quot;"})


def libvirt_interface_xml(tap, mac, mtu, multiqueue):
    driver = "  <driver name='vhost'/>\n" if multiqueue else ""
    return (f"<interface type='ethernet'>\n  <mac address='{_attr(mac)}'/>\n  <target dev='{_attr(tap)}' managed='no'/>\n"
            f"  <model type='virtio'/>\n{driver}  <mtu size='{_attr(mtu)}'/>\n</interface>")


def qemu_args(interface, tap, mac, mtu, multiqueue):
    netdev_id = f"net-{interface}"
    netdev = f"tap,id={netdev_id},ifname={tap},script=no,downscript=no"
    device = f"virtio-net-pci,netdev={netdev_id},mac={mac},host_mtu={mtu}"
    if multiqueue:
        netdev += ",vhost=on"
        device += ",mq=on"
    return ["-netdev", netdev, "-device", device]


def launcher_facts(binding, original, multiqueue):
    """Tap, MAC, MTU, and with ``delegate_ip`` the IP, prefix, gateway and routes the VM leases.

    The VM's MAC is the binding's ``mac_address`` (KubeVirt's macAddress) when the spec set one,
    else the pod interface's original MAC.
    """
    tap, mac, mtu = binding["tap"], binding.get("mac_address") or original["mac"], original["mtu"]
    facts = {
        "tap": tap, "bridge": binding["bridge"], "pod_interface": binding["pod_interface"],
        "vm_mac": mac, "mtu": mtu, "delegate_ip": binding["delegate_ip"],
        "ip": None, "prefixlen": None, "gateway": None, "routes": [], "ipv6": None,
        "libvirt_interface_xml": libvirt_interface_xml(tap, mac, mtu, multiqueue),
        "qemu_args": qemu_args(binding["interface"], tap, mac, mtu, multiqueue),
    }
    if binding["delegate_ip"]:
        addr = _pod_facts.primary_ipv4(original)
        facts.update(ip=addr and addr["address"], prefixlen=addr and addr["prefixlen"],
                     gateway=_pod_facts.gateway_of(original), routes=_pod_facts.dhcp_routes(original))
        addr6 = _pod_facts.primary_ipv6(original)
        if addr6 is not None:
            # The VM's default router is the gateway's link-local address, which its RAs come from.
            gateway = (original.get("ipv6_gateway") or {}).get("address")
            facts["ipv6"] = {"address": addr6["address"], "prefixlen": addr6["prefixlen"], "gateway": gateway}
    return facts
