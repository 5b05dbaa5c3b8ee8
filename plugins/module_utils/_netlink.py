# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: discovery of the pod interface and ensure-style netlink steps.

Every function runs in the thread that entered the pod's namespace and takes the handle
``_netns.entered`` yields: its raw rtnetlink socket (made on first use, inside the
namespace) carries the plumbing's small requests; pyroute2's ``IPRoute`` behind it restores
addresses and routes. Steps follow the CNI bridge plugin: an existing object is fine, it is
re-read and type-checked; deletes tolerate objects that are already gone.

Why raw requests: pyroute2 costs ~0.5 ms of Python per request here (asyncio loop, full
decoding of every attribute), the kernel answers a simple request in microseconds, and a
plumb needs a dozen of them.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import gzip
import os
import platform
import socket
import struct
import sys

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError


class NetlinkError(Exception):
    """The kernel's error answer to one of our raw requests; ``code`` is the errno."""

    def __init__(self, code, msg=None):
        super().__init__(code, msg)
        self.code = code


def _restore_errors():
    """What the two restores (pyroute2's ``ipr.addr``/``ipr.route``) may raise: pyroute2 has its own
    error type, imported here, by then already loaded by the restore itself."""
    from pyroute2.netlink.exceptions import NetlinkError as Pyroute2Error
    return (NetlinkError, Pyroute2Error)


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
IPV6_SYSCTLS = (("ipv6", "addr_gen_mode", "1"), ("ipv6", "autoconf", "0"), ("ipv6", "accept_ra", "0"))
# The pod identity: the pod's own stack never answers ARP or NDP for the VM's addresses on the bridge.
BRIDGE_ISOLATION_SYSCTLS = (("ipv4", "arp_ignore", "1"), ("ipv4", "arp_announce", "2"), ("ipv6", "disable_ipv6", "1"))
# ... nor on any other link of the pod (as KubeVirt sets it): each answers only for its own addresses, and
# the pod IP is on the inert link alone. Recorded before and restored by absent.
POD_ISOLATION_SYSCTLS = (("ipv4", "arp_ignore", "1"),)


def nl_error(action, exc):
    return PodnetError(f"{action} failed: {exc}", errno=getattr(exc, "code", None))


# -- reading: raw rtnetlink, parsed for the few attributes used here -----------------------

NLM_F_DUMP = 0x300
NLMSG_DONE = 3
RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE = 18, 22, 26
IFLA_INFO_SLAVE_KIND, IFLA_INFO_SLAVE_DATA = 4, 5
IFLA_TUN_OWNER, IFLA_TUN_GROUP, IFLA_TUN_TYPE, IFLA_TUN_PERSIST, IFLA_TUN_MULTI_QUEUE = 1, 2, 3, 6, 7
IFA_LABEL, IFA_BROADCAST, IFA_FLAGS = 3, 4, 8
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 6, 7, 15
NO_ID = 0xFFFFFFFF


def parse_attrs(data, offset, end):
    out = {}
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + length]  # drop NLA_F_NESTED / byte-order bits
        offset += length + (-length % 4)
    return out


def _nested(blob):
    return parse_attrs(blob, 0, len(blob)) if blob else {}


def _str(blob):
    return blob.split(b"\0", 1)[0].decode() if blob is not None else None


def _int(blob):
    if blob is None:
        return None
    return int.from_bytes(blob[:4], sys.byteorder) if len(blob) >= 4 else blob[0]


