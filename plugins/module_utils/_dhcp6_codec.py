# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: DHCPv6 (RFC 8415) and Router Advertisements (RFC 4861) for a VM's IPv6.

The IPv6 half of delegation (issue 12), standard library only and free of I/O:

- ``decode_message`` / ``parse_client_message`` / ``encode_message`` and the option builders:
  DHCPv6 messages. Decoding is bounded and checks every length; whatever the input, it
  returns or raises ``Dhcp6CodecError`` (a ``ValueError``), nothing else.
- ``parse_duid``, ``duid_mac``, ``server_duid``: DUIDs (RFC 8415 section 11, RFC 6355).
- ``normalise_lease``, ``answer`` / ``reply_for``: the server, a pure function of one client
  message, the lease, the server DUID and the frame's source MAC. It keeps no state: every
  IA_NA of the VM is bound to the one lease address.
- ``build_udp6_frame`` / ``parse_udp6_frame``: Ethernet + IPv6 + UDP for a packet socket,
  checksums in software (as ``_dhcp_codec`` does for IPv4).
- ``build_router_advertisement`` / ``parse_router_solicitation``: the RA that sends the VM
  to DHCPv6 (M and O set, no SLAAC) and gives it the default route.

Decisions (RFC 8415 leaves them to the server):

- Server DUID: DUID-LL (type 3, hardware type 1) whose address is a locally administered
  unicast MAC taken from SHA-256 of a fixed key and a stable node value (``/etc/machine-id``'s
  bytes, passed in). DUID-EN would need an IANA enterprise number, which the project has not;
  DUID-LLT would need the time of first use stored somewhere. Hashing keeps the machine id off
  the wire (machine-id(5) asks for that). Every pod of a node gets the same DUID, across
  restarts; a VM moved to another node fails its Renew (foreign Server ID, ignored) and Rebinds.
- DNS servers (23) and the domain list (24) are sent whenever configured, in every reply
  that carries configuration, whether or not the client's ORO asks for them (RFC 8415 21.7
  allows it; some clients send no ORO in Request).
- ADVERTISE carries PREFERENCE 255, so clients request at once instead of waiting for
  other servers (RFC 8415 18.2.1): the responder is the only server on the tap.
- Replies fit the link MTU: the first IA_NA, the configuration, then the other IAs as they fit
  (``_within``); an IAID repeated within its type is answered once (RFC 8415 21.4).
- IA_TA is answered NoAddrsAvail and IA_PD NoPrefixAvail; in Renew and Rebind any
  address or prefix the client holds there, or any address in an IA_NA that is not the
  lease address, comes back with lifetimes 0 so the client drops it.
- Messages to our unicast address are answered like multicast ones (we never send Server
  Unicast, so only a misbehaving client unicasts; answering is harmless).
- Release and Decline are answered Success without per-IA NoBinding: there is no binding
  state to consult. ``answer()`` reports a Decline so the caller can log it.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import namedtuple
from socket import AF_INET6, inet_ntop, inet_pton

from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_codec import inet_checksum
from ansible_collections.virtnet.podnet.plugins.module_utils._digest import sha256
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError


class Dhcp6CodecError(ValueError):
    """The one error the decoders raise: the input is not a well-formed message (or DUID)."""


# -- constants ----------------------------------------------------------------------------
# Message types (RFC 8415 section 7.3).
SOLICIT, ADVERTISE, REQUEST, CONFIRM, RENEW, REBIND, REPLY, RELEASE, DECLINE = range(1, 10)
RECONFIGURE, INFORMATION_REQUEST, RELAY_FORW, RELAY_REPL = 10, 11, 12, 13
MESSAGE_NAMES = {1: "SOLICIT", 2: "ADVERTISE", 3: "REQUEST", 4: "CONFIRM", 5: "RENEW", 6: "REBIND",
                 7: "REPLY", 8: "RELEASE", 9: "DECLINE", 10: "RECONFIGURE", 11: "INFORMATION-REQUEST",
                 12: "RELAY-FORW", 13: "RELAY-REPL"}

# Option codes (RFC 8415 section 21, RFC 3646).
OPT_CLIENTID = 1
OPT_SERVERID = 2
OPT_IA_NA = 3
OPT_IA_TA = 4
OPT_IAADDR = 5
OPT_ORO = 6
OPT_PREFERENCE = 7
OPT_ELAPSED_TIME = 8
OPT_STATUS_CODE = 13
OPT_RAPID_COMMIT = 14
OPT_DNS_SERVERS = 23
OPT_DOMAIN_LIST = 24
OPT_IA_PD = 25
OPT_IAPREFIX = 26
OPT_INFORMATION_REFRESH_TIME = 32
OPT_SOL_MAX_RT = 82

# Status codes (RFC 8415 section 21.13).
SUCCESS, UNSPEC_FAIL, NO_ADDRS_AVAIL, NO_BINDING, NOT_ON_LINK, USE_MULTICAST, NO_PREFIX_AVAIL = range(7)

# DUID types (RFC 8415 section 11, RFC 6355) and the one hardware type we know.
DUID_LLT, DUID_EN, DUID_LL, DUID_UUID = 1, 2, 3, 4
HWTYPE_ETHERNET = 1
DUID_MAX = 130  # type code + at most 128 bytes (RFC 8415 11.1)

