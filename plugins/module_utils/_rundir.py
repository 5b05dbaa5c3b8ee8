# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the run directory, sole owner of every file under it.

Layout (docs/internals.md), directories 0700 and files 0600, every write atomic::

    <run_dir>/pods/<key>.json         state cache: the pod interface as it was (vm_pod_bridge)
    <run_dir>/leases/<key>.json       lease declaration: what the responder may hand out (vm_pod_bridge)
    <run_dir>/lease-state/<key>.json  what the responder handed out (podnet-dhcpd)
    <run_dir>/ids/<nsid>__<iface>     the key recorded for a namespace identity (the index of pods/)
    <run_dir>/locks/<nsid>.lock       one flock per pod namespace (by identity, whatever it is called)
    <run_dir>/podnet-dhcpd.pid        the responder's pidfile, held under flock

``<key>`` is ``<nskey>__<pod interface>``, ``<nskey>`` the netns argument made file-safe.
``<nsid>`` is ``cookie-<SO_NETNS_COOKIE>``, or ``inode-<dev>-<ino>`` on kernels before 5.14
and in records of 0.1. Both the modules and the responder read and write these records
only through this file, which knows each record's schema and version.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import socket
import stat
import tempfile

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as codec6
from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_options import validate_dhcp_options
from ansible_collections.virtnet.podnet.plugins.module_utils._digest import sha256
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

DEFAULT_RUN_DIR = "/run/virtnet-podnet"
PODS, LOCKS, LEASES, LEASE_STATE, IDS = "pods", "locks", "leases", "lease-state", "ids"
SUBDIRS = (PODS, LOCKS, LEASES, LEASE_STATE, IDS)
KEY_MAX = 200  # a key plus ".json" or ".lock" must stay a valid file name
CACHE_FIELDS = {"netns": str, "netns_inode": list, "binding": dict, "original": dict, "pod_mac": str}
PIDFILE = "podnet-dhcpd.pid"
CACHE_VERSION = 1
DECLARATION_VERSION = 1
IPV6_MIN_MTU = 1280
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
    # A name made only of dots would be a path component with a meaning, and a leading dot
    # makes a hidden file the responder skips (its temp files start with one).
    if not key or set(key) <= {"."}:
        key = "ns-" + key.replace(".", "_")
    elif key.startswith("."):
        key = "ns-" + key
    if len(key) > KEY_MAX:
        key = key[:KEY_MAX - 17] + "-" + sha256(key.encode()).hexdigest()[:16]
    return key


def state_key(netns, pod_interface):
    return f"{netns_key(netns)}__{pod_interface}"


def cache_path(run_dir, key):
    return os.path.join(run_dir, PODS, key + ".json")


def lease_path(run_dir, key):
    return os.path.join(run_dir, LEASES, key + ".json")


def lease_state_path(run_dir, key):
    return os.path.join(run_dir, LEASE_STATE, key + ".json")


def identity_name(ident):
    """``cookie-<n>`` (never reused), else ``inode-<dev>-<ino>`` (kernels before 5.14, records of 0.1)."""
    if ident.get("cookie") is not None:
        return f"cookie-{ident['cookie']}"
    dev, ino = ident["inode"]
    return f"inode-{dev}-{ino}"


def lock_path(run_dir, ident):
    return os.path.join(run_dir, LOCKS, identity_name(ident) + ".lock")


def id_path(run_dir, ident, pod_interface):
    return os.path.join(run_dir, IDS, f"{identity_name(ident)}__{pod_interface}")


def pidfile_path(run_dir):
    return os.path.join(run_dir, PIDFILE)


# -- files -------------------------------------------------------------------------------

