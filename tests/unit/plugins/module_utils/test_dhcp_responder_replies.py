# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp_responder: the replies it builds for a declared lease (no sockets)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pyroute2")

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import Pod, INFORM_ACK  # noqa: E402

from lib.pod_samples import MAC, declaration  # noqa: E402


def test_option_55_honoured_but_routing_always_sent():
    pod = Pod("pod1__eth0", declaration(), None)
    request = {"xid": 9, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": [1]}
    opts = codec.scan_options(pod.reply_payload(codec.OFFER, request))
    for code in (1, 3, 26, 51, 54, 58, 59, 121):
        assert code in opts, code
    for code in (6, 12, 15, 119, 249):
        assert code not in opts, code
    opts = codec.scan_options(pod.reply_payload(codec.OFFER, dict(request, parameter_list=[6, 12, 15, 119, 249])))
    assert opts[6] == bytes([10, 96, 0, 10]) and opts[12] == b"vm1" and 249 in opts
    assert codec.decode_search_domains(opts[119]) == ["svc.cluster.local"]
    assert opts[54] == bytes([10, 244, 1, 1])  # the gateway: reachable by the unicast renewal
    assert struct.unpack("!I", opts[58])[0] == 300 and struct.unpack("!I", opts[59])[0] == 525


def test_inform_ack_carries_no_lease():
    pod = Pod("pod1__eth0", declaration(), None)
    payload = pod.reply_payload(INFORM_ACK, {"xid": 3, "flags": 0, "ciaddr": "10.244.1.10", "parameter_list": []})
    msg = codec.decode_message(payload)
    assert msg["message_type"] == codec.ACK and msg["yiaddr"] == "0.0.0.0" and msg["ciaddr"] == "10.244.1.10"
    assert not {"lease_time", "renewal_time", "rebinding_time"} & set(msg["options"])


def test_server_identifier_is_the_gateway_or_an_on_link_address():
    from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import server_identifier
    assert server_identifier(declaration()) == "10.244.1.1"
    assert server_identifier(declaration(gateway=None)) == "10.244.1.1"
    assert server_identifier(declaration(gateway=None, ip="10.244.1.1")) == "10.244.1.254"
    assert server_identifier(declaration(gateway="169.254.1.1", prefixlen=32)) == "169.254.1.1"


class _FakeSocket:
    def __init__(self):
        self.sent = []

    def send(self, frame):
        self.sent.append(frame)


@pytest.fixture(scope="module")
def responder(tmp_path_factory):
    from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import Responder
    r = Responder(str(tmp_path_factory.mktemp("run")))
    pod = Pod("pod1__eth0", declaration(), None)
    pod.sock = _FakeSocket()
    return r, pod


def _client(mtype, **fields):
    payload = codec.encode_message({"op": 1, "xid": 77, "chaddr": MAC, **fields}, [(53, mtype), (55, [1, 3, 121])])
    return codec.build_frame(MAC, "ff:ff:ff:ff:ff:ff", fields.get("ciaddr", "0.0.0.0"), "255.255.255.255",
                             payload, 68, 67)


@settings(max_examples=2000, deadline=None)
@given(st.data())
def test_handle_frame_never_raises_on_mutations(responder, data):
    r, pod = responder
    frame = bytearray(_client(data.draw(st.sampled_from([1, 3, 4, 7, 8]))))
    for _flip in range(data.draw(st.integers(0, 8))):
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(frame)))
    r.handle_frame(pod, bytes(frame[:cut]) + data.draw(st.binary(max_size=64)))


def test_handle_frame_protocol(responder):
    r, pod = responder
    pod.sock.sent.clear()
    r.handle_frame(pod, _client(codec.DISCOVER))
    r.handle_frame(pod, _client(codec.REQUEST, ciaddr="10.244.1.10"))
    r.handle_frame(pod, _client(codec.REQUEST, ciaddr="10.244.1.99"))
    replies = [codec.decode_message(codec.parse_frame(f, dport=68)[3]) for f in pod.sock.sent]
    assert [m["message_type"] for m in replies] == [codec.OFFER, codec.ACK, codec.NAK]
    assert replies[0]["yiaddr"] == "10.244.1.10" and replies[2]["yiaddr"] == "0.0.0.0"
    # Unicast ACK to ciaddr for a renewal, broadcast NAK.
    assert pod.sock.sent[1][30:34] == bytes([10, 244, 1, 10]) and pod.sock.sent[2][0:6] == b"\xff" * 6
    foreign = bytearray(_client(codec.DISCOVER))
    foreign[42 + 28] ^= 0x01  # another chaddr
    r.handle_frame(pod, bytes(foreign))
    assert len(pod.sock.sent) == 3
