# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: entering a pod's network namespace in-process."""

from __future__ import annotations

import contextlib
import os
import re

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._netlink import RawRtnl

try:
    from pyroute2 import IPRoute
    HAS_PYROUTE2 = True
    PYROUTE2_IMPORT_ERROR = None
except ImportError as exc:  # the sanity import test runs without pyroute2
    IPRoute = None
    HAS_PYROUTE2 = False
    PYROUTE2_IMPORT_ERROR = exc

NETNS_RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
# A name under /run/netns: what `ip netns add` accepts, without path tricks.
NETNS_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,254}$")


def netns_path(netns):
    """Return the namespace file for ``netns`` (a name under /run/netns or an absolute path)."""
    if not isinstance(netns, str) or not netns:
        raise PodnetError("netns: must be a namespace name under /run/netns or a path such as /proc/PID/ns/net",
                          netns=netns)
    if "/" in netns:
        if not netns.startswith("/"):
            raise PodnetError(f"netns: {netns!r} is a relative path; give a name under /run/netns or an absolute path",
                              netns=netns)
        return os.path.normpath(netns)
    if not NETNS_NAME.match(netns) or netns in (".", ".."):
        raise PodnetError(f"netns: {netns!r} is not a valid namespace name", netns=netns)
    return os.path.join(NETNS_RUN_DIR, netns)


def netns_inode(path):
    """(st_dev, st_ino) of the namespace file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_dev, st.st_ino]


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
            self._raw = RawRtnl()
        return self._raw

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._ipr is None:
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
    """Enter ``netns`` in this thread, yield ``(LazyIPRoute, path, inode)``, then return home.

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
            yield ipr, path, inode
        finally:
            if ipr is not None:
                ipr.close()  # sockets stay in the namespace they were made in: close them here
            setns(home)
    finally:
        os.close(target)
        if home is not None:
            os.close(home)
