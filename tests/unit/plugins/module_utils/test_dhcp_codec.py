"""DHCP codec: RFC examples for options 119 and 121, message round trips, framing (pyroute2 as an oracle:
test_dhcp_codec_oracle.py)."""

from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

MAC = "0a:58:0a:f4:01:0a"


# -- option 119 ------------------------------------------------------------------------------
def test_search_list_rfc3397_example():
    # RFC 3397 section 3: "eng.apple.com." and "marketing.apple.com.", the second compressed.
    expected = (b"\x03eng\x05apple\x03com\x00"
                b"\x09marketing\xc0\x04")
    assert codec.encode_search_domains(["eng.apple.com.", "marketing.apple.com."]) == expected
    assert len(expected) == 27
    assert codec.decode_search_domains(expected) == ["eng.apple.com", "marketing.apple.com"]


def test_search_list_without_shared_suffix_and_full_repeat():
    data = codec.encode_search_domains(["a.example", "b.test", "a.example"])
    assert data == b"\x01a\x07example\x00\x01b\x04test\x00\xc0\x00"
    assert codec.decode_search_domains(data) == ["a.example", "b.test", "a.example"]


@pytest.mark.parametrize("bad, fragment", [
    ("not-a-list.example", "must be a list"),
    (["-bad.example"], "invalid label"),
    (["bad-.example"], "invalid label"),
    (["a" * 64 + ".example"], "invalid label"),
    (["exa mple.com"], "invalid label"),
    (["a..b"], "invalid label"),
    ([""], "empty name"),
    (["bücher.example"], "not ASCII"),
    ([42], "not a string"),
    ([("x" * 60 + ".") * 5 + "com"], "longer than 253"),
])
def test_invalid_search_lists_are_clear_errors(bad, fragment):
    with pytest.raises(PodnetError) as info:
        codec.validate_search_domains(bad)
    assert fragment in info.value.msg
    assert "search_domains" in info.value.msg


def test_search_list_normalised():
    assert codec.validate_search_domains(["Svc.Cluster.Local.", "x_y.example"]) == ["svc.cluster.local", "x_y.example"]
    assert codec.validate_search_domains(None) == []


def test_search_list_too_long_overall():
    names = [f"n{i}-" + "x" * 50 + ".example" for i in range(30)]
    with pytest.raises(PodnetError, match="longer than 1020 bytes"):
        codec.validate_search_domains(names)


# -- options 121/249 ---------------------------------------------------------------------------
@pytest.mark.parametrize("dst, descriptor", [
    # RFC 3442 section 3 table: subnet number/mask -> destination descriptor.
    ("0.0.0.0/0", bytes([0])),
    ("10.0.0.0/8", bytes([8, 10])),
    ("10.0.0.0/24", bytes([24, 10, 0, 0])),
    ("10.17.0.0/16", bytes([16, 10, 17])),
    ("10.27.129.0/24", bytes([24, 10, 27, 129])),
    ("10.229.0.128/25", bytes([25, 10, 229, 0, 128])),
    ("10.198.122.47/32", bytes([32, 10, 198, 122, 47])),
])
def test_classless_route_descriptors_rfc3442(dst, descriptor):
    data = codec.encode_classless_routes([{"dst": dst, "gateway": "10.0.0.1"}])
    assert data == descriptor + bytes([10, 0, 0, 1])
    assert codec.decode_classless_routes(data) == [{"dst": dst, "gateway": "10.0.0.1"}]


def test_calico_routes_link_route_first_default_last():
    routes = [{"dst": "169.254.1.1/32", "gateway": None}, {"dst": "0.0.0.0/0", "gateway": "169.254.1.1"}]
    data = codec.encode_classless_routes(routes)
    assert data == bytes([32, 169, 254, 1, 1, 0, 0, 0, 0, 0, 169, 254, 1, 1])
    assert codec.decode_classless_routes(data) == routes


@pytest.mark.parametrize("data", [bytes([33, 1, 2, 3, 4, 5, 6, 7, 8]), bytes([24, 10, 0]), bytes([8, 10, 0, 0, 0])])
def test_classless_routes_decode_rejects_garbage(data):
    with pytest.raises(ValueError):
        codec.decode_classless_routes(data)


def test_bad_route_is_a_podnet_error():
    with pytest.raises(PodnetError, match=r"routes\[0\]"):
        codec.encode_classless_routes([{"dst": "10.0.0.300/24"}])


