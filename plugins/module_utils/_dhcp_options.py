# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: KubeVirt's ``dhcpOptions``, the one validation of the VM spec, a binding and
the lease declaration the responder reads.

Options 67 (boot file), 66 (TFTP server), 42 (NTP servers) and the site-specific 224..254, each checked
to fit what one DHCP option holds. Errors are ``SpecError``s (``_spec_errors``), as the rest of the spec's.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils._spec_errors import SpecError, describe, key_text, names_text

MAX_OPTION_BYTES = 255  # what one DHCP option holds
MAX_NTP_SERVERS = 16  # option 42 holds 63; as for DNS servers, more is a mistake
FIRST_PRIVATE_OPTION, LAST_PRIVATE_OPTION = 224, 254  # RFC 2132 site-specific options, as KubeVirt allows
PRIVATE_ALLOWED = f"{FIRST_PRIVATE_OPTION}..{LAST_PRIVATE_OPTION} (site-specific options), each once"
# dhcpOptions' keys: in the plan, binding and lease declaration (snake_case) and in the spec (KubeVirt's).
DHCP_OPTION_KEYS = ("boot_file_name", "tftp_server_name", "ntp_servers", "private_options")
SPEC_DHCP_NAMES = {"boot_file_name": "bootFileName", "tftp_server_name": "tftpServerName",
                   "ntp_servers": "ntpServers", "private_options": "privateOptions"}
SNAKE_DHCP_NAMES = {key: key for key in DHCP_OPTION_KEYS}


def _option_text(value, path, errors, unset_ok):
    """A string option value: 1..255 bytes as UTF-8, no control characters. "" is unset when ``unset_ok``."""
    allowed = f"a string of 1 to {MAX_OPTION_BYTES} bytes (UTF-8) without control characters"
    if not isinstance(value, str):
        errors.append(SpecError(path, f"must be a string, got {describe(value)}", allowed))
        return None
    if value == "":
        if not unset_ok:
            errors.append(SpecError(path, "is empty", allowed))
        return None
    problem, size_allowed = None, f"at most {MAX_OPTION_BYTES} bytes (UTF-8): what one DHCP option holds"
    if len(value) > 4 * MAX_OPTION_BYTES:  # before encoding or scanning: a hostile value may be huge
        problem, allowed = f"is {len(value)} characters long", size_allowed
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            size, problem = 0, "is not valid UTF-8 text (lone surrogates)"
        if size > MAX_OPTION_BYTES:
            problem, allowed = f"is {size} bytes long (UTF-8)", size_allowed
        elif problem is None and any(unicodedata.category(c) == "Cc" for c in value):
            problem = "holds control characters"
    if problem:
        errors.append(SpecError(path, problem, allowed))
        return None
    return value


def _ntp_servers(value, path, errors):
    allowed = f"a list of at most {MAX_NTP_SERVERS} IPv4 addresses"
    if not isinstance(value, list):
        errors.append(SpecError(path, f"must be a list, got {describe(value)}", allowed))
        return None
    if len(value) > MAX_NTP_SERVERS:
        errors.append(SpecError(path, f"has {len(value)} entries", f"at most {MAX_NTP_SERVERS}"))
        return None
    servers = []
    for index, item in enumerate(value):
        address = fields.ip_address(item, 4)
        servers.append(None if address is None else str(address))
        if servers[-1] is None:
            errors.append(SpecError(f"{path}[{index}]", f"{describe(item)} is not an IPv4 address", "an IPv4 address"))
    return servers if None not in servers else None


def _private_options(value, path, errors):
    """``[{option: 224..254, value: string}]``, no option twice."""
    if not isinstance(value, list):
        errors.append(SpecError(path, f"must be a list, got {describe(value)}", "a list of {option, value}"))
        return None
    span = LAST_PRIVATE_OPTION - FIRST_PRIVATE_OPTION + 1
    if len(value) > span:  # more entries than codes: checking each would only list duplicates
        errors.append(SpecError(path, f"has {len(value)} entries", f"at most {span}, one per option {PRIVATE_ALLOWED}"))
        return None
    out, seen, before = [], {}, len(errors)
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            errors.append(SpecError(where, f"must be a mapping, got {describe(item)}", "option, value"))
            continue
        for key in item:
            if key not in ("option", "value"):
                errors.append(SpecError(f"{where}.{key_text(key)}", "unknown field of a private option",
                                        "option, value"))
        code = item.get("option")
        if "option" not in item:
            errors.append(SpecError(f"{where}.option", "is required", PRIVATE_ALLOWED))
        elif not fields.is_int(code) or not FIRST_PRIVATE_OPTION <= code <= LAST_PRIVATE_OPTION:
            errors.append(SpecError(f"{where}.option", f"{describe(code)} is not a private option", PRIVATE_ALLOWED))
        elif code in seen:
            errors.append(SpecError(f"{where}.option", f"duplicate option {code}, also in {path}[{seen[code]}]",
                                    PRIVATE_ALLOWED))
        else:
            seen[code] = index
        if "value" not in item:
            errors.append(SpecError(f"{where}.value", "is required", f"a string of 1 to {MAX_OPTION_BYTES} bytes"))
            continue
        text = _option_text(item["value"], f"{where}.value", errors, unset_ok=False)
        if text is not None and fields.is_int(code):
            out.append({"option": code, "value": text})
    return out if len(errors) == before else None


def validate_dhcp_options(value, path, errors, names=None):
    """KubeVirt's ``dhcpOptions`` (options 67, 66, 42 and 224..254): the normalised mapping with
    snake_case keys, holding only the options set ({} for none; "" and [] are unset, as KubeVirt's
    omitempty). ``names`` maps those keys to the ones expected in ``value`` (``SPEC_DHCP_NAMES`` in a
    VM spec; snake_case by default, as in a binding or a lease declaration). The one validation of
    the plan, a binding, and the declaration the responder reads."""
    names = names or SNAKE_DHCP_NAMES
    allowed = names_text(names.values())
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.append(SpecError(path, f"must be a mapping, got {describe(value)}", allowed))
        return {}
    keys = {shown: key for key, shown in names.items()}
    found = {}
    for shown, item in value.items():
        key = keys.get(shown) if isinstance(shown, str) else None
        if key is None:
            errors.append(SpecError(f"{path}.{key_text(shown)}", f"unknown field of {path.rsplit('.', 1)[-1]}",
                                    allowed))
            continue
        found[key] = _DHCP_CHECKS[key](item, f"{path}.{shown}", errors)
    return {key: found[key] for key in DHCP_OPTION_KEYS if found.get(key)}


def _unset_or_text(value, path, errors):
    return _option_text(value, path, errors, unset_ok=True)


_DHCP_CHECKS = {"boot_file_name": _unset_or_text, "tftp_server_name": _unset_or_text,
                "ntp_servers": _ntp_servers, "private_options": _private_options}
