# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: DHCPv4 messages (RFC 2131, RFC 2132 options), and their framing.

Standard library only, like ``_dhcp6_codec``: the responder never imports pyroute2 (whose import
cost the daemon ~12 MB of RSS for ``dhcp4msg`` alone).

- ``encode_message`` / ``decode_message``: whole messages, options by pyroute2's names (the names
  and value types of the ``dhcp4msg`` this module used to wrap; the unit tests keep it as an
  oracle). Options longer than 255 bytes are split into consecutive instances and joined again
  when decoded (RFC 3396). ``decode_message`` raises ``ValueError`` and nothing else, whatever the
  input.
- ``scan_options`` / ``parse_request`` / ``patch_reply``: the responder's hot path (raw options,
  the fields of a request it acts on, a cached reply with the request's fields filled in).
- Options 119 (search list, RFC 3397) and 121/249 (classless static routes, RFC 3442): payloads
  built here, carried as raw bytes.
- ``build_frame`` / ``parse_frame``: Ethernet, IPv4 and UDP built by hand with checksums computed
  in software, because offloaded checksums make some clients (dhclient) drop offers.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from socket import AF_INET, inet_aton, inet_ntoa, inet_ntop, inet_pton

from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError


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

_RAW_OPTIONS = (OPT_SEARCH, OPT_CLASSLESS_ROUTES, OPT_MS_CLASSLESS_ROUTES)


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
    for route in routes or []:
        # Routes as _rundir._routes normalised them ("a.b.c.d/n", None or "a.b.c.d"): read by the same
        # rules (_fields) without ipaddress; anything else through normalise_routes, which names what is wrong.
        parts = fields.ipv4_network_parts(route.get("dst")) if isinstance(route, dict) else None
        gateway = route.get("gateway") or "0.0.0.0" if parts else None
        if parts is None or fields.ipv4_text(gateway) is None:
            return _encode_classless_routes(routes)
        network, prefixlen = parts
        out += bytes([prefixlen]) + network[:(prefixlen + 7) // 8] + inet_aton(gateway)
    return bytes(out)


def _encode_classless_routes(routes) -> bytes:
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
    """A validated ``dhcp_options`` (``_dhcp_options.validate_dhcp_options``) as (code, payload) pairs, in order."""
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
# The fixed part of a message (RFC 2131 section 2): op, htype, hlen, hops, xid, secs, flags, ciaddr,
# yiaddr, siaddr, giaddr, chaddr (16 bytes), sname (64), file (128), the magic cookie (RFC 2132 2).
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s4s")
MAGIC_COOKIE = b"c\x82Sc"
_ZERO_IP = b"\x00" * 4

# Option names as pyroute2 gave them (the IANA registry's, lower case): keys of decode_message's
# ``options`` and of encode_message's callers' expectations. A code without a name decodes as "option<N>".
_OPTION_NAMES = {
    1: "subnet_mask", 2: "time_offset", 3: "router", 4: "time_server", 5: "ien_name_server", 6: "name_server",
    7: "log_server", 8: "cookie_server", 9: "lpr_server", 10: "impress_server", 11: "resource_location_server",
    12: "host_name", 13: "boot_file_size", 14: "merit_dump_file", 15: "domain_name", 16: "swap_server",
    17: "root_path", 18: "extensions_path", 19: "ip_forwarding", 20: "non_local_source_routing",
    21: "policy_filter", 22: "max_datagram_reassembly", 23: "default_ttl", 24: "path_mtu_aging_timeout",
    25: "path_mtu_plateau_table", 26: "interface_mtu", 27: "all_subnets_local", 28: "broadcast_address",
    29: "perform_mask_discovery", 30: "mask_supplier", 31: "perform_router_discovery",
    32: "router_solicitation_address", 33: "static_route", 34: "trailer_encapsulation", 35: "arp_cache_timeout",
    36: "ethernet_encapsulation", 37: "tcp_default_ttl", 38: "tcp_keepalive_interval", 39: "tcp_keepalive_garbage",
    40: "nis_domain", 41: "nis_servers", 42: "ntp_servers", 43: "vendor_specific_information",
    44: "netbios_name_server", 45: "netbios_ddg_server", 46: "netbios_node_type", 47: "netbios_scope",
    48: "x_window_font_server", 49: "x_window_display_manager", 50: "requested_ip", 51: "lease_time",
    52: "option_overload", 53: "message_type", 54: "server_id", 55: "parameter_list", 56: "message",
    57: "max_msg_size", 58: "renewal_time", 59: "rebinding_time", 60: "vendor_id", 61: "client_id",
    62: "netware_ip_domain", 63: "netware_ip_option", 64: "nis_plus_domain", 65: "nis_plus_servers",
    66: "tftp_server_name", 67: "bootfile_name", 68: "mobile_ip_home_agent", 69: "smtp_server", 70: "pop3_server",
    71: "nntp_server", 72: "default_www_server", 73: "default_finger_server", 74: "default_irc_server",
    75: "streettalk_server", 76: "stda_server", 77: "user_class_information", 78: "slp_directory_agent",
    79: "slp_service_scope", 80: "rapid_commit", 81: "client_fqdn", 82: "relay_agent_information",
    83: "internet_storage_name_service", 85: "nds_servers", 86: "nds_tree_name", 87: "nds_context",
    88: "bcmcs_controller_domain", 89: "bcms_controller_ip", 90: "authentication", 91: "lq_client_last_transaction",
    92: "lq_associated_ip", 93: "client_system_architecture_type", 94: "client_network_interface_identifier",
    95: "ldap_servers", 97: "pxe_client_id", 98: "open_group_user_auth", 99: "geoconf_civic", 100: "posix_timezone",
    101: "tzdb_timezone", 108: "ipv6_only_preferred", 109: "dhcp4to6_s46_saddr", 112: "netinfo_parent_server_addr",
    113: "netinfo_parent_server_tag", 114: "dhcp_captive_portal", 116: "auto_configure", 117: "name_service_search",
    118: "subnet_selection", 119: "domain_search", 120: "sip_servers", 121: "classless_static_route",
    122: "cablelabs_client_config", 123: "geoconf", 124: "vendor_identifying_class", 125: "vendor_identifying_opts",
    128: "mcns_security_server", 136: "pana_agent", 137: "lost_server", 138: "capwap_ac_v4", 139: "mos_addr",
    140: "mos_fqdn", 141: "sip_ua_cs_domains", 142: "andsf_v4", 143: "sztp_redirect", 144: "geoloc",
    145: "forcerenew_nonce_capable", 146: "rdnss_selection", 147: "dots_reference_identifier", 148: "dots_addr",
    150: "tftp_server_addr", 151: "status_code", 152: "base_time", 153: "state_start_time", 154: "query_start_time",
    155: "query_end_time", 156: "dhcp_state", 157: "data_source", 158: "pcp_server", 159: "port_params",
    160: "old_captive_portal", 161: "mud_url", 162: "cisco_requested_host_name", 163: "cisco_last_transaction_time",
    185: "vpn_id", 208: "pxelinux_magic", 209: "pxelinux_config_file", 210: "pxelinux_path_prefix",
    211: "pxelinux_reboot_time", 212: "dhcp_6rd", 213: "access_domain_name", 220: "subnet_alloc",
    221: "virtual_subnet_selection", 249: "private_classic_route_ms", 251: "cisco_auto_configure",
    252: "private_proxy_autodiscovery",
}

# How option values are typed, as pyroute2's dhcp4msg typed them (decode_message keeps its values):
# "ip" an address, "ips" a list of them, "str" text, "u8", "bool", "u16", "u32", "s32" (lease times:
# signed in pyroute2), "type" the message type (1-8), "cid" the client identifier ({"type", "key"}).
# Any other code is "raw": a list of ints when decoded, bytes (or a list of ints) when encoded.
_KINDS = {}
for _kind, _codes in (
        ("ip", (1, 16, 28, 32, 50, 54, 118)),
        ("u32", (2, 24, 35, 38)),
        ("ips", (3, 4, 5, 6, 7, 8, 9, 10, 11, 41, 42, 44, 45, 48, 49, 85)),
        ("str", (12, 14, 15, 17, 18, 40, 43, 47, 56, 60, 66, 67)),
        ("u16", (13, 22, 26, 57)),
        ("bool", (19, 20, 27, 29, 30, 31, 34, 36, 39)),
        ("u8", (23, 37, 46, 52)),
        ("s32", (51, 58, 59)),
        ("type", (53,)),
        ("cid", (61,))):
    _KINDS.update(dict.fromkeys(_codes, _kind))
del _kind, _codes


def option_name(code: int) -> str:
    """The key of option ``code`` in decode_message's ``options``."""
    return _OPTION_NAMES.get(code) or f"option{code}"


def _encode_value(code: int, value) -> bytes:
    """An option's payload from its Python value, typed by ``_KINDS``."""
    kind = _KINDS.get(code, "raw")
    if kind == "ip":
        return inet_pton(AF_INET, value)
    if kind == "ips":
        return b"".join(inet_pton(AF_INET, address) for address in value)
    if kind == "str":
        return value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if kind in ("u8", "bool", "type"):
        return struct.pack("!B", int(value))
    if kind == "u16":
        return struct.pack("!H", value)
    if kind in ("u32", "s32"):
        # Negative values as pyroute2 sent them (signed), and the whole unsigned range too:
        # 0xFFFFFFFF is an infinite lease (RFC 2131 3.3).
        return struct.pack("!i" if value < 0 else "!I", value)
    if kind == "cid":
        key = value["key"]
        if value["type"] == 1:
            key = mac_bytes(key)
        return struct.pack("!B", value["type"]) + bytes(key)
    return bytes(value)


def _split_option(code: int, data: bytes) -> bytes:
    """RFC 3396: an option longer than 255 bytes is sent as consecutive instances."""
    if len(data) <= 255:
        return bytes((code, len(data))) + data
    out = bytearray()
    for start in range(0, len(data), 255):
        chunk = data[start:start + 255]
        out += bytes((code, len(chunk))) + chunk
    return bytes(out)


def encode_message(fields: dict, options: list[tuple[int, object]]) -> bytes:
    """Encode a BOOTP/DHCP message, padded to 300 bytes.

    ``fields``: op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr (a MAC),
    sname and file (bytes), as pyroute2 named them; op defaults to BOOTREPLY.
    ``options``: (code, value) pairs, the message type (53) first. Values are typed as pyroute2's
    ``dhcp4msg`` typed them (addresses and lists of addresses as text, times as ints, ...); bytes
    are sent as they are. On the wire: the message type, the typed options in the order given (a code
    given twice: its first place, its last value), then the bytes ones (and 119/121/249) in the order
    given, then END. An option longer than 255 bytes is split (RFC 3396).
    Raises ``ValueError``, ``TypeError``, ``KeyError`` or ``struct.error`` for a value of the wrong type.
    """
    get = fields.get
    chaddr = get("chaddr")
    chaddr = mac_bytes(chaddr) if chaddr is not None else b""
    if chaddr and len(chaddr) != 6:
        raise ValueError(f"chaddr {fields['chaddr']!r} is not a MAC address")
    sname, boot_file = get("sname") or b"", get("file") or b""
    out = bytearray(_HEADER.pack(
        get("op", BOOTREPLY), get("htype", 1), get("hlen", 6), get("hops", 0), get("xid", 0), get("secs", 0),
        get("flags", 0), _address(get("ciaddr")), _address(get("yiaddr")), _address(get("siaddr")),
        _address(get("giaddr")), chaddr, sname.encode("utf-8") if isinstance(sname, str) else sname,
        boot_file.encode("utf-8") if isinstance(boot_file, str) else boot_file, MAGIC_COOKIE))
    typed: dict = {}
    raw = bytearray()
    for code, value in options:
        if code in _RAW_OPTIONS or (isinstance(value, bytes) and code not in (OPT_HOSTNAME, OPT_DOMAIN_NAME)):
            raw += _split_option(code, bytes(value))
        else:
            typed[code] = value
    mtype = typed.pop(OPT_MESSAGE_TYPE, None)
    if mtype is None:
        if typed:
            raise ValueError("no message type (option 53)")
        mtype = DISCOVER
    out += bytes((OPT_MESSAGE_TYPE, 1, int(mtype)))
    for code, value in typed.items():
        out += _split_option(code, _encode_value(code, value))
    out += raw
    out.append(255)
    if len(out) < BOOTP_MIN_LEN:
        out += bytes(BOOTP_MIN_LEN - len(out))
    return bytes(out)


def _address(value) -> bytes:
    return _ZERO_IP if value is None else inet_pton(AF_INET, value)


def content_length(payload: bytes) -> int:
    """Bytes of a message from ``encode_message`` up to its END option, without the padding after it."""
    return len(payload.rstrip(b"\x00"))


class _Stop(Exception):
    """An option whose payload does not fit its type: decoding stops there, as pyroute2's did."""


def _decode_value(kind: str, data: bytes):
    if kind == "raw":
        return list(data)
    if kind == "str":
        try:
            return data.decode("utf-8").rstrip("\x00")
        except UnicodeDecodeError:
            return list(data)
    if kind == "ips":
        return [inet_ntop(AF_INET, data[i:i + 4]) for i in range(0, len(data) - 3, 4)]
    if kind == "cid":
        if not data:
            raise ValueError("empty client identifier")
        if data[0] == 1:
            if len(data) != 7:
                raise _Stop
            return {"type": 1, "key": data[1:].hex(":")}
        return {"type": data[0], "key": data[1:]}
    size = 4 if kind in ("ip", "u32", "s32") else 2 if kind == "u16" else 1
    if len(data) != size:
        raise _Stop
    if kind == "ip":
        return inet_ntop(AF_INET, data)
    if kind == "u32":
        return struct.unpack("!I", data)[0]
    if kind == "s32":
        return struct.unpack("!i", data)[0]
    if kind == "u16":
        return struct.unpack("!H", data)[0]
    if kind == "bool":
        return bool(data[0])
    if kind == "type" and data[0] not in MESSAGE_NAMES:
        raise _Stop
    return data[0]


def decode_message(payload: bytes) -> dict:
    """Decode a DHCP message into a dict; raises ``ValueError`` for anything malformed, and nothing else.

    Returns op, xid, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, message_type and ``options``
    {name: value} (names and values as pyroute2's ``dhcp4msg`` gave them, ``option_name``; 119, 121
    and 249 as lists of ints). An option repeated is one option, its instances joined (RFC 3396).
    As pyroute2 did, decoding stops (keeping what came before) at an option that overruns the
    message or whose length does not fit its type; a message without END is not refused.
    """
    try:
        if len(payload) < 240 or payload[236:240] != MAGIC_COOKIE:
            raise ValueError("not a DHCP message")
        if payload[1] != 1 or payload[2] != 6:
            raise ValueError("not an Ethernet DHCP message")
        (op, _htype, _hlen, _hops, xid, _secs, flags, ciaddr, yiaddr, siaddr, giaddr,
         chaddr, _sname, _file, _cookie) = _HEADER.unpack_from(payload)
        raw: dict[int, list] = {}
        pos, end = 240, len(payload)
        while pos < end:
            code = payload[pos]
            if code == 0:
                pos += 1
                continue
            if code == 255 or pos + 1 >= end:
                break
            length = payload[pos + 1]
            if pos + 2 + length > end:
                break
            if code in raw:
                raw[code].append(payload[pos + 2:pos + 2 + length])
            else:
                raw[code] = [payload[pos + 2:pos + 2 + length]]
            pos += 2 + length
        options = {}
        for code, chunks in raw.items():
            try:
                options[option_name(code)] = _decode_value(_KINDS.get(code, "raw"), b"".join(chunks))
            except _Stop:
                break
    except ValueError:
        raise
    except Exception as exc:  # a bug here must not take the caller down on a hostile frame
        raise ValueError(f"undecodable DHCP message: {exc!r}") from None
    mtype = options.get("message_type")
    if mtype is None:
        raise ValueError("no valid message type")
    return {"op": op, "xid": xid, "flags": flags, "ciaddr": inet_ntoa(ciaddr), "yiaddr": inet_ntoa(yiaddr),
            "siaddr": inet_ntoa(siaddr), "giaddr": inet_ntoa(giaddr), "chaddr": chaddr[:6].hex(":"),
            "options": options, "message_type": mtype}


# -- framing ----------------------------------------------------------------------------
def inet_checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of the 16-bit words.

    As one integer the data is the sum of its words times powers of 2**16, and 2**16 is 1 modulo
    0xFFFF, so the folded sum is that integer modulo 0xFFFF, except that a non-zero sum folds to
    0xFFFF, not 0 (ones' complement "negative zero"). ``int.from_bytes`` and one modulo run in C:
    ~10x faster than summing unpacked words for a DHCP reply.
    """
    if len(data) % 2:
        data += b"\x00"
    value = int.from_bytes(data, "big")
    total = (value - 1) % 0xFFFF + 1 if value else 0
    return ~total & 0xFFFF


@functools.lru_cache(maxsize=1024)
def mac_bytes(mac: str) -> bytes:
    """``"0a:58:..."`` -> 6 bytes; cached: a reply's two MACs are the same few strings again and again."""
    return bytes.fromhex(mac.replace(":", ""))


# Ethernet (dst, src, type), IPv4 (version/IHL, TOS, length, id, fragment, TTL, protocol, checksum,
# src, dst), UDP (ports, length, checksum): one pack for the three headers.
_FRAME_HEADERS = struct.Struct("!6s6sH BBHHHBBH4s4s HHHH")
_TTL_PROTO = 64 << 8 | IPPROTO_UDP


def _folded(value: int) -> int:
    """The checksum of data whose 16-bit words, as even-length parts, add up to ``value`` (> 0): see inet_checksum."""
    return ~((value - 1) % 0xFFFF + 1) & 0xFFFF


def build_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, payload: bytes,
                sport: int = SERVER_PORT, dport: int = CLIENT_PORT, ip_id: int = 0) -> bytes:
    """Ethernet + IPv4 + UDP around ``payload``, both checksums computed here.

    The checksums add the headers' fields and the payload as integers (each even-length part's
    value is its words' sum modulo 0xFFFF), so nothing is concatenated or packed twice.
    """
    src, dst = inet_aton(src_ip), inet_aton(dst_ip)  # hot path: ipaddress is ~10x slower
    udp_len = 8 + len(payload)
    addresses = int.from_bytes(src, "big") + int.from_bytes(dst, "big")
    data = int.from_bytes(payload, "big") << 8 if len(payload) % 2 else int.from_bytes(payload, "big")
    # Pseudo header (addresses, protocol, UDP length), then the UDP header with checksum 0.
    udp_sum = _folded(addresses + IPPROTO_UDP + udp_len + (sport << 48 | dport << 32 | udp_len << 16) + data)
    ip_id &= 0xFFFF
    ip_sum = _folded(0x4510 + 20 + udp_len + ip_id + _TTL_PROTO + addresses)
    return _FRAME_HEADERS.pack(mac_bytes(dst_mac), mac_bytes(src_mac), ETH_P_IP,
                               0x45, 0x10, 20 + udp_len, ip_id, 0, 64, IPPROTO_UDP, ip_sum, src, dst,
                               sport, dport, udp_len, udp_sum or 0xFFFF) + payload  # UDP: 0 means "no checksum"


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

    The responder's hot path: it needs four options of each request, not the typed values of
    ``decode_message`` (the unit tests check both agree). Raises ``ValueError`` on a truncated
    option or a missing END.
    """
    if len(payload) < 240 or payload[236:240] != b"c\x82Sc":
        raise ValueError("not a DHCP message")
    options: dict[int, bytes] = {}
    repeated: dict[int, bytearray] = {}  # joined once: no quadratic copying for a hostile message
    pos, end = 240, len(payload)
    while pos < end:
        code = payload[pos]
        if code == 0:
            pos += 1
            continue
        if code == 255:
            for code, data in repeated.items():
                options[code] = bytes(data)
            return options
        if pos + 1 >= end:
            raise ValueError("truncated option")
        length = payload[pos + 1]
        if pos + 2 + length > end:
            raise ValueError(f"option {code} overruns the message")
        if code in repeated:
            repeated[code] += payload[pos + 2:pos + 2 + length]
        elif code in options:
            repeated[code] = bytearray(options[code]) + payload[pos + 2:pos + 2 + length]
        else:
            options[code] = payload[pos + 2:pos + 2 + length]
        pos += 2 + length
    raise ValueError("no END option")


# op, htype, hlen, (hops), xid, (secs), flags, ciaddr, (yiaddr, siaddr), giaddr, chaddr's first 6 bytes.
_REQUEST_FIELDS = struct.Struct("!BBBxIxxH4s8x4s6s")


def parse_request(payload: bytes) -> dict:
    """The fields of a client message the responder acts on; ``ValueError`` if malformed."""
    if len(payload) < 240:
        raise ValueError("short message")
    op, htype, hlen, xid, flags, ciaddr, giaddr, chaddr = _REQUEST_FIELDS.unpack_from(payload)
    if op != BOOTREQUEST or htype != 1 or hlen != 6:
        raise ValueError("not an Ethernet BOOTREQUEST")
    options = scan_options(payload)
    mtype = options.get(OPT_MESSAGE_TYPE, b"")
    if len(mtype) != 1 or mtype[0] not in MESSAGE_NAMES:
        raise ValueError("no valid message type")
    result = {
        "op": op,
        "xid": xid,
        "flags": flags,
        "ciaddr": "0.0.0.0" if ciaddr == _ZERO_IP else inet_ntoa(ciaddr),
        "giaddr": "0.0.0.0" if giaddr == _ZERO_IP else inet_ntoa(giaddr),
        "chaddr": chaddr.hex(":"),
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
