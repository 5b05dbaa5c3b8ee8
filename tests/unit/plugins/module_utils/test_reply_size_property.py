# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every reply podnet-dhcpd sends fits the pod's link (issue 18 M1, "the fuzzers also assert reply size <= MTU").

Property tests over generated pods and requests, at both levels:

- pure: ``Lease4.reply_payload`` (DHCPv4: within the declared MTU and the VM's option 57, never below
  the 576 bytes every client takes), ``_dhcp6_codec.answer(..., mtu=)`` (DHCPv6: 45-170 IA_NA,
  IA_TA and IA_PD with nested addresses and prefixes) and ``Responder.router_advertisement``;
- the frames the responder hands its socket (``handle_frame``): a frame of n bytes takes n - 14
  of the link MTU. The fake socket takes frames of any size (it does not play the kernel's
  EMSGSIZE, which would hide an oversized reply as a drop): the test itself checks each one.

Each property also asserts a reply *is* sent where one fits (the bound is not met by silence).
"""

from __future__ import annotations

import io
import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as c6  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as dr  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError  # noqa: E402

from lib.pod_samples import MAC, declaration  # noqa: E402

ETHERNET = 14
UDP4_HEADERS = 28  # IPv4 20 + UDP 8: a DHCPv4 payload of n bytes takes n + 28 of the link MTU
UDP6_HEADERS = 48  # IPv6 40 + UDP 8
MIN_DATAGRAM = 576  # RFC 2131 2: every DHCPv4 client takes a 576-byte datagram, whatever its option 57
BRIDGE_MAC = "02:00:00:00:00:01"
GW_MAC = "1e:38:fb:c0:1b:f0"
GW_LL = "fe80::1c38:fbff:fec0:1bf0"
CLIENT_LL = "fe80::858:aff:fef4:10a"
DUID_LL_VM = bytes.fromhex("00030001") + bytes.fromhex(MAC.replace(":", ""))
SETTINGS = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SETTINGS6 = settings(SETTINGS, max_examples=150)  # 45-170 IAs a message: fewer, larger examples


class LinkSocket:
    """The pod's packet socket, recording what the responder sends: any size, so an oversized reply reaches
    the test's assertion instead of becoming a silent EMSGSIZE drop."""

    def __init__(self):
        self.sent = []

    def fileno(self):
        return -1

    def close(self):
        pass

    def send(self, frame):
        self.sent.append(bytes(frame))


@pytest.fixture(scope="module")
def responder(tmp_path_factory):
    directory = tmp_path_factory.mktemp("reply-size")
    machine_id = directory / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    r = dr.Responder(str(directory / "run"), machine_id=str(machine_id))
    r.event_stream, r.event_stamped = io.StringIO(), False
    yield r
    r.selector.close()


def _fresh(r):
    """The module's responder with its log and counters emptied (they are not what is tested)."""
    r.event_stream = io.StringIO()
    r.pods.clear()
    return r


# -- DHCPv4 ---------------------------------------------------------------------------------------
V4_MTU = st.one_of(st.integers(576, 1500), st.sampled_from([576, 577, 600, 1280, 1450, 1500]),
                   st.integers(68, 575), st.integers(1501, 9000))
OPTION_57 = st.one_of(st.none(), st.integers(0, 0xFFFF), st.sampled_from([0, 1, 548, 575, 576, 577, 1500, 0xFFFF]))
# Option 55 lists: none, short, and huge (up to 600 codes: more than one option instance, RFC 3396).
OPTION_55 = st.one_of(st.none(), st.lists(st.integers(0, 255), max_size=20),
                      st.lists(st.integers(0, 255), min_size=200, max_size=600),
                      st.permutations(range(256)).map(list))
LONG_DOMAINS = [f"d{i}-" + "x" * 50 + ".example" for i in range(15)]  # about 1,000 bytes encoded: what fits


@st.composite
def v4_declarations(draw):
    """A valid declaration, from the sample's lean one to one whose full reply is far larger than any MTU."""
    extra = {"mtu": draw(V4_MTU),
             "dns_servers": [f"10.96.0.{i}" for i in range(1, draw(st.integers(1, 16)) + 1)],
             "search_domains": draw(st.sampled_from([["svc.cluster.local"], LONG_DOMAINS[:4], LONG_DOMAINS])),
             "hostname": draw(st.sampled_from(["vm1", "h" * 63]))}
    options = {}
    if draw(st.booleans()):
        options["private_options"] = [{"option": code, "value": draw(st.sampled_from(["p", "v" * 120, "w" * 255]))}
                                      for code in draw(st.lists(st.integers(224, 254), unique=True, max_size=31))]
    if draw(st.booleans()):
        options["boot_file_name"] = "b" * draw(st.integers(1, 255))
        options["tftp_server_name"] = draw(st.sampled_from(["10.0.0.5", "t" * 200]))
        options["ntp_servers"] = [f"10.1.0.{i}" for i in range(1, 9)]
    if options:
        extra["dhcp_options"] = options
    return declaration(**extra)


