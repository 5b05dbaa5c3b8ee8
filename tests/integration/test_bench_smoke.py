# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""`make bench` still works: bench/run_all.py --quick runs every benchmark at tiny sizes and writes the pages.

A smoke test of the report generators, not of speed: it asserts that the run completes, that
performance.md and every benchmark's own page are written into a temporary directory, that
every verdict there was computed by this run (met / missed, or "not measured" only where this
run's sizes cannot say), that a lost round trip misses its latency target, that every page names
the commit it measured, that figures of fewer than 5 samples are not called medians, that
versions were read from the tools, and that no path of this machine leaks into a page. It needs no matplotlib: without it the run is ``--no-plots`` and the
report must say so; with it the plots must exist.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 900  # the quick run takes one to two minutes on 2 loaded cores (one real VM boot among it)

SECTIONS = ["## Machine", "## Targets", "## Plumbing per pod vs the CNI bridge plugin",
            "## vm_network role: wall time vs number of VMs", "## DHCP: podnet-dhcpd vs dnsmasq",
            "## DHCPv6: podnet-dhcpd vs dnsmasq", "## Pod lifecycle: churn and flood", "## A real VM's boot to lease",
            "## The runs"]
PAGES = ["performance-cni-bridge.md", "performance-pod-bridge.md", "performance-dhcp.md", "performance-dhcp-burst.md",
         "performance-dhcp6.md",
         "performance-role.md", "performance-lifecycle.md", "performance-netlink-layers.md"]
# Targets a quick run measures (tiny sizes still say met or missed); the others need sizes it does not run.
COMPUTED = ["In-process plumbing <=", "Per-pod plumbing <=", "Dual-stack plumbing per pod", "DHCP DISCOVER->OFFER",
            "DHCP REQUEST->ACK", "DHCPv6 latency vs dnsmasq", "Pod churn", "Flood:", "Cluster flood:"]
LATENCY = ["DHCP DISCOVER->OFFER", "DHCP REQUEST->ACK", "DHCPv6 latency vs dnsmasq"]
COMMIT = re.compile(r"commit [0-9a-f]{7,40}(\+dirty)?\b")


def target_cells(report):
    table = report.split("## Targets", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")]
    return [cells for cells in rows[2:] if len(cells) >= 3]  # after the header and its rule


def target_rows(report):
    return {cells[0]: cells[2] for cells in target_cells(report)}


def check_latency_verdicts(report):
    """Every latency row states its lost round trips and the pacing; a row with any lost is missed."""
    rows = [cells for cells in target_cells(report) if any(cells[0].startswith(p) for p in LATENCY)]
    assert rows, "no latency targets"
    for target, measured, verdict_cell, *_why in rows:
        lost = re.search(r"(\d+) of (\d+) round trips lost", measured)
        assert lost and int(lost[2]) > 0, f"{target}: the lost round trips are not part of the verdict: {measured}"
        assert re.search(r"paced: \d+ pauses", measured), f"{target}: the pacing's pauses are not reported"
        if int(lost[1]):
            assert verdict_cell == "**missed**", f"{target}: met with {lost[1]} round trips lost"


def check_pages_name_commit(pages_dir, report):
    assert re.search(r"\| commit \| [0-9a-f]{7,40}(\+dirty)? \|", report), "performance.md has no commit row"
    for page in pages_dir.glob("*.md"):
        assert COMMIT.search(page.read_text()), f"{page.name} does not state the commit it measured"


def check_no_median_of_few(report, pod_page):
    """N = 1 in-process and the playbook columns are one sample each: never presented as a median."""
    row = next(line for line in report.splitlines() if line.startswith("| 1 |"))
    assert "(one sample)" in row and "(one run)" in row, f"N = 1 shown as a median: {row}"
    assert re.search(r"\| 1 \| [\d.]+ \(one sample\) \|", pod_page), "the pod bridge page calls one sample a median"


def test_quick_bench_writes_computed_reports(tmp_path):
    plots = importlib.util.find_spec("matplotlib") is not None
    # No fleet: its three nodes and SSH playbooks take minutes beside the rest of make test, and
    # molecule's fleet scenario runs the same path there; the section must say it was skipped.
    argv = [sys.executable, str(REPO / "bench" / "run_all.py"), "--quick", "--no-fleet", "--out", str(tmp_path)]
    if not plots:
        argv.append("--no-plots")
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = (tmp_path / "performance.md").read_text()
    for section in SECTIONS:
        assert section in report, f"{section} missing from the report"
    for name in ("CPU", "kernel", "Python", "pyroute2", "ansible-core", "CNI bridge plugin", "dnsmasq", "date"):
        assert f"| {name} |" in report
    assert re.search(r"\| dnsmasq \| \d+\.\d+", report), "dnsmasq's version not read from dnsmasq --version"
    assert "PLACEHOLDER" not in report and "Not measured in this run" not in report
    fleet = report.split("## A fleet over SSH", 1)[1].split("\n## ", 1)[0]
    assert "**Skipped in this run:** skipped: --no-fleet" in fleet, "the fleet section does not say it was skipped"

    rows = target_rows(report)
    for prefix in COMPUTED:
        verdicts = [v for target, v in rows.items() if target.startswith(prefix)]
        assert verdicts and all(v in ("met", "**missed**") for v in verdicts), f"{prefix}: {verdicts}"
    assert all(v in ("met", "**missed**", "not measured") for v in rows.values()), rows
    assert re.search(r"`ip link del` of an empty bridge in a fresh namespace took \d+\.\d+ ms", report), \
        "performance.md does not quote this run's bridge deletion"
    assert re.search(r"\*\*Unplumbing is (not )?kernel-bound in this run\*\*: .* \d+% of [\d.]+ ms", report), \
        "the kernel-bound sentence is not computed from this run"
    check_latency_verdicts(report)
    check_pages_name_commit(tmp_path, report)

    pages = PAGES + (["performance-vm-boot.md"] if shutil.which("qemu-system-x86_64") else [])
    for page in pages:
        text = (tmp_path / page).read_text()
        assert "python bench/" in text, f"{page} does not show the command that wrote it"
    pod_page = (tmp_path / "performance-pod-bridge.md").read_text()
    assert re.search(r"\*\*Target:\*\* at most 5 ms per pod in-process: (met|\*\*missed\*\*) in this run", pod_page)
    assert re.search(r"\*\*Dual-stack target:\*\* .*: (met|\*\*missed\*\*) in this run \(N = \d+: [\d.]+x", pod_page)
    check_no_median_of_few(report, pod_page)
    dhcp_page = (tmp_path / "performance-dhcp.md").read_text()
    assert re.search(r"one dnsmasq per pod, \d+ processes running at once", dhcp_page), "dnsmasq PSS not measured"
    assert re.search(r"Pacing: .* by pausing \d+ times before a round, [\d.]+ s in all", dhcp_page), "pauses not reported"
    met = re.search(r"DISCOVER -> OFFER met, REQUEST -> ACK met\.", dhcp_page)
    assert ("## Why it is fast enough" in dhcp_page) == bool(met), "the DHCP page claims speed the run did not measure"
    dhcp6_page = (tmp_path / "performance-dhcp6.md").read_text()
    for label in ("SOLICIT -> ADVERTISE", "REQUEST -> REPLY"):
        assert re.search(rf"\| {label} \| \d+\.\d+ ms \|.*\| \d+\.\d+ ms \| \d+\.\d+x \| \d+\.\d+x \|", dhcp6_page), \
            f"{label}: no DHCPv6 latency of both servers in performance-dhcp6.md"
    assert re.search(r"\*\*With IPv6 on, the responder holds [+-]\d+\.\d kB RSS and [+-]\d+\.\d kB PSS more per pod",
                     dhcp6_page), "performance-dhcp6.md does not give the memory IPv6 costs per pod"

    leaks = [str(REPO), sys.executable, str(Path(sys.executable).parent), tempfile.gettempdir() + "/", str(Path.home()) + "/"]
    for page in tmp_path.glob("*.md"):
        text = page.read_text()
        for leak in leaks:
            assert leak not in text, f"{page.name} shows a path of this machine: {leak}"

    if plots:
        for plot in ("plumb-vs-n.png", "dhcp-rss-vs-pods.png", "role-wall-vs-vms.png"):
            path = tmp_path / "img" / plot
            assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{plot} not written"
            assert f"img/{plot}" in report
    else:
        assert "Plots not drawn" in report