# -- KubeVirt's dhcpOptions: options 66, 67, 42 and 224-254 -------------------------------------
DHCP_OPTIONS = {"boot_file_name": "pxelinux.0", "tftp_server_name": "tftp.example.com",
                "ntp_servers": ["10.96.0.20", "10.96.0.21"],
                "private_options": [{"option": 240, "value": "extra"}, {"option": 224, "value": "grüße"}]}


def test_dhcp_options_encoded_as_their_option_codes():
    assert codec.encode_dhcp_options(DHCP_OPTIONS) == [
        (66, b"tftp.example.com"), (67, b"pxelinux.0"), (42, bytes([10, 96, 0, 20, 10, 96, 0, 21])),
        (240, b"extra"), (224, "grüße".encode("utf-8")),
    ]
    assert codec.encode_dhcp_options(None) == [] and codec.encode_dhcp_options({}) == []
    assert codec.encode_dhcp_options({"ntp_servers": ["10.0.0.1"]}) == [(42, bytes([10, 0, 0, 1]))]


def test_boot_header_fields_as_isc_dhcpd_and_dnsmasq_fill_them():
    """PXE ROMs read the BOOTP header's file (and siaddr); udhcpc exports file as boot_file, sname as sname."""
    assert codec.boot_header_fields(DHCP_OPTIONS) == {"file": b"pxelinux.0", "sname": b"tftp.example.com"}
    assert codec.boot_header_fields({"tftp_server_name": "10.0.0.5"}) == {"sname": b"10.0.0.5", "siaddr": "10.0.0.5"}
    # Too long for the header's fields (128 and 64 bytes with their NUL): in the options only.
    assert codec.boot_header_fields({"boot_file_name": "f" * 128, "tftp_server_name": "t" * 64}) == {}
    assert codec.boot_header_fields({"boot_file_name": "f" * 127, "tftp_server_name": "t" * 63}) == {
        "file": b"f" * 127, "sname": b"t" * 63}
    assert codec.boot_header_fields(None) == {}


def test_dhcp_options_in_a_message_scan_back():
    fields = dict(codec.boot_header_fields(DHCP_OPTIONS), chaddr=MAC, yiaddr="10.244.1.10")
    options = [(53, codec.OFFER), (54, "10.244.1.1")] + codec.encode_dhcp_options(DHCP_OPTIONS)
    payload = codec.encode_message(fields, options)
    opts = codec.scan_options(payload)
    assert opts[66] == b"tftp.example.com" and opts[67] == b"pxelinux.0"
    assert opts[42] == bytes([10, 96, 0, 20, 10, 96, 0, 21])
    assert opts[240] == b"extra" and opts[224].decode("utf-8") == "grüße"
    assert payload[108:108 + 11] == b"pxelinux.0\x00" and payload[44:44 + 17] == b"tftp.example.com\x00"
    decoded = codec.decode_message(payload)
    assert decoded["options"]["bootfile_name"] == "pxelinux.0" and decoded["options"]["ntp_servers"] == [
        "10.96.0.20", "10.96.0.21"]


# -- messages ------------------------------------------------------------------------------------
def _offer(**extra):
    options = [(53, codec.OFFER), (54, "10.244.1.1"), (51, 3600), (58, 1800), (59, 3150), (1, "255.255.255.0"),
               (3, ["10.244.1.1"]), (6, ["10.96.0.10", "10.96.0.11"]), (12, "vm1"), (15, "svc.cluster.local"),
               (26, 1450), (119, codec.encode_search_domains(["default.svc.cluster.local", "svc.cluster.local"])),
               (121, codec.encode_classless_routes([{"dst": "10.244.1.0/24"}, {"dst": "0.0.0.0/0", "gateway": "10.244.1.1"}])),
               (249, codec.encode_classless_routes([{"dst": "0.0.0.0/0", "gateway": "10.244.1.1"}]))]
    return codec.encode_message({"xid": 0x12345678, "chaddr": MAC, "yiaddr": "10.244.1.10", **extra}, options)


def test_round_trip():
    msg = codec.decode_message(_offer())
    opts = msg["options"]
    assert msg["op"] == codec.BOOTREPLY and msg["xid"] == 0x12345678 and msg["chaddr"] == MAC
    assert msg["yiaddr"] == "10.244.1.10" and msg["message_type"] == codec.OFFER
    assert opts["server_id"] == "10.244.1.1" and opts["lease_time"] == 3600
    assert opts["renewal_time"] == 1800 and opts["rebinding_time"] == 3150
    assert opts["subnet_mask"] == "255.255.255.0" and opts["router"] == ["10.244.1.1"]
    assert opts["name_server"] == ["10.96.0.10", "10.96.0.11"]
    assert opts["host_name"] == "vm1" and opts["domain_name"] == "svc.cluster.local"
    assert opts["interface_mtu"] == 1450
    # pyroute2's stock table dropped these three; they decode as lists of ints, as with the extended table.
    assert codec.decode_search_domains(bytes(opts["domain_search"])) == ["default.svc.cluster.local", "svc.cluster.local"]
    assert codec.decode_classless_routes(bytes(opts["classless_static_route"]))[-1] == {"dst": "0.0.0.0/0",
                                                                                        "gateway": "10.244.1.1"}
    assert bytes(opts["private_classic_route_ms"]) == bytes([0, 10, 244, 1, 1])


def test_fast_scanner_agrees_with_decode_message():
    payload = _offer()
    raw = codec.scan_options(payload)
    assert raw[53] == bytes([codec.OFFER]) and raw[54] == bytes([10, 244, 1, 1])
    assert raw[121] == bytes(codec.decode_message(payload)["options"]["classless_static_route"])
    request = codec.encode_message({"op": 1, "xid": 7, "chaddr": MAC, "flags": 0x8000},
                                   [(53, codec.REQUEST), (50, "10.244.1.10"), (54, "10.244.1.1"), (55, [1, 3, 121])])
    parsed = codec.parse_request(request)
    assert parsed == {"op": 1, "xid": 7, "flags": 0x8000, "ciaddr": "0.0.0.0", "giaddr": "0.0.0.0", "chaddr": MAC,
                      "message_type": codec.REQUEST, "requested_ip": "10.244.1.10", "server_id": "10.244.1.1",
                      "parameter_list": [1, 3, 121], "max_message_size": None}
    assert codec.decode_message(request)["options"]["requested_ip"] == "10.244.1.10"
    request = codec.encode_message({"op": 1, "xid": 7, "chaddr": MAC}, [(53, codec.DISCOVER), (57, b"\x05\x78")])
    assert codec.parse_request(request)["max_message_size"] == 1400


def test_replies_are_padded_to_bootp_minimum():
    small = codec.encode_message({"chaddr": MAC}, [(53, codec.NAK), (54, "10.0.0.1")])
    assert len(small) == codec.BOOTP_MIN_LEN
    assert small[240:].rstrip(b"\x00").endswith(b"\xff")
    assert len(_offer()) > codec.BOOTP_MIN_LEN  # larger messages are not cut


def test_long_option_split_rfc3396():
    names = [f"{'x' * 40}{i}.d{i}.t{i}" for i in range(10)]
    data = codec.encode_search_domains(names)
    assert len(data) > 255
    payload = codec.encode_message({"chaddr": MAC}, [(53, codec.ACK), (119, data)])
    assert codec.scan_options(payload)[119] == data
    assert codec.decode_search_domains(codec.scan_options(payload)[119]) == names


def test_patch_reply_fills_request_fields():
    template = _offer()
    out = codec.patch_reply(template, 0xDEADBEEF, 0x8000 | 0x1234, "10.244.1.10")
    assert struct.unpack("!IHH", out[4:12]) == (0xDEADBEEF, 0, 0x8000)
    assert out[12:16] == ipaddress.IPv4Address("10.244.1.10").packed
    assert out[16:] == template[16:]


@pytest.mark.parametrize("payload", [b"", b"\x01" * 239, b"\x01\x01\x06" + b"\x00" * 233 + b"XXXX" + b"\x35\x01\x01\xff",
                                     b"\x01\x01\x06" + b"\x00" * 233 + b"c\x82Sc" + b"\x35\x05\x01",
                                     b"\x01\x01\x06" + b"\x00" * 233 + b"c\x82Sc" + b"\x35\x01\x01",
                                     b"\x01\x01\x06" + b"\x00" * 233 + b"c\x82Sc" + b"\x35\x01\x09\xff",
                                     b"\x01\x01\x06" + b"\x00" * 233 + b"c\x82Sc" + b"\x35\x01\x01\x32\x03abc\xff",
                                     b"\x02\x01\x06" + b"\x00" * 233 + b"c\x82Sc" + b"\x35\x01\x01\xff"])
def test_malformed_requests_raise_value_error(payload):
    with pytest.raises(ValueError):
        codec.parse_request(payload)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 600))
def test_parsers_only_raise_value_error(noise, cut):
    base = codec.encode_message({"op": 1, "xid": 1, "chaddr": MAC}, [(53, codec.DISCOVER), (55, [1, 3])])
    for payload in (noise, base[:cut] + noise, base[:240] + noise):
        for parse in (codec.parse_request, codec.decode_message):
            try:
                parse(payload)
            except ValueError:
                pass