def link_view_raw(body):
    """Parse one RTM_NEWLINK payload (after the netlink header) into the facts used here."""
    index, flags = struct.unpack_from("=iI", body, 4)  # ifinfomsg: family, pad, type, index, flags, change
    attrs = parse_attrs(body, 16, len(body))
    mac = attrs.get(IFLA_ADDRESS)
    info = _nested(attrs.get(IFLA_LINKINFO))
    kind = _str(info.get(IFLA_INFO_KIND))
    data = _nested(info.get(IFLA_INFO_DATA))
    view = {
        "name": _str(attrs.get(IFLA_IFNAME)),
        "index": index,
        "kind": kind,
        "mac": ":".join(f"{b:02x}" for b in mac) if mac else None,
        "mtu": _int(attrs.get(IFLA_MTU)),
        "up": bool(flags & IFF_UP),
        "master": _int(attrs.get(IFLA_MASTER)),
        "group": _int(attrs.get(IFLA_GROUP)) or 0,
        "txqlen": _int(attrs.get(IFLA_TXQLEN)),
    }
    if kind == "bridge":
        view["stp_state"] = _int(data.get(IFLA_BR_STP_STATE))
        view["forward_delay"] = _int(data.get(IFLA_BR_FORWARD_DELAY))
    elif kind == "tun":  # a tap reports kind "tun"; IFLA_TUN_TYPE tells tap (2) from tun (1)
        view["tun_type"] = _int(data.get(IFLA_TUN_TYPE))
        owner, group = _int(data.get(IFLA_TUN_OWNER)), _int(data.get(IFLA_TUN_GROUP))
        view["uid"] = None if owner in (None, NO_ID) else owner
        view["gid"] = None if group in (None, NO_ID) else group
        view["multiqueue"] = bool(_int(data.get(IFLA_TUN_MULTI_QUEUE)))
        view["persist"] = bool(_int(data.get(IFLA_TUN_PERSIST)))
    if _str(info.get(IFLA_INFO_SLAVE_KIND)) == "bridge":
        view["learning"] = bool(_int(_nested(info.get(IFLA_INFO_SLAVE_DATA)).get(IFLA_BRPORT_LEARNING)))
    return view


def all_links(ipr):
    """Every link of the namespace by name (one dump; cheap with the raw parser)."""
    try:
        replies = raw_socket(ipr).query(RTM_GETLINK, _ifinfo(), dump=True)
    except NetlinkError as exc:
        raise nl_error("listing links", exc) from None
    return {v["name"]: v for v in map(link_view_raw, replies)}


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
        index = socket.if_nametoindex(name)  # an ioctl: a missing link costs no netlink round trip
    except OSError:
        return None
    try:
        replies = raw_socket(ipr).query(RTM_GETLINK, _ifinfo(index))
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise nl_error(f"reading link {name}", exc) from None
    return link_view_raw(replies[0]) if replies else None


def _addr_entry(body, family):
    prefixlen, hflags, scope, index = struct.unpack_from("=BBBI", body, 1)  # ifaddrmsg after the family
    attrs = parse_attrs(body, 8, len(body))

    def ntop(blob):
        return socket.inet_ntop(family, blob) if blob else None

    local = ntop(attrs.get(IFA_LOCAL)) or ntop(attrs.get(IFA_ADDRESS))
    entry = {
        "address": local,
        "prefixlen": prefixlen,
        "scope": scope,
        "flags": _int(attrs.get(IFA_FLAGS)) or hflags,
    }
    if family == socket.AF_INET:
        peer = ntop(attrs.get(IFA_ADDRESS))
        entry["peer"] = peer if peer and peer != local else None
        entry["broadcast"] = ntop(attrs.get(IFA_BROADCAST))
        entry["label"] = _str(attrs.get(IFA_LABEL))
    return index, entry


def addresses_by_index(ipr, family=socket.AF_INET):
    """Every address of the namespace, grouped by link index: one dump instead of one per link."""
    out = {}
    try:
        replies = raw_socket(ipr).query(RTM_GETADDR, struct.pack("=BBBBI", family, 0, 0, 0, 0), dump=True)
    except NetlinkError as exc:
        raise nl_error("listing addresses", exc) from None
    for body in replies:
        if body[0] != family:
            continue
        index, entry = _addr_entry(body, family)
        out.setdefault(index, []).append(entry)
    return out


def addresses(ipr, index, family=socket.AF_INET):
    return addresses_by_index(ipr, family).get(index, [])


def routes(ipr, index, family=socket.AF_INET):
    """Routes of ``family`` through the link, every table but ``local`` (the kernel rebuilds that one)."""
    out = []
    try:
        replies = raw_socket(ipr).query(RTM_GETROUTE, struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0),
                                        dump=True)
    except NetlinkError as exc:
        raise nl_error("listing routes", exc) from None

    def ntop(blob):
        return socket.inet_ntop(family, blob) if blob else None

    for body in replies:
        dst_len = body[1]  # rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
        tos, table, proto, scope, rtype, flags = struct.unpack_from("=BBBBBI", body, 3)
        attrs = parse_attrs(body, 12, len(body))
        table = _int(attrs.get(RTA_TABLE)) or table
        if body[0] != family or table == RT_TABLE_LOCAL or _int(attrs.get(RTA_OIF)) != index:
            continue
        out.append({
            "dst": ntop(attrs.get(RTA_DST)),
            "dst_len": dst_len,
            "gateway": ntop(attrs.get(RTA_GATEWAY)),
            "scope": scope,
            "proto": proto,
            "type": rtype,
            "table": table,
            "priority": _int(attrs.get(RTA_PRIORITY)),
            "prefsrc": ntop(attrs.get(RTA_PREFSRC)),
            "tos": tos,
            "onlink": bool(flags & RTNH_F_ONLINK),
        })
    return out


