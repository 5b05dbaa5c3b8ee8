# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: entering a pod's network namespace in-process."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import socket
import struct

from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

# pyroute2 is imported where first used (LazyIPRoute): the import costs ~0.3 s, and plumbing
# needs it only for the rare restores; the sanity import test runs without it. _netlink too: the
# responder uses identity/setns/socket_cookie only and its node install holds no netlink code.
HAS_PYROUTE2 = importlib.util.find_spec("pyroute2") is not None
PYROUTE2_IMPORT_ERROR = None if HAS_PYROUTE2 else "No module named 'pyroute2'"

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
SO_NETNS_COOKIE = 71  # Linux >= 5.14: a namespace's 64-bit id, never reused while the system runs
# A name under /run/netns: what `ip netns add` accepts, without path tricks.
NETNS_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}")  # fullmatch: what `ip netns add` accepts
PATH_MAX = 4095


def netns_path(netns):
    """Return the namespace file for ``netns`` (a name under /run/netns or an absolute path)."""
    if not isinstance(netns, str) or not netns:
        raise PodnetError("netns: must be a namespace name under /run/netns or a path such as /proc/PID/ns/net",
                          netns=netns)
    if fields.has_control(netns) or len(netns) > PATH_MAX:
        raise PodnetError(f"netns: {netns[:80]!r} is not a usable path (a control character, or too long)",
                          netns=netns[:80])
    if "/" in netns:
        if not netns.startswith("/"):
            raise PodnetError(f"netns: {netns!r} is a relative path; give a name under /run/netns or an absolute path",
                              netns=netns)
        return os.path.normpath(netns)
    if not NETNS_NAME.fullmatch(netns) or netns in (".", ".."):
        raise PodnetError(f"netns: {netns!r} is not a valid namespace name", netns=netns)
    return os.path.join(NETNS_RUN_DIR, netns)


def netns_inode(path):
    """(st_dev, st_ino) of the namespace file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # ENAMETOOLONG, ELOOP, EACCES: a clear error, not a traceback
        raise PodnetError(f"netns: {path[:80]!r} cannot be looked up: {exc.strerror}", netns=path[:80]) from None
    return [st.st_dev, st.st_ino]


def current_cookie():
    """The cookie of this thread's network namespace, or None before Linux 5.14."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            return struct.unpack("=Q", sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
    except OSError:
        return None


def socket_cookie(sock):
    """The cookie of the network namespace ``sock`` was made in, or None before Linux 5.14."""
    try:
        return struct.unpack("=Q", sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
    except OSError:
        return None


def identity(path):
    """``{"inode": [dev, ino], "cookie": int | None}`` of the namespace at ``path``, or None when it is gone
    (``PodnetError`` when that cannot be told).

    The inode alone is not an identity: the kernel hands a freed namespace's number to the
    next one. The cookie is never reused; reading it means entering the namespace.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        # Only a missing path means gone: one we may not open (EACCES, EPERM: a /proc/PID/ns/net of
        # another user without CAP_SYS_PTRACE) is alive as far as we know, and its records stay.
        raise PodnetError(f"cannot tell whether network namespace {path} still exists: {exc.strerror or exc}",
                          netns=path) from None
    try:
        st = os.fstat(fd)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                setns(fd)
            except OSError:
                return None  # not a network namespace: nothing of ours lives there
            try:
                cookie = current_cookie()
            finally:
                setns(home)
        finally:
            os.close(home)
    finally:
        os.close(fd)
    return {"inode": [st.st_dev, st.st_ino], "cookie": cookie}


def setns(fd):
    """Move this thread into the network namespace open at ``fd``."""
    # os.setns exists from Python 3.12; fall back to libc for older controllers' targets.
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class LazyIPRoute:
    """An ``IPRoute`` made on first use only, while the thread is still inside the namespace.

    Plumbing reads and writes with small raw netlink requests (see ``_netlink``); pyroute2,
    whose socket setup alone costs ~0.7 ms, serves the rarer restores of addresses and routes.
    """

    def __init__(self):
        self._raw = None
        self._ipr = None

    @property
    def raw(self):
        """The raw rtnetlink socket (``_netlink.RawRtnl``), made on first use, inside the namespace."""
        if self._raw is None:
            from ansible_collections.virtnet.podnet.plugins.module_utils._netlink import RawRtnl
            self._raw = RawRtnl()
        return self._raw

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._ipr is None:
            from pyroute2 import IPRoute
            self._ipr = IPRoute()
        return getattr(self._ipr, name)

    def close(self):
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None


@contextlib.contextmanager
def entered(netns):
    """Enter ``netns`` in this thread, yield ``(LazyIPRoute, path, identity)``, then return home.

    ``identity`` is ``{"inode": [st_dev, st_ino], "cookie": SO_NETNS_COOKIE or None}``.

    setns once and in-process sockets: ``IPRoute(netns=...)`` forks a helper (~15 ms).
    Sockets keep the namespace they were created in, so they are opened inside.
    """
    if not HAS_PYROUTE2:
        raise PodnetError("pyroute2 is required", error=str(PYROUTE2_IMPORT_ERROR))
    path = netns_path(netns)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PodnetError(f"network namespace {netns!r} not found ({path} does not exist)", netns=netns) from None
    except OSError as exc:
        raise PodnetError(f"network namespace {netns!r} cannot be opened: {exc.strerror}", netns=netns) from None
    home = None
    ipr = None
    try:
        st = os.fstat(target)
        inode = [st.st_dev, st.st_ino]
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(target)
        except OSError as exc:
            raise PodnetError(f"{path} is not a network namespace or cannot be entered: {exc.strerror}",
                              netns=netns) from None
        try:
            ipr = LazyIPRoute()
            yield ipr, path, {"inode": inode, "cookie": current_cookie()}
        finally:
            if ipr is not None:
                ipr.close()  # sockets stay in the namespace they were made in: close them here
            setns(home)
    finally:
        os.close(target)
        if home is not None:
            os.close(home)