INFINITY = 0xFFFFFFFF
SERVER_PORT, CLIENT_PORT = 547, 546
ALL_DHCP_AGENTS = "ff02::1:2"
ALL_NODES = "ff02::1"
ETH_P_IPV6 = 0x86DD
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
ICMPV6_RS, ICMPV6_RA = 133, 134
ND_OPT_SLLA, ND_OPT_PREFIX, ND_OPT_MTU = 1, 3, 5

MAX_MESSAGE = 65535 - 8  # a UDP payload
IPV6_MIN_MTU = 1280  # every IPv6 link carries it (RFC 8200 5): the MTU of a reply when none is given
UDP6_HEADERS = 40 + 8  # what a reply's IPv6 and UDP headers take of the link MTU
MAX_OPTIONS = 1024  # per level; a real client sends a dozen
_EXTENSION_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options: skipped
MAX_EXTENSION_HEADERS = 8
_ALL_DHCP_PACKED = inet_pton(AF_INET6, ALL_DHCP_AGENTS)
_UNSPECIFIED = bytes(16)


# -- options ------------------------------------------------------------------------------
def decode_options(data: bytes) -> list[tuple[int, bytes]]:
    """Split option TLVs (2-byte code, 2-byte length): [(code, value)]; every length checked."""
    options = []
    pos, end = 0, len(data)
    while pos < end:
        if pos + 4 > end:
            raise Dhcp6CodecError("truncated option header")
        code, length = struct.unpack_from("!HH", data, pos)
        if pos + 4 + length > end:
            raise Dhcp6CodecError(f"option {code} overruns its container ({length} bytes)")
        options.append((code, bytes(data[pos + 4:pos + 4 + length])))
        if len(options) > MAX_OPTIONS:
            raise Dhcp6CodecError("too many options")
        pos += 4 + length
    return options


def option(code: int, data: bytes = b"") -> bytes:
    """One option TLV."""
    if len(data) > 0xFFFF:
        raise Dhcp6CodecError(f"option {code} longer than 65535 bytes")
    return struct.pack("!HH", code, len(data)) + bytes(data)


def encode_message(msg_type: int, xid: int, options) -> bytes:
    """A client/server message: type, 24-bit transaction id, then the option TLVs (bytes) given."""
    if not 0 <= xid <= 0xFFFFFF:
        raise Dhcp6CodecError(f"transaction id {xid!r} is not 24 bits")
    return bytes([msg_type]) + xid.to_bytes(3, "big") + b"".join(options)


def decode_message(payload: bytes) -> dict:
    """{"msg_type", "xid", "options": [(code, bytes)]} of a client/server message.

    Relay messages (their header differs) and anything malformed raise ``Dhcp6CodecError``.
    """
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise Dhcp6CodecError("not bytes")
    payload = bytes(payload)
    if len(payload) < 4:
        raise Dhcp6CodecError("shorter than a DHCPv6 header")
    if len(payload) > MAX_MESSAGE:
        raise Dhcp6CodecError("longer than a UDP payload")
    if payload[0] in (RELAY_FORW, RELAY_REPL):
        raise Dhcp6CodecError("relay messages are not handled")
    return {"msg_type": payload[0], "xid": int.from_bytes(payload[1:4], "big"),
            "options": decode_options(payload[4:])}


def _ip6(data: bytes) -> str:
    return inet_ntop(AF_INET6, data)


def status_option(code: int, message: str = "") -> bytes:
    return option(OPT_STATUS_CODE, struct.pack("!H", code) + message.encode("utf-8"))


def decode_status(data: bytes) -> tuple[int, str]:
    if len(data) < 2:
        raise Dhcp6CodecError("status code shorter than 2 bytes")
    return struct.unpack("!H", data[:2])[0], data[2:].decode("utf-8", errors="replace")


def iaaddr_option(address: str, preferred: int, valid: int, status: bytes = b"") -> bytes:
    """IAADDR (5): address, preferred and valid lifetimes, nested options (a status TLV)."""
    return option(OPT_IAADDR, inet_pton(AF_INET6, address) + struct.pack("!II", preferred, valid) + status)


def ia_na_option(iaid: int, t1: int, t2: int, nested=()) -> bytes:
    """IA_NA (3): IAID, T1, T2, then nested TLVs (IAADDR, STATUS_CODE)."""
    return option(OPT_IA_NA, struct.pack("!III", iaid, t1, t2) + b"".join(nested))


def ia_ta_option(iaid: int, nested=()) -> bytes:
    return option(OPT_IA_TA, struct.pack("!I", iaid) + b"".join(nested))


def ia_pd_option(iaid: int, t1: int, t2: int, nested=()) -> bytes:
    return option(OPT_IA_PD, struct.pack("!III", iaid, t1, t2) + b"".join(nested))


def iaprefix_option(prefix: str, preferred: int, valid: int) -> bytes:
    net = ipaddress.IPv6Network(prefix, strict=False)
    return option(OPT_IAPREFIX, struct.pack("!IIB", preferred, valid, net.prefixlen) + net.network_address.packed)