def v4_bound(mtu: int, option_57):
    """The largest IPv4 datagram a reply may be: the link's MTU, and what the VM takes (its option 57, never
    below 576)."""
    return min(mtu, max(MIN_DATAGRAM, option_57 or mtu))


def v4_request(mtype, xid, option_55, option_57, ciaddr="0.0.0.0", server_id=None, requested=None):
    options = [(53, mtype)]
    if option_55 is not None:
        options.append((55, bytes(option_55)))
    if option_57 is not None:
        options.append((57, struct.pack("!H", option_57)))
    if server_id is not None:
        options.append((54, server_id))
    if requested is not None:
        options.append((50, requested))
    payload = codec.encode_message({"op": 1, "xid": xid, "chaddr": MAC, "ciaddr": ciaddr}, options)
    return codec.build_frame(MAC, "ff:ff:ff:ff:ff:ff", ciaddr, "255.255.255.255", payload, 68, 67)


@given(decl=v4_declarations(), reply=st.sampled_from([codec.OFFER, codec.ACK, codec.NAK, dr.INFORM_ACK]),
       option_55=OPTION_55, option_57=OPTION_57)
@example(decl=declaration(mtu=576, search_domains=LONG_DOMAINS, dns_servers=[f"10.96.0.{i}" for i in range(1, 17)],
                          dhcp_options={"private_options": [{"option": c, "value": "v" * 255} for c in range(224, 255)]}),
         reply=codec.ACK, option_55=list(range(256)), option_57=0xFFFF)
@SETTINGS
def test_dhcpv4_reply_payload_fits_the_mtu_and_option_57(decl, reply, option_55, option_57):
    pod = dr.Pod("pod1__eth0", decl, None)
    request = {"xid": 0xABCDEF01, "flags": 0, "ciaddr": "10.244.1.10", "parameter_list": option_55 or [],
               "max_message_size": option_57}
    payload = pod.lease4.reply_payload(reply, request)
    bound = v4_bound(decl["mtu"], option_57)
    if decl["mtu"] >= MIN_DATAGRAM:
        # The routed lease alone takes about 300 bytes: it always fits 576, so a reply is always sent.
        assert payload is not None, (decl["mtu"], option_57)
    if payload is None:
        return
    assert len(payload) + UDP4_HEADERS <= bound, (len(payload), decl["mtu"], option_57)
    assert len(payload) + UDP4_HEADERS <= decl["mtu"]
    options = codec.scan_options(payload)  # whole, up to its END option
    assert options[codec.OPT_MESSAGE_TYPE][0] == (codec.ACK if reply == dr.INFORM_ACK else reply)
    if reply in (codec.OFFER, codec.ACK):
        assert codec.OPT_SUBNET_MASK in options and payload[16:20] == bytes([10, 244, 1, 10])


@given(decl=v4_declarations(), mtype=st.sampled_from([codec.DISCOVER, codec.REQUEST, codec.INFORM]),
       option_55=OPTION_55, option_57=OPTION_57, renewing=st.booleans())
@SETTINGS
def test_dhcpv4_frames_sent_fit_the_declared_mtu(responder, decl, mtype, option_55, option_57, renewing):
    """The whole path: a VM's frame in, the frame handed to the pod's socket out (length - 14 <= MTU)."""
    r = _fresh(responder)
    pod = dr.Pod("pod1__eth0", decl, None)
    pod.sock = LinkSocket()
    r.pods[pod.key] = pod
    if mtype == codec.REQUEST and renewing:
        frame = v4_request(mtype, 0x51, option_55, option_57, ciaddr=decl["ip"])
    elif mtype == codec.REQUEST:
        frame = v4_request(mtype, 0x51, option_55, option_57, server_id=pod.server_id, requested=decl["ip"])
    elif mtype == codec.INFORM:
        frame = v4_request(mtype, 0x51, option_55, option_57, ciaddr=decl["ip"])
    else:
        frame = v4_request(mtype, 0x51, option_55, option_57)
    r.handle_frame(pod, frame)
    if decl["mtu"] >= MIN_DATAGRAM:
        assert len(pod.sock.sent) == 1, r.event_stream.getvalue()
    bound = v4_bound(decl["mtu"], option_57)
    for sent in pod.sock.sent:
        assert len(sent) - ETHERNET <= bound, (len(sent) - ETHERNET, decl["mtu"], option_57)
        assert len(sent) - ETHERNET <= decl["mtu"]
        assert codec.parse_frame(sent, dport=68) is not None


