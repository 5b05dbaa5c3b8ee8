# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: podnet-dhcpd's finished reply frames, memoised per pod.

Both servers are pure functions of (lease, message) - ``_dhcp4_server.answer4`` and
``_dhcp6_codec.answer`` - that copy the request's transaction id into the reply, and the frame
around a reply is the pod's (its bridge's MAC and address). So a request seen before but for its
transaction id (and DHCPv4's ``secs``, which the server ignores) gets the same frame with the id and
the UDP checksum patched (RFC 1624: the new 16-bit words added to the complement of the checksum).
A VM's retransmissions and renewals then cost a dict lookup and a patch, about 3 us, instead of a
parse, an answer and a frame build: about 35 us for DHCPv4 and 80 us for DHCPv6 (``timeit`` on the
2-core bench machine), on the round trip of every answer.
"""

from __future__ import annotations

import struct

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp4_server as dhcp4
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as codec6
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec

MAX_FRAMES = 8  # a VM's few distinct requests; one cycling through more only evicts
_WORDS = struct.Struct("!HH")
_SUM = struct.Struct("!H")
_ETHERNET, _IPV4, _IPV6, _UDP = 14, 20, 40, 8  # the reply frames' headers: no IP options, no extension headers


class _Memo:
    """Frames built with a zero transaction id, cut around the id and the UDP checksum."""

    __slots__ = ("entries", "xid_at", "xid_len", "sum_at", "odd")

    def __init__(self, udp_at: int, xid_offset: int, xid_len: int) -> None:
        self.entries: dict = {}
        self.sum_at, self.xid_at, self.xid_len = udp_at + 6, udp_at + _UDP + xid_offset, xid_len
        self.odd = xid_offset % 2  # the id starts in the low byte of a 16-bit word (DHCPv6)

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, result, template: bytes) -> tuple:
        base = ~_SUM.unpack_from(template, self.sum_at)[0] & 0xFFFF
        entry = (result, base, template[:self.sum_at], template[self.sum_at + 2:self.xid_at],
                 template[self.xid_at + self.xid_len:])
        if len(self.entries) >= MAX_FRAMES:
            self.entries.clear()
        self.entries[key] = entry
        return entry

    def frame(self, entry: tuple, xid: bytes) -> bytes:
        """The entry's frame with ``xid`` in it and its checksum to match."""
        _result, base, head, mid, tail = entry
        high, low = _WORDS.unpack(b"\0" + xid if self.odd else xid)
        total = base + high + low
        total = (total & 0xFFFF) + (total >> 16)
        total = (total & 0xFFFF) + (total >> 16)
        return b"".join((head, _SUM.pack(~total & 0xFFFF or 0xFFFF), mid, xid, tail))  # UDP: 0 means "no checksum"


class Frames4:
    """``answer4`` memoised into finished frames, for one pod's socket (``src_mac``: the bridge's)."""

    __slots__ = ("lease", "src_mac", "server_ip", "memo")

    def __init__(self, lease: dhcp4.Lease4, src_mac: str, server_ip: str) -> None:
        self.lease, self.src_mac, self.server_ip = lease, src_mac, server_ip
        self.memo = _Memo(_ETHERNET + _IPV4, 4, 4)

    def answer(self, payload: bytes, dst_ip: str):
        """``(Answer4, frame)``: what ``answer4`` says, and the reply's frame (None when nothing is sent)."""
        key = (payload[:4] + payload[10:], dst_ip)  # all but the xid and secs
        entry = self.memo.get(key)
        if entry is None:
            result = dhcp4.answer4(self.lease, payload, dst_ip)
            if result.payload is None:
                return result, None
            zeroed = result.payload[:4] + b"\0\0\0\0" + result.payload[8:]
            entry = self.memo.put(key, result, codec.build_frame(self.src_mac, result.dst_mac, self.server_ip,
                                                                 result.dst_ip, zeroed))
        xid, result = payload[4:8], entry[0]
        out = result.payload
        return (dhcp4.Answer4({**result.request, "xid": int.from_bytes(xid, "big")}, result.reply,
                              out[:4] + xid + out[8:], result.dst_mac, result.dst_ip, result.detail, result.reason),
                self.memo.frame(entry, xid))


class Frames6:
    """``_dhcp6_codec.answer`` memoised into finished frames, for one pod's socket (``src_mac``: the bridge's,
    ``src_ip``: our link-local)."""

    __slots__ = ("lease", "server_duid", "mtu", "src_mac", "src_ip", "memo")

    def __init__(self, lease: dict, server_duid: bytes, mtu: int, src_mac: str, src_ip: str) -> None:
        self.lease, self.server_duid, self.mtu, self.src_mac, self.src_ip = lease, server_duid, mtu, src_mac, src_ip
        self.memo = _Memo(_ETHERNET + _IPV6, 1, 3)

    def answer(self, payload: bytes, client_mac: str, client_ip: str):
        """``(Answer, frame)``: what ``answer`` says to the client at (``client_mac``, ``client_ip``), and the
        reply's frame (None when nothing is sent)."""
        key = (payload[:1] + payload[4:], client_mac, client_ip)  # all but the transaction id
        entry = self.memo.get(key)
        if entry is None:
            result = codec6.answer(payload, self.lease, self.server_duid, client_mac, mtu=self.mtu)
            if result.reply is None:
                return result, None
            zeroed = result.reply[:1] + b"\0\0\0" + result.reply[4:]
            entry = self.memo.put(key, result, codec6.build_udp6_frame(self.src_mac, client_mac, self.src_ip,
                                                                       client_ip, zeroed))
        xid, result = payload[1:4], entry[0]
        return (codec6.Answer(result.reply[:1] + xid + result.reply[4:],
                              {**result.request, "xid": int.from_bytes(xid, "big")}, result.reason),
                self.memo.frame(entry, xid))
