# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: facts about a pod, from its recorded interface and its own files.

``original`` is the pod interface as discovered before any change (``_netlink.discover``,
kept in the state cache): its IPv4 addresses, MAC, MTU and routes. From it come the
address, gateway and option 121 routes the VM is offered. The pod's resolv.conf and
hostname give the DHCP extras' defaults.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat

from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields

MAIN_TABLE = 254
SCOPE_GLOBAL = 0
RTN_UNICAST = 1
IFA_F_SECONDARY = 0x01
MAX_DNS_SERVERS = 8
MAX_SEARCH_DOMAINS = 6
_PROC_NETNS = re.compile(r"/proc/(\d+)/ns/net")
MAX_POD_FILE = 64 * 1024
SYS_OPENAT2 = 437  # the same number on every architecture (syscalls added after 4.20 are unified)
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10


def addr_texts(addrs):
    return [f"{a['address']}/{a['prefixlen']}" for a in addrs]


def _cidr(route):
    return f"{route['dst'] or '0.0.0.0'}/{route['dst_len']}"


def gateway_of(original):
    """The pod's default gateway; else the first gateway of the main table; else of any table."""
    main = [r for r in original["routes"] if r["table"] == MAIN_TABLE and r.get("gateway")]
    for route in main:
        if route["dst_len"] == 0:
            return route["gateway"]
    gateways = main or [r for r in original["routes"] if r.get("gateway")]
    return gateways[0]["gateway"] if gateways else None


def dhcp_routes(original):
    """Routes for option 121: link routes first, other gateway routes, the default route last."""
    main = [r for r in original["routes"] if r["table"] == MAIN_TABLE and r["type"] == RTN_UNICAST]
    link = [{"dst": _cidr(r), "gateway": None} for r in main if not r.get("gateway") and r["dst_len"]]
    via = [{"dst": _cidr(r), "gateway": r["gateway"]} for r in main if r.get("gateway") and r["dst_len"]]
    default = [{"dst": "0.0.0.0/0", "gateway": r["gateway"]} for r in main if r.get("gateway") and not r["dst_len"]]
    seen, out = set(), []
    for route in link + via + default[:1]:
        if route["dst"] not in seen:
            seen.add(route["dst"])
            out.append(route)
    return out


def primary_ipv4(original):
    """The address the VM is offered: the first primary one."""
    addrs = [a for a in original["ipv4"] if not a["flags"] & IFA_F_SECONDARY]
    addrs = addrs or original["ipv4"]
    return addrs[0] if addrs else None


def global_ipv6(original):
    """The pod interface's recorded global IPv6 addresses (the kernel makes the link-local one)."""
    return [a for a in original.get("ipv6") or () if a["scope"] == SCOPE_GLOBAL]


def primary_ipv6(original):
    """The global IPv6 address the VM is offered (DHCPv6 IA_NA): the first one recorded; None without.

    Records written before the pod identity have IPv6 addresses but no ``routes6``: none is offered."""
    if "routes6" not in original:
        return None
    addrs = global_ipv6(original)
    return addrs[0] if addrs else None


def gateway6_of(original):
    """The pod's IPv6 default gateway (global or link-local), else None."""
    routes = [r for r in original.get("routes6") or () if r.get("gateway") and r["type"] == RTN_UNICAST]
    main = [r for r in routes if r["table"] == MAIN_TABLE]
    for route in main + routes:
        if route["dst_len"] == 0:
            return route["gateway"]
    return None


