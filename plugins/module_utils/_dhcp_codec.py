# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: DHCPv4 messages on top of ``pyroute2.dhcp``, and their framing.

pyroute2's ``dhcp4msg`` knows the RFC 2132 options but silently drops 119 (search list,
RFC 3397), 121 (classless static routes, RFC 3442) and 249 (the same, for older Windows),
so ``_message_class()`` extends its option table; their payloads are built here. Frames
(Ethernet, IPv4, UDP) are built by hand with checksums computed in software, because
offloaded checksums make some clients (dhclient) drop offers.
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import struct
from socket import inet_aton, inet_ntoa

from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

# Imported on first use (_message_class): importing pyroute2 costs ~0.3 s, and the modules
# that only validate declarations never build a message.
HAS_PYROUTE2 = importlib.util.find_spec("pyroute2") is not None

# Message types (RFC 2132 option 53).
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)
MESSAGE_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK",
                 7: "RELEASE", 8: "INFORM"}

# Option codes used by the responder.
OPT_SUBNET_MASK = 1
OPT_ROUTER = 3
OPT_DNS = 6
OPT_HOSTNAME = 12
OPT_DOMAIN_NAME = 15
OPT_MTU = 26
OPT_NTP_SERVERS = 42
OPT_TFTP_SERVER_NAME = 66
OPT_BOOTFILE_NAME = 67
OPT_REQUESTED_IP = 50
OPT_LEASE_TIME = 51
OPT_MESSAGE_TYPE = 53
OPT_SERVER_ID = 54
OPT_PARAMETER_LIST = 55
OPT_MAX_MESSAGE_SIZE = 57
OPT_MESSAGE = 56
OPT_RENEWAL_TIME = 58
OPT_REBINDING_TIME = 59
OPT_SEARCH = 119
OPT_CLASSLESS_ROUTES = 121
OPT_MS_CLASSLESS_ROUTES = 249

BOOTREQUEST, BOOTREPLY = 1, 2
BROADCAST_FLAG = 0x8000
BOOTP_MIN_LEN = 300  # RFC 951/1542: some clients ignore shorter replies
ETH_P_IP = 0x0800
IPPROTO_UDP = 17
SERVER_PORT, CLIENT_PORT = 67, 68
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
BROADCAST_IP = "255.255.255.255"

# pyroute2 option names for the standard options, and names for the ones we add.
_NAMES = {
    OPT_SUBNET_MASK: "subnet_mask", OPT_ROUTER: "router", OPT_DNS: "name_server",
    OPT_HOSTNAME: "host_name", OPT_DOMAIN_NAME: "domain_name", OPT_MTU: "interface_mtu",
    OPT_REQUESTED_IP: "requested_ip", OPT_LEASE_TIME: "lease_time", OPT_SERVER_ID: "server_id",
    OPT_PARAMETER_LIST: "parameter_list", OPT_MESSAGE: "message", OPT_RENEWAL_TIME: "renewal_time",
    OPT_REBINDING_TIME: "rebinding_time", OPT_SEARCH: "domain_search",
    OPT_CLASSLESS_ROUTES: "classless_static_route", OPT_MS_CLASSLESS_ROUTES: "private_classic_route_ms",
}
_RAW_OPTIONS = (OPT_SEARCH, OPT_CLASSLESS_ROUTES, OPT_MS_CLASSLESS_ROUTES)


@functools.lru_cache(maxsize=None)
def _message_class():
    """pyroute2's ``dhcp4msg`` with 119/121/249 in its option table (as raw bytes, encoded here)."""
    from pyroute2.dhcp.dhcp4msg import dhcp4msg
    from pyroute2.dhcp.enums.dhcp import Option

    class PodnetDhcpMessage(dhcp4msg):
        options = dhcp4msg.options + tuple((Option(code), "array8") for code in _RAW_OPTIONS)

    return PodnetDhcpMessage


# -- option 119: RFC 1035 names, RFC 3397 compression ------------------------------------
MAX_SEARCH_BYTES = 255 * 4  # four option instances (RFC 3396)