def _decode_lifetimed(code: int, data: bytes) -> dict:
    """IAADDR or IAPREFIX, with its nested status."""
    if code == OPT_IAADDR:
        if len(data) < 24:
            raise Dhcp6CodecError("IAADDR shorter than 24 bytes")
        item = {"address": _ip6(data[:16])}
        item["preferred"], item["valid"] = struct.unpack("!II", data[16:24])
        rest = data[24:]
    else:
        if len(data) < 25:
            raise Dhcp6CodecError("IAPREFIX shorter than 25 bytes")
        preferred, valid, plen = struct.unpack("!IIB", data[:9])
        if plen > 128:
            raise Dhcp6CodecError("IAPREFIX prefix length above 128")
        item = {"prefix": f"{_ip6(data[9:25])}/{plen}", "preferred": preferred, "valid": valid}
        rest = data[25:]
    item["status"] = None
    for sub, value in decode_options(rest):
        if sub == OPT_STATUS_CODE:
            item["status"] = decode_status(value)
    return item


def decode_ia(code: int, data: bytes) -> dict:
    """IA_NA, IA_TA or IA_PD: {"iaid", "t1", "t2", "addresses"|"prefixes", "status"}."""
    head = 4 if code == OPT_IA_TA else 12
    if len(data) < head:
        raise Dhcp6CodecError(f"option {code} shorter than {head} bytes")
    if head == 4:
        ia = {"iaid": struct.unpack("!I", data[:4])[0], "t1": 0, "t2": 0}
    else:
        iaid, t1, t2 = struct.unpack("!III", data[:12])
        ia = {"iaid": iaid, "t1": t1, "t2": t2}
    key, inner = ("prefixes", OPT_IAPREFIX) if code == OPT_IA_PD else ("addresses", OPT_IAADDR)
    ia[key] = []
    ia["status"] = None
    for sub, value in decode_options(data[head:]):
        if sub == inner:
            ia[key].append(_decode_lifetimed(inner, value))
        elif sub == OPT_STATUS_CODE:
            ia["status"] = decode_status(value)
    return ia


def dns_servers_option(servers) -> bytes:
    return option(OPT_DNS_SERVERS, b"".join(inet_pton(AF_INET6, s) for s in servers))


def decode_dns_servers(data: bytes) -> list[str]:
    if len(data) % 16:
        raise Dhcp6CodecError("DNS servers option is not a list of addresses")
    return [_ip6(data[i:i + 16]) for i in range(0, len(data), 16)]


def encode_domain_list(domains) -> bytes:
    """RFC 1035 wire names, uncompressed (RFC 8415 10: DHCPv6 never compresses)."""
    out = bytearray()
    for name in domains:
        for label in name.rstrip(".").split("."):
            raw = label.encode("ascii")
            if not 0 < len(raw) < 64:
                raise Dhcp6CodecError(f"bad label in {name!r}")
            out += bytes([len(raw)]) + raw
        out += b"\x00"
    return bytes(out)


def decode_domain_list(data: bytes) -> list[str]:
    names = []
    pos, end = 0, len(data)
    while pos < end:
        labels, size = [], 0
        while True:
            if pos >= end:
                raise Dhcp6CodecError("truncated domain name")
            length = data[pos]
            if length == 0:
                pos += 1
                break
            if length & 0xC0:
                raise Dhcp6CodecError("compressed or extended label in a DHCPv6 domain list")
            if pos + 1 + length > end:
                raise Dhcp6CodecError("truncated label")
            size += length + 1
            if size > 255:
                raise Dhcp6CodecError("domain name longer than 255 bytes")
            try:
                labels.append(data[pos + 1:pos + 1 + length].decode("ascii"))
            except UnicodeDecodeError:
                raise Dhcp6CodecError("non-ASCII label") from None
            pos += 1 + length
        names.append(".".join(labels))
    return names


def domain_list_option(domains) -> bytes:
    return option(OPT_DOMAIN_LIST, encode_domain_list(domains))


def decode_oro(data: bytes) -> list[int]:
    if len(data) % 2:
        raise Dhcp6CodecError("ORO of odd length")
    return list(struct.unpack(f"!{len(data) // 2}H", data))


_SINGLETONS = {OPT_CLIENTID: "client_id", OPT_SERVERID: "server_id", OPT_ORO: "oro",
               OPT_ELAPSED_TIME: "elapsed_time", OPT_PREFERENCE: "preference",
               OPT_RAPID_COMMIT: "rapid_commit", OPT_STATUS_CODE: "status",
               OPT_DNS_SERVERS: "dns_servers", OPT_DOMAIN_LIST: "domain_list",
               OPT_INFORMATION_REFRESH_TIME: "information_refresh_time", OPT_SOL_MAX_RT: "sol_max_rt"}


