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

# One pod interface bridged with its IP delegated to the VM: vm_network_plan's default binding.
BINDING = {"interface": "default", "network": "default", "backend": "pod", "connection": "bridge",
           "delegate_ip": True, "connectivity": "ip", "pod_interface": "eth0", "bridge": "k6t-eth0", "tap": "tap0"}
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

def wait_for(predicate, timeout, what, interval=0.05):
    """Poll ``predicate`` until it returns something truthy; bounded, raises on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Responder:
    """podnet-dhcpd (``python -m ..._dhcp_responder``) with the benchmark's own run dir and log."""

    def __init__(self, run_dir, rescan_interval=1.0):
        self.run_dir = run_dir
        self.log_file = os.path.join(run_dir, "podnet-dhcpd.log")
        self.pidfile = os.path.join(run_dir, "podnet-dhcpd.pid")
        self.rescan_interval = rescan_interval
        self.proc = None

    def start(self):
        env = dict(os.environ, PYTHONPATH=str(COLLECTIONS_ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", RESPONDER_MODULE, "--run-dir", self.run_dir, "--pidfile", self.pidfile,
             "--log-file", self.log_file, "--rescan-interval", str(self.rescan_interval)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: self.proc.poll() is not None or "started" in self.log(), 30, "the responder's start")
            if self.proc.poll() is not None:
                raise RuntimeError(f"responder exited: {self.proc.stderr.read().decode()} {self.log()}")
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        try:
            return Path(self.log_file).read_text()
        except OSError:
            return ""

    def serving(self, key):
        log = self.log()
        return f"pod={key} " in log and "serving on" in log.split(f"pod={key} ", 1)[1]

    def wait_serving(self, key, timeout=30):
        wait_for(lambda: self.serving(key), timeout, f"the responder serving {key}")

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


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