def validate_search_domains(domains) -> list[str]:
    """Check a search list and return it normalised (lower case, no trailing dots).

    Each name is checked by ``_fields.domain_name``; the list must also fit the option.
    Raises ``PodnetError`` naming every bad entry, so a bad list fails when the lease is
    declared, never when a reply is built.
    """
    errors: list[str] = []
    if isinstance(domains, str):
        errors.append("search_domains: must be a list of domain names, got a string")
        domains = None
    result = fields.string_list(domains, "search_domains", errors, fields.domain_name)
    if not errors and len(encode_search_domains(result, validate=False)) > MAX_SEARCH_BYTES:
        errors.append(f"search_domains: the encoded list is longer than {MAX_SEARCH_BYTES} bytes")
    if errors:
        raise PodnetError("invalid search_domains: " + "; ".join(errors), errors=errors)
    return result


def encode_search_domains(domains, validate: bool = True) -> bytes:
    """RFC 1035 wire names with RFC 3397 compression (pointers into the option data)."""
    if validate:
        domains = validate_search_domains(domains)
    out = bytearray()
    suffixes: dict[tuple[str, ...], int] = {}
    for name in domains:
        labels = tuple(name.split("."))
        for i in range(len(labels)):
            suffix = labels[i:]
            if suffix in suffixes:
                out += struct.pack("!H", 0xC000 | suffixes[suffix])
                break
            if len(out) < 0x3FFF:
                suffixes[suffix] = len(out)
            out += bytes([len(labels[i])]) + labels[i].encode("ascii")
        else:
            out += b"\x00"
    return bytes(out)


def decode_search_domains(data: bytes) -> list[str]:
    """Inverse of ``encode_search_domains`` (follows compression pointers, refuses loops)."""
    names = []
    pos = 0
    while pos < len(data):
        labels = []
        cursor, jumps, end = pos, 0, None
        while True:
            if cursor >= len(data):
                raise ValueError("truncated name")
            length = data[cursor]
            if length & 0xC0 == 0xC0:
                if cursor + 1 >= len(data):
                    raise ValueError("truncated pointer")
                if end is None:
                    end = cursor + 2
                cursor = ((length & 0x3F) << 8) | data[cursor + 1]
                jumps += 1
                if jumps > 64:
                    raise ValueError("pointer loop")
                continue
            if length & 0xC0:
                raise ValueError("bad label type")
            if length == 0:
                if end is None:
                    end = cursor + 1
                break
            labels.append(data[cursor + 1:cursor + 1 + length].decode("ascii"))
            cursor += 1 + length
        names.append(".".join(labels))
        pos = end
    return names


# -- options 121/249: RFC 3442 classless static routes -------------------------------------
def normalise_routes(routes) -> list[tuple[ipaddress.IPv4Network, str]]:
    """``[{"dst": "10.0.0.0/24", "gateway": None|"a.b.c.d"}]`` -> [(network, gateway)]."""
    result = []
    for index, route in enumerate(routes or []):
        try:
            dst = ipaddress.IPv4Network(route["dst"], strict=False)
            gateway = str(ipaddress.IPv4Address(route.get("gateway") or "0.0.0.0"))
        except (KeyError, TypeError, ValueError) as exc:
            raise PodnetError(f"routes[{index}]: {route!r} is not a route ({exc})", route=route) from None
        result.append((dst, gateway))
    return result


def encode_classless_routes(routes) -> bytes:
    """RFC 3442: width, the significant octets of the destination, the router (0.0.0.0: on-link)."""
    out = bytearray()
    for dst, gateway in normalise_routes(routes):
        significant = (dst.prefixlen + 7) // 8
        out += bytes([dst.prefixlen]) + dst.network_address.packed[:significant]
        out += ipaddress.IPv4Address(gateway).packed
    return bytes(out)