def discover(ipr, name, link=None, ipv4=None):
    """Everything recorded about the pod interface before any change, or None if it is missing.

    ``link`` and ``ipv4`` spare the round trips when the caller has just read them.
    """
    link = link or get_link(ipr, name)
    if link is None:
        return None
    ipv4 = addresses(ipr, link["index"]) if ipv4 is None else ipv4
    return pod_record(name, link, ipv4, addresses(ipr, link["index"], socket.AF_INET6), routes(ipr, link["index"]),
                      routes(ipr, link["index"], socket.AF_INET6))


def pod_record(name, link, ipv4, ipv6, routes_of_link, routes6=()):
    """The pod interface as recorded in the state cache (``original``)."""
    return {
        "name": name,
        "mac": link["mac"],
        "mtu": link["mtu"],
        "up": link["up"],
        "kind": link["kind"],
        "master": link["master"],
        # A CNI's veth has txqlen 0; the kernel raises it to 1000 when the filters' ingress qdisc comes.
        "txqlen": link["txqlen"],
        "ipv4": ipv4,
        "ipv6": ipv6,
        "routes": routes_of_link,
        # Records older than the pod identity have none: setting the link down loses them.
        "routes6": list(routes6),
    }


# -- the raw rtnetlink socket, and ensure steps as raw writes --------------------------------

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR = 2
RTM_NEWLINK, RTM_DELLINK, RTM_SETLINK, RTM_DELADDR = 16, 17, 19, 21
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_TXQLEN, IFLA_PROTINFO, IFLA_LINKINFO, IFLA_GROUP = 1, 3, 4, 10, 13, 12, 18, 27
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
IFLA_BR_FORWARD_DELAY, IFLA_BR_STP_STATE = 1, 5
IFLA_BRPORT_LEARNING = 8
IFA_ADDRESS, IFA_LOCAL = 1, 2
NLA_F_NESTED = 0x8000
AF_BRIDGE = 7
# tun ioctls: _IOW('T', n, int); powerpc and mips encode the write direction differently.
_IOW = 0x80040000 if platform.machine().startswith(("ppc", "mips")) else 0x40040000
TUNSETIFF, TUNSETPERSIST, TUNSETOWNER, TUNSETGROUP = (_IOW | 0x5400 | n for n in (202, 203, 204, 206))
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_MULTI_QUEUE = 0x0002, 0x1000, 0x4000, 0x0100


def nla(kind, payload):
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + b"\0" * (-size % 4)


def _u32(kind, value):
    return nla(kind, struct.pack("=I", value))


class RawRtnl:
    """A bare rtnetlink socket for acknowledged write requests (see the note above)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self):
        self.sock.close()

    def query(self, msg_type, body, dump=False):
        """Send a GET request; return the payloads (after the netlink header) of the replies."""
        self.seq += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else 0)
        self.sock.send(struct.pack("=LHHLL", 16 + len(body), msg_type, flags, self.seq, 0) + body)
        out = []
        while True:
            data = self.sock.recv(1 << 17)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=LH", data, offset)
                seq = struct.unpack_from("=L", data, offset + 8)[0]
                if length < 16:
                    return out
                if seq == self.seq:
                    if kind == NLMSG_DONE:
                        return out
                    if kind == NLMSG_ERROR:
                        code = -struct.unpack_from("=i", data, offset + 16)[0]
                        if code:
                            raise NetlinkError(code, os.strerror(code))
                        return out
                    out.append(data[offset + 16:offset + length])
                    if not dump:
                        return out
                offset += length + (-length % 4)

    def request(self, msg_type, body, flags=0):
        self.seq += 1
        header = struct.pack("=LHHLL", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_ACK | flags, self.seq, 0)
        self.sock.send(header + body)
        while True:
            data = self.sock.recv(65536)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=LH", data, offset)
                seq = struct.unpack_from("=L", data, offset + 8)[0]
                if kind == NLMSG_ERROR and seq == self.seq:
                    code = -struct.unpack_from("=i", data, offset + 16)[0]
                    if code:
                        raise NetlinkError(code, os.strerror(code))
                    return
                offset += max(length + (-length % 4), 16)


def raw_socket(handle):
    """The raw rtnetlink socket of a ``_netns.entered()`` handle (made there, inside the pod)."""
    return handle.raw


def _ifinfo(index=0, family=socket.AF_UNSPEC, up=None):
    flags = change = 0
    if up is not None:
        flags, change = (IFF_UP if up else 0), IFF_UP
    return struct.pack("=BxHiII", family, 0, index, flags, change)


def _mac_bytes(mac):
    return bytes(int(part, 16) for part in mac.split(":"))


def _index(ipr, name):
    """ifindex by name: an ioctl on a socket of this thread, which is inside the pod's namespace."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise PodnetError(f"link {name} disappeared while being configured") from None


