# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: discovery of the pod interface and ensure-style netlink steps.

Every function takes an ``IPRoute`` opened inside the pod's namespace (see ``_netns``).
Steps follow the CNI bridge plugin: an existing object is fine, it is re-read and
type-checked; deletes tolerate objects that are already gone.
"""

from __future__ import annotations

import errno
import os
import socket

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

try:
    from pyroute2.netlink.exceptions import NetlinkError
except ImportError:  # guarded by _netns.HAS_PYROUTE2 in the callers
    class NetlinkError(Exception):
        code = 0

IFF_UP = 0x1
RT_TABLE_LOCAL = 255
RTPROT_KERNEL = 2
RT_SCOPE_LINK = 253
RTNH_F_ONLINK = 0x4
IFA_F_NOPREFIXROUTE = 0x200
IFA_F_NODAD = 0x02
TUN_TYPE_TAP = 2
# Address flags worth restoring; the rest (permanent, secondary, tentative) the kernel derives.
RESTORED_ADDR_FLAGS = IFA_F_NOPREFIXROUTE | IFA_F_NODAD
IPV6_SYSCTLS = (("addr_gen_mode", "1"), ("autoconf", "0"), ("accept_ra", "0"))


def nl_error(action, exc):
    return PodnetError(f"{action} failed: {exc}", errno=getattr(exc, "code", None))


# -- reading --------------------------------------------------------------------

def link_view(msg):
    """The facts of one link that matter here, as plain data."""
    view = {
        "name": msg.get("ifname"),
        "index": msg["index"],
        "kind": msg.get(("linkinfo", "kind")),
        "mac": msg.get("address"),
        "mtu": msg.get("mtu"),
        "up": bool(msg["flags"] & IFF_UP),
        "master": msg.get("master"),
        "group": msg.get("group") or 0,
    }
    if view["kind"] == "bridge":
        view["stp_state"] = msg.get(("linkinfo", "data", "IFLA_BR_STP_STATE"))
        view["forward_delay"] = msg.get(("linkinfo", "data", "IFLA_BR_FORWARD_DELAY"))
    elif view["kind"] == "tun":  # pyroute2 reports a tap's kind as "tun"; IFLA_TUN_TYPE tells tap apart
        view["tun_type"] = msg.get(("linkinfo", "data", "IFLA_TUN_TYPE"))
        owner = msg.get(("linkinfo", "data", "IFLA_TUN_OWNER"))
        group = msg.get(("linkinfo", "data", "IFLA_TUN_GROUP"))
        view["uid"] = None if owner in (None, 0xFFFFFFFF) else owner
        view["gid"] = None if group in (None, 0xFFFFFFFF) else group
        view["multiqueue"] = bool(msg.get(("linkinfo", "data", "IFLA_TUN_MULTI_QUEUE")))
        view["persist"] = bool(msg.get(("linkinfo", "data", "IFLA_TUN_PERSIST")))
    if msg.get(("linkinfo", "slave_kind")) == "bridge":
        view["learning"] = bool(msg.get(("linkinfo", "slave_data", "IFLA_BRPORT_LEARNING")))
    return view


def links(ipr):
    """All links of the namespace by name. Costly to decode (~3 ms): prefer ``links_named``."""
    try:
        return {v["name"]: v for v in (link_view(m) for m in ipr.get_links())}
    except NetlinkError as exc:
        raise nl_error("listing links", exc) from None


def links_named(ipr, names):
    """The links among ``names`` that exist, by name: one small request each, no full dump."""
    out = {}
    for name in names:
        link = get_link(ipr, name)
        if link is not None:
            out[name] = link
    return out


def ifname(index):
    """Name of a link in the current namespace (an ioctl, no netlink round trip)."""
    try:
        return socket.if_indextoname(index)
    except OSError:
        return str(index)


def get_link(ipr, name):
    try:
        msgs = ipr.link("get", ifname=name)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise nl_error(f"reading link {name}", exc) from None
    return link_view(msgs[0])


def _addr_entry(msg, family):
    local = msg.get("local") or msg.get("address")
    entry = {
        "address": local,
        "prefixlen": msg["prefixlen"],
        "scope": msg["scope"],
        "flags": msg.get("flags") or msg["flags"],
    }
    if family == socket.AF_INET:
        peer = msg.get("address")
        entry["peer"] = peer if peer and peer != local else None
        entry["broadcast"] = msg.get("broadcast")
        entry["label"] = msg.get("label")
    return entry


def addresses(ipr, index, family=socket.AF_INET):
    try:
        msgs = ipr.get_addr(family=family, index=index)
    except NetlinkError as exc:
        raise nl_error("listing addresses", exc) from None
    return [_addr_entry(msg, family) for msg in msgs]


def addresses_by_index(ipr, family=socket.AF_INET):
    """Every address of the namespace, grouped by link index: one dump instead of one per link."""
    out = {}
    try:
        msgs = ipr.get_addr(family=family)
    except NetlinkError as exc:
        raise nl_error("listing addresses", exc) from None
    for msg in msgs:
        out.setdefault(msg["index"], []).append(_addr_entry(msg, family))
    return out


def routes(ipr, index):
    """IPv4 routes through the link, every table but ``local`` (the kernel rebuilds that one)."""
    out = []
    try:
        msgs = ipr.get_routes(family=socket.AF_INET, oif=index)
    except NetlinkError as exc:
        raise nl_error("listing routes", exc) from None
    for msg in msgs:
        table = msg.get("table") or msg["table"]
        if table == RT_TABLE_LOCAL or msg.get("oif") != index:
            continue
        out.append({
            "dst": msg.get("dst"),
            "dst_len": msg["dst_len"],
            "gateway": msg.get("gateway"),
            "scope": msg["scope"],
            "proto": msg["proto"],
            "type": msg["type"],
            "table": table,
            "priority": msg.get("priority"),
            "prefsrc": msg.get("prefsrc"),
            "tos": msg["tos"],
            "onlink": bool(msg["flags"] & RTNH_F_ONLINK),
        })
    return out


def discover(ipr, name, link=None, ipv4=None):
    """Everything recorded about the pod interface before any change, or None if it is missing.

    ``link`` and ``ipv4`` spare the round trips when the caller has just read them.
    """
    link = link or get_link(ipr, name)
    if link is None:
        return None
    return {
        "name": name,
        "mac": link["mac"],
        "mtu": link["mtu"],
        "up": link["up"],
        "kind": link["kind"],
        "master": link["master"],
        "ipv4": addresses(ipr, link["index"]) if ipv4 is None else ipv4,
        "ipv6": addresses(ipr, link["index"], socket.AF_INET6),
        "routes": routes(ipr, link["index"]),
    }


# -- ensure steps ---------------------------------------------------------------

def _index(ipr, name):
    """ifindex by name: an ioctl on a socket of this thread, which is inside the pod's namespace."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise PodnetError(f"link {name} disappeared while being configured") from None


