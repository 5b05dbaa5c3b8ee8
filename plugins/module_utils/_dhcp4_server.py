# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the DHCPv4 server, a pure function of (lease, message).

``answer4(lease, payload, dst_ip)`` is what podnet-dhcpd does with a DHCP message from a pod's
VM: the reply's payload and where it goes, or nothing and why. It never raises and never answers
more than the link carries (the pod's MTU, and the VM's option 57). ``Lease4`` is the DHCPv4
lease of one declaration and the reply templates built from it (the only state: a cache).
The DHCPv6 server beside it is ``_dhcp6_codec.answer``.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec

INFORM_ACK = 0x108  # internal marker: an ACK without lease times (RFC 2131 4.3.5)
# Options sent whatever option 55 says: what the VM needs to be addressed and routed.
ALWAYS = (codec.OPT_SUBNET_MASK, codec.OPT_ROUTER, codec.OPT_CLASSLESS_ROUTES, codec.OPT_MTU)
# Options sent only when asked for (or when the client sends no option 55).
ON_REQUEST = (codec.OPT_DNS, codec.OPT_HOSTNAME, codec.OPT_DOMAIN_NAME, codec.OPT_SEARCH)
OPTIONAL = frozenset(ON_REQUEST + (codec.OPT_MS_CLASSLESS_ROUTES,))
# The pod's configured dhcpOptions (KubeVirt's: 66, 67, 42, 224-254) are sent whatever option 55 says,
# as KubeVirt does: udhcpc, dhclient and dhcpcd ask for none of them by default. When a reply does not
# fit the VM, they are the first to go, those the client did not ask for before those it did.
MAX_TEMPLATES = 256  # cached replies per pod; a VM cycling through option 55 lists cannot grow it further
UDP_IP_HEADERS = 28
MIN_MAX_MESSAGE_SIZE = 548  # RFC 2131: every client takes a 576-byte IP datagram


def server_identifier(decl: dict) -> str:
    """The address the VM's unicast renewal goes to, so it passes through the tap.

    The gateway when there is one. Without, another on-link address of the pod's subnet:
    nobody may answer its ARP, so the renewal at T1 fails, but the broadcast rebinding at T2
    still reaches us and the lease lives on.
    """
    if decl.get("gateway"):
        return decl["gateway"]
    network = ipaddress.IPv4Network(f"{decl['ip']}/{decl['prefixlen']}", strict=False)
    for candidate in (network.network_address + 1, network.broadcast_address - 1):
        if network.prefixlen < 31 and str(candidate) != decl["ip"]:
            return str(candidate)
    return decl["ip"]


class Answer4(NamedTuple):
    """What to do with one message. ``request``: the parsed message (None: not a message from this
    lease's VM, dropped silently). ``reply``: OFFER, ACK, NAK or INFORM_ACK, None when nothing is
    sent. ``payload``/``dst_mac``/``dst_ip``: the reply and where it goes. ``detail``: what the
    event line says beside the message name ("" for nothing; None: no event line). ``reason``: why
    nothing is sent."""
    request: dict | None = None
    reply: int | None = None
    payload: bytes | None = None
    dst_mac: str | None = None
    dst_ip: str | None = None
    detail: str | None = None
    reason: str = ""


