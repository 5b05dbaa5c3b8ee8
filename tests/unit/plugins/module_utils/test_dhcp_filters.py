# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The classic BPF programs (tc drop filters, the responder's socket filter) run on real frames.

A small interpreter of the few cBPF instructions the programs use runs them the way the
kernel does (from the Ethernet header; loads past the end reject the frame), so a wrong
offset or jump shows up here, without root. The integration tests check the kernel agrees.
"""

from __future__ import annotations

import struct

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_filters import udp_dport_drop_program
from ansible_collections.virtnet.podnet.plugins.module_utils._responder_sockets import client_filter_program

TC_ACT_SHOT, TC_ACT_UNSPEC = 2, 0xFFFFFFFF
VM, GW = "0a:58:0a:f4:01:0a", "02:00:00:00:00:01"


PACKET_HOST, PACKET_OUTGOING = 0, 4
ANCILLARY_PKTTYPE = 0xFFFFF004  # SKF_AD_OFF + SKF_AD_PKTTYPE


def run_cbpf(program, frame, pkttype=PACKET_HOST):
    """Return the program's verdict for ``frame`` arriving with ``pkttype`` (the direction a packet
    socket sees); 0 when a load runs past the end (as the kernel does)."""
    a = x = 0
    pc = 0
    memory = {}  # M[0..15]; the kernel's checker refuses a program that reads a slot before writing it
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        try:
            if code == 0x20 and k == ANCILLARY_PKTTYPE:  # ld #pkttype
                a = pkttype
            elif code == 0x28:      # ldh [k]
                a = struct.unpack_from("!H", frame, k)[0]
            elif code == 0x30:    # ldb [k]
                a = frame[k]
            elif code == 0x48:    # ldh [x + k]
                a = struct.unpack_from("!H", frame, x + k)[0]
            elif code == 0x50:    # ldb [x + k]
                a = frame[x + k]
            elif code == 0x00:    # ld #k
                a = k
            elif code == 0x01:    # ldx #k
                x = k
            elif code == 0x80:    # ld #len (the frame, from its Ethernet header: tc and packet sockets push it)
                a = len(frame)
            elif code == 0x60:    # ld M[k]
                a = memory[k]
            elif code == 0x02:    # st M[k]
                memory[k] = a
            elif code == 0x04:    # add #k
                a = (a + k) & 0xFFFFFFFF
            elif code == 0x0C:    # add x
                a = (a + x) & 0xFFFFFFFF
            elif code == 0x14:    # sub #k
                a = (a - k) & 0xFFFFFFFF
            elif code == 0x64:    # lsh #k
                a = (a << k) & 0xFFFFFFFF
            elif code == 0x07:    # tax
                x = a
            elif code == 0xB1:    # ldxb 4 * ([k] & 0xf)
                x = 4 * (frame[k] & 0x0F)
            elif code == 0x15:    # jeq #k
                pc += jt if a == k else jf
            elif code == 0x35:    # jge #k (unsigned, as A and k are)
                pc += jt if a >= k else jf
            elif code == 0x3D:    # jge x
                pc += jt if a >= x else jf
            elif code == 0x05:    # ja +k
                pc += k
            elif code == 0x45:    # jset #k
                pc += jt if a & k else jf
            elif code == 0x06:    # ret #k
                return k
            else:
                raise AssertionError(f"instruction {code:#x} not modelled")
        except (IndexError, struct.error):
            return 0


def udp_frame(dport, sport=68, payload=b"\x01" * 300):
    return codec.build_frame(VM, "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255", payload, sport, dport)


def with_ip_options(frame):
    """The same datagram with a 4-byte IP option (IHL 6): the UDP header moves by 4."""
    eth, ip, rest = frame[:14], frame[14:34], frame[34:]
    ip = bytes([0x46]) + ip[1:2] + struct.pack("!H", struct.unpack("!H", ip[2:4])[0] + 4) + ip[4:]
    return eth + ip + b"\x01\x01\x01\x00" + rest


def later_fragment(frame):
    return frame[:20] + struct.pack("!H", 185) + frame[22:]  # offset 185 * 8 bytes


def with_ethertype(frame, ethertype):
    return frame[:12] + struct.pack("!H", ethertype) + frame[14:]


def tcp(frame):
    return frame[:23] + bytes([6]) + frame[24:]


@pytest.mark.parametrize("port", [67, 68])
def test_drop_program_drops_udp_to_its_port_only(port):
    program = udp_dport_drop_program(port)
    assert run_cbpf(program, udp_frame(port)) == TC_ACT_SHOT
    assert run_cbpf(program, with_ip_options(udp_frame(port))) == TC_ACT_SHOT
    other = 68 if port == 67 else 67
    for frame in (udp_frame(other), udp_frame(53), tcp(udp_frame(port)), later_fragment(udp_frame(port)),
                  with_ethertype(udp_frame(port), 0x86DD), with_ethertype(udp_frame(port), 0x0806)):
        assert run_cbpf(program, frame) == TC_ACT_UNSPEC


def test_drop_program_jumps_stay_inside_the_program():
    for port in (67, 68):
        program = udp_dport_drop_program(port)
        for index, (code, jt, jf, _k) in enumerate(program):
            if code in (0x15, 0x45):
                assert index + 1 + max(jt, jf) < len(program)
        assert program[-1][0] == 0x06 and program[-2][0] == 0x06


def test_socket_filter_wakes_the_responder_for_dhcp_to_a_server_only():
    program = client_filter_program()
    assert run_cbpf(program, udp_frame(67)) > 0
    assert run_cbpf(program, with_ip_options(udp_frame(67))) > 0
    for frame in (udp_frame(68, sport=67), udp_frame(53), tcp(udp_frame(67)), later_fragment(udp_frame(67)),
                  with_ethertype(udp_frame(67), 0x86DD), udp_frame(67)[:30]):
        assert run_cbpf(program, frame) == 0


# -- IPv6 (issue 12): DHCPv6 and RS/RA ------------------------------------------------------------
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as c6  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _bpf_programs as programs  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_filters as filters  # noqa: E402

LL = "fe80::858:aff:fef4:10a"


def v6_frame(next_header, upper, ext=b"", first=None):
    """Ethernet + IPv6 (+ ``ext`` extension headers, the first of type ``first``) + ``upper``."""
    header = struct.pack("!IHBB", 6 << 28, len(ext) + len(upper), first if ext else next_header, 255)
    header += bytes.fromhex("fe80" + "00" * 6 + "0858" + "0aff" + "fef4" + "010a")
    header += bytes.fromhex("ff02" + "00" * 13 + "02")
    return bytes.fromhex("333300000002") + bytes.fromhex(VM.replace(":", "")) + b"\x86\xdd" + header + ext + upper


def udp6(dport, sport=546):
    return v6_frame(17, struct.pack("!HHHH", sport, dport, 12, 0) + b"\x01\x00\x00\x01")


def icmp6(kind):
    return v6_frame(58, bytes([kind, 0, 0, 0]) + bytes(12))


def ext_header(next_header, length8=0):
    """One extension header of (length8 + 1) * 8 bytes leading to ``next_header``."""
    return bytes([next_header, length8]) + bytes(6 + 8 * length8)


def with_ext(frame, first, length8=0):
    """The same upper layer behind one extension header of type ``first``."""
    nxt, upper = frame[20], frame[54:]
    return v6_frame(nxt, upper, ext_header(nxt, length8), first)


def with_two_ext(frame):
    nxt, upper = frame[20], frame[54:]
    return v6_frame(nxt, upper, ext_header(60) + ext_header(nxt), 0)


@pytest.mark.parametrize("role, v4_port, v6_port, icmp", [("tap", 67, 547, 133), ("pod_interface", 68, 546, 134)])
def test_combined_drop_programs(role, v4_port, v6_port, icmp):
    program = filters.PROGRAMS[role]()
    drops = [udp_frame(v4_port), with_ip_options(udp_frame(v4_port)), udp6(v6_port), icmp6(icmp)]
    for first in (0, 43, 60):
        drops += [with_ext(udp6(v6_port), first), with_ext(icmp6(icmp), first, 2)]
    drops += [with_ext(udp6(v6_port), 44), with_two_ext(udp6(v6_port)), with_two_ext(icmp6(icmp))]  # issue 18 M2
    for frame in drops:
        assert run_cbpf(program, frame) == TC_ACT_SHOT, frame.hex()
    other4, other6 = (68, 546) if role == "tap" else (67, 547)
    other_icmp = 134 if role == "tap" else 133
    passes = [udp_frame(other4), udp_frame(53), later_fragment(udp_frame(v4_port)), tcp(udp_frame(v4_port)),
              udp6(other6), udp6(53), icmp6(other_icmp), icmp6(135), icmp6(143),
              with_ext(icmp6(143), 0),  # an MLD report behind hop-by-hop: not ours
              with_two_ext(udp6(other6)), with_ext(icmp6(other_icmp), 44),
              with_ethertype(udp_frame(v4_port), 0x0806)]
    for frame in passes:
        assert run_cbpf(program, frame) == TC_ACT_UNSPEC, frame.hex()


def test_programs_are_well_formed():
    programs = [filters.tap_drop_program(), filters.pod_drop_program()]
    programs += [client_filter_program(v4, v6) for v4, v6 in ((True, False), (False, True), (True, True))]
    for program in programs:
        assert program[-1][0] == 0x06 and len(program) < 4096
        for index, (code, jt, jf, k) in enumerate(program):
            if code in (0x15, 0x35, 0x3D, 0x45):
                assert index + 1 + max(jt, jf) < len(program)
            if code == 0x05:
                assert index + 1 + k < len(program)
    # The 0.1 program (protocol ip) is not the current one: an install of it is "outdated".
    assert filters._ops(filters.tap_drop_program()) != filters._ops(udp_dport_drop_program(67))


def test_assembler_refuses_backward_and_far_jumps():
    with pytest.raises((ValueError, KeyError)):
        programs.assemble(["x", (0x15, "x", 0, 1), (0x06, 0, 0, 0)])
    with pytest.raises(ValueError):
        programs.assemble([(0x15, "far", 0, 1)] + [(0x06, 0, 0, 0)] * 300 + ["far", (0x06, 0, 0, 0)])


@pytest.mark.parametrize("v4, v6", [(True, False), (False, True), (True, True)])
def test_socket_filter_takes_what_the_pod_is_served(v4, v6):
    program = client_filter_program(v4, v6)
    assert (run_cbpf(program, udp_frame(67)) > 0) is v4
    for frame in (udp6(547), icmp6(133), with_ext(udp6(547), 0), with_ext(icmp6(133), 60, 1)):
        assert (run_cbpf(program, frame) > 0) is v6
    for frame in (udp6(546), icmp6(134), icmp6(135), with_ext(icmp6(143), 0), udp_frame(68, sport=67),
                  udp6(547)[:55]):
        assert run_cbpf(program, frame) == 0


def test_codec_frames_match_the_programs():
    """Frames the codec builds and parses (what real clients send) are what the programs match."""
    solicit = c6.build_udp6_frame(VM, None, LL, "ff02::1:2", b"\x01\x00\x00\x01", sport=546, dport=547)
    ra = c6.build_router_advertisement(GW, "fe80::1", prefix="fd00::/64", mtu=1450)
    reply = c6.build_udp6_frame(GW, VM, "fe80::1", LL, b"\x07\x00\x00\x01")
    assert run_cbpf(filters.tap_drop_program(), solicit) == TC_ACT_SHOT
    assert run_cbpf(filters.pod_drop_program(), ra) == TC_ACT_SHOT
    assert run_cbpf(filters.pod_drop_program(), reply) == TC_ACT_SHOT
    assert run_cbpf(filters.tap_drop_program(), ra) == TC_ACT_UNSPEC


@pytest.mark.parametrize("v4, v6", [(True, False), (False, True), (True, True)])
def test_the_socket_filter_refuses_what_is_sent_to_the_vm(v4, v6):
    """A DHCP frame leaving through the tap (to the VM) never wakes the responder; the VM's own does."""
    program = client_filter_program(v4, v6)
    frame = udp_frame(67) if v4 else udp6(547)
    assert run_cbpf(program, frame) == 0xFFFF
    assert run_cbpf(program, frame, pkttype=PACKET_OUTGOING) == 0


