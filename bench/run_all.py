#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run every benchmark in one run and write docs/performance.md, the benchmarks' own pages and the plots.

Run as root with the venv's Python from the repository root (``make bench`` does this):

    python bench/run_all.py                                  # full run into docs/
    python bench/run_all.py --quick --no-plots --out /tmp/perf   # smoke test: small N, few rounds

The benchmarks in bench/ run one after another (never at the same time, so they do not
disturb each other), each as its own process with a bounded timeout; this script only
collects their JSON results, puts them side by side as ratios, computes every verdict against
its target and draws the curves (when matplotlib is installed). Every figure, verdict and
version in the pages comes from this run. A benchmark that fails or is unavailable gets a
marked section saying so; the others still run and the exit code is non-zero.

The benchmarks' own pages (performance-*.md) go to ``--reports`` (default: beside
performance.md, i.e. docs/ for ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import _paths
from _common import (MIN_MEDIAN_SAMPLES, cni_plugin_version, commit, commit_line, cpu_model, dnsmasq_version,
                     kernel_bound_sentence, labelled, load_text, now_utc, package_version, qemu_version, samples_word,
                     shown_command, shown_path, versions)

REPO = _paths.REPO
BENCH = _paths.BENCH
DOCS = _paths.DOCS

FULL = {"sizes": [1, 10, 50, 100, 200], "playbook": True, "playbook_sizes": [1, 10, 100], "dhcp_pods": 500,
        "dhcp_rounds": 1000, "rss_pods": [50, 100, 200], "rss_rounds": 50, "dhcp6_pods": 200, "dhcp6_rounds": 1000,
        "boots": 3, "role_vms": [1, 50, 100, 250], "role_rounds": 3, "floor_rounds": 10, "fleet_vms": 20,
        "fleet_rounds": 3, "lifecycle": [], "fleet_may_skip": False, "burst_pods": 1000,
        "timeout": 1500}
# N = 5 is the smallest size whose per-pod figures are medians (MIN_MEDIAN_SAMPLES), so the quick run judges some.
QUICK = {"sizes": [1, MIN_MEDIAN_SAMPLES], "playbook": True, "playbook_sizes": [1], "dhcp_pods": 6, "dhcp_rounds": 30, "rss_pods": [3],
         "rss_rounds": 10, "dhcp6_pods": 3, "dhcp6_rounds": 30, "boots": 1, "role_vms": [1, 3], "role_rounds": 1,
         "floor_rounds": 3, "fleet_vms": 2, "fleet_rounds": 1, "lifecycle": ["--quick"],
         "fleet_may_skip": True, "burst_pods": 10, "timeout": 300}  # a smoke run on a machine that cannot run a fleet says so and goes on

TARGET_PLUMB_MS = 5.0          # in-process plumbing per pod
TARGET_PLUMB_CNI_RATIO = 0.3   # per-pod plumbing at most 0.3x the CNI bridge plugin's ADD, same run
TARGET_ROLE_VMS, TARGET_ROLE_S = 250, 4.0
TARGET_ROLE_CONNECT_MS = 8.0   # marginal connect cost per VM between 50 and 250 VMs
TARGET_ROLE_DISCONNECT_MS = 50.0
ROLE_MARGIN = (50, 250)
TARGET_DHCP_RATIO = 0.5        # issue 18: ahead of dnsmasq by a margin (first target: no worse, 1.0x)
TARGET_DHCP_RATIO_MAX = 1.0
TARGET_RSS_IDLE_MB = 20.0      # issue 18: the responder with no pod
TARGET_CPU_PER_POD_MS = 1.0    # issue 18: CPU per pod lifecycle (bench_churn.py)
TARGET_RSS_PODS, TARGET_RSS_MB = 500, 25.0  # issue 18 (0.1: 60 MB)
TARGET_BOOT_S = 10.0           # "a few seconds" under TCG
TARGET_FLEET_RATIO = 1.5       # connect/disconnect on every node in one run <= 1.5x one node's
FLEET_UNAVAILABLE = 3          # bench_fleet.py's exit code when this machine cannot run a fleet (it says why)
# Each page and the steps that write it (all of them must succeed for the page to be this run's).
PAGE_STEPS = {"performance-cni-bridge.md": ("cni",), "performance-pod-bridge.md": ("pod_bridge",),
              "performance-role.md": ("role",), "performance-fleet.md": ("fleet",), "performance-dhcp.md": ("dhcp",),
              "performance-dhcp-burst.md": ("dhcp_burst",),
              "performance-dhcp6.md": ("dhcp6",), "performance-vm-boot.md": ("vm_boot",),
              "performance-netlink-layers.md": ("netlink",), "performance-lifecycle.md": ("churn", "flood")}
PAGES = list(PAGE_STEPS)


# -- running the benchmarks ---------------------------------------------------------------