def decode_classless_routes(data: bytes) -> list[dict]:
    routes = []
    pos = 0
    while pos < len(data):
        width = data[pos]
        if width > 32:
            raise ValueError("prefix longer than 32")
        significant = (width + 7) // 8
        if pos + 1 + significant + 4 > len(data):
            raise ValueError("truncated route")
        dst = data[pos + 1:pos + 1 + significant] + b"\x00" * (4 - significant)
        router = data[pos + 1 + significant:pos + 5 + significant]
        gateway = str(ipaddress.IPv4Address(router))
        routes.append({"dst": f"{ipaddress.IPv4Address(dst)}/{width}",
                       "gateway": None if gateway == "0.0.0.0" else gateway})
        pos += 5 + significant
    return routes


# -- KubeVirt's dhcpOptions: options 66, 67, 42 and 224-254 -------------------------------
BOOTP_SNAME_LEN, BOOTP_FILE_LEN = 64, 128  # header fields, NUL-terminated


def encode_dhcp_options(options) -> list[tuple[int, bytes]]:
    """A validated ``dhcp_options`` (``_spec.validate_dhcp_options``) as (code, payload) pairs, in order."""
    options = options or {}
    out = []
    for key, code in (("tftp_server_name", OPT_TFTP_SERVER_NAME), ("boot_file_name", OPT_BOOTFILE_NAME)):
        if options.get(key):
            out.append((code, options[key].encode("utf-8")))
    if options.get("ntp_servers"):
        out.append((OPT_NTP_SERVERS, b"".join(inet_aton(a) for a in options["ntp_servers"])))
    out.extend((item["option"], item["value"].encode("utf-8")) for item in options.get("private_options") or ())
    return out


def boot_header_fields(options) -> dict:
    """The BOOTP header fields ISC dhcpd and dnsmasq fill for network boot, which PXE ROMs read rather
    than options 66/67: ``file`` (the boot file name), ``sname`` (the TFTP server name) when each fits
    its field, and ``siaddr`` (next server) when the TFTP server name is an IPv4 address."""
    options = options or {}
    out = {}
    boot = (options.get("boot_file_name") or "").encode("utf-8")
    server = options.get("tftp_server_name") or ""
    if 0 < len(boot) < BOOTP_FILE_LEN:
        out["file"] = boot
    if 0 < len(server.encode("utf-8")) < BOOTP_SNAME_LEN:
        out["sname"] = server.encode("utf-8")
    try:
        out["siaddr"] = str(ipaddress.IPv4Address(server))
    except ValueError:
        pass
    return out