def parse_message(payload) -> dict:
    """A message with the options this module knows interpreted; ``Dhcp6CodecError`` if malformed.

    Keys: msg_type, xid, options (raw [(code, bytes)]), client_id / server_id (DUID bytes or
    None), ia_na / ia_ta / ia_pd (lists of ``decode_ia`` dicts), oro (codes), rapid_commit
    (bool), elapsed_time, preference, status ((code, text)), dns_servers, domain_list,
    information_refresh_time, sol_max_rt (None when absent). A known option twice is malformed.
    """
    msg = decode_message(payload)
    result = dict(msg, client_id=None, server_id=None, ia_na=[], ia_ta=[], ia_pd=[], oro=[],
                  rapid_commit=False, elapsed_time=None, preference=None, status=None,
                  dns_servers=[], domain_list=[], information_refresh_time=None, sol_max_rt=None)
    seen = set()
    for code, value in msg["options"]:
        if code in (OPT_IA_NA, OPT_IA_TA, OPT_IA_PD):
            result[{OPT_IA_NA: "ia_na", OPT_IA_TA: "ia_ta", OPT_IA_PD: "ia_pd"}[code]].append(decode_ia(code, value))
            continue
        name = _SINGLETONS.get(code)
        if name is None:
            continue
        if code in seen:
            raise Dhcp6CodecError(f"option {code} more than once")
        seen.add(code)
        if code in (OPT_CLIENTID, OPT_SERVERID):
            if not 2 <= len(value) <= DUID_MAX:
                raise Dhcp6CodecError(f"option {code}: a DUID is 2 to {DUID_MAX} bytes")
            result[name] = value
        elif code == OPT_ORO:
            result[name] = decode_oro(value)
        elif code == OPT_RAPID_COMMIT:
            if value:
                raise Dhcp6CodecError("rapid commit option with data")
            result[name] = True
        elif code in (OPT_ELAPSED_TIME, OPT_PREFERENCE, OPT_INFORMATION_REFRESH_TIME, OPT_SOL_MAX_RT):
            size = {OPT_ELAPSED_TIME: 2, OPT_PREFERENCE: 1}.get(code, 4)
            if len(value) != size:
                raise Dhcp6CodecError(f"option {code} is not {size} bytes")
            result[name] = int.from_bytes(value, "big")
        elif code == OPT_STATUS_CODE:
            result[name] = decode_status(value)
        elif code == OPT_DNS_SERVERS:
            result[name] = decode_dns_servers(value)
        else:
            result[name] = decode_domain_list(value)
    return result


# The name a caller of the server side reads best; the same parser serves both directions.
parse_client_message = parse_message


# -- DUIDs ----------------------------------------------------------------------------------
def parse_duid(data: bytes) -> dict:
    """{"type", ...}: LLT: hw_type, time, link_layer; EN: enterprise, identifier; LL: hw_type,
    link_layer; UUID: uuid (bytes). Unknown types give only "type" and "raw" (DUIDs are opaque)."""
    if not isinstance(data, (bytes, bytearray)) or not 2 <= len(data) <= DUID_MAX:
        raise Dhcp6CodecError(f"a DUID is 2 to {DUID_MAX} bytes")
    data = bytes(data)
    kind = struct.unpack("!H", data[:2])[0]
    body = data[2:]
    if kind == DUID_LLT:
        if len(body) < 7:
            raise Dhcp6CodecError("DUID-LLT too short")
        hw_type, time = struct.unpack("!HI", body[:6])
        return {"type": kind, "hw_type": hw_type, "time": time, "link_layer": body[6:]}
    if kind == DUID_EN:
        if len(body) < 5:
            raise Dhcp6CodecError("DUID-EN too short")
        return {"type": kind, "enterprise": struct.unpack("!I", body[:4])[0], "identifier": body[4:]}
    if kind == DUID_LL:
        if len(body) < 3:
            raise Dhcp6CodecError("DUID-LL too short")
        return {"type": kind, "hw_type": struct.unpack("!H", body[:2])[0], "link_layer": body[2:]}
    if kind == DUID_UUID:
        if len(body) != 16:
            raise Dhcp6CodecError("DUID-UUID is not 16 bytes")
        return {"type": kind, "uuid": body}
    return {"type": kind, "raw": body}


def duid_mac(duid) -> str | None:
    """The Ethernet address in a DUID-LL or DUID-LLT ("aa:bb:..."), else None.

    ``duid``: bytes or a ``parse_duid`` result. An Ethernet DUID whose address is not 6 bytes
    is malformed (``Dhcp6CodecError``).
    """
    parsed = parse_duid(duid) if isinstance(duid, (bytes, bytearray)) else duid
    if parsed["type"] not in (DUID_LL, DUID_LLT) or parsed["hw_type"] != HWTYPE_ETHERNET:
        return None
    if len(parsed["link_layer"]) != 6:
        raise Dhcp6CodecError("Ethernet DUID without a 6-byte address")
    return parsed["link_layer"].hex(":")


SERVER_DUID_KEY = b"virtnet.podnet DHCPv6 server DUID v1\x00"


def server_duid(node_id: bytes) -> bytes:
    """The node's server DUID: DUID-LL over a locally administered unicast MAC hashed from ``node_id``.

    ``node_id``: a stable node value such as the bytes of /etc/machine-id (surrounding
    whitespace ignored, so the file read raw or stripped gives the same DUID).
    """
    if not isinstance(node_id, (bytes, bytearray)) or not bytes(node_id).strip():
        raise Dhcp6CodecError("server_duid needs a non-empty node id (bytes)")
    digest = sha256(SERVER_DUID_KEY + bytes(node_id).strip()).digest()
    address = bytes([(digest[0] | 0x02) & 0xFE]) + digest[1:6]
    return struct.pack("!HH", DUID_LL, HWTYPE_ETHERNET) + address


# -- the lease ------------------------------------------------------------------------------
def _ipv6_unicast(value, field, errors):
    return fields.ipv6(value, field, errors, link_local=None)  # the one rule: no scope inet_pton would refuse


