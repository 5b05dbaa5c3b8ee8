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


MIN_MEDIAN_SAMPLES = 5  # fewer samples have no median worth the name: the figure says how many it is


def samples_word(count):
    """What a summary of ``count`` samples is called on a page: "median of N" only from MIN_MEDIAN_SAMPLES on."""
    if count >= MIN_MEDIAN_SAMPLES:
        return f"median of {count}"
    return "one sample" if count == 1 else f"{count} samples"


def labelled(value, count, text=None):
    """A figure with its sample count when that is too few for a median: "12.3 (one sample)"."""
    shown = str(value) if text is None else text
    return shown if count >= MIN_MEDIAN_SAMPLES else f"{shown} ({samples_word(count)})"


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


def _git(*argv):
    try:
        proc = subprocess.run(["git", "-C", str(REPO), *argv], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def commit():
    """The commit a page measured (``git rev-parse --short HEAD``), "+dirty" when plugins/ or bench/ differ from it."""
    short = _git("rev-parse", "--short", "HEAD")
    if short is None:
        return "not a git checkout"
    dirty = _git("status", "--porcelain", "--untracked-files=all", "--", "plugins", "bench")
    return short + ("+dirty" if dirty else "")


def commit_line(measured=None):
    """The sentence every page states: which code it measured."""
    return f"Code measured: commit {measured or commit()} (`git rev-parse --short HEAD`; +dirty: uncommitted " \
        "changes under plugins/ or bench/)."


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


KERNEL_BOUND_SHARE = 0.5  # "kernel-bound" only when the kernel's own deletion is at least half of the cost


def kernel_bound(floor, cost_ms):
    """(bound, kernel ms, share): is ``cost_ms`` bound by the kernel's deletion of a tap and its bridge?

    The kernel's part is bench_pod_bridge's ``ip -batch`` deleting both, less starting ``ip``; the claim
    holds when that part is at least KERNEL_BOUND_SHARE of the cost, else the run says it is not.
    """
    kernel = max(0.0, floor["tap_bridge_batch_ms"] - floor["ip_start_ms"])
    share = kernel / cost_ms if cost_ms else 0.0
    return share >= KERNEL_BOUND_SHARE, round(kernel, 2), share


def kernel_bound_sentence(floor, cost_ms, what):
    """One computed sentence: whether ``what`` (costing ``cost_ms``) was bound by the kernel in this run."""
    bound, kernel, share = kernel_bound(floor, cost_ms)
    claim = f"**{what} is kernel-bound in this run**" if bound else f"**{what} is not kernel-bound in this run**"
    return (f"{claim}: deleting a tap and its bridge took the kernel {kernel} ms (one `ip -batch`, "
            f"{floor['tap_bridge_batch_ms']} ms, less starting `ip`, {floor['ip_start_ms']} ms), {share:.0%} of "
            f"{cost_ms:.2f} ms (kernel-bound: at least {KERNEL_BOUND_SHARE:.0%}).")


# -- the DHCP responder as a process ----------------------------------------------------------

class Pacer:
    """A client's mirror of the responder's per-pod token bucket (``rate`` frames a second, ``burst`` saved up).

    Before each round of ``frames`` frames into one pod's tap, it waits until the mirror holds them plus
    a reserve (the responder takes its token when it reads a frame, a little after we wrote it), so no
    round trip is lost to our own limiter; it counts those waits, which the reports state.
    """

    RESERVE = 2.0

    def __init__(self, rate, burst):
        self.rate, self.burst = rate, burst
        # As if the pod had just spent its burst: the frames written before (warm-up, plumbing) are unknown.
        self.tokens, self.stamp = 0.0, time.monotonic()
        self.pauses, self.paused_s = 0, 0.0

    def _refill(self):
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def before(self, frames):
        """Wait (when needed) until a round of ``frames`` frames stays under the limit; spend them."""
        self._refill()
        need = min(self.burst, frames + self.RESERVE)
        if self.tokens < need:
            wait = (need - self.tokens) / self.rate
            time.sleep(wait)
            self.pauses += 1
            self.paused_s += wait
            self._refill()
        self.tokens -= frames

    def summary(self):
        return {"frames_per_s": self.rate, "burst": self.burst, "pauses": self.pauses,
                "paused_s": round(self.paused_s, 2)}


def pacing_sentence(pacing, rounds, responder_paused):
    """What pacing the rounds under the responder's limit cost, and whether the limiter still paused the pod."""
    outcome = ("the responder logged no pause of the pod: no round trip met its limiter" if not responder_paused
               else f"the responder still logged {responder_paused} pauses of the pod: its limiter met some round trips")
    return (f"Pacing: the client kept the pod's frames under the responder's own limit of "
            f"{pacing['frames_per_s']:g} frames a second (burst {pacing['burst']:g}; both clients' frames reach its "
            f"socket) by pausing {pacing['pauses']} times before a round, {pacing['paused_s']:.2f} s in all over "
            f"{rounds} rounds (the warm-up included); {outcome}.")


def latency_verdict(ratio, lost, target, first_target):
    """A latency verdict that counts lost round trips: met only with 0 lost, else the loss rate is the verdict."""
    if lost["lost"]:
        return f"**missed**: {lost['lost']} of {lost['sent']} round trips lost ({lost['lost'] / lost['sent']:.1%})"
    if ratio is None:
        return "not measured"
    if ratio <= target:
        return "met"
    return f"**missed** (within {first_target:g}x)" if ratio <= first_target else "**missed**"


def fs_type(path):
    """The filesystem type mounted at or above ``path`` (from /proc/self/mounts)."""
    best, kind = "", "unknown"
    with open("/proc/self/mounts") as handle:
        for line in handle:
            mount, fstype = line.split()[1:3]
            if (path == mount or path.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
                best, kind = mount, fstype
    return kind


def run_dir_base():
    """Where a benchmark makes its run dir: /run when it is a tmpfs, as on a node, else /dev/shm (a tmpfs too).
    The responder's records cost there what they cost on a node: on this machine's disk, the 5 unlinks and
    the lock of one pod's records take 0.7 ms of CPU, on a tmpfs 0.27 ms (bench_lifecycle_floor.py)."""
    return "/run" if fs_type("/run") == "tmpfs" else "/dev/shm"


def run_dir_fs(base):
    return f"{base} ({fs_type(base)})"


def run_header(r):
    """The lines that open a report section: the command, the machine and the load of the run that wrote it."""
    run_dir = [f"Run dir on {r['run_dir_fs']} (a node's /run is a tmpfs)."] if r.get("run_dir_fs") else []
    return ["Command (as root, from the repository root):", "", f"    {r['command']}", "",
            f"Machine: {r['machine']}.", *run_dir, commit_line(r.get("commit")),
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


# -- a VM's NIC under a flood, and the responder's counters -------------------------------------

TUNATTACHFILTER = 0x401054D5  # _IOW('T', 213, struct sock_fprog)
# Classic BPF for a VM's NIC: IPv4 UDP to port 67 or 547 is dropped (0), everything else kept whole.
NIC_DROPS_SERVER_PORTS = [(0x28, 0, 0, 12), (0x15, 0, 6, 0x0800),   # ethertype IPv4, else keep
                          (0x30, 0, 0, 23), (0x15, 0, 4, 17),       # UDP, else keep
                          (0xB1, 0, 0, 14), (0x48, 0, 0, 16),       # x = IP header length; the destination port
                          (0x15, 2, 0, 67), (0x15, 1, 0, 547),
                          (0x06, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 0)]


def nic_drops_server_ports(fd):
    """The VM side of a tap (``fd``) drops IPv4 UDP to ports 67 and 547 itself, as a VM with no DHCP server would.

    A socket filter on the tun (TUNATTACHFILTER) runs after every packet socket on the tap saw the frame
    leave (the responder's included), so a flood to those ports still leaves through the tap; only the
    benchmark's client, which reads the tap in Python, no longer has to skip it (nor lose its replies
    when the tun's ring overflows).
    """
    import ctypes
    import fcntl
    import struct
    code = b"".join(struct.pack("=HBBI", *insn) for insn in NIC_DROPS_SERVER_PORTS)
    buf = ctypes.create_string_buffer(code)
    fcntl.ioctl(fd, TUNATTACHFILTER, struct.pack("HL", len(code) // 8, ctypes.addressof(buf)))


def catches_signal(pid, signum):
    """Whether ``pid`` handles ``signum`` (SigCgt in /proc/PID/status): an older responder ends on SIGUSR1."""
    for line in _read_lines(f"/proc/{pid}/status"):
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def responder_stats(responder, timeout=10.0):
    """The responder's counters from the line it logs on SIGUSR1 (``stats pods=N ... received=N ...``) as a
    dict of ints; None when it does not catch SIGUSR1."""
    import signal as _signal
    if not catches_signal(responder.pid, _signal.SIGUSR1):
        return None
    count = responder.log().count(" stats pods=")
    os.kill(responder.pid, _signal.SIGUSR1)
    responder.wait_log(" stats pods=", timeout=timeout, count=count + 1)
    line = [text for text in responder.log().splitlines() if " stats pods=" in text][-1]
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line.split(" stats ", 1)[1])}


def _read_lines(path):
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []
