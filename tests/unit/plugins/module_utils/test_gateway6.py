# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""How the pod's IPv6 gateway's link-local address and MAC are chosen from echo replies (pure parts)."""

from __future__ import annotations

import ipaddress
import struct

from ansible_collections.virtnet.podnet.plugins.module_utils import _gateway6

GW_MAC, OTHER_MAC = "92:72:48:b3:f6:92", "0a:58:0a:f4:01:0b"


def reply_frame(source, mac, ident, kind=_gateway6.ICMPV6_ECHO_REPLY, next_header=58):
    eth = bytes(6) + bytes(int(p, 16) for p in mac.split(":")) + b"\x86\xdd"
    ip6 = struct.pack("!IHBB", 0x60000000, 8, next_header, 64) + ipaddress.IPv6Address(source).packed + bytes(16)
    return eth + ip6 + struct.pack("!BBHHH", kind, 0, 0, ident, 0)


def test_eui64_link_local_flips_the_universal_bit():
    assert _gateway6.eui64_link_local("92:72:48:b3:f6:92") == "fe80::9072:48ff:feb3:f692"


def test_echo_reply_of_reads_source_and_mac_of_our_replies_only():
    frame = reply_frame("fe80::9072:48ff:feb3:f692", GW_MAC, 0x1234)
    assert _gateway6.echo_reply_of(frame, 0x1234) == ("fe80::9072:48ff:feb3:f692", GW_MAC)
    assert _gateway6.echo_reply_of(frame, 0x4321) is None  # another prober's
    assert _gateway6.echo_reply_of(reply_frame("fe80::1", GW_MAC, 1, kind=128), 1) is None  # a request
    assert _gateway6.echo_reply_of(reply_frame("fe80::1", GW_MAC, 1, next_header=0), 1) is None
    assert _gateway6.echo_reply_of(frame[:60], 0x1234) is None  # truncated
    assert _gateway6.echo_reply_of(b"\x00" * 12 + b"\x08\x00" + frame[14:], 0x1234) is None  # IPv4 ethertype


def test_choose_the_link_local_answering_from_the_gateways_mac():
    replies = [("fe80::f478:56ff:fe22:3bf2", OTHER_MAC),  # another pod on the segment answers all nodes too
               ("fd00:58::1", GW_MAC), ("fe80::9072:48ff:feb3:f692", GW_MAC)]
    assert _gateway6.choose("fd00:58::1", replies) == {"address": "fe80::9072:48ff:feb3:f692", "mac": GW_MAC,
                                                       "how": "echo"}


def test_choose_a_link_local_gateway_as_routed_and_a_silent_one_by_eui64():
    calico = "fe80::ecee:eeff:feee:eeee"
    assert _gateway6.choose(calico, [(calico, "ee:ee:ee:ee:ee:ee")])["how"] == "route"
    fallback = _gateway6.choose("fd00:58::1", [("fd00:58::1", GW_MAC)])
    assert fallback == {"address": "fe80::9072:48ff:feb3:f692", "mac": GW_MAC, "how": "eui64"}
    assert _gateway6.choose("fd00:58::1", [("fe80::9072:48ff:feb3:f692", GW_MAC)]) is None  # gateway never answered