def _lifetime(value, field, errors):
    return fields.int_in(value, 0, INFINITY, field, errors)


def normalise_lease(lease: dict) -> dict:
    """Check a lease and return it complete; ``PodnetError`` naming every bad field.

    Keys: vm_mac, address, prefixlen (1..128, the on-link prefix for CONFIRM and the RA),
    dns_servers, search_domains (optional), preferred_lifetime, valid_lifetime (seconds,
    0xffffffff infinite), t1, t2 (optional: 0.5 and 0.8 of the preferred lifetime),
    information_refresh_time (optional, sent in Information-request replies).
    """
    errors: list[str] = []
    if not isinstance(lease, dict):
        raise PodnetError("lease: must be a dict", errors=["lease: must be a dict"])
    out = {
        "vm_mac": fields.mac(lease.get("vm_mac"), "vm_mac", errors, unicast=True),
        "address": _ipv6_unicast(lease.get("address"), "address", errors),
        "prefixlen": fields.int_in(lease.get("prefixlen"), 1, 128, "prefixlen", errors),
        "dns_servers": fields.string_list(lease.get("dns_servers"), "dns_servers", errors, _ipv6_unicast,
                                          limit=fields.MAX_DNS_SERVERS),
        "search_domains": fields.string_list(lease.get("search_domains"), "search_domains", errors,
                                             fields.domain_name, limit=64),
        "preferred_lifetime": _lifetime(lease.get("preferred_lifetime"), "preferred_lifetime", errors),
        "valid_lifetime": _lifetime(lease.get("valid_lifetime"), "valid_lifetime", errors),
    }
    preferred, valid = out["preferred_lifetime"], out["valid_lifetime"]
    if preferred is not None and valid is not None and preferred > valid:
        errors.append(f"preferred_lifetime: {preferred} is longer than valid_lifetime {valid}")
    default_t1 = default_t2 = 0
    if preferred is not None and preferred != INFINITY:
        default_t1, default_t2 = preferred // 2, preferred * 4 // 5
    t1 = lease.get("t1")
    t2 = lease.get("t2")
    out["t1"] = _lifetime(default_t1 if t1 is None else t1, "t1", errors)
    out["t2"] = _lifetime(default_t2 if t2 is None else t2, "t2", errors)
    if out["t1"] is not None and out["t2"] is not None and out["t2"] and out["t1"] > out["t2"]:
        errors.append(f"t1: {out['t1']} is later than t2 {out['t2']} (RFC 8415 21.4)")
    refresh = lease.get("information_refresh_time")
    out["information_refresh_time"] = (None if refresh is None else
                                       fields.int_in(refresh, 600, INFINITY, "information_refresh_time", errors))
    if errors:
        raise PodnetError("invalid DHCPv6 lease: " + "; ".join(errors), errors=errors)
    out["network"] = ipaddress.IPv6Network(f"{out['address']}/{out['prefixlen']}", strict=False)
    return out


# -- the server -----------------------------------------------------------------------------
Answer = namedtuple("Answer", "reply request reason")
Answer.__doc__ = """``reply``: bytes or None; ``request``: the parsed message (None if malformed);
``reason``: for the log, "<TYPE>: advertise|reply[ NoAddrsAvail|Success|NotOnLink]" or
"ignored <TYPE>: why" (a "DECLINE: reply" names an address the VM found in use)."""

_MUST_HAVE_SERVERID = (REQUEST, RENEW, RELEASE, DECLINE)
_MUST_NOT_HAVE_SERVERID = (SOLICIT, CONFIRM, REBIND)


def _config_options(lease: dict, information: bool = False) -> list[bytes]:
    out = []
    if lease["dns_servers"]:
        out.append(dns_servers_option(lease["dns_servers"]))
    if lease["search_domains"]:
        out.append(domain_list_option(lease["search_domains"]))
    if information and lease.get("information_refresh_time") is not None:
        out.append(option(OPT_INFORMATION_REFRESH_TIME, struct.pack("!I", lease["information_refresh_time"])))
    return out


def _unique(ias: list[dict]) -> list[dict]:
    """Each IAID once: it is unique among the IAs of one type in a message (RFC 8415 21.4, 21.5, 21.21)."""
    return list({ia["iaid"]: ia for ia in reversed(ias)}.values())[::-1]


def _answer_ias(request: dict, lease: dict, drop_foreign: bool) -> list[tuple[bytes, bytes]]:
    """The answer to each IA of a request, IA_NA first: (full, short). The short one leaves out the addresses
    and prefixes returned with lifetimes 0, which then simply expire (RFC 8415 18.3.4, 18.3.5)."""
    out = []
    ours = lease["address"]
    mine = iaaddr_option(ours, lease["preferred_lifetime"], lease["valid_lifetime"])
    for ia in _unique(request["ia_na"]):
        foreign = sorted({a["address"] for a in ia["addresses"]} - {ours}) if drop_foreign else []
        expired = [iaaddr_option(address, 0, 0) for address in foreign]
        out.append((ia_na_option(ia["iaid"], lease["t1"], lease["t2"], [mine] + expired),
                    ia_na_option(ia["iaid"], lease["t1"], lease["t2"], [mine])))
    refused = status_option(NO_ADDRS_AVAIL, "no temporary addresses")
    for ia in _unique(request["ia_ta"]):
        expired = [iaaddr_option(a["address"], 0, 0) for a in ia["addresses"]] if drop_foreign else []
        out.append((ia_ta_option(ia["iaid"], expired + [refused]), ia_ta_option(ia["iaid"], [refused])))
    refused = status_option(NO_PREFIX_AVAIL, "no prefix delegation")
    for ia in _unique(request["ia_pd"]):
        expired = [iaprefix_option(p["prefix"], 0, 0) for p in ia["prefixes"]] if drop_foreign else []
        out.append((ia_pd_option(ia["iaid"], 0, 0, expired + [refused]), ia_pd_option(ia["iaid"], 0, 0, [refused])))
    return out


