# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: podnet-dhcpd's kernel interfaces - the per-pod packet socket and its
filter, the tap's MAC, namespace files, inotify. No policy here: the loop (``_dhcp_responder``) decides.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import queue
import socket
import struct
import threading

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as codec6
from ansible_collections.virtnet.podnet.plugins.module_utils._bpf_programs import dhcp_program

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SOL_PACKET, PACKET_IGNORE_OUTGOING = 263, 23
SIOCGIFHWADDR = 0x8927
IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_NONBLOCK, IN_CLOEXEC = 0x100, 0x200, 0x400, 0o4000, 0o2000000
IN_MOVE_SELF, IN_UNMOUNT, IN_Q_OVERFLOW, IN_IGNORED = 0x800, 0x2000, 0x4000, 0x8000
_READ_SIZE = 65536
_EVENT = struct.Struct("=iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name (NUL-padded)


def client_filter_program(v4: bool = True, v6: bool = False) -> list[tuple[int, int, int, int]]:
    """Classic BPF for the packet socket: IPv4 UDP to port 67 (not a later fragment) with ``v4``; IPv6 UDP to
    port 547 and ICMPv6 Router Solicitations with ``v6`` (the frames the tap's tc filter drops, the same code).

    The kernel then wakes us only for DHCP to a server (and RS), not for every frame the VM sends.
    """
    return dhcp_program(67 if v4 else None, 547 if v6 else None, codec6.ICMPV6_RS if v6 else None,
                        match=0xFFFF, nomatch=0, incoming_only=True)


_FILTERS = {(v4, v6): b"".join(struct.pack("=HBBI", *insn) for insn in client_filter_program(v4, v6))
            for v4 in (True, False) for v6 in (True, False) if v4 or v6}


def _attach_filter(sock: socket.socket, v4: bool = True, v6: bool = False) -> None:
    program = _FILTERS[(v4, v6)]
    buf = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(program) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_client_socket(tap: str, v4: bool = True, v6: bool = False) -> socket.socket:
    """The packet socket on a pod's tap, in the current namespace: it wakes only for the DHCP and
    RS frames the VM sends.

    Never for frames sent to the VM (out of the tap): anyone who reaches the pod's IP could send
    those to :67/:547 and fill the queue, before any rate limit, so that the VM's own requests
    are dropped. PACKET_IGNORE_OUTGOING (Linux 4.20) keeps them out of the queue; the filter's
    direction check does where the kernel lacks it.
    """
    # Protocol 0 until bound: nothing queues before the filter is attached.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        _attach_filter(sock, v4=v4, v6=v6)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            pass  # an older kernel: the filter alone
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        # ETH_P_ALL, not ETH_P_IP: only "all" taps run before tc ingress and the
        # bridge's rx handler; a protocol-bound socket never sees a bridged frame.
        sock.bind((tap, ETH_P_ALL))
    except OSError:
        sock.close()
        raise
    return sock


def hwaddr(sock: socket.socket, name: str) -> str | None:
    try:
        raw = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", name.encode()[:15]))
    except OSError:
        return None
    return raw[18:24].hex(":")


def ns_id(path: str):
    """``[st_dev, st_ino]`` of ``path``, None when it is missing; other errors raise (not a sign of a gone pod)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return [st.st_dev, st.st_ino]


def nsfs_device():
    """The device of the namespace filesystem: every namespace file lives on it."""
    return os.stat("/proc/self/ns/net").st_dev


class Inotify:
    """The few inotify calls we need, through ctypes (no third-party dependency)."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self.watches: dict[str, int] = {}

    def watch(self, path: str, mask: int) -> bool:
        wd = self._libc.inotify_add_watch(self.fd, path.encode(), mask)
        if wd < 0:
            return False
        self.watches[path] = wd
        return True

    def drain(self) -> bool:
        """Read (and discard) pending events; True if there were any."""
        return self.read_events() != []

    def read_events(self):
        """The pending events as ``[(wd, mask, name)]`` (name "" for an event on a watched directory itself),
        or None when the kernel's queue overflowed (IN_Q_OVERFLOW) or reading failed: then events were
        lost, and only a full look at the directories tells what changed."""
        events: list = []
        while True:
            try:
                data = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return events
            except OSError:
                return None
            if not data:
                return events
            if parse_events(data, events):
                return None
            if len(data) <= _READ_SIZE - _EVENT.size - 256:
                return events  # the next event would have fitted: none was left (no read to hear EAGAIN)

    def close(self) -> None:
        os.close(self.fd)


def parse_events(data: bytes, events: list) -> bool:
    """Append the events in one read of an inotify descriptor to ``events``; True when one of them says
    events were lost (IN_Q_OVERFLOW) or the buffer is not whole (never from the kernel)."""
    pos, end, size = 0, len(data), _EVENT.size
    while pos < end:
        if pos + size > end:
            return True
        wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
        pos += size
        if mask & IN_Q_OVERFLOW or pos + length > end:
            return True
        name = data[pos:pos + length].rstrip(b"\0")
        pos += length
        events.append((wd, mask, os.fsdecode(name)))
    return False


class Closer:
    """Closes packet sockets on a thread of its own: closing a bound packet socket waits for an RCU
    grace period in the kernel (packet_release -> synchronize_net: ~16 ms measured here, no CPU),
    which on the loop's thread stalled DHCP for every pod, per pod deleted."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = None

    def close(self, sock) -> None:
        """Close ``sock`` soon, off this thread (it is no longer read, its fd stays taken until then)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="podnet-dhcpd-closer", daemon=True)
            self._thread.start()
        self._queue.put(sock)

    def _run(self) -> None:
        while True:
            sock = self._queue.get()
            if sock is None:
                return
            try:
                sock.close()
            except OSError:
                pass

    def drain(self, timeout: float = 30.0) -> bool:
        """Close what is queued and stop the thread; False if it did not finish within ``timeout``."""
        if self._thread is None:
            return True
        self._queue.put(None)
        self._thread.join(timeout)
        done = not self._thread.is_alive()
        if done:
            self._thread = None  # a later close() starts another
        return done
