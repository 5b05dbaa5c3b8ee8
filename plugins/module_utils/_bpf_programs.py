# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the classic BPF programs that pick DHCP (v4 and v6) and RS/RA frames.

``dhcp_program`` builds both the tc drop filters' programs (``_dhcp_filters``) and the responder's
packet socket filter (``_responder_sockets``), so what tc drops is exactly what the responder is
woken for. Pure bytecode building, standard library only: the responder needs nothing of tc or
netlink to filter its sockets.

IPv6 extension headers: the programs walk up to 8 hop-by-hop, routing, destination options and
fragment headers, in any order, to the upper layer (issue 18: a rogue RA hid behind two). A first
fragment (offset 0) is judged as the whole packet; a later fragment passes: classic BPF keeps no
state to tie it to its datagram, and without its first fragment (dropped if it is a reply or an RA)
it reassembles into nothing. Dropped as well, since they could hide a match and no real traffic
has them: a chain that runs off the frame (a first fragment without its upper header, which RFC
7112 forbids and the later fragments would bring) and one longer than 8 headers. Other headers
(AH, ESP, no next header, ...) end the walk and pass.
"""

from __future__ import annotations

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
_EXTENSION_HEADERS = (0, 43, 60)  # hop-by-hop, routing, destination options: (length + 1) * 8 bytes
FRAGMENT_HEADER = 44  # 8 bytes; its offset field (bytes 2-3, & 0xfff8) is nonzero in a later fragment
MAX_WALKED_HEADERS = 8  # as the responder's parser (_dhcp6_codec.MAX_EXTENSION_HEADERS)
IPV6_UPPER = 54  # the Ethernet and IPv6 headers: x counts from here while walking the chain
UPPER_BYTES = 4  # the most the walk reads at x: an extension header's first 2, UDP's ports, ICMPv6's type

# Classic BPF opcodes the programs use.
LDW, LDH, LDB, LDH_X, LDB_X, LDXB_MSH = 0x20, 0x28, 0x30, 0x48, 0x50, 0xB1
LD_IMM, LD_LEN, LD_MEM, ST, LDX_IMM = 0x00, 0x80, 0x60, 0x02, 0x01  # A = k; A = frame length; A = M[k]; M[k] = A; x = k
SUB_K, ADD_X, JA, JGE, JGE_X = 0x14, 0x0C, 0x05, 0x35, 0x3D
# A load from SKF_AD_OFF + SKF_AD_PKTTYPE (-4096 + 4) gives the frame's direction, not its bytes.
ANCILLARY_PKTTYPE = (-0x1000 + 4) & 0xFFFFFFFF
PACKET_OUTGOING = 4
ADD_K, LSH_K, TAX, JEQ, JSET, RET = 0x04, 0x64, 0x07, 0x15, 0x45, 0x06


def assemble(code) -> list[tuple[int, int, int, int]]:
    """Classic BPF from a list of ``(op, jt, jf, k)`` and label strings; ``jt``/``jf`` (``k`` of a JA) may
    name a label (forward jumps only, as cBPF has no others) instead of giving an offset."""
    labels, insns = {}, []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = []
    for pc, (op, jt, jf, k) in enumerate(insns):
        jt = labels[jt] - pc - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - pc - 1 if isinstance(jf, str) else jf
        k = labels[k] - pc - 1 if isinstance(k, str) else k
        if not (0 <= jt < 256 and 0 <= jf < 256) or (op == JA and k < 0):
            raise ValueError(f"jump out of range at {pc}")
        out.append((op, jt, jf, k))
    return out


def dhcp_program(v4_port, v6_port, icmp6_type, match: int, nomatch: int,
                 incoming_only: bool = False) -> list[tuple[int, int, int, int]]:
    """Classic BPF returning ``match`` for IPv4 UDP to ``v4_port`` (not a later fragment), IPv6 UDP to
    ``v6_port`` or ICMPv6 of type ``icmp6_type`` (behind up to 8 extension headers, in a first fragment too;
    see the module's docstring), else ``nomatch``. A None leaves that family out.
    ``incoming_only`` also returns ``nomatch`` for frames the host sends out of the link (a packet
    socket sees both directions; tc ingress only one).

    Run from the Ethernet header: by tc on ingress (cls_bpf pushes the MAC header back) and by a
    packet socket.
    """
    code = []
    if incoming_only:
        code += [(LDW, 0, 0, ANCILLARY_PKTTYPE), (JEQ, "no", 0, PACKET_OUTGOING)]
    code.append((LDH, 0, 0, 12))  # ethertype
    if v4_port is not None:
        code.append((JEQ, "v4", 0, ETH_P_IP))
    if v6_port is not None:
        code.append((JEQ, "v6", 0, ETH_P_IPV6))
    code.append((RET, 0, 0, nomatch))
    if v4_port is not None:
        code += ["v4",
                 (LDB, 0, 0, 23), (JEQ, 0, "no", 17),           # UDP
                 (LDH, 0, 0, 20), (JSET, "no", 0, 0x1FFF),      # later fragments pass
                 (LDXB_MSH, 0, 0, 14), (LDH_X, 0, 0, 16),       # x = IP header length; UDP destination port
                 (JEQ, "yes", "no", v4_port)]
    if v6_port is not None:
        code += ["v6"] + _ipv6_walk(v6_port, icmp6_type)
    code += ["no", (RET, 0, 0, nomatch), "yes", (RET, 0, 0, match)]
    return assemble(code)


def _fits(short):
    """Go to ``short`` unless the frame holds UPPER_BYTES at x (its length >= 58, checked first: no underflow)."""
    return [(LD_LEN, 0, 0, 0), (SUB_K, 0, 0, IPV6_UPPER + UPPER_BYTES), (JGE_X, 0, short, 0)]


def _ipv6_walk(v6_port, icmp6_type) -> list:
    """From the IPv6 header's next header through up to MAX_WALKED_HEADERS extension headers to UDP to
    ``v6_port`` or ICMPv6 of ``icmp6_type`` ("yes"), anything else "no". cBPF jumps only forward, so the walk
    is unrolled: step i keeps the next header in M[0] and the offset of its header (from IPV6_UPPER) in x."""
    code = [(LD_LEN, 0, 0, 0), (JGE, 0, "no", IPV6_UPPER + UPPER_BYTES),  # shorter: nothing to match, malformed
            (LDB, 0, 0, 20), (ST, 0, 0, 0), (LDX_IMM, 0, 0, 0)]
    for i in range(MAX_WALKED_HEADERS):
        code += [f"step{i}", (LD_MEM, 0, 0, 0), (JEQ, "udp", 0, 17), (JEQ, "icmp", 0, 58)]
        code += [(JEQ, f"walk{i}", 0, nh) for nh in (FRAGMENT_HEADER,) + _EXTENSION_HEADERS[:-1]]
        code += [(JEQ, f"walk{i}", "no", _EXTENSION_HEADERS[-1]), f"walk{i}"]
        code += _fits("yes")  # a chain running off the frame: dropped
        code += [(LD_MEM, 0, 0, 0), (JEQ, 0, f"ext{i}", FRAGMENT_HEADER),
                 (LDH_X, 0, 0, IPV6_UPPER + 2), (JSET, "no", 0, 0xFFF8),  # a later fragment passes
                 (LDB_X, 0, 0, IPV6_UPPER), (ST, 0, 0, 0), (LD_IMM, 0, 0, 0), (JA, 0, 0, f"next{i}"),  # 8 bytes long
                 f"ext{i}", (LDB_X, 0, 0, IPV6_UPPER), (ST, 0, 0, 0), (LDB_X, 0, 0, IPV6_UPPER + 1),
                 f"next{i}", (ADD_K, 0, 0, 1), (LSH_K, 0, 0, 3), (ADD_X, 0, 0, 0), (TAX, 0, 0, 0)]  # x += (len + 1) * 8
    code += [(LD_MEM, 0, 0, 0), (JEQ, "udp", 0, 17), (JEQ, "icmp", 0, 58)]
    code += [(JEQ, "yes", 0, nh) for nh in (FRAGMENT_HEADER,) + _EXTENSION_HEADERS]  # a longer chain: dropped
    code += [(JA, 0, 0, "no"), "udp"]
    code += _fits("yes") + [(LDH_X, 0, 0, IPV6_UPPER + 2), (JEQ, "yes", "no", v6_port), "icmp"]
    code += _fits("yes") + [(LDB_X, 0, 0, IPV6_UPPER), (JEQ, "yes", "no", icmp6_type)]
    return code
