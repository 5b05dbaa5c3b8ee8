# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the one validation of each field shared by modules and responder.

Every checker takes the value, the field's path for the message and a list to append
errors to, and returns the normalised value (or None when it is bad). Patterns are used
with ``fullmatch``: ``$`` would accept a trailing newline.
"""

from __future__ import annotations

import ipaddress
import re

HOSTNAME_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Search domains may hold '_' labels (service records), host names may not.
DOMAIN_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# What the kernel accepts as a link name, less what shells, qemu's -netdev lists and XML would read
# as syntax: no ',', quotes, '<', '/', ':', whitespace or control characters.
IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
KEY = re.compile(r"[A-Za-z0-9_.-]{1,200}")
NAME_MAX = 253
# An IPv4 address as ipaddress.IPv4Address reads one: four decimal octets 0..255, ASCII digits, no leading zero.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def int_in(value, low, high, field, errors, unit=""):
    if not is_int(value) or not low <= value <= high:
        errors.append(f"{field}: {value!r} is not a whole number {low}..{high}{unit}")
        return None
    return value


def ip_address(value, version):
    """The one parse of an address text, IPv4 (``version`` 4) or IPv6 (6): an ``ipaddress`` object, None if bad.

    Python 3.9+ takes a scope (``fe80::1%eth0``, whatever follows the '%'). No address we keep, serve or give
    ``inet_pton`` has one, so it is refused here, for every caller (issue 18 M3).
    """
    if not isinstance(value, str) or "%" in value:
        return None
    try:
        return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
    except ValueError:
        return None


def ipv4_text(value):
    """``value`` if it is an IPv4 address in the only text ``ip_address(value, 4)`` accepts (which is also its
    canonical form), else None: the same rule without building an object (a declaration has a dozen)."""
    return value if isinstance(value, str) and IPV4.fullmatch(value) else None


_PREFIX = re.compile(r"/(3[0-2]|[12]?[0-9])")


def ipv4_network_parts(value):
    """``(packed network address, prefix length)`` of ``"a.b.c.d/n"`` (host bits cleared, as
    ``IPv4Network(value, strict=False)``), None for any other text: the caller asks ipaddress then, which
    also knows the netmask forms and says what is wrong."""
    if not isinstance(value, str):
        return None
    slash = value.find("/")
    if slash < 0 or not IPV4.fullmatch(value, 0, slash) or not _PREFIX.fullmatch(value, slash):
        return None
    prefixlen = int(value[slash + 1:])
    mask = (0xFFFFFFFF << (32 - prefixlen)) & 0xFFFFFFFF
    address = int.from_bytes(bytes(int(octet) for octet in value[:slash].split(".")), "big")
    return (address & mask).to_bytes(4, "big"), prefixlen


def ipv4(value, field, errors, allow_none=False):
    if value is None and allow_none:
        return None
    address = ipv4_text(value)
    if address is None:
        errors.append(f"{field}: {value!r} is not an IPv4 address")
        return None
    return address


IPV6_KINDS = {False: "a global unicast IPv6 address", True: "a link-local unicast IPv6 address (fe80::/10)",
              None: "a unicast IPv6 address"}


def ipv6(value, field, errors, allow_none=False, link_local=False):
    """A unicast IPv6 address, compressed: global (not link-local) unless ``link_local``, which asks for
    a link-local one (a router's, fe80::/10), or either with ``link_local=None``. No scope, multicast,
    loopback or unspecified address."""
    if value is None and allow_none:
        return None
    address = ip_address(value, 6)
    bad = address is None or address.is_multicast or address.is_unspecified or address.is_loopback
    if bad or link_local not in (None, address.is_link_local):
        scoped = ": a %zone means nothing to the VM" if isinstance(value, str) and "%" in value else ""
        errors.append(f"{field}: {value!r} is not {IPV6_KINDS[link_local]}{scoped}")
        return None
    return str(address)


def mac(value, field, errors, unicast=False):
    text = value.lower() if isinstance(value, str) else None
    if text is None or not MAC.fullmatch(text) or (unicast and int(text[:2], 16) & 1):
        kind = "a unicast MAC address" if unicast else "a MAC address"
        errors.append(f"{field}: {value!r} is not {kind} like 02:00:00:00:00:01")
        return None
    return text


def ifname(value, field, errors):
    if not isinstance(value, str) or not IFNAME.fullmatch(value) or value in (".", ".."):
        errors.append(f"{field}: {value!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -)")
        return None
    return value


def key(value, field, errors):
    if not isinstance(value, str) or not KEY.fullmatch(value) or set(value) <= {"."}:
        errors.append(f"{field}: {value!r} is not a file-safe key")
        return None
    return value


def has_control(text):
    """Control characters (NUL, newline, escape, ...) have no place in a name or path we log or pass on."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def abs_path(value, field, errors):
    if not isinstance(value, str) or not value.startswith("/") or has_control(value):
        errors.append(f"{field}: {value!r} is not an absolute path without control characters")
        return None
    return value


def _labels_ok(name, label):
    return all(label.fullmatch(part) for part in name.split("."))


def hostname(value, field, errors):
    """A host name (option 12): LDH labels, at most 253 characters; None is allowed (unset)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > NAME_MAX or not _labels_ok(value, HOSTNAME_LABEL):
        errors.append(f"{field}: {value!r} is not a valid host name")
        return None
    return value


def domain_name(value, field, errors):
    """One search domain (option 119), returned lower-case without a trailing dot."""
    if not isinstance(value, str):
        errors.append(f"{field}: {value!r} is not a string")
        return None
    plain = value[:-1] if value.endswith(".") else value
    problem = None
    if not plain:
        problem = "empty name"
    elif not plain.isascii():
        problem = f"{value!r} is not ASCII (use the IDNA 'xn--' form)"
    elif not _labels_ok(plain, DOMAIN_LABEL):
        bad = [label for label in plain.split(".") if not DOMAIN_LABEL.fullmatch(label)]
        problem = (f"{value!r} has invalid label(s) {bad} (1-63 letters, digits, '-', '_'; "
                   "no leading or trailing '-')")
    elif len(plain) > NAME_MAX:
        problem = f"{value!r} is longer than {NAME_MAX} characters"
    if problem:
        errors.append(f"{field}: {problem}")
        return None
    return plain.lower()


MAX_DNS_SERVERS = 16  # option 6 holds at most 63 in one instance; resolvers use 3


def string_list(value, field, errors, item, limit=None):
    """A list checked item by item with ``item(value, path, errors)``; None is the empty list."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        errors.append(f"{field}: must be a list, got {type(value).__name__}")
        return []
    if limit is not None and len(value) > limit:
        errors.append(f"{field}: {len(value)} entries, at most {limit}")
        return []
    out = [item(v, f"{field}[{i}]", errors) for i, v in enumerate(value)]
    return [v for v in out if v is not None]