# -- IPv6 extension header chains (issue 18 M2) ----------------------------------------------------
def frag_header(next_header, offset=0, more=True):
    """A fragment header (8 bytes): ``offset`` in 8-byte units, 0 for a first fragment."""
    return struct.pack("!BBHI", next_header, 0, offset << 3 | more, 0x12345678)


def with_chain(frame, kinds, length8=0, offset=0):
    """The same upper layer behind extension headers of ``kinds`` in order (44: a fragment header
    with ``offset``; others ``length8`` + 1 eight-byte units long)."""
    nxt, upper = frame[20], frame[54:]
    chain = b""
    for kind, following in reversed(list(zip(kinds, list(kinds[1:]) + [nxt]))):
        part = frag_header(following, offset) if kind == 44 else ext_header(following, length8)
        chain = part + chain
    return v6_frame(nxt, upper, chain, kinds[0])


# Chains of 1 to 8 headers: all one kind, mixed, a fragment header first, last or in between.
CHAINS = [[60] * n for n in range(1, 9)] + [[0] + [60] * (n - 1) for n in range(1, 9)]
CHAINS += [[0, 43, 60, 44, 60, 43, 60, 60][:n] for n in range(1, 9)] + [[44], [0, 44], [60] * 7 + [44], [44] + [60] * 7]