def _newlink(ipr, index, mac=None, mtu=None, master=None, group=None, state=None, txqlen=None):
    attrs = b""
    if txqlen is not None:
        attrs += _u32(IFLA_TXQLEN, txqlen)
    if mac is not None:
        attrs += nla(IFLA_ADDRESS, _mac_bytes(mac))
    if mtu is not None:
        attrs += _u32(IFLA_MTU, mtu)
    if master is not None:
        attrs += _u32(IFLA_MASTER, master)
    if group is not None:
        attrs += _u32(IFLA_GROUP, group)
    up = None if state is None else state == "up"
    raw_socket(ipr).request(RTM_NEWLINK, _ifinfo(index, up=up) + attrs)


def set_link(ipr, name, what, master_name=None, **kwarg):
    """Set ``mtu``, ``master`` (or ``master_name``), ``group``, ``state`` in one message.

    The kernel applies MTU, group and master before the up/down flag change.
    """
    if master_name is not None:
        kwarg["master"] = _index(ipr, master_name)
    try:
        _newlink(ipr, _index(ipr, name), **kwarg)
    except NetlinkError as exc:
        raise nl_error(f"{what} on {name}", exc) from None


def create_bridge(ipr, name, mtu, group=0):
    """Create the bridge down, STP off, forward delay 0, no IPv6 autoconfiguration; EEXIST is fine.

    The MTU given at creation holds until ports join; ports all carry the pod MTU, so the
    bridge (which follows its smallest port) keeps it.
    """
    data = _u32(IFLA_BR_FORWARD_DELAY, 0) + _u32(IFLA_BR_STP_STATE, 0)
    info = nla(IFLA_INFO_KIND, b"bridge\0") + nla(IFLA_INFO_DATA | NLA_F_NESTED, data)
    body = (_ifinfo() + nla(IFLA_IFNAME, name.encode() + b"\0") + _u32(IFLA_MTU, mtu) + _u32(IFLA_GROUP, group)
            + nla(IFLA_LINKINFO | NLA_F_NESTED, info))
    try:
        raw_socket(ipr).request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)
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


def _link_sysctls(name, table):
    """``(path, wanted)`` of each of the link's sysctls in ``table`` ((family, key, value) triples) that
    exists here; a family that is off in this kernel or namespace has no directory and is skipped."""
    out = []
    for family, key, value in table:
        base = f"/proc/sys/net/{family}/conf/{name}"
        if os.path.isdir(base):
            out.append((os.path.join(base, key), value))
    return out


def set_link_sysctls(name, table):
    """Write the link's sysctls in ``table`` that differ (the thread's namespace: the pod's)."""
    for path, value in _link_sysctls(name, table):
        try:
            with open(path) as handle:
                if handle.read().strip() == value:
                    continue
            with open(path, "w") as handle:
                handle.write(value)
        except OSError as exc:
            raise PodnetError(f"setting {path} to {value} failed: {exc.strerror}") from None


def read_link_sysctls(name, table):
    """``{"family/key": value}`` of the link's sysctls in ``table`` that exist here."""
    out = {}
    for family, key, _value in table:
        try:
            with open(f"/proc/sys/net/{family}/conf/{name}/{key}") as handle:
                out[f"{family}/{key}"] = handle.read().strip()
        except OSError:
            continue
    return out


def link_sysctls_set(name, table):
    try:
        for path, value in _link_sysctls(name, table):
            with open(path) as handle:
                if handle.read().strip() != value:
                    return False
    except OSError:
        return False
    return True


def disable_ipv6_autoconf(name):
    """No link-local address or SLAAC on the bridge (the VM owns the L3 side)."""
    set_link_sysctls(name, IPV6_SYSCTLS)


