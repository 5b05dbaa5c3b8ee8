# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_reply_frames: the servers' answers memoised into finished frames give byte for byte what the server and
the frame builder give afresh, whatever the transaction id (and DHCPv4's secs), and stay bounded."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp4_server as dhcp4
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as codec6
from ansible_collections.virtnet.podnet.plugins.module_utils import _reply_frames as reply_frames
from ansible_collections.virtnet.podnet.plugins.module_utils._responder_pod import lease6_of

from lib.pod_samples import MAC, declaration

SRC_MAC = "02:00:00:00:00:01"
BROADCAST = "255.255.255.255"
REQUESTS = [  # (message type, fields, options, destination IP): what a VM sends in its lease's life
    (codec.DISCOVER, {}, [(55, [1, 3, 6, 15, 26, 121])], BROADCAST),
    (codec.DISCOVER, {"flags": 0x8000}, [], BROADCAST),
    (codec.REQUEST, {}, [(50, "10.244.1.10"), (54, "10.244.1.1"), (55, [1, 3, 6])], BROADCAST),
    (codec.REQUEST, {}, [(50, "10.244.1.77")], BROADCAST),  # a NAK
    (codec.REQUEST, {"ciaddr": "10.244.1.10"}, [], "10.244.1.1"),  # renewing
    (codec.REQUEST, {"ciaddr": "10.244.1.10"}, [], BROADCAST),  # rebinding
    (codec.INFORM, {"ciaddr": "10.244.1.10"}, [(55, [1, 3])], BROADCAST),
]


def payload_of(index, xid, secs):
    mtype, fields, options, _dst = REQUESTS[index]
    return codec.encode_message({"op": 1, "xid": xid, "secs": secs, "chaddr": MAC, **fields}, [(53, mtype), *options])


def expected_frame(lease, payload, dst_ip):
    result = dhcp4.answer4(lease, payload, dst_ip)
    return result, codec.build_frame(SRC_MAC, result.dst_mac, lease.server_id, result.dst_ip, result.payload)


def ones_sum(data):
    data += b"\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def udp_checksum_ok(frame):
    """The UDP checksum over the pseudo header and the datagram sums to 0xFFFF (RFC 768, RFC 8200 8.1)."""
    if frame[12:14] == b"\x86\xdd":
        udp = frame[54:]
        pseudo = frame[22:54] + struct.pack("!IxxxB", len(udp), 17)
    else:
        udp = frame[34:]
        pseudo = frame[26:34] + struct.pack("!xBH", 17, len(udp))
    return ones_sum(pseudo + udp) == 0xFFFF


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(REQUESTS) - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**16 - 1)),
                min_size=1, max_size=30))
def test_a_memoised_frame_is_byte_for_byte_the_built_one(sequence):
    lease = dhcp4.Lease4(declaration())
    frames = reply_frames.Frames4(lease, SRC_MAC, lease.server_id)
    for index, xid, secs in sequence:
        payload, dst_ip = payload_of(index, xid, secs), REQUESTS[index][3]
        want_result, want_frame = expected_frame(lease, payload, dst_ip)
        result, frame = frames.answer(payload, dst_ip)
        assert frame == want_frame
        assert result == want_result
        assert udp_checksum_ok(frame)


def test_the_second_request_is_served_from_the_memo():
    lease = dhcp4.Lease4(declaration())
    frames = reply_frames.Frames4(lease, SRC_MAC, lease.server_id)
    frames.answer(payload_of(0, 1, 0), BROADCAST)
    calls = []
    real = dhcp4.answer4
    try:
        dhcp4.answer4 = lambda *a: calls.append(a) or real(*a)
        result, frame = frames.answer(payload_of(0, 0xDEADBEEF, 7), BROADCAST)
    finally:
        dhcp4.answer4 = real
    assert calls == [] and result.request["xid"] == 0xDEADBEEF and frame[46:50] == b"\xde\xad\xbe\xef"


def test_nothing_sent_is_not_memoised_and_the_memo_is_bounded():
    lease = dhcp4.Lease4(declaration())
    frames = reply_frames.Frames4(lease, SRC_MAC, lease.server_id)
    other = codec.encode_message({"op": 1, "xid": 1, "chaddr": "52:54:00:00:00:99"}, [(53, codec.DISCOVER)])
    assert frames.answer(other, BROADCAST)[1] is None and frames.memo.entries == {}
    for code in range(1, 200):  # a VM cycling through option 55 lists
        payload = codec.encode_message({"op": 1, "xid": code, "chaddr": MAC}, [(53, codec.DISCOVER), (55, [code])])
        assert frames.answer(payload, BROADCAST)[1] is not None
        assert len(frames.memo.entries) <= reply_frames.MAX_FRAMES


# DHCPv6: a SOLICIT, a REQUEST, a RENEW, an INFORMATION-REQUEST, and one for another address (NoAddrsAvail).
CLIENT_IP = codec6.link_local_from_mac(MAC)
OUR_LL = "fe80::ff:fe00:1"
SERVER_DUID = codec6.server_duid(b"node")
DUID_LL = (3).to_bytes(2, "big") + (1).to_bytes(2, "big") + codec.mac_bytes(MAC)
ORO = codec6.option(codec6.OPT_ORO, struct.pack("!HH", codec6.OPT_DNS_SERVERS, codec6.OPT_DOMAIN_LIST))


def lease6():
    decl = declaration()
    decl["ipv6"] = {"address": "fd00::10", "prefixlen": 64, "dns_servers": ["fd00::53"]}
    return lease6_of(decl)


def message6(index, xid, elapsed):
    ia = codec6.ia_na_option(1, 0, 0, [codec6.iaaddr_option("fd00::10" if index != 4 else "fd00::99", 0, 0)])
    base = [codec6.option(codec6.OPT_CLIENTID, DUID_LL), codec6.option(codec6.OPT_ELAPSED_TIME, struct.pack("!H", elapsed)),
            ORO]
    server = codec6.option(codec6.OPT_SERVERID, SERVER_DUID)
    msg_type, options = [(codec6.SOLICIT, [codec6.ia_na_option(1, 0, 0)]), (codec6.REQUEST, [server, ia]),
                         (codec6.RENEW, [server, ia]), (codec6.INFORMATION_REQUEST, []), (codec6.REQUEST, [server, ia])][index]
    return codec6.encode_message(msg_type, xid, [*base, *options])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2**24 - 1), st.integers(0, 3)), min_size=1, max_size=30))
def test_a_memoised_dhcp6_frame_is_byte_for_byte_the_built_one(sequence):
    lease = lease6()
    frames = reply_frames.Frames6(lease, SERVER_DUID, 1500, SRC_MAC, OUR_LL)
    for index, xid, elapsed in sequence:
        payload = message6(index, xid, elapsed)
        want = codec6.answer(payload, lease, SERVER_DUID, MAC, mtu=1500)
        result, frame = frames.answer(payload, MAC, CLIENT_IP)
        assert result == want and want.reply is not None
        assert frame == codec6.build_udp6_frame(SRC_MAC, MAC, OUR_LL, CLIENT_IP, want.reply)
        assert udp_checksum_ok(frame)


def test_a_dhcp6_message_from_another_mac_is_not_memoised():
    frames = reply_frames.Frames6(lease6(), SERVER_DUID, 1500, SRC_MAC, OUR_LL)
    result, frame = frames.answer(message6(0, 1, 0), "52:54:00:00:00:99", CLIENT_IP)
    assert frame is None and result.reply is None and frames.memo.entries == {}
