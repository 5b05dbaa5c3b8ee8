# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_pod_facts: the gateway, the option 121 routes and the pod's DNS files."""

from __future__ import annotations

from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_facts

from lib.pod_samples import ROUTES_CALICO, original


def test_gateway_and_option_121_routes_flannel():
    orig = original()
    assert _pod_facts.gateway_of(orig) == "10.244.1.1"
    assert _pod_facts.dhcp_routes(orig) == [{"dst": "10.244.1.0/24", "gateway": None},
                                    {"dst": "0.0.0.0/0", "gateway": "10.244.1.1"}]


def test_gateway_and_option_121_routes_calico():
    orig = original(routes=ROUTES_CALICO, ipv4=[{"address": "10.245.1.10", "prefixlen": 32, "scope": 0,
                                                 "flags": 128, "peer": None, "broadcast": None, "label": "eth0"}])
    assert _pod_facts.gateway_of(orig) == "169.254.1.1"
    assert _pod_facts.dhcp_routes(orig) == [{"dst": "169.254.1.1/32", "gateway": None},
                                    {"dst": "0.0.0.0/0", "gateway": "169.254.1.1"}]


def test_resolv_conf_as_the_resolver_reads_it():
    lines = ["# comment", "nameserver 10.96.0.10", "nameserver fd00::10", "search a.example", "options ndots:5",
             "search svc.cluster.local cluster.local.  ; trailing", "nameserver 10.96.0.11 # second"]
    servers, search = _pod_facts.parse_resolv_conf(lines)
    assert servers == ["10.96.0.10", "10.96.0.11"], "IPv6 servers cannot go into option 6"
    assert search == ["svc.cluster.local", "cluster.local"], "the last search line wins"


def test_pod_files_dir():
    assert _pod_facts.pod_files_dir("/proc/42/ns/net") == "/proc/42/root/etc"
    assert _pod_facts.pod_files_dir("pod1") == "/etc/netns/pod1"
    assert _pod_facts.pod_files_dir("/proc/42/ns/net\n") is None
    assert _pod_facts.pod_files_dir("/var/run/pods/x") is None