class Lease4:
    """The DHCPv4 lease of a declaration (validated by ``_rundir.validate_declaration``) and its replies."""

    __slots__ = ("decl", "mac_bytes", "server_id", "mtu", "extra_options", "extra_codes", "boot_fields", "replies",
                 "netmask", "routes_data")

    def __init__(self, decl: dict) -> None:
        self.decl = decl
        self.mac_bytes = codec.mac_bytes(decl["vm_mac"])
        # The gateway: the VM's unicast renewal at T1 goes towards it through the tap,
        # where our packet socket sees it. Without a gateway, the VM's own address side.
        self.server_id = server_identifier(decl)
        self.mtu = decl.get("mtu") or 1500
        # KubeVirt's dhcpOptions, encoded once: [(code, payload)], and the BOOTP header fields for network boot.
        self.extra_options = codec.encode_dhcp_options(decl.get("dhcp_options"))
        self.extra_codes = frozenset(code for code, _data in self.extra_options)
        self.boot_fields = codec.boot_header_fields(decl.get("dhcp_options"))
        self.replies: dict = {}
        # Parsed once: ipaddress was ~70% of building a reply the cache does not hold (L1's cost).
        self.netmask = str(ipaddress.IPv4Network(f"0.0.0.0/{decl['prefixlen']}").netmask)
        self.routes_data = codec.encode_classless_routes(decl["routes"]) if decl.get("routes") else None

    def options_for(self, reply_type: int, wanted, extras=frozenset()) -> list:
        """The options of a reply; ``wanted`` is the set of optional options asked for, None when
        the client sent no option 55 (then every option we have is sent); ``extras`` the codes of
        the configured dhcpOptions to send."""
        decl = self.decl
        opts: list = [(codec.OPT_MESSAGE_TYPE, reply_type), (codec.OPT_SERVER_ID, self.server_id)]
        if reply_type == codec.NAK:
            opts.append((codec.OPT_MESSAGE, "wrong address for this client"))
            return opts
        if reply_type != INFORM_ACK:
            lease_time = decl["lease_time"]
            opts += [(codec.OPT_LEASE_TIME, lease_time), (codec.OPT_RENEWAL_TIME, lease_time // 2),
                     (codec.OPT_REBINDING_TIME, lease_time * 7 // 8)]
        opts.append((codec.OPT_SUBNET_MASK, self.netmask))
        if decl.get("gateway"):
            opts.append((codec.OPT_ROUTER, [decl["gateway"]]))
        data = self.routes_data
        if data is not None:
            opts.append((codec.OPT_CLASSLESS_ROUTES, data))
            if wanted is not None and codec.OPT_MS_CLASSLESS_ROUTES in wanted:
                opts.append((codec.OPT_MS_CLASSLESS_ROUTES, data))
        if decl.get("mtu"):
            opts.append((codec.OPT_MTU, decl["mtu"]))

        def asked(code):
            return wanted is None or code in wanted

        if decl.get("dns_servers") and asked(codec.OPT_DNS):
            opts.append((codec.OPT_DNS, decl["dns_servers"]))
        if decl.get("hostname") and asked(codec.OPT_HOSTNAME):
            opts.append((codec.OPT_HOSTNAME, decl["hostname"]))
        search = decl.get("search_domains") or []
        if search and asked(codec.OPT_DOMAIN_NAME):
            opts.append((codec.OPT_DOMAIN_NAME, search[0]))
        if search and asked(codec.OPT_SEARCH):
            opts.append((codec.OPT_SEARCH, codec.encode_search_domains(search, validate=False)))
        opts.extend((code, data) for code, data in self.extra_options if code in extras)
        return opts

    def reply_payload(self, reply_type: int, request: dict):
        """The reply's DHCP payload, or None when even the shortest reply exceeds what the VM takes.

        Templates are cached per reply type and the options the request asked for among
        those that depend on asking (so at most 5 x 33 of them whatever option 55 lists a
        client cycles through); a reply is a template with xid, flags and ciaddr patched in.
        """
        requested = request["parameter_list"]
        wanted = frozenset(requested).intersection(OPTIONAL) if requested else None
        room = self.reply_room(request)
        template = self._template(reply_type, wanted, self.extra_codes)
        if codec.content_length(template) > room:
            template = self._fitting(reply_type, wanted, requested, room)
            if template is None:
                return None
        template = template[:max(room, codec.content_length(template))]  # the padding to 300 bytes may not fit
        ciaddr = request["ciaddr"] if reply_type in (codec.ACK, INFORM_ACK) else "0.0.0.0"
        return codec.patch_reply(template, request["xid"], request["flags"], ciaddr)

    def reply_room(self, request: dict) -> int:
        """The most DHCP payload a reply may take: what the client takes (option 57, never below the 576 bytes
        every client must take, RFC 2131 2), but never more than the link carries (its MTU)."""
        takes = max(UDP_IP_HEADERS + MIN_MAX_MESSAGE_SIZE, request.get("max_message_size") or self.mtu)
        return min(self.mtu, takes) - UDP_IP_HEADERS

    def _fitting(self, reply_type: int, wanted, requested, room: int):
        """The largest reply within ``room`` bytes: what routes the VM always; the optional options
        (DNS, host name, search list) if they fit, all or none, as before dhcpOptions existed; then as
        many configured dhcpOptions as fit, those option 55 asks for first (in its order of preference,
        RFC 2131), then the others. None when not even the bare lease fits."""
        base = self._template(reply_type, wanted, frozenset())
        if codec.content_length(base) > room and wanted != frozenset():
            wanted = frozenset()  # the optional options do not fit
            base = self._template(reply_type, wanted, frozenset())
        if codec.content_length(base) > room:
            return None
        if not self.extra_options:
            return base
        sizes = {code: codec.option_size(data) for code, data in self.extra_options}
        order = [code for code in dict.fromkeys(requested) if code in sizes]
        order += [code for code, _data in self.extra_options if code not in order]
        used, chosen = codec.content_length(base), set()
        for code in order:
            if used + sizes[code] <= room:
                used += sizes[code]
                chosen.add(code)
        template = self._template(reply_type, wanted, frozenset(chosen))
        return template if codec.content_length(template) <= room else base

    def _template(self, reply_type: int, wanted, extras):
        cache_key = (reply_type, wanted, extras)
        template = self.replies.get(cache_key)
        if template is None:
            wire_type = codec.ACK if reply_type == INFORM_ACK else reply_type
            yiaddr = self.decl["ip"] if reply_type in (codec.OFFER, codec.ACK) else "0.0.0.0"
            opts = self.options_for(reply_type, wanted, extras)
            opts[0] = (codec.OPT_MESSAGE_TYPE, wire_type)
            header = {"chaddr": self.decl["vm_mac"], "yiaddr": yiaddr}
            if reply_type != codec.NAK:
                header.update(self.boot_fields)
            template = codec.encode_message(header, opts)
            if len(self.replies) >= MAX_TEMPLATES:
                self.replies.clear()
            self.replies[cache_key] = template
        return template


def _parse(lease: Lease4, payload: bytes):
    """The request in ``payload`` if it is a DHCP message of the lease's VM, sent by it (not relayed)."""
    # Cheap test first: is it our VM at all (chaddr at offset 28)?
    if len(payload) < 240 or payload[28:34] != lease.mac_bytes:
        return None
    try:
        request = codec.parse_request(payload)
    except ValueError:
        return None
    return request if request["giaddr"] == "0.0.0.0" else None  # relayed: not from the VM on this tap


def _selects(lease: Lease4, request: dict, dst_ip: str):
    """The reply to a REQUEST and the event's detail: ``(None, detail)`` when it is not for us (logged),
    ``(None, None)`` when it is not a valid REQUEST at all."""
    if request["server_id"] is not None:
        if request["server_id"] != lease.server_id:
            return None, "selecting another server"
        detail, wanted = "selecting", request["requested_ip"]
    elif request["requested_ip"] is not None:
        detail, wanted = "init-reboot", request["requested_ip"]
    elif request["ciaddr"] != "0.0.0.0":
        # RENEWING is unicast to the server identifier, REBINDING is broadcast.
        detail = f"renewing to {dst_ip}" if dst_ip == lease.server_id else f"rebinding to {dst_ip}"
        wanted = request["ciaddr"]
    else:
        return None, None
    if wanted == lease.decl["ip"]:
        return codec.ACK, detail
    return codec.NAK, detail + f", asked for {wanted}"


def answer4(lease: Lease4, payload: bytes, dst_ip: str) -> Answer4:
    """What the server does with the DHCP ``payload`` sent to ``dst_ip``; never raises."""
    try:
        return _answer4(lease, payload, dst_ip)
    except Exception as exc:  # a hostile message must never end the service: dropped, and why
        return Answer4(reason=f"malformed: {exc!r}")


def _answer4(lease: Lease4, payload: bytes, dst_ip: str) -> Answer4:
    request = _parse(lease, payload)
    if request is None:
        return Answer4(reason="not a request of this VM")
    mtype = request["message_type"]
    detail = ""
    if mtype == codec.DISCOVER:
        reply = codec.OFFER
    elif mtype == codec.REQUEST:
        reply, detail = _selects(lease, request, dst_ip)
        if reply is None:
            return Answer4(request, detail=detail, reason=detail or "a REQUEST naming no address")
    elif mtype == codec.INFORM:
        reply = INFORM_ACK
    elif mtype in (codec.RELEASE, codec.DECLINE):
        return Answer4(request, detail="", reason="noted")  # the lease stays offered
    else:
        return Answer4(request, reason="not a client message")
    out = lease.reply_payload(reply, request)
    if out is None:
        return Answer4(request, reply, detail=detail,
                       reason=f"a reply does not fit the VM's MTU {lease.mtu} (or its option 57)")
    wire = codec.ACK if reply == INFORM_ACK else reply
    dst_mac, to_ip = codec.reply_destination(request, wire, lease.decl["vm_mac"], lease.decl["ip"])
    return Answer4(request, reply, out, dst_mac, to_ip, detail)