def ensure_dir(path):
    """Create ``path`` (and parents) root-only. An existing one must be a real directory that
    only its owner (us) can write: it is never chmod-ed, and a link is never followed."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError as exc:
        raise PodnetError(f"run_dir: cannot create {path}: {exc.strerror}", path=path) from None
    if not stat.S_ISDIR(st.st_mode):
        raise PodnetError(f"run_dir: {path} is not a directory (a symbolic link?); refusing to use it", path=path)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise PodnetError(f"run_dir: {path} is writable by others or not owned by uid {os.geteuid()}; "
                          "use a directory of its own (the default is /run/virtnet-podnet)", path=path)
    return path


_CHECKED = set()  # run dirs this process created or checked: one stat instead of six mkdirs per write


def ensure_dirs(run_dir):
    """Create the run directory tree: the directory itself, then its subdirectories root-only."""
    if run_dir in _CHECKED and os.path.isdir(os.path.join(run_dir, SUBDIRS[-1])):
        return
    ensure_dir(run_dir)
    for sub in SUBDIRS:
        sub_path = os.path.join(run_dir, sub)
        try:
            os.mkdir(sub_path, 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise PodnetError(f"run_dir: cannot create {sub_path}: {exc.strerror}", path=sub_path) from None
        st = os.lstat(sub_path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise PodnetError(f"run_dir: {sub_path} is not a root-only directory of ours (mode "
                              f"{stat.S_IMODE(st.st_mode):o}, a link?); refusing to use it", path=sub_path)
    _CHECKED.add(run_dir)


def atomic_write_json(path, data):
    """Write ``data`` as JSON: a temp file of unpredictable name beside ``path``, renamed over it.

    Readers see the old or the new file, never half of one, also when the writer is killed.
    No fsync: these records describe network namespaces, which a host crash ends too (and /run
    is a tmpfs); on a disk-backed run dir an fsync per record cost about 10 ms here.
    """
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            # One line: json's C encoder (indent= falls back to pure Python, ~1 ms a record here).
            handle.write(json.dumps(data, sort_keys=True) + "\n")
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_json(path):
    """The JSON document at ``path``, or None when there is none; PodnetError when unreadable."""
    # os.open and pread, not open(): no buffered file object for a read of one record (the responder reads
    # three per pod's lifecycle).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PodnetError(f"cannot read {path}: {exc}; remove it if the pod is gone", path=path) from None
    try:
        return read_json_fd(fd, path)
    finally:
        os.close(fd)


def read_json_fd(fd, path):
    """The JSON document in the open file ``fd`` (read from its start; ``path`` names it in errors)."""
    try:
        chunks, size = [], 0
        while size <= MAX_RECORD:
            want = MAX_RECORD + 1 - size
            chunk = os.pread(fd, want, size)
            chunks.append(chunk)
            size += len(chunk)
            if len(chunk) < want:
                break  # a regular file reads short only at its end: no second read to learn that
        return _json_of(b"".join(chunks))
    except (OSError, ValueError) as exc:
        raise PodnetError(f"cannot read {path}: {exc}; remove it if the pod is gone", path=path) from None


def _json_of(data):
    if len(data) > MAX_RECORD:
        raise ValueError(f"larger than {MAX_RECORD} bytes")
    return json.loads(data)


def remove(path):
    """Delete ``path``; True when something was deleted (a missing file is fine)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


class LockBusy(PodnetError):
    """A non-blocking ``pod_lock`` found the lock held (a module run on that pod): try again later."""


@contextlib.contextmanager
def pod_lock(run_dir, ident, blocking=True):
    """Hold an exclusive ``flock`` for the pod namespace ``ident``; two runs on one pod serialize,
    whatever name each gives it. Yields the lock's path.

    Lock files of pods that are gone are removed (``collect``) while held: a waiter that then
    gets the lock of a removed file opens the path again, so all lock the same inode.
    ``blocking=False`` (the responder's loop, which serves every pod) raises ``LockBusy`` at once
    instead of waiting.
    """
    ensure_dirs(run_dir)
    path = lock_path(run_dir, ident)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            # Python retries EINTR itself (PEP 475)
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockBusy(f"{path} is held", path=path) from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        held = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)
    try:
        yield path
    finally:
        os.close(fd)


# -- the state cache (pods/<key>.json) ---------------------------------------------------

def record_identity(record):
    """The namespace identity a record was made for (0.1 records have no cookie)."""
    return {"inode": record.get("netns_inode"), "cookie": record.get("netns_cookie")}


def same_namespace(record, ident):
    """Whether ``record`` was made for the namespace ``ident``: by cookie where both have one;
    else by inode (which the kernel reuses: callers check the live pod interface too)."""
    if record.get("netns_cookie") is not None and ident.get("cookie") is not None:
        return record["netns_cookie"] == ident["cookie"]
    return record.get("netns_inode") == list(ident["inode"])


def check_cache(cache, path):
    """A state cache as this version writes it, or PodnetError: never act on a record half understood."""
    if not isinstance(cache, dict):
        raise PodnetError(f"{path} is not a state record (a JSON object); remove it if the pod is gone", path=path)
    if cache.get("version") != CACHE_VERSION:
        raise PodnetError(f"{path} was written by another version of virtnet.podnet (record version "
                          f"{cache.get('version')!r}, this one reads {CACHE_VERSION}); refusing to act on it, as it "
                          "holds the pod's original configuration", path=path)
    wrong = sorted(k for k, kind in CACHE_FIELDS.items() if not isinstance(cache.get(k), kind))
    original = cache.get("original") or {}
    wrong += [f"original.{k}" for k in ("mac", "mtu", "ipv4", "routes") if k not in original]
    if wrong:
        raise PodnetError(f"{path} is not a usable state record (bad or missing: {', '.join(wrong)}); remove it "
                          "if the pod is gone", path=path)
    return cache


