# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: one lease-state machine for DHCPv4 and DHCPv6 (pure, no I/O).

The responder records what each exchange did to a lease; ``vm_pod_network_info`` reads it
back (``lease-state/<key>.json``: the IPv4 lease's fields at the top, the IPv6 lease's under
``ipv6``). Each family maps a (message, reply) to one of the events below; ``record`` is the
only place a state changes.
"""

from __future__ import annotations

OFFERED = "offered"  # DHCPv4 OFFER
ADVERTISED = "advertised"  # DHCPv6 ADVERTISE
BOUND = "bound"  # an address given (a DHCPv6 Solicit with rapid commit or Request)
RENEWED = "renewed"  # an address given again: a renewal when already bound (DHCPv4 ACK, DHCPv6 Renew/Rebind)
NAKED = "nak"
INFORMED = "inform"
RELEASED = "released"
DECLINED = "declined"


def record(state: dict, event, message: str, reply, now: float, lease_time: int) -> dict:
    """Apply ``event`` (one of the above, or None: only noted) at ``now``; returns ``state``, changed in place.

    ``message`` and ``reply`` are the exchange's names (``reply`` None when nothing was sent).
    """
    state["last_message"] = message
    state["last_reply"] = reply
    state["updated_at"] = now
    if event in (OFFERED, ADVERTISED):
        state[event + "_at"] = now
        state.setdefault("state", event)
    elif event in (BOUND, RENEWED):
        if event == RENEWED and state.get("state") == BOUND:
            state["last_renewal"] = now
        state["state"] = BOUND
        state.setdefault("bound_at", now)
        state["expires_at"] = now + lease_time
    elif event == NAKED:
        state["last_nak"] = now
    elif event == INFORMED:
        state["last_inform"] = now
    elif event in (RELEASED, DECLINED):
        state["state"] = event
        state[event + "_at"] = now
    return state
