# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp6_codec: DHCPv6 messages, DUIDs, the server's replies, frames, RA/RS; hostile input.

Byte-exact vectors are assembled by hand from the layouts of RFC 8415 (sections 8, 11, 21),
RFC 1035 (names) and RFC 4861 (4.1, 4.2, 4.6); checksums are checked against an
independent implementation written here.
"""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as c
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

VM_MAC = "02:00:5e:10:00:01"
OTHER_MAC = "02:00:5e:10:00:99"
SERVER_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY_LL = "fe80::1"
CLIENT_LL = "fe80::5eff:fe10:1"
SERVER_ID = c.server_duid(b"0123456789abcdef0123456789abcdef\n")
LEASE = {"vm_mac": VM_MAC, "address": "fd00:10:244::10", "prefixlen": 64,
         "dns_servers": ["fd00:96::a"], "search_domains": ["default.svc.cluster.local", "svc.cluster.local"],
         "preferred_lifetime": 3600, "valid_lifetime": 7200, "t1": 1800, "t2": 2880}

DUID_LL_VM = bytes.fromhex("00030001") + bytes.fromhex(VM_MAC.replace(":", ""))
DUID_LLT_VM = bytes.fromhex("00010001 2a2b2c2d") + bytes.fromhex(VM_MAC.replace(":", ""))
DUID_EN = bytes.fromhex("00020000ab11 0102030405060708")
DUID_UUID = bytes.fromhex("0004") + bytes(range(16))


# -- independent references ------------------------------------------------------------------
def ref_checksum(data: bytes) -> int:
    """RFC 1071 once more, written differently: fold as we go, big integers, no struct."""
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) + (data[i + 1] if i + 1 < len(data) else 0)
        total = (total & 0xFFFF) + (total >> 16)
    return 0xFFFF - total


def ref_l4_ok(frame: bytes, l4: int = 54) -> bool:
    """The checksum of the upper layer of an Ethernet/IPv6 frame without extension headers verifies."""
    plen, proto = struct.unpack("!HB", frame[18:21])
    segment = frame[l4:54 + plen]
    pseudo = frame[22:54] + len(segment).to_bytes(4, "big") + b"\x00\x00\x00" + bytes([proto])
    return ref_checksum(pseudo + segment) == 0


def ipv6_frame(payload: bytes, proto: int, src: str, dst: str, src_mac: str = VM_MAC,
               dst_mac: str = "33:33:00:01:00:02", hop_limit: int = 1, ext: bytes = b"", first: int | None = None):
    """A frame as a client would send it, built here (not with the codec)."""
    header = struct.pack("!IHBB", 6 << 28, len(ext) + len(payload), proto if first is None else first, hop_limit)
    header += ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address(dst).packed
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x86\xdd"
    return eth + header + ext + payload


def udp_to_server(dhcp: bytes, src: str = CLIENT_LL, dst: str = "ff02::1:2", dport: int = 547, **kw) -> bytes:
    udp = struct.pack("!HHHH", 546, dport, 8 + len(dhcp), 0) + dhcp  # checksum left 0: not verified
    return ipv6_frame(udp, 17, src, dst, **kw)


def router_solicitation(src: str = CLIENT_LL, slla: str | None = VM_MAC, hop_limit: int = 255, code: int = 0,
                        options: bytes | None = None) -> bytes:
    body = bytearray(struct.pack("!BBHI", 133, code, 0, 0))
    if options is not None:
        body += options
    elif slla:
        body += b"\x01\x01" + bytes.fromhex(slla.replace(":", ""))
    pseudo = (ipaddress.IPv6Address(src).packed + ipaddress.IPv6Address("ff02::2").packed
              + len(body).to_bytes(4, "big") + b"\x00\x00\x00\x3a")
    body[2:4] = ref_checksum(pseudo + bytes(body)).to_bytes(2, "big")
    return ipv6_frame(bytes(body), 58, src, "ff02::2", dst_mac="33:33:00:00:00:02", hop_limit=hop_limit)


def msg(mtype, *options, xid=0xABCDEF):
    return c.encode_message(mtype, xid, list(options))


def cid(duid=DUID_LL_VM):
    return c.option(c.OPT_CLIENTID, duid)


def sid(duid=SERVER_ID):
    return c.option(c.OPT_SERVERID, duid)


def ia(iaid=0x0A0B0C0D, *addresses):
    return c.ia_na_option(iaid, 0, 0, [c.iaaddr_option(a, 100, 200) for a in addresses])


def ans(payload, frame_mac=VM_MAC, lease=None, **kw):
    return c.answer(payload, dict(LEASE, **(lease or {})), SERVER_ID, frame_mac, **kw)


def reply_of(payload, **kw):
    result = ans(payload, **kw)
    assert result.reply is not None, result.reason
    return c.parse_message(result.reply), result.reason


# -- messages and options ----------------------------------------------------------------------
def test_solicit_byte_exact_layout():
    # RFC 8415 8: type, 3-byte xid; 21.1: code, length; 11.4 DUID-LL; 21.4 IA_NA; 21.7 ORO; 21.9 elapsed.
    wire = bytes.fromhex("01 102030 0001000a 00030001 02005e100001 0003000c 00000001 00000000 00000000"
                         + " 00060004 00170018 00080002 0064 000e0000")
    parsed = c.parse_message(wire)
    assert (parsed["msg_type"], parsed["xid"]) == (c.SOLICIT, 0x102030)
    assert parsed["client_id"] == DUID_LL_VM and parsed["server_id"] is None
    assert parsed["ia_na"] == [{"iaid": 1, "t1": 0, "t2": 0, "addresses": [], "status": None}]
    assert parsed["oro"] == [23, 24] and parsed["elapsed_time"] == 100 and parsed["rapid_commit"] is True
    built = c.encode_message(c.SOLICIT, 0x102030, [cid(), c.ia_na_option(1, 0, 0), c.option(6, b"\x00\x17\x00\x18"),
                                                   c.option(8, b"\x00\x64"), c.option(14)])
    assert built == wire


def test_ia_na_with_iaaddr_and_status_byte_exact():
    expected = bytes.fromhex("00030036 00000007 00000708 00000b40 0005001e fd000010024400000000000000000010"
                             + " 00000e10 00001c20 000d0002 0000 000d0004 0002 6e6f")
    built = c.ia_na_option(7, 1800, 2880, [c.iaaddr_option("fd00:10:244::10", 3600, 7200, c.status_option(0)),
                                           c.status_option(c.NO_ADDRS_AVAIL, "no")])
    assert built == expected
    decoded = c.decode_ia(c.OPT_IA_NA, c.decode_options(built)[0][1])
    assert decoded == {"iaid": 7, "t1": 1800, "t2": 2880, "status": (2, "no"),
                       "addresses": [{"address": "fd00:10:244::10", "preferred": 3600, "valid": 7200,
                                      "status": (0, "")}]}


def test_domain_list_rfc1035_uncompressed_and_dns():
    data = c.encode_domain_list(["default.svc.cluster.local", "svc.cluster.local."])
    assert data == b"\x07default\x03svc\x07cluster\x05local\x00\x03svc\x07cluster\x05local\x00"
    assert c.decode_domain_list(data) == ["default.svc.cluster.local", "svc.cluster.local"]
    assert c.decode_domain_list(b"") == []
    for bad in (b"\x03svc\xc0\x00", b"\x05ab", b"\x03svc", b"\x02\xff\xfe\x00", (b"\x3f" + b"a" * 63) * 5 + b"\x00"):
        with pytest.raises(c.Dhcp6CodecError):
            c.decode_domain_list(bad)
    packed = ipaddress.IPv6Address("fd00::53").packed + ipaddress.IPv6Address("2001:db8::1").packed
    assert c.dns_servers_option(["fd00::53", "2001:db8::1"]) == bytes.fromhex("00170020") + packed
    assert c.decode_dns_servers(c.decode_options(c.dns_servers_option(["fd00::53"]))[0][1]) == ["fd00::53"]


def test_ia_pd_ta_and_prefix_round_trip():
    pd = c.ia_pd_option(9, 10, 20, [c.iaprefix_option("2001:db8:1::/48", 30, 40)])
    assert c.decode_ia(c.OPT_IA_PD, c.decode_options(pd)[0][1]) == {
        "iaid": 9, "t1": 10, "t2": 20, "status": None,
        "prefixes": [{"prefix": "2001:db8:1::/48", "preferred": 30, "valid": 40, "status": None}]}
    ta = c.ia_ta_option(5, [c.iaaddr_option("fd00::5", 1, 2)])
    assert c.decode_ia(c.OPT_IA_TA, c.decode_options(ta)[0][1])["addresses"][0]["address"] == "fd00::5"


@given(st.integers(0, 255), st.integers(0, 0xFFFFFF),
       st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=8))
@settings(max_examples=200, deadline=None)
def test_encode_decode_round_trip(mtype, xid, options):
    if mtype in (c.RELAY_FORW, c.RELAY_REPL):
        return
    wire = c.encode_message(mtype, xid, [c.option(code, data) for code, data in options])
    assert c.decode_message(wire) == {"msg_type": mtype, "xid": xid, "options": options}


def test_reply_round_trips_through_the_parser():
    parsed = reply_of(msg(c.REQUEST, cid(), sid(), ia(3)))[0]
    again = c.encode_message(parsed["msg_type"], parsed["xid"], [c.option(k, v) for k, v in parsed["options"]])
    assert c.parse_message(again) == parsed


@pytest.mark.parametrize("wire, fragment", [
    (b"\x01\x00\x00", "shorter"),
    (b"\x0c" + bytes(40), "relay"),
    (msg(c.SOLICIT, cid(), cid()), "more than once"),
    (msg(c.SOLICIT, c.option(1, b"\x00")), "DUID"),
    (msg(c.SOLICIT, c.option(1, bytes(131))), "DUID"),
    (msg(c.SOLICIT, c.option(6, b"\x00")), "odd"),
    (msg(c.SOLICIT, c.option(8, b"\x00")), "not 2 bytes"),
    (msg(c.SOLICIT, c.option(14, b"\x00")), "rapid commit"),
    (msg(c.SOLICIT, c.option(3, bytes(11))), "shorter than 12"),
    (msg(c.SOLICIT, c.option(3, bytes(12) + c.option(5, bytes(23)))), "IAADDR"),
    (msg(c.SOLICIT, c.option(25, bytes(12) + c.option(26, bytes(8) + b"\x81" + bytes(16)))), "above 128"),
    (msg(c.SOLICIT, c.option(23, bytes(17))), "DNS"),
    (msg(c.SOLICIT, c.option(13, b"\x00")), "status"),
    (b"\x01\x00\x00\x01\x00\x01\xff\xff", "overruns"),
    (b"\x01\x00\x00\x01\x00\x01\x00", "truncated"),
    (b"\x01\x00\x00\x01" + c.option(99) * (c.MAX_OPTIONS + 1), "too many"),
])
def test_malformed_messages_raise_the_codec_error(wire, fragment):
    with pytest.raises(c.Dhcp6CodecError) as info:
        c.parse_message(wire)
    assert fragment in str(info.value)
    assert ans(wire).reply is None


# -- DUIDs ------------------------------------------------------------------------------------
def test_duids_parse():
    assert c.parse_duid(DUID_LLT_VM) == {"type": 1, "hw_type": 1, "time": 0x2A2B2C2D,
                                         "link_layer": bytes.fromhex("02005e100001")}
    assert c.parse_duid(DUID_EN) == {"type": 2, "enterprise": 0xAB11, "identifier": bytes(range(1, 9))}
    assert c.parse_duid(DUID_LL_VM) == {"type": 3, "hw_type": 1, "link_layer": bytes.fromhex("02005e100001")}
    assert c.parse_duid(DUID_UUID) == {"type": 4, "uuid": bytes(range(16))}
    assert c.parse_duid(b"\x00\x09abc") == {"type": 9, "raw": b"abc"}
    assert c.duid_mac(DUID_LL_VM) == VM_MAC == c.duid_mac(DUID_LLT_VM)
    assert c.duid_mac(c.parse_duid(DUID_LL_VM)) == VM_MAC
    assert c.duid_mac(DUID_EN) is None and c.duid_mac(DUID_UUID) is None
    assert c.duid_mac(b"\x00\x03\x00\x06" + bytes(6)) is None  # IEEE 802 (token ring): not Ethernet
    for bad in (b"", b"\x00", b"\x00\x01\x00\x01\x00\x00\x00\x00", b"\x00\x02\x00\x00\x00\x01",
                b"\x00\x03\x00\x01", b"\x00\x04" + bytes(15), bytes(131), "0003"):
        with pytest.raises(c.Dhcp6CodecError):
            c.parse_duid(bad)
    with pytest.raises(c.Dhcp6CodecError):
        c.duid_mac(b"\x00\x03\x00\x01" + bytes(8))  # Ethernet with 8 bytes


def test_server_duid_is_stable_ll_and_locally_administered():
    duid = c.server_duid(b"0123456789abcdef0123456789abcdef\n")
    assert duid == c.server_duid(b"0123456789abcdef0123456789abcdef") == SERVER_ID
    assert duid != c.server_duid(b"fedcba9876543210fedcba9876543210")
    parsed = c.parse_duid(duid)
    assert parsed["type"] == c.DUID_LL and parsed["hw_type"] == 1 and len(duid) == 10
    first = parsed["link_layer"][0]
    assert first & 0x02 and not first & 0x01  # locally administered, unicast
    assert b"0123456789abcdef" not in duid
    for bad in (b"", b" \n", "text", None):
        with pytest.raises(c.Dhcp6CodecError):
            c.server_duid(bad)


# -- the lease --------------------------------------------------------------------------------
def test_lease_defaults_and_errors():
    lease = c.normalise_lease({"vm_mac": VM_MAC.upper(), "address": "FD00::10", "prefixlen": 128,
                               "preferred_lifetime": 1000, "valid_lifetime": 2000})
    assert (lease["vm_mac"], lease["address"], lease["t1"], lease["t2"]) == (VM_MAC, "fd00::10", 500, 800)
    assert lease["dns_servers"] == [] and lease["search_domains"] == []
    assert c.normalise_lease(dict(LEASE, preferred_lifetime=c.INFINITY, valid_lifetime=c.INFINITY,
                                  t1=None, t2=None))["t1"] == 0
    with pytest.raises(PodnetError) as info:
        c.normalise_lease({"vm_mac": "01:00:5e:00:00:01", "address": "ff02::1", "prefixlen": 129,
                           "dns_servers": ["10.0.0.1"], "search_domains": ["-bad"], "preferred_lifetime": 20,
                           "valid_lifetime": 10, "t1": 9, "t2": 8, "information_refresh_time": 5})
    text = info.value.msg
    for field in ("vm_mac", "address", "prefixlen", "dns_servers[0]", "search_domains[0]", "preferred_lifetime",
                  "t1", "information_refresh_time"):
        assert field in text, (field, text)
    with pytest.raises(PodnetError):
        c.normalise_lease("not a dict")


# -- the server: one test per message type ---------------------------------------------------------
def _ia_addresses(parsed):
    return [(a["address"], a["preferred"], a["valid"]) for i in parsed["ia_na"] for a in i["addresses"]]


def test_solicit_gets_advertise_with_the_lease():
    parsed, reason = reply_of(msg(c.SOLICIT, cid(), ia(0x0A0B0C0D), c.option(6, b"\x00\x17\x00\x18")))
    assert reason == "SOLICIT: advertise"
    assert parsed["msg_type"] == c.ADVERTISE and parsed["xid"] == 0xABCDEF
    assert parsed["server_id"] == SERVER_ID and parsed["client_id"] == DUID_LL_VM
    assert parsed["preference"] == 255 and not parsed["rapid_commit"]
    assert [(i["iaid"], i["t1"], i["t2"]) for i in parsed["ia_na"]] == [(0x0A0B0C0D, 1800, 2880)]
    assert _ia_addresses(parsed) == [("fd00:10:244::10", 3600, 7200)]
    assert parsed["dns_servers"] == ["fd00:96::a"]
    assert parsed["domain_list"] == ["default.svc.cluster.local", "svc.cluster.local"]


def test_solicit_with_rapid_commit_gets_reply():
    parsed, reason = reply_of(msg(c.SOLICIT, cid(), ia(1), c.option(c.OPT_RAPID_COMMIT)))
    assert reason == "SOLICIT: reply" and parsed["msg_type"] == c.REPLY and parsed["rapid_commit"]
    assert parsed["preference"] is None and _ia_addresses(parsed) == [("fd00:10:244::10", 3600, 7200)]


def test_every_ia_na_gets_the_lease_ia_ta_and_ia_pd_are_refused():
    parsed = reply_of(msg(c.SOLICIT, cid(), ia(1), ia(2), c.ia_ta_option(3), c.ia_pd_option(4, 0, 0)))[0]
    assert [i["iaid"] for i in parsed["ia_na"]] == [1, 2]
    assert parsed["ia_ta"] == [{"iaid": 3, "t1": 0, "t2": 0, "addresses": [], "status": (2, "no temporary addresses")}]
    assert parsed["ia_pd"][0]["status"][0] == c.NO_PREFIX_AVAIL and parsed["ia_pd"][0]["prefixes"] == []
    assert parsed["status"] is None


@pytest.mark.parametrize("mtype", [c.SOLICIT, c.REQUEST])
def test_no_ia_na_means_no_addrs_avail(mtype):
    parsed, reason = reply_of(msg(mtype, cid(), *([sid()] if mtype == c.REQUEST else []), c.ia_pd_option(4, 0, 0)))
    assert parsed["status"][0] == c.NO_ADDRS_AVAIL and reason.endswith("NoAddrsAvail")
    assert parsed["ia_na"] == [] and parsed["dns_servers"] == []


def test_request_gets_reply_and_hints_are_ignored():
    parsed, reason = reply_of(msg(c.REQUEST, cid(), sid(), ia(5, "fd00:10:244::99")))
    assert reason == "REQUEST: reply" and parsed["msg_type"] == c.REPLY
    assert _ia_addresses(parsed) == [("fd00:10:244::10", 3600, 7200)]


@pytest.mark.parametrize("mtype", [c.RENEW, c.REBIND])
def test_renew_rebind_drop_other_addresses(mtype):
    ids = [cid(), sid()] if mtype == c.RENEW else [cid()]
    parsed, reason = reply_of(msg(mtype, *ids, ia(5, "fd00:10:244::10", "2001:db8::7"),
                                  c.ia_ta_option(6, [c.iaaddr_option("fd00::6", 1, 2)])))
    assert reason == f"{c.MESSAGE_NAMES[mtype]}: reply"
    assert _ia_addresses(parsed) == [("fd00:10:244::10", 3600, 7200), ("2001:db8::7", 0, 0)]
    assert parsed["ia_ta"][0]["addresses"][0]["valid"] == 0
    assert parsed["dns_servers"] == ["fd00:96::a"]


@pytest.mark.parametrize("mtype, ids, why", [
    (c.REQUEST, [cid()], "no server identifier"),
    (c.REQUEST, [cid(), sid(DUID_EN)], "not our server"),
    (c.RENEW, [cid()], "no server identifier"),
    (c.RENEW, [cid(), sid(DUID_EN)], "not our server"),
    (c.RELEASE, [cid(), sid(DUID_EN)], "not our server"),
    (c.DECLINE, [cid()], "no server identifier"),
    (c.SOLICIT, [cid(), sid()], "carries a server identifier"),
    (c.REBIND, [cid(), sid()], "carries a server identifier"),
    (c.CONFIRM, [cid(), sid()], "carries a server identifier"),
    (c.SOLICIT, [], "no client identifier"),
    (c.REQUEST, [sid()], "no client identifier"),
    (c.INFORMATION_REQUEST, [sid(DUID_EN)], "not our server"),
])
def test_server_identifier_rules(mtype, ids, why):
    result = ans(msg(mtype, *ids, ia(1, "fd00:10:244::10")))
    assert result.reply is None and why in result.reason, result.reason


def test_confirm_on_link_off_link_and_empty():
    parsed, reason = reply_of(msg(c.CONFIRM, cid(), ia(1, "fd00:10:244::10", "fd00:10:244::77")))
    assert parsed["status"] == (c.SUCCESS, "on link") and reason == "CONFIRM: reply Success"
    assert parsed["ia_na"] == [] and parsed["server_id"] == SERVER_ID
    parsed, reason = reply_of(msg(c.CONFIRM, cid(), ia(1, "fd00:10:244::10"),
                                  c.ia_ta_option(2, [c.iaaddr_option("fd00:99::1", 1, 2)])))
    assert parsed["status"][0] == c.NOT_ON_LINK and reason == "CONFIRM: reply NotOnLink"
    result = ans(msg(c.CONFIRM, cid(), ia(1)))
    assert result.reply is None and "no addresses" in result.reason
    # A /128 lease: only the address itself is on link.
    parsed = reply_of(msg(c.CONFIRM, cid(), ia(1, "fd00:10:244::11")), lease={"prefixlen": 128})[0]
    assert parsed["status"][0] == c.NOT_ON_LINK
    parsed = reply_of(msg(c.CONFIRM, cid(), ia(1, "fd00:10:244::10")), lease={"prefixlen": 128})[0]
    assert parsed["status"][0] == c.SUCCESS


@pytest.mark.parametrize("mtype", [c.RELEASE, c.DECLINE])
def test_release_and_decline_get_success(mtype):
    result = ans(msg(mtype, cid(), sid(), ia(1, "fd00:10:244::10")))
    parsed = c.parse_message(result.reply)
    assert parsed["msg_type"] == c.REPLY and parsed["status"][0] == c.SUCCESS
    assert parsed["ia_na"] == [] and parsed["dns_servers"] == []
    assert result.reason == f"{c.MESSAGE_NAMES[mtype]}: reply"
    assert result.request["msg_type"] == mtype and result.request["ia_na"][0]["addresses"]


def test_information_request():
    parsed, reason = reply_of(msg(c.INFORMATION_REQUEST, cid(), c.option(6, b"\x00\x17")))
    assert reason == "INFORMATION-REQUEST: reply" and parsed["msg_type"] == c.REPLY
    assert parsed["ia_na"] == [] and parsed["dns_servers"] == ["fd00:96::a"] and parsed["domain_list"]
    assert parsed["information_refresh_time"] is None
    # No client identifier is allowed there, our server identifier too.
    parsed = reply_of(msg(c.INFORMATION_REQUEST, sid()), lease={"information_refresh_time": 86400})[0]
    assert parsed["client_id"] is None and parsed["information_refresh_time"] == 86400
    result = ans(msg(c.INFORMATION_REQUEST, cid(), ia(1)))
    assert result.reply is None and "IA options" in result.reason


def test_configuration_options_only_when_configured():
    parsed = reply_of(msg(c.INFORMATION_REQUEST, cid()), lease={"dns_servers": [], "search_domains": None})[0]
    assert [code for code, _data in parsed["options"]] == [c.OPT_SERVERID, c.OPT_CLIENTID]
    parsed = reply_of(msg(c.SOLICIT, cid(), ia(1)), lease={"search_domains": []})[0]
    assert parsed["dns_servers"] and not parsed["domain_list"]


@pytest.mark.parametrize("mtype", [c.ADVERTISE, c.REPLY, c.RECONFIGURE, 0, 14, 255])
def test_server_and_unknown_messages_are_ignored(mtype):
    result = ans(msg(mtype, cid(), sid(), ia(1)))
    assert result.reply is None and "not a client message" in result.reason


# -- only the VM ---------------------------------------------------------------------------------
def test_mac_rules():
    solicit = msg(c.SOLICIT, cid(), ia(1))
    assert ans(solicit, frame_mac=VM_MAC.upper()).reply is not None
    assert ans(solicit, frame_mac=OTHER_MAC).reply is None
    assert ans(solicit, frame_mac=None).reply is None
    other_ll = bytes.fromhex("00030001") + bytes.fromhex(OTHER_MAC.replace(":", ""))
    other_llt = bytes.fromhex("00010001 11111111") + bytes.fromhex(OTHER_MAC.replace(":", ""))
    for duid in (other_ll, other_llt):
        result = ans(msg(c.SOLICIT, cid(duid), ia(1)))
        assert result.reply is None and OTHER_MAC in result.reason
        assert ans(msg(c.SOLICIT, cid(duid), ia(1)), check_duid_mac=False).reply is not None
    for duid in (DUID_LLT_VM, DUID_EN, DUID_UUID, b"\x00\x03\x00\x06" + bytes(6), b"\x00\x63xyz"):
        assert ans(msg(c.SOLICIT, cid(duid), ia(1))).reply is not None, duid
    result = ans(msg(c.SOLICIT, cid(b"\x00\x03\x00\x01\x01"), ia(1)))
    assert result.reply is None and "bad client DUID" in result.reason
    # The MAC rule holds for every type, also without a client DUID.
    assert ans(msg(c.INFORMATION_REQUEST), frame_mac=OTHER_MAC).reply is None
    assert c.reply_for(solicit, LEASE, SERVER_ID, VM_MAC) == ans(solicit).reply
    assert c.reply_for(c.parse_message(solicit), c.normalise_lease(LEASE), SERVER_ID, VM_MAC) == ans(solicit).reply


# -- frames ---------------------------------------------------------------------------------------
def test_udp_frame_build_and_parse():
    payload = ans(msg(c.SOLICIT, cid(), ia(1))).reply
    frame = c.build_udp6_frame(SERVER_MAC, VM_MAC, GATEWAY_LL, CLIENT_LL, payload)
    assert frame[:14] == bytes.fromhex("02005e100001 eeeeeeeeeeee 86dd")
    assert frame[14:18] == b"\x60\x00\x00\x00" and frame[20] == 17 and frame[21] == 64
    assert struct.unpack("!HHH", frame[54:60]) == (547, 546, 8 + len(payload))
    assert ref_l4_ok(frame)
    assert c.parse_udp6_frame(frame, dport=546) == (SERVER_MAC, GATEWAY_LL, CLIENT_LL, payload)
    assert c.parse_udp6_frame(frame) is None  # not to the server port
    multicast = c.build_udp6_frame(SERVER_MAC, None, GATEWAY_LL, "ff02::1:2", b"x", hop_limit=255)
    assert multicast[:6] == bytes.fromhex("333300010002") and multicast[21] == 255
    with pytest.raises(ValueError):
        c.build_udp6_frame(SERVER_MAC, None, GATEWAY_LL, CLIENT_LL, b"x")


def test_udp_zero_checksum_is_sent_as_ffff():
    # Find the last two payload bytes that make the computed sum zero: RFC 8200 8.1 wants ffff then.
    base = c.build_udp6_frame(SERVER_MAC, VM_MAC, GATEWAY_LL, CLIENT_LL, b"ab\x00\x00")
    fill = struct.unpack("!H", base[60:62])[0]
    frame = c.build_udp6_frame(SERVER_MAC, VM_MAC, GATEWAY_LL, CLIENT_LL, b"ab" + struct.pack("!H", fill))
    assert frame[60:62] == b"\xff\xff" and ref_l4_ok(frame)


def test_client_frames_parse():
    dhcp = msg(c.SOLICIT, cid(), ia(1))
    assert c.parse_udp6_frame(udp_to_server(dhcp)) == (VM_MAC, CLIENT_LL, "ff02::1:2", dhcp)
    assert c.parse_udp6_frame(udp_to_server(dhcp, dst=GATEWAY_LL, dst_mac=SERVER_MAC))[2] == GATEWAY_LL
    assert c.parse_udp6_frame(udp_to_server(dhcp) + bytes(30))[3] == dhcp  # Ethernet padding
    # Hop-by-hop then destination options are skipped (8 bytes each: next header, length 0, padding).
    ext = bytes([60, 0, 1, 4, 0, 0, 0, 0]) + bytes([17, 0, 1, 4, 0, 0, 0, 0])
    udp = struct.pack("!HHHH", 546, 547, 8 + len(dhcp), 0) + dhcp
    assert c.parse_udp6_frame(ipv6_frame(udp, 17, CLIENT_LL, "ff02::1:2", ext=ext, first=0))[3] == dhcp


@pytest.mark.parametrize("frame", [
    udp_to_server(b"x", dst="ff02::1"),                    # another group
    udp_to_server(b"x", dst="ff05::1:3"),                  # site-scoped: relays only
    udp_to_server(b"x", src="::"),                         # no address to answer
    udp_to_server(b"x", src="ff02::1"),
    udp_to_server(b"x", dport=546),
    udp_to_server(b"x")[:60],                              # truncated UDP
    udp_to_server(b"x")[:12] + b"\x08\x00" + udp_to_server(b"x")[14:],  # IPv4 ethertype
    ipv6_frame(struct.pack("!HHHH", 546, 547, 9, 0) + b"x", 17, CLIENT_LL, "ff02::1:2",
               ext=bytes([17, 0, 0, 0, 0, 0, 0, 1]), first=44),  # a fragment
    ipv6_frame(struct.pack("!HHHH", 546, 547, 9, 0) + b"x", 17, CLIENT_LL, "ff02::1:2",
               ext=bytes([0, 0, 1, 4, 0, 0, 0, 0]) + bytes([17, 0, 1, 4, 0, 0, 0, 0]), first=60),  # hbh not first
    ipv6_frame(struct.pack("!HHHH", 546, 547, 9, 0) + b"x", 17, CLIENT_LL, "ff02::1:2",
               ext=bytes([60, 0, 1, 4, 0, 0, 0, 0]) * 9, first=60),  # too many headers
    ipv6_frame(b"", 17, CLIENT_LL, "ff02::1:2", ext=bytes([17, 200]) + bytes(6), first=60),  # overrunning header
])
def test_frames_refused(frame):
    assert c.parse_udp6_frame(frame) is None


# -- router advertisement and solicitation ------------------------------------------------------------
def parse_ra(frame):
    """Independent reading of an RA frame: header fields and options by type."""
    assert frame[12:14] == b"\x86\xdd" and frame[20] == 58
    body = frame[54:]
    kind, code, _checksum, hop, flags, lifetime, reachable, retrans = struct.unpack("!BBHBBHII", body[:16])
    options, pos = {}, 16
    while pos < len(body):
        length = body[pos + 1] * 8
        options.setdefault(body[pos], []).append(body[pos:pos + length])
        pos += length
    return {"type": kind, "code": code, "cur_hop": hop, "flags": flags, "lifetime": lifetime,
            "reachable": reachable, "retrans": retrans, "ip_hop_limit": frame[21], "options": options,
            "src": str(ipaddress.IPv6Address(frame[22:38])), "dst": str(ipaddress.IPv6Address(frame[38:54]))}


def test_router_advertisement_for_a_64():
    frame = c.build_router_advertisement(SERVER_MAC, GATEWAY_LL, prefix="fd00:10:244::10/64", mtu=1450,
                                         router_lifetime=1800, prefix_valid=7200, prefix_preferred=3600)
    ra = parse_ra(frame)
    assert frame[:6] == bytes.fromhex("333300000001") and frame[6:12] == bytes.fromhex("eeeeeeeeeeee")
    assert (ra["type"], ra["code"], ra["ip_hop_limit"], ra["src"], ra["dst"]) == (134, 0, 255, GATEWAY_LL, "ff02::1")
    assert ra["flags"] == 0xC0 and ra["lifetime"] == 1800 and ra["reachable"] == ra["retrans"] == 0
    assert ra["cur_hop"] == 64
    assert ra["options"][1] == [b"\x01\x01" + bytes.fromhex("eeeeeeeeeeee")]
    assert ra["options"][5] == [b"\x05\x01\x00\x00" + struct.pack("!I", 1450)]
    assert ra["options"][3] == [struct.pack("!BBBBIII", 3, 4, 64, 0x80, 7200, 3600, 0)
                                + ipaddress.IPv6Address("fd00:10:244::").packed]
    assert ref_l4_ok(frame)


def test_router_advertisement_for_a_128_and_unicast():
    frame = c.build_router_advertisement(SERVER_MAC, GATEWAY_LL, dst_ip=CLIENT_LL, dst_mac=VM_MAC,
                                         prefix="fd00::10/128", managed=False, other=True, router_lifetime=0)
    ra = parse_ra(frame)
    assert set(ra["options"]) == {1} and ra["flags"] == 0x40 and ra["lifetime"] == 0
    assert ra["dst"] == CLIENT_LL and frame[:6] == bytes.fromhex("02005e100001") and ref_l4_ok(frame)


def test_router_solicitation_parse():
    assert c.parse_router_solicitation(router_solicitation()) == (VM_MAC, CLIENT_LL)
    assert c.parse_router_solicitation(router_solicitation(src="::", slla=None)) == (VM_MAC, "::")
    # Unknown options are fine when their length is.
    assert c.parse_router_solicitation(router_solicitation(options=b"\x63\x01" + bytes(6))) == (VM_MAC, CLIENT_LL)


@pytest.mark.parametrize("frame", [
    router_solicitation(hop_limit=254),
    router_solicitation(code=1),
    router_solicitation(src="::"),                             # unspecified source with an SLLA option
    router_solicitation(options=b"\x01\x00" + bytes(6)),       # option of length 0
    router_solicitation(options=b"\x01\x02" + bytes(6)),       # option overruns
    router_solicitation()[:-1] + b"\x00",                      # damaged: checksum fails
    router_solicitation()[:60],
    c.build_router_advertisement(SERVER_MAC, GATEWAY_LL),
    udp_to_server(b"x"),
])
def test_router_solicitation_refused(frame):
    assert c.parse_router_solicitation(frame) is None


# -- hostile input ---------------------------------------------------------------------------------
def _only_codec_errors(func, data):
    try:
        func(data)
    except c.Dhcp6CodecError:
        pass


@given(st.binary(max_size=600))
@settings(max_examples=1500, deadline=None)
def test_random_bytes_never_raise_anything_else(data):
    _only_codec_errors(c.parse_message, data)
    _only_codec_errors(c.parse_duid, data)
    _only_codec_errors(c.duid_mac, data)
    _only_codec_errors(c.decode_domain_list, data)
    for code in (c.OPT_IA_NA, c.OPT_IA_TA, c.OPT_IA_PD):
        _only_codec_errors(lambda d: c.decode_ia(code, d), data)
    c.answer(data, LEASE, SERVER_ID, VM_MAC)
    c.answer(b"\x01" + data, LEASE, SERVER_ID, VM_MAC)
    assert c.parse_udp6_frame(data) is None or isinstance(c.parse_udp6_frame(data), tuple)
    c.parse_router_solicitation(data)
    for wrapped in (udp_to_server(data), router_solicitation(options=data)):
        c.parse_router_solicitation(wrapped)
        parsed = c.parse_udp6_frame(wrapped)
        if parsed:
            c.answer(parsed[3], LEASE, SERVER_ID, parsed[0])


def _seeds():
    return [msg(c.SOLICIT, cid(), ia(1), c.option(6, b"\x00\x17\x00\x18"), c.option(8, b"\x00\x00")),
            msg(c.REQUEST, cid(DUID_LLT_VM), sid(), ia(1, "fd00:10:244::10"), c.ia_pd_option(2, 0, 0)),
            msg(c.RENEW, cid(), sid(), ia(1, "fd00:10:244::10", "fd00::1"), c.ia_ta_option(3)),
            msg(c.CONFIRM, cid(), ia(1, "fd00:10:244::10")),
            msg(c.INFORMATION_REQUEST, cid(), c.option(24, c.encode_domain_list(["a.example"]))),
            ans(msg(c.SOLICIT, cid(), ia(1))).reply]


def test_mutated_messages_never_raise_anything_else():
    rng = random.Random(20260512)
    lease = c.normalise_lease(LEASE)
    seeds = _seeds()
    answered = 0
    for _round in range(10000):
        data = bytearray(rng.choice(seeds))
        for _round in range(rng.randint(1, 4)):
            action = rng.randrange(5)
            pos = rng.randrange(len(data) + 1)
            if action == 0:
                data[pos:pos + 1] = bytes([rng.randrange(256)])
            elif action == 1:
                del data[pos:]
            elif action == 2:  # a huge or off-by-one length where a length may be
                data[pos:pos + 2] = rng.choice([b"\xff\xff", b"\x7f\xff", b"\x00\x00", b"\x00\x01"])
            elif action == 3:
                data[pos:pos] = bytes(rng.randrange(256) for _byte in range(rng.randint(1, 8)))
            else:
                data[pos:pos] = rng.choice(seeds)[4:]
        _only_codec_errors(c.parse_message, bytes(data))
        result = c.answer(bytes(data), lease, SERVER_ID, VM_MAC)
        if result.reply is not None:
            answered += 1
            c.parse_message(result.reply)  # whatever we send decodes
            assert len(result.reply) + 48 <= c.IPV6_MIN_MTU, "and fits the link"
        frame = udp_to_server(bytes(data))
        c.parse_udp6_frame(frame[:rng.randrange(len(frame) + 1)])
        c.parse_router_solicitation(router_solicitation()[:14] + bytes(data))
    assert answered > 100  # the mutations also produced valid messages that were answered


def test_deeply_nested_and_huge_inputs_are_bounded():
    nested = c.option(c.OPT_IAADDR, bytes(24) + c.option(c.OPT_STATUS_CODE, b"\x00\x00" + b"x" * 60000))
    assert len(c.parse_message(msg(c.SOLICIT, cid(), c.option(c.OPT_IA_NA, bytes(12) + nested)))["ia_na"]) == 1
    with pytest.raises(c.Dhcp6CodecError):
        c.parse_message(b"\x01" + bytes(70000))
    with pytest.raises(c.Dhcp6CodecError):
        c.option(1, bytes(70000))
    with pytest.raises(c.Dhcp6CodecError):
        c.encode_message(1, 1 << 24, [])
    for bad in (None, 12, "text"):
        with pytest.raises(c.Dhcp6CodecError):
            c.parse_message(bad)
        assert c.parse_udp6_frame(bad) is None and c.parse_router_solicitation(bad) is None


def test_link_local_from_mac_is_modified_eui64():
    assert c.link_local_from_mac("1e:38:fb:c0:1b:f0") == "fe80::1c38:fbff:fec0:1bf0"
    assert c.link_local_from_mac("00:11:22:33:44:55") == "fe80::211:22ff:fe33:4455"
    assert c.link_local_from_mac("02:00:00:00:00:01") == "fe80::ff:fe00:1"
    with pytest.raises(ValueError):
        c.link_local_from_mac("00:11:22")


# -- reply size (issue 18 M1) -----------------------------------------------------------------------
UDP6_HEADERS = 48  # IPv6 40 + UDP 8: a reply of n bytes takes n + 48 of the link MTU


def _many_ias(kind, count):
    make = {"na": ia, "na+foreign": lambda i: ia(i, "fd00:10:244::10", f"2001:db8::{i:x}"),
            "ta": lambda i: c.ia_ta_option(i, [c.iaaddr_option(f"fd00::{i:x}", 1, 2)]),
            "pd": lambda i: c.ia_pd_option(i, 0, 0, [c.iaprefix_option(f"2001:db8:{i:x}::/56", 1, 2)])}
    if kind == "mixed":
        return [_many_ias(("na", "ta", "pd")[i % 3], 1)[0] for i in range(count)]
    return [make[kind](i) for i in range(1, count + 1)]


def _with_ids(mtype):
    return {c.SOLICIT: [cid()], c.REQUEST: [cid(), sid()], c.RENEW: [cid(), sid()], c.REBIND: [cid()]}[mtype]


def test_the_issue_solicit_with_45_ia_tas_fits_the_link():
    """440 bytes of Solicit with 45 IA_TAs drew a 1,683-byte Advertise: the kernel refused it (EMSGSIZE)."""
    solicit = msg(c.SOLICIT, cid(), *[c.ia_ta_option(i) for i in range(45)])
    result = ans(solicit, mtu=1500)
    assert result.reply is not None and len(result.reply) + UDP6_HEADERS <= 1500, len(result.reply)


@pytest.mark.parametrize("count", [45, 100, 170])
@pytest.mark.parametrize("kind", ["na", "na+foreign", "ta", "pd", "mixed"])
@pytest.mark.parametrize("mtype", [c.SOLICIT, c.REQUEST, c.RENEW, c.REBIND])
@pytest.mark.parametrize("mtu", [1280, 1500])
def test_replies_never_exceed_the_link_mtu(count, kind, mtype, mtu):
    result = ans(msg(mtype, *_with_ids(mtype), *_many_ias(kind, count)), mtu=mtu)
    assert result.reply is not None, result.reason
    assert len(result.reply) + UDP6_HEADERS <= mtu, len(result.reply)
    parsed = c.parse_message(result.reply)
    if kind.startswith("na") or kind == "mixed":
        assert parsed["ia_na"][0]["iaid"] == 1 and parsed["ia_na"][0]["addresses"][0]["address"] == LEASE["address"]
        assert parsed["dns_servers"] == LEASE["dns_servers"], "the configuration comes before further IAs"
        assert not result.reason.endswith("NoAddrsAvail")
    else:
        assert parsed["status"][0] == c.NO_ADDRS_AVAIL


def test_an_iaid_is_answered_once():
    """RFC 8415 21.4, 21.5, 21.21: the IAID of an IA is unique among the IAs of its type in a message."""
    parsed = reply_of(msg(c.SOLICIT, cid(), ia(7), ia(7), c.ia_ta_option(8), c.ia_ta_option(8),
                          c.ia_pd_option(9, 0, 0), c.ia_pd_option(9, 0, 0)))[0]
    assert [i["iaid"] for i in parsed["ia_na"]] == [7]
    assert [i["iaid"] for i in parsed["ia_ta"]] == [8] and [i["iaid"] for i in parsed["ia_pd"]] == [9]


def test_a_reply_that_cannot_fit_is_not_sent():
    result = ans(msg(c.SOLICIT, cid(), ia(1)), mtu=100)
    assert result.reply is None and "MTU" in result.reason, result.reason


def test_small_replies_are_unchanged_by_the_bound():
    payload = msg(c.RENEW, cid(), sid(), ia(5, "fd00:10:244::10", "2001:db8::7"), c.ia_ta_option(6), c.ia_pd_option(7, 0, 0))
    assert ans(payload, mtu=1280).reply == ans(payload, mtu=9000).reply


_IA_STRATEGY = st.tuples(st.sampled_from(["na", "na+foreign", "ta", "pd"]), st.integers(0, 40))


@given(mtype=st.sampled_from([c.SOLICIT, c.REQUEST, c.RENEW, c.REBIND, c.CONFIRM, c.RELEASE, c.DECLINE,
                              c.INFORMATION_REQUEST]),
       groups=st.lists(_IA_STRATEGY, max_size=6), mtu=st.integers(68, 9000), rapid=st.booleans(),
       domains=st.integers(0, 64))
@settings(max_examples=400, deadline=None)
def test_property_answer_returns_and_fits_the_mtu(mtype, groups, mtu, rapid, domains):
    ias = [option for kind, count in groups for option in _many_ias(kind, count)]
    extra = [c.option(c.OPT_RAPID_COMMIT)] if rapid and mtype == c.SOLICIT else []
    lease = {"search_domains": [f"d{i}." + "x" * 60 + ".example" for i in range(domains)]}
    result = ans(msg(mtype, *_with_ids(mtype) if mtype in (c.SOLICIT, c.REQUEST, c.RENEW, c.REBIND) else [cid(), sid()],
                     *extra, *ias), lease=lease, mtu=mtu)
    if result.reply is not None:
        assert len(result.reply) + UDP6_HEADERS <= mtu
        c.parse_message(result.reply)
