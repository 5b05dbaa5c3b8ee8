# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_netlink: raw rtnetlink attributes encoded and parsed without a socket."""

from __future__ import annotations

import struct

from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as nl


def test_nla_padding_and_parse_round_trip():
    blob = nl.nla(nl.IFLA_IFNAME, b"tap0\0") + nl._u32(nl.IFLA_MTU, 1450) + nl.nla(nl.IFLA_ADDRESS, b"\x02" * 6)
    assert len(blob) % 4 == 0
    attrs = nl.parse_attrs(blob, 0, len(blob))
    assert nl._str(attrs[nl.IFLA_IFNAME]) == "tap0" and nl._int(attrs[nl.IFLA_MTU]) == 1450
    assert attrs[nl.IFLA_ADDRESS] == b"\x02" * 6


def test_link_view_raw_parses_a_bridge_port_tap():
    tun = (nl._u32(nl.IFLA_TUN_OWNER, 107) + nl._u32(nl.IFLA_TUN_GROUP, 0xFFFFFFFF)
           + nl.nla(nl.IFLA_TUN_TYPE, b"\x02") + nl.nla(nl.IFLA_TUN_MULTI_QUEUE, b"\x01"))
    port = nl.nla(nl.IFLA_BRPORT_LEARNING, b"\x00")
    info = (nl.nla(nl.IFLA_INFO_KIND, b"tun\0") + nl.nla(nl.IFLA_INFO_DATA | nl.NLA_F_NESTED, tun)
            + nl.nla(nl.IFLA_INFO_SLAVE_KIND, b"bridge\0") + nl.nla(nl.IFLA_INFO_SLAVE_DATA | nl.NLA_F_NESTED, port))
    body = (struct.pack("=BxHiII", 0, 1, 7, 1, 0) + nl.nla(nl.IFLA_IFNAME, b"tap0\0")
            + nl.nla(nl.IFLA_ADDRESS, bytes.fromhex("0a58000000ff")) + nl._u32(nl.IFLA_MTU, 1450)
            + nl._u32(nl.IFLA_MASTER, 5) + nl._u32(nl.IFLA_GROUP, 42) + nl.nla(nl.IFLA_LINKINFO | nl.NLA_F_NESTED, info))
    view = nl.link_view_raw(body)
    assert view == {"name": "tap0", "index": 7, "kind": "tun", "mac": "0a:58:00:00:00:ff", "mtu": 1450, "up": True,
                    "master": 5, "group": 42, "tun_type": 2, "uid": 107, "gid": None, "multiqueue": True,
                    "persist": False, "learning": False, "txqlen": None}
