# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters that match a VM's interfaces to its networks by name (documented in the sidecar YAML files)."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.virtnet.podnet.plugins.module_utils._spec import match_by_name
from ansible_collections.virtnet.podnet.plugins.module_utils._spec_errors import describe


def _named_items(value, what, filter_name):
    """Check that ``value`` is a list of mappings with unique string names."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise AnsibleFilterError(f"{filter_name}: {what} must be a list, got {describe(value)}")
    seen = set()
    for index, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise AnsibleFilterError(f"{filter_name}: {what}[{index}] must be a mapping, got {describe(item)}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise AnsibleFilterError(f"{filter_name}: {what}[{index}].name must be a non-empty string, got {describe(name)}")
        if name in seen:
            raise AnsibleFilterError(f"{filter_name}: {what} has the name {name!r} more than once")
        seen.add(name)
    return value


def pair_by_name(interfaces, networks):
    """Pair each interface with the network of the same name, in the interfaces' order."""
    interfaces = _named_items(interfaces, "interfaces", "pair_by_name")
    networks = _named_items(networks, "networks", "pair_by_name")
    pairs, _lonely_interfaces, _lonely_networks = match_by_name(interfaces, networks)
    return [{"name": interface["name"], "interface": interface, "network": network} for interface, network in pairs]


def unmatched_interfaces(interfaces, networks):
    """Names of the interfaces that have no network of the same name."""
    interfaces = _named_items(interfaces, "interfaces", "unmatched_interfaces")
    networks = _named_items(networks, "networks", "unmatched_interfaces")
    return [item["name"] for item in match_by_name(interfaces, networks)[1]]


def unmatched_networks(networks, interfaces):
    """Names of the networks that no interface of the same name connects to."""
    networks = _named_items(networks, "networks", "unmatched_networks")
    interfaces = _named_items(interfaces, "interfaces", "unmatched_networks")
    return [item["name"] for item in match_by_name(interfaces, networks)[2]]


class FilterModule:
    """Name-matching of VM interfaces and networks."""

    def filters(self):
        return {
            "pair_by_name": pair_by_name,
            "unmatched_interfaces": unmatched_interfaces,
            "unmatched_networks": unmatched_networks,
        }