def load_cache(run_dir, key, ident, alive):
    """Return ``(cache, stale)``: the cache for ``key`` if it was made for the namespace ``ident``.

    A cache made for another namespace of the same name (the pod was recreated) is stale:
    it is returned as ``None`` with ``stale=True`` so the caller can drop it, unless that
    namespace is still alive (``alive(record)``): then two live namespaces share a key.
    """
    path = cache_path(run_dir, key)
    cache = read_json(path)
    if cache is None:
        return None, False
    check_cache(cache, path)
    if same_namespace(cache, ident):
        return cache, False
    if alive(cache):
        raise PodnetError(f"{path} records the live namespace {cache['netns']}, which shares this state key; "
                          "address this pod by another name or path", path=cache["netns"])
    return None, True


def record_elsewhere(run_dir, key, ident, pod_interface):
    """The key under which this same namespace and interface were recorded by another name, if any.

    One namespace can be named several ways (``pod1``, ``/proc/PID/ns/net``, a bind mount);
    the record made under one name must not be missed when the next run uses another. The
    ``ids/`` index answers without reading every record.
    """
    _index_legacy_records(run_dir)
    names = [ident] if ident.get("cookie") is None else [ident, {"inode": ident["inode"], "cookie": None}]
    for name in names:
        try:
            with open(id_path(run_dir, name, pod_interface), encoding="utf-8") as handle:
                other = handle.read(KEY_MAX + 1).strip()
        except OSError:
            continue
        if other != key and fields.KEY.fullmatch(other):
            return other
    return None


def _index_legacy_records(run_dir):
    """Records of 0.1 have no ``ids/`` entry: index them once, by inode, the first time a 0.2 looks."""
    marker = os.path.join(run_dir, IDS, ".indexed")
    if os.path.exists(marker):
        return
    folder = os.path.join(run_dir, PODS)
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            record = read_json(os.path.join(folder, name))
        except PodnetError:
            continue
        if isinstance(record, dict) and isinstance(record.get("netns_inode"), list) and record.get("binding"):
            register(run_dir, name[:-5], record_identity(record), record["binding"].get("pod_interface", ""))
    atomic_write_json(marker, {"version": CACHE_VERSION})


def register(run_dir, key, ident, pod_interface):
    """Index ``key`` under its namespace identity (before the first change, with the record)."""
    path = id_path(run_dir, ident, pod_interface)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.rename(tmp, path)


def save_record(run_dir, key, record):
    """The first record of a pod: the state cache, then its index entry (both before any change)."""
    save_cache(run_dir, key, record)
    register(run_dir, key, record_identity(record), record["binding"]["pod_interface"])


def collect(run_dir, key, record, why, held=False, blocking=True):
    """Remove every file of a pod whose namespace is gone (or is another one now), under its lock.

    ``why`` is re-checked under the lock (``why()`` returns None when the record turned out
    to be alive after all). Returns the removed paths. ``blocking=False``: ``LockBusy`` when
    the lock is held.
    """
    ident = record_identity(record)
    if ident["inode"] is None and ident["cookie"] is None:
        return []
    lock = contextlib.nullcontext(lock_path(run_dir, ident)) if held else pod_lock(run_dir, ident, blocking)
    with lock as lock_file:
        try:
            current = read_json(cache_path(run_dir, key))
        except PodnetError:
            current = None
        if current is not None and (not isinstance(current, dict) or record_identity(current) != ident):
            return []  # another namespace's record by now: not ours to collect
        if why() is None:
            return []
        pod_interface = (record.get("binding") or {}).get("pod_interface", "")
        paths = [lease_path(run_dir, key), lease_state_path(run_dir, key), cache_path(run_dir, key),
                 id_path(run_dir, ident, pod_interface)]
        # The lock file goes last, while held (pod_lock's waiters then open the path anew);
        # a caller that holds it for its own pod (same identity) keeps it.
        removed = [path for path in paths + ([] if held else [lock_file]) if remove(path)]
    return removed