# -- framing ------------------------------------------------------------------------------------
def test_ip_checksum_known_header():
    # The classic worked example: 45 00 00 73 00 00 40 00 40 11 [b8 61] c0 a8 00 01 c0 a8 00 c7.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert codec.inet_checksum(header) == 0xB861


def test_frame_checksums_verify():
    payload = _offer()
    frame = codec.build_frame("02:00:00:00:00:01", MAC, "10.244.1.1", "10.244.1.10", payload)
    assert frame[12:14] == b"\x08\x00" and frame[0:6] == codec.mac_bytes(MAC)
    ip_header = frame[14:34]
    assert codec.inet_checksum(ip_header) == 0  # a correct header sums to zero
    udp = frame[34:]
    pseudo = ip_header[12:20] + struct.pack("!BBH", 0, 17, len(udp))
    assert codec.inet_checksum(pseudo + udp) == 0
    assert struct.unpack("!HH", udp[:4]) == (67, 68)
    assert len(frame) == 14 + 20 + 8 + len(payload)
    nak = codec.build_frame("02:00:00:00:00:01", MAC, "10.0.0.1", "255.255.255.255",
                            codec.encode_message({"chaddr": MAC}, [(53, codec.NAK)]))
    assert len(nak) == 14 + 20 + 8 + 300


def test_parse_frame_filters():
    payload = codec.encode_message({"op": 1, "chaddr": MAC}, [(53, codec.DISCOVER)])
    frame = codec.build_frame(MAC, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255", payload, 68, 67)
    assert codec.parse_frame(frame) == (MAC, "0.0.0.0", "255.255.255.255", payload)
    assert codec.parse_frame(frame, dport=68) is None
    assert codec.parse_frame(frame[:40]) is None
    assert codec.parse_frame(frame[:12] + b"\x86\xdd" + frame[14:]) is None
    fragment = bytearray(frame)
    fragment[20:22] = b"\x00\x10"
    assert codec.parse_frame(bytes(fragment)) is None
    lying = bytearray(frame)
    lying[16:18] = struct.pack("!H", 2000)
    assert codec.parse_frame(bytes(lying)) is None


@pytest.mark.parametrize("reply, req, expected", [
    (codec.NAK, {"ciaddr": "10.0.0.5", "flags": 0}, ("ff:ff:ff:ff:ff:ff", "255.255.255.255")),
    (codec.ACK, {"ciaddr": "10.0.0.5", "flags": 0x8000}, (MAC, "10.0.0.5")),
    (codec.OFFER, {"ciaddr": "0.0.0.0", "flags": 0x8000}, ("ff:ff:ff:ff:ff:ff", "255.255.255.255")),
    (codec.OFFER, {"ciaddr": "0.0.0.0", "flags": 0}, (MAC, "10.0.0.9")),
])
def test_reply_destination_rfc2131(reply, req, expected):
    assert codec.reply_destination(req, reply, MAC, "10.0.0.9") == expected


def test_repeated_option_scanned_without_copying_it_again_and_again():
    """A hostile request repeating one option thousands of times: joined once (RFC 3396), in linear time."""
    base = codec.encode_message({"op": 1, "chaddr": MAC}, [(53, codec.DISCOVER)])
    payload = base[:243] + b"\xe0\x01\x07" * 20000 + b"\xff"
    assert codec.scan_options(payload)[224] == b"\x07" * 20000
    assert codec.decode_message(payload)["options"]["option224"] == [7] * 20000


def test_no_pyroute2_on_the_responder_path():
    """Issue 18: the codec, and the responder building, parsing and framing replies, never import pyroute2."""
    from lib import paths
    script = """if True:
        import sys
        from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
        from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import Pod
        from lib.pod_samples import MAC, declaration
        request = codec.parse_request(codec.encode_message({"op": 1, "xid": 5, "chaddr": MAC},
                                                           [(53, codec.DISCOVER), (55, [1, 3, 6, 15, 119])]))
        payload = Pod("pod1__eth0", declaration(), None).lease4.reply_payload(codec.OFFER, request)
        frame = codec.build_frame("02:00:00:00:00:01", MAC, "10.244.1.1", "10.244.1.10", payload)
        assert codec.decode_message(codec.parse_frame(frame, dport=68)[3])["message_type"] == codec.OFFER
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "pyroute2")
        assert not loaded, loaded
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(paths.collections_root()), str(paths.TESTS_DIR)]))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)
