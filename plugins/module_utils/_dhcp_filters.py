# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: tc filters that keep the VM's DHCP (v4 and v6) and RAs inside the pod.

Two drop filters on ingress qdiscs, set through netlink:

- on the tap: IPv4 UDP to port 67, IPv6 UDP to port 547 and ICMPv6 Router Solicitations
  (type 133): the VM's DHCP and RS never reach the bridge, so never leave through the pod
  interface. The responder's packet socket still sees them: packet taps run before tc
  ingress in the receive path.
- on the pod interface: IPv4 UDP to port 68, IPv6 UDP to port 546 and ICMPv6 Router
  Advertisements (type 134): DHCP replies and RAs from the cluster network never reach the
  VM, which sees only the responder's.

IPv6 extension headers are walked as ``_bpf_programs`` tells (up to 8, a first fragment judged as the
whole packet). ``_bpf_programs.dhcp_program`` builds the tc programs and the responder's socket filter
alike, so what tc drops is exactly what the responder is woken for.

The filters are ``protocol all`` since 0.2 (one program for IPv4 and IPv6); the IPv4-only
programs of 0.1 (``protocol ip``) at our priority are *outdated*, as are 0.2.0's (one extension
header skipped; the kernel keeps the bytecode, which tells): ``dhcp_filters_present`` reports
them False, ``install_dhcp_filters`` replaces them ("replaced") and ``remove_dhcp_filters``
removes them as it removes the current ones.

