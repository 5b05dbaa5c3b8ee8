# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the benchmarks share: statistics, versions read from the tools, commands as reports show
them, verdicts, the binding and the DHCP responder as a process.

Every version here is asked of the tool or package at run time; nothing is written down.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _paths import COLLECTIONS_ROOT, REPO
from lib import waiting
from lib.bindings import make_binding
from lib.responder import ResponderProcess

# One pod interface bridged with its IP delegated to the VM: vm_network_plan's default binding.
BINDING = make_binding()
RESPONDER_MODULE = "ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder"
CNI_PLUGIN = "/usr/lib/cni/bridge"


# -- statistics -------------------------------------------------------------------------------

def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def median_ms(seconds):
    return round(statistics.median(seconds) * 1000, 2)


# -- versions and the machine -----------------------------------------------------------------

def package_version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _output(argv):
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout + proc.stderr).strip()


def dnsmasq_version():
    """From ``dnsmasq --version`` ("Dnsmasq version 2.90  Copyright ...")."""
    out = _output(["dnsmasq", "--version"])
    if out is None:
        return "not installed"
    m = re.search(r"version (\S+)", out)
    return m[1] if m else out.splitlines()[0]


def cni_plugin_version(plugin=CNI_PLUGIN):
    """What the plugin says of itself (``--version``), and its Debian package's version when it has one."""
    out = _output([plugin, "--version"])
    if out is None:
        return "not installed"
    m = re.search(r"version (\S+)", out)
    said = m[1] if m else "unknown"
    package = _output(["dpkg-query", "-W", "-f=${Version}", "containernetworking-plugins"])
    if package and "no packages found" not in package:
        return f"{said} (`{os.path.basename(plugin)} --version`); package containernetworking-plugins {package}"
    return said


def qemu_version():
    out = _output(["qemu-system-x86_64", "--version"])
    return out.splitlines()[0] if out else "not installed"


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def versions():
    return {"kernel": platform.release(), "python": platform.python_version(), "pyroute2": package_version("pyroute2"),
            "ansible-core": package_version("ansible-core")}


def machine_line():
    """One sentence for a report's head: CPU, kernel, Python and the packages the code runs on."""
    v = versions()
    return (f"{os.cpu_count()} CPUs ({cpu_model()}), kernel {v['kernel']}, Python {v['python']}, pyroute2 {v['pyroute2']}, "
            f"ansible-core {v['ansible-core']}")


def now_utc():
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def load_text(load):
    return " ".join(f"{value:.2f}" for value in load)


# -- reports ----------------------------------------------------------------------------------

def shown_path(text):
    """A path as a report shows it: relative to the checkout, temporary files as <tmp>, the home as ~."""
    text = str(text)
    for prefix, shown in ((str(REPO) + os.sep, ""), (str(COLLECTIONS_ROOT) + os.sep, "<collections>/"),
                          (tempfile.gettempdir().rstrip(os.sep) + os.sep, "<tmp>/"), ("/dev/shm/", "<tmp>/"),
                          (str(Path.home()) + os.sep, "~/")):
        text = text.replace(prefix, shown)
    return text


def shown_command(argv=None):
    """The command line of this run as a report shows it: ``python bench/...`` and no machine's paths."""
    argv = list(sys.argv if argv is None else argv)
    if argv and argv[0] == sys.executable:
        argv = argv[1:]
    return "python " + " ".join(shown_path(shlex.quote(a)) for a in argv)


def verdict(met):
    return {True: "met", False: "**missed**", None: "not measured"}[met]


# -- the DHCP responder as a process ----------------------------------------------------------

def fs_type(path):
    """The filesystem type mounted at or above ``path`` (from /proc/self/mounts)."""
    best, kind = "", "unknown"
    with open("/proc/self/mounts") as handle:
        for line in handle:
            mount, fstype = line.split()[1:3]
            if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                best, kind = mount, fstype
    return kind


def run_header(r):
    """The lines that open a report section: the command, the machine and the load of the run that wrote it."""
    return ["Command (as root, from the repository root):", "", f"    {r['command']}", "",
            f"Machine: {r['machine']}.",
            f"Measured {r['date']}; load average (1, 5, 15 min) at the start {r['load_start']}, at the end {r['load_end']}.",
            ""]


# The tests' helpers, one implementation for both (bench/_paths.py put tests/ on sys.path).
wait_for = waiting.wait_for
Responder = ResponderProcess


def rss_kb(pid):
    return _proc_field(f"/proc/{pid}/status", "VmRSS:")


def pss_kb(pid):
    """Proportional set size: shared pages split between the processes that map them."""
    return _proc_field(f"/proc/{pid}/smaps_rollup", "Pss:")


def _proc_field(path, name):
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
