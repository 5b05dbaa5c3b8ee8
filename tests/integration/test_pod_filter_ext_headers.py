"""The kernel runs the pod interface's filter as the unit tests do: RAs and DHCPv6 replies behind IPv6
extension headers stay out of the VM (issue 18 M2).

A lab pod plumbed by the real plumbing; frames crafted here go from the node's side of the pod's veth
(as another pod on a bridge CNI would send them) and are read where qemu reads them: the pod's tap.
No responder, no VM: only the filter is under test. Every frame stays inside the lab's namespaces.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import time

import pytest

from lib import plumbing
from lib.bindings import make_binding
from lib.netlab import NetLab
from lib.standin import netns_entered, open_tap

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as c6

pytestmark = [pytest.mark.root]

if os.geteuid() != 0:
    pytest.skip("needs root: network namespaces, taps, packet sockets", allow_module_level=True)
if shutil.which("ip") is None:
    pytest.skip("missing tool: ip", allow_module_level=True)

ROGUE_LL, VM_LL = "fe80::99", "fe80::858:aff:fef4:10a"


def with_chain(frame: bytes, kinds: list, offset: int = 0) -> bytes:
    """``frame`` (Ethernet + IPv6 without extension headers) with extension headers of ``kinds`` in order
    (44: a fragment header with ``offset``, more fragments set; others 8 bytes of padding options).
    Checksums stay valid: no header here changes the pseudo-header."""
    nxt, upper = frame[20], frame[54:]
    chain = b""
    for kind, following in reversed(list(zip(kinds, kinds[1:] + [nxt]))):
        if kind == 44:
            chain = struct.pack("!BBHI", following, 0, offset << 3 | 1, 0x5EED) + chain
        else:
            chain = bytes([following, 0]) + bytes(6) + chain
    ip = frame[14:18] + struct.pack("!HB", len(chain) + len(upper), kinds[0]) + frame[21:54]
    return frame[:14] + ip + chain + upper


def tagged(frame: bytes, tag: int) -> bytes:
    """The same frame from source MAC 02:00:00:00:00:<tag>: how the tap side tells the frames apart."""
    return frame[:6] + bytes([2, 0, 0, 0, 0, tag]) + frame[12:]


def ra() -> bytes:
    return c6.build_router_advertisement("02:00:00:00:00:99", ROGUE_LL, prefix="fd99::/64", mtu=1400)


def udp6(dport: int) -> bytes:
    return c6.build_udp6_frame("02:00:00:00:00:99", None, ROGUE_LL, c6.ALL_NODES, b"\x07\x00\x00\x01" + bytes(40),
                               sport=547, dport=dport)


def dropped_frames() -> dict:
    reply = udp6(546)
    first_fragment_without_upper = with_chain(reply[:54], [44, 60])  # RFC 7112 forbids it: the UDP header is elsewhere
    frames = [with_chain(ra(), [0, 60]), with_chain(ra(), [60, 60]), with_chain(ra(), [0, 43] + [60] * 6),
              with_chain(reply, [44]), with_chain(reply, [0, 44, 60]), with_chain(reply, [60] * 8),
              with_chain(ra(), [60] * 9), first_fragment_without_upper]
    return {tag: tagged(frame, tag) for tag, frame in enumerate(frames, start=1)}


def passing_frames() -> dict:
    frames = [with_chain(udp6(53), [0, 60]), with_chain(udp6(53), [44]),
              with_chain(udp6(546), [44], offset=185),  # a later fragment: no state to judge it, passes
              with_chain(udp6(53), [0] + [60] * 7)]
    return {tag: tagged(frame, tag) for tag, frame in enumerate(frames, start=0x41)}


def through_the_pod(lab: NetLab, pod, tap_fd: int, frames: dict, sentinel: int, timeout: float = 10) -> set:
    """Send ``frames`` into the pod's interface from the node's side, then a benign frame tagged ``sentinel``
    (once it is read, every frame sent before it had its chance); the tags of ``frames`` read on the tap."""
    with netns_entered(lab.node):
        tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    with tx:
        tx.bind((pod.host_veth, 0))
        for frame in frames.values():
            tx.send(frame)
        tx.send(tagged(udp6(53), sentinel))
    seen, deadline = set(), time.monotonic() + timeout
    while sentinel not in seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"the sentinel never came out of the tap (seen {sorted(seen)})")
        if select.select([tap_fd], [], [], remaining)[0]:
            frame = os.read(tap_fd, 65536)
            if frame[6:11] == bytes([2, 0, 0, 0, 0]):
                seen.add(frame[11])
    return seen & set(frames)


def wait_forwarding(lab: NetLab, pod, tap_fd: int) -> None:
    """The tap's carrier, and with it its bridge port, comes up a moment after qemu (here: us) opens it."""
    deadline = time.monotonic() + 15
    while True:
        try:
            through_the_pod(lab, pod, tap_fd, {}, sentinel=0x70, timeout=0.5)
            return
        except TimeoutError:
            if time.monotonic() > deadline:
                raise


@pytest.fixture
def lab():
    net = NetLab(prefix="pnx")
    net.start()
    try:
        yield net
    finally:
        net.close()


def test_the_kernel_drops_ras_and_dhcp6_replies_behind_extension_headers(lab, tmp_path):
    pod = lab.add_pod()
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    plumbing.plumb(pod.netns, make_binding(), str(run_dir))
    assert plumbing.dhcp_filters_present(pod.netns) == {"tap": True, "pod_interface": True}
    tap_fd = open_tap(pod.netns)
    try:
        wait_forwarding(lab, pod, tap_fd)
        dropped, passing = dropped_frames(), passing_frames()
        seen = through_the_pod(lab, pod, tap_fd, {**dropped, **passing}, sentinel=0x7E)
        assert seen & set(dropped) == set(), f"reached the VM: {sorted(seen & set(dropped))}"
        assert seen == set(passing), f"benign frames lost: {sorted(set(passing) - seen)}"
        # Control: without the filter every one of them reaches the VM (so this test can fail).
        assert plumbing.set_dhcp_filters(pod.netns, False)["changed"]
        assert through_the_pod(lab, pod, tap_fd, dropped, sentinel=0x7F) == set(dropped)
    finally:
        os.close(tap_fd)
