# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the link-local address and MAC of a pod's IPv6 gateway.

The VM's Router Advertisements must come from the gateway's link-local address (RFC 4861
6.1.2: hosts drop others), and its frames to the gateway carry the gateway's MAC. A pod's
default route names the gateway by a link-local address (Calico: ``fe80::ecee:eeff:feee:eeee``)
or by a global one (the CNI bridge plugin). Learned once, before anything changes, while the
pod interface still has its addresses: an ICMPv6 echo request to the gateway gives its MAC,
and one to all nodes (``ff02::1``) gives the link-local address that answers from that MAC.
Nothing but those two echo requests leaves the pod, and only on its own interface.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import struct
import time

ETH_P_IPV6 = 0x86DD
IPPROTO_ICMPV6 = 58
ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY = 128, 129
ALL_NODES = "ff02::1"
ETH_HEADER, IPV6_HEADER = 14, 40
SO_BINDTODEVICE = 25
PROBE_TIMEOUT = 2.0
PROBE_INTERVAL = 0.3  # resent until answered: a gateway address still in DAD answers nothing yet


def is_link_local(address):
    return ipaddress.IPv6Address(address).is_link_local


def eui64_link_local(mac):
    """The link-local address a modified EUI-64 interface identifier gives a MAC (RFC 4291 appendix A)."""
    raw = bytearray(int(part, 16) for part in mac.split(":"))
    raw[0] ^= 0x02
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + bytes(raw[:3]) + b"\xff\xfe" + bytes(raw[3:])))


def echo_reply_of(frame, ident):
    """``(source address, source MAC)`` of an Ethernet frame carrying our ICMPv6 echo reply, else None."""
    if len(frame) < ETH_HEADER + IPV6_HEADER + 8 or frame[12:14] != b"\x86\xdd":
        return None
    if frame[ETH_HEADER + 6] != IPPROTO_ICMPV6:  # next header: no extension headers in an echo reply
        return None
    icmp = ETH_HEADER + IPV6_HEADER
    kind, ident_seen = frame[icmp], struct.unpack_from("!H", frame, icmp + 4)[0]
    if kind != ICMPV6_ECHO_REPLY or ident_seen != ident:
        return None
    source = str(ipaddress.IPv6Address(bytes(frame[ETH_HEADER + 8:ETH_HEADER + 24])))
    return source, ":".join(f"{b:02x}" for b in frame[6:12])


def choose(gateway, replies):
    """``{"address", "mac", "how"}`` from the echo replies seen, or None when the gateway never answered."""
    macs = [mac for source, mac in replies if source == gateway]
    if not macs:
        return None
    mac = macs[0]
    if is_link_local(gateway):
        return {"address": gateway, "mac": mac, "how": "route"}
    for source, seen in replies:
        if seen == mac and is_link_local(source):
            return {"address": source, "mac": mac, "how": "echo"}
    # A gateway that ignores echo requests to all nodes: the address its MAC gives by EUI-64.
    return {"address": eui64_link_local(mac), "mac": mac, "how": "eui64"}


def _echo_request(ident, seq):
    return struct.pack("!BBHHH", ICMPV6_ECHO_REQUEST, 0, 0, ident, seq) + b"virtnet-podnet"


def _send_probes(ping, ident, gateway, ifindex):
    for seq, target in enumerate((gateway, ALL_NODES)):
        scope = ifindex if is_link_local(target) or target == ALL_NODES else 0
        try:
            ping.sendto(_echo_request(ident, seq), (target, 0, 0, scope))
        except OSError:
            continue  # no route, or our own address still in DAD: sent again shortly


def discover(ifname, gateway, timeout=PROBE_TIMEOUT):
    """The gateway's link-local address and MAC (see ``choose``), learned on ``ifname`` in the calling
    thread's network namespace (the pod's); None when it does not answer within ``timeout`` seconds."""
    ifindex = socket.if_nametoindex(ifname)
    ident = int.from_bytes(os.urandom(2), "big")
    capture = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IPV6))
    ping = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_ICMPV6)
    replies = []
    try:
        capture.bind((ifname, ETH_P_IPV6))
        capture.setblocking(False)
        ping.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
        ping.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
        ping.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        deadline, resend = time.monotonic() + timeout, 0.0
        while True:
            found = choose(gateway, replies)
            if found is not None and found["how"] != "eui64":
                return found
            now = time.monotonic()
            if now >= deadline:
                return found
            if now >= resend:
                _send_probes(ping, ident, gateway, ifindex)
                resend = now + PROBE_INTERVAL
            if not select.select([capture], [], [], min(deadline, resend) - now)[0]:
                continue
            while True:
                try:
                    frame = capture.recv(2048)
                except BlockingIOError:
                    break
                reply = echo_reply_of(frame, ident)
                if reply is not None:
                    replies.append(reply)
    finally:
        capture.close()
        ping.close()