def set_link(ipr, name, what, master_name=None, **kwarg):
    if master_name is not None:
        kwarg["master"] = _index(ipr, master_name)
    try:
        ipr.link("set", index=_index(ipr, name), **kwarg)
    except NetlinkError as exc:
        raise nl_error(f"{what} on {name}", exc) from None


def create_bridge(ipr, name, mtu, group=0):
    """Create the bridge down, STP off, forward delay 0, no IPv6 autoconfiguration; EEXIST is fine.

    The MTU given at creation holds until ports join; ports all carry the pod MTU, so the
    bridge (which follows its smallest port) keeps it.
    """
    try:
        ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0, mtu=mtu, group=group)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise nl_error(f"creating bridge {name}", exc) from None
        # Someone made it meanwhile: re-read and type-check, as the CNI bridge plugin does.
        link = get_link(ipr, name)
        if link is None or link["kind"] != "bridge":
            raise PodnetError(f"{name} exists but is not a bridge (kind {link and link['kind']}); "
                              "remove it or pick another name") from None
        if link["mtu"] != mtu:
            set_link(ipr, name, "setting the MTU", mtu=mtu)
    disable_ipv6_autoconf(name)


def disable_ipv6_autoconf(name):
    """No link-local address or SLAAC on the bridge (the VM owns the L3 side)."""
    base = f"/proc/sys/net/ipv6/conf/{name}"
    if not os.path.isdir(base):
        return  # IPv6 is off in this kernel or namespace
    for key, value in IPV6_SYSCTLS:
        path = os.path.join(base, key)
        try:
            with open(path) as handle:
                if handle.read().strip() == value:
                    continue
            with open(path, "w") as handle:
                handle.write(value)
        except OSError as exc:
            raise PodnetError(f"setting {path} to {value} failed: {exc.strerror}") from None


def ipv6_autoconf_off(name):
    base = f"/proc/sys/net/ipv6/conf/{name}"
    if not os.path.isdir(base):
        return True
    try:
        for key, value in IPV6_SYSCTLS:
            with open(os.path.join(base, key)) as handle:
                if handle.read().strip() != value:
                    return False
    except OSError:
        return False
    return True


def set_bridge_options(ipr, name):
    try:
        ipr.link("set", index=_index(ipr, name), kind="bridge", br_stp_state=0, br_forward_delay=0)
    except NetlinkError as exc:
        raise nl_error(f"setting STP off and forward delay 0 on {name}", exc) from None


def set_learning(ipr, name, learning):
    try:
        ipr.brport("set", index=_index(ipr, name), learning=int(learning))
    except NetlinkError as exc:
        raise nl_error(f"setting learning {'on' if learning else 'off'} on {name}", exc) from None