def save_cache(run_dir, key, cache):
    atomic_write_json(cache_path(run_dir, key), dict(cache, version=CACHE_VERSION, key=key))


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
        parts = fields.ipv4_network_parts(route["dst"])
        try:
            dst = f"{socket.inet_ntoa(parts[0])}/{parts[1]}" if parts else str(ipaddress.IPv4Network(route["dst"], strict=False))
        except ValueError:
            errors.append(f"{where}: dst {route['dst']!r} is not an IPv4 network")
            continue
        gateway = fields.ipv4(route.get("gateway"), f"{where}.gateway", errors, allow_none=True)
        out.append({"dst": dst, "gateway": None if gateway == "0.0.0.0" else gateway})
    return out


def _dhcp_options(decl, out, errors):
    """KubeVirt's dhcpOptions as the binding carries them (optional: declarations of older versions have
    none); checked by the very function that checked the spec and the binding."""
    spec_errors = []
    options = validate_dhcp_options(decl.get("dhcp_options"), "dhcp_options", spec_errors)
    errors.extend(str(e) for e in spec_errors)
    if options:
        out["dhcp_options"] = options
    else:
        out.pop("dhcp_options", None)  # null or nothing set: the declaration as older versions wrote it


IPV6_FIELDS = ("address", "prefixlen", "gateway", "gateway_mac", "dns_servers")
MAX_DNS6_SERVERS = 8


def _ipv6_block(decl, errors):
    """The optional ``ipv6`` block (issue 12): None/absent, no IPv6 served; else
    ``{address, prefixlen, gateway, gateway_mac, dns_servers}`` normalised, every bad field named."""
    value = decl.get("ipv6")
    if value is None:
        return None
    if not isinstance(value, dict):
        errors.append(f"ipv6: {value!r} is not null or an object with {', '.join(IPV6_FIELDS)}")
        return None
    errors.extend(f"ipv6.{name}: unknown field" for name in sorted(set(value) - set(IPV6_FIELDS), key=str))
    out = {
        "address": fields.ipv6(value.get("address"), "ipv6.address", errors),
        "prefixlen": fields.int_in(value.get("prefixlen"), 1, 128, "ipv6.prefixlen", errors),
        "gateway": None, "gateway_mac": None,
        "dns_servers": fields.string_list(value.get("dns_servers"), "ipv6.dns_servers", errors, fields.ipv6,
                                          MAX_DNS6_SERVERS),
    }
    if value.get("gateway") is not None:
        out["gateway"] = fields.ipv6(value["gateway"], "ipv6.gateway", errors, link_local=True)
    if value.get("gateway_mac") is not None:
        out["gateway_mac"] = fields.mac(value["gateway_mac"], "ipv6.gateway_mac", errors, unicast=True)
    return out


def _addressing(decl, out, errors):
    """IPv4 (ip, prefixlen, gateway, routes) and IPv6 (``ipv6``): at least one of them. Without ``ip``
    (an IPv6-only pod) prefixlen and gateway are null and routes empty: no DHCPv4 is served."""
    if "ipv6" in decl:  # absent stays absent: a declaration without IPv6 reads as before
        out["ipv6"] = _ipv6_block(decl, errors)
    if decl.get("ip") is None and decl.get("ipv6") is not None:
        out["ip"] = None
        for name in ("prefixlen", "gateway"):
            if decl.get(name) is not None:
                errors.append(f"{name}: {decl[name]!r} without ip (an IPv6-only pod): must be null")
        if decl.get("routes"):
            errors.append("routes: must be empty without ip (an IPv6-only pod)")
        out["prefixlen"], out["gateway"], out["routes"] = None, None, []
        return
    if decl.get("ip") is None:
        errors.append("ip: null without an ipv6 block: a declaration needs ip, ipv6 or both")
    else:
        out["ip"] = fields.ipv4(decl.get("ip"), "ip", errors)
    fields.int_in(decl.get("prefixlen"), 1, 32, "prefixlen", errors)
    out["gateway"] = fields.ipv4(decl.get("gateway"), "gateway", errors, allow_none=True)
    out["routes"] = _routes(decl.get("routes") if decl.get("routes") is not None else [], errors)


def _check_lease6(out, errors):
    """The DHCPv6 server's own check of the lease it will serve (the responder builds it the same way)."""
    v6 = out.get("ipv6")
    if errors or not v6:
        return
    try:
        codec6.normalise_lease({"vm_mac": out["vm_mac"], "address": v6["address"], "prefixlen": v6["prefixlen"],
                                "dns_servers": v6["dns_servers"], "search_domains": out["search_domains"],
                                "preferred_lifetime": out["lease_time"], "valid_lifetime": out["lease_time"]})
    except PodnetError as exc:
        errors.extend(f"ipv6 ({e})" for e in exc.details.get("errors", [exc.msg]))


