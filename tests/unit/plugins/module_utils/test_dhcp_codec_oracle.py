# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The stdlib DHCPv4 codec against pyroute2's ``dhcp4msg``, the oracle it replaced (issue 18).

``_reference_encode`` / ``_reference_decode`` are the codec's functions as they were on top of
pyroute2 (0.2.0). For generated messages the new ones must give the same bytes and the same
decoded dict; on arbitrary option areas (codes not repeated) the same dict or both ``ValueError``.
The one intended difference: a repeated option is joined (RFC 3396), where pyroute2 kept the last
instance; the generators below never repeat a code. pyroute2 is a test dependency only.
"""

from __future__ import annotations

import logging
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec

pyroute2_dhcp4msg = pytest.importorskip("pyroute2.dhcp.dhcp4msg")
from pyroute2.dhcp.enums.dhcp import Option  # noqa: E402

logging.getLogger("pyroute2").setLevel(logging.CRITICAL)  # it logs every option it cannot decode

RAW = (119, 121, 249)
# The codes 0.2.0 encoded by type (its name table), with pyroute2's names.
NAMES = {1: "subnet_mask", 3: "router", 6: "name_server", 12: "host_name", 15: "domain_name", 26: "interface_mtu",
         50: "requested_ip", 51: "lease_time", 54: "server_id", 55: "parameter_list", 56: "message",
         58: "renewal_time", 59: "rebinding_time", 119: "domain_search", 121: "classless_static_route",
         249: "private_classic_route_ms"}


class _Reference(pyroute2_dhcp4msg.dhcp4msg):
    options = pyroute2_dhcp4msg.dhcp4msg.options + tuple((Option(code), "array8") for code in RAW)


def _reference_split(code, data):
    out = bytearray()
    for start in range(0, max(len(data), 1), 255):
        chunk = data[start:start + 255]
        out += bytes([code, len(chunk)]) + chunk
    return bytes(out)


def _reference_encode(fields, options):
    content = {"op": codec.BOOTREPLY, "htype": 1, "hlen": 6, "hops": 0, "xid": 0, "secs": 0, "flags": 0,
               "ciaddr": "0.0.0.0", "yiaddr": "0.0.0.0", "siaddr": "0.0.0.0", "giaddr": "0.0.0.0",
               "sname": b"", "file": b""}
    content.update(fields)
    standard, raw = {}, bytearray()
    for code, value in options:
        if code in RAW or (isinstance(value, bytes) and code not in (12, 15)):
            raw += _reference_split(code, bytes(value))
        elif code == 53:
            standard["message_type"] = value
        else:
            standard[NAMES[code]] = value
    msg = _Reference(content)
    msg["options"] = standard
    buf = msg.encode().buf
    if raw:
        buf = buf[:-1] + bytes(raw) + b"\xff"
    if len(buf) < codec.BOOTP_MIN_LEN:
        buf += b"\x00" * (codec.BOOTP_MIN_LEN - len(buf))
    return buf


def _reference_decode(payload):
    if len(payload) < 240 or payload[236:240] != b"c\x82Sc":
        raise ValueError("not a DHCP message")
    if payload[1] != 1 or payload[2] != 6:
        raise ValueError("not an Ethernet DHCP message")
    try:
        msg = _Reference(buf=payload).decode()
    except Exception as exc:
        raise ValueError(f"undecodable DHCP message: {exc}") from None
    result = {key: msg.get(key) for key in ("op", "xid", "flags", "ciaddr", "yiaddr", "siaddr", "giaddr", "chaddr")}
    result["options"] = dict(msg.get("options") or {})
    mtype = result["options"].get("message_type")
    if mtype is None or int(mtype) not in codec.MESSAGE_NAMES:
        raise ValueError("no valid message type")
    result["message_type"] = int(mtype)
    return result


def _outcome(decode, payload):
    try:
        return decode(payload)
    except ValueError:
        return ValueError


# -- generated messages ----------------------------------------------------------------------
ipv4 = st.builds(lambda n: ".".join(str(b) for b in n.to_bytes(4, "big")), st.integers(0, 2**32 - 1))
mac = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))
# ASCII: pyroute2 sized a text option by its characters and cut its UTF-8 to that (test_utf8_text_is_not_cut).
text = st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=255)
VALUES = {
    1: ipv4, 50: ipv4, 54: ipv4,
    3: st.lists(ipv4, max_size=63), 6: st.lists(ipv4, max_size=63),
    12: st.one_of(text, st.binary(max_size=255).filter(lambda b: b"\x00" not in b)), 15: text, 56: text,
    26: st.integers(0, 0xFFFF),
    51: st.integers(-2**31, 2**31 - 1), 58: st.integers(-2**31, 2**31 - 1), 59: st.integers(-2**31, 2**31 - 1),
    55: st.lists(st.integers(0, 255), max_size=255),
    119: st.binary(max_size=255), 121: st.binary(max_size=255), 249: st.binary(max_size=255),
}
# Options given as bytes, sent as they are (KubeVirt's dhcpOptions: 42, 66, 67, 224-254; a client's 57, 61).
BYTES_CODES = [42, 57, 61, 66, 67] + list(range(224, 249))


@st.composite
def messages(draw, bytes_codes=BYTES_CODES):
    fields = {"op": draw(st.sampled_from([1, 2])), "xid": draw(st.integers(0, 2**32 - 1)),
              "secs": draw(st.integers(0, 0xFFFF)), "flags": draw(st.integers(0, 0xFFFF)),
              "ciaddr": draw(ipv4), "yiaddr": draw(ipv4), "siaddr": draw(ipv4), "giaddr": draw(ipv4),
              "chaddr": draw(mac), "sname": draw(st.binary(max_size=63)), "file": draw(st.binary(max_size=127))}
    for key in list(fields):
        if key != "op" and draw(st.booleans()):
            del fields[key]  # the defaults
    options = [(53, draw(st.integers(1, 8)))]
    typed = draw(st.lists(st.sampled_from(sorted(VALUES)), unique=True, max_size=len(VALUES)))
    raw = draw(st.lists(st.sampled_from(bytes_codes), unique=True, max_size=6))
    entries = [(code, draw(VALUES[code])) for code in typed] + [(code, draw(st.binary(max_size=255))) for code in raw]
    order = draw(st.permutations(entries)) if entries else []
    return fields, options + list(order)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_encode_and_decode_agree_with_pyroute2(message):
    fields, options = message
    expected = _reference_encode(fields, options)
    payload = codec.encode_message(fields, options)
    assert payload == expected
    assert _outcome(codec.decode_message, payload) == _outcome(_reference_decode, payload)  # (61, b""): both refuse


@settings(max_examples=300, deadline=None)
@given(messages(bytes_codes=[66, 67] + list(range(224, 249))))  # bytes that decode as text or raw, whatever they are
def test_round_trip(message):
    fields, options = message
    decoded = codec.decode_message(codec.encode_message(fields, options))
    assert decoded["message_type"] == options[0][1]
    assert decoded["chaddr"] == fields.get("chaddr", "00:00:00:00:00:00")
    for key in ("xid", "flags", "ciaddr", "yiaddr", "siaddr", "giaddr"):
        assert decoded[key] == fields.get(key, 0 if key in ("xid", "flags") else "0.0.0.0")
    for code, value in options[1:]:
        got = decoded["options"][codec.option_name(code)]
        if isinstance(got, str):  # text: its trailing NULs dropped, as pyroute2 did
            assert got == (value if isinstance(value, str) else value.decode("utf-8")).rstrip("\x00")
        elif code in (55,) + RAW or isinstance(value, bytes):
            assert bytes(got) == bytes(value)
        else:
            assert got == value


# -- arbitrary option areas ----------------------------------------------------------------------
# Typed codes of every kind (with lengths right and wrong), unnamed ones, the message type.
CODES = [1, 2, 3, 12, 13, 19, 23, 26, 50, 51, 52, 53, 55, 57, 61, 81, 119, 121, 200, 249, 254]


@st.composite
def option_areas(draw):
    codes = draw(st.lists(st.sampled_from(CODES), unique=True, max_size=8))
    if draw(st.booleans()) and 53 not in codes:
        codes.insert(draw(st.integers(0, len(codes))), 53)
    area = bytearray()
    for code in codes:
        if code == 53 and draw(st.booleans()):
            data = bytes([draw(st.integers(0, 10))])
        elif code == 61 and draw(st.booleans()):
            data = b"\x01" + draw(st.binary(min_size=6, max_size=6))
        else:
            data = draw(st.binary(max_size=12))
        length = len(data) if draw(st.integers(0, 9)) else draw(st.integers(0, 255))  # now and then, a lie
        area += bytes([code, length]) + data
        area += b"\x00" * draw(st.integers(0, 2))  # PAD
    if draw(st.booleans()):
        area += b"\xff" + draw(st.binary(max_size=16))  # END, then anything
    cut = draw(st.integers(0, len(area)))
    return bytes(area[:cut] if draw(st.integers(0, 4)) == 0 else area)


def _before_overrun(payload):
    """``payload`` cut before its first option that runs past the end (if any).

    pyroute2 took such an option when the bytes left happened to fit its type (a message type
    ``35 02 01`` at the very end was a DISCOVER); decode_message stops before it. Otherwise the
    two agree: compare decode_message(payload) with pyroute2 on the payload cut there.
    """
    pos = 240
    while pos < len(payload) and payload[pos] != 255:
        if payload[pos] == 0:
            pos += 1
        elif pos + 1 >= len(payload) or pos + 2 + payload[pos + 1] > len(payload):
            return payload[:pos]
        else:
            pos += 2 + payload[pos + 1]
    return payload


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=236, max_size=236), st.sampled_from([1, 2, 7]), option_areas())
def test_decode_agrees_with_pyroute2_on_any_option_area(header, htype, area):
    payload = header[:1] + bytes([htype]) + b"\x06" + header[3:] + b"c\x82Sc" + area
    assert _outcome(codec.decode_message, payload) == _outcome(_reference_decode, _before_overrun(payload))


# -- differences on purpose ------------------------------------------------------------------------
def test_repeated_options_are_joined_rfc3396():
    """pyroute2 kept the last instance of a repeated option; RFC 3396 joins them, as encode_message splits them."""
    names = [f"{'x' * 40}{i}.d{i}.t{i}" for i in range(10)]
    data = codec.encode_search_domains(names)
    payload = codec.encode_message({"chaddr": "02:00:00:00:00:01"},
                                   [(53, codec.ACK), (119, data), (6, [f"10.0.{i // 250}.{i % 250}" for i in range(70)])])
    decoded = codec.decode_message(payload)
    assert codec.decode_search_domains(bytes(decoded["options"]["domain_search"])) == names
    assert len(decoded["options"]["name_server"]) == 70  # 280 bytes: pyroute2 could not encode it
    assert bytes(_reference_decode(payload)["options"]["domain_search"]) == data[(len(data) - 1) // 255 * 255:]


def test_utf8_text_is_not_cut():
    """pyroute2 packed a text option into as many bytes as it has characters: "grüße" went out as 5 bytes."""
    payload = codec.encode_message({}, [(53, codec.ACK), (12, "grüße"), (56, "€")])
    assert codec.decode_message(payload)["options"]["host_name"] == "grüße"
    assert codec.decode_message(payload)["options"]["message"] == "€"
    cut = _reference_decode(_reference_encode({}, [(53, codec.ACK), (12, "grüße")]))["options"]["host_name"]
    assert cut == list("grüße".encode("utf-8")[:5])  # "grü" and half of "ß": not UTF-8 any more


def test_unsigned_lease_times_encode():
    """0xFFFFFFFF is an infinite lease (RFC 2131 3.3); pyroute2 (signed) refused it. Decoded values stay signed."""
    payload = codec.encode_message({}, [(53, codec.ACK), (51, 0xFFFFFFFF), (58, 2**31)])
    assert codec.scan_options(payload)[51] == b"\xff\xff\xff\xff"
    assert codec.decode_message(payload)["options"]["lease_time"] == -1
    assert codec.decode_message(payload)["options"]["renewal_time"] == -2**31


# -- fuzz: decode_message raises ValueError and nothing else ---------------------------------------
@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=700))
def test_decode_message_raises_only_value_error_on_random_bytes(data):
    for payload in (data, data[:1] + b"\x01\x06" + data[3:236].ljust(233, b"\x00") + b"c\x82Sc" + data[236:]):
        try:
            codec.decode_message(payload)
        except ValueError:
            pass


@settings(max_examples=500, deadline=None)
@given(messages(), st.data())
def test_decode_message_raises_only_value_error_on_mutations(message, data):
    payload = bytearray(codec.encode_message(*message))
    for _flip in range(data.draw(st.integers(1, 12))):
        payload[data.draw(st.integers(240, len(payload) - 1))] = data.draw(st.integers(0, 255))
    payload = bytes(payload[:data.draw(st.integers(240, len(payload)))])
    try:
        codec.decode_message(payload)
    except ValueError:
        pass


# -- checksums -------------------------------------------------------------------------------------
def _reference_checksum(data):
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@settings(max_examples=800, deadline=None)
@given(st.one_of(st.binary(max_size=1600), st.lists(st.sampled_from([b"\x00\x00", b"\xff\xff"]), max_size=40).map(b"".join)))
def test_inet_checksum_agrees_with_the_word_sum(data):
    assert codec.inet_checksum(data) == _reference_checksum(data)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00", b"\xff\xff", b"\xff\xff\xff\xff", b"\xff\xfe\x00\x01",
                                  b"\x00\x01\xff\xfe", b"\xff"])
def test_inet_checksum_edges(data):
    assert codec.inet_checksum(data) == _reference_checksum(data)


# -- frames ----------------------------------------------------------------------------------------
def _reference_build_frame(src_mac, dst_mac, src_ip, dst_ip, payload, sport=67, dport=68, ip_id=0):
    """build_frame as 0.2.0 had it: headers packed, then checksummed word by word."""
    src, dst = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    udp_len = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    udp_header = struct.pack("!HHHH", sport, dport, udp_len, 0)
    udp_sum = _reference_checksum(pseudo + udp_header + payload) or 0xFFFF
    udp_header = struct.pack("!HHHH", sport, dport, udp_len, udp_sum)
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + udp_len, ip_id & 0xFFFF, 0, 64, 17, 0, src, dst)
    ip_header = ip_header[:10] + struct.pack("!H", _reference_checksum(ip_header)) + ip_header[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) + b"\x08\x00"
    return eth + ip_header + udp_header + payload


@settings(max_examples=600, deadline=None)
@given(mac, mac, ipv4, ipv4, st.one_of(st.binary(max_size=1500), st.binary(max_size=8).map(lambda b: b * 100)),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 2**20))
def test_build_frame_agrees_with_the_word_sum(src_mac, dst_mac, src_ip, dst_ip, payload, sport, dport, ip_id):
    frame = codec.build_frame(src_mac, dst_mac, src_ip, dst_ip, payload, sport, dport, ip_id)
    assert frame == _reference_build_frame(src_mac, dst_mac, src_ip, dst_ip, payload, sport, dport, ip_id)


@settings(max_examples=300, deadline=None)
@given(messages(bytes_codes=[66, 67] + list(range(224, 249))))
def test_parse_request_fields_agree_with_decode_message(message):
    fields, options = message
    payload = codec.encode_message(dict(fields, op=1), options)
    parsed = codec.parse_request(payload)
    decoded = codec.decode_message(payload)
    for key in ("op", "xid", "flags", "ciaddr", "giaddr", "chaddr", "message_type"):
        assert parsed[key] == decoded[key], key
    assert parsed["requested_ip"] == decoded["options"].get("requested_ip")
    assert parsed["server_id"] == decoded["options"].get("server_id")