def set_mac(ipr, name, mac):
    index = _index(ipr, name)
    try:
        ipr.link("set", index=index, address=mac)
    except NetlinkError as exc:
        if exc.code != errno.EBUSY:
            raise nl_error(f"setting MAC {mac} on {name}", exc) from None
        # Some drivers refuse a live address change: down, change, up again.
        try:
            ipr.link("set", index=index, state="down")
            ipr.link("set", index=index, address=mac)
        except NetlinkError as exc2:
            raise nl_error(f"setting MAC {mac} on {name}", exc2) from None
        finally:
            ipr.link("set", index=index, state="up")


def set_port(ipr, name, mac=None, master_name=None, state=None):
    """MAC, master and state in one message (the kernel applies them in that order)."""
    kwarg = {}
    if mac is not None:
        kwarg["address"] = mac
    if master_name is not None:
        kwarg["master"] = _index(ipr, master_name)
    if state is not None:
        kwarg["state"] = state
    try:
        ipr.link("set", index=_index(ipr, name), **kwarg)
    except NetlinkError as exc:
        if exc.code != errno.EBUSY or mac is None:
            raise nl_error(f"configuring {name}", exc) from None
        # A driver that refuses a live MAC change: the slow path takes the link down for it.
        set_mac(ipr, name, mac)
        kwarg.pop("address")
        if kwarg:
            set_link(ipr, name, "configuring", **kwarg)


def create_tap(ipr, name, uid=None, gid=None, multiqueue=False):
    """Create (or re-own) a persistent tap. On an existing tap this reopens it and sets the owner."""
    kwarg = {}
    if uid is not None:
        kwarg["uid"] = uid
    if gid is not None:
        kwarg["gid"] = gid
    flags = {"no_pi": True, "one_queue": False, "vnet_hdr": True, "multi_queue": bool(multiqueue)}
    try:
        ipr.link("add", ifname=name, kind="tuntap", mode="tap", ifr=flags, **kwarg)
    except NetlinkError as exc:
        if exc.code == errno.EBUSY:
            raise PodnetError(f"tap {name} is in use (a VM holds it open) and its owner cannot be changed now") from None
        raise nl_error(f"creating tap {name}", exc) from None
    # The caller type-checked an existing link of this name; TUNSETIFF refuses a non-tap anyway.


def delete_link(ipr, name):
    """Delete a link; True if it was there. A missing link is fine."""
    link = get_link(ipr, name)
    if link is None:
        return False
    try:
        ipr.link("del", index=link["index"])
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise nl_error(f"deleting {name}", exc) from None
    return True


def delete_group(ipr, group):
    """Delete every link of ``group`` in one request: the kernel then waits for one RCU grace
    period for all of them instead of one per link (~15 ms each here)."""
    try:
        ipr.link("del", group=group)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise nl_error(f"deleting link group {group}", exc) from None


def add_address(ipr, name, addr):
    kwarg = {"index": _index(ipr, name), "address": addr["address"], "prefixlen": addr["prefixlen"],
             "scope": addr.get("scope", 0)}
    if addr.get("peer"):
        kwarg["local"] = addr["address"]
        kwarg["address"] = addr["peer"]
    if addr.get("broadcast"):
        kwarg["broadcast"] = addr["broadcast"]
    if addr.get("label") and addr["label"] != name:
        kwarg["label"] = addr["label"]
    flags = (addr.get("flags") or 0) & RESTORED_ADDR_FLAGS
    if flags:
        kwarg["flags"] = flags
    try:
        ipr.addr("add", **kwarg)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise nl_error(f"adding {addr['address']}/{addr['prefixlen']} to {name}", exc) from None


def del_address(ipr, name, addr):
    kwarg = {"index": _index(ipr, name), "address": addr["address"], "prefixlen": addr["prefixlen"]}
    if addr.get("peer"):
        kwarg["local"] = addr["address"]
        kwarg["address"] = addr["peer"]
    try:
        ipr.addr("del", **kwarg)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
            raise nl_error(f"removing {addr['address']}/{addr['prefixlen']} from {name}", exc) from None


def add_route(ipr, name, route):
    kwarg = {"oif": _index(ipr, name), "dst_len": route["dst_len"], "scope": route["scope"],
             "proto": route["proto"], "type": route["type"], "table": route["table"], "tos": route.get("tos", 0)}
    for key in ("dst", "gateway", "priority", "prefsrc"):
        if route.get(key) is not None:
            kwarg[key] = route[key]
    if route.get("onlink"):
        kwarg["flags"] = RTNH_F_ONLINK
    try:
        ipr.route("add", **kwarg)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise nl_error(f"restoring route {route_text(route)}", exc) from None


def route_text(route):
    dst = "default" if not route.get("dst_len") else f"{route['dst']}/{route['dst_len']}"
    text = dst + (f" via {route['gateway']}" if route.get("gateway") else "")
    if route.get("table") not in (None, 254):
        text += f" table {route['table']}"
    return text


def route_key(route):
    return (route.get("dst"), route.get("dst_len"), route.get("gateway"), route.get("table"), route.get("priority"),
            route.get("tos", 0))
