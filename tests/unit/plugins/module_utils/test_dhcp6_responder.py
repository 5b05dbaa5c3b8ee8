# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp_responder's IPv6 half (no sockets): DHCPv6 answers, Router Advertisements and their timers,
the lease state, the server DUID, and hostile frames."""

from __future__ import annotations

import errno
import io
import ipaddress
import os
import random
import struct

import pytest

pytest.importorskip("pyroute2")

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as c6  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as dr  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_pod as responder_pod  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _router_adverts as router_adverts  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir  # noqa: E402

from lib.pod_samples import MAC, declaration  # noqa: E402

BRIDGE_MAC = "02:00:00:00:00:01"
GW_MAC = "1e:38:fb:c0:1b:f0"
GW_LL = "fe80::1c38:fbff:fec0:1bf0"
CLIENT_LL = "fe80::858:aff:fef4:10a"
OTHER_MAC = "02:00:5e:10:00:99"
IPV6 = {"address": "fd00:58::7", "prefixlen": 64, "gateway": GW_LL, "gateway_mac": GW_MAC,
        "dns_servers": ["fd00:96::a"]}
DUID_LL_VM = bytes.fromhex("00030001") + bytes.fromhex(MAC.replace(":", ""))


class FakeSocket:
    """A packet socket on a link of ``mtu``: the kernel refuses a larger frame with EMSGSIZE; ``strict``
    makes that a test failure instead (a reply must never be larger than the link)."""

    def __init__(self, mtu=65535, strict=True):
        self.sent = []
        self.mtu, self.strict = mtu, strict

    def fileno(self):
        return -1

    def close(self):
        pass

    def send(self, frame):
        if len(frame) - 14 > self.mtu:
            assert not self.strict, f"a {len(frame) - 14}-byte frame on a link of MTU {self.mtu}"
            raise OSError(errno.EMSGSIZE, os.strerror(errno.EMSGSIZE))
        self.sent.append(bytes(frame))


@pytest.fixture
def responder(tmp_path):
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    r = dr.Responder(str(tmp_path / "run"), machine_id=str(machine_id))
    r.event_stream, r.event_stamped = io.StringIO(), False
    yield r
    r.selector.close()


def served(r, **ipv6):
    """A pod with an ``ipv6`` block, as open_socket leaves it (socket, bridge MAC, our link-local)."""
    extra = {}
    if ipv6.pop("_v6only", False):
        extra = {"ip": None, "prefixlen": None, "gateway": None, "routes": [], "dns_servers": []}
    v6 = dict(IPV6, **ipv6)
    pod = dr.Pod("pod1__eth0", declaration(ipv6=v6, **extra), None)
    pod.sock, pod.src_mac = FakeSocket(pod.mtu), BRIDGE_MAC
    pod.ll_src = c6.link_local_from_mac(BRIDGE_MAC)
    r.pods[pod.key] = pod
    return pod


def client_frame(mtype, options=(), src_mac=MAC, xid=0x123456, src_ip=CLIENT_LL):
    payload = c6.encode_message(mtype, xid, list(options))
    return c6.build_udp6_frame(src_mac, None, src_ip, c6.ALL_DHCP_AGENTS, payload, sport=546, dport=547, hop_limit=1)


def solicit(**kw):
    return client_frame(c6.SOLICIT, [c6.option(c6.OPT_CLIENTID, DUID_LL_VM), c6.ia_na_option(1, 0, 0),
                                     c6.option(c6.OPT_ELAPSED_TIME, b"\0\0")], **kw)


def request(r, **kw):
    return client_frame(c6.REQUEST, [c6.option(c6.OPT_CLIENTID, DUID_LL_VM), c6.option(c6.OPT_SERVERID, r.server_duid),
                                     c6.ia_na_option(1, 0, 0)], **kw)


def router_solicitation(src_mac=MAC, src_ip=CLIENT_LL):
    body = bytearray(struct.pack("!BBHI", 133, 0, 0, 0) + b"\x01\x01" + c6.mac_bytes(src_mac))
    src, dst = ipaddress.IPv6Address(src_ip).packed, ipaddress.IPv6Address("ff02::2").packed
    struct.pack_into("!H", body, 2, c6.checksum(src + dst + struct.pack("!I3xB", len(body), 58) + bytes(body)))
    header = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + src + dst
    return bytes.fromhex("333300000002") + c6.mac_bytes(src_mac) + b"\x86\xdd" + header + bytes(body)


def reply_of(frame):
    """(dst MAC, src MAC, src IP, dst IP, parsed DHCPv6 message) of a frame the responder sent."""
    assert frame[12:14] == b"\x86\xdd" and frame[20] == 17
    src, dst = str(ipaddress.IPv6Address(frame[22:38])), str(ipaddress.IPv6Address(frame[38:54]))
    sport, dport, length = struct.unpack("!HHH", frame[54:60])
    assert (sport, dport) == (547, 546)
    return frame[0:6].hex(":"), frame[6:12].hex(":"), src, dst, c6.parse_message(frame[62:54 + length])


def ra_of(frame):
    """The fields of a Router Advertisement frame the responder sent."""
    assert frame[12:14] == b"\x86\xdd" and frame[20] == 58 and frame[21] == 255 and frame[54] == 134
    out = {"dst_mac": frame[0:6].hex(":"), "src_mac": frame[6:12].hex(":"),
           "src": str(ipaddress.IPv6Address(frame[22:38])), "dst": str(ipaddress.IPv6Address(frame[38:54])),
           "flags": frame[59], "lifetime": struct.unpack("!H", frame[60:62])[0], "options": {}}
    pos = 70
    while pos < len(frame):
        kind, size = frame[pos], frame[pos + 1] * 8
        out["options"][kind] = frame[pos + 2:pos + size]
        pos += size
    src, dst = frame[22:38], frame[38:54]
    segment = frame[54:]
    assert c6.checksum(src + dst + struct.pack("!I3xB", len(segment), 58) + segment) == 0
    return out


def log(r):
    return r.event_stream.getvalue()


# -- the lease ------------------------------------------------------------------------------------
def test_lease6_of_a_declaration_lifetimes_and_t1_t2():
    lease = responder_pod.lease6_of(declaration(ipv6=IPV6, lease_time=600))
    assert lease["address"] == "fd00:58::7" and lease["prefixlen"] == 64 and lease["vm_mac"] == MAC
    assert lease["preferred_lifetime"] == lease["valid_lifetime"] == 600
    assert (lease["t1"], lease["t2"]) == (300, 480)
    assert lease["dns_servers"] == ["fd00:96::a"] and lease["search_domains"] == ["svc.cluster.local"]
    assert responder_pod.lease6_of(declaration()) is None and responder_pod.lease6_of(declaration(ipv6=None)) is None


def test_server_duid_from_machine_id_else_a_kept_random_value(tmp_path):
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    assert dr.node_id(run_dir, str(machine_id)) == b"0123456789abcdef0123456789abcdef"
    missing = str(tmp_path / "none")
    first = dr.node_id(run_dir, missing)
    assert len(first) == 32 and dr.node_id(run_dir, missing) == first  # kept in the run dir
    assert _rundir.read_lease_state(run_dir, "pod1__eth0") is None
    r1 = dr.Responder(run_dir, machine_id=missing)
    r2 = dr.Responder(run_dir, machine_id=missing)
    assert r1.server_duid == r2.server_duid == c6.server_duid(first)
    for r in (r1, r2):
        r.selector.close()


# -- DHCPv6 ---------------------------------------------------------------------------------------
def test_solicit_and_request_are_answered_to_the_clients_link_local(responder):
    pod = served(responder)
    responder.handle_frame(pod, solicit())
    dst_mac, src_mac, src, dst, msg = reply_of(pod.sock.sent[-1])
    assert (dst_mac, src_mac, dst) == (MAC, BRIDGE_MAC, CLIENT_LL)
    assert src == "fe80::ff:fe00:1"  # EUI-64 of the bridge's MAC
    assert msg["msg_type"] == c6.ADVERTISE and msg["xid"] == 0x123456 and msg["server_id"] == responder.server_duid
    ia = msg["ia_na"][0]
    assert ia["addresses"][0]["address"] == "fd00:58::7" and (ia["t1"], ia["t2"]) == (300, 480)
    assert ia["addresses"][0]["valid"] == ia["addresses"][0]["preferred"] == 600
    assert msg["dns_servers"] == ["fd00:96::a"] and msg["domain_list"] == ["svc.cluster.local"]
    assert responder._state(pod)["ipv6"]["state"] == "advertised"
    responder.handle_frame(pod, request(responder, xid=0x654321))
    msg = reply_of(pod.sock.sent[-1])[4]
    assert msg["msg_type"] == c6.REPLY and msg["ia_na"][0]["addresses"][0]["address"] == "fd00:58::7"
    text = log(responder)
    assert f"pod=pod1__eth0 mac={MAC} ip6=fd00:58::7 msg=SOLICIT reply=ADVERTISE xid=0x123456\n" in text
    assert f"pod=pod1__eth0 mac={MAC} ip6=fd00:58::7 msg=REQUEST reply=REPLY xid=0x654321\n" in text
    state = responder._state(pod)
    # The IPv4 header is as version 1 wrote it; the IPv6 lease is nested under "ipv6".
    assert state["version"] == 1 and state["ip"] == "10.244.1.10" and state["vm_mac"] == MAC
    assert "state" not in state  # no DHCPv4 exchange yet
    assert state["ipv6"]["state"] == "bound" and state["ipv6"]["address"] == "fd00:58::7"
    assert state["ipv6"]["last_message"] == "REQUEST" and state["ipv6"]["last_reply"] == "REPLY"
    assert state["ipv6"]["expires_at"] > state["ipv6"]["bound_at"]


def test_dhcpv4_and_dhcpv6_state_side_by_side(responder):
    pod = served(responder)
    payload = codec.encode_message({"op": 1, "xid": 77, "chaddr": MAC}, [(53, codec.DISCOVER)])
    responder.handle_frame(pod, codec.build_frame(MAC, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255",
                                                  payload, 68, 67))
    responder.handle_frame(pod, solicit())
    state = responder._state(pod)
    assert state["state"] == "offered" and state["last_message"] == "DISCOVER"
    assert state["ipv6"]["state"] == "advertised"
    assert f"pod=pod1__eth0 mac={MAC} ip=10.244.1.10 msg=DISCOVER reply=OFFER" in log(responder)


def test_decline_is_a_warning_and_release_is_recorded(responder):
    pod = served(responder)
    ids = [c6.option(c6.OPT_CLIENTID, DUID_LL_VM), c6.option(c6.OPT_SERVERID, responder.server_duid),
           c6.ia_na_option(1, 0, 0, [c6.iaaddr_option("fd00:58::7", 0, 0)])]
    responder.handle_frame(pod, client_frame(c6.DECLINE, ids, xid=5))
    assert "WARNING pod=pod1__eth0 mac=" in log(responder) and "msg=DECLINE reply=REPLY xid=0x000005: the VM found fd00:58::7 in use" in \
        log(responder)
    assert responder._state(pod)["ipv6"]["state"] == "declined"
    responder.handle_frame(pod, client_frame(c6.RELEASE, ids, xid=6))
    assert responder._state(pod)["ipv6"]["state"] == "released"


def test_foreign_mac_gets_nothing_and_is_not_logged(responder):
    pod = served(responder)
    responder.handle_frame(pod, solicit(src_mac=OTHER_MAC))
    responder.handle_frame(pod, router_solicitation(src_mac=OTHER_MAC))
    assert pod.sock.sent == [] and "msg=" not in log(responder) and pod.state == {}


def test_a_client_duid_over_another_mac_is_ignored_and_logged(responder):
    pod = served(responder)
    other = bytes.fromhex("00030001") + c6.mac_bytes(OTHER_MAC)
    frame = client_frame(c6.SOLICIT, [c6.option(c6.OPT_CLIENTID, other), c6.ia_na_option(1, 0, 0)])
    responder.handle_frame(pod, frame)
    assert pod.sock.sent == []
    assert "msg=SOLICIT reply=- xid=0x123456 (ignored SOLICIT: client DUID names" in log(responder)


def test_a_pod_without_ipv6_drops_ipv6_frames(responder):
    pod = dr.Pod("pod1__eth0", declaration(), None)
    pod.sock = FakeSocket()
    responder.handle_frame(pod, solicit())
    responder.handle_frame(pod, router_solicitation())
    assert pod.sock.sent == [] and pod.who == f"mac={MAC} ip=10.244.1.10"


def test_an_ipv6_only_pod_serves_no_dhcpv4(responder):
    pod = served(responder, _v6only=True)
    assert pod.decl["ip"] is None and pod.server_id is None and pod.who == f"mac={MAC} ip6=fd00:58::7"
    payload = codec.encode_message({"op": 1, "xid": 77, "chaddr": MAC}, [(53, codec.DISCOVER)])
    responder.handle_frame(pod, codec.build_frame(MAC, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255",
                                                  payload, 68, 67))
    assert pod.sock.sent == []
    responder.handle_frame(pod, solicit())
    assert reply_of(pod.sock.sent[-1])[4]["msg_type"] == c6.ADVERTISE
    assert responder._state(pod)["ip"] is None


# -- router advertisements ------------------------------------------------------------------------
def test_ra_for_a_64_from_the_gateway(responder):
    pod = served(responder)
    ra = ra_of(responder.router_advertisement(pod))
    assert (ra["src_mac"], ra["src"], ra["dst_mac"], ra["dst"]) == (GW_MAC, GW_LL, "33:33:00:00:00:01", "ff02::1")
    assert ra["flags"] & 0xC0 == 0xC0 and ra["lifetime"] == 1800
    assert ra["options"][c6.ND_OPT_SLLA] == c6.mac_bytes(GW_MAC)
    assert struct.unpack("!2xI", ra["options"][c6.ND_OPT_MTU])[0] == 1450
    prefix = ra["options"][c6.ND_OPT_PREFIX]
    assert prefix[0] == 64 and prefix[1] == 0x80  # L=1, A=0
    assert struct.unpack("!II", prefix[2:10]) == (600, 600)
    assert str(ipaddress.IPv6Address(prefix[14:30])) == "fd00:58::"


def test_ra_for_a_128_has_no_prefix_and_without_a_gateway_no_default_route(responder):
    pod = served(responder, prefixlen=128)
    assert c6.ND_OPT_PREFIX not in ra_of(responder.router_advertisement(pod))["options"]
    pod = served(responder, gateway=None, gateway_mac=None)
    ra = ra_of(responder.router_advertisement(pod))
    assert ra["lifetime"] == 0 and ra["src"] == pod.ll_src and ra["src_mac"] == BRIDGE_MAC
    assert ra["options"][c6.ND_OPT_SLLA] == c6.mac_bytes(BRIDGE_MAC)


def test_three_initial_ras_then_periodic_driven_by_timers(responder, monkeypatch):
    pod = served(responder)
    monkeypatch.setattr(random, "uniform", lambda low, high: 400.0)
    pod.ra.initial = router_adverts.INITIAL_RAS
    responder.schedule_ra(pod, 1000.0)
    assert responder.next_timer() == 1000.0
    responder.run_timers(999.0)
    assert pod.sock.sent == []
    sent_at = []
    for _round in range(6):
        due = responder.next_timer()
        responder.run_timers(due)
        sent_at.append(due)
    assert sent_at[:4] == [1000.0, 1004.0, 1008.0, 1408.0] and sent_at[4] == 1808.0
    assert len(pod.sock.sent) == 6 and all(ra_of(f)["lifetime"] == 1800 for f in pod.sock.sent)


def test_rs_is_answered_at_once_then_rate_limited(responder):
    pod = served(responder)
    pod.ra.initial = 0
    responder.handle_frame(pod, router_solicitation())
    assert len(pod.sock.sent) == 1 and ra_of(pod.sock.sent[0])["src"] == GW_LL
    assert "msg=RS reply=RA\n" in log(responder)
    last = pod.ra.last
    periodic = pod.ra.at
    assert periodic is not None and periodic - last >= 200
    for _round in range(10):  # a burst of RS: one RA MIN_DELAY_BETWEEN_RAS after the last, not ten
        responder.on_router_solicitation(pod, last + 1.0)
    assert len(pod.sock.sent) == 1 and pod.ra.at == last + router_adverts.MIN_DELAY_BETWEEN_RAS
    responder.run_timers(last + 2.9)
    assert len(pod.sock.sent) == 1
    responder.run_timers(last + 3.0)
    assert len(pod.sock.sent) == 2
    assert pod.ra.at - (last + 3.0) >= 200  # back to periodic


def test_ra_timers_of_closed_or_forgotten_pods_are_void(responder):
    pod = served(responder)
    responder.schedule_ra(pod, 10.0)
    responder.close_socket(pod, "test")
    assert responder.next_timer() is None
    responder.run_timers(20.0)
    assert pod.ra.at is None


def test_rs_and_dhcpv6_share_the_pods_log_budget(responder):
    pod = served(responder)
    for _round in range(responder_pod.LOG_LINES_PER_WINDOW + 10):
        responder.handle_frame(pod, solicit())
    assert log(responder).count("msg=SOLICIT") == responder_pod.LOG_LINES_PER_WINDOW
    assert responder.stats["suppressed_lines"] == 10


# -- reply size (issue 18 M1) ---------------------------------------------------------------------
def many_ias(r, mtype, count):
    ids = [c6.option(c6.OPT_CLIENTID, DUID_LL_VM)]
    if mtype in (c6.REQUEST, c6.RENEW):
        ids.append(c6.option(c6.OPT_SERVERID, r.server_duid))
    ias = [c6.ia_ta_option(i) if i % 2 else c6.ia_na_option(i, 0, 0) for i in range(count)]
    return client_frame(mtype, ids + ias)


@pytest.mark.parametrize("count", [45, 100, 170])
@pytest.mark.parametrize("mtype", [c6.SOLICIT, c6.REQUEST, c6.RENEW, c6.REBIND])
@pytest.mark.parametrize("mtu", [1280, 1450, 1500])
def test_dhcpv6_replies_fit_the_pods_mtu(responder, count, mtype, mtu):
    pod = served(responder)
    pod.mtu = pod.sock.mtu = mtu
    responder.handle_frame(pod, many_ias(responder, mtype, count))
    assert pod.sock is not None and len(pod.sock.sent) == 1, log(responder)
    assert len(pod.sock.sent[0]) - 14 <= mtu
    assert reply_of(pod.sock.sent[0])[4]["ia_na"][0]["addresses"][0]["address"] == IPV6["address"]


def test_emsgsize_on_send_is_a_drop_not_a_closed_socket(responder):
    """The link refusing a frame (EMSGSIZE) is a drop, counted, as ENOBUFS is: closing the socket made the
    rescan reopen it a second later and restart the initial RAs, for as long as the VM asked (issue 18 M1)."""
    pod = served(responder)
    sock = pod.sock = FakeSocket(mtu=60, strict=False)
    dropped = responder.stats["dropped"]
    responder.handle_frame(pod, solicit())
    responder.send_ra(pod, 0.0)
    assert pod.sock is sock and "socket closed" not in log(responder)
    assert responder.stats["dropped"] == dropped + 2 and responder.stats["replied"] == 0
    sock.mtu = 1500
    responder.handle_frame(pod, solicit())
    assert len(sock.sent) == 1 and responder.stats["replied"] == 1


# -- hostile frames -------------------------------------------------------------------------------
def test_mutated_frames_never_raise(responder):
    pod = served(responder)
    rng = random.Random(12)
    seeds = [solicit(), request(responder), router_solicitation(), many_ias(responder, c6.RENEW, 60)]
    pod.mtu = pod.sock.mtu = 1280  # the socket fails the test on any frame larger than the link
    for _round in range(3000):
        frame = bytearray(rng.choice(seeds))
        for _flip in range(rng.randint(1, 6)):
            frame[rng.randrange(12, len(frame))] = rng.randrange(256)
        if rng.random() < 0.2:
            frame = frame[:rng.randrange(14, len(frame))]
        frame[6:12] = c6.mac_bytes(MAC)
        responder.handle_frame(pod, bytes(frame))  # the loop catches nothing here: it must not raise
    assert responder.stats["dropped"] > 0
