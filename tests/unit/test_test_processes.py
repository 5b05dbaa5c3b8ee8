# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/lib/processes: a client's output is read without waiting for children that keep its pipe open."""

from __future__ import annotations

import time

from lib.processes import Processes, output_of


def test_output_of_a_process_whose_child_keeps_the_pipe_open_does_not_block():
    procs = Processes()
    # The shell prints and exits; its background child keeps stdout open for 20 s (as dhcpcd's helpers did).
    proc = procs.popen(["sh", "-c", "echo started; sleep 20 & exit 3"])
    assert proc.wait(10) == 3
    start = time.monotonic()
    out = output_of(proc, timeout=0.5)
    assert time.monotonic() - start < 5
    assert out.startswith("started") and out.endswith("[output cut: the pipe stayed open]")
    start = time.monotonic()
    procs.stop_all()  # reads what is left the same way
    assert time.monotonic() - start < 5


def test_output_of_a_finished_process_is_all_of_it():
    proc = Processes().popen(["sh", "-c", "printf 'a\\nb\\n'"])
    proc.wait(10)
    assert output_of(proc) == "a\nb\n"