Each filter is ``cls_bpf`` in direct-action mode running a classic BPF program that returns
TC_ACT_SHOT for a match and TC_ACT_UNSPEC (next filter) otherwise. Why not u32 with
``action drop``: that needs ``act_gact``, which many kernels (this lab's included) lack,
while ``cls_bpf`` with classic bytecode needs nothing else. The requests are small raw
rtnetlink messages on the plumbing's socket (``_netlink``): pyroute2 costs ~0.5 ms of Python
per request and declares TCA_BPF_OPS as an integer.

Our filters carry their own priority, so removal deletes only them and leaves the ingress
qdisc alone when someone else's filters still hang off it.
"""

from __future__ import annotations

import socket
import struct
from socket import htons

from ansible_collections.virtnet.podnet.plugins.module_utils._bpf_programs import dhcp_program
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as nl
from ansible_collections.virtnet.podnet.plugins.module_utils._netlink import NetlinkError
from ansible_collections.virtnet.podnet.plugins.module_utils._netns import LazyIPRoute

NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400

ETH_P_ALL = 0x0003
INGRESS_PARENT = 0xFFFF0000
INGRESS_HANDLE = 0xFFFF0000
FILTER_PRIO = 0xD4C  # "our" priority: recognise our filters among others
FILTER_NAME = "podnet-dhcp"
ENOENT, EEXIST, ENODEV, EINVAL = 2, 17, 19, 22
TCA_BPF_FLAG_ACT_DIRECT = 1


def udp_dport_drop_program(port: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF (code, jt, jf, k), run on the frame from its Ethernet header (tc ingress).

    The IPv4-only program of 0.1 (``protocol ip``), kept to recognise and test it: outdated now.
    """
    return [
        (0x28, 0, 0, 12),            # ldh [12]           ethertype
        (0x15, 0, 7, 0x0800),        # jeq #IPv4          else pass
        (0x30, 0, 0, 23),            # ldb [23]           IP protocol
        (0x15, 0, 5, 17),            # jeq #UDP           else pass
        (0x28, 0, 0, 20),            # ldh [20]           fragment offset
        (0x45, 3, 0, 0x1FFF),        # jset #0x1fff       later fragments pass
        (0xB1, 0, 0, 14),            # ldxb 4*([14]&0xf)  IP header length
        (0x48, 0, 0, 16),            # ldh [x+16]         UDP destination port
        (0x15, 1, 0, port),          # jeq #port          -> drop
        (0x06, 0, 0, 0xFFFFFFFF),    # ret #TC_ACT_UNSPEC (next filter decides)
        (0x06, 0, 0, 2),             # ret #TC_ACT_SHOT
    ]


TC_ACT_SHOT, TC_ACT_UNSPEC = 2, 0xFFFFFFFF
# (IPv4 UDP port, IPv6 UDP port, ICMPv6 type) each filter drops.
TAP_MATCH = (67, 547, 133)  # from the VM: DHCPv4 and DHCPv6 to a server, Router Solicitation
POD_MATCH = (68, 546, 134)  # from the cluster: DHCPv4 and DHCPv6 to a client, Router Advertisement


def tap_drop_program() -> list[tuple[int, int, int, int]]:
    """The tap's ingress: the VM's DHCPv4, DHCPv6 and Router Solicitations are dropped."""
    return dhcp_program(*TAP_MATCH, match=TC_ACT_SHOT, nomatch=TC_ACT_UNSPEC)


def pod_drop_program() -> list[tuple[int, int, int, int]]:
    """The pod interface's ingress: DHCPv4/DHCPv6 replies and Router Advertisements are dropped."""
    return dhcp_program(*POD_MATCH, match=TC_ACT_SHOT, nomatch=TC_ACT_UNSPEC)


def _ops(program) -> bytes:
    return b"".join(struct.pack("=HBBI", *insn) for insn in program)


PROGRAMS = {"tap": tap_drop_program, "pod_interface": pod_drop_program}


TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_OPS_LEN, TCA_BPF_OPS, TCA_BPF_NAME, TCA_BPF_FLAGS = 4, 5, 7, 8
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC, RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 36, 37, 38, 44, 45, 46
TC_H_INGRESS = 0xFFFFFFF1


def _tcmsg(index: int, handle: int = 0, parent: int = INGRESS_PARENT, info: int = 0) -> bytes:
    return struct.pack("=BxHiIII", 0, 0, index, handle, parent, info)


def _filter_body(index: int, role: str | None = None) -> bytes:
    """Our filter, identified by its priority and kind; with ``role``, the program that drops what that side must
    not pass. Without (a deletion), protocol 0: whatever protocol the filter at our priority has (0.1's: ip)."""
    protocol = htons(ETH_P_ALL) if role is not None else 0
    body = _tcmsg(index, info=protocol | (FILTER_PRIO << 16)) + nl.nla(TCA_KIND, b"bpf\0")
    if role is not None:
        program = PROGRAMS[role]()
        options = (nl.nla(TCA_BPF_OPS_LEN, struct.pack("=H", len(program)))
                   + nl.nla(TCA_BPF_OPS, _ops(program))
                   + nl.nla(TCA_BPF_NAME, f"{FILTER_NAME}-{role}".encode() + b"\0")
                   + nl.nla(TCA_BPF_FLAGS, struct.pack("=I", TCA_BPF_FLAG_ACT_DIRECT)))
        body += nl.nla(TCA_OPTIONS | nl.NLA_F_NESTED, options)
    return body


def _require_inside(ipr) -> None:
    # The requests go out on a socket of this thread: only _netns.entered() puts it in the pod.
    # A socket made elsewhere (pyroute2's NetNS, say) would put the filters on the node's links.
    if not isinstance(ipr, LazyIPRoute):
        raise PodnetError("DHCP filters are set from inside the pod's namespace: pass the ipr that "
                          "_netns.entered() yields")


def _ifindex(name: str):
    # The calling thread is inside the pod's namespace (see _netns.entered), so this ioctl is too.
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return None


def _attrs(payload: bytes) -> dict:
    return nl.parse_attrs(payload, 20, len(payload))


def _kind(payload: bytes) -> str:
    return _attrs(payload).get(TCA_KIND, b"").rstrip(b"\0").decode(errors="replace")


def _bpf_ops(payload: bytes):
    """The classic program (TCA_BPF_OPS bytes) of a cls_bpf filter in a dump, None without one (the kernel
    keeps no name for classic programs, so the bytecode itself tells ours and current)."""
    options = _attrs(payload).get(TCA_OPTIONS)
    if not options:
        return None
    return nl.parse_attrs(options, 0, len(options)).get(TCA_BPF_OPS)


def _filters(raw, index: int) -> list:
    """(info, kind, bpf ops) of every filter on the link's ingress; none when it has no ingress qdisc."""
    try:
        replies = raw.query(RTM_GETTFILTER, _tcmsg(index), dump=True)
    except NetlinkError as exc:
        if exc.code in (ENODEV, EINVAL, ENOENT):
            return []
        raise
    out = []
    for payload in replies:
        reply_index, info = struct.unpack_from("=i", payload, 4)[0], struct.unpack_from("=I", payload, 16)[0]
        if reply_index == index:
            out.append((info, _kind(payload), _bpf_ops(payload)))
    return out


def _ours(filters: list) -> bool:
    """Any filter of ours at our priority, current or outdated."""
    return any(info >> 16 == FILTER_PRIO and kind == "bpf" for info, kind, _ops_ in filters)


def _state(filters: list, role: str) -> str:
    """"current" (our priority, protocol all, this version's program), "outdated" (ours, another program or
    protocol: 0.1's IPv4-only one, 0.2.0's that skipped one IPv6 extension header) or "absent"."""
    ours = [(info, ops) for info, kind, ops in filters if info >> 16 == FILTER_PRIO and kind == "bpf"]
    if not ours:
        return "absent"
    wanted = _ops(PROGRAMS[role]())
    if any(info & 0xFFFF == htons(ETH_P_ALL) and ops == wanted for info, ops in ours):
        return "current"
    return "outdated"


def _has_ingress(raw, index: int) -> bool:
    for payload in raw.query(RTM_GETQDISC, _tcmsg(index, parent=0), dump=True):
        reply_index, parent = struct.unpack_from("=i", payload, 4)[0], struct.unpack_from("=I", payload, 12)[0]
        if reply_index == index and parent == TC_H_INGRESS and _kind(payload) in ("ingress", "clsact"):
            return True
    return False


def _install_one(raw, index: int, role: str) -> str:
    state = _state(_filters(raw, index), role)
    if state == "current":
        return "present"
    if state == "outdated":
        # Same priority, another protocol: the kernel refuses a second filter there. Replace it.
        raw.request(RTM_DELTFILTER, _filter_body(index))
    try:
        raw.request(RTM_NEWQDISC, _tcmsg(index, INGRESS_HANDLE, TC_H_INGRESS) + nl.nla(TCA_KIND, b"ingress\0"),
                    NLM_F_CREATE | NLM_F_EXCL)
    except NetlinkError as exc:
        if exc.code != EEXIST:  # an ingress (or clsact) qdisc is already there: share it
            raise
    raw.request(RTM_NEWTFILTER, _filter_body(index, role), NLM_F_CREATE | NLM_F_EXCL)
    return "replaced" if state == "outdated" else "added"


def install_dhcp_filters(ipr, tap: str, pod_interface: str) -> dict:
    """Ensure the drop filters exist, current (idempotent). ``ipr``: an IPRoute inside the pod's namespace.

    Missing links are skipped (reported in the result), never an error.
    Returns ``{"changed": bool, "tap": "added|replaced|present|missing", "pod_interface": ...}``;
    "replaced": an outdated filter of ours (an earlier version's program) was swapped for the current one.
    """
    _require_inside(ipr)
    result = {"changed": False}
    for role, name in (("tap", tap), ("pod_interface", pod_interface)):
        try:
            index = _ifindex(name)
            if index is None:
                result[role] = "missing"
                continue
            outcome = _install_one(nl.raw_socket(ipr), index, role)
        except NetlinkError as exc:
            if exc.code == ENODEV:
                result[role] = "missing"
                continue
            raise PodnetError(f"cannot install the DHCP filter on {name}: {exc}", interface=name) from None
        result[role] = outcome
        result["changed"] |= outcome != "present"
    return result


def remove_dhcp_filters(ipr, tap: str, pod_interface: str) -> dict:
    """Remove our filters (and the ingress qdisc if nothing else uses it). Idempotent."""
    _require_inside(ipr)
    result = {"changed": False}
    for role, name in (("tap", tap), ("pod_interface", pod_interface)):
        try:
            index = _ifindex(name)
            if index is None:
                result[role] = "missing"
                continue
            raw = nl.raw_socket(ipr)
            ours = _ours(_filters(raw, index))
            if ours:
                raw.request(RTM_DELTFILTER, _filter_body(index))
                # The ingress qdisc came with our filter unless someone else's filters use it.
                if not _filters(raw, index) and _has_ingress(raw, index):
                    raw.request(RTM_DELQDISC, _tcmsg(index, INGRESS_HANDLE, TC_H_INGRESS) + nl.nla(TCA_KIND, b"ingress\0"))
            result[role] = "removed" if ours else "absent"
            result["changed"] |= bool(ours)
        except NetlinkError as exc:
            if exc.code in (ENODEV, ENOENT, EINVAL):
                result[role] = "missing"
                continue
            raise PodnetError(f"cannot remove the DHCP filter from {name}: {exc}", interface=name) from None
    return result


def dhcp_filters_state(ipr, tap: str, pod_interface: str) -> dict:
    """{"tap": ..., "pod_interface": ...}, each "current", "outdated" (ours, an earlier version's program),
    "absent" or "missing" (no such link). ``remove_dhcp_filters`` removes current and outdated ones alike."""
    _require_inside(ipr)
    out = {}
    for role, name in (("tap", tap), ("pod_interface", pod_interface)):
        index = _ifindex(name)
        out[role] = "missing" if index is None else _state(_filters(nl.raw_socket(ipr), index), role)
    return out


def dhcp_filters_present(ipr, tap: str, pod_interface: str) -> dict:
    """{"tap": bool, "pod_interface": bool}: whether our current filters are in place (for CHECK/info).

    An outdated filter of ours (an earlier version's program) is False: a rerun of present replaces it.
    Whether anything of ours is there to remove: ``dhcp_filters_state`` (not "absent"/"missing").
    """
    return {role: state == "current" for role, state in dhcp_filters_state(ipr, tap, pod_interface).items()}
