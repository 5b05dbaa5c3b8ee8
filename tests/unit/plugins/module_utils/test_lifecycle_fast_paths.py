# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The cheaper paths of a pod's lifecycle read and write exactly what the slower ones did: IPv4 texts and
networks without ipaddress (_fields), option 121 from normalised routes (_dhcp_codec), the lifecycle's
log lines without the logging machinery (_dhcp_responder)."""

from __future__ import annotations

import io
import ipaddress
import itertools
import logging

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as dr
from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir as rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

from lib.pod_samples import declaration

OCTETS = ["0", "1", "9", "10", "01", "00", "99", "100", "199", "249", "250", "255", "256", "300", "1000", "", "+1",
          "-1", " 1", "1 ", "\u0661", "\uff11", "0x1", "1e1"]


def _reference(value):
    address = fields.ip_address(value, 4)
    return None if address is None else str(address)


@pytest.mark.parametrize("first", OCTETS)
def test_ipv4_text_takes_exactly_what_ipaddress_takes(first):
    for rest in itertools.product(OCTETS[:14], repeat=3):
        text = ".".join((first,) + rest)
        assert fields.ipv4_text(text) == _reference(text), text


@pytest.mark.parametrize("value", ["1.2.3.4\n", "1.2.3.4%eth0", "1.2.3.4\x00", "1.2.3", "1.2.3.4.5", "1..2.3", "",
                                   " 1.2.3.4", None, 16909060, b"1.2.3.4", ["1.2.3.4"], "1.2.3.4/32"])
def test_ipv4_text_rejects_what_ipv4_rejects(value):
    errors = []
    assert fields.ipv4_text(value) is None
    assert fields.ipv4(value, "ip", errors) is None and errors


@pytest.mark.parametrize("dst", ["10.0.0.0/8", "10.1.2.3/8", "0.0.0.0/0", "1.2.3.4/32", "192.168.7.255/23", "10.0.0.0/024",
                                 "10.0.0.0/33", "10.0.0.0/", "10.0.0.0", "10.0.0.0/255.0.0.0", "10.0.0.0/0.255.255.255",
                                 "10.0.0.01/8", "10.0.0.0/8\n", "10.0.0.0/\u0668", "10.0.0.0/ 8", "10.0.0.0/-1", "fe80::/10",
                                 "10.0.0.0%x/8"])
def test_a_route_destination_normalises_as_ipaddress_does(dst):
    errors = []
    out = rundir._routes([{"dst": dst, "gateway": None}], errors)
    try:
        expected = str(ipaddress.IPv4Network(dst, strict=False))
    except ValueError:
        expected = None
    assert (out[0]["dst"] if out else None) == expected
    assert bool(errors) == (expected is None)


def test_option_121_from_normalised_routes_is_what_normalise_routes_encodes():
    routes = [{"dst": "10.244.1.0/24", "gateway": None}, {"dst": "0.0.0.0/0", "gateway": "10.244.1.1"},
              {"dst": "172.16.0.0/12", "gateway": "0.0.0.0"}, {"dst": "192.168.1.128/25", "gateway": "10.0.0.1"},
              {"dst": "10.1.2.3/32", "gateway": None}]
    assert codec.encode_classless_routes(routes) == codec._encode_classless_routes(routes)
    assert codec.decode_classless_routes(codec.encode_classless_routes(routes))[0] == routes[0]


@pytest.mark.parametrize("route", [{"dst": "10.0.0.0/8", "gateway": "10.0.0.256"}, {"dst": "nope", "gateway": None},
                                   {"gateway": None}, "10.0.0.0/8"])
def test_a_route_not_normalised_still_fails_as_before(route):
    with pytest.raises(PodnetError):
        codec.encode_classless_routes([route])


def test_a_route_in_another_form_still_encodes_as_before():
    routes = [{"dst": "10.0.0.0/255.0.0.0", "gateway": None}]
    assert codec.encode_classless_routes(routes) == bytes([8, 10, 0, 0, 0, 0])


def test_a_lifecycle_line_goes_where_its_logging_line_went(responder, caplog):
    with caplog.at_level(logging.INFO, logger="podnet-dhcpd"):
        responder._info("pod=a declared")  # no stream of ours: through logging
    assert [r.getMessage() for r in caplog.records] == ["pod=a declared"]
    stream = io.StringIO()
    responder.event_stream, responder.event_stamped = stream, False
    level = dr.LOG.level
    dr.LOG.setLevel(logging.INFO)
    try:
        responder._info("pod=b records removed (namespace gone): b.json")
    finally:
        dr.LOG.setLevel(level)
    assert stream.getvalue() == "INFO pod=b records removed (namespace gone): b.json\n"  # main()'s format on the journal


def test_stamped_lines_carry_the_time_of_their_own_second(responder, monkeypatch):
    stream = io.StringIO()
    responder.event_stream = stream
    pod = dr.Pod("pod1__eth0", declaration(), None)
    for now in (1000.25, 1000.75, 1001.5):
        monkeypatch.setattr(dr.time, "time", lambda now=now: now)
        responder._write_event(pod, "x")
    stamps = [line.split(" podnet-dhcpd[")[0] for line in stream.getvalue().splitlines()]
    expected = [dr.time.strftime("%Y-%m-%d %H:%M:%S", dr.time.localtime(now)) + f",{ms:03d}"
                for now, ms in ((1000, 250), (1000, 750), (1001, 500))]
    assert stamps == expected


def test_read_json_reads_a_record_refuses_a_directory_and_misses_nothing(tmp_path):
    path = tmp_path / "r.json"
    assert rundir.read_json(str(path)) is None
    path.write_text('{"a": 1}')
    assert rundir.read_json(str(path)) == {"a": 1}
    with pytest.raises(PodnetError, match="cannot read"):
        rundir.read_json(str(tmp_path))
    path.write_text(" " * (rundir.MAX_RECORD + 1))
    with pytest.raises(PodnetError, match="larger than"):
        rundir.read_json(str(path))


def test_the_daemon_runs_with_its_startup_objects_frozen(tmp_path, monkeypatch):
    """The modules and the responder made at startup are out of the cyclic collector's full collections."""
    import gc  # pylint: disable=import-outside-toplevel
    seen = []
    monkeypatch.setattr(dr.Responder, "install_signal_handlers", lambda self: None)
    monkeypatch.setattr(dr.Responder, "run", lambda self: seen.append(gc.get_freeze_count()))
    handlers, propagate, level = list(dr.LOG.handlers), dr.LOG.propagate, dr.LOG.level
    try:
        assert dr.main(["--run-dir", str(tmp_path / "run"), "--log-file", str(tmp_path / "log")]) == 0
    finally:
        for handler in dr.LOG.handlers[:]:
            if handler not in handlers:
                dr.LOG.removeHandler(handler)
                handler.close()
        dr.LOG.propagate, dr.LOG.level = propagate, level
        gc.unfreeze()
    assert seen and seen[0] > 0


def test_a_record_is_read_in_one_read(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text('{"a": 1}')
    reads = []
    real = dr.os.pread
    monkeypatch.setattr(dr.os, "pread", lambda fd, size, offset: reads.append(offset) or real(fd, size, offset))
    assert rundir.read_json(str(path)) == {"a": 1}
    assert reads == [0]
