# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make bench` still works: bench/run_all.py --quick runs every benchmark and writes the report.

A smoke test only: it asserts that the run completes, that the report has every section and
that the plots exist. It asserts nothing about speed (the benchmarks measure that).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 420  # the quick run takes well under a minute on 2 idle cores

SECTIONS = ["## Machine", "## Targets", "## Plumbing per pod vs the CNI bridge plugin",
            "## vm_network role: wall time vs number of VMs", "## DHCP: podnet-dhcpd vs dnsmasq",
            "## A real VM's boot to lease", "## The runs"]


def test_quick_bench_writes_the_report(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed: pip install -r requirements/bench.txt")
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--out", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = (tmp_path / "performance.md").read_text()
    for section in SECTIONS:
        assert section in report, f"{section} missing from the report"
    for name in ("CPU", "kernel", "Python", "pyroute2", "ansible-core", "date"):
        assert f"| {name} |" in report
    for plot in ("plumb-vs-n.png", "dhcp-rss-vs-pods.png"):
        path = tmp_path / "img" / plot
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{plot} not written"
        assert f"img/{plot}" in report
    if (REPO / "bench" / "bench_vm_network_role.py").exists():
        assert (tmp_path / "img" / "role-wall-vs-vms.png").is_file()
