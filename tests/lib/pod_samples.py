# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A pod as a CNI leaves it, and the plan entry for it: shared by the module_utils unit tests."""

from __future__ import annotations

from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir

MAC = "0a:58:0a:f4:01:0a"
BINDING = {"interface": "default", "network": "default", "backend": "pod", "connection": "bridge",
           "delegate_ip": True, "connectivity": "ip", "pod_interface": "eth0", "bridge": "k6t-eth0", "tap": "tap0"}

ROUTES_24 = [
    {"dst": None, "dst_len": 0, "gateway": "10.244.1.1", "scope": 0, "proto": 3, "type": 1, "table": 254,
     "priority": None, "prefsrc": None, "tos": 0, "onlink": False},
    {"dst": "10.244.1.0", "dst_len": 24, "gateway": None, "scope": 253, "proto": 2, "type": 1, "table": 254,
     "priority": None, "prefsrc": "10.244.1.10", "tos": 0, "onlink": False},
]
ROUTES_CALICO = [
    {"dst": None, "dst_len": 0, "gateway": "169.254.1.1", "scope": 0, "proto": 3, "type": 1, "table": 254,
     "priority": None, "prefsrc": None, "tos": 0, "onlink": False},
    {"dst": "169.254.1.1", "dst_len": 32, "gateway": None, "scope": 253, "proto": 3, "type": 1, "table": 254,
     "priority": None, "prefsrc": None, "tos": 0, "onlink": False},
]


def original(routes=None, ipv4=None):
    routes = ROUTES_24 if routes is None else routes
    return {"name": "eth0", "mac": MAC, "mtu": 1450, "up": True, "kind": "veth", "master": None,
            "ipv4": [{"address": "10.244.1.10", "prefixlen": 24, "scope": 0, "flags": 128, "peer": None,
                      "broadcast": None, "label": "eth0"}] if ipv4 is None else ipv4,
            "ipv6": [], "routes": routes}


def declaration(**extra):
    """A valid lease declaration for the pod above, as vm_pod_bridge writes it."""
    decl = {"version": 1, "key": "pod1__eth0", "netns": "/run/netns/pod1", "netns_inode": [4, 1], "bridge": "k6t-eth0",
            "tap": "tap0", "vm_mac": MAC, "ip": "10.244.1.10", "prefixlen": 24, "gateway": "10.244.1.1",
            "routes": [{"dst": "10.244.1.0/24", "gateway": None}, {"dst": "0.0.0.0/0", "gateway": "10.244.1.1"}],
            "mtu": 1450, "dns_servers": ["10.96.0.10"], "search_domains": ["svc.cluster.local"], "hostname": "vm1",
            "lease_time": 600}
    decl.update(extra)
    return _rundir.validate_declaration(decl)
