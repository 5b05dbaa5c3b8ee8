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
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import client_filter_program

TC_ACT_SHOT, TC_ACT_UNSPEC = 2, 0xFFFFFFFF
VM, GW = "0a:58:0a:f4:01:0a", "02:00:00:00:00:01"


def run_cbpf(program, frame):
    """Return the program's verdict for ``frame``; 0 when a load runs past the end (as the kernel does)."""
    a = x = 0
    pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        try:
            if code == 0x28:      # ldh [k]
                a = struct.unpack_from("!H", frame, k)[0]
            elif code == 0x30:    # ldb [k]
                a = frame[k]
            elif code == 0x48:    # ldh [x + k]
                a = struct.unpack_from("!H", frame, x + k)[0]
            elif code == 0xB1:    # ldxb 4 * ([k] & 0xf)
                x = 4 * (frame[k] & 0x0F)
            elif code == 0x15:    # jeq #k
                pc += jt if a == k else jf
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