def ipv6_autoconf_off(name):
    return link_sysctls_set(name, IPV6_SYSCTLS)


def _kernel_config():
    """The running kernel's build options as text, where the kernel or the distribution shows them; else ''."""
    release = os.uname().release
    for path in ("/proc/config.gz", f"/boot/config-{release}"):
        try:
            if path.endswith(".gz"):
                with gzip.open(path, "rt") as handle:
                    return handle.read(1 << 20)
            with open(path) as handle:
                return handle.read(1 << 20)
        except (OSError, EOFError):
            continue
    return ""


@functools.lru_cache(maxsize=None)
def keeper_kind():
    """The link kind that keeps the pod interface's name for kubelet: ``dummy``, as KubeVirt's; ``ifb`` on a
    kernel built without the dummy driver (as inert: NOARP, it drops what it is sent). Read from the kernel's
    build options, never by trying, so check mode predicts it."""
    config = _kernel_config()
    if "CONFIG_DUMMY=" not in config and "CONFIG_IFB=" in config:
        return "ifb"
    return "dummy"


def create_dummy(ipr, name, mac, mtu, kind="dummy"):
    """Create the inert link (``kind``: dummy or ifb) that keeps the pod interface's name, MAC and MTU, up;
    EEXIST is fine if it is of that kind."""
    info = nla(IFLA_INFO_KIND, kind.encode() + b"\0")
    body = (_ifinfo(up=True) + nla(IFLA_IFNAME, name.encode() + b"\0") + nla(IFLA_ADDRESS, _mac_bytes(mac))
            + _u32(IFLA_MTU, mtu) + nla(IFLA_LINKINFO | NLA_F_NESTED, info))
    try:
        raw_socket(ipr).request(RTM_NEWLINK, body, NLM_F_CREATE | NLM_F_EXCL)
    except NetlinkError as exc:
        if exc.code == errno.EOPNOTSUPP:
            raise PodnetError(f"creating {kind} {name} failed: this kernel has no {kind} link driver (modprobe "
                              f"{kind}, or set pod_identity false)") from None
        if exc.code != errno.EEXIST:
            raise nl_error(f"creating {kind} {name}", exc) from None
        link = get_link(ipr, name)
        if link is None or link["kind"] != kind:
            raise PodnetError(f"{name} exists but is not a {kind} (kind {link and link['kind']})") from None
        set_port(ipr, name, mac=mac, state="up")
        set_link(ipr, name, "setting the MTU", mtu=mtu)


def rename_link(ipr, name, new_name):
    """Down, then renamed: kernels before 6.2 refuse to rename a link that is up (EBUSY)."""
    index = _index(ipr, name)
    try:
        _newlink(ipr, index, state="down")
        raw_socket(ipr).request(RTM_NEWLINK, _ifinfo(index) + nla(IFLA_IFNAME, new_name.encode() + b"\0"))
    except NetlinkError as exc:
        raise nl_error(f"renaming {name} to {new_name}", exc) from None


def set_bridge_options(ipr, name):
    data = _u32(IFLA_BR_FORWARD_DELAY, 0) + _u32(IFLA_BR_STP_STATE, 0)
    info = nla(IFLA_INFO_KIND, b"bridge\0") + nla(IFLA_INFO_DATA | NLA_F_NESTED, data)
    try:
        raw_socket(ipr).request(RTM_NEWLINK, _ifinfo(_index(ipr, name)) + nla(IFLA_LINKINFO | NLA_F_NESTED, info))
    except NetlinkError as exc:
        raise nl_error(f"setting STP off and forward delay 0 on {name}", exc) from None


def set_learning(ipr, name, learning):
    """Learning on the link's bridge port (what `bridge link set ... learning off` sends)."""
    protinfo = nla(IFLA_PROTINFO | NLA_F_NESTED, nla(IFLA_BRPORT_LEARNING, struct.pack("=B", int(learning))))
    try:
        raw_socket(ipr).request(RTM_SETLINK, _ifinfo(_index(ipr, name), family=AF_BRIDGE) + protinfo)
    except NetlinkError as exc:
        raise nl_error(f"setting learning {'on' if learning else 'off'} on {name}", exc) from None