def tcp6():
    return v6_frame(6, struct.pack("!HHII", 40000, 546, 1, 0) + bytes(12))


@pytest.mark.parametrize("chain", CHAINS, ids=lambda chain: "-".join(map(str, chain)))
@pytest.mark.parametrize("length8", [0, 1, 30])
def test_pod_program_drops_ras_and_dhcp6_replies_behind_1_to_8_extension_headers(chain, length8):
    """Behind hop-by-hop, routing, destination options and fragment headers (a first fragment carries the
    upper header: it is judged as the whole packet would be), in any order and length."""
    pod, tap, sock = filters.pod_drop_program(), filters.tap_drop_program(), client_filter_program(True, True)
    for frame in (udp6(546, sport=547), icmp6(134)):
        assert run_cbpf(pod, with_chain(frame, chain, length8)) == TC_ACT_SHOT, with_chain(frame, chain, length8).hex()
    for frame in (udp6(547), icmp6(133)):
        assert run_cbpf(tap, with_chain(frame, chain, length8)) == TC_ACT_SHOT
        assert run_cbpf(sock, with_chain(frame, chain, length8)) == 0xFFFF
    for frame in (udp6(53), icmp6(135), icmp6(143), tcp6(), udp6(547), icmp6(133)):
        assert run_cbpf(pod, with_chain(frame, chain, length8)) == TC_ACT_UNSPEC
        assert run_cbpf(sock, with_chain(frame, chain, length8)) == (
            0xFFFF if frame in (udp6(547), icmp6(133)) else 0)


