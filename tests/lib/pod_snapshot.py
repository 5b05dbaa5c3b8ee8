# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What "restored exactly" compares: a network namespace as the kernel shows it, minus what it renumbers.

    snapshot("pnt-pod1-abc123")                      # a dict, equal before and after a clean round trip
    python pod_snapshot.py NETNS...                  # {netns: snapshot} as JSON (molecule's snapshot.yml)

One implementation for the tests (``lib.netlab.snapshot``) and molecule (run as a script, also on the
fleet's nodes: the standard library, ``ip`` and ``tc`` only, Python 3.9 and later). It covers

- links by name: kind (the pod identity's inert eth0 is a dummy or an ifb), every flag, MTU, txqlen, MAC,
  master, group, promiscuity, and their IPv4 and IPv6 addresses (link-local ones too: the kernel makes
  them from the MAC, so they come back only when the MAC and the link do);
- IPv4 and IPv6 routes of every table;
- qdiscs, and the tc filters on each link's ingress and egress;
- the sysctls the plumbing sets (plugins/module_utils/_netlink.py's tables), of ``all``, ``default`` and
  every link.

Left out: indexes, counters, lifetimes, and handles the kernel numbers itself. It waits (a few seconds at
most) until no IPv6 address is tentative: the kernel adds an address's local route only once DAD is done.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

TIMEOUT = 20
DAD_TIMEOUT = 10
# Every sysctl the plumbing writes (_netlink.IPV6_SYSCTLS, BRIDGE_ISOLATION_SYSCTLS, POD_ISOLATION_SYSCTLS);
# tests/unit/test_pod_snapshot.py fails when the plumbing gains one that is not here.
SYSCTLS = {"ipv4": ("arp_ignore", "arp_announce"),
           "ipv6": ("disable_ipv6", "addr_gen_mode", "autoconf", "accept_ra")}
LINK_FIELDS = ("flags", "mtu", "txqlen", "address", "broadcast", "master", "link_type", "group", "promiscuity",
               "allmulti")
# iproute2 prints M-DOWN from the ifindex of a veth's peer looked up in *this* namespace, where that
# index may name an unrelated link: not a flag of the link itself.
NOT_FLAGS = {"M-DOWN"}
ADDRESS_NOISE = {"valid_life_time", "preferred_life_time"}
ROUTE_NOISE = {"expires"}
QDISC_NOISE = {"refcnt"}
FILTER_NOISE = {"handle", "stats", "not_in_hw", "in_hw", "in_hw_count", "id", "tag", "jited"}
# The majors the kernel numbers qdiscs with itself (qdisc_alloc_handle); ffff: is ingress's, fixed.
AUTO_HANDLES = range(0x8000, 0xFFFF)


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _json(*argv: str) -> list:
    out = _run(*argv)
    return json.loads(out) if out.strip() else []


def _without(obj, noise: set):
    """``obj`` with the keys in ``noise`` removed at every depth."""
    if isinstance(obj, dict):
        return {k: _without(v, noise) for k, v in obj.items() if k not in noise}
    if isinstance(obj, list):
        return [_without(v, noise) for v in obj]
    return obj


def _tentative(netns: str) -> list:
    return [a["local"] for e in _json("ip", "-n", netns, "-j", "addr") for a in e.get("addr_info", [])
            if a.get("tentative")]


def wait_for_dad(netns: str, timeout: float = DAD_TIMEOUT) -> None:
    """Until no IPv6 address of the namespace is in duplicate address detection, or ``timeout``."""
    deadline = time.monotonic() + timeout
    while _tentative(netns) and time.monotonic() < deadline:
        time.sleep(0.05)


def _links(netns: str) -> dict:
    addresses = {e["ifname"]: e.get("addr_info", []) for e in _json("ip", "-n", netns, "-j", "addr")}
    out = {}
    for link in _json("ip", "-n", netns, "-j", "-d", "link"):
        info = link.get("linkinfo", {})
        entry = {key: link.get(key) for key in LINK_FIELDS}
        entry["flags"] = sorted(set(link.get("flags", [])) - NOT_FLAGS)
        entry["kind"] = info.get("info_kind")
        entry["slave_kind"] = info.get("info_slave_kind")
        entry["addresses"] = _without(addresses.get(link["ifname"], []), ADDRESS_NOISE)
        out[link["ifname"]] = entry
    return out


def _routes(netns: str) -> dict:
    return {family: _without(_json("ip", "-n", netns, "-j", f"-{family[-1]}", "route", "show", "table", "all"),
                             ROUTE_NOISE)
            for family in ("ipv4", "ipv6")}


def _stable_handle(handle):
    """A qdisc handle ("8001:", "8001:1"), with the major the kernel numbered itself as "auto"."""
    if not isinstance(handle, str) or ":" not in handle:
        return handle
    major, minor = handle.split(":", 1)
    if major and int(major, 16) in AUTO_HANDLES:
        return f"auto:{minor}"
    return handle


def _qdiscs(netns: str) -> list:
    out = []
    for qdisc in _without(_json("tc", "-n", netns, "-j", "qdisc", "show"), QDISC_NOISE):
        for key in ("handle", "parent"):
            if key in qdisc:
                qdisc[key] = _stable_handle(qdisc[key])
        out.append(qdisc)
    return out


def _filters(netns: str, qdiscs: list) -> dict:
    """``{"dev ingress": [...], "dev egress": [...]}`` of the links with an ingress or clsact qdisc."""
    out = {}
    for qdisc in qdiscs:
        directions = {"ingress": ("ingress",), "clsact": ("ingress", "egress")}.get(qdisc["kind"], ())
        for direction in directions:
            found = _json("tc", "-n", netns, "-j", "filter", "show", "dev", qdisc["dev"], direction)
            out[f"{qdisc['dev']} {direction}"] = _without(found, FILTER_NOISE)
    return out


def _sysctls(netns: str) -> dict:
    """``{"ipv4/conf/eth0/arp_ignore": "0", ...}`` for all, default and every link (one process)."""
    paths = " ".join(f"{family}/conf/*/{key}" for family, keys in SYSCTLS.items() for key in keys)
    # The globs expand in a shell inside the namespace: its own links' directories. A family that is
    # off has none (grep -s is quiet about it).
    out = _run("ip", "netns", "exec", netns, "sh", "-c", f"cd /proc/sys/net && grep -s -H . {paths}; true")
    return dict(line.split(":", 1) for line in out.splitlines())


def snapshot(netns: str) -> dict:
    """The namespace's links, addresses, routes, qdiscs, filters and sysctls, for equality checks."""
    wait_for_dad(netns)
    qdiscs = _qdiscs(netns)
    return {"links": _links(netns), "routes": _routes(netns), "qdiscs": qdiscs, "filters": _filters(netns, qdiscs),
            "sysctls": _sysctls(netns)}


if __name__ == "__main__":
    json.dump({netns: snapshot(netns) for netns in sys.argv[1:]}, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
