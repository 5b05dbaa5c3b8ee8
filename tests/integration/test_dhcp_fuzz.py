"""podnet-dhcpd keeps serving after >= 10,000 malformed frames on the pod's tap, and every reply it sends fits
the pod's link (issue 18: the fuzzers, DHCPv4, DHCPv6 and Router Solicitation, assert reply size <= MTU).

Frames come from a seeded generator (reproducible: the seed is in the test id) in five
families: random bytes; valid Ethernet/IPv4/UDP to port 67 around random payloads; real
DISCOVERs and REQUESTs from the VM's MAC with mutated, truncated or extended bytes; broken
IPv4/UDP headers; and valid DISCOVERs, REQUESTs and INFORMs with huge option 55 lists (200-600
codes) and any option 57. They are written into the tap exactly as a VM's NIC would. The
responder must stay up, log no traceback, answer a valid DISCOVER right after, and then
give a real client (busybox udhcpc) its lease.

The IPv6 fuzzer does the same on a dual-stack pod with DHCPv6 messages of every client type
carrying 45-170 IA_NA/IA_TA/IA_PD (as many as a 1,500-byte frame holds), their mutations, and
Router Solicitations, valid and mutated.

Every frame the tap hands back is read (``Wire``), and each reply of the responder - DHCPv4,
DHCPv6, Router Advertisement - is checked on the wire: its length - 14 never exceeds the MTU in
the pod's declaration, nor, for DHCPv4, what the request's option 57 allows (never below 576).
The link itself carries 1,500 bytes while the declaration says less (576 for DHCPv4, 1,280
for DHCPv6): the kernel would not refuse an oversized reply, so the check is the test's.
"""

from __future__ import annotations

import ipaddress
import os
import random
import selectors
import shutil
import struct
import subprocess
import time
from collections import Counter

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as c6
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_codec import inet_checksum
from lib import plumbing
from lib.bindings import make_binding
from lib.dhcpwire import client_frame
from lib.netlab import NetLab, sh
from lib.responder import ResponderProcess
from lib.standin import TapRelay, dhcp_reply_of, open_tap, udhcpc_script

pytestmark = [pytest.mark.root, pytest.mark.dhcp_client, pytest.mark.slow]

if os.geteuid() != 0:
    pytest.skip("needs root: network namespaces, taps, packet sockets", allow_module_level=True)
if shutil.which("busybox") is None:
    pytest.skip("busybox (udhcpc) missing", allow_module_level=True)

COUNT = 10_000
COUNT6 = 6_000
SEED = 20261128
PACE = 25  # well under what the responder's 64 KiB socket queue holds
LINK_MTU = 1500  # what the tap carries; the declarations say less
ETHERNET = 14
MIN_DATAGRAM = 576  # RFC 2131: every DHCPv4 client takes a 576-byte datagram, whatever its option 57
# A declaration whose full DHCPv4 reply is several times any MTU: every reply is cut to fit.
BIG_OPTIONS = {"private_options": [{"option": code, "value": "v" * 255} for code in range(224, 255)],
               "ntp_servers": [f"10.1.0.{i}" for i in range(1, 9)]}
BIG_DNS = [f"10.96.0.{i}" for i in range(1, 17)]
BIG_SEARCH = [f"d{i}-" + "x" * 50 + ".example" for i in range(15)]
FIRST_XID4, PROBE_XID4 = 0xE0000000, 0xF0000000


