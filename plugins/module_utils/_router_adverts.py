# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: podnet-dhcpd's Router Advertisements - the frame, and when to send it.

RFC 4861 6.2.4, 6.2.6: a few RAs at first, then one every 200..600 s (random), and answers to
Router Solicitations never closer together than MIN_DELAY_BETWEEN_RAS - one RA for however many
RS came meanwhile. ``RaSchedule`` is one pod's (pure: times in, decisions out); ``RaTimers`` the
node's heap of due times, whose entries a reschedule voids.
"""

from __future__ import annotations

import heapq
import random

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as codec6

INITIAL_RAS = 3
INITIAL_RA_INTERVAL = 4.0  # "a few seconds apart" (at most MAX_INITIAL_RTR_ADVERT_INTERVAL, 16 s)
RA_INTERVAL = (200.0, 600.0)  # MinRtrAdvInterval .. MaxRtrAdvInterval
MIN_DELAY_BETWEEN_RAS = 3.0
ROUTER_LIFETIME = 1800
NOW, LATER, COVERED = "now", "later", "covered"


def router_advertisement(decl: dict, src_mac: str, ll_src) -> bytes:
    """A pod's RA frame: from the gateway's link-local and MAC (``src_mac``/``ll_src``, ours, without),
    M and O set, router lifetime 0 without a gateway, MTU, and the on-link prefix (L=1, A=0) unless the
    address is a /128."""
    v6 = decl["ipv6"]
    prefix = f"{v6['address']}/{v6['prefixlen']}" if v6["prefixlen"] < 128 else None
    lifetime = decl["lease_time"]
    return codec6.build_router_advertisement(
        v6.get("gateway_mac") or src_mac, v6.get("gateway") or ll_src, prefix=prefix, mtu=decl.get("mtu"),
        router_lifetime=ROUTER_LIFETIME if v6.get("gateway") else 0, prefix_valid=lifetime,
        prefix_preferred=lifetime)


class RaSchedule:
    """One pod's RAs: ``at`` the next one due (None: none), ``initial`` initial ones still to send,
    ``last`` when the last went out, ``token`` voiding the timer entries of earlier schedules."""

    __slots__ = ("at", "initial", "last", "token")

    def __init__(self) -> None:
        self.at = None
        self.initial = 0
        self.last = None
        self.token = 0

    def stop(self) -> None:
        """No RA any more (the socket closed): every timer entry is void."""
        self.at = None
        self.token += 1

    def on_solicitation(self, now: float):
        """``(NOW, now)``: answer at once; ``(LATER, when)``: schedule the answer then; ``(COVERED, at)``:
        an RA already due by then answers this RS too."""
        earliest = now if self.last is None else max(now, self.last + MIN_DELAY_BETWEEN_RAS)
        if earliest <= now:
            return NOW, now
        if self.at is None or self.at > earliest:
            return LATER, earliest
        return COVERED, self.at

    def after_send(self, now: float, sent: bool, solicited: bool):
        """Record an RA sent (or not: the queue was full) at ``now``; the time of the next one to
        schedule, or None when the one already scheduled stands."""
        if sent:
            self.last = now
        if self.initial > 0:
            self.initial -= 1
        if self.initial > 0:
            return now + INITIAL_RA_INTERVAL
        if not solicited or self.at is None or self.at <= now:
            return now + random.uniform(*RA_INTERVAL)
        return None


class RaTimers:
    """The node's RA due times: a heap of ``(due, seq, key, token)``; an entry whose token is no longer
    its pod's is void and dropped when met."""

    def __init__(self) -> None:
        self.heap: list = []
        self._seq = 0

    def schedule(self, key: str, ra: RaSchedule, when: float) -> None:
        """The pod's next RA at ``when`` (its earlier entries are void)."""
        ra.token += 1
        ra.at = when
        self._seq += 1
        heapq.heappush(self.heap, (when, self._seq, key, ra.token))

    def pop_due(self, now: float, live):
        """The keys whose RA is due at ``now``; ``live(key, token)`` tells live entries from void ones."""
        due = []
        while self.heap and self.heap[0][0] <= now:
            _when, _seq, key, token = heapq.heappop(self.heap)
            if live(key, token):
                due.append(key)
        return due

    def next_due(self, live):
        """When the earliest live entry is due (void ones dropped on the way), or None."""
        while self.heap:
            when, _seq, key, token = self.heap[0]
            if live(key, token):
                return when
            heapq.heappop(self.heap)
        return None