def validate_declaration(decl):
    """Check a lease declaration and return it normalised; ``PodnetError`` names every bad field.

    ``vm_pod_bridge`` validates before writing, so a bad field fails at plumb time; the
    responder validates on reading, so a file written by anyone else is never trusted.
    The optional ``ipv6`` block (``_ipv6_block``) adds DHCPv6 and RAs; with it, ``ip`` may be null.
    """
    if not isinstance(decl, dict):
        raise PodnetError("lease declaration must be a JSON object")
    errors = []
    out = dict(decl)
    if decl.get("version") != DECLARATION_VERSION:
        errors.append(f"version: {decl.get('version')!r} is not {DECLARATION_VERSION}")
    fields.key(decl.get("key"), "key", errors)
    fields.abs_path(decl.get("netns"), "netns", errors)
    inode = decl.get("netns_inode")
    if inode is not None and not (isinstance(inode, list) and len(inode) == 2 and all(fields.is_int(i) for i in inode)):
        errors.append(f"netns_inode: {inode!r} is not [st_dev, st_ino]")
    if decl.get("netns_cookie") is not None:
        fields.int_in(decl["netns_cookie"], 1, 2 ** 64 - 1, "netns_cookie", errors)
    fields.ifname(decl.get("bridge"), "bridge", errors)
    fields.ifname(decl.get("tap"), "tap", errors)
    out["vm_mac"] = fields.mac(decl.get("vm_mac"), "vm_mac", errors)
    _addressing(decl, out, errors)
    if decl.get("mtu") is not None:
        # IPv6 needs links of 1280 bytes (RFC 8200 5; the kernel disables it below): an RA or a DHCPv6
        # reply could not fit a smaller one.
        fields.int_in(decl["mtu"], IPV6_MIN_MTU if decl.get("ipv6") else 68, 65535, "mtu", errors,
                      " (IPv6 needs 1280)" if decl.get("ipv6") else "")
    out["dns_servers"] = fields.string_list(decl.get("dns_servers"), "dns_servers", errors, fields.ipv4,
                                            fields.MAX_DNS_SERVERS)
    try:
        out["search_domains"] = codec.validate_search_domains(decl.get("search_domains"))
    except PodnetError as exc:
        errors.extend(exc.details["errors"])
    fields.hostname(decl.get("hostname"), "hostname", errors)
    out["lease_time"] = decl.get("lease_time", DEFAULT_LEASE_TIME)
    fields.int_in(out["lease_time"], MIN_LEASE_TIME, MAX_LEASE_TIME, "lease_time", errors, " seconds")
    _dhcp_options(decl, out, errors)
    _check_lease6(out, errors)
    if errors:
        raise PodnetError("invalid lease declaration: " + "; ".join(errors), errors=errors)
    return out


def write_declaration(run_dir, decl):
    """Validate and write ``leases/<key>.json`` atomically; return its path."""
    return save_declaration(run_dir, validate_declaration(decl))


def save_declaration(run_dir, decl):
    """Write a declaration ``validate_declaration`` returned; the planner validates it once, before any change."""
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


def read_declaration_fd(fd, path):
    """Validate the declaration in the open file ``fd`` (the responder checks its owner on the same descriptor)."""
    try:
        data = read_json_fd(fd, path)
    except PodnetError as exc:
        raise PodnetError(f"cannot read lease declaration {path}: {exc.msg}") from None
    return validate_declaration(data)


def remove_declaration(run_dir, key):
    """Withdraw the lease declaration; True if there was one."""
    return remove(lease_path(run_dir, key))


# -- lease state (lease-state/<key>.json, written by the responder) ------------------------

def write_lease_state(run_dir, key, state):
    path = lease_state_path(run_dir, key)
    ensure_dir(os.path.dirname(path))
    atomic_write_json(path, state)


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


NODE_ID = ".dhcp6-node-id"  # in lease-state/: a hidden name, never a pod's key (keys never start with a dot)


def dhcp6_node_id(run_dir):
    """The responder's fallback node value for its DHCPv6 server DUID when /etc/machine-id is unreadable:
    random, made once and kept in ``lease-state/.dhcp6-node-id`` (so the DUID lasts until the node reboots)."""
    path = os.path.join(run_dir, LEASE_STATE, NODE_ID)
    try:
        data = read_json(path)
    except PodnetError:
        data = None
    node_id = data.get("node_id") if isinstance(data, dict) else None
    if isinstance(node_id, str) and re.fullmatch(r"[0-9a-f]{32}", node_id):
        return node_id.encode()
    value = os.urandom(16).hex()
    ensure_dir(os.path.dirname(path))
    atomic_write_json(path, {"version": 1, "node_id": value})
    return value.encode()
