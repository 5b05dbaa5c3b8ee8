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
while ``cls_bpf`` with classic bytecode needs nothing else. pyroute2 declares
TCA_BPF_OPS as an integer, so the request is built from a small message class here.

Our filters carry their own priority, so removal deletes only them and leaves the ingress
qdisc alone when someone else's filters still hang off it.
"""

from __future__ import annotations

import struct
from socket import htons

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

try:
    from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, nla, nlmsg
    from pyroute2.netlink.exceptions import NetlinkError
    from pyroute2.netlink.rtnl import RTM_DELTFILTER, RTM_NEWTFILTER
    HAS_PYROUTE2 = True
except ImportError:  # the sanity import test runs without pyroute2
    HAS_PYROUTE2 = False
    nla = nlmsg = object

    class NetlinkError(Exception):
        code = 0

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


class _CbpfFilterMsg(nlmsg):
    """A tcmsg whose cls_bpf options carry classic bytecode (TCA_BPF_OPS as raw bytes).

    Not a subclass of pyroute2's tcmsg: pyroute2 caches the compiled NLA map on the class,
    and a subclass would inherit tcmsg's (TCA_BPF_OPS as uint32) once tcmsg was used.
    """

    if HAS_PYROUTE2:
        prefix = "TCA_"
        fields = (("family", "B"), ("pad1", "B"), ("pad2", "H"), ("index", "i"), ("handle", "I"),
                  ("parent", "I"), ("info", "I"))
        nla_map = (
            ("TCA_UNSPEC", "none"),
            ("TCA_KIND", "asciiz"),
            ("TCA_OPTIONS", "cbpf_options"),
        )

        class cbpf_options(nla):
            nla_map = (
                ("TCA_BPF_UNSPEC", "none"),
                ("TCA_BPF_ACT", "none"),
                ("TCA_BPF_POLICE", "none"),
                ("TCA_BPF_CLASSID", "uint32"),
                ("TCA_BPF_OPS_LEN", "uint16"),
                ("TCA_BPF_OPS", "cdata"),
                ("TCA_BPF_FD", "uint32"),
                ("TCA_BPF_NAME", "asciiz"),
                ("TCA_BPF_FLAGS", "uint32"),
            )


def _filter_msg(index: int, with_program: int | None = None):
    msg = _CbpfFilterMsg()
    msg["family"] = msg["pad1"] = msg["pad2"] = 0
    msg["index"] = index
    msg["handle"] = 0
    msg["parent"] = INGRESS_PARENT
    msg["info"] = htons(ETH_P_IP) | (FILTER_PRIO << 16)
    attrs = [["TCA_KIND", "bpf"]]
    if with_program is not None:
        program = udp_dport_drop_program(with_program)
        ops = b"".join(struct.pack("=HBBI", *insn) for insn in program)
        attrs.append(["TCA_OPTIONS", {"attrs": [
            ["TCA_BPF_OPS_LEN", len(program)],
            ["TCA_BPF_OPS", ops],
            ["TCA_BPF_NAME", f"{FILTER_NAME}-{with_program}"],
            ["TCA_BPF_FLAGS", TCA_BPF_FLAG_ACT_DIRECT],
        ]}])
    msg["attrs"] = attrs
    return msg


def _request(ipr, msg, msg_type: int, flags: int) -> None:
    """Send one request and wait for its ack; a netlink error raises ``NetlinkError``.

    put/get rather than ``nlm_request``: the synchronous ``nlm_request`` of pyroute2 0.9.7
    fails with KeyError('nlm_generator').
    """
    seq = ipr.addr_pool.alloc() if hasattr(ipr, "addr_pool") else None
    ipr.put(msg, msg_type, flags, msg_seq=seq)
    for reply in ipr.get(msg_seq=seq):
        error = reply.get("header", {}).get("error")
        if error is not None:
            raise error


def _ifindex(ipr, name: str):
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _our_filters(ipr, index: int) -> list:
    try:
        filters = ipr.get_filters(index=index, parent=INGRESS_PARENT)
    except NetlinkError as exc:
        if exc.code in (ENODEV, EINVAL, ENOENT):
            return []
        raise
    return [f for f in filters if (f.get("info", 0) >> 16) == FILTER_PRIO and f.get_attr("TCA_KIND") == "bpf"]


def _all_filters(ipr, index: int) -> list:
    try:
        return list(ipr.get_filters(index=index, parent=INGRESS_PARENT))
    except NetlinkError as exc:
        if exc.code in (ENODEV, EINVAL, ENOENT):
            return []
        raise


def _has_ingress(ipr, index: int) -> bool:
    return any(q.get_attr("TCA_KIND") in ("ingress", "clsact") for q in ipr.get_qdiscs(index=index)
               if q.get("parent") == 0xFFFFFFF1)


def _install_one(ipr, index: int, port: int) -> bool:
    if _our_filters(ipr, index):
        return False
    if not _has_ingress(ipr, index):
        try:
            ipr.tc("add", "ingress", index, INGRESS_HANDLE)
        except NetlinkError as exc:
            if exc.code != EEXIST:
                raise
    _request(ipr, _filter_msg(index, port), RTM_NEWTFILTER, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
    return True


def install_dhcp_filters(ipr, tap: str, pod_interface: str) -> dict:
    """Ensure the drop filters exist (idempotent). ``ipr``: an IPRoute inside the pod's namespace.

    Missing links are skipped (reported in the result), never an error.
    Returns ``{"changed": bool, "tap": "added|present|missing", "pod_interface": ...}``.
    """
    result = {"changed": False}
    for role, name, port in (("tap", tap, 67), ("pod_interface", pod_interface, 68)):
        try:
            index = _ifindex(ipr, name)
            if index is None:
                result[role] = "missing"
                continue
            added = _install_one(ipr, index, port)
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
    result = {"changed": False}
    for role, name in (("tap", tap), ("pod_interface", pod_interface)):
        try:
            index = _ifindex(ipr, name)
            if index is None:
                result[role] = "missing"
                continue
            ours = _our_filters(ipr, index)
            if ours:
                _request(ipr, _filter_msg(index), RTM_DELTFILTER, NLM_F_REQUEST | NLM_F_ACK)
                if _has_ingress(ipr, index) and not _all_filters(ipr, index):
                    ipr.tc("del", "ingress", index, INGRESS_HANDLE)
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
    out = {}
    for role, name in (("tap", tap), ("pod_interface", pod_interface)):
        index = _ifindex(ipr, name)
        out[role] = bool(index is not None and _our_filters(ipr, index))
    return out
