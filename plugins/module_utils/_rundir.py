# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the run directory, sole owner of every file under it.

Layout (docs/internals.md), directories 0700 and files 0600, every write atomic::

    <run_dir>/pods/<key>.json         state cache: the pod interface as it was (vm_pod_bridge)
    <run_dir>/leases/<key>.json       lease declaration: what the responder may hand out (vm_pod_bridge)
    <run_dir>/lease-state/<key>.json  what the responder handed out (podnet-dhcpd)
    <run_dir>/locks/<nskey>.lock      one flock per pod namespace
    <run_dir>/podnet-dhcpd.pid        the responder's pidfile, held under flock

``<key>`` is ``<nskey>__<pod interface>``. Both the modules and the responder read and
write these records only through this file, which knows each record's schema and version.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import tempfile

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

DEFAULT_RUN_DIR = "/run/virtnet-podnet"
PODS, LOCKS, LEASES, LEASE_STATE = "pods", "locks", "leases", "lease-state"
SUBDIRS = (PODS, LOCKS, LEASES, LEASE_STATE)
PIDFILE = "podnet-dhcpd.pid"
CACHE_VERSION = 1
DECLARATION_VERSION = 1
MAX_RECORD = 1 << 20  # a record is a few KiB; refuse to read a file larger than this
MIN_LEASE_TIME = 4  # short leases are for tests; T1 = half of it must stay >= 2 s
MAX_LEASE_TIME = 0x7FFFFFFE  # 0xffffffff means "infinite" in RFC 2132; never handed out
DEFAULT_LEASE_TIME = 86400
NETNS_DIRS = ("/run/netns/", "/var/run/netns/")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


# -- keys and paths ----------------------------------------------------------------------

def netns_key(netns):
    """The ``netns`` argument made file-safe: ``pod1``, ``/proc/1234/ns/net`` -> ``proc-1234-ns-net``.

    ``/run/netns/pod1`` is the namespace named ``pod1``: same key, same lock.
    """
    for prefix in NETNS_DIRS:
        if netns.startswith(prefix) and "/" not in netns[len(prefix):]:
            netns = netns[len(prefix):]
    key = _UNSAFE.sub("-", netns.strip("/").replace("/", "-")).strip("-")
    # A name made only of dots would be a path component with a meaning.
    if not key or set(key) <= {"."}:
        key = "ns-" + key.replace(".", "_")
    return key


def state_key(netns, pod_interface):
    return f"{netns_key(netns)}__{pod_interface}"


def cache_path(run_dir, key):
    return os.path.join(run_dir, PODS, key + ".json")


def lease_path(run_dir, key):
    return os.path.join(run_dir, LEASES, key + ".json")


def lease_state_path(run_dir, key):
    return os.path.join(run_dir, LEASE_STATE, key + ".json")


def lock_path(run_dir, netns):
    return os.path.join(run_dir, LOCKS, netns_key(netns) + ".lock")


def pidfile_path(run_dir):
    return os.path.join(run_dir, PIDFILE)


# -- files -------------------------------------------------------------------------------

