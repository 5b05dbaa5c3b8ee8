# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp4_server.answer4 and _lease_state.record: the pure cores of podnet-dhcpd's DHCPv4 side."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp4_server as dhcp4
from ansible_collections.virtnet.podnet.plugins.module_utils import _lease_state as lease_state

from lib.pod_samples import MAC, declaration

OTHER_MAC = "52:54:00:00:00:99"


def request(mtype, mac=MAC, options=(), **fields):
    return codec.encode_message({"op": 1, "xid": 0x1234, "chaddr": mac, **fields}, [(53, mtype), *options])


@pytest.fixture(scope="module")
def lease():
    return dhcp4.Lease4(declaration())


def test_discover_gets_an_offer_of_the_pod_ip(lease):
    result = dhcp4.answer4(lease, request(codec.DISCOVER, options=[(55, [1, 3, 6])]), "255.255.255.255")
    assert result.reply == codec.OFFER and result.detail == ""
    msg = codec.decode_message(result.payload)
    assert msg["message_type"] == codec.OFFER and msg["yiaddr"] == "10.244.1.10" and msg["xid"] == 0x1234
    assert (result.dst_mac, result.dst_ip) == (MAC, "10.244.1.10")  # unicast (RFC 2131 4.1)
    broadcast = dhcp4.answer4(lease, request(codec.DISCOVER, flags=0x8000), "255.255.255.255")
    assert (broadcast.dst_mac, broadcast.dst_ip) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")


@pytest.mark.parametrize("fields, options, dst, reply, detail", [
    ({}, [(50, "10.244.1.10"), (54, "10.244.1.1")], "255.255.255.255", codec.ACK, "selecting"),
    ({}, [(50, "10.244.1.10")], "255.255.255.255", codec.ACK, "init-reboot"),
    ({}, [(50, "10.244.1.77")], "255.255.255.255", codec.NAK, "init-reboot, asked for 10.244.1.77"),
    ({"ciaddr": "10.244.1.10"}, [], "10.244.1.1", codec.ACK, "renewing to 10.244.1.1"),
    ({"ciaddr": "10.244.1.10"}, [], "255.255.255.255", codec.ACK, "rebinding to 255.255.255.255"),
    ({}, [(50, "10.244.1.10"), (54, "10.9.9.9")], "255.255.255.255", None, "selecting another server"),
    ({}, [], "255.255.255.255", None, None),  # a REQUEST naming no address: dropped silently
])
def test_request_states(lease, fields, options, dst, reply, detail):
    result = dhcp4.answer4(lease, request(codec.REQUEST, options=options, **fields), dst)
    assert (result.reply, result.detail) == (reply, detail)
    assert (result.payload is None) == (reply is None)
    if reply is not None:
        assert codec.decode_message(result.payload)["message_type"] == reply


@pytest.mark.parametrize("mtype", [codec.RELEASE, codec.DECLINE])
def test_release_and_decline_are_noted_not_answered(lease, mtype):
    result = dhcp4.answer4(lease, request(mtype, ciaddr="10.244.1.10"), "10.244.1.1")
    assert result.request["message_type"] == mtype and result.reply is None and result.detail == ""


def test_inform_gets_an_ack_without_lease_times(lease):
    result = dhcp4.answer4(lease, request(codec.INFORM, ciaddr="10.244.1.10"), "255.255.255.255")
    assert result.reply == dhcp4.INFORM_ACK
    assert not {51, 58, 59} & set(codec.scan_options(result.payload))


@pytest.mark.parametrize("payload", [
    request(codec.DISCOVER, mac=OTHER_MAC),  # another VM's
    request(codec.DISCOVER, giaddr="10.0.0.1"),  # relayed: not from the tap's VM
    request(codec.OFFER),  # a server's message
    b"", b"\x01" * 239,
])
def test_not_a_request_of_this_vm_is_dropped(lease, payload):
    result = dhcp4.answer4(lease, payload, "255.255.255.255")
    assert result.payload is None and result.reply is None


def test_a_reply_that_cannot_fit_says_so():
    tight = dhcp4.Lease4(declaration(mtu=300))  # below the 576 bytes every client takes: nothing fits
    result = dhcp4.answer4(tight, request(codec.DISCOVER), "255.255.255.255")
    assert result.reply == codec.OFFER and result.payload is None and "MTU 300" in result.reason


def test_answer4_never_raises_even_when_its_lease_does(monkeypatch):
    broken = dhcp4.Lease4(declaration())
    monkeypatch.setattr(dhcp4.Lease4, "reply_payload", lambda *_args: 1 / 0)
    result = dhcp4.answer4(broken, request(codec.DISCOVER), "255.255.255.255")
    assert result.payload is None and result.reason.startswith("malformed: ZeroDivisionError")


@settings(max_examples=1500, deadline=None)
@given(mtype=st.sampled_from([1, 3, 4, 7, 8]), mtu=st.integers(576, 1500), flips=st.lists(
    st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=8), cut=st.integers(0, 600),
    tail=st.binary(max_size=64))
def test_answer4_on_mutated_messages_never_raises_and_fits_the_link(mtype, mtu, flips, cut, tail):
    lease = dhcp4.Lease4(declaration(mtu=mtu))
    payload = bytearray(request(mtype, options=[(55, list(range(1, 80)))], ciaddr="10.244.1.10"))
    for offset, value in flips:
        if offset < len(payload):
            payload[offset] = value
    result = dhcp4.answer4(lease, bytes(payload[:cut]) + tail, "255.255.255.255")
    assert isinstance(result, dhcp4.Answer4)
    if result.payload is not None:
        assert len(result.payload) + dhcp4.UDP_IP_HEADERS <= mtu


# -- one lease-state machine for both families ------------------------------------------------------

@pytest.mark.parametrize("events, expected", [
    ([lease_state.OFFERED], {"state": "offered", "offered_at": 1}),
    ([lease_state.OFFERED, lease_state.RENEWED],
     {"state": "bound", "bound_at": 2, "expires_at": 602, "offered_at": 1}),
    ([lease_state.RENEWED, lease_state.RENEWED],
     {"state": "bound", "bound_at": 1, "expires_at": 602, "last_renewal": 2}),
    ([lease_state.BOUND, lease_state.BOUND], {"state": "bound", "bound_at": 1, "expires_at": 602}),
    ([lease_state.ADVERTISED, lease_state.BOUND, lease_state.RELEASED],
     {"state": "released", "advertised_at": 1, "bound_at": 2, "expires_at": 602, "released_at": 3}),
    ([lease_state.RENEWED, lease_state.DECLINED, lease_state.OFFERED],
     {"state": "declined", "bound_at": 1, "expires_at": 601, "declined_at": 2, "offered_at": 3}),
    ([lease_state.NAKED, lease_state.INFORMED, None], {"last_nak": 1, "last_inform": 2}),
])
def test_lease_state_machine(events, expected):
    state = {}
    for now, event in enumerate(events, start=1):
        lease_state.record(state, event, "MSG", "REPLY", float(now), 600)
    assert {k: v for k, v in state.items() if k not in ("last_message", "last_reply", "updated_at")} == expected
    assert state["updated_at"] == len(events) and state["last_message"] == "MSG"
