# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test helper's ``serving(key)`` counts only that pod's own "serving on" line (issue 17).

It used to look for the pod's key anywhere in the log and "serving on" anywhere after it, so a
later line of another pod made a pod that was never served look served.
"""

from __future__ import annotations

from lib.responder import ResponderProcess


def responder_with_log(tmp_path, *lines):
    log = tmp_path / "podnet-dhcpd.log"
    log.write_text("".join(f"{line}\n" for line in lines))
    return ResponderProcess(str(tmp_path), log_file=str(log))


def test_another_pods_serving_line_does_not_count(tmp_path):
    responder = responder_with_log(
        tmp_path,
        "2026-12-07 podnet-dhcpd INFO pod=pnt-pod1-aaaa__eth0 not served: cannot open namespace",
        "2026-12-07 podnet-dhcpd INFO pod=pnt-pod2-bbbb__eth0 vm de:ad:be:ef:00:02 serving on tap0")
    assert not responder.serving("pnt-pod1-aaaa__eth0")
    assert responder.serving("pnt-pod2-bbbb__eth0")


def test_a_key_that_prefixes_another_does_not_count(tmp_path):
    responder = responder_with_log(tmp_path, "pod=pnt-pod1-aaaa__eth01 vm x serving on tap0")
    assert not responder.serving("pnt-pod1-aaaa__eth0")