class Wire:
    """The VM's side of the tap: every frame read is kept out of the way, and each reply of the responder in
    it - DHCPv4, DHCPv6, RA - is checked against the declared MTU (and a DHCPv4 request's option 57)."""

    def __init__(self, fd: int, mtu: int) -> None:
        self.fd, self.mtu = fd, mtu
        self.option_57 = {}  # xid -> option 57 of a DHCPv4 request we wrote
        self.checked = Counter()  # replies checked, by kind
        self.xids = Counter()  # (kind, xid) of the replies seen
        self.largest = Counter()  # the largest reply of each kind, for the failure messages
        self.server_duid = None

    @staticmethod
    def kind(frame: bytes):
        """("dhcp4" | "dhcp6" | "ra", xid or None) of a reply of the responder, else None."""
        if len(frame) >= 42 + 240 and frame[12:14] == b"\x08\x00" and frame[23] == 17 and frame[34:38] == b"\x00\x43\x00\x44":
            return "dhcp4", struct.unpack("!I", frame[46:50])[0]
        if len(frame) >= 62 and frame[12:14] == b"\x86\xdd":
            if frame[20] == 17 and frame[54:58] == b"\x02\x23\x02\x22":  # UDP 547 -> 546
                return "dhcp6", int.from_bytes(frame[63:66], "big")
            if frame[20] == 58 and frame[54] == 134:
                return "ra", None
        return None

    def limit(self, kind: str, xid) -> int:
        option_57 = self.option_57.get(xid) if kind == "dhcp4" else None
        return min(self.mtu, max(MIN_DATAGRAM, option_57 or self.mtu))

    def check(self, frame: bytes):
        found = self.kind(frame)
        if found is None:
            return None
        kind, xid = found
        size, limit = len(frame) - ETHERNET, self.limit(kind, xid)
        assert size <= limit, f"a {size}-byte {kind} reply (xid {xid}), limit {limit}, declared MTU {self.mtu}"
        self.checked[kind] += 1
        self.xids[kind, xid] += 1
        self.largest[kind] = max(self.largest[kind], size)
        if kind == "dhcp6" and self.server_duid is None:
            self.server_duid = c6.parse_message(frame[62:])["server_id"]
        return found

    def wait(self, kind: str, xid, timeout: float = 5.0):
        """Read (and check) frames until a reply of ``kind`` with ``xid`` (any xid for None); that frame, else None."""
        sel = selectors.DefaultSelector()
        sel.register(self.fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while True:
                while True:
                    try:
                        frame = os.read(self.fd, 65536)
                    except BlockingIOError:
                        break
                    found = self.check(frame)
                    if found is not None and found[0] == kind and xid in (None, found[1]):
                        return frame
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                sel.select(left)
        finally:
            sel.close()


class _Recording:
    """A socket that keeps what is sent through it."""

    def __init__(self, sock, kept: list) -> None:
        self.sock, self.kept = sock, kept

    def send(self, frame: bytes) -> int:
        self.kept.append(bytes(frame))
        return self.sock.send(frame)


class CheckedRelay(TapRelay):
    """The VM stand-in's relay, keeping each frame it carries to the VM (``carried``) for the test to check."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.carried: list[bytes] = []

    def _tap_to_vm(self, tun, sock):
        return super()._tap_to_vm(tun, _Recording(sock, self.carried))


def option_55_57(rng: random.Random, vm_mac: str, xid: int, ip: str, server_id: str):
    """A valid DISCOVER, REQUEST or INFORM with a huge option 55 (RFC 3396: several instances) and any
    option 57; ``(frame, option 57)``."""
    codes = [rng.randrange(256) for _code in range(rng.randint(200, 600))]
    option_57 = rng.choice([None, 0, 1, 575, 576, 577, 1000, 1500, 65535, rng.randint(0, 65535)])
    options = [(55, bytes(codes))] + ([] if option_57 is None else [(57, struct.pack("!H", option_57))])
    mtype = rng.choice([1, 3, 8])
    if mtype == 3:
        return client_frame(vm_mac, 3, xid, options + [(50, ip), (54, server_id)]), option_57
    if mtype == 8:
        return client_frame(vm_mac, 8, xid, options, ciaddr=ip), option_57
    return client_frame(vm_mac, 1, xid, options), option_57


def malformed_frames(rng: random.Random, vm_mac: str, count: int, answered=None, ip="10.244.0.9",
                     server_id="10.244.0.1"):
    """The frames of the DHCPv4 fuzzer; ``answered`` (a dict) gets xid -> option 57 of each valid request of the
    fifth family, every one of which must be answered."""
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
    mac = codec.mac_bytes(vm_mac)
    answered = {} if answered is None else answered
    bases = [client_frame(vm_mac, mtype, rng.getrandbits(32), options)
             for mtype, options in ((1, [(55, [1, 3, 6, 121])]), (3, [(50, "10.1.2.3"), (54, "10.1.2.1")]),
                                    (3, []), (8, []), (7, []), (4, [(50, "1.2.3.4")]))]
    for i in range(count):
        family = i % 5
        if family == 4:
            xid = FIRST_XID4 + i
            frame, answered[xid] = option_55_57(rng, vm_mac, xid, ip, server_id)
            yield frame
        elif family == 0:
            yield rng.randbytes(rng.randint(14, 600))
        elif family == 1:
            payload = rng.randbytes(rng.randint(0, 700))
            if rng.random() < 0.5 and len(payload) >= 240:
                # Keep the magic cookie and our VM's MAC so the option walker is reached.
                payload = b"\x01\x01\x06" + payload[3:28] + mac + payload[34:236] + b"c\x82Sc" + payload[240:]
            yield codec.build_frame(vm_mac, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255", payload, 68, 67)
        elif family == 2:
            frame = bytearray(rng.choice(bases))
            action = rng.randrange(5)
            if action == 0:          # flip bytes anywhere in the DHCP message
                for _flip in range(rng.randint(1, 20)):
                    frame[rng.randrange(42, len(frame))] = rng.getrandbits(8)
            elif action == 1:        # truncate (UDP/IP lengths now lie)
                frame = frame[:rng.randint(0, len(frame))]
            elif action == 2:        # garbage options with lying lengths, no END
                start = 42 + 240
                frame = frame[:start] + rng.randbytes(rng.randint(1, 300))
            elif action == 3:        # a hostile option list: huge lengths, bad types, odd sizes
                options = bytes([53, 1, rng.choice([0, 9, 255, 1, 3]), 50, rng.randint(0, 255),
                                 55, 255]) + rng.randbytes(rng.randint(0, 40))
                frame = frame[:42 + 240] + options
            else:                    # header fields: op, htype, hlen, giaddr, flags
                frame[42 + rng.choice([0, 1, 2, 10, 11, 24, 25])] = rng.getrandbits(8)
            yield bytes(frame)
        elif family == 3:
            frame = bytearray(rng.choice(bases))
            field = rng.randrange(5)
            if field == 0:
                frame[14] = rng.getrandbits(8)                             # version / IHL
            elif field == 1:
                frame[16:18] = struct.pack("!H", rng.getrandbits(16))    # total length
            elif field == 2:
                frame[20:22] = struct.pack("!H", rng.getrandbits(16))    # fragment bits
            elif field == 3:
                frame[38:40] = struct.pack("!H", rng.getrandbits(16))    # UDP length
            else:
                frame[23] = rng.choice([6, 1, 0, 255])                    # not UDP
            frame[24:26] = b"\x00\x00"
            frame[24:26] = struct.pack("!H", inet_checksum(bytes(frame[14:34])))
            yield bytes(frame)


def served_pod(lab: NetLab, run_dir: str, declared_mtu: int, **changes):
    """A pod plumbed on a link of LINK_MTU whose declaration says ``declared_mtu``, with ``changes``: as the module
    wrote it, taken back and written again before the responder reads it."""
    pod = lab.add_pod(mtu=LINK_MTU)
    result = plumbing.plumb(pod.netns, make_binding(), run_dir, dns_servers=["10.96.0.10"],
                            search_domains=["default.svc.cluster.local"], hostname="vm1")
    assert result["vm_mac"] == pod.mac and result["ip"] == pod.ip
    decl = plumbing.take_declaration(run_dir, result["key"])
    assert decl["mtu"] == LINK_MTU
    decl.update(changes, mtu=declared_mtu)
    plumbing.write_declaration(run_dir, decl)
    return pod, decl


@pytest.mark.parametrize("declared_mtu", [MIN_DATAGRAM, LINK_MTU])
def test_malformed_frames_never_stop_the_responder(tmp_path, declared_mtu):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir, mode=0o700)
    with NetLab() as lab:
        pod, decl = served_pod(lab, run_dir, declared_mtu, dhcp_options=BIG_OPTIONS, dns_servers=BIG_DNS,
                               search_domains=BIG_SEARCH)
        # No frame-rate limit, the pod's or the node's: every malformed frame must reach the parser (the
        # limits have their own tests).
        with ResponderProcess(run_dir, extra_args=("--frame-rate", "0", "--node-frame-rate", "0")) as responder:
            responder.wait_serving(decl["key"])
            fd = open_tap(pod.netns)
            wire = Wire(fd, declared_mtu)
            written = failed = probes = 0
            try:
                # The path is live before the fuzzing starts: two loaded CI runs lost the first frames
                # written right after the tap was attached (open question, see the closing note of
                # issue 18's second stop); a client retransmits, so does this warm-up probe.
                for attempt in range(3):
                    os.write(fd, client_frame(pod.mac, 1, PROBE_XID4 - 1 - attempt))
                    if wire.wait("dhcp4", PROBE_XID4 - 1 - attempt) is not None:
                        break
                else:
                    pytest.fail("no OFFER to three DISCOVERs before the fuzzing")
                rng = random.Random(SEED)
                for frame in malformed_frames(rng, pod.mac, COUNT, wire.option_57, pod.ip, pod.gateway):
                    try:
                        os.write(fd, frame)
                        written += 1
                    except BlockingIOError:
                        failed += 1
                    except OSError:
                        failed += 1  # the tap refuses some (too short): that is the kernel, not us
                    if written % PACE == 0:
                        # A valid DISCOVER after every PACE frames, and wait for its OFFER: the
                        # socket queue is FIFO, so every frame before it was read and judged
                        # by the responder (not lost to a full queue), and it still answers.
                        # Every frame the tap handed back meanwhile was read and checked (Wire).
                        probes += 1
                        os.write(fd, client_frame(pod.mac, 1, PROBE_XID4 + probes))
                        probe = wire.wait("dhcp4", PROBE_XID4 + probes)
                        assert probe is not None, f"no OFFER after {written} malformed frames"
                assert written >= COUNT * 0.95 and probes >= COUNT * 0.95 // PACE, (written, failed, probes)
                # Still serving, right away.
                os.write(fd, client_frame(pod.mac, 1, 0xC0FFEE, [(55, [1, 3, 121])]))
                reply = wire.wait("dhcp4", 0xC0FFEE, timeout=10)
                assert reply is not None, "no OFFER after the fuzzing"
                reply = dhcp_reply_of(reply)
                assert reply["type"] == 2 and reply["yiaddr"] == pod.ip
                # Each valid request with a huge option 55 was answered (before the last OFFER), within the
                # declared MTU and its option 57.
                unanswered = [x for x in wire.option_57 if not wire.xids["dhcp4", x]]
                assert len(wire.option_57) >= COUNT // 5 * 0.95 and not unanswered, (len(wire.option_57), unanswered[:5])
                assert wire.checked["dhcp4"] >= probes + len(wire.option_57)
                # The replies were cut to the MTU: the declaration's full reply is several times larger.
                assert wire.largest["dhcp4"] > MIN_DATAGRAM - 100, wire.largest
            finally:
                os.close(fd)
            assert responder.proc.poll() is None, "responder died"
            assert "Traceback" not in responder.log()
            # And a real client gets its lease afterwards.
            vm = lab.add_namespace("vm")
            with CheckedRelay(pod.netns, vm, pod.mac, pod.mtu) as relay:
                result = subprocess.run(
                    ["ip", "netns", "exec", vm, "busybox", "udhcpc", "-i", relay.vm_ifname, "-f", "-q", "-n",
                     "-t", "5", "-T", "1", "-s", udhcpc_script(tmp_path)], capture_output=True, text=True, timeout=40,
                    check=False)
                assert result.returncode == 0, result.stdout + result.stderr
                addrs = sh("ip", "-n", vm, "-4", "-o", "addr", "show", "dev", relay.vm_ifname).stdout
                assert f"{pod.ip}/{pod.prefixlen}" in addrs
            # The client's exchange fit too: what the relay carried to the VM, after the relay stopped.
            before = wire.checked["dhcp4"]
            for frame in relay.carried:
                wire.check(frame)
            assert wire.checked["dhcp4"] >= before + 2, "an OFFER and an ACK"
            assert responder.proc.poll() is None and "Traceback" not in responder.log()
            served = responder.log().count("reply=")
        assert responder.proc is None  # stopped cleanly by the context manager
        assert served >= 1


# -- DHCPv6 and Router Solicitations -------------------------------------------------------------
CLIENT_LL6 = "fe80::858:aff:fef4:10a"
PROBE_XID6, FIRST_XID6 = 0xF00000, 0x100000
# Always answered (with the server's DUID where it must be named): every one of these must get its reply.
ANSWERED6 = (c6.SOLICIT, c6.REQUEST, c6.RENEW, c6.REBIND, c6.RELEASE, c6.DECLINE)


def router_solicitation(vm_mac: str, src_ip: str = CLIENT_LL6) -> bytes:
    body = bytearray(struct.pack("!BBHI", 133, 0, 0, 0) + b"\x01\x01" + c6.mac_bytes(vm_mac))
    src, dst = ipaddress.IPv6Address(src_ip).packed, ipaddress.IPv6Address("ff02::2").packed
    struct.pack_into("!H", body, 2, c6.checksum(src + dst + struct.pack("!I3xB", len(body), 58) + bytes(body)))
    header = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + src + dst
    return bytes.fromhex("333300000002") + c6.mac_bytes(vm_mac) + b"\x86\xdd" + header + bytes(body)


def dhcp6_frame(vm_mac: str, payload: bytes) -> bytes:
    return c6.build_udp6_frame(vm_mac, None, CLIENT_LL6, c6.ALL_DHCP_AGENTS, payload, sport=546, dport=547, hop_limit=1)


def many_ias(rng: random.Random, room: int, address: str) -> list[bytes]:
    """45-170 IA_NA, IA_TA and IA_PD (some holding an address or prefix) within ``room`` bytes: a VM's frame is
    at most its link MTU, and an empty IA_TA (8 bytes, answered with 36) is the cheapest."""
    count, out = rng.randint(45, 170), []
    for iaid in range(count):
        spare = room - (count - iaid - 1) * 8  # what is left once the rest are empty IA_TAs
        choices = [c6.ia_ta_option(iaid)]
        if spare >= 16:
            choices += [c6.ia_na_option(iaid, 0, 0), c6.ia_pd_option(iaid, 0, 0)]
        if spare >= 44:
            choices += [c6.ia_na_option(iaid, 0, 0, [c6.iaaddr_option(rng.choice([address, f"2001:db8::{iaid:x}"]), 0, 0)]),
                        c6.ia_ta_option(iaid, [c6.iaaddr_option(f"2001:db8::{iaid:x}", 1, 2)]),
                        c6.ia_pd_option(iaid, 0, 0, [c6.iaprefix_option(f"2001:db8:{iaid:x}::/56", 1, 2)])]
        out.append(rng.choice(choices))
        room -= len(out[-1])
    return out


def dhcp6_frames(rng: random.Random, vm_mac: str, count: int, server_duid: bytes, address: str, answered: set):
    """The frames of the DHCPv6 fuzzer: valid messages of every client type with 45-170 IAs (their xids in
    ``answered`` when the server must answer), the same mutated, Router Solicitations valid and mutated."""
    client = c6.option(c6.OPT_CLIENTID, bytes.fromhex("00030001") + c6.mac_bytes(vm_mac))
    server = c6.option(c6.OPT_SERVERID, server_duid)
    for i in range(count):
        family = i % 4
        if family == 3:
            frame = bytearray(router_solicitation(vm_mac))
            if rng.random() < 0.7:
                for _flip in range(rng.randint(1, 4)):
                    frame[rng.randrange(54, len(frame))] = rng.getrandbits(8)
            yield bytes(frame)
            continue
        mtype = rng.choice(ANSWERED6 + (c6.CONFIRM, c6.INFORMATION_REQUEST))
        ids = [client, server] if mtype in (c6.REQUEST, c6.RENEW, c6.RELEASE, c6.DECLINE) else [client]
        if mtype == c6.INFORMATION_REQUEST:
            ias, ids = [], ids + [c6.option(c6.OPT_ORO, struct.pack("!100H", *range(100)))]
        else:
            ias = many_ias(rng, LINK_MTU - 48 - 4 - sum(map(len, ids)) - 8, address)
        if mtype == c6.SOLICIT and rng.random() < 0.5:
            ids.append(c6.option(c6.OPT_RAPID_COMMIT))
        xid = FIRST_XID6 + i
        frame = bytearray(dhcp6_frame(vm_mac, c6.encode_message(mtype, xid, ids + ias)))
        assert len(frame) - ETHERNET <= LINK_MTU
        if family == 0:      # valid: answered, unless a Confirm (with no address to confirm, it is ignored)
            if mtype != c6.CONFIRM:
                answered.add(xid)
        elif family == 1:    # flip bytes in the message: lengths, option codes, IAIDs
            for _flip in range(rng.randint(1, 12)):
                frame[rng.randrange(62, len(frame))] = rng.getrandbits(8)
        else:                # truncated, or garbage after it (UDP and IPv6 lengths now lie)
            frame = frame[:rng.randint(54, len(frame))] if rng.random() < 0.5 else frame + rng.randbytes(rng.randint(1, 40))
        yield bytes(frame)


@pytest.mark.parametrize("declared_mtu", [c6.IPV6_MIN_MTU, LINK_MTU])
def test_dhcpv6_and_rs_fuzzing_never_stop_the_responder_and_replies_fit(tmp_path, declared_mtu):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir, mode=0o700)
    with NetLab(prefix="pnf6") as lab:
        block = {"address": f"fd00:58:{lab.subnet_index:x}::7", "prefixlen": 64, "gateway": "fe80::1c38:fbff:fec0:1bf0",
                 "gateway_mac": "1e:38:fb:c0:1b:f0", "dns_servers": [f"fd00:96::{i:x}" for i in range(1, 9)]}
        pod, decl = served_pod(lab, run_dir, declared_mtu, ipv6=block, search_domains=BIG_SEARCH)
        with ResponderProcess(run_dir, extra_args=("--frame-rate", "0", "--node-frame-rate", "0")) as responder:
            responder.wait_serving(decl["key"])
            fd = open_tap(pod.netns)
            wire = Wire(fd, declared_mtu)
            answered: set = set()
            try:
                client = c6.option(c6.OPT_CLIENTID, bytes.fromhex("00030001") + c6.mac_bytes(pod.mac))

                def probe(xid):
                    probe_ia = c6.ia_na_option(1, 0, 0)
                    os.write(fd, dhcp6_frame(pod.mac, c6.encode_message(c6.SOLICIT, xid, [client, probe_ia])))
                    return wire.wait("dhcp6", xid)

                # The first Solicit right after the tap's fd attaches went unanswered once in about ten runs:
                # retransmitted as a client would (RFC 8415 15), then every probe must be answered.
                assert any(probe(PROBE_XID6 - attempt) is not None for attempt in range(3)), \
                    "no ADVERTISE: " + responder.log()[-3000:]
                written = failed = probes = 0
                rng = random.Random(SEED)
                for frame in dhcp6_frames(rng, pod.mac, COUNT6, wire.server_duid, block["address"], answered):
                    try:
                        os.write(fd, frame)
                        written += 1
                    except OSError:
                        failed += 1
                    if written % PACE == 0:
                        probes += 1  # as for DHCPv4: FIFO, so every frame before it was judged
                        assert probe(PROBE_XID6 + probes) is not None, f"no ADVERTISE after {written} frames"
                assert written >= COUNT6 * 0.95, (written, failed)
                # An RS now gets an RA within MIN_DELAY_BETWEEN_RAS (3 s) of the last one.
                os.write(fd, router_solicitation(pod.mac))
                assert wire.wait("ra", None, timeout=10) is not None, "no RA"
                assert probe(PROBE_XID6 + probes + 1) is not None, "no ADVERTISE after the fuzzing"
                # Each valid message was answered, within the declared MTU: 45-170 IAs draw replies that
                # would be several times the MTU if every IA were answered.
                unanswered = [x for x in answered if not wire.xids["dhcp6", x]]
                assert len(answered) >= COUNT6 // 8 and not unanswered, (len(answered), unanswered[:5])
                assert wire.checked["ra"] >= 1 and wire.checked["dhcp6"] >= probes + len(answered), wire.checked
                assert wire.largest["dhcp6"] > declared_mtu - 200, wire.largest
            finally:
                os.close(fd)
            assert responder.proc.poll() is None, "responder died"
            assert "Traceback" not in responder.log()
        assert responder.proc is None