def pod_files_dir(netns):
    """Where a pod's resolv.conf and hostname are: the process's root for /proc/PID/ns/net,
    ``ip netns``' /etc/netns/<name> for a named namespace; None for other paths."""
    netns = str(netns or "")
    match = _PROC_NETNS.fullmatch(netns)
    if match:
        return f"/proc/{match.group(1)}/root", "etc/"
    if netns and "/" not in netns and "\x00" not in netns:
        return f"/etc/netns/{netns}", ""
    return None


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2(dir_fd, path, flags, resolve):
    """openat2(2) through libc's syscall(); raises OSError (ENOSYS before Linux 5.6)."""
    libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags, 0, resolve)
    fd = libc.syscall(SYS_OPENAT2, dir_fd, path.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def _open_beneath(root_fd, relpath):
    """An O_PATH descriptor of ``relpath`` resolved inside ``root_fd`` as if it were ``/``.

    openat2 with RESOLVE_IN_ROOT: absolute links and ``..`` stay inside the pod's root. Where
    the kernel lacks openat2, one component at a time with O_NOFOLLOW: no link is followed.
    """
    try:
        return _openat2(root_fd, relpath, os.O_PATH | os.O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    except OSError as exc:
        if exc.errno not in (errno.ENOSYS, errno.EPERM):  # EPERM: a seccomp filter refusing it
            raise
    parts = [p for p in relpath.split("/") if p]
    fd = os.dup(root_fd)
    try:
        for index, part in enumerate(parts):
            if part == "..":
                raise OSError(errno.EXDEV, "'..' in a pod file path", relpath)
            flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_DIRECTORY if index < len(parts) - 1 else 0)
            next_fd = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):
            raise OSError(errno.ELOOP, "a symbolic link", relpath)
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_pod_file(root, relpath, limit=MAX_POD_FILE):
    """The text of a regular file of the pod, or ``(None, why)``: never a host file, a FIFO, a device
    or more than ``limit`` bytes. The pod's files belong to the tenant: they are hostile input."""
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:  # no /etc/netns/<name> is the common case: nothing to read, nothing to say
        return None, None if exc.errno == errno.ENOENT else f"{root}: {exc.strerror}"
    try:
        path_fd = _open_beneath(root_fd, relpath)
    except OSError as exc:
        return None, f"{relpath}: {exc.strerror}" if exc.errno != errno.ENOENT else None
    finally:
        os.close(root_fd)
    try:
        st = os.fstat(path_fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"{relpath} is not a regular file"
        if st.st_size > limit:
            return None, f"{relpath} is larger than {limit} bytes"
        # Reopen what was checked, for reading (an O_PATH descriptor cannot read).
        fd = os.open(f"/proc/self/fd/{path_fd}", os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        return None, f"{relpath}: {exc.strerror}"
    finally:
        os.close(path_fd)
    try:
        data = os.read(fd, limit + 1)
    except OSError as exc:
        return None, f"{relpath}: {exc.strerror}"
    finally:
        os.close(fd)
    if len(data) > limit:
        return None, f"{relpath} is larger than {limit} bytes"
    return data.decode("utf-8", errors="replace"), None


def parse_resolv_conf(lines, family=4):
    """``(servers, search domains)`` as the resolver reads them: IPv4 servers for option 6, or with
    ``family=6`` the IPv6 ones for DHCPv6 option 23."""
    servers, search = [], []
    for line in lines:
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            # what the options would refuse (a scoped or link-local server, the other family) is left out
            address = (fields.ipv4 if family == 4 else fields.ipv6)(words[1], "nameserver", [])
            if address is not None:
                servers.append(address)
        elif words and words[0] in ("search", "domain"):
            search = words[1:]  # the last search/domain line wins, as in the resolver
    ignored = []
    domains = [d for d in (fields.domain_name(w, "search", ignored) for w in search) if d is not None]
    return servers[:MAX_DNS_SERVERS], domains[:MAX_SEARCH_DOMAINS]


def pod_dns_defaults(netns):
    """DNS servers, search domains and host name from the pod's own files, and warnings.

    A file that is missing gives nothing; one that is unsafe to read (a link out of the
    pod's root, a FIFO, a device, too large) gives nothing and a warning.
    """
    where = pod_files_dir(netns)
    if where is None:
        return [], [], None, [], []
    root, prefix = where
    warnings = []
    texts = {}
    for name in ("resolv.conf", "hostname"):
        texts[name], why = read_pod_file(root, prefix + name)
        if why:
            warnings.append(f"the pod's {name} was not used ({why}); DHCP options from it are left out")
    lines = (texts["resolv.conf"] or "").splitlines()
    servers, search = parse_resolv_conf(lines)
    hostname = (texts["hostname"] or "").strip() or None
    ignored = []
    return servers, search, fields.hostname(hostname, "hostname", ignored), parse_resolv_conf(lines, 6)[0], warnings