def option_size(data: bytes) -> int:
    """Bytes a raw option takes in a message (code and length per instance, RFC 3396)."""
    return len(data) + 2 * max(1, -(-len(data) // 255))


# -- messages ---------------------------------------------------------------------------
def _split_option(code: int, data: bytes) -> bytes:
    """RFC 3396: an option longer than 255 bytes is sent as consecutive instances."""
    out = bytearray()
    for start in range(0, max(len(data), 1), 255):
        chunk = data[start:start + 255]
        out += bytes([code, len(chunk)]) + chunk
    return bytes(out)


def encode_message(fields: dict, options: list[tuple[int, object]]) -> bytes:
    """Encode a BOOTP/DHCP message, options in the given order, padded to 300 bytes.

    ``fields``: op, xid, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr (pyroute2 names).
    ``options``: (code, value) pairs; message type first. Values for 119/121/249 are bytes.
    """
    content = {"op": BOOTREPLY, "htype": 1, "hlen": 6, "hops": 0, "xid": 0, "secs": 0, "flags": 0,
               "ciaddr": "0.0.0.0", "yiaddr": "0.0.0.0", "siaddr": "0.0.0.0", "giaddr": "0.0.0.0",
               "sname": b"", "file": b""}
    content.update(fields)
    standard = {}
    raw = bytearray()
    for code, value in options:
        if code in _RAW_OPTIONS or (isinstance(value, bytes) and code not in (OPT_HOSTNAME, OPT_DOMAIN_NAME)):
            raw += _split_option(code, bytes(value))
        elif code == OPT_MESSAGE_TYPE:
            standard["message_type"] = value
        else:
            standard[_NAMES[code]] = value
    msg = _message_class()(content)
    msg["options"] = standard
    buf = msg.encode().buf
    if raw:
        # pyroute2 ends with END (255); the long options go right before it.
        buf = buf[:-1] + bytes(raw) + b"\xff"
    if len(buf) < BOOTP_MIN_LEN:
        buf += b"\x00" * (BOOTP_MIN_LEN - len(buf))
    return buf


def content_length(payload: bytes) -> int:
    """Bytes of a message from ``encode_message`` up to its END option, without the padding after it."""
    return len(payload.rstrip(b"\x00"))


def decode_message(payload: bytes) -> dict:
    """Decode a DHCP message into a dict; raises ``ValueError`` for anything malformed.

    Returns op, xid, flags, ciaddr, yiaddr, giaddr, chaddr and ``options`` (pyroute2 names)
    plus ``raw_options`` {code: bytes} for the codes this module handles itself.
    """
    if len(payload) < 240 or payload[236:240] != b"c\x82Sc":
        raise ValueError("not a DHCP message")
    if payload[1] != 1 or payload[2] != 6:
        raise ValueError("not an Ethernet DHCP message")
    try:
        msg = _message_class()(buf=payload).decode()
    except Exception as exc:  # pyroute2 raises struct.error, ValueError, KeyError...
        raise ValueError(f"undecodable DHCP message: {exc}") from None
    result = {key: msg.get(key) for key in ("op", "xid", "flags", "ciaddr", "yiaddr", "siaddr", "giaddr", "chaddr")}
    result["options"] = dict(msg.get("options") or {})
    mtype = result["options"].get("message_type")
    if mtype is None or int(mtype) not in MESSAGE_NAMES:
        raise ValueError("no valid message type")
    result["message_type"] = int(mtype)
    return result


# -- framing ----------------------------------------------------------------------------
def inet_checksum(data: bytes) -> int:
    """RFC 1071 ones' complement sum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def build_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, payload: bytes,
                sport: int = SERVER_PORT, dport: int = CLIENT_PORT, ip_id: int = 0) -> bytes:
    """Ethernet + IPv4 + UDP around ``payload``, both checksums computed here."""
    src, dst = inet_aton(src_ip), inet_aton(dst_ip)  # hot path: ipaddress is ~10x slower
    udp_len = 8 + len(payload)
    pseudo = src + dst + struct.pack("!BBH", 0, IPPROTO_UDP, udp_len)
    udp_header = struct.pack("!HHHH", sport, dport, udp_len, 0)
    udp_sum = inet_checksum(pseudo + udp_header + payload) or 0xFFFF  # 0 means "no checksum"
    udp_header = struct.pack("!HHHH", sport, dport, udp_len, udp_sum)
    ip_header = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + udp_len, ip_id & 0xFFFF, 0, 64,
                            IPPROTO_UDP, 0, src, dst)
    ip_header = ip_header[:10] + struct.pack("!H", inet_checksum(ip_header)) + ip_header[12:]
    eth = mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETH_P_IP)
    return eth + ip_header + udp_header + payload


def parse_frame(frame: bytes, dport: int = SERVER_PORT):
    """Return (src_mac, src_ip, dst_ip, udp_payload) of an IPv4/UDP frame to ``dport``, else None.

    The UDP checksum is not verified: a VM's kernel may hand over partially offloaded
    checksums, and a damaged DHCP body fails decoding anyway.
    """
    if len(frame) < 42 or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14] >> 4 != 4 or ihl < 20 or frame[23] != IPPROTO_UDP:
        return None
    if struct.unpack("!H", frame[20:22])[0] & 0x3FFF:  # fragments: DHCP never needs them
        return None
    total = struct.unpack("!H", frame[16:18])[0]
    if total < ihl + 8 or 14 + total > len(frame):
        return None
    udp = 14 + ihl
    sport, uport, ulen = struct.unpack("!HHH", frame[udp:udp + 6])
    if uport != dport or ulen < 8 or udp + ulen > 14 + total:
        return None
    src_mac = frame[6:12].hex(":")
    src_ip = inet_ntoa(frame[26:30])
    dst_ip = inet_ntoa(frame[30:34])
    return src_mac, src_ip, dst_ip, frame[udp + 8:udp + ulen]


def reply_destination(request: dict, reply_type: int, client_mac: str, yiaddr: str) -> tuple[str, str]:
    """(dst MAC, dst IP) for a reply, per RFC 2131 4.1 with giaddr 0 (we never relay).

    NAK: broadcast. ciaddr set (renewing, rebinding, inform): unicast to ciaddr. Broadcast
    flag: broadcast. Otherwise unicast to the client's hardware address and yiaddr.
    """
    ciaddr = request.get("ciaddr") or "0.0.0.0"
    if reply_type == NAK:
        return BROADCAST_MAC, BROADCAST_IP
    if ciaddr != "0.0.0.0":
        return client_mac, ciaddr
    if (request.get("flags") or 0) & BROADCAST_FLAG:
        return BROADCAST_MAC, BROADCAST_IP
    return client_mac, yiaddr


def scan_options(payload: bytes) -> dict:
    """Walk the options of a DHCP message: {code: bytes}, repeated options concatenated (RFC 3396).

    The responder's hot path: it needs four options of each request, and pyroute2's full
    decode costs ~0.2 ms a message (the unit tests check both agree). Raises ``ValueError``
    on a truncated option or a missing END.
    """
    if len(payload) < 240 or payload[236:240] != b"c\x82Sc":
        raise ValueError("not a DHCP message")
    options: dict[int, bytes] = {}
    pos, end = 240, len(payload)
    while pos < end:
        code = payload[pos]
        if code == 0:
            pos += 1
            continue
        if code == 255:
            return options
        if pos + 1 >= end:
            raise ValueError("truncated option")
        length = payload[pos + 1]
        if pos + 2 + length > end:
            raise ValueError(f"option {code} overruns the message")
        options[code] = options.get(code, b"") + payload[pos + 2:pos + 2 + length]
        pos += 2 + length
    raise ValueError("no END option")


def parse_request(payload: bytes) -> dict:
    """The fields of a client message the responder acts on; ``ValueError`` if malformed."""
    if len(payload) < 240:
        raise ValueError("short message")
    op, htype, hlen = payload[0], payload[1], payload[2]
    if op != BOOTREQUEST or htype != 1 or hlen != 6:
        raise ValueError("not an Ethernet BOOTREQUEST")
    options = scan_options(payload)
    mtype = options.get(OPT_MESSAGE_TYPE, b"")
    if len(mtype) != 1 or mtype[0] not in MESSAGE_NAMES:
        raise ValueError("no valid message type")
    result = {
        "op": op,
        "xid": struct.unpack("!I", payload[4:8])[0],
        "flags": struct.unpack("!H", payload[10:12])[0],
        "ciaddr": inet_ntoa(payload[12:16]),
        "giaddr": inet_ntoa(payload[24:28]),
        "chaddr": payload[28:34].hex(":"),
        "message_type": mtype[0],
        "requested_ip": None,
        "server_id": None,
        "parameter_list": list(options.get(OPT_PARAMETER_LIST, b"")),
        "max_message_size": None,
    }
    size = options.get(OPT_MAX_MESSAGE_SIZE)
    if size is not None and len(size) == 2:
        result["max_message_size"] = struct.unpack("!H", size)[0]
    for code, name in ((OPT_REQUESTED_IP, "requested_ip"), (OPT_SERVER_ID, "server_id")):
        value = options.get(code)
        if value is not None:
            if len(value) != 4:
                raise ValueError(f"option {code} is not an IPv4 address")
            result[name] = inet_ntoa(value)
    return result


def patch_reply(template: bytes, xid: int, flags: int, ciaddr: str) -> bytes:
    """Fill the per-request fields into a cached reply built by ``encode_message``."""
    return (template[:4] + struct.pack("!IHH", xid, 0, flags & BROADCAST_FLAG)
            + inet_aton(ciaddr) + template[16:])
