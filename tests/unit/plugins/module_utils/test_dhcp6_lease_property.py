# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp6_codec: every lease ``normalise_lease`` accepts is one ``answer()`` can serve (issue 18 M3).

``answer()`` never raises; a lease that passed the check must not make it raise at serve time,
as a scoped address (``fd00::53%eth0``, which Python's ipaddress takes) did in ``inet_pton``.
"""

from __future__ import annotations

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as c
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

VM_MAC = "02:00:5e:10:00:01"
SERVER_ID = c.server_duid(b"0123456789abcdef0123456789abcdef\n")
CLIENT_ID = c.option(c.OPT_CLIENTID, bytes.fromhex("00030001") + bytes.fromhex(VM_MAC.replace(":", "")))
HOSTILE_SCOPED = "fd00::53%\x1b[2J" + "x" * 4000
SCOPED = ["fd00::53%eth0", "fe80::1%1", "fd00:10:244::10%0", "::ffff:10.0.0.1%a", HOSTILE_SCOPED]
LEASE = {"vm_mac": VM_MAC, "address": "fd00:10:244::10", "prefixlen": 64, "dns_servers": ["fd00:96::a"],
         "search_domains": ["svc.cluster.local"], "preferred_lifetime": 3600, "valid_lifetime": 7200}


def _messages():
    """A valid message of each type the server answers, asking for one IA_NA where it may."""
    ia = c.ia_na_option(1, 0, 0, [c.iaaddr_option("fd00:10:244::10", 0, 0)])
    ours = c.option(c.OPT_SERVERID, SERVER_ID)
    asks = {c.SOLICIT: [CLIENT_ID, ia], c.REQUEST: [CLIENT_ID, ours, ia], c.RENEW: [CLIENT_ID, ours, ia],
            c.REBIND: [CLIENT_ID, ia], c.CONFIRM: [CLIENT_ID, ia], c.INFORMATION_REQUEST: [CLIENT_ID]}
    return [c.encode_message(mtype, 0x123456, options) for mtype, options in asks.items()]


MESSAGES = _messages()
UNICAST = st.ip_addresses(v=6).filter(lambda a: not (a.is_multicast or a.is_loopback or a.is_unspecified)).map(str)
HOSTILE_ADDRESS = st.one_of(
    st.sampled_from(SCOPED + ["FD00::A", "::ffff:10.0.0.1", "::1", "ff02::1", "10.0.0.1", "fd00::1%", "fd00::1%%",
                              "fd00::1%eth0%eth1", " fd00::1", "fd00::1\n", "fd00::\u0661", "fe80::1"]),
    st.builds("{}%{}".format, UNICAST, st.text(max_size=4100)),
    st.text(max_size=64),
)
LABELS = st.lists(st.text(alphabet="az09_", min_size=1, max_size=20), min_size=1, max_size=4)
DOMAINS = st.one_of(st.lists(LABELS.map(".".join), max_size=6),
                    st.just([f"d{i}." + "x" * 60 + ".example" for i in range(64)]))  # the most a lease holds
LIFETIME = st.one_of(st.integers(0, 0xFFFFFFFF), st.sampled_from([-1, c.INFINITY, 2 ** 32]))


@st.composite
def leases(draw):
    """A lease that is valid but for at most one field given a hostile value: about half are accepted."""
    valid = draw(st.integers(0, c.INFINITY))
    lease = {"vm_mac": draw(st.sampled_from([VM_MAC, VM_MAC.upper()])), "address": draw(UNICAST),
             "prefixlen": draw(st.integers(1, 128)), "dns_servers": draw(st.lists(UNICAST, max_size=8)),
             "search_domains": draw(DOMAINS), "valid_lifetime": valid,
             "preferred_lifetime": draw(st.integers(0, valid))}
    poisoned = draw(st.sampled_from([None, "address", "dns_servers", "search_domains", "lifetimes"]))
    if poisoned == "address":
        lease["address"] = draw(HOSTILE_ADDRESS)
    elif poisoned == "dns_servers":
        lease["dns_servers"] = lease["dns_servers"] + [draw(HOSTILE_ADDRESS)]
    elif poisoned == "search_domains":
        lease["search_domains"] = lease["search_domains"][:63] + [draw(st.text(max_size=300))]
    elif poisoned == "lifetimes":
        lease.update(draw(st.fixed_dictionaries({}, optional={name: st.one_of(st.none(), LIFETIME) for name in (
            "preferred_lifetime", "valid_lifetime", "t1", "t2", "information_refresh_time")})))
    return lease


@pytest.mark.parametrize("field, value", [("address", s) for s in SCOPED] + [("dns_servers", [s]) for s in SCOPED])
def test_scoped_addresses_are_refused(field, value):
    with pytest.raises(PodnetError) as info:
        c.normalise_lease(dict(LEASE, **{field: value}))
    assert field in info.value.msg


MTU = st.one_of(st.integers(1280, 1500), st.sampled_from([1280, 1281, 1500, 9000]), st.integers(1501, 65535),
                st.integers(68, 1279))
UDP6_HEADERS = 48  # IPv6 40 + UDP 8: a reply of n bytes takes n + 48 of the link MTU


@given(raw=leases(), mtu=MTU)
@example(raw=dict(LEASE, dns_servers=[HOSTILE_SCOPED]), mtu=1280)
@example(raw=dict(LEASE, address="fd00:10:244::10%eth0"), mtu=1280)
@example(raw=dict(LEASE, search_domains=[f"d{i}." + "x" * 60 + ".example" for i in range(64)],
                  dns_servers=[f"fd00:96::{i:x}" for i in range(1, 9)]), mtu=1280)
@settings(max_examples=300, deadline=None)
def test_property_every_accepted_lease_is_answered(raw, mtu):
    """... and within the link MTU (issue 18 M1): the largest lease (64 long search domains, 8 servers) too."""
    try:
        lease = c.normalise_lease(raw)
    except PodnetError:
        event("refused")
        return  # refused, with its fields named: never served
    for message in MESSAGES:
        for given_lease in (lease, raw):  # answer() takes the lease raw or normalised
            result = c.answer(message, given_lease, SERVER_ID, VM_MAC, mtu=mtu)
            assert isinstance(result, c.Answer)
            if mtu >= c.IPV6_MIN_MTU:
                assert result.reply is not None, result.reason  # every IPv6 link carries the lease itself
            if result.reply is not None:
                assert len(result.reply) + UDP6_HEADERS <= mtu, (len(result.reply), mtu)
                c.parse_message(result.reply)