# -- DHCPv6 ---------------------------------------------------------------------------------------
V6_MTU = st.one_of(st.integers(1280, 1500), st.sampled_from([1280, 1281, 1450, 1500, 9000]), st.integers(1501, 9000),
                   st.integers(68, 1279))
SERVER_ID = c6.server_duid(b"0123456789abcdef0123456789abcdef\n")
LEASE6 = {"vm_mac": MAC, "address": "fd00:10:244::10", "prefixlen": 64, "preferred_lifetime": 3600,
          "valid_lifetime": 7200}


def one_ia(rng, iaid):
    """An IA_NA, IA_TA or IA_PD holding 0-3 addresses or prefixes, ours or foreign."""
    kind, nested = rng.choice(["na", "ta", "pd"]), rng.randint(0, 3)
    if kind == "pd":
        return c6.ia_pd_option(iaid, 0, 0, [c6.iaprefix_option(f"2001:db8:{iaid:x}:{n:x}::/64", 1, 2)
                                            for n in range(nested)])
    addresses = [c6.iaaddr_option(rng.choice([LEASE6["address"], f"2001:db8::{iaid:x}:{n:x}"]), 1, 2)
                 for n in range(nested)]
    return c6.ia_na_option(iaid, 0, 0, addresses) if kind == "na" else c6.ia_ta_option(iaid, addresses)


@st.composite
def many_ias(draw, low=45, high=170):
    """45-170 IAs of every type, the IAIDs unique or repeated (a repeated IAID is answered once). The IAs come
    from a drawn seed: drawing each of up to 170 IAs from hypothesis made the test three times slower."""
    count, unique, rng = draw(st.integers(low, high)), draw(st.booleans()), draw(st.randoms(use_true_random=False))
    iaids = range(count) if unique else [rng.randint(0, 30) for _ia in range(count)]
    return [one_ia(rng, iaid) for iaid in iaids]


def _ids(mtype):
    client = c6.option(c6.OPT_CLIENTID, DUID_LL_VM)
    server = c6.option(c6.OPT_SERVERID, SERVER_ID)
    return [client, server] if mtype in (c6.REQUEST, c6.RENEW, c6.RELEASE, c6.DECLINE) else [client]


@st.composite
def v6_requests(draw):
    """(message type, payload, whether an IA_NA comes first) of a client message the server answers."""
    mtype = draw(st.sampled_from([c6.SOLICIT, c6.REQUEST, c6.RENEW, c6.REBIND, c6.CONFIRM, c6.RELEASE, c6.DECLINE,
                                  c6.INFORMATION_REQUEST]))
    ias = [] if mtype == c6.INFORMATION_REQUEST else draw(many_ias())
    na_first = draw(st.booleans()) and mtype != c6.INFORMATION_REQUEST
    if na_first:
        ias.insert(0, c6.ia_na_option(0xFFFF, 0, 0, [c6.iaaddr_option(LEASE6["address"], 0, 0)]))
    extra = [c6.option(c6.OPT_ORO, struct.pack(f"!{n}H", *range(n))) for n in [draw(st.integers(0, 300))] if n]
    if mtype == c6.SOLICIT and draw(st.booleans()):
        extra.append(c6.option(c6.OPT_RAPID_COMMIT))
    return mtype, c6.encode_message(mtype, draw(st.integers(0, 0xFFFFFF)), _ids(mtype) + extra + ias), na_first


LEASE6_CONFIG = st.fixed_dictionaries({
    "dns_servers": st.sampled_from([[], ["fd00:96::a"], [f"fd00:96::{i:x}" for i in range(1, 9)]]),
    "search_domains": st.sampled_from([[], ["svc.cluster.local"], [f"d{i}." + "x" * 60 + ".example" for i in range(64)]]),
})


@given(request=v6_requests(), mtu=V6_MTU, config=LEASE6_CONFIG)
@example(request=(c6.SOLICIT, c6.encode_message(c6.SOLICIT, 1, _ids(c6.SOLICIT)
                                                + [c6.ia_ta_option(i) for i in range(45)]), False),
         mtu=1280, config={"dns_servers": [], "search_domains": []})
@SETTINGS6
def test_dhcpv6_answer_fits_the_mtu_with_many_ias(request, mtu, config):
    mtype, payload, na_first = request
    result = c6.answer(payload, dict(LEASE6, **config), SERVER_ID, MAC, mtu=mtu)
    assert isinstance(result, c6.Answer)
    if mtu >= c6.IPV6_MIN_MTU and mtype != c6.CONFIRM:
        # Every IPv6 link carries 1,280 bytes: the first IA, with the lease address, always fits.
        assert result.reply is not None, result.reason
    if result.reply is None:
        return
    assert len(result.reply) + UDP6_HEADERS <= mtu, (len(result.reply), mtu)
    parsed = c6.parse_message(result.reply)
    if na_first and mtype in (c6.SOLICIT, c6.REQUEST, c6.RENEW, c6.REBIND):
        assert parsed["ia_na"][0]["iaid"] == 0xFFFF
        assert parsed["ia_na"][0]["addresses"][0]["address"] == LEASE6["address"]


