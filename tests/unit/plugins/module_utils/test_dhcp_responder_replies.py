# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp_responder: the replies it builds for a declared lease (no sockets)."""

from __future__ import annotations

import errno
import os
import socket
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pyroute2")

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp4_server as dhcp4  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as responder_module  # noqa: E402
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import Pod, INFORM_ACK  # noqa: E402

from lib.pod_samples import MAC, declaration  # noqa: E402


def test_option_55_honoured_but_routing_always_sent():
    pod = Pod("pod1__eth0", declaration(), None)
    request = {"xid": 9, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": [1]}
    opts = codec.scan_options(pod.lease4.reply_payload(codec.OFFER, request))
    for code in (1, 3, 26, 51, 54, 58, 59, 121):
        assert code in opts, code
    for code in (6, 12, 15, 119, 249):
        assert code not in opts, code
    opts = codec.scan_options(pod.lease4.reply_payload(codec.OFFER, dict(request, parameter_list=[6, 12, 15, 119, 249])))
    assert opts[6] == bytes([10, 96, 0, 10]) and opts[12] == b"vm1" and 249 in opts
    assert codec.decode_search_domains(opts[119]) == ["svc.cluster.local"]
    assert opts[54] == bytes([10, 244, 1, 1])  # the gateway: reachable by the unicast renewal
    assert struct.unpack("!I", opts[58])[0] == 300 and struct.unpack("!I", opts[59])[0] == 525


def test_inform_ack_carries_no_lease():
    pod = Pod("pod1__eth0", declaration(), None)
    payload = pod.lease4.reply_payload(INFORM_ACK, {"xid": 3, "flags": 0, "ciaddr": "10.244.1.10", "parameter_list": []})
    msg = codec.decode_message(payload)
    assert msg["message_type"] == codec.ACK and msg["yiaddr"] == "0.0.0.0" and msg["ciaddr"] == "10.244.1.10"
    assert not {"lease_time", "renewal_time", "rebinding_time"} & set(msg["options"])


def test_server_identifier_is_the_gateway_or_an_on_link_address():
    from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp4_server import server_identifier
    assert server_identifier(declaration()) == "10.244.1.1"
    assert server_identifier(declaration(gateway=None)) == "10.244.1.1"
    assert server_identifier(declaration(gateway=None, ip="10.244.1.1")) == "10.244.1.254"
    assert server_identifier(declaration(gateway="169.254.1.1", prefixlen=32)) == "169.254.1.1"


class _FakeSocket:
    """A packet socket on a link of ``mtu``: the kernel refuses a larger frame with EMSGSIZE; ``strict``
    makes that a test failure instead (a reply must never be larger than the link)."""

    def __init__(self, mtu=65535, strict=True):
        self.sent = []
        self.mtu, self.strict = mtu, strict

    def fileno(self):
        return -1

    def close(self):
        pass

    def send(self, frame):
        if len(frame) - 14 > self.mtu:
            assert not self.strict, f"a {len(frame) - 14}-byte reply on a link of MTU {self.mtu}"
            raise OSError(errno.EMSGSIZE, os.strerror(errno.EMSGSIZE))
        self.sent.append(frame)


# The fuzzed pod's replies fill its small MTU: the fuzzer also checks they never exceed it.
FUZZ_MTU = 400


@pytest.fixture(scope="module")
def responder(tmp_path_factory):
    from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import Responder
    r = Responder(str(tmp_path_factory.mktemp("run")))
    pod = Pod("pod1__eth0", declaration(mtu=FUZZ_MTU, dns_servers=[f"10.96.0.{i}" for i in range(1, 9)],
                                        search_domains=[f"d{i}-" + "x" * 40 + ".example" for i in range(4)]), None)
    pod.sock = _FakeSocket(FUZZ_MTU)
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


# -- a VM that floods, a VM whose replies do not fit ------------------------------------------------

class _QueueSocket(_FakeSocket):
    """A packet socket with ``frames`` queued, as the kernel would hand them over."""

    def __init__(self, frames):
        super().__init__()
        self.queue = list(frames)
        self.real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # something the selector can watch

    def recvfrom(self, _size):
        if not self.queue:
            raise BlockingIOError
        return self.queue.pop(0), ("tap0", 0x0003, 0, 1, b"")

    def fileno(self):
        return self.real.fileno()


@pytest.fixture
def flooded(tmp_path, monkeypatch):
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as responder
    clock = [1000.0]
    monkeypatch.setattr(responder.time, "monotonic", lambda: clock[0])
    r = responder.Responder(str(tmp_path / "run"))
    lines = []
    monkeypatch.setattr(r, "_write_event", lambda pod, text: lines.append(text))
    pod = Pod("pod1__eth0", declaration(), None)
    pod.sock = _QueueSocket([_client(codec.DISCOVER)] * 500)
    r.pods[pod.key] = pod
    yield r, pod, clock, lines
    pod.sock.real.close()


def test_a_flooding_vm_is_paused_not_served(flooded):
    r, pod, clock, _lines = flooded
    for _wake in range(20):
        r.on_readable(pod)
    assert len(pod.sock.sent) == responder_burst(), "only the burst is answered"
    assert pod.key in r.paused and r.stats["rate_limited"] == 1, "paused once: its socket is no longer read"
    assert len(pod.sock.queue) > 300, "what it sent meanwhile stays for the kernel to drop"
    clock[0] += 1.0
    r.resume_paused(clock[0])
    # The stale queue is dropped on resuming, up to what a real socket's buffer holds (this one holds more).
    from ansible_collections.virtnet.podnet.plugins.module_utils._responder_pod import PAUSED_DISCARD
    assert pod.key not in r.paused and len(pod.sock.queue) == 500 - responder_burst() - 1 - PAUSED_DISCARD
    pod.sock.queue = [_client(codec.DISCOVER)] * 100
    r.on_readable(pod)
    assert len(pod.sock.sent) == responder_burst() + 20, "after a second, a second's worth of frames"


def responder_burst():
    from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import FRAME_BURST
    return int(FRAME_BURST)


def test_log_lines_of_a_pod_are_capped_and_counted(flooded):
    from ansible_collections.virtnet.podnet.plugins.module_utils._responder_pod import LOG_LINES_PER_WINDOW, LOG_WINDOW
    r, pod, clock, lines = flooded
    for _event in range(1000):
        r.log_line(pod, "msg=DISCOVER reply=OFFER")
    assert len(lines) == LOG_LINES_PER_WINDOW
    clock[0] += LOG_WINDOW
    r.report_suppressed()
    assert lines[-1] == f"{1000 - LOG_LINES_PER_WINDOW} similar lines suppressed in the last {LOG_WINDOW:g} s"
    assert r.stats["suppressed_lines"] == 1000 - LOG_LINES_PER_WINDOW


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.integers(0, 255), max_size=40), min_size=1, max_size=50))
def test_reply_cache_stays_bounded_whatever_option_55_lists(lists):
    pod = Pod("pod1__eth0", declaration(), None)
    for requested in lists:
        for reply in (codec.OFFER, codec.ACK):
            pod.lease4.reply_payload(reply, {"xid": 1, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": requested})
    assert len(pod.lease4.replies) <= 2 * 33


def test_a_reply_larger_than_the_vm_takes_drops_the_optional_options():
    big = declaration(mtu=576, search_domains=[f"d{i}-" + "x" * 50 + ".example" for i in range(10)],
                      dns_servers=[f"10.96.0.{i}" for i in range(1, 17)], hostname="vm1")
    pod = Pod("pod1__eth0", big, None)
    request = {"xid": 1, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": [1, 3, 6, 12, 15, 119]}
    payload = pod.lease4.reply_payload(codec.OFFER, request)
    assert len(payload) + 28 <= 576
    options = codec.scan_options(payload)
    assert 119 not in options and 6 not in options and 121 in options, "routing is kept, extras dropped"
    roomy = Pod("pod1__eth0", dict(big, mtu=1500), None)
    assert 119 in codec.scan_options(roomy.lease4.reply_payload(codec.OFFER, request))
    asked_small = dict(request, max_message_size=576)
    assert 119 not in codec.scan_options(roomy.lease4.reply_payload(codec.OFFER, asked_small)), "option 57 is honoured"


@pytest.mark.parametrize("mtu", [300, 400, 500, 575])
def test_a_reply_never_exceeds_an_mtu_below_576(mtu):
    """RFC 2131 makes every client take 576 bytes, but the link carries no more than its MTU (issue 18 M1)."""
    pod = Pod("pod1__eth0", declaration(mtu=mtu, search_domains=[f"d{i}-" + "x" * 50 + ".example" for i in range(10)],
                                        dns_servers=[f"10.96.0.{i}" for i in range(1, 17)], hostname="vm1",
                                        dhcp_options=_big_options()), None)
    for asked in (None, 576, 1500):
        request = {"xid": 1, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": [1, 3, 6, 12, 15, 119],
                   "max_message_size": asked}
        for reply in (codec.OFFER, codec.ACK, codec.NAK, INFORM_ACK):
            payload = pod.lease4.reply_payload(reply, request)
            if payload is None:
                assert mtu < 400, "only when not even the bare lease fits"
                continue
            assert len(payload) + 28 <= mtu, (reply, asked, len(payload))
            assert 121 in codec.scan_options(payload) or reply == codec.NAK, "the routes are kept"


def test_emsgsize_on_send_is_a_drop_not_a_closed_socket(tmp_path):
    """A reply the link refuses (EMSGSIZE) is dropped and counted, as a full queue (ENOBUFS) is: closing
    the socket made the rescan reopen it every second, for as long as the VM asked (issue 18 M1)."""
    r = responder_module.Responder(str(tmp_path / "run"))
    pod = Pod("pod1__eth0", declaration(), None)
    sock = pod.sock = _FakeSocket(mtu=100, strict=False)
    r.pods[pod.key] = pod
    dropped = r.stats["dropped"]
    r.handle_frame(pod, _client(codec.DISCOVER))
    assert pod.sock is sock and r.stats["dropped"] == dropped + 1 and r.stats["replied"] == 0
    sock.mtu = 1500
    r.handle_frame(pod, _client(codec.DISCOVER))
    assert len(sock.sent) == 1 and r.stats["replied"] == 1, "the same socket answers the next request"
    r.selector.close()


# -- KubeVirt's dhcpOptions ----------------------------------------------------------------------------
DHCP_OPTIONS = {"boot_file_name": "pxelinux.0", "tftp_server_name": "10.0.0.5", "ntp_servers": ["10.96.0.20"],
                "private_options": [{"option": 224, "value": "hello"}, {"option": 254, "value": "last"}]}
CONFIGURED = (66, 67, 42, 224, 254)


@pytest.mark.parametrize("reply", [codec.OFFER, codec.ACK, INFORM_ACK], ids=["offer", "ack", "inform"])
@pytest.mark.parametrize("requested", [[1, 3, 6], [], [1, 3, 66, 67, 42, 224, 254]],
                         ids=["not_asked", "no_option_55", "asked"])
def test_configured_dhcp_options_are_in_every_lease_reply(reply, requested):
    """Sent whatever option 55 lists, as KubeVirt does: udhcpc, dhclient and dhcpcd ask for none of
    them by default, and the VM's owner configured them for this VM."""
    pod = Pod("pod1__eth0", declaration(dhcp_options=DHCP_OPTIONS), None)
    payload = pod.lease4.reply_payload(reply, {"xid": 5, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": requested})
    opts = codec.scan_options(payload)
    assert opts[66] == b"10.0.0.5" and opts[67] == b"pxelinux.0" and opts[42] == bytes([10, 96, 0, 20])
    assert opts[224] == b"hello" and opts[254] == b"last"
    assert payload[108:119] == b"pxelinux.0\x00" and payload[44:53] == b"10.0.0.5\x00"  # file and sname
    assert payload[20:24] == bytes([10, 0, 0, 5])  # siaddr: the TFTP server, an IPv4 address here
    for code in (1, 3, 121, 26, 54):
        assert code in opts, code


def test_a_nak_carries_no_dhcp_options():
    pod = Pod("pod1__eth0", declaration(dhcp_options=DHCP_OPTIONS), None)
    payload = pod.lease4.reply_payload(codec.NAK, {"xid": 5, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": []})
    assert not set(CONFIGURED) & set(codec.scan_options(payload))
    assert payload[20:24] == bytes(4) and payload[44:300].strip(b"\x00").startswith(b"c\x82Sc")


def test_without_dhcp_options_replies_are_unchanged():
    plain, with_none = Pod("pod1__eth0", declaration(), None), Pod("pod1__eth0", declaration(dhcp_options=None), None)
    request = {"xid": 5, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": [1, 3, 6, 66, 67, 42, 224]}
    assert plain.lease4.reply_payload(codec.OFFER, request) == with_none.lease4.reply_payload(codec.OFFER, request)
    assert not set(CONFIGURED) & set(codec.scan_options(plain.lease4.reply_payload(codec.OFFER, request)))


def _big_options():
    return {"boot_file_name": "b" * 100, "tftp_server_name": "10.0.0.5",
            "private_options": [{"option": code, "value": "p" * 60} for code in range(224, 255)]}


def test_dhcp_options_that_do_not_fit_go_first_the_unasked_ones():
    """The reply must fit the VM (its MTU, its option 57, at least 576). Routing stays; DNS, host name
    and search list stay if they fit, all or none, as before dhcpOptions; then as many configured
    options as fit, those the client asked for first (option 55's order), then the others."""
    pod = Pod("pod1__eth0", declaration(mtu=576, dhcp_options=_big_options()), None)
    request = {"xid": 1, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": [1, 3, 6, 12, 66, 67, 230]}
    payload = pod.lease4.reply_payload(codec.OFFER, request)
    assert len(payload) + 28 <= 576
    opts = codec.scan_options(payload)
    assert {1, 3, 121, 6, 12} <= set(opts), "routing, and the optional options asked for"
    assert {66, 67, 230} <= set(opts), "the configured options asked for"
    assert 224 in opts and not (set(range(225, 255)) - {230}) & set(opts), "unasked ones only while room is left"
    assert len(payload) + 28 > 576 - 64, "the room is used: one more private option would not fit"
    # DNS and the host name do not fit with them: DNS and host name stay, the configured options fill the rest.
    crowded = Pod("pod1__eth0", declaration(mtu=576, dhcp_options=_big_options(),
                                            dns_servers=[f"10.96.0.{i}" for i in range(1, 17)]), None)
    opts = codec.scan_options(crowded.lease4.reply_payload(codec.OFFER, dict(request, parameter_list=[6, 230, 67, 231])))
    assert 6 in opts and 230 in opts and 67 in opts and 231 not in opts and 224 not in opts
    # A search list that alone does not fit goes (as before); the configured options still come.
    long_search = declaration(mtu=576, dhcp_options=_big_options(),
                              search_domains=[f"d{i}-" + "x" * 50 + ".example" for i in range(10)])
    opts = codec.scan_options(Pod("pod1__eth0", long_search, None).lease4.reply_payload(
        codec.OFFER, dict(request, parameter_list=[119, 67])))
    assert 119 not in opts and 67 in opts and 121 in opts
    # A roomy VM gets every one of them.
    roomy = Pod("pod1__eth0", declaration(mtu=9000, dhcp_options=_big_options()), None)
    opts = codec.scan_options(roomy.lease4.reply_payload(codec.OFFER, dict(request, max_message_size=9000)))
    assert set(range(224, 255)) <= set(opts) and 66 in opts and 67 in opts


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(0, 255), max_size=40), min_size=1, max_size=80))
def test_reply_cache_stays_bounded_with_dhcp_options(lists):
    pod = Pod("pod1__eth0", declaration(mtu=576, dhcp_options=_big_options()), None)
    for requested in lists:
        for reply in (codec.OFFER, codec.ACK):
            payload = pod.lease4.reply_payload(reply, {"xid": 1, "flags": 0, "ciaddr": "0.0.0.0", "parameter_list": requested})
            assert payload is not None and len(payload) + 28 <= 576
    assert len(pod.lease4.replies) <= dhcp4.MAX_TEMPLATES


def test_stderr_is_the_journal_only_when_journal_stream_names_it(monkeypatch, tmp_path):
    """Under systemd the journal stamps time, unit and PID: the responder's lines then omit them."""
    with open(tmp_path / "stderr", "w", encoding="utf-8") as stream:
        stat = os.fstat(stream.fileno())
        monkeypatch.setattr(sys, "stderr", stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
        assert responder_module.stderr_is_journal() is True
        monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino + 1}")  # stderr redirected elsewhere
        assert responder_module.stderr_is_journal() is False
        monkeypatch.delenv("JOURNAL_STREAM")
        assert responder_module.stderr_is_journal() is False


def test_a_netns_path_without_a_namespace_in_view_is_never_collected(tmp_path):
    """The responder's sandbox is a mount namespace of its own: a pod made after it started is
    a plain file there unless /run/netns propagates (podnet-netns.service). Found on a fleet
    node after a reboot: the responder took the live pods for deleted ones and removed their
    records - the only copy of what `absent` restores. A path that exists but holds no
    namespace in this view must leave the records alone (only a missing path means gone)."""
    from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import Responder
    run = tmp_path / "run"
    r = Responder(str(run))
    plain = tmp_path / "netns-file"
    plain.write_text("")  # what /run/netns/<pod> is where the nsfs mount did not propagate
    decl = dict(declaration(), netns=str(plain), netns_inode=[1, 2])
    pod = Pod("pod1__eth0", decl, None)
    collected = []
    r.collect = collected.append  # nothing may be collected
    r.open_socket = lambda p: pytest.fail("no socket into a path that is not a namespace here")
    r.check_pod(pod)
    assert collected == []
    plain.unlink()  # the pod really deleted: the path is gone
    r.check_pod(pod)
    assert collected == [pod]


def test_the_node_budget_bounds_what_many_vms_together_make_the_thread_do(tmp_path, monkeypatch):
    """L1: each VM within its own budget, 200 of them together used to get every frame handled
    (about 0.8 ms each when they defeat the reply cache). The node's budget caps the frames read
    from all pods; what is over it stays queued (the kernel drops it), every pod keeps its turn."""
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as responder
    clock = [1000.0]
    monkeypatch.setattr(responder.time, "monotonic", lambda: clock[0])
    r = responder.Responder(str(tmp_path / "run"), node_frame_rate=100.0, node_frame_burst=200.0)
    monkeypatch.setattr(r, "_write_event", lambda *args, **kwargs: None)
    pods = []
    try:
        for index in range(200):
            pod = Pod(f"pod{index}__eth0", declaration(), None)
            pod.sock = _QueueSocket([_client(codec.DISCOVER)] * 10)  # within its own burst of 40
            r.pods[pod.key] = pod
            pods.append(pod)
        for _second in range(3):
            for pod in pods:
                r.on_readable(pod)
            clock[0] += 1.0
        handled = sum(len(pod.sock.sent) for pod in pods)
        assert handled == 200 + 2 * 100, "the burst, then the rate: not the 2,000 frames sent"
        assert r.stats["node_throttled"] > 0 and r.stats["rate_limited"] == 0
        assert sum(len(pod.sock.queue) for pod in pods) == 2000 - handled, "the rest is left queued, not read"
        assert not r.node_bucket.available(clock[0] - 1.0)
    finally:
        for pod in pods:
            pod.sock.real.close()