def _shortest_fitting(answer_ia: tuple[bytes, bytes], room: int):
    return next((option for option in answer_ia if len(option) <= room), None)


def _within(room: int, answers: list[tuple[bytes, bytes]], config: list[bytes], first_required: bool):
    """(IA options, configuration options) that fit ``room`` bytes, or None when the first IA (the one that
    gives the VM its address) does not: the first IA, then the configuration, then the other IAs in order.
    RFC 8415 wants every IA answered (18.3.1, 18.3.2), but a reply larger than the link is never received;
    a client whose IA is missing from the reply asks for it again (18.2.10.1)."""
    chosen = []
    for index, answer_ia in enumerate(answers):
        option = _shortest_fitting(answer_ia, room)
        if option is None and index == 0 and first_required:
            return None
        if option is not None:
            chosen.append(option)
            room -= len(option)
        if index == 0:
            config = _fitting_in_order(config, room)
            room -= sum(len(option) for option in config)
    if not answers:
        config = _fitting_in_order(config, room)
    return chosen, config


def _fitting_in_order(options: list[bytes], room: int) -> list[bytes]:
    """The options, in order, that fit ``room`` bytes together (each taken if it still fits)."""
    kept = []
    for option in options:
        if len(option) <= room:
            kept.append(option)
            room -= len(option)
    return kept


def answer(message, lease: dict, server_id: bytes, frame_src_mac: str, check_duid_mac: bool = True,
           mtu: int = IPV6_MIN_MTU) -> Answer:
    """The server's answer to one client message (bytes or a ``parse_message`` result).

    ``lease``: see ``normalise_lease`` (raw or normalised). ``server_id``: our DUID
    (``server_duid``). ``frame_src_mac``: the Ethernet source of the frame it came in.
    Only the VM is served: a frame from another MAC, or (``check_duid_mac``) a client DUID-LL/LLT
    over another Ethernet address, is ignored. ``mtu``: the link's; a reply with its IPv6 and UDP
    headers never exceeds it (``_within``), else there is none.
    """
    if isinstance(message, dict):
        request = message
    else:
        try:
            request = parse_message(message)
        except Dhcp6CodecError as exc:
            return Answer(None, None, f"ignored: malformed ({exc})")
    if "network" not in lease:
        lease = normalise_lease(lease)
    mtype = request["msg_type"]
    name = MESSAGE_NAMES.get(mtype, str(mtype))

    def ignored(why):
        return Answer(None, request, f"ignored {name}: {why}")

    if (frame_src_mac or "").lower() != lease["vm_mac"]:
        return ignored(f"frame from {frame_src_mac}, not the VM's MAC")
    if mtype not in (SOLICIT, REQUEST, CONFIRM, RENEW, REBIND, RELEASE, DECLINE, INFORMATION_REQUEST):
        return ignored("not a client message")
    client_id, their_server = request["client_id"], request["server_id"]
    if client_id is None and mtype != INFORMATION_REQUEST:
        return ignored("no client identifier")
    if client_id is not None and check_duid_mac:
        try:
            mac = duid_mac(client_id)
        except Dhcp6CodecError as exc:
            return ignored(f"bad client DUID ({exc})")
        if mac is not None and mac != lease["vm_mac"]:
            return ignored(f"client DUID names {mac}, not the VM's MAC")
    if mtype in _MUST_HAVE_SERVERID and their_server != server_id:
        return ignored("not our server identifier" if their_server else "no server identifier")
    if mtype in _MUST_NOT_HAVE_SERVERID and their_server is not None:
        return ignored("carries a server identifier")
    if mtype == INFORMATION_REQUEST:
        if their_server is not None and their_server != server_id:
            return ignored("not our server identifier")
        if request["ia_na"] or request["ia_ta"] or request["ia_pd"]:
            return ignored("IA options in an Information-request")

    ids = [option(OPT_SERVERID, server_id)]
    if client_id is not None:
        ids.append(option(OPT_CLIENTID, client_id))
    xid = request["xid"]
    room = mtu - UDP6_HEADERS - 4  # the message header: type and transaction id

    def sent(msg_type, options, reason):
        if sum(len(o) for o in options) > room:
            return ignored(f"no reply fits the link MTU {mtu}")
        return Answer(encode_message(msg_type, xid, options), request, reason)

    if mtype == INFORMATION_REQUEST:
        config = _fitting_in_order(_config_options(lease, information=True), room - sum(len(o) for o in ids))
        return sent(REPLY, ids + config, f"{name}: reply")
    if mtype in (RELEASE, DECLINE):
        text = "released" if mtype == RELEASE else "decline noted"
        return sent(REPLY, ids + [status_option(SUCCESS, text)], f"{name}: reply")
    if mtype == CONFIRM:
        addresses = [a["address"] for ia in request["ia_na"] + request["ia_ta"] for a in ia["addresses"]]
        if not addresses:
            return ignored("no addresses to confirm (RFC 8415 18.3.3)")
        on_link = all(ipaddress.IPv6Address(a) in lease["network"] for a in addresses)
        status = status_option(SUCCESS, "on link") if on_link else status_option(NOT_ON_LINK, "not on link")
        return sent(REPLY, ids + [status], f"{name}: reply " + ("Success" if on_link else "NotOnLink"))

    assigned = bool(request["ia_na"])
    head = ids + ([option(OPT_PREFERENCE, b"\xff")] if mtype == SOLICIT and not request["rapid_commit"] else
                  [option(OPT_RAPID_COMMIT)] if mtype == SOLICIT else [])
    refused = [] if assigned else [status_option(NO_ADDRS_AVAIL, "only IA_NA is served")]
    bounded = _within(room - sum(len(o) for o in head + refused),
                      _answer_ias(request, lease, drop_foreign=mtype in (RENEW, REBIND)),
                      _config_options(lease) if assigned else [], first_required=assigned)
    if bounded is None:
        return ignored(f"no reply fits the link MTU {mtu}")
    ias, config = bounded
    outcome = "" if assigned else " NoAddrsAvail"
    if mtype == SOLICIT and not request["rapid_commit"]:
        return sent(ADVERTISE, head + ias + refused + config, f"{name}: advertise{outcome}")
    return sent(REPLY, head + ias + refused + config, f"{name}: reply{outcome}")


