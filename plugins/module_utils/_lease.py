# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: lease declarations and lease state under the run directory.

``leases/<key>.json`` is written by ``vm_pod_bridge`` (format in docs/internals.md) and
read here; ``lease-state/<key>.json`` is written by the responder::

    {"version": 1, "key": "pod1__eth0", "vm_mac": "...", "ip": "10.244.1.10",
     "state": "offered|bound|nak|released|declined|informed",
     "last_message": "REQUEST", "last_reply": "ACK", "offered_at": 1.0, "bound_at": 2.0,
     "last_renewal": 3.0, "expires_at": 86403.0, "updated_at": 3.0}

Times are Unix seconds. Everything is root-only (dirs 0700, files 0600) and written
atomically (temp file in the same directory, fsync, rename).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_codec import (
    normalise_routes,
    validate_search_domains,
)

DEFAULT_RUN_DIR = "/run/virtnet-podnet"
LEASES = "leases"
LEASE_STATE = "lease-state"
DECLARATION_VERSION = 1
MIN_LEASE_TIME = 4  # short leases are for tests; T1 = half of it must stay >= 2 s
MAX_LEASE_TIME = 0x7FFFFFFE  # 0xffffffff means "infinite" in RFC 2132; we never hand that out

_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_IFNAME = re.compile(r"^[^\s/:]{1,15}$")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def ensure_dir(path: str) -> str:
    """Create ``path`` (and parents) root-only; tighten it if it exists."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def atomic_write_json(path: str, data) -> None:
    """Temp file beside ``path``, fsync, rename: readers see the old or the new file, never half."""
    directory = ensure_dir(os.path.dirname(path) or ".")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except OSError:
        os.unlink(tmp)
        raise


def declaration_path(run_dir: str, key: str) -> str:
    return os.path.join(run_dir, LEASES, f"{key}.json")


def state_path(run_dir: str, key: str) -> str:
    return os.path.join(run_dir, LEASE_STATE, f"{key}.json")


def _ipv4(value, field: str, errors: list, allow_none: bool = False):
    if value is None and allow_none:
        return None
    try:
        return str(ipaddress.IPv4Address(value))
    except (ValueError, TypeError):
        errors.append(f"{field}: {value!r} is not an IPv4 address")
        return None


def validate_declaration(decl) -> dict:
    """Check a lease declaration and return it normalised; ``PodnetError`` names every bad field.

    ``vm_pod_bridge`` should call this before writing, so a bad search list or route fails
    at plumb time, never at serve time.
    """
    if not isinstance(decl, dict):
        raise PodnetError("lease declaration must be a JSON object")
    errors: list[str] = []
    out = dict(decl)
    if decl.get("version") != DECLARATION_VERSION:
        errors.append(f"version: {decl.get('version')!r} is not {DECLARATION_VERSION}")
    if not isinstance(decl.get("key"), str) or not _KEY.match(decl["key"]):
        errors.append(f"key: {decl.get('key')!r} is not a file-safe key")
    if not isinstance(decl.get("netns"), str) or not decl["netns"].startswith("/"):
        errors.append(f"netns: {decl.get('netns')!r} is not an absolute path")
    inode = decl.get("netns_inode")
    if inode is not None and not (isinstance(inode, list) and len(inode) == 2 and all(isinstance(i, int) for i in inode)):
        errors.append(f"netns_inode: {inode!r} is not [st_dev, st_ino]")
    for field in ("bridge", "tap"):
        if not isinstance(decl.get(field), str) or not _IFNAME.match(decl[field]):
            errors.append(f"{field}: {decl.get(field)!r} is not an interface name")
    mac = decl.get("vm_mac")
    if not isinstance(mac, str) or not _MAC.match(mac.lower()):
        errors.append(f"vm_mac: {mac!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    else:
        out["vm_mac"] = mac.lower()
    out["ip"] = _ipv4(decl.get("ip"), "ip", errors)
    prefixlen = decl.get("prefixlen")
    if not isinstance(prefixlen, int) or isinstance(prefixlen, bool) or not 0 < prefixlen <= 32:
        errors.append(f"prefixlen: {prefixlen!r} is not 1..32")
    out["gateway"] = _ipv4(decl.get("gateway"), "gateway", errors, allow_none=True)
    try:
        routes = normalise_routes(decl.get("routes") or [])
        out["routes"] = [{"dst": str(dst), "gateway": None if gw == "0.0.0.0" else gw} for dst, gw in routes]
    except PodnetError as exc:
        errors.append(exc.msg)
    mtu = decl.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535):
        errors.append(f"mtu: {mtu!r} is not 68..65535")
    dns = decl.get("dns_servers") or []
    if not isinstance(dns, list):
        errors.append("dns_servers: must be a list of IPv4 addresses")
        dns = []
    out["dns_servers"] = [_ipv4(server, f"dns_servers[{i}]", errors) for i, server in enumerate(dns)]
    try:
        out["search_domains"] = validate_search_domains(decl.get("search_domains") or [])
    except PodnetError as exc:
        errors.extend(exc.details.get("errors") or [exc.msg])
    hostname = decl.get("hostname")
    if hostname is not None and (not isinstance(hostname, str) or len(hostname) > 253 or not _HOSTNAME.match(hostname)):
        errors.append(f"hostname: {hostname!r} is not a valid host name")
    lease = decl.get("lease_time", 86400)
    if not isinstance(lease, int) or isinstance(lease, bool) or not MIN_LEASE_TIME <= lease <= MAX_LEASE_TIME:
        errors.append(f"lease_time: {lease!r} is not {MIN_LEASE_TIME}..{MAX_LEASE_TIME} seconds")
    out["lease_time"] = lease
    if errors:
        raise PodnetError("invalid lease declaration: " + "; ".join(errors), errors=errors)
    return out


def write_declaration(run_dir: str, decl: dict) -> str:
    """Validate and write ``leases/<key>.json`` atomically (the writer ``vm_pod_bridge`` may use)."""
    decl = validate_declaration(decl)
    path = declaration_path(run_dir, decl["key"])
    atomic_write_json(path, decl)
    return path


def remove_declaration(run_dir: str, key: str) -> bool:
    try:
        os.unlink(declaration_path(run_dir, key))
        return True
    except FileNotFoundError:
        return False


def read_declaration(path: str) -> dict:
    """Read and validate one declaration file; ``PodnetError`` if unreadable or invalid."""
    try:
        with open(path, "rb") as handle:
            data = json.loads(handle.read(1 << 20))
    except (OSError, ValueError) as exc:
        raise PodnetError(f"cannot read lease declaration {path}: {exc}") from None
    return validate_declaration(data)


def write_lease_state(run_dir: str, key: str, state: dict) -> None:
    atomic_write_json(state_path(run_dir, key), state)


def read_lease_state(run_dir: str, key: str) -> dict | None:
    """The responder's view of a lease, or None if it never wrote one (or it is unreadable)."""
    try:
        with open(state_path(run_dir, key), "rb") as handle:
            data = json.loads(handle.read(1 << 20))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def remove_lease_state(run_dir: str, key: str) -> None:
    try:
        os.unlink(state_path(run_dir, key))
    except FileNotFoundError:
        pass
