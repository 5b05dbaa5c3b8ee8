# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The plumbing's netlink steps written with pyroute2's ``IPRoute``: the other side of the
measurement in bench_netlink_layers.py, not shipped (docs/internals.md says why the plumbing
stays on raw rtnetlink).

A drop-in twin of the part of ``_netlink`` that ``_pod_bridge`` and ``_dhcp_filters`` use:
same function names, same return shapes, same ensure-style semantics (an existing object is
fine and is re-read and type-checked; deletes tolerate objects already gone) and the same
``PodnetError`` messages. Every rtnetlink request goes through pyroute2's ``IPRoute``, made in
process on first use by ``_netns.LazyIPRoute`` while the thread is inside the pod's
namespace (``ipr.link``, ``ipr.addr``, ``ipr.route``, ``ipr.brport``, ``ipr.get_links``).

What is not rtnetlink is shared with ``_netlink`` unchanged: name/index lookups (an ioctl),
the tun ioctls that create a tap, the IPv6 sysctls, and the pure helpers (route text and
key). The cls_bpf DHCP filters stay raw whatever layer the plumbing uses: pyroute2 declares
TCA_BPF_OPS as an integer, so ``nla``, ``parse_attrs``, ``raw_socket`` are ``_netlink``'s.
"""

from __future__ import annotations

import errno
import socket

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as _raw_layer

from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402  (what IPRoute raises; _netlink has its own for raw)
nl_error = _raw_layer.nl_error

# Constants and non-rtnetlink helpers, shared with the raw layer.
IFF_UP = _raw_layer.IFF_UP
RT_TABLE_LOCAL = _raw_layer.RT_TABLE_LOCAL
RTPROT_KERNEL = _raw_layer.RTPROT_KERNEL
RT_SCOPE_LINK = _raw_layer.RT_SCOPE_LINK
RTNH_F_ONLINK = _raw_layer.RTNH_F_ONLINK
TUN_TYPE_TAP = _raw_layer.TUN_TYPE_TAP
RESTORED_ADDR_FLAGS = _raw_layer.RESTORED_ADDR_FLAGS
NO_ID = _raw_layer.NO_ID
ifname = _raw_layer.ifname
create_tap = _raw_layer.create_tap
disable_ipv6_autoconf = _raw_layer.disable_ipv6_autoconf
ipv6_autoconf_off = _raw_layer.ipv6_autoconf_off
# The pod identity's sysctls and the kernel's inert link kind: not rtnetlink either.
BRIDGE_ISOLATION_SYSCTLS = _raw_layer.BRIDGE_ISOLATION_SYSCTLS
POD_ISOLATION_SYSCTLS = _raw_layer.POD_ISOLATION_SYSCTLS
set_link_sysctls = _raw_layer.set_link_sysctls
link_sysctls_set = _raw_layer.link_sysctls_set
read_link_sysctls = _raw_layer.read_link_sysctls
keeper_kind = _raw_layer.keeper_kind
route_text = _raw_layer.route_text
route_key = _raw_layer.route_key
# Already pyroute2 in the raw layer (``ipr.addr("add")``, ``ipr.route("add")``).
add_address = _raw_layer.add_address
add_route = _raw_layer.add_route
# For the DHCP filters, which stay raw (see the docstring).
NLA_F_NESTED = _raw_layer.NLA_F_NESTED
nla = _raw_layer.nla
parse_attrs = _raw_layer.parse_attrs
raw_socket = _raw_layer.raw_socket


# -- reading ------------------------------------------------------------------------------

def _u32(value):
    return None if value is None else int(value)


def link_view(msg):
    """The facts used here from one pyroute2 ``ifinfmsg`` (the same dict as ``_netlink``'s)."""
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    data = info.get_attr("IFLA_INFO_DATA") if info is not None else None
    view = {
        "name": msg.get_attr("IFLA_IFNAME"),
        "index": msg["index"],
        "kind": kind,
        "mac": msg.get_attr("IFLA_ADDRESS"),
        "mtu": msg.get_attr("IFLA_MTU"),
        "up": bool(msg["flags"] & IFF_UP),
        "master": msg.get_attr("IFLA_MASTER"),
        "group": msg.get_attr("IFLA_GROUP") or 0,
        "txqlen": msg.get_attr("IFLA_TXQLEN"),
    }
    has = data is not None and hasattr(data, "get_attr")
    if kind == "bridge":
        view["stp_state"] = _u32(data.get_attr("IFLA_BR_STP_STATE")) if has else None
        view["forward_delay"] = _u32(data.get_attr("IFLA_BR_FORWARD_DELAY")) if has else None
    elif kind == "tun":  # a tap reports kind "tun"; IFLA_TUN_TYPE tells tap (2) from tun (1)
        owner = data.get_attr("IFLA_TUN_OWNER") if has else None
        group = data.get_attr("IFLA_TUN_GROUP") if has else None
        view["tun_type"] = _u32(data.get_attr("IFLA_TUN_TYPE")) if has else None
        view["uid"] = None if owner in (None, NO_ID) else owner
        view["gid"] = None if group in (None, NO_ID) else group
        view["multiqueue"] = bool(data.get_attr("IFLA_TUN_MULTI_QUEUE")) if has else False
        view["persist"] = bool(data.get_attr("IFLA_TUN_PERSIST")) if has else False
    if info is not None and info.get_attr("IFLA_INFO_SLAVE_KIND") == "bridge":
        slave = info.get_attr("IFLA_INFO_SLAVE_DATA")
        view["learning"] = bool(slave.get_attr("IFLA_BRPORT_LEARNING")) if slave is not None else False
    return view


def all_links(ipr):
    """Every link of the namespace by name (one dump)."""
    try:
        return {v["name"]: v for v in map(link_view, ipr.get_links())}
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


def get_link(ipr, name):
    try:
        index = socket.if_nametoindex(name)  # an ioctl: a missing link costs no netlink round trip
    except OSError:
        return None
    try:
        replies = ipr.link("get", index=index)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise nl_error(f"reading link {name}", exc) from None
    return link_view(replies[0]) if replies else None


def _addr_entry(msg, family):
    local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
    entry = {
        "address": local,
        "prefixlen": msg["prefixlen"],
        "scope": msg["scope"],
        "flags": msg.get_attr("IFA_FLAGS") or msg["flags"],
    }
    if family == socket.AF_INET:
        peer = msg.get_attr("IFA_ADDRESS")
        entry["peer"] = peer if peer and peer != local else None
        entry["broadcast"] = msg.get_attr("IFA_BROADCAST")
        entry["label"] = msg.get_attr("IFA_LABEL")
    return msg["index"], entry


def addresses_by_index(ipr, family=socket.AF_INET):
    """Every address of the namespace, grouped by link index: one dump instead of one per link."""
    out = {}
    try:
        replies = ipr.addr("dump", family=family)
        for msg in replies:
            if msg["family"] != family:
                continue
            index, entry = _addr_entry(msg, family)
            out.setdefault(index, []).append(entry)
    except NetlinkError as exc:
        raise nl_error("listing addresses", exc) from None
    return out


def addresses(ipr, index, family=socket.AF_INET):
    return addresses_by_index(ipr, family).get(index, [])


def routes(ipr, index, family=socket.AF_INET):
    """Routes of ``family`` through the link, every table but ``local`` (the kernel rebuilds that one)."""
    out = []
    try:
        replies = ipr.route("dump", family=family)
        for msg in replies:
            table = msg.get_attr("RTA_TABLE") or msg["table"]
            if msg["family"] != family or table == RT_TABLE_LOCAL or msg.get_attr("RTA_OIF") != index:
                continue
            out.append({
                "dst": msg.get_attr("RTA_DST"),
                "dst_len": msg["dst_len"],
                "gateway": msg.get_attr("RTA_GATEWAY"),
                "scope": msg["scope"],
                "proto": msg["proto"],
                "type": msg["type"],
                "table": table,
                "priority": msg.get_attr("RTA_PRIORITY"),
                "prefsrc": msg.get_attr("RTA_PREFSRC"),
                "tos": msg["tos"],
                "onlink": bool(msg["flags"] & RTNH_F_ONLINK),
            })
    except NetlinkError as exc:
        raise nl_error("listing routes", exc) from None
    return out


def discover(ipr, name, link=None, ipv4=None):
    """Everything recorded about the pod interface before any change, or None if it is missing.

    ``link`` and ``ipv4`` spare the round trips when the caller has just read them.
    """
    link = link or get_link(ipr, name)
    if link is None:
        return None
    ipv4 = addresses(ipr, link["index"]) if ipv4 is None else ipv4
    return _raw_layer.pod_record(name, link, ipv4, addresses(ipr, link["index"], socket.AF_INET6),
                                 routes(ipr, link["index"]), routes(ipr, link["index"], socket.AF_INET6))


# -- ensure steps as pyroute2 writes ----------------------------------------------------

def _index(name):
    """ifindex by name: an ioctl on a socket of this thread, which is inside the pod's namespace."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise PodnetError(f"link {name} disappeared while being configured") from None


def _setlink(ipr, index, mac=None, mtu=None, master=None, group=None, state=None, txqlen=None):
    kwarg = {"index": index}
    if txqlen is not None:
        kwarg["txqlen"] = txqlen
    if mac is not None:
        kwarg["address"] = mac
    if mtu is not None:
        kwarg["mtu"] = mtu
    if master is not None:
        kwarg["master"] = master
    if group is not None:
        kwarg["group"] = group
    if state is not None:
        kwarg["state"] = state
    ipr.link("set", **kwarg)


def set_link(ipr, name, what, master_name=None, **kwarg):
    """Set ``mtu``, ``master`` (or ``master_name``), ``group``, ``state`` in one message.

    The kernel applies MTU, group and master before the up/down flag change.
    """
    if master_name is not None:
        kwarg["master"] = _index(master_name)
    try:
        _setlink(ipr, _index(name), **kwarg)
    except NetlinkError as exc:
        raise nl_error(f"{what} on {name}", exc) from None


def create_bridge(ipr, name, mtu, group=0):
    """Create the bridge down, STP off, forward delay 0, no IPv6 autoconfiguration; EEXIST is fine.

    The MTU given at creation holds until ports join; ports all carry the pod MTU, so the
    bridge (which follows its smallest port) keeps it.
    """
    try:
        ipr.link("add", ifname=name, kind="bridge", mtu=mtu, group=group, br_forward_delay=0, br_stp_state=0)
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise nl_error(f"creating bridge {name}", exc) from None
        # Someone made it meanwhile: re-read and type-check, as the CNI bridge plugin does.
        link = get_link(ipr, name)
        if link is None or link["kind"] != "bridge":
            raise PodnetError(f"{name} exists but is not a bridge (kind {link and link['kind']}); "
                              "remove it or pick another name") from None
        set_bridge_options(ipr, name)
        if link["mtu"] != mtu:
            set_link(ipr, name, "setting the MTU", mtu=mtu)
    disable_ipv6_autoconf(name)


def set_bridge_options(ipr, name):
    try:
        ipr.link("set", index=_index(name), kind="bridge", br_forward_delay=0, br_stp_state=0)
    except NetlinkError as exc:
        raise nl_error(f"setting STP off and forward delay 0 on {name}", exc) from None


def set_learning(ipr, name, learning):
    """Learning on the link's bridge port (``ip link set ... type bridge_slave learning off``)."""
    try:
        ipr.brport("set", index=_index(name), learning=int(learning))
    except NetlinkError as exc:
        raise nl_error(f"setting learning {'on' if learning else 'off'} on {name}", exc) from None


def set_mac(ipr, name, mac):
    # Without _netlink's EBUSY retry (down, change, up): a veth never refuses, and the bench times one call.
    try:
        _setlink(ipr, _index(name), mac=mac)
    except NetlinkError as exc:
        raise nl_error(f"setting MAC {mac} on {name}", exc) from None


def set_port(ipr, name, mac=None, master_name=None, state=None):
    """MAC, master and state in one message (the kernel applies them in that order)."""
    master = _index(master_name) if master_name is not None else None
    try:
        _setlink(ipr, _index(name), mac=mac, master=master, state=state)
    except NetlinkError as exc:
        if exc.code != errno.EBUSY or mac is None:
            raise nl_error(f"configuring {name}", exc) from None
        # A driver that refuses a live MAC change: the slow path takes the link down for it.
        set_mac(ipr, name, mac)
        if master is not None or state is not None:
            set_link(ipr, name, "configuring", master=master, state=state)


def delete_link(ipr, name):
    """Delete a link; True if it was there. A missing link is fine."""
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        return False
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise nl_error(f"deleting {name}", exc) from None
    return True


def delete_group(ipr, group):
    """Delete every link of ``group`` in one request: the kernel then waits for one RCU grace
    period for all of them instead of one per link."""
    try:
        ipr.link("del", index=0, group=group)
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise nl_error(f"deleting link group {group}", exc) from None


def create_dummy(ipr, name, mac, mtu, kind="dummy"):
    """The pod identity's inert link (dummy or ifb), up; EEXIST is fine if it is of that kind."""
    try:
        ipr.link("add", ifname=name, kind=kind, address=mac, mtu=mtu, state="up")
    except NetlinkError as exc:
        if exc.code != errno.EEXIST:
            raise nl_error(f"creating {kind} {name}", exc) from None
        link = get_link(ipr, name)
        if link is None or link["kind"] != kind:
            raise PodnetError(f"{name} exists but is not a {kind} (kind {link and link['kind']})") from None
        set_port(ipr, name, mac=mac, state="up")
        set_link(ipr, name, "setting the MTU", mtu=mtu)


def rename_link(ipr, name, new_name):
    index = _index(name)
    try:
        ipr.link("set", index=index, state="down")
        ipr.link("set", index=index, ifname=new_name)
    except NetlinkError as exc:
        raise nl_error(f"renaming {name} to {new_name}", exc) from None


def del_address(ipr, name, addr):
    kwarg = {"index": _index(name), "address": addr.get("peer") or addr["address"], "local": addr["address"],
             "prefixlen": addr["prefixlen"]}
    try:
        ipr.addr("del", **kwarg)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
            raise nl_error(f"removing {addr['address']}/{addr['prefixlen']} from {name}", exc) from None