def reply_for(message, lease: dict, server_id: bytes, frame_src_mac: str, check_duid_mac: bool = True,
              mtu: int = IPV6_MIN_MTU):
    """The reply payload (bytes) to one client message, or None to stay silent. See ``answer``."""
    return answer(message, lease, server_id, frame_src_mac, check_duid_mac, mtu).reply


# -- framing --------------------------------------------------------------------------------
checksum = inet_checksum  # RFC 1071, the one the IPv4 codec uses


def _pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """RFC 8200 8.1: source, destination, upper-layer length (32 bits), 3 zero bytes, next header."""
    return src + dst + struct.pack("!I3xB", length, proto)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def link_local_from_mac(mac: str) -> str:
    """The modified EUI-64 link-local address of a MAC (RFC 4291 2.5.1, appendix A): fe80::, the MAC with
    ff:fe in its middle and the universal/local bit flipped."""
    raw = bytearray(mac_bytes(mac))
    if len(raw) != 6:
        raise ValueError(f"{mac!r} is not a 6-byte MAC address")
    raw[0] ^= 0x02
    return _ip6(b"\xfe\x80" + bytes(6) + bytes(raw[:3]) + b"\xff\xfe" + bytes(raw[3:]))


def multicast_mac(ip: str) -> str:
    """RFC 2464 7: 33:33 and the low 32 bits of the group."""
    return "33:33:" + inet_pton(AF_INET6, ip)[12:].hex(":")


def _ipv6_frame(src_mac, dst_mac, src_ip, dst_ip, proto, segment, checksum_offset, hop_limit):
    src, dst = inet_pton(AF_INET6, src_ip), inet_pton(AF_INET6, dst_ip)
    if dst_mac is None:
        if dst[0] != 0xFF:
            raise ValueError(f"{dst_ip} is not multicast: give its MAC")
        dst_mac = multicast_mac(dst_ip)
    segment = bytearray(segment)
    value = checksum(_pseudo_header(src, dst, proto, len(segment)) + bytes(segment))
    if proto == IPPROTO_UDP and value == 0:
        value = 0xFFFF  # RFC 8200 8.1: a zero UDP checksum is sent as ffff
    struct.pack_into("!H", segment, checksum_offset, value)
    ip_header = struct.pack("!IHBB16s16s", 6 << 28, len(segment), proto, hop_limit, src, dst)
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETH_P_IPV6) + ip_header + bytes(segment)


def build_udp6_frame(src_mac: str, dst_mac: str | None, src_ip: str, dst_ip: str, payload: bytes,
                     sport: int = SERVER_PORT, dport: int = CLIENT_PORT, hop_limit: int = 64) -> bytes:
    """Ethernet + IPv6 + UDP around ``payload``, UDP checksum over the pseudo-header computed here.

    For a reply: ``src_ip`` our link-local, ``dst_ip``/``dst_mac`` the request's source
    (``parse_udp6_frame``). ``dst_mac`` None: derived from a multicast ``dst_ip``.
    """
    header = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    return _ipv6_frame(src_mac, dst_mac, src_ip, dst_ip, IPPROTO_UDP, header + bytes(payload), 6, hop_limit)


