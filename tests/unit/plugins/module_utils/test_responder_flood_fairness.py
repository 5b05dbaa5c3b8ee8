# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp_responder: a VM that writes frames faster than the responder reads them costs a bounded
amount of work per wakeup, and a quiet pod is answered in the same loop turn (bench/bench_flood.py).

No sockets: the flooding pod's socket hands over a new frame on every read, as a packet socket does
while its VM writes ~270,000 frames a second into its tap (the queue refills as fast as it is read).
"""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("pyroute2")

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import FRAME_BURST, Pod  # noqa: E402

from lib.pod_samples import MAC, declaration  # noqa: E402

# A test failure instead of a hang: far more reads than any bounded wakeup makes.
READ_CAP = 100_000


def _client(mtype, **fields):
    payload = codec.encode_message({"op": 1, "xid": 77, "chaddr": MAC, **fields}, [(53, mtype), (55, [1, 3, 121])])
    return codec.build_frame(MAC, "ff:ff:ff:ff:ff:ff", fields.get("ciaddr", "0.0.0.0"), "255.255.255.255",
                             payload, 68, 67)


class _Socket:
    """A packet socket: ``queue`` frames queued; ``endless`` hands over a new frame on every read."""

    def __init__(self, frames=(), endless=None):
        self.queue, self.endless = list(frames), endless
        self.sent, self.reads = [], 0
        self.real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # something the selector can watch

    def recvfrom(self, _size):
        self.reads += 1
        assert self.reads <= READ_CAP, "the responder keeps reading a socket its VM keeps filling"
        if self.endless is not None:
            return self.endless, ("tap0", 0x0003, 0, 1, b"")
        if not self.queue:
            raise BlockingIOError
        return self.queue.pop(0), ("tap0", 0x0003, 0, 1, b"")

    def send(self, frame):
        self.sent.append(frame)

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A responder (its clock frozen unless a test moves it) with a flooding pod and a quiet pod."""
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as responder
    clock = [1000.0]
    monkeypatch.setattr(responder.time, "monotonic", lambda: clock[0])
    r = responder.Responder(str(tmp_path / "run"))
    monkeypatch.setattr(r, "_write_event", lambda *args, **kwargs: None)
    flood = Pod("flood__eth0", declaration(), None)
    flood.sock = _Socket(endless=_client(codec.DISCOVER))
    quiet = Pod("quiet__eth0", declaration(), None)
    quiet.sock = _Socket()
    for pod in (flood, quiet):
        r.pods[pod.key] = pod
    yield r, flood, quiet, clock
    for pod in (flood, quiet):
        pod.sock.close()


def _turn(r, pods, clock):
    """One turn of ``Responder.run``: paused pods whose time is up resume, then every ready pod is read."""
    r.resume_paused(clock[0])
    for pod in pods:
        if pod.key not in r.paused and (pod.sock.endless is not None or pod.sock.queue):
            r.on_readable(pod)


def test_a_flooding_vm_costs_bounded_reads_and_a_quiet_pod_is_answered(node):
    r, flood, quiet, clock = node
    reads_per_turn = []
    for _turn_number in range(200):  # 10 s of the flood, one turn per refill of the flooder's bucket
        quiet.sock.queue.append(_client(codec.REQUEST, ciaddr="10.244.1.10"))
        before = flood.sock.reads
        _turn(r, [flood, quiet], clock)
        reads_per_turn.append(flood.sock.reads - before)
        assert not quiet.sock.queue, "the quiet pod's REQUEST is read in the turn it arrives"
        clock[0] += 0.05
    replies = [codec.decode_message(codec.parse_frame(f, dport=68)[3]) for f in quiet.sock.sent]
    assert [m["message_type"] for m in replies] == [codec.ACK] * 200, "every quiet REQUEST answered"
    assert flood.key in r.paused, "the flooding pod is paused between its tokens"
    # Its burst, then one token a refill: never the queue its VM keeps refilling.
    assert len(flood.sock.sent) <= FRAME_BURST + 200 * 0.05 * r.frame_rate + 1
    assert max(reads_per_turn) <= 1024, "a resumed pod's stale queue is dropped within a bound, not until empty"


def test_frames_over_a_pods_limit_do_not_spend_the_nodes_budget(node):
    """The node's budget bounds the frames handled; a flooding pod's frames beyond its own limit are not
    handled, so they must not take the tokens the quiet pods need."""
    from ansible_collections.virtnet.podnet.plugins.module_utils._responder_pod import TokenBucket
    r, flood, _quiet, clock = node
    r.node_bucket = TokenBucket(1e-9, 1e6)  # counts what is spent (it hardly refills)
    for _turn_number in range(100):
        _turn(r, [flood], clock)
        clock[0] += 0.05
    assert r.stats["rate_limited"] >= 99, "paused again after every refill"
    spent = round(r.node_bucket.burst - r.node_bucket.tokens)
    assert spent == len(flood.sock.sent), "only the frames it was answered cost the node's budget"