def set_mac(ipr, name, mac):
    index = _index(ipr, name)
    try:
        _newlink(ipr, index, mac=mac)
    except NetlinkError as exc:
        if exc.code != errno.EBUSY:
            raise nl_error(f"setting MAC {mac} on {name}", exc) from None
        # Some drivers refuse a live address change: down, change, up again.
        try:
            _newlink(ipr, index, state="down")
            _newlink(ipr, index, mac=mac)
        except NetlinkError as exc2:
            raise nl_error(f"setting MAC {mac} on {name}", exc2) from None
        finally:
            _newlink(ipr, index, state="up")


def set_port(ipr, name, mac=None, master_name=None, state=None):
    """MAC, master and state in one message (the kernel applies them in that order)."""
    master = _index(ipr, master_name) if master_name is not None else None
    try:
        _newlink(ipr, _index(ipr, name), mac=mac, master=master, state=state)
    except NetlinkError as exc:
        if exc.code != errno.EBUSY or mac is None:
            raise nl_error(f"configuring {name}", exc) from None
        # A driver that refuses a live MAC change: the slow path takes the link down for it.
        set_mac(ipr, name, mac)
        if master is not None or state is not None:
            set_link(ipr, name, "configuring", master=master, state=state)


def create_tap(ipr, name, uid=None, gid=None, multiqueue=False):
    """Create (or re-own) a persistent tap with the tun ioctls; on an existing tap this reopens
    it and sets the owner. The tun device is created in the caller's (the pod's) namespace."""
    flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | (IFF_MULTI_QUEUE if multiqueue else 0)
    ifr = struct.pack("16sH22x", name.encode(), flags)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise PodnetError(f"creating tap {name} failed: /dev/net/tun: {exc.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        if uid is not None:
            fcntl.ioctl(fd, TUNSETOWNER, uid)
        if gid is not None:
            fcntl.ioctl(fd, TUNSETGROUP, gid)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise PodnetError(f"tap {name} is in use (a VM holds it open) and its owner cannot be changed now") from None
        raise PodnetError(f"creating tap {name} failed: {exc.strerror}") from None
    finally:
        os.close(fd)


def delete_link(ipr, name):
    """Delete a link; True if it was there. A missing link is fine."""
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        return False
    try:
        raw_socket(ipr).request(RTM_DELLINK, _ifinfo(index))
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return False
        raise nl_error(f"deleting {name}", exc) from None
    return True


def delete_group(ipr, group):
    """Delete every link of ``group`` in one request: the kernel then waits for one RCU grace
    period for all of them instead of one per link (~15 ms each here)."""
    try:
        raw_socket(ipr).request(RTM_DELLINK, _ifinfo() + _u32(IFLA_GROUP, group))
    except NetlinkError as exc:
        if exc.code != errno.ENODEV:
            raise nl_error(f"deleting link group {group}", exc) from None


def add_address(ipr, name, addr):
    kwarg = {"index": _index(ipr, name), "address": addr["address"], "prefixlen": addr["prefixlen"],
             "scope": addr.get("scope", 0), "family": socket.AF_INET6 if ":" in addr["address"] else socket.AF_INET}
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
    except _restore_errors() as exc:
        if exc.code != errno.EEXIST:
            raise nl_error(f"adding {addr['address']}/{addr['prefixlen']} to {name}", exc) from None


def del_address(ipr, name, addr):
    family = socket.AF_INET6 if ":" in addr["address"] else socket.AF_INET
    local = socket.inet_pton(family, addr["address"])
    peer = socket.inet_pton(family, addr["peer"]) if addr.get("peer") else local
    body = (struct.pack("=BBBBI", family, addr["prefixlen"], 0, 0, _index(ipr, name))
            + nla(IFA_LOCAL, local) + nla(IFA_ADDRESS, peer))
    try:
        raw_socket(ipr).request(RTM_DELADDR, body)
    except NetlinkError as exc:
        if exc.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
            raise nl_error(f"removing {addr['address']}/{addr['prefixlen']} from {name}", exc) from None


def add_route(ipr, name, route, family=socket.AF_INET):
    kwarg = {"oif": _index(ipr, name), "dst_len": route["dst_len"], "scope": route["scope"], "family": family,
             "proto": route["proto"], "type": route["type"], "table": route["table"], "tos": route.get("tos", 0)}
    for key in ("dst", "gateway", "priority", "prefsrc"):
        if route.get(key) is not None:
            kwarg[key] = route[key]
    if route.get("onlink"):
        kwarg["flags"] = RTNH_F_ONLINK
    try:
        ipr.route("add", **kwarg)
    except _restore_errors() as exc:
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