def _ipv6_upper_layer(frame: bytes):
    """(next header, start, end, src, dst, hop limit) of an Ethernet/IPv6 frame, past the extension
    headers we may skip (hop-by-hop first only, routing, destination options, at most 8); else None."""
    if len(frame) < 54 or frame[12:14] != b"\x86\xdd" or frame[14] >> 4 != 6:
        return None
    plen, nxt, hop_limit = struct.unpack_from("!HBB", frame, 18)
    end = 54 + plen
    if end > len(frame):  # includes jumbograms (length 0 with a hop-by-hop option): never ours
        return None
    pos = 54
    for count in range(MAX_EXTENSION_HEADERS + 1):
        if nxt not in _EXTENSION_HEADERS:
            return nxt, pos, end, frame[22:38], frame[38:54], hop_limit
        if count == MAX_EXTENSION_HEADERS or (nxt == 0 and count) or pos + 8 > end:
            return None
        nxt, hlen = frame[pos], (frame[pos + 1] + 1) * 8
        if pos + hlen > end:
            return None
        pos += hlen
    return None  # pragma: no cover - the loop returns


def parse_udp6_frame(frame: bytes, dport: int = SERVER_PORT):
    """(src_mac, src_ip, dst_ip, payload) of an Ethernet/IPv6/UDP frame to ``dport``, else None.

    Accepted destinations: ff02::1:2 (All_DHCP_Relay_Agents_and_Servers) and unicast. The
    source must be a unicast address (a reply goes back to it). Fragments and headers other
    than hop-by-hop, routing and destination options are refused. The UDP checksum is not
    verified (a VM's kernel may leave it to offload; a damaged body fails decoding anyway).
    """
    try:
        walked = _ipv6_upper_layer(frame)
        if walked is None or walked[0] != IPPROTO_UDP:
            return None
        _eth, pos, end, src, dst, _hops = walked
        if pos + 8 > end:
            return None
        uport, ulen = struct.unpack_from("!HH", frame, pos + 2)
        if uport != dport or ulen < 8 or pos + ulen > end:
            return None
        if src[0] == 0xFF or src == _UNSPECIFIED or (dst[0] == 0xFF and dst != _ALL_DHCP_PACKED):
            return None
        return frame[6:12].hex(":"), _ip6(src), _ip6(dst), bytes(frame[pos + 8:pos + ulen])
    except (struct.error, IndexError, TypeError, ValueError):
        return None


def build_router_advertisement(src_mac: str, src_ip: str, dst_ip: str = ALL_NODES, dst_mac: str | None = None,
                               prefix: str | None = None, mtu: int | None = None, router_lifetime: int = 1800,
                               prefix_valid: int = INFINITY, prefix_preferred: int = INFINITY,
                               managed: bool = True, other: bool = True, cur_hop_limit: int = 64) -> bytes:
    """An Ethernet frame with a Router Advertisement (RFC 4861 4.2), hop limit 255.

    ``src_ip``: the gateway's link-local address (RFC 4861 6.1.2 drops RAs from other sources).
    M and O send the VM to DHCPv6 for address and configuration; reachable time and retrans
    timer are 0 (unspecified). Options: source link-layer address, MTU when given, and for a
    ``prefix`` shorter than /128 a prefix information option with L=1 (on-link) and A=0 (no
    SLAAC: the address comes from DHCPv6). A /128 gets no prefix option.
    """
    flags = (0x80 if managed else 0) | (0x40 if other else 0)
    body = struct.pack("!BBHBBHII", ICMPV6_RA, 0, 0, cur_hop_limit, flags, router_lifetime, 0, 0)
    body += struct.pack("!BB", ND_OPT_SLLA, 1) + mac_bytes(src_mac)
    if mtu is not None:
        body += struct.pack("!BBHI", ND_OPT_MTU, 1, 0, mtu)
    if prefix is not None:
        net = ipaddress.IPv6Network(prefix, strict=False)
        if net.prefixlen < 128:
            body += struct.pack("!BBBBIII", ND_OPT_PREFIX, 4, net.prefixlen, 0x80, prefix_valid, prefix_preferred, 0)
            body += net.network_address.packed
    return _ipv6_frame(src_mac, dst_mac, src_ip, dst_ip, IPPROTO_ICMPV6, body, 2, 255)


def parse_router_solicitation(frame: bytes):
    """(src_mac, src_ip) of a valid Router Solicitation frame (RFC 4861 6.1.1), else None.

    Checked: ICMPv6 type 133 code 0, hop limit 255, length, checksum, option lengths, and no
    source link-layer option when the source is the unspecified address.
    """
    try:
        walked = _ipv6_upper_layer(frame)
        if walked is None or walked[0] != IPPROTO_ICMPV6:
            return None
        _eth, pos, end, src, dst, hop_limit = walked
        if hop_limit != 255 or end - pos < 8 or frame[pos] != ICMPV6_RS or frame[pos + 1] != 0:
            return None
        segment = bytes(frame[pos:end])
        if checksum(_pseudo_header(src, dst, IPPROTO_ICMPV6, len(segment)) + segment) != 0:
            return None
        opt = 8
        while opt < len(segment):
            if opt + 2 > len(segment) or segment[opt + 1] == 0 or opt + segment[opt + 1] * 8 > len(segment):
                return None
            if segment[opt] == ND_OPT_SLLA and src == _UNSPECIFIED:
                return None
            opt += segment[opt + 1] * 8
        if src[0] == 0xFF:
            return None
        return frame[6:12].hex(":"), _ip6(src)
    except (struct.error, IndexError, TypeError, ValueError):
        return None