def ensure_dir(path):
    """Create ``path`` (and parents) root-only; tighten it if it exists wider."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        # makedirs honours the umask; a pre-existing directory may be wider.
        if os.stat(path).st_mode & 0o077:
            os.chmod(path, 0o700)
    except OSError as exc:
        raise PodnetError(f"run_dir: cannot create {path}: {exc.strerror}", path=path) from None
    return path


def ensure_dirs(run_dir):
    """Create the run directory tree, root-only."""
    ensure_dir(run_dir)
    for sub in SUBDIRS:
        ensure_dir(os.path.join(run_dir, sub))


def atomic_write_json(path, data, durable=True):
    """Write ``data`` as JSON: a temp file of unpredictable name beside ``path``, rename over it.

    Readers see the old or the new file, never half of one. ``durable=False`` skips the
    fsyncs, for bookkeeping that a crash may lose without harm.
    """
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(directory)


def _fsync_dir(directory):
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_json(path):
    """The JSON document at ``path``, or None when there is none; PodnetError when unreadable."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RECORD + 1)
        if len(data) > MAX_RECORD:
            raise ValueError(f"larger than {MAX_RECORD} bytes")
        return json.loads(data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PodnetError(f"cannot read {path}: {exc}; remove it if the pod is gone", path=path) from None


def remove(path):
    """Delete ``path``; True when something was deleted (a missing file is fine)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _fsync_dir(os.path.dirname(path))
    return True


@contextlib.contextmanager
def pod_lock(run_dir, netns):
    """Hold an exclusive ``flock`` for the pod namespace; two runs on one pod serialize."""
    ensure_dirs(run_dir)
    path = lock_path(run_dir, netns)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # Python retries EINTR itself (PEP 475)
        yield path
    finally:
        # Closing releases the lock; the file stays so waiters lock the same inode.
        os.close(fd)


# -- the state cache (pods/<key>.json) ---------------------------------------------------

def load_cache(run_dir, key, inode):
    """Return ``(cache, stale)``: the cache for ``key`` if it belongs to the namespace with ``inode``.

    A cache recorded for another namespace of the same name (the pod was recreated) is stale:
    it is returned as ``None`` with ``stale=True`` so the caller can drop it.
    """
    cache = read_json(cache_path(run_dir, key))
    if cache is None:
        return None, False
    if cache.get("version") != CACHE_VERSION or (inode is not None and cache.get("netns_inode") != list(inode)):
        recorded = cache.get("netns")
        try:
            st = os.stat(recorded) if isinstance(recorded, str) else None
        except OSError:
            st = None
        if st is not None and [st.st_dev, st.st_ino] == cache.get("netns_inode"):
            # Not stale: another live namespace maps to the same key. Never drop its record.
            raise PodnetError(f"{cache_path(run_dir, key)} records the live namespace {recorded}, which shares "
                              "this state key; address this pod by another name or path", path=recorded)
        return None, True
    return cache, False


def record_elsewhere(run_dir, key, inode, pod_interface):
    """The cache file of this same namespace and interface recorded under another key, if any.

    One namespace can be named several ways (``pod1``, ``/proc/PID/ns/net``, a bind mount);
    the record made under one name must not be missed when the next run uses another.
    """
    folder = os.path.join(run_dir, PODS)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and n != key + ".json")
    except OSError:
        return None
    for name in names:
        other = read_json(os.path.join(folder, name))
        if (isinstance(other, dict) and other.get("netns_inode") == list(inode)
                and (other.get("binding") or {}).get("pod_interface") == pod_interface):
            return os.path.join(folder, name)
    return None


def save_cache(run_dir, key, cache, durable=True):
    atomic_write_json(cache_path(run_dir, key), dict(cache, version=CACHE_VERSION, key=key), durable)


# -- lease declarations (leases/<key>.json) ----------------------------------------------

def _routes(value, errors):
    """Option 121 routes: ``[{"dst": "a.b.c.d/n", "gateway": None | "a.b.c.d"}]``, normalised."""
    out = []
    if not isinstance(value, list):
        errors.append(f"routes: {value!r} is not a list of routes")
        return out
    for index, route in enumerate(value):
        where = f"routes[{index}]"
        if not isinstance(route, dict) or not isinstance(route.get("dst"), str):
            errors.append(f"{where}: {route!r} is not a route ({{dst, gateway}})")
            continue
        try:
            dst = str(ipaddress.IPv4Network(route["dst"], strict=False))
        except ValueError:
            errors.append(f"{where}: dst {route['dst']!r} is not an IPv4 network")
            continue
        gateway = fields.ipv4(route.get("gateway"), f"{where}.gateway", errors, allow_none=True)
        out.append({"dst": dst, "gateway": None if gateway == "0.0.0.0" else gateway})
    return out


def validate_declaration(decl):
    """Check a lease declaration and return it normalised; ``PodnetError`` names every bad field.

    ``vm_pod_bridge`` validates before writing, so a bad field fails at plumb time; the
    responder validates on reading, so a file written by anyone else is never trusted.
    """
    if not isinstance(decl, dict):
        raise PodnetError("lease declaration must be a JSON object")
    errors = []
    out = dict(decl)
    if decl.get("version") != DECLARATION_VERSION:
        errors.append(f"version: {decl.get('version')!r} is not {DECLARATION_VERSION}")
    fields.key(decl.get("key"), "key", errors)
    netns = decl.get("netns")
    if not isinstance(netns, str) or not netns.startswith("/") or "\x00" in netns:
        errors.append(f"netns: {netns!r} is not an absolute path")
    inode = decl.get("netns_inode")
    if inode is not None and not (isinstance(inode, list) and len(inode) == 2 and all(fields.is_int(i) for i in inode)):
        errors.append(f"netns_inode: {inode!r} is not [st_dev, st_ino]")
    fields.ifname(decl.get("bridge"), "bridge", errors)
    fields.ifname(decl.get("tap"), "tap", errors)
    out["vm_mac"] = fields.mac(decl.get("vm_mac"), "vm_mac", errors)
    out["ip"] = fields.ipv4(decl.get("ip"), "ip", errors)
    fields.int_in(decl.get("prefixlen"), 1, 32, "prefixlen", errors)
    out["gateway"] = fields.ipv4(decl.get("gateway"), "gateway", errors, allow_none=True)
    out["routes"] = _routes(decl.get("routes") if decl.get("routes") is not None else [], errors)
    if decl.get("mtu") is not None:
        fields.int_in(decl["mtu"], 68, 65535, "mtu", errors)
    out["dns_servers"] = fields.string_list(decl.get("dns_servers"), "dns_servers", errors, fields.ipv4)
    try:
        out["search_domains"] = codec.validate_search_domains(decl.get("search_domains"))
    except PodnetError as exc:
        errors.extend(exc.details["errors"])
    fields.hostname(decl.get("hostname"), "hostname", errors)
    out["lease_time"] = decl.get("lease_time", DEFAULT_LEASE_TIME)
    fields.int_in(out["lease_time"], MIN_LEASE_TIME, MAX_LEASE_TIME, "lease_time", errors, " seconds")
    if errors:
        raise PodnetError("invalid lease declaration: " + "; ".join(errors), errors=errors)
    return out


def write_declaration(run_dir, decl):
    """Validate and write ``leases/<key>.json`` atomically; return its path."""
    decl = validate_declaration(decl)
    ensure_dirs(run_dir)
    path = lease_path(run_dir, decl["key"])
    atomic_write_json(path, decl)
    return path


def read_declaration(path):
    """Read and validate one declaration file; ``PodnetError`` if unreadable or invalid."""
    try:
        data = read_json(path)
    except PodnetError as exc:
        raise PodnetError(f"cannot read lease declaration {path}: {exc.msg}") from None
    if data is None:
        raise PodnetError(f"lease declaration {path} is gone")
    return validate_declaration(data)


def remove_declaration(run_dir, key):
    """Withdraw the lease declaration; True if there was one."""
    return remove(lease_path(run_dir, key))


# -- lease state (lease-state/<key>.json, written by the responder) ------------------------

def write_lease_state(run_dir, key, state):
    # The responder rewrites it on every lease event: losing the last one in a crash is harmless.
    path = lease_state_path(run_dir, key)
    ensure_dir(os.path.dirname(path))
    atomic_write_json(path, state, durable=False)


def read_lease_state(run_dir, key):
    """The responder's view of a lease, or None if it never wrote one (or it is unreadable)."""
    try:
        data = read_json(lease_state_path(run_dir, key))
    except PodnetError:
        return None
    return data if isinstance(data, dict) else None


def remove_lease_state(run_dir, key):
    with contextlib.suppress(FileNotFoundError):
        os.unlink(lease_state_path(run_dir, key))
