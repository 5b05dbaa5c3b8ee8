# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: what podnet-dhcpd keeps per pod - its declaration's leases, its socket,
its budgets (frames, log lines), its RA schedule - and the node's DHCPv6 identity.
"""

from __future__ import annotations

import socket
import time

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp4_server as dhcp4
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as codec6
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir as rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._router_adverts import RaSchedule

# A DHCP client sends a handful of frames a minute; a VM sending more is paused (its socket
# is not read, the kernel drops what overflows it) so one VM cannot starve the others.
FRAMES_PER_SECOND = 20.0
FRAME_BURST = 40.0
# Frames a paused pod's socket may hold (SO_RCVBUF 64 KiB, doubled by the kernel, at least ~640 bytes of
# buffer per frame): what is dropped on resuming, at most, however fast its VM refills the queue meanwhile.
PAUSED_DISCARD = 256
LOG_LINES_PER_WINDOW = 20  # per pod; the rest are counted and reported once per window
LOG_WINDOW = 10.0
MACHINE_ID = "/etc/machine-id"


def lease6_of(decl: dict):
    """The DHCPv6 lease (``_dhcp6_codec.normalise_lease``) of a declaration with an ``ipv6`` block, else None.

    Valid and preferred lifetimes are the declaration's lease_time (T1, T2: 0.5 and 0.8 of it).
    """
    v6 = decl.get("ipv6")
    if not v6:
        return None
    return codec6.normalise_lease({
        "vm_mac": decl["vm_mac"], "address": v6["address"], "prefixlen": v6["prefixlen"],
        "dns_servers": v6.get("dns_servers") or [], "search_domains": decl.get("search_domains") or [],
        "preferred_lifetime": decl["lease_time"], "valid_lifetime": decl["lease_time"]})


def node_id(run_dir: str, path: str = MACHINE_ID) -> bytes:
    """The stable node value the server DUID is hashed from: /etc/machine-id, else a random value kept
    in the run dir (the same DUID until the node reboots)."""
    try:
        with open(path, "rb") as handle:
            value = handle.read(4096).strip()
        if value:
            return value
    except OSError:
        pass
    return rundir.dhcp6_node_id(run_dir)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, time.monotonic()

    def take(self, now: float) -> bool:
        if not self.available(now):
            return False
        if self.rate > 0:
            self.tokens -= 1.0
        return True

    def available(self, now: float) -> bool:
        """Whether a token is there (none is taken)."""
        if self.rate <= 0:
            return True  # unlimited (--frame-rate 0)
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return self.tokens >= 1.0

    def next_token(self, now: float) -> float:
        """When the next token is there."""
        return now + max(0.0, 1.0 - self.tokens) / self.rate


class LineBudget:
    """At most LOG_LINES_PER_WINDOW lines per LOG_WINDOW seconds; the rest only counted."""

    __slots__ = ("start", "used", "suppressed")

    def __init__(self) -> None:
        self.start, self.used, self.suppressed = 0.0, 0, 0

    def roll(self, now: float) -> int:
        """Start a new window when this one is over; return how many lines the old one suppressed."""
        if now - self.start < LOG_WINDOW:
            return 0
        suppressed = self.suppressed
        self.start, self.used, self.suppressed = now, 0, 0
        return suppressed

    def allow(self) -> bool:
        if self.used < LOG_LINES_PER_WINDOW:
            self.used += 1
            return True
        self.suppressed += 1
        return False


class Pod:
    """One declared lease: the declaration, its DHCPv4 and DHCPv6 leases, the socket in the pod's namespace."""

    __slots__ = ("key", "decl", "file_id", "sock", "src_mac", "mac_bytes", "lease4", "state", "dirty", "ns_id",
                 "unseen_warned", "last_error", "server_id", "bucket", "resume_at", "log_budget", "mtu", "v6", "who",
                 "ll_src", "ra", "frames4", "frames6")

    def __init__(self, key: str, decl: dict, file_id) -> None:
        self.key = key
        self.decl = decl
        self.file_id = file_id
        self.sock: socket.socket | None = None
        self.src_mac = "02:00:00:00:00:01"
        self.mac_bytes = codec.mac_bytes(decl["vm_mac"])
        self.lease4 = dhcp4.Lease4(decl) if decl.get("ip") else None  # None: no IPv4 served
        self.state: dict = {}
        self.dirty = False
        self.ns_id = None
        self.unseen_warned = False  # warned that its netns path holds no namespace in our view
        self.last_error = None
        self.server_id = self.lease4.server_id if self.lease4 else None
        self.v6 = lease6_of(decl)  # the DHCPv6 lease, None when no IPv6 is served
        who = f"mac={decl['vm_mac']}"
        if decl.get("ip") or not self.v6:
            who += f" ip={decl.get('ip')}"
        self.who = who + (f" ip6={self.v6['address']}" if self.v6 and not decl.get("ip") else "")
        self.ll_src = None  # our link-local (EUI-64 of the bridge's MAC): the source of DHCPv6 replies
        self.ra = RaSchedule()
        self.bucket = TokenBucket(FRAMES_PER_SECOND, FRAME_BURST)
        self.resume_at = None  # set while the socket is paused for sending too much
        self.log_budget = LineBudget()
        self.mtu = decl.get("mtu") or 1500
        # _reply_frames.Frames4 and Frames6 of the socket open now (their source MAC is the bridge's).
        self.frames4 = self.frames6 = None
