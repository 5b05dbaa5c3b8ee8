# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: facts about a pod, from its recorded interface and its own files.

``original`` is the pod interface as discovered before any change (``_netlink.discover``,
kept in the state cache): its IPv4 addresses, MAC, MTU and routes. From it come the
address, gateway and option 121 routes the VM is offered. The pod's resolv.conf and
hostname give the DHCP extras' defaults.
"""

from __future__ import annotations

import ipaddress
import os
import re

from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields

MAIN_TABLE = 254
RTN_UNICAST = 1
IFA_F_SECONDARY = 0x01
MAX_DNS_SERVERS = 8
MAX_SEARCH_DOMAINS = 6
_PROC_NETNS = re.compile(r"/proc/(\d+)/ns/net")


def addr_texts(addrs):
    return [f"{a['address']}/{a['prefixlen']}" for a in addrs]


def _cidr(route):
    return f"{route['dst'] or '0.0.0.0'}/{route['dst_len']}"


def gateway_of(original):
    """The pod's default gateway; else the first gateway of the main table; else of any table."""
    main = [r for r in original["routes"] if r["table"] == MAIN_TABLE and r.get("gateway")]
    for route in main:
        if route["dst_len"] == 0:
            return route["gateway"]
    gateways = main or [r for r in original["routes"] if r.get("gateway")]
    return gateways[0]["gateway"] if gateways else None


def dhcp_routes(original):
    """Routes for option 121: link routes first, other gateway routes, the default route last."""
    main = [r for r in original["routes"] if r["table"] == MAIN_TABLE and r["type"] == RTN_UNICAST]
    link = [{"dst": _cidr(r), "gateway": None} for r in main if not r.get("gateway") and r["dst_len"]]
    via = [{"dst": _cidr(r), "gateway": r["gateway"]} for r in main if r.get("gateway") and r["dst_len"]]
    default = [{"dst": "0.0.0.0/0", "gateway": r["gateway"]} for r in main if r.get("gateway") and not r["dst_len"]]
    seen, out = set(), []
    for route in link + via + default[:1]:
        if route["dst"] not in seen:
            seen.add(route["dst"])
            out.append(route)
    return out


def primary_ipv4(original):
    """The address the VM is offered: the first primary one."""
    addrs = [a for a in original["ipv4"] if not a["flags"] & IFA_F_SECONDARY]
    addrs = addrs or original["ipv4"]
    return addrs[0] if addrs else None


def pod_files_dir(netns):
    """Where a pod's resolv.conf and hostname are: the process's root for /proc/PID/ns/net,
    ``ip netns``' /etc/netns/<name> for a named namespace; None for other paths."""
    netns = str(netns or "")
    match = _PROC_NETNS.fullmatch(netns)
    if match:
        return f"/proc/{match.group(1)}/root/etc"
    if netns and "/" not in netns:
        return f"/etc/netns/{netns}"
    return None


def parse_resolv_conf(lines):
    """``(IPv4 servers, search domains)`` as the resolver reads them; IPv6 servers cannot go into option 6."""
    servers, search = [], []
    for line in lines:
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                servers.append(str(ipaddress.IPv4Address(words[1])))
            except ValueError:
                pass
        elif words and words[0] in ("search", "domain"):
            search = words[1:]  # the last search/domain line wins, as in the resolver
    ignored = []
    domains = [d for d in (fields.domain_name(w, "search", ignored) for w in search) if d is not None]
    return servers[:MAX_DNS_SERVERS], domains[:MAX_SEARCH_DOMAINS]


def pod_dns_defaults(netns):
    """DNS servers, search domains and host name from the pod's own files, where readable."""
    root = pod_files_dir(netns)
    if root is None:
        return [], [], None
    servers, search = [], []
    try:
        with open(os.path.join(root, "resolv.conf"), encoding="utf-8", errors="replace") as handle:
            servers, search = parse_resolv_conf(handle)
    except OSError:
        pass
    hostname = None
    try:
        with open(os.path.join(root, "hostname"), encoding="utf-8", errors="replace") as handle:
            hostname = handle.read().strip() or None
    except OSError:
        pass
    ignored = []
    return servers, search, fields.hostname(hostname, "hostname", ignored)