class Step:
    """One benchmark process: argv, its output, how long it took, and whether it failed."""

    def __init__(self, name, argv, timeout, unavailable=None):
        self.name, self.argv, self.timeout = name, argv, timeout
        self.output, self.error, self.seconds = "", None, 0.0
        self.skipped = False  # not run on purpose (a missing benchmark or tool): not a failure
        self.unavailable = unavailable  # the exit code by which the benchmark says this machine cannot run it

    @property
    def command(self):
        return shown_command(self.argv)

    def run(self):
        print(f"=== {self.name}: {self.command}", flush=True)
        t0 = time.monotonic()
        # Its own process group: on a timeout SIGTERM reaches the benchmark (which then deletes
        # its namespaces) and whatever it started.
        proc = subprocess.Popen(self.argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        timer = threading.Timer(self.timeout, self._stop, (proc,))
        timer.start()
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                print(f"  {line}", end="", flush=True)
            proc.wait(timeout=60)
        finally:
            timer.cancel()
            if proc.poll() is None:
                self._stop(proc)
        self.seconds = time.monotonic() - t0
        self.output = "".join(lines)
        if proc.returncode != 0 and proc.returncode == self.unavailable:
            self.skipped = True
            self.error = "skipped: " + (self.output.strip().splitlines() or ["unavailable on this machine"])[-1]
        elif proc.returncode != 0:
            reason = "timed out" if self.seconds >= self.timeout else f"exit {proc.returncode}"
            self.error = f"{reason}: {self.output.strip()[-1500:]}"
        print(f"=== {self.name}: {'ok' if self.error is None else 'FAILED'} in {self.seconds:.0f} s", flush=True)
        return self.error is None

    def json(self, path):
        """Run; the JSON the benchmark wrote to ``path``, or None (and an error) without it."""
        if not self.run():
            return None
        try:
            return json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            self.error = f"no JSON results ({exc})"
            return None

    @staticmethod
    def _stop(proc):
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def skipped(name, why):
    step = Step(name, [], 0)
    step.skipped, step.error = True, why
    return step


def python_argv(script, *args):
    return [sys.executable, str(BENCH / script), *[str(a) for a in args]]


def run_cni(cfg, reports, work):
    out = work / "cni.json"
    step = Step("CNI bridge plugin", python_argv("bench_cni_bridge.py", "--sizes", *cfg["sizes"], "--json", out,
                                                 "--report", reports / "performance-cni-bridge.md"), cfg["timeout"])
    return step, step.json(out)


def run_pod_bridge(cfg, reports, work):
    """In-process for every size; through ansible-playbook only for cfg["playbook_sizes"] (~1 s per pod each way)."""
    out = work / "pod-bridge.json"
    book = [n for n in cfg["playbook_sizes"] if cfg["playbook"]]
    args = ["--sizes", *cfg["sizes"], "--floor-rounds", cfg["floor_rounds"], "--json", out,
            "--report", reports / "performance-pod-bridge.md"]
    args += ["--playbook-sizes", *book] if book else ["--no-playbook"]
    step = Step("vm_pod_bridge plumbing", python_argv("bench_pod_bridge.py", *args), cfg["timeout"] * 2)
    data = step.json(out)
    if data is not None:
        data["inprocess"] = {r["n"]: r for r in data["inprocess"]}
        data["playbook"] = {r["n"]: r for r in data["playbook"]}
    return step, data


def run_dhcp(cfg, reports, work):
    out = work / "dhcp.json"
    step = Step("DHCP vs dnsmasq", python_argv("bench_dhcp.py", "--pods", cfg["dhcp_pods"], "--rounds", cfg["dhcp_rounds"],
                                               "--json", out, "--report", reports / "performance-dhcp.md"), cfg["timeout"])
    main = step.json(out)
    # More points for the memory curve: the same benchmark with fewer pods and few latency rounds.
    extra, extra_steps = [], []
    for pods in cfg["rss_pods"]:
        path = work / f"dhcp-{pods}.json"
        more = Step(f"DHCP memory with {pods} pods",
                    python_argv("bench_dhcp.py", "--pods", pods, "--rounds", cfg["rss_rounds"], "--json", path), cfg["timeout"])
        extra_steps.append(more)
        data = more.json(path)
        if data:
            extra.append(data)
    return step, main, extra_steps, extra


def run_dhcp_burst(cfg, reports, work):
    """bench/bench_dhcp_burst.py: N pods' DISCOVERs at once (1,000 in the full run), its own page."""
    if not cfg["burst"]:
        return skipped("DISCOVER burst", "skipped: --no-burst"), None
    out = work / "dhcp-burst.json"
    step = Step("DISCOVER burst", python_argv("bench_dhcp_burst.py", "--pods", cfg["burst_pods"], "--json", out,
                                              "--report", reports / "performance-dhcp-burst.md"), cfg["timeout"] * 2)
    return step, step.json(out)


def run_dhcp6(cfg, reports, work):
    out = work / "dhcp6.json"
    step = Step("DHCPv6 vs dnsmasq", python_argv("bench_dhcp6.py", "--pods", cfg["dhcp6_pods"], "--rounds",
                                                 cfg["dhcp6_rounds"], "--json", out,
                                                 "--report", reports / "performance-dhcp6.md"), cfg["timeout"])
    return step, step.json(out)


def run_lifecycle(cfg, reports, work):
    """bench_churn.py then bench_flood.py, each writing its section of one page, started afresh for this run."""
    page = reports / "performance-lifecycle.md"
    page.unlink(missing_ok=True)  # a section left from an older run is not this run's
    out = []
    for name, script, key in (("pod churn", "bench_churn.py", "churn"), ("flood", "bench_flood.py", "flood")):
        path = work / f"{key}.json"
        step = Step(name, python_argv(script, *cfg["lifecycle"], "--json", path, "--report", page), cfg["timeout"] * 2)
        out.append((step, step.json(path)))
    return out


def run_vm_boot(cfg, reports, work):
    if shutil.which("qemu-system-x86_64") is None:
        return skipped("real VM boot", "skipped: qemu-system-x86_64 not found (tools/system_deps_vm.sh installs it)"), None
    out = work / "vm-boot.json"
    step = Step("real VM boot", python_argv("bench_vm_boot.py", "--boots", cfg["boots"], "--json", out,
                                            "--report", reports / "performance-vm-boot.md"), cfg["timeout"])
    return step, step.json(out)


def _flags(script):
    """The options a benchmark script owned by someone else accepts (from its --help)."""
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    return set(re.findall(r"--[a-z][a-z-]*", proc.stdout))


def _role_rows(data):
    """Rows {vms, wall_s, absent_s, ...} from bench_vm_network_role.py's JSON ({"sizes": [...]})."""
    rows = (data.get("sizes") or data.get("results") or []) if isinstance(data, dict) else data
    out = []
    for row in rows if isinstance(rows, list) else []:
        vms = row.get("vms", row.get("n"))
        wall = row.get("wall_s", row.get("connect_s"))
        if vms is not None and wall is not None:
            out.append({**row, "vms": int(vms), "wall_s": float(wall)})
    return sorted(out, key=lambda r: r["vms"])


def run_role(cfg, reports, work):
    script = BENCH / "bench_vm_network_role.py"
    if not script.exists():
        return skipped("vm_network role", "bench/bench_vm_network_role.py is not in the repository"), None
    flags = _flags(script)
    out = work / "role.json"
    args = []
    for flag, value in (("--sizes", cfg["role_vms"]), ("--rounds", [cfg["role_rounds"]]), ("--json", [out]),
                        ("--report", [reports / "performance-role.md"])):
        if flag in flags:
            args += [flag, *value]
    step = Step("vm_network role", python_argv(script.name, *args), cfg["timeout"] * 2)
    data = step.json(out)
    rows = _role_rows(data) if data else []
    if data is not None and not rows:
        step.error = "no machine-readable results (wanted JSON rows with vms and wall_s)"
    return step, ({"rows": rows, "raw": data} if rows else None)


def run_fleet(cfg, reports, work):
    """bench/bench_fleet.py: N VMs per node on 1 node vs every node over SSH, the node role, SSH settings."""
    script = BENCH / "bench_fleet.py"
    if not script.exists():
        return skipped("fleet over SSH", "bench/bench_fleet.py is not in the repository"), None
    if not cfg["fleet"]:
        return skipped("fleet over SSH", "skipped: --no-fleet (three nodes booting and the node role over SSH take minutes)"), None
    missing = [tool for tool in ("podman", "ssh") if shutil.which(tool) is None]
    if missing:
        return skipped("fleet over SSH", f"skipped: {', '.join(missing)} not found"), None
    out = work / "fleet.json"
    # Whole ansible-playbook runs over SSH (tens of seconds each, about 34 of them at full size).
    step = Step("fleet over SSH", python_argv(script.name, "--vms", cfg["fleet_vms"], "--rounds", cfg["fleet_rounds"],
                                              "--json", out, "--report", reports / "performance-fleet.md"),
                cfg["timeout"] * 4, unavailable=FLEET_UNAVAILABLE if cfg["fleet_may_skip"] else None)
    return step, step.json(out)


def run_netlink_layers(cfg, reports, work):
    """bench/bench_netlink_layers.py (raw rtnetlink vs pyroute2), when it exists: its own page only."""
    script = BENCH / "bench_netlink_layers.py"
    if not script.exists():
        return skipped("netlink layers", "bench/bench_netlink_layers.py is not in the repository"), None
    flags = _flags(script)
    out = work / "netlink.json"
    args = []
    for flag, value in (("--sizes", [n for n in (1, 10, 100) if n <= max(cfg["sizes"])] or cfg["sizes"]), ("--json", [out]),
                        ("--report", [reports / "performance-netlink-layers.md"])):
        if flag in flags:
            args += [flag, *value]
    step = Step("netlink layers", python_argv(script.name, *args), cfg["timeout"])
    return step, (step.json(out) if "--json" in flags else (True if step.run() else None))


# -- the machine ----------------------------------------------------------------------------

def machine():
    return {"cpu": cpu_model(), "cores": os.cpu_count(), **versions(), "matplotlib": package_version("matplotlib"),
            "dnsmasq": dnsmasq_version(), "qemu": qemu_version(), "cni_plugin": cni_plugin_version(), "date": now_utc(),
            "commit": commit(), "load_start": os.getloadavg()}


# -- plots ----------------------------------------------------------------------------------

def plot_all(results, img, enabled):
    """Draw the curves; return ({name: path relative to the report}, a note when none were drawn)."""
    if not enabled:
        return {}, "Plots not drawn: `--no-plots`."
    try:
        import matplotlib
    except ImportError:
        note = ("Plots not drawn: matplotlib is not installed (`pip install -r requirements/bench.txt`, "
                "which `make bench` does).")
        print(note, file=sys.stderr)
        return {}, note
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    plots = {}
    for name, draw in (("plumb", _plot_plumb), ("role", _plot_role), ("rss", _plot_memory)):
        fig = draw(plt, results)
        if fig is None:
            continue
        file = {"plumb": "plumb-vs-n.png", "role": "role-wall-vs-vms.png", "rss": "dhcp-rss-vs-pods.png"}[name]
        fig.tight_layout()
        fig.savefig(img / file, dpi=110)
        plt.close(fig)
        plots[name] = f"img/{file}"
    return plots, None


def _plot_plumb(plt, results):
    pod, cni = results.get("pod_bridge"), cni_by_n(results.get("cni"))
    if not pod and not cni:
        return None
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    series = []
    if pod:
        series += [("ours in-process plumb", pod["inprocess"], "plumb_ms", "o-"),
                   ("ours in-process unplumb", pod["inprocess"], "unplumb_ms", "o--"),
                   ("ours via ansible-playbook plumb", pod["playbook"], "plumb_ms", "s-"),
                   ("ours via ansible-playbook unplumb", pod["playbook"], "unplumb_ms", "s--")]
    if cni:
        series += [("CNI bridge ADD (median)", {n: {"v": r["add"]["median_ms"]} for n, r in cni.items()}, "v", "^-"),
                   ("CNI bridge DEL (median)", {n: {"v": r["del"]["median_ms"]} for n, r in cni.items()}, "v", "^--")]
    for label, rows, key, style in series:
        if rows:
            ns = sorted(rows)
            ax.plot(ns, [rows[n][key] for n in ns], style, label=label)
    ax.axhline(TARGET_PLUMB_MS, color="grey", linestyle=":", label=f"target: plumb <= {TARGET_PLUMB_MS:g} ms/pod")
    if pod and pod.get("floor"):
        ax.axhline(pod["floor"]["empty_bridge_del_ms"], color="brown", linestyle="-.",
                   label="ip link del of an empty bridge")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted(set((pod or {}).get("inprocess", {})) | set(cni))
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set_xlabel("pods (N)")
    ax.set_ylabel("ms per pod (median)")
    ax.set_title("Plumbing per pod: vm_pod_bridge vs CNI bridge plugin")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    return fig


def _plot_role(plt, results):
    role = results.get("role")
    if not role:
        return None
    rows = role["rows"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([r["vms"] for r in rows], [r["wall_s"] for r in rows], "o-", label="vm_network role: connect")
    if all(r.get("absent_s") is not None for r in rows):
        ax.plot([r["vms"] for r in rows], [r["absent_s"] for r in rows], "s--", label="vm_network role: disconnect")
    ax.plot([TARGET_ROLE_VMS], [TARGET_ROLE_S], "r*", markersize=12,
            label=f"target: connect {TARGET_ROLE_VMS} VMs <= {TARGET_ROLE_S:g} s")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("VMs")
    ax.set_ylabel("wall time (s)")
    ax.set_title("vm_network role: wall time vs number of VMs")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _plot_memory(plt, results):
    points, fleet = rss_points(results), fleet_points(results)
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot([p[0] for p in points], [p[1] / 1024 for p in points], "o-", label="podnet-dhcpd (one responder), RSS")
    measured = [(n, f) for n, f in fleet if f["measured"]]
    estimated = [(n, f) for n, f in fleet if not f["measured"]]
    if measured:
        ax.plot([n for n, f in measured], [f["pss_kb"] / 1024 for n, f in measured], "^--",
                label="one dnsmasq per pod, summed PSS (measured)")
    if estimated:
        ax.plot([n for n, f in estimated], [f["pss_kb"] / 1024 for n, f in estimated], "x:",
                label="one dnsmasq per pod, PSS estimate (one process x N)")
    ax.axhline(TARGET_RSS_MB, color="grey", linestyle=":", label=f"target: {TARGET_RSS_PODS} pods <= {TARGET_RSS_MB:g} MB")
    ax.set_yscale("log")
    ax.set_xlabel("pods declared")
    ax.set_ylabel("MB")
    ax.set_title("DHCP server memory vs pods")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


# -- figures --------------------------------------------------------------------------------

def rss_points(results):
    """(pods, RSS kB) of the responder, from the main DHCP run and the extra runs."""
    points = {}
    for data in [results.get("dhcp")] + list(results.get("dhcp_extra") or []):
        if not data:
            continue
        points.setdefault(0, data["rss_kb_0_pods"])
        points.setdefault(1, data["rss_kb_1_pod"])
        n = data["pods"]
        points[n] = data.get(f"rss_kb_{n}_pods_after_burst", data.get(f"rss_kb_{n}_pods"))
    return sorted(points.items())


def fleet_points(results):
    """(pods, {pss_kb, rss_kb, processes, measured}) of one dnsmasq per pod, with the responder's PSS beside it."""
    points = {}
    for data in [results.get("dhcp")] + list(results.get("dhcp_extra") or []):
        if data and data.get("dnsmasq_fleet"):
            n = data["pods"]
            points[n] = dict(data["dnsmasq_fleet"], responder_pss_kb=data.get(f"pss_kb_{n}_pods"))
    return sorted(points.items())


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def fmt(value, digits=2):
    return "n/a" if value is None else f"{value:.{digits}f}"


def cni_by_n(cni):
    return {r["n"]: r for r in cni["sizes"]} if cni else {}


def role_margin(rows, key):
    """Marginal cost per VM in ms between ROLE_MARGIN's sizes (or None when either is missing)."""
    by = {r["vms"]: r for r in rows}
    low, high = ROLE_MARGIN
    if low in by and high in by and by[low].get(key) is not None and by[high].get(key) is not None:
        return (by[high][key] - by[low][key]) / (high - low) * 1000
    return None


# -- targets --------------------------------------------------------------------------------

def targets(results):
    """(target, measured, met, why) rows: every verdict computed from this run's figures."""
    return [*_plumb_targets(results), _dual_stack_target(results), *_role_targets(results), _fleet_target(results),
            *_dhcp_targets(results), _burst_target(results), *_dhcp6_targets(results), *_lifecycle_targets(results), _boot_target(results)]


def _load_note(results):
    mach = results["machine"]
    return f"load average at the start {load_text(mach['load_start'])}, at the end {load_text(results['load_end'])}"


def _plumb_targets(results):
    pod, cni = results.get("pod_bridge"), cni_by_n(results.get("cni"))
    label = f"In-process plumbing <= {TARGET_PLUMB_MS:g} ms per pod"
    label_cni = f"Per-pod plumbing <= {TARGET_PLUMB_CNI_RATIO:g}x the CNI bridge plugin's ADD (same run)"
    if not pod:
        return [(label, "not measured", None, "bench_pod_bridge.py failed (see the runs)"),
                (label_cni, "not measured", None, "bench_pod_bridge.py failed (see the runs)")]
    rows = pod["inprocess"]
    worst_n = max(rows, key=lambda n: rows[n]["plumb_ms"])
    worst = rows[worst_n]["plumb_ms"]
    over = sorted(n for n in rows if rows[n]["plumb_ms"] > TARGET_PLUMB_MS)
    why = "" if not over else (f"over at N = {', '.join(map(str, over))}; this run's CNI ADD for comparison: "
                               + (", ".join(f"N={n} {cni[n]['add']['median_ms']} ms" for n in over if n in cni) or "n/a")
                               + f"; {_load_note(results)}")
    shown = labelled(f"{worst} ms", rows[worst_n].get("samples", worst_n))
    out = [(label, f"worst {shown} (N={worst_n})", not over, why)]
    both = sorted(n for n in rows if n in cni)
    if not both:
        return out + [(label_cni, "not measured", None, "no CNI figures in this run")]
    cmp = {n: rows[n]["plumb_ms"] / cni[n]["add"]["median_ms"] for n in both}
    bad = [n for n in both if cmp[n] > TARGET_PLUMB_CNI_RATIO]
    why = "" if not bad else (f"above {TARGET_PLUMB_CNI_RATIO:g}x at N = {', '.join(map(str, bad))}; "
                              + _load_note(results))
    return out + [(label_cni, ", ".join(f"N={n}: {cmp[n]:.2f}x" for n in both), not bad, why)]


def _dual_stack_target(results):
    """Dual-stack plumbing per pod against IPv4-only, both in bench_pod_bridge.py's run."""
    target = ((results.get("pod_bridge") or {}).get("dual_stack_target")) or {}
    label = f"Dual-stack plumbing per pod <= {target.get('ratio_max', 1.5):g}x IPv4-only (same N, same run)"
    if target.get("met") is None:
        return (label, "not measured", None, "no dual-stack figures in this run")
    ratios = {int(n): value for n, value in target["ratios"].items()}
    shown = ", ".join(f"N={n}: {ratios[n]:.2f}x" for n in target["judged"])
    return (label, shown, target["met"], "" if target["met"] else _load_note(results))


def _role_targets(results):
    role = results.get("role")
    rows = role["rows"] if role else []
    by = {r["vms"]: r for r in rows}
    out = []
    label = f"Connect {TARGET_ROLE_VMS} VMs through the vm_network role <= {TARGET_ROLE_S:g} s"
    if TARGET_ROLE_VMS in by:
        wall = by[TARGET_ROLE_VMS]["wall_s"]
        met = wall <= TARGET_ROLE_S
        why = ""
        if not met:
            one = by.get(min(by))
            why = (f"the {one['vms']}-VM run (ansible-playbook's start-up and the role's fixed tasks) took {one['wall_s']:.2f} s; "
                   f"{_load_note(results)}")
        out.append((label, f"{wall:.2f} s", met, why))
    else:
        out.append((label, "not measured", None, f"{TARGET_ROLE_VMS} VMs not in this run" if role else "role bench missing or failed"))
    floor = (results.get("pod_bridge") or {}).get("floor") or {}
    for key, limit, what in (("wall_s", TARGET_ROLE_CONNECT_MS, "connect"), ("absent_s", TARGET_ROLE_DISCONNECT_MS, "disconnect")):
        label = f"Marginal {what} cost per VM between {ROLE_MARGIN[0]} and {ROLE_MARGIN[1]} VMs <= {limit:g} ms"
        value = role_margin(rows, key)
        if value is None:
            out.append((label, "not measured", None, "both sizes not in this run" if role else "role bench missing or failed"))
            continue
        met = value <= limit
        why = ""
        if not met and what == "disconnect" and floor.get("tap_bridge_batch_ms") is not None:
            why = kernel_bound_sentence(floor, value, "Disconnecting").replace("**", "") + "; " + _load_note(results)
        elif not met:
            why = _load_note(results)
        out.append((label, f"{value:.1f} ms per VM", met, why))
    return out


def _fleet_target(results):
    fleet = results.get("fleet")
    if not fleet:
        return (f"3 nodes <= {TARGET_FLEET_RATIO:g}x one node (connect and disconnect, N VMs per node)", "not measured",
                None, "see the fleet section")
    nodes, vms, ratios = fleet["nodes"], fleet["vms"], fleet["results"]["ratio"]
    label = f"{nodes} nodes <= {TARGET_FLEET_RATIO:g}x one node (connect and disconnect, {vms} VMs per node)"
    met = all(ratios[state] <= TARGET_FLEET_RATIO for state in ("connect", "disconnect"))
    why = ""
    if not met:
        cpu = (fleet.get("more_nodes") or {}).get("cpu")
        busy = (f"this run's processes kept the {fleet['cores']} cores {cpu['busy_all']:.0%} busy with {nodes} nodes; "
                if cpu else "")
        why = f"the {nodes} nodes are containers sharing the controller's {fleet['cores']} cores; {busy}{_load_note(results)}"
    return (label, f"connect {ratios['connect']:.2f}x, disconnect {ratios['disconnect']:.2f}x", met, why)


def _dhcp_targets(results):
    dhcp = results.get("dhcp")
    if not dhcp:
        return [("DHCP latency and memory vs dnsmasq", "not measured", None, "bench_dhcp.py failed (see the runs)")]
    out = []
    for label, key in (("DISCOVER->OFFER", "ratio_median_discover_offer"), ("REQUEST->ACK", "ratio_median_request_ack")):
        out.append(_latency_target(results, f"DHCP {label} median <= {TARGET_DHCP_RATIO:g}x dnsmasq's, none lost", dhcp, key))
    idle_mb = dhcp["rss_kb_0_pods"] / 1024
    out.append((f"Responder RSS with no pod <= {TARGET_RSS_IDLE_MB:g} MB", f"{idle_mb:.1f} MB", idle_mb <= TARGET_RSS_IDLE_MB,
                "" if idle_mb <= TARGET_RSS_IDLE_MB else "see the memory section"))
    n = dhcp["pods"]
    rss_mb = dhcp[f"rss_kb_{n}_pods_after_burst"] / 1024
    label = f"{TARGET_RSS_PODS} pods <= {TARGET_RSS_MB:g} MB RSS (one responder)"
    if n >= TARGET_RSS_PODS:
        met = rss_mb <= TARGET_RSS_MB
        out.append((label, f"{rss_mb:.1f} MB with {n} pods", met, "" if met else "see the memory section"))
    else:
        out.append((label, f"not measured ({rss_mb:.1f} MB with {n} pods)", None, f"{n} pods in this run"))
    return out


def _burst_target(results):
    """bench_dhcp_burst.py's own verdict: judged at 1,000 pods, else not measured (its figure still shown)."""
    burst = results.get("dhcp_burst")
    label = "DISCOVER burst: 1,000 pods' DISCOVERs at once, all answered <= 0.5 s"
    if not burst:
        return (label, "not measured", None, "bench_dhcp_burst.py skipped or failed (see the runs)")
    b = burst["burst"]
    shown = f"{b['answered']}/{burst['pods']} answered in {b['all_answered_ms'] / 1000:.3f} s"
    if burst["verdict"] is None:
        return (label, f"not measured ({shown})", None, f"{burst['pods']} pods in this run")
    return (label, shown, burst["verdict"], "" if burst["verdict"] else _load_note(results))


def _dhcp6_targets(results):
    dhcp6 = results.get("dhcp6")
    label = "DHCPv6 latency vs dnsmasq"
    if not dhcp6:
        return [(label, "not measured", None, "bench_dhcp6.py failed (see the runs)")]
    out = []
    for what, key in (("SOLICIT->ADVERTISE", "ratio_median_solicit_advertise"),
                      ("REQUEST->REPLY", "ratio_median_request_reply")):
        out.append(_latency_target(results, f"{label}: {what} median <= {TARGET_DHCP_RATIO:g}x dnsmasq's, none lost", dhcp6, key))
    return out


def _latency_target(results, target, data, key):
    """A latency target row: met only when the ratio is and no round trip of ours was lost (else the loss rate says why)."""
    value, ours = data.get(key), data["podnet_dhcpd"]
    lost, sent = ours["lost"], ours.get("sent") or 0
    lost_text = f"{lost} of {sent} round trips lost" + (f" ({lost / sent:.1%})" if sent else "")
    if value is None:
        return (target, f"not measured; {lost_text}", None, "no replies")
    met = value <= TARGET_DHCP_RATIO and lost == 0
    if lost:
        why = f"{lost_text}: a lost round trip misses the target"
    else:
        why = (f"within the first target of {TARGET_DHCP_RATIO_MAX:g}x" if value <= TARGET_DHCP_RATIO_MAX
               else f"beyond {TARGET_DHCP_RATIO_MAX:g}x")
    pauses = (data.get("pacing") or {}).get("pauses")
    paced = f"; paced: {pauses} pauses, {data['pacing']['paused_s']:.1f} s" if pauses is not None else ""
    return (target, f"{value:.2f}x dnsmasq, {lost_text}{paced}", met, "" if met else f"{why}; {_load_note(results)}")


def _lifecycle_targets(results):
    """Churn: nothing grows and nothing is left behind; flood: bench_flood.py's own verdicts."""
    churn, flood = results.get("churn"), results.get("flood")
    out = []
    label = "Pod churn: no resource of the responder grows, nothing left behind"
    if churn:
        grown = [d["label"] for d in churn["verdicts"].values() if d["grows"]]
        met = not grown and not churn["left_behind"] and churn["responder_alive"]
        shown = f"{churn['cycles']:,} cycles: " + (", ".join(grown) + " grow" if grown else "nothing grows") + \
            (f"; left behind: {', '.join(churn['left_behind'])}" if churn["left_behind"] else "")
        out.append((label, shown, met, "" if met else "see performance-lifecycle.md"))
    else:
        out.append((label, "not measured", None, "bench_churn.py failed (see the runs)"))
    label = f"Responder CPU per pod lifecycle (declared, served, collected) <= {TARGET_CPU_PER_POD_MS:g} ms"
    if churn and churn.get("floor"):
        per_pod, floor = churn["cpu_per_pod_ms"], churn["floor"]["cpu_ms"]
        met = per_pod <= TARGET_CPU_PER_POD_MS
        why = "" if met else (f"{per_pod / floor:.1f}x the kernel's floor of {floor} ms measured in the same run (only the syscalls a "
                              "pod's lifecycle needs); see performance-lifecycle.md")
        out.append((label, f"{per_pod} ms over {churn['cycles']:,} cycles", met, why))
    else:
        out.append((label, "not measured", None, "bench_churn.py failed (see the runs)"))
    label = "Flood: the quiet pods' median <= 2x idle with none lost, log <= 1 MB, the flooder served after"
    if flood:
        verdicts = {name: ok for name, ok in flood["verdicts"].items() if not name.startswith("cluster_")}
        met = all(verdicts.values())
        failed = ", ".join(name for name, ok in verdicts.items() if not ok)
        shown = (f"{flood['ratio']}x; lost {flood['idle']['lost']} idle, {flood['flooded']['lost']} flooded; "
                 f"log {flood['flood']['log_growth_bytes'] / 1e6:.3f} MB")
        out.append((label, shown, met, "" if met else f"missed: {failed}; {_load_note(results)}"))
    else:
        out.append((label, "not measured", None, "bench_flood.py failed (see the runs)"))
    out.append(_cluster_flood_target(results, flood))
    return out


def _cluster_flood_target(results, flood):
    """The cluster-side flood (H1): the quiet VMs' median <= 2x idle, none lost, ``received`` not moved by it."""
    label = "Cluster flood: a neighbour floods the pods' IPs on UDP 67/547; quiet VMs' median <= 2x idle, `received` unmoved"
    cluster = (flood or {}).get("cluster")
    if not cluster:
        why = "bench_flood.py failed (see the runs)" if not flood else "bench_flood.py ran no cluster flood"
        return (label, "not measured", None, why)
    verdicts = cluster["verdicts"]
    beyond = cluster["flooded"]["received_beyond_own"]
    shown = (f"{cluster['ratio']}x; lost {cluster['idle']['lost']} idle, {cluster['flooded']['lost']} flooded; "
             f"received {'n/a' if beyond is None else f'{beyond:+d}'} beyond the quiet VMs' own; "
             f"{cluster['flood']['out_of_taps']:,} frames out of the taps")
    if verdicts["received"] is None:
        return (label, shown, None, "the responder logs no stats on SIGUSR1")
    met = bool(verdicts["ratio"] and verdicts["received"])
    failed = ", ".join(name for name, ok in verdicts.items() if not ok)
    return (label, shown, met, "" if met else f"missed: {failed}; {_load_note(results)}")


def _boot_target(results):
    boot = results.get("vm_boot")
    label = f"A real VM boots to its lease in <= {TARGET_BOOT_S:g} s (TCG)"
    if not boot:
        return (label, "not measured", None, "see the VM section")
    met = boot["median_s"] <= TARGET_BOOT_S
    return (label, labelled(f"{boot['median_s']:.2f} s", len(boot["boots"])), met, "" if met else f"emulated boot (TCG); {_load_note(results)}")


def mark(met):
    return {True: "met", False: "**missed**", None: "not measured"}[met]


# -- the report -----------------------------------------------------------------------------

def report(results, steps, plots, plot_note, args, started):
    mach = results["machine"]
    quick = " in **quick** mode (smoke test: small N, few rounds; not for reading numbers)" if args.quick else ""
    lines = [
        "# Performance",
        "",
        f"Generated by `make bench` (`tools/bench.sh` -> `bench/run_all.py`){quick}. Command:",
        "",
        f"    {shown_command()}",
        "",
        f"Every benchmark below ran in this one run, one after another, in {time.monotonic() - started:.0f} s; "
        "every figure, verdict and version on this page and on the benchmarks' own pages comes from this run.",
        commit_line(mach["commit"]),
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        f"| CPU | {mach['cpu']}, {mach['cores']} cores |",
        f"| kernel | {mach['kernel']} |",
        f"| Python | {mach['python']} |",
        f"| pyroute2 | {mach['pyroute2']} |",
        f"| ansible-core | {mach['ansible-core']} |",
        f"| CNI bridge plugin | {mach['cni_plugin']} |",
        f"| dnsmasq | {mach['dnsmasq']} (`dnsmasq --version`) |",
        f"| qemu | {mach['qemu']} (TCG, no KVM) |",
        f"| date | {mach['date']} |",
        f"| commit | {mach['commit']} |",
        f"| load average (1, 5, 15 min) | start {load_text(mach['load_start'])}, end {load_text(results['load_end'])} |",
        "",
        "Other work on the machine (the load average above) slows every figure; medians are steadier than",
        "single samples, and ratios compare figures measured minutes apart in the same run.",
        "",
        "## Targets",
        "",
        "| target | measured | | why, where missed |",
        "| --- | --- | --- | --- |",
    ]
    for target, measured, met, why in targets(results):
        lines.append(f"| {target} | {measured} | {mark(met)} | {why} |")
    lines += [""]
    if plot_note:
        lines += [plot_note, ""]
    lines += [*section_plumbing(results, plots), *section_role(results, plots), *section_fleet(results),
              *section_dhcp(results, plots), *section_dhcp6(results), *section_lifecycle(results), *section_boot(results),
              *section_runs(steps, args)]
    return "\n".join(lines) + "\n"


def failed_note(step):
    if isinstance(step, list):
        step = next((item for item in step if item.error), step[0] if step else None)
    if step is None:
        return []
    if step.skipped:
        return [f"> **Skipped in this run:** {_error_line(step)}", ""]
    return [f"> **Not measured in this run:** {_error_line(step)}", ""]


def _error_line(step):
    """The line of a failure worth quoting: the exception's own (the last), not "Traceback ..."."""
    if not step.error:
        return "no results"
    lines = [line.strip() for line in step.error.splitlines() if line.strip()]
    if len(lines) == 1:
        return shown_path(lines[0])[:300].replace("|", "/")
    reason = lines[0].split(":", 1)[0]
    return f"{reason}: {shown_path(lines[-1])}"[:300].replace("|", "/")


def section_plumbing(results, plots):
    pod, cni = results.get("pod_bridge"), cni_by_n(results.get("cni"))
    lines = ["## Plumbing per pod vs the CNI bridge plugin", "",
             "Ours: `vm_pod_bridge` plumbing (`state=present`) and unplumbing (`state=absent`) a CNI-style pod,",
             "in-process (`_pod_bridge.run`, bench/bench_pod_bridge.py) and through `ansible-playbook` (one play",
             "looping over the N pods; wall time / N). CNI: `/usr/lib/cni/bridge` ADD and DEL, a whole process per",
             "call with host-local IPAM, as a runtime runs it, on fresh pod namespaces (bench/bench_cni_bridge.py).",
             f"Figures are per pod in ms: medians from {MIN_MEDIAN_SAMPLES} samples on, else labelled with their count; the "
             "playbook columns are one run each (wall time / N). Ratios are ours / CNI (below 1 means we are faster).", ""]
    if not pod and not cni:
        return lines + failed_note(results["_steps"].get("pod_bridge")) + failed_note(results["_steps"].get("cni"))
    lines += ["| N pods | ours plumb | CNI ADD (p90) | plumb / ADD | ours unplumb | CNI DEL (p90) | unplumb / DEL "
              "| playbook plumb | playbook / ADD | playbook unplumb |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in sorted(set((pod or {}).get("inprocess", {})) | set(cni)):
        ours = (pod or {}).get("inprocess", {}).get(n, {})
        book = (pod or {}).get("playbook", {}).get(n, {})
        theirs = cni.get(n)
        add = theirs["add"]["median_ms"] if theirs else None
        dele = theirs["del"]["median_ms"] if theirs else None
        count = ours.get("samples", n)
        lines.append(f"| {n} | {labelled(None, count, fmt(ours.get('plumb_ms')))} "
                     f"| {fmt(add)} ({fmt(theirs['add']['p90_ms'] if theirs else None)}) "
                     f"| {ratio(ours.get('plumb_ms'), add)} | {labelled(None, count, fmt(ours.get('unplumb_ms')))} "
                     f"| {fmt(dele)} ({fmt(theirs['del']['p90_ms'] if theirs else None)}) | {ratio(ours.get('unplumb_ms'), dele)} "
                     f"| {_one_run(book.get('plumb_ms'))} | {ratio(book.get('plumb_ms'), add)} "
                     f"| {_one_run(book.get('unplumb_ms'))} |")
    lines.append("")
    if "plumb" in plots:
        lines += [f"![plumbing per pod vs N]({plots['plumb']})", ""]
    if pod:
        lines += _plumbing_reading(pod)
    return lines + failed_note(results["_steps"].get("pod_bridge") if not pod else None) + failed_note(
        results["_steps"].get("cni") if not cni else None)


def _one_run(value):
    """A playbook figure: one run's wall time / N, never a median."""
    return "" if value is None else f"{value:.0f} (one run)"


def _plumbing_reading(pod):
    floor, rows, book = pod["floor"], pod["inprocess"], pod["playbook"]
    unplumb = sorted(r["unplumb_ms"] for r in rows.values())
    lines = [f"Cold start of our module (first plumb in a fresh Python process, imports included): {fmt(pod['cold_ms'])} ms.",
             "",
             f"In this run `ip link del` of an empty bridge in a fresh namespace took {fmt(floor['empty_bridge_del_ms'])} ms",
             f"({samples_word(floor['rounds'])}; starting `ip` alone, `ip link show lo`, took {fmt(floor['ip_start_ms'])} ms), "
             f"and one `ip -batch` deleting a tap and its bridge {fmt(floor['tap_bridge_batch_ms'])} ms;",
             f"our unplumbing took {fmt(unplumb[0])} to {fmt(unplumb[-1])} ms per pod. "
             + kernel_bound_sentence(floor, unplumb[len(unplumb) // 2], "Unplumbing"),
             "Unplumbing deletes the bridge and the tap and restores the pod's addresses and routes; the kernel's",
             "unregistration of a net device waits for RCU grace periods. The CNI DEL deletes one veth.", "",
             "Plumbing: ours enters the pod's namespace once and speaks netlink in-process; the CNI plugin is a process",
             "(plus a host-local IPAM process) per call, which is what a runtime pays per pod.", ""]
    if book:
        n = max(book)
        lines += [f"Through Ansible, each loop item costs a module process start and Ansible's own per-item work: "
                  f"{fmt(book[n]['plumb_ms'], 0)} ms",
                  f"per pod at N = {n} in this run, against {fmt(rows[n]['plumb_ms']) if n in rows else 'n/a'} ms in-process. "
                  "That is why the vm_network role batches VMs per task (next section).", ""]
        if set(rows) - set(book):
            lines += [f"Through ansible-playbook only N = {', '.join(map(str, sorted(book)))} "
                      "(`bench/run_all.py --playbook-sizes ...` chooses).", ""]
    else:
        lines += ["(The playbook runs were skipped in this run.)", ""]
    return lines


def section_role(results, plots):
    role = results.get("role")
    lines = ["## vm_network role: wall time vs number of VMs", ""]
    if not role:
        return lines + failed_note(results["_steps"].get("role"))
    rounds = role["rows"][0].get("rounds") if role["rows"] else None
    summary = _rounds_per_figure(rounds) if rounds else "the median of its rounds per figure"
    lines += ["bench/bench_vm_network_role.py: whole `ansible-playbook` runs of a play with only the `vm_network`",
              f"role, for N VMs on one node (N pods), {summary}, ansible-playbook's start-up included:",
              "connect (changes), connect again (no change), disconnect. Its own page has the detail.", "",
              "| VMs | connect s | again s | disconnect s |", "| ---: | ---: | ---: | ---: |"]
    for r in role["rows"]:
        lines.append(f"| {r['vms']} | {r['wall_s']:.2f} | {fmt(r.get('again_s'))} | {fmt(r.get('absent_s'))} |")
    lines.append("")
    connect, disconnect = role_margin(role["rows"], "wall_s"), role_margin(role["rows"], "absent_s")
    if connect is not None:
        lines += [f"Marginal cost per VM between {ROLE_MARGIN[0]} and {ROLE_MARGIN[1]} VMs: connect {connect:.1f} ms, "
                  f"disconnect {fmt(disconnect, 1)} ms.", ""]
    floor = (results.get("pod_bridge") or {}).get("floor")
    if floor and disconnect is not None:
        lines += [kernel_bound_sentence(floor, disconnect, "Disconnecting (marginal cost per VM)"), ""]
    if "role" in plots:
        lines += [f"![role wall time vs VMs]({plots['role']})", ""]
    return lines


def _rounds_per_figure(rounds):
    return f"{rounds} round{'s' if rounds != 1 else ''} per figure ({samples_word(rounds)})"


def section_fleet(results):
    fleet = results.get("fleet")
    lines = ["## A fleet over SSH: 1 node vs several in one run", ""]
    if not fleet:
        return lines + failed_note(results["_steps"].get("fleet"))
    r, nodes, vms = fleet["results"], fleet["nodes"], fleet["vms"]
    one, every = r["cycle"]["one"], r["cycle"]["all"]
    rounds = fleet["rounds"]
    lines += [f"bench/bench_fleet.py: {nodes} podman containers booting a fresh Debian 12 (systemd, sshd, Debian's python3;",
              "`tools/fleet_nodes.sh`), reached over real SSH as `ops` with sudo, on this same machine; in each the CNI",
              f"bridge plugin made {vms} pods. Whole `ansible-playbook` runs of `playbooks/connect.yml` and",
              f"`playbooks/disconnect.yml` ({vms} VMs per node), `--limit fleet-1` vs every node in one run, "
              f"{_rounds_per_figure(rounds)}; SSH pipelining on and ControlPersist on unless stated. "
              "Its own page has the detail.", "",
              f"| run | 1 node | {nodes} nodes, one run | ratio (target <= {TARGET_FLEET_RATIO:g}x) |",
              "| --- | ---: | ---: | ---: |"]
    for state in ("connect", "disconnect"):
        lines.append(f"| {state} | {one[state]['wall_s']:.2f} s | {every[state]['wall_s']:.2f} s "
                     f"| {r['ratio'][state]:.2f}x ({mark(r['ratio'][state] <= TARGET_FLEET_RATIO)}) |")
    lines.append(f"| connect + disconnect | {one['cycle_s']:.2f} s | {every['cycle_s']:.2f} s | {r['ratio']['cycle']:.2f}x |")
    fresh, prepared = r["node_role"]["fresh"], r["node_role"]["prepared"]
    lines += ["", f"The `node` role alone on all {nodes} nodes: **{fresh['wall_s']:.2f} s on fresh nodes** (its first run, "
              f"one sample) and **{prepared['wall_s']:.2f} s on prepared ones** ({samples_word(len(prepared['samples']))}).", "",
              "| pipelining | ControlPersist | connect | disconnect | cycle | vs pipelining and ControlPersist on |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    base = next(row for row in r["ssh"] if row["pipelining"] and row["control_persist"])
    for row in r["ssh"]:
        lines.append(f"| {'on' if row['pipelining'] else 'off'} | {'on' if row['control_persist'] else 'off'} "
                     f"| {row['connect_s']:.2f} s | {row['disconnect_s']:.2f} s | {row['cycle_s']:.2f} s "
                     f"| {ratio(row['cycle_s'], base['cycle_s'])} |")
    lines += ["", f"All {nodes} nodes, {vms} VMs each; ControlPersist off is `ANSIBLE_SSH_ARGS=\"-o ControlMaster=no\"`.", ""]
    est = fleet.get("more_nodes") or {}
    if est.get("text"):
        lines += [f"**More nodes than CPU cores** ({fleet['cores']} here). {est['text']}", ""]
    return lines


def section_dhcp(results, plots):
    dhcp = results.get("dhcp")
    lines = ["## DHCP: podnet-dhcpd vs dnsmasq", ""]
    if not dhcp:
        return lines + failed_note(results["_steps"].get("dhcp"))
    ours, theirs = dhcp["podnet_dhcpd"], dhcp["dnsmasq"]
    n = dhcp["pods"]
    lines += [f"bench/bench_dhcp.py: both servers (dnsmasq {dhcp['dnsmasq_version']}) on the same pod bridge at the same "
              "time, the same single lease,",
              f"the same scripted client on the VM side of the tap, {dhcp['rounds']} interleaved rounds each; every pod "
              "plumbed by `_pod_bridge.run`.", "",
              "| round trip | podnet-dhcpd median (p99) ms | dnsmasq median (p99) ms | ratio (median) | ratio (p99) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for label, key in (("DISCOVER -> OFFER", "discover_offer"), ("REQUEST -> ACK", "request_ack")):
        lines.append(f"| {label} | {ours[key]['median_ms']} ({ours[key]['p99_ms']}) | {theirs[key]['median_ms']} "
                     f"({theirs[key]['p99_ms']}) | {ratio(ours[key]['median_ms'], theirs[key]['median_ms'])} "
                     f"| {ratio(ours[key]['p99_ms'], theirs[key]['p99_ms'])} |")
    burst = dhcp.get("burst", {})
    per_pod = burst.get("per_pod", {})
    lines += ["", _lost_and_paced(dhcp), "",
              f"**{n}-pod burst** (one DISCOVER into each of {n} taps at once): {burst.get('answered')}/{n} answered, "
              f"the last after {fmt(burst.get('all_answered_ms'), 1)} ms; per pod median {fmt(per_pod.get('median_ms'), 1)} ms, "
              f"p99 {fmt(per_pod.get('p99_ms'), 1)} ms. The responder served all {n} pods {dhcp.get('all_served_s')} s after "
              "the first of them was plumbed (no restart).",
              "No dnsmasq figure: one dnsmasq per pod answers only its own.", "",
              *_memory_table(results)]
    if "rss" in plots:
        lines += [f"![responder memory vs pods]({plots['rss']})", ""]
    return lines


def section_dhcp6(results):
    dhcp6 = results.get("dhcp6")
    lines = ["## DHCPv6: podnet-dhcpd vs dnsmasq", ""]
    if not dhcp6:
        return lines + failed_note(results["_steps"].get("dhcp6"))
    ours, theirs = dhcp6["podnet_dhcpd"], dhcp6["dnsmasq"]
    lines += [f"bench/bench_dhcp6.py: both servers (dnsmasq {dhcp6['dnsmasq_version']}'s DHCPv6) on the same pod "
              "bridge at the same time, the same single address,",
              f"the same scripted client on the VM side of the tap, {dhcp6['rounds']} interleaved rounds each, a fresh "
              "transaction id per message; every pod plumbed by `_pod_bridge.run`, which writes the `ipv6` block.", "",
              "| round trip | podnet-dhcpd median (p90) ms | dnsmasq median (p90) ms | ratio (median) | ratio (p90) |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for label, key in (("SOLICIT -> ADVERTISE", "solicit_advertise"), ("REQUEST -> REPLY", "request_reply")):
        lines.append(f"| {label} | {ours[key]['median_ms']} ({ours[key]['p90_ms']}) | {theirs[key]['median_ms']} "
                     f"({theirs[key]['p90_ms']}) | {ratio(ours[key]['median_ms'], theirs[key]['median_ms'])} "
                     f"| {ratio(ours[key]['p90_ms'], theirs[key]['p90_ms'])} |")
    mem, n = dhcp6["memory"], dhcp6["pods"]
    v4, ds = mem["ipv4_only"], mem["dual_stack"]
    lines += ["", _lost_and_paced(dhcp6), "",
              f"**Memory with IPv6 on.** A fresh responder with {n} IPv4-only pods, then one with {n} dual-stack pods, "
              "each pod after one DHCPv4 and (dual-stack) one DHCPv6 exchange and the initial Router Advertisements:",
              "", "| responder | RSS MB | PSS MB | RSS kB per pod | PSS kB per pod |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for label, m in ((f"{n} IPv4-only pods", v4), (f"{n} dual-stack pods", ds)):
        lines.append(f"| {label} | {m['rss_kb_after'] / 1024:.1f} | {m['pss_kb_after'] / 1024:.1f} "
                     f"| {m['rss_kb_per_pod']:.1f} | {m['pss_kb_per_pod']:.1f} |")
    lines += ["", f"With IPv6 on, the responder holds {mem['ipv6_rss_kb_per_pod']:+.1f} kB RSS and "
              f"{mem['ipv6_pss_kb_per_pod']:+.1f} kB PSS more per pod (dual-stack minus IPv4-only, divided by {n}).",
              "Per pod: growth from 0 pods without the one-time cost of the first DHCPv4 reply (pyroute2's import).",
              ""]
    return lines


def _lost_and_paced(data):
    """The lost round trips of both servers and the pauses the client took to stay under the responder's limit."""
    ours, theirs, pacing = data["podnet_dhcpd"], data["dnsmasq"], data.get("pacing")
    paced = "" if not pacing else (f" The rounds were paced under the responder's per-pod limit "
                                   f"({pacing['frames_per_s']:g} frames a second, burst {pacing['burst']:g}): "
                                   f"{pacing['pauses']} pauses, {pacing['paused_s']:.1f} s in all.")
    return (f"Lost round trips: podnet-dhcpd {ours['lost']} of {ours.get('sent', 'n/a')}, dnsmasq {theirs['lost']} of "
            f"{theirs.get('sent', 'n/a')}.{paced}")


def section_lifecycle(results):
    """Churn and flood: the headline figures; performance-lifecycle.md has the rest."""
    churn, flood = results.get("churn"), results.get("flood")
    lines = ["## Pod lifecycle: churn and flood", ""]
    if churn:
        t = churn["times_ms"]["cycle"]
        grown = [d["label"] for d in churn["verdicts"].values() if d["grows"]]
        lines += [f"bench/bench_churn.py: {churn['cycles']:,} pods created, plumbed, served and deleted without "
                  f"`state: absent` under one responder; whole cycle median {t['median']} ms (p90 {t['p90']} ms). "
                  + (f"Growing: {', '.join(grown)}." if grown else "No resource of the responder grows.")
                  + f" Left behind: {', '.join(churn['left_behind']) or 'nothing'}.", ""]
    else:
        lines += failed_note(results["_steps"].get("churn"))
    if flood:
        idle, flooded = flood["idle"], flood["flooded"]
        lines += [f"bench/bench_flood.py: {flood['pods']} quiet pods renew while one VM floods: REQUEST -> ACK median "
                  f"{idle['median_ms']} ms idle ({idle['lost']}/{idle['samples']} lost), {flooded['median_ms']} ms during "
                  f"the flood ({flooded['lost']}/{flooded['samples']} lost), {flood['ratio']}x; "
                  f"{flood['flood']['frames_per_s']:,} frames/s written by the flooder.", ""]
        cluster = flood.get("cluster")
        if cluster:
            ci, cf, beyond = cluster["idle"], cluster["flooded"], cluster["flooded"]["received_beyond_own"]
            lines += [f"A cluster neighbour floods the quiet pods' IPs and the broadcast on UDP 67/547 "
                      f"({cluster['flood']['frames_per_s']:,} frames/s, {cluster['flood']['out_of_taps']:,} frames out of "
                      f"the taps): REQUEST -> ACK median {ci['median_ms']} ms idle, {cf['median_ms']} ms flooded "
                      f"({cluster['ratio']}x; lost {ci['lost']}/{ci['samples']}, {cf['lost']}/{cf['samples']}); responder CPU "
                      f"{cluster['flood']['responder_cpu_share'] * 100:.1f} % of one core during it; its `received` "
                      + ("n/a (no stats on SIGUSR1)." if beyond is None else f"{beyond:+d} beyond the quiet VMs' own frames."),
                      ""]
    else:
        lines += failed_note(results["_steps"].get("flood"))
    return lines + (["Its own page: [performance-lifecycle.md](performance-lifecycle.md).", ""] if churn or flood else [])


def _memory_table(results):
    lines = ["**Memory vs pods.** One podnet-dhcpd serves every pod; dnsmasq needs one process per pod, since one",
             "dnsmasq cannot serve each pod's address in each pod's namespace. PSS divides the pages that processes",
             "share between them (the sum of `Pss` in /proc/PID/smaps_rollup), so N dnsmasq processes' summed PSS is",
             "what they cost together; their summed RSS counts shared pages N times.", "",
             "| pods | podnet-dhcpd RSS MB | podnet-dhcpd PSS MB | dnsmasq processes | their summed PSS MB "
             "| their summed RSS MB | PSS ratio (ours / theirs) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    rss = dict(rss_points(results))
    fleet = dict(fleet_points(results))
    estimates = []
    for pods in sorted(set(rss) | set(fleet)):
        f = fleet.get(pods)
        if f is None:
            lines.append(f"| {pods} | {rss[pods] / 1024:.1f} | | | | | |")
            continue
        label = "" if f["measured"] else " (estimate)"
        if not f["measured"]:
            estimates.append(pods)
        ours_pss = f.get("responder_pss_kb")
        lines.append(f"| {pods} | {rss[pods] / 1024:.1f} | {fmt(ours_pss / 1024 if ours_pss else None, 1)} "
                     f"| {f['processes']}{' not run' if not f['measured'] else ' running'} "
                     f"| {f['pss_kb'] / 1024:.1f}{label} | {f['rss_kb'] / 1024:.1f}{label} | {ratio(ours_pss, f['pss_kb'])} |")
    lines.append("")
    if estimates:
        lines += [f"At {', '.join(map(str, estimates))} pods the dnsmasq figures are estimates (one dnsmasq's PSS and RSS "
                  "times N): more processes than bench_dhcp.py's `--dnsmasq-max` were not started.", ""]
    else:
        lines += ["Every dnsmasq figure is measured: N processes running at once, one per pod.", ""]
    lines += ["Rows other than 0, 1 and the largest come from extra short runs of bench_dhcp.py (fewer latency",
              "rounds), whose latency figures are not used.", ""]
    return lines


def section_boot(results):
    boot = results.get("vm_boot")
    lines = ["## A real VM's boot to lease", ""]
    if not boot:
        return lines + failed_note(results["_steps"].get("vm_boot"))
    lines += ["bench/bench_vm_boot.py: qemu (TCG) started in the pod's namespace on the tap vm_pod_bridge made,",
              "Debian's cloud kernel and a busybox initramfs running udhcpc; podnet-dhcpd serving the pod's lease.", "",
              "| boot | qemu -> /init s | qemu -> OFFER s | OFFER -> ACK ms | **qemu -> lease s** | qemu exit s |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, b in enumerate(boot["boots"], 1):
        lines.append(f"| {i} | {b['to_init']:.2f} | {b['to_offer']:.2f} | {b['offer_to_ack']:.0f} | **{b['to_lease']:.2f}** "
                     f"| {b['to_exit']:.2f} |")
    init = sorted(b["to_init"] for b in boot["boots"])[len(boot["boots"]) // 2]
    boot_s = labelled(f"{boot['median_s']:.2f} s", len(boot["boots"]))
    lines += ["", f"**Boot to lease: {boot_s}**, of which {init:.2f} s (the middle boot's) pass "
              "before /init runs: the emulated firmware and kernel (TCG, no KVM).", ""]
    return lines


def section_runs(steps, args):
    lines = ["## The runs", "", "| benchmark | command | seconds | result |", "| --- | --- | ---: | --- |"]
    for step in steps.values():
        for item in step if isinstance(step, list) else [step]:
            result = "ok" if item.error is None else _error_line(item)
            command = f"`{item.command}`" if item.argv else "-"
            lines.append(f"| {item.name} | {command} | {item.seconds:.1f} | {result} |")
    reports = Path(args.reports or args.out)
    # Only the pages this run wrote: a page left from an older run is not this run's.
    ok = {key for key, step in steps.items()
          if all(item.error is None for item in (step if isinstance(step, list) else [step]))}
    pages = [name for name in PAGES if set(PAGE_STEPS[name]) <= ok and (reports / name).exists()]
    if pages:
        where = "" if reports.resolve() == Path(args.out).resolve() else f" (in {shown_path(reports.resolve())})"
        lines += ["", f"Each benchmark's own page, written by this run{where}: "
                  + ", ".join(f"[{name}]({name})" for name in pages) + "."]
    return lines + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N and few rounds: a smoke test, not for numbers")
    parser.add_argument("--out", default=str(DOCS), help="where performance.md and img/ go (default: docs/)")
    parser.add_argument("--reports", help="where the benchmarks' own pages (performance-*.md) go (default: --out)")
    parser.add_argument("--json", help="also write all collected results as JSON to this file")
    parser.add_argument("--no-plots", action="store_true", help="draw no plots (they need matplotlib)")
    parser.add_argument("--no-playbook", action="store_true", help="skip the ansible-playbook plumbing runs")
    parser.add_argument("--no-fleet", action="store_true", help="skip the fleet over SSH (its page says so)")
    parser.add_argument("--no-burst", action="store_true", help="skip the DISCOVER burst (bench_dhcp_burst.py)")
    parser.add_argument("--burst-pods", type=int, help="pods in the DISCOVER burst (default 1000; --quick 10)")
    parser.add_argument("--sizes", type=int, nargs="+", help="pod counts for the plumbing comparison")
    parser.add_argument("--playbook-sizes", type=int, nargs="+",
                        help="pod counts also run through ansible-playbook (default 1 10 100: ~1 s per pod each way)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmarks create network namespaces")
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(143))
    cfg = dict(QUICK if args.quick else FULL)
    if args.no_playbook:
        cfg["playbook"] = False
    cfg["fleet"] = not args.no_fleet
    cfg["burst"] = not args.no_burst
    if args.burst_pods:
        cfg["burst_pods"] = args.burst_pods
    if args.sizes:
        cfg["sizes"] = args.sizes
    if args.playbook_sizes:
        cfg["playbook_sizes"] = args.playbook_sizes
        cfg["sizes"] = sorted(set(cfg["sizes"]) | set(args.playbook_sizes))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    reports = Path(args.reports).resolve() if args.reports else out
    reports.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results = {"machine": machine()}
    steps = {}
    with tempfile.TemporaryDirectory(prefix="podnet-bench-all-") as tmp:
        work = Path(tmp)
        steps["cni"], results["cni"] = run_cni(cfg, reports, work)
        steps["pod_bridge"], results["pod_bridge"] = run_pod_bridge(cfg, reports, work)
        steps["netlink"], results["netlink"] = run_netlink_layers(cfg, reports, work)
        steps["role"], results["role"] = run_role(cfg, reports, work)
        steps["fleet"], results["fleet"] = run_fleet(cfg, reports, work)
        steps["dhcp"], results["dhcp"], steps["dhcp_rss"], results["dhcp_extra"] = run_dhcp(cfg, reports, work)
        steps["dhcp_burst"], results["dhcp_burst"] = run_dhcp_burst(cfg, reports, work)
        steps["dhcp6"], results["dhcp6"] = run_dhcp6(cfg, reports, work)
        (steps["churn"], results["churn"]), (steps["flood"], results["flood"]) = run_lifecycle(cfg, reports, work)
        steps["vm_boot"], results["vm_boot"] = run_vm_boot(cfg, reports, work)
    results["load_end"] = os.getloadavg()
    results["_steps"] = steps
    plots, plot_note = plot_all(results, out / "img", not args.no_plots)
    (out / "performance.md").write_text(report(results, steps, plots, plot_note, args, started))
    print(f"wrote {shown_path(out / 'performance.md')}" + "".join(f", {shown_path(out / p)}" for p in plots.values()))
    if args.json:
        Path(args.json).write_text(json.dumps({k: v for k, v in results.items() if k != "_steps"}, indent=1, default=str))
    items = [item for step in steps.values() for item in (step if isinstance(step, list) else [step])]
    for item in items:
        if item.error:
            print(f"{'skipped' if item.skipped else 'FAILED'}: {item.name}: {_error_line(item)}", file=sys.stderr)
    return 1 if any(item.error and not item.skipped for item in items) else 0


if __name__ == "__main__":
    sys.exit(main())
