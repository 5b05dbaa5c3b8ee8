# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_launcher: the facts and snippets a VM launcher gets."""

from __future__ import annotations

from ansible_collections.virtnet.podnet.plugins.module_utils import _launcher

from lib.pod_samples import BINDING, original


def test_launcher_facts_snippets():
    facts = _launcher.launcher_facts(BINDING, original(), True)
    assert facts["vm_mac"] == "0a:58:0a:f4:01:0a" and facts["ip"] == "10.244.1.10" and facts["prefixlen"] == 24
    assert facts["qemu_args"][0] == "-netdev" and facts["qemu_args"][2] == "-device"
    assert "ifname=tap0,script=no,downscript=no" in facts["qemu_args"][1]
    assert "mac=0a:58:0a:f4:01:0a" in facts["qemu_args"][3] and "mq=on" in facts["qemu_args"][3]
    xml = facts["libvirt_interface_xml"]
    assert xml.startswith("<interface type='ethernet'>") and "<target dev='tap0' managed='no'/>" in xml
    assert "<mtu size='1450'/>" in xml


def test_ethernet_mode_has_no_ip_facts():
    binding = dict(BINDING, delegate_ip=False, connectivity="ethernet")
    facts = _launcher.launcher_facts(binding, original(), False)
    assert facts["ip"] is None and facts["gateway"] is None and facts["routes"] == []


def test_xml_attributes_are_escaped():
    xml = _launcher.libvirt_interface_xml("t'<x>", "0a:58:0a:f4:01:0a", 1450, False)
    assert "<target dev='t&apos;&lt;x&gt;' managed='no'/>" in xml


def test_mac_address_of_the_binding_is_the_vm_mac():
    """KubeVirt's macAddress: the VM gets it instead of the pod's original MAC, everywhere a launcher looks."""
    binding = dict(BINDING, mac_address="02:12:34:56:78:9a")
    facts = _launcher.launcher_facts(binding, original(), False)
    assert facts["vm_mac"] == "02:12:34:56:78:9a"
    assert "<mac address='02:12:34:56:78:9a'/>" in facts["libvirt_interface_xml"]
    assert "mac=02:12:34:56:78:9a," in facts["qemu_args"][3]
    assert "0a:58:0a:f4:01:0a" not in facts["libvirt_interface_xml"] + " ".join(facts["qemu_args"])
    # Without it, the pod's original MAC, as before.
    assert _launcher.launcher_facts(BINDING, original(), False)["vm_mac"] == "0a:58:0a:f4:01:0a"
