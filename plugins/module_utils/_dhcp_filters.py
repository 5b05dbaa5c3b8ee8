# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: tc filters that keep the VM's DHCP inside the pod.

Two drop filters on ingress qdiscs, set through netlink:

- on the tap: UDP to port 67 (the VM's DISCOVER/REQUEST/renewal never reaches the bridge,
  so never leaves through the pod interface). The responder's packet socket still sees
  them: packet taps run before tc ingress in the receive path.
- on the pod interface: UDP to port 68 (DHCP server replies from the cluster network
  never reach the VM).

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

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as nl
from ansible_collections.virtnet.podnet.plugins.module_utils._netlink import NetlinkError
from ansible_collections.virtnet.podnet.plugins.module_utils._netns import LazyIPRoute

NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400

ETH_P_IP = 0x0800
INGRESS_PARENT = 0xFFFF0000
INGRESS_HANDLE = 0xFFFF0000
FILTER_PRIO = 0xD4C  # "our" priority: recognise our filters among others
FILTER_NAME = "podnet-dhcp"
ENOENT, EEXIST, ENODEV, EINVAL = 2, 17, 19, 22
TCA_BPF_FLAG_ACT_DIRECT = 1


def udp_dport_drop_program(port: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF (code, jt, jf, k), run on the frame from its Ethernet header (tc ingress)."""
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


TCA_KIND, TCA_OPTIONS = 1, 2
TCA_BPF_OPS_LEN, TCA_BPF_OPS, TCA_BPF_NAME, TCA_BPF_FLAGS = 4, 5, 7, 8
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC, RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 36, 37, 38, 44, 45, 46
TC_H_INGRESS = 0xFFFFFFF1


def _tcmsg(index: int, handle: int = 0, parent: int = INGRESS_PARENT, info: int = 0) -> bytes:
    return struct.pack("=BxHiIII", 0, 0, index, handle, parent, info)


def _filter_body(index: int, port: int | None = None) -> bytes:
    """Our filter, identified by its priority and kind; with ``port``, the program that drops it."""
    body = _tcmsg(index, info=htons(ETH_P_IP) | (FILTER_PRIO << 16)) + nl.nla(TCA_KIND, b"bpf\0")
    if port is not None:
        program = udp_dport_drop_program(port)
        options = (nl.nla(TCA_BPF_OPS_LEN, struct.pack("=H", len(program)))
                   + nl.nla(TCA_BPF_OPS, b"".join(struct.pack("=HBBI", *insn) for insn in program))
                   + nl.nla(TCA_BPF_NAME, f"{FILTER_NAME}-{port}".encode() + b"\0")
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


def _kind(payload: bytes) -> str:
    return nl.parse_attrs(payload, 20, len(payload)).get(TCA_KIND, b"").rstrip(b"\0").decode(errors="replace")


def _filters(raw, index: int) -> list:
    """(info, kind) of every filter on the link's ingress; none when it has no ingress qdisc."""
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
            out.append((info, _kind(payload)))
    return out


def _ours(filters: list) -> bool:
    return any(info >> 16 == FILTER_PRIO and kind == "bpf" for info, kind in filters)


def _has_ingress(raw, index: int) -> bool:
    for payload in raw.query(RTM_GETQDISC, _tcmsg(index, parent=0), dump=True):
        reply_index, parent = struct.unpack_from("=i", payload, 4)[0], struct.unpack_from("=I", payload, 12)[0]
        if reply_index == index and parent == TC_H_INGRESS and _kind(payload) in ("ingress", "clsact"):
            return True
    return False


def _install_one(raw, index: int, port: int) -> bool:
    if _ours(_filters(raw, index)):
        return False
    try:
        raw.request(RTM_NEWQDISC, _tcmsg(index, INGRESS_HANDLE, TC_H_INGRESS) + nl.nla(TCA_KIND, b"ingress\0"),
                    NLM_F_CREATE | NLM_F_EXCL)
    except NetlinkError as exc:
        if exc.code != EEXIST:  # an ingress (or clsact) qdisc is already there: share it
            raise
    raw.request(RTM_NEWTFILTER, _filter_body(index, port), NLM_F_CREATE | NLM_F_EXCL)
    return True


def install_dhcp_filters(ipr, tap: str, pod_interface: str) -> dict:
    """Ensure the drop filters exist (idempotent). ``ipr``: an IPRoute inside the pod's namespace.

    Missing links are skipped (reported in the result), never an error.
    Returns ``{"changed": bool, "tap": "added|present|missing", "pod_interface": ...}``.
    """
    _require_inside(ipr)
    result = {"changed": False}
    for role, name, port in (("tap", tap, 67), ("pod_interface", pod_interface, 68)):
        try:
            index = _ifindex(name)
            if index is None:
                result[role] = "missing"
                continue
            added = _install_one(nl.raw_socket(ipr), index, port)
        except NetlinkError as exc:
            if exc.code == ENODEV:
                result[role] = "missing"
                continue
            raise PodnetError(f"cannot install the DHCP filter on {name}: {exc}", interface=name) from None
        result[role] = "added" if added else "present"
        result["changed"] |= added
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


def dhcp_filters_present(ipr, tap: str, pod_interface: str) -> dict:
    """{"tap": bool, "pod_interface": bool}: whether our filters are in place (for CHECK/info)."""
    _require_inside(ipr)
    out = {}
    for role, name in (("tap", tap), ("pod_interface", pod_interface)):
        index = _ifindex(name)
        out[role] = bool(index is not None and _ours(_filters(nl.raw_socket(ipr), index)))
    return out