def _served(r, mtu, **ipv6):
    v6 = {"address": "fd00:58::7", "prefixlen": 64, "gateway": GW_LL, "gateway_mac": GW_MAC,
          "dns_servers": [f"fd00:96::{i:x}" for i in range(1, 9)]}
    v6.update(ipv6)
    pod = dr.Pod("pod1__eth0", declaration(ipv6=v6, mtu=mtu, search_domains=LONG_DOMAINS), None)
    pod.sock, pod.src_mac = LinkSocket(), BRIDGE_MAC
    pod.ll_src = c6.link_local_from_mac(BRIDGE_MAC)
    r.pods[pod.key] = pod
    return pod


def _dhcp6_frame(payload):
    return c6.build_udp6_frame(MAC, None, CLIENT_LL, c6.ALL_DHCP_AGENTS, payload, sport=546, dport=547, hop_limit=1)


def _router_solicitation(src_ip=CLIENT_LL):
    body = bytearray(struct.pack("!BBHI", 133, 0, 0, 0) + b"\x01\x01" + c6.mac_bytes(MAC))
    src, dst = ipaddress.IPv6Address(src_ip).packed, ipaddress.IPv6Address("ff02::2").packed
    struct.pack_into("!H", body, 2, c6.checksum(src + dst + struct.pack("!I3xB", len(body), 58) + bytes(body)))
    header = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + src + dst
    return bytes.fromhex("333300000002") + c6.mac_bytes(MAC) + b"\x86\xdd" + header + bytes(body)


@given(request=v6_requests(), mtu=st.one_of(st.integers(1280, 1500), st.sampled_from([1280, 1500, 9000])))
@SETTINGS6
def test_dhcpv6_frames_sent_fit_the_declared_mtu(responder, request, mtu):
    """The responder answers with ``mtu=pod.mtu``: each frame it hands the socket fits the declared MTU."""
    r = _fresh(responder)
    pod = _served(r, mtu)
    r.server_duid = SERVER_ID
    mtype, payload, _na_first = request
    r.handle_frame(pod, _dhcp6_frame(payload))
    if mtype != c6.CONFIRM:
        assert len(pod.sock.sent) == 1, r.event_stream.getvalue()
    for sent in pod.sock.sent:
        assert len(sent) - ETHERNET <= mtu, (len(sent) - ETHERNET, mtu)


# -- Router Solicitation -> Router Advertisement --------------------------------------------------
IPV6_BLOCKS = st.fixed_dictionaries({
    "prefixlen": st.integers(1, 128),
    "gateway": st.sampled_from([GW_LL, None]),
})


@given(mtu=st.one_of(st.integers(1280, 1500), st.integers(1501, 65535), st.sampled_from([1280, 1500])),
       block=IPV6_BLOCKS, lease_time=st.sampled_from([120, 600, 86400]))
@SETTINGS
def test_router_solicitation_is_answered_within_the_mtu(responder, mtu, block, lease_time):
    r = _fresh(responder)
    pod = _served(r, mtu, **block)
    pod.decl["lease_time"] = lease_time
    r.handle_frame(pod, _router_solicitation())
    assert len(pod.sock.sent) == 1, r.event_stream.getvalue()  # the first RS is answered at once
    ra = pod.sock.sent[0]
    assert ra[54] == c6.ICMPV6_RA and len(ra) - ETHERNET <= mtu, (len(ra) - ETHERNET, mtu)
    assert len(r.router_advertisement(pod)) - ETHERNET <= mtu


@pytest.mark.parametrize("mtu, prefixlen", [(68, 64), (80, 64), (103, 64), (71, 128), (1279, 64)])
def test_an_ipv6_lease_on_a_link_below_1280_bytes_is_refused(mtu, prefixlen):
    """Found by the RS fuzzer: ``validate_declaration`` took any mtu 68..65535 with an ``ipv6`` block, and the RS
    was then answered with an RA (104 bytes, 72 for a /128) larger than the declared MTU. IPv6 needs 1,280
    (RFC 8200 5; the kernel disables it below): such a declaration is refused, so no reply can outgrow its link."""
    v6 = {"address": "fd00:58::7", "prefixlen": prefixlen, "gateway": GW_LL, "gateway_mac": GW_MAC}
    with pytest.raises(PodnetError, match=r"mtu: %d is not a whole number 1280\.\.65535 \(IPv6 needs 1280\)" % mtu):
        declaration(ipv6=v6, mtu=mtu)
    assert declaration(ipv6=v6, mtu=1280)["mtu"] == 1280
    assert declaration(mtu=mtu)["mtu"] == mtu  # IPv4 only: any link of 68 bytes and more