def test_rogue_ra_behind_hop_by_hop_and_destination_options_is_dropped():
    """The finding as reported: an RA behind hop-by-hop + destination options, or two destination options."""
    ra = c6.build_router_advertisement("02:00:00:00:00:99", "fe80::99", prefix="fd99::/64", mtu=1400)
    for chain in ([0, 60], [60, 60]):
        assert run_cbpf(filters.pod_drop_program(), with_chain(ra, chain)) == TC_ACT_SHOT


def test_later_fragments_pass_first_fragments_are_judged():
    """cBPF keeps no state: a later fragment (offset > 0) cannot be tied to its datagram. It passes: the first
    fragment, which carries the upper header, is dropped when it is a reply or an RA, so nothing reassembles."""
    pod = filters.pod_drop_program()
    reply = udp6(546, sport=547)
    assert run_cbpf(pod, with_chain(reply, [44])) == TC_ACT_SHOT
    assert run_cbpf(pod, with_chain(reply, [0, 44, 60])) == TC_ACT_SHOT
    for chain in ([44], [0, 44], [60, 44]):
        later = with_chain(reply, chain, offset=185)
        assert run_cbpf(pod, later) == TC_ACT_UNSPEC
        assert run_cbpf(filters.tap_drop_program(), with_chain(udp6(547), chain, offset=1)) == TC_ACT_UNSPEC


def test_chains_that_run_off_the_frame_or_past_eight_headers_are_dropped():
    """A first fragment whose chain ends before the upper header (RFC 7112 forbids it; the later fragment would
    bring the RA) and a chain longer than the walk could hide what is dropped: no real traffic has either."""
    pod = filters.pod_drop_program()
    reply = with_chain(udp6(546, sport=547), [44, 60])
    assert run_cbpf(pod, reply[:-12]) == TC_ACT_SHOT  # ends inside the UDP header
    assert run_cbpf(pod, reply[:-16]) == TC_ACT_SHOT  # ends after the destination options header
    assert run_cbpf(pod, reply[:-20]) == TC_ACT_SHOT  # ends inside it
    for frame in (icmp6(134), udp6(53), tcp6()):
        assert run_cbpf(pod, with_chain(frame, [60] * 9)) == TC_ACT_SHOT
    # A header pointing at "no next header" with nothing after it is complete, not truncated.
    nothing = v6_frame(59, b"", ext_header(59), 60)
    assert run_cbpf(pod, nothing) == TC_ACT_UNSPEC
    assert run_cbpf(pod, v6_frame(59, b"")) == TC_ACT_UNSPEC
