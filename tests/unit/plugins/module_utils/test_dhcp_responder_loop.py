# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_dhcp_responder: the loop's own duties - counters, the event log, budgets (no sockets)."""

from __future__ import annotations

import glob
import logging
import logging.handlers

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as dr
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder import Pod

from lib.pod_samples import declaration


@pytest.fixture
def responder(tmp_path):
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    r = dr.Responder(str(tmp_path / "run"), machine_id=str(machine_id))
    yield r
    r.close()


def test_sigusr1_reports_every_counter(responder, caplog):
    responder.pods["pod1__eth0"] = Pod("pod1__eth0", declaration(), None)
    responder.stats["received"] = 7
    responder._on_usr1()
    assert responder.stats_wanted
    with caplog.at_level(logging.INFO, logger="podnet-dhcpd"):
        responder.report_stats()
    line = caplog.records[-1].getMessage()
    assert line.startswith("stats pods=1 serving=0 received=7 ")
    for name in responder.stats:
        assert f" {name}=" in line
    assert not responder.stats_wanted


def test_lease_events_survive_a_rotation_made_by_a_log_line(responder, tmp_path):
    """M4: the file handler rotates when any line fills the file - also a LOG line, which used to
    leave the event stream on the closed file, every later lease event silently lost."""
    path = tmp_path / "podnet-dhcpd.log"
    handler = logging.handlers.RotatingFileHandler(str(path), maxBytes=400, backupCount=50)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    dr.LOG.addHandler(handler)
    level = dr.LOG.level
    dr.LOG.setLevel(logging.INFO)  # as main() sets it: the LOG lines must reach the file
    try:
        responder.event_stream = handler.stream
        responder.log_handler = handler
        pod = Pod("pod1__eth0", declaration(), None)
        for i in range(40):
            dr.LOG.info("padding line %d %s", i, "x" * 60)  # rotates the file under the event stream
            responder._write_event(pod, f"event {i}")
    finally:
        dr.LOG.setLevel(level)
        dr.LOG.removeHandler(handler)
        handler.close()
    text = "".join(open(f).read() for f in glob.glob(str(path) + "*"))
    assert "padding line 39" in text
    assert len(glob.glob(str(path) + "*")) > 2  # it did rotate, more than once
    missing = [i for i in range(40) if f"event {i}\n" not in text]
    assert missing == []
    assert responder.stats["lost_lines"] == 0


def test_a_lost_event_line_is_counted_and_said_once(responder, tmp_path, caplog):
    pod = Pod("pod1__eth0", declaration(), None)
    stream = open(tmp_path / "closed.log", "w")
    stream.close()
    responder.event_stream = stream
    with caplog.at_level(logging.ERROR, logger="podnet-dhcpd"):
        responder._write_event(pod, "one")
        responder._write_event(pod, "two")
    assert responder.stats["lost_lines"] == 2
    assert len([r for r in caplog.records if "cannot write lease events" in r.getMessage()]) == 1
