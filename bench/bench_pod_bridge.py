#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark vm_pod_bridge: plumb and unplumb N pods, in-process and via ansible-playbook.

Run as root from the repository root:

    python bench/bench_pod_bridge.py            # N = 1, 10, 100; writes docs/performance-pod-bridge.md
    python bench/bench_pod_bridge.py --sizes 1 10 50 --playbook-sizes 1 10 --json /tmp/pb.json

In-process numbers time ``_pod_bridge.run()`` per pod (the module's Python entry point, no
Ansible); playbook numbers are the wall time of one ``ansible-playbook`` run that loops over the
N pods, divided by N, minus nothing (so N = 1 is dominated by Ansible's start-up). The kernel's
own cost of unplumbing is measured beside them with iproute2: deleting an empty bridge in a
fresh namespace, and a tap and a bridge in one ``ip -batch`` process.

Dual-stack: the same in-process plumbing on pods whose eth0 also has a global IPv6 address and an
IPv6 default route (bench_dhcp6.py's pods), at the same sizes in the same run; the target is
at most TARGET_DUAL_STACK_RATIO times the IPv4-only cost per pod.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _paths  # noqa: F401  (sys.path: the collection and tests/lib)
from _common import (BINDING, MIN_MEDIAN_SAMPLES, commit, commit_line, run_dir_base, run_dir_fs, kernel_bound, kernel_bound_sentence, labelled,
                     load_text, machine_line, median_ms, now_utc, samples_word, shown_command, shown_path, verdict)
from bench_dhcp6 import add_dual_stack_pod, ipv6_node, wait_dad
from lib.netlab import NetLab, snapshot

from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_bridge

REPO = _paths.REPO
TARGET_PLUMB_MS = 5.0  # in-process plumbing per pod, at every N
TARGET_DUAL_STACK_RATIO = 1.5  # dual-stack plumbing per pod, against IPv4-only at the same N in the same run


def ms(seconds):
    return round(seconds * 1000, 2)


def cold_start(run_dir):
    """The first plumb in a fresh process: imports (binding validation, lease validation) included."""
    code = ("import sys, time, json; sys.path[:0] = {path!r}; t0 = time.perf_counter(); "
            "from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_bridge; "
            "r = _pod_bridge.run(json.loads(sys.argv[1]), diff=False); "
            "print((time.perf_counter() - t0) * 1000)")
    with NetLab(prefix="pbc") as lab:
        pod = lab.add_pod()
        params = {"netns": pod.netns, "binding": BINDING, "run_dir": run_dir, "state": "present", "responder": "skip"}
        out = subprocess.run([sys.executable, "-c", code.format(path=sys.path), json.dumps(params)],
                             capture_output=True, text=True, timeout=120, check=True).stdout
        _pod_bridge.run(dict(params, state="absent"), diff=False)
    return round(float(out), 2)


def _ip(netns, *argv, batch=None):
    args = ["ip", "-n", netns, *(["-batch", "-"] if batch else argv)]
    t0 = time.perf_counter()
    subprocess.run(args, check=True, text=True, timeout=60, input=batch, capture_output=True)
    return time.perf_counter() - t0


def kernel_floor(rounds=5):
    """The kernel's cost of unplumbing, with iproute2, each in a fresh namespace; medians in ms.

    - ``empty_bridge_del_ms``: ``ip link del`` of an empty bridge (nothing enslaved, never up);
    - ``ip_start_ms``: ``ip link show lo`` in the same kind of namespace: what starting ``ip`` costs;
    - ``tap_bridge_batch_ms``: one ``ip -batch`` process deleting a tap and the bridge it is enslaved to.
    """
    empty, start, batch = [], [], []
    with NetLab(prefix="pbk") as lab:
        for i in range(rounds):
            netns = lab.add_namespace(f"e{i}")
            start.append(_ip(netns, "link", "show", "lo"))
            _ip(netns, "link", "add", "k6t-eth0", "type", "bridge")
            empty.append(_ip(netns, "link", "del", "k6t-eth0"))
            netns = lab.add_namespace(f"b{i}")
            _ip(netns, batch="link add k6t-eth0 type bridge\ntuntap add dev tap0 mode tap\nlink set tap0 master k6t-eth0\n")
            batch.append(_ip(netns, batch="link del tap0\nlink del k6t-eth0\n"))
    return {"rounds": rounds, "empty_bridge_del_ms": median_ms(empty), "ip_start_ms": median_ms(start),
            "tap_bridge_batch_ms": median_ms(batch)}


def _params(pod, run_dir, state):
    return {"netns": pod.netns, "binding": BINDING, "run_dir": run_dir, "state": state, "responder": "skip"}


def lab_pods(lab, n, dual_stack):
    """``n`` pods and one to warm up with; dual-stack ones (an IPv6 address and default route too) after their DAD."""
    if not dual_stack:
        return [lab.add_pod() for dummy in range(n + 1)]
    prefix = ipv6_node(lab)
    pods = [add_dual_stack_pod(lab, prefix) for dummy in range(n + 1)]
    wait_dad(pods)
    return pods


def bench_inprocess(n, run_dir, dual_stack=False):
    plumb, unplumb, noop = [], [], []
    with NetLab(prefix="pbb") as lab:
        *pods, warm = lab_pods(lab, n, dual_stack)
        # Warm up the imports on a pod outside the sample (the cold start is measured apart).
        _pod_bridge.run(_params(warm, run_dir, "present"), diff=False)
        _pod_bridge.run(_params(warm, run_dir, "absent"), diff=False)
        before = {pod.netns: snapshot(pod.netns) for pod in pods[:3]}
        for pod in pods:
            params = _params(pod, run_dir, "present")
            t0 = time.perf_counter()
            result = _pod_bridge.run(params, diff=False)  # as the module without --diff
            t1 = time.perf_counter()
            again = _pod_bridge.run(params, diff=False)
            t2 = time.perf_counter()
            assert result["changed"] and not again["changed"]
            plumb.append(t1 - t0)
            noop.append(t2 - t1)
        for pod in pods:
            t0 = time.perf_counter()
            _pod_bridge.run(_params(pod, run_dir, "absent"), diff=False)
            unplumb.append(time.perf_counter() - t0)
        for netns, snap in before.items():
            assert snapshot(netns) == snap, "unplumb did not restore the pod"
    return {"n": n, "samples": len(plumb), "plumb_ms": median_ms(plumb), "unplumb_ms": median_ms(unplumb),
            "noop_ms": median_ms(noop), "total_ms": median_ms([a + b for a, b in zip(plumb, unplumb)])}


PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: plumb
      virtnet.podnet.vm_pod_bridge:
        netns: "{{{{ item }}}}"
        binding: {binding}
        run_dir: {run_dir}
        state: "{{{{ pod_state }}}}"
        responder: skip  # plumbing only: the responder is measured by bench_dhcp.py
      loop: {pods}
"""


def bench_playbook(n, run_dir, workdir):
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    out = {"n": n}
    with NetLab(prefix="pbp") as lab:
        pods = [lab.add_pod() for dummy in range(n)]
        book = Path(workdir) / f"bench-{n}.yml"
        book.write_text(PLAYBOOK.format(binding=json.dumps(BINDING), run_dir=run_dir,
                                        pods=json.dumps([p.netns for p in pods])))
        for state in ("present", "absent"):
            t0 = time.perf_counter()
            proc = subprocess.run([ansible, "-i", "localhost,", "-c", "local", "-e",
                                   f"ansible_python_interpreter={sys.executable}", "-e", f"pod_state={state}",
                                   str(book)], capture_output=True, text=True, timeout=3600, env=env, check=False)
            elapsed = time.perf_counter() - t0
            if proc.returncode != 0:
                raise RuntimeError(proc.stdout[-3000:] + proc.stderr[-3000:])
            key = "plumb_ms" if state == "present" else "unplumb_ms"
            out[key] = ms(elapsed / n)
    out["total_ms"] = round(out["plumb_ms"] + out["unplumb_ms"], 2)
    return out


def plumb_verdict(inproc):
    """(met, sentence) for the in-process target, from this run's medians."""
    if not inproc:
        return None, f"Target: at most {TARGET_PLUMB_MS:g} ms per pod in-process: not measured in this run."
    worst = max(inproc, key=lambda r: r["plumb_ms"])
    over = [r["n"] for r in inproc if r["plumb_ms"] > TARGET_PLUMB_MS]
    met = not over
    where = "at every N" if met else f"over it at N = {', '.join(map(str, over))}"
    return met, (f"**Target:** at most {TARGET_PLUMB_MS:g} ms per pod in-process: {verdict(met)} in this run "
                 f"(worst {worst['plumb_ms']} ms at N = {worst['n']}, {samples_word(worst['samples'])}; {where}).")


def dual_stack_verdict(inproc, dual):
    """(met, {N: ratio}, the Ns judged) for the dual-stack target: sizes of both kinds with enough samples for a
    median; without any, every size both have (the page then says how few samples they are)."""
    v4 = {r["n"]: r for r in inproc}
    both = [r for r in dual if r["n"] in v4]
    ratios = {r["n"]: round(r["plumb_ms"] / v4[r["n"]]["plumb_ms"], 2) for r in both}
    judged = [r["n"] for r in both if r["samples"] >= MIN_MEDIAN_SAMPLES] or list(ratios)
    if not judged:
        return None, ratios, judged
    return all(ratios[n] <= TARGET_DUAL_STACK_RATIO for n in judged), ratios, judged


def dual_stack_line(inproc, dual):
    met, ratios, judged = dual_stack_verdict(inproc, dual)
    label = f"**Dual-stack target:** plumbing a dual-stack pod at most {TARGET_DUAL_STACK_RATIO:g}x an IPv4-only one"
    if met is None:
        return f"{label}: not measured in this run."
    shown = ", ".join(f"N = {n}: {ratios[n]:.2f}x" for n in judged)
    return f"{label} (per pod, same N, same run): {verdict(met)} in this run ({shown})."


def write_report(path, results):
    inproc, playbook, floor = results["inprocess"], results["playbook"], results["floor"]
    met, target_line = plumb_verdict(inproc)
    dual = results["dual_stack"]
    lines = [
        "# vm_pod_bridge performance",
        "",
        "Generated by `bench/bench_pod_bridge.py` (`make bench` runs it through `bench/run_all.py`). Command:",
        "",
        f"    {results['command']}",
        "",
        f"Machine: {results['machine']}. Measured {results['date']}, load average (1, 5, 15 min) at the start "
        f"{results['load_start']}, at the end {results['load_end']}.",
        f"run_dir on {results['run_dir_fs']} (on a node /run is tmpfs).",
        commit_line(results["commit"]),
        "",
        target_line,
        "",
        dual_stack_line(inproc, dual),
        "",
        "## In-process (`_pod_bridge.run`, no Ansible), per pod",
        "",
        "Plumb is `state=present` on a fresh CNI-style pod (10.244.x.y/24, default route); unplumb is",
        "`state=absent` restoring it exactly; no-op is a second `present` (`changed: false`). Each figure is the",
        f"median of the N pods' samples; below {MIN_MEDIAN_SAMPLES} samples it says how many it is.",
        "",
        *_inprocess_table(inproc),
        f"Cold start (first plumb in a fresh Python process, imports included): {results['cold_ms']} ms (one sample)."]
    if dual:
        lines += [
            "",
            "## Dual-stack pods, in-process",
            "",
            "The same on pods whose eth0 also has a global IPv6 address and an IPv6 default route: the plumbing also",
            "learns the IPv6 gateway and writes the lease declaration's `ipv6` block.",
            "",
            *_inprocess_table(dual, {r["n"]: r for r in inproc}),
        ]
    if playbook:
        lines += [
            "",
            "## Through `ansible-playbook` (one play looping over N pods), wall time / N",
            "",
            "One run per N and state: each figure is one sample (one run's wall time divided by N), not a median.",
            "",
            "| N pods | plumb ms/pod | unplumb ms/pod | total ms/pod |",
            "| ---: | ---: | ---: | ---: |",
        ]
        for r in playbook:
            lines.append(f"| {r['n']} | {r['plumb_ms']} | {r['unplumb_ms']} | {r['total_ms']} |")
    lines += [
        "",
        "## The kernel's part of unplumbing",
        "",
        f"iproute2 in fresh namespaces, {samples_word(floor['rounds'])} rounds each:",
        "",
        "| what | ms |",
        "| --- | ---: |",
        f"| `ip link del` of an empty bridge | {floor['empty_bridge_del_ms']} |",
        f"| `ip link show lo` (starting `ip`, no change) | {floor['ip_start_ms']} |",
        f"| one `ip -batch` deleting a tap and its bridge | {floor['tap_bridge_batch_ms']} |",
        "",
        "## Reading the numbers",
        "",
    ]
    lines += _reading(results, met)
    Path(path).write_text("\n".join(lines) + "\n")


def _inprocess_table(rows, ipv4_only=None):
    """The in-process rows, each figure labelled when its samples are too few for a median; with ``ipv4_only``
    (N -> row) a column of the plumbing's ratio to it."""
    extra = ("", "") if ipv4_only is None else (" x IPv4-only plumb |", " ---: |")
    lines = ["| N pods | plumb ms | unplumb ms | plumb+unplumb ms | no-op present ms |" + extra[0],
             "| ---: | ---: | ---: | ---: | ---: |" + extra[1]]
    for r in rows:
        cells = [labelled(r[key], r["samples"]) for key in ("plumb_ms", "unplumb_ms", "total_ms", "noop_ms")]
        if ipv4_only is not None:
            base = ipv4_only.get(r["n"])
            cells.append(f"{r['plumb_ms'] / base['plumb_ms']:.2f}x" if base else "n/a")
        lines.append(f"| {r['n']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _reading(results, met):
    inproc, playbook, floor = results["inprocess"], results["playbook"], results["floor"]
    out = []
    if inproc:
        best = min(inproc, key=lambda r: r["plumb_ms"])
        out += [f"- Plumbing: {best['plumb_ms']} to {max(r['plumb_ms'] for r in inproc)} ms per pod in-process over "
                f"N = {', '.join(str(r['n']) for r in inproc)}; each run enters the pod's namespace once (`setns`) and",
                "  talks netlink from this process."]
        if not met:
            out += ["  The target is missed in this run: compare the load average above, and the CNI plugin's ADD",
                    "  measured in the same `make bench` run (docs/performance.md)."]
        unplumb = statistics.median(r["unplumb_ms"] for r in inproc)
        out += [f"- Unplumbing: {unplumb:.2f} ms per pod (the middle of the sizes' figures above). "
                + kernel_bound_sentence(floor, unplumb, "Unplumbing"),
                "  Unregistering a net device waits for RCU grace periods in the kernel."]
    out.append(f"- The cold start ({results['cold_ms']} ms) is Python importing the modules (pyroute2 among them),")
    out.append("  paid once per process; Ansible pays it for every task and loop item.")
    if playbook and inproc:
        per_item = max(playbook, key=lambda r: r["n"])
        same = next((r for r in inproc if r["n"] == per_item["n"]), None)
        extra = f" against {same['plumb_ms']} ms in-process at the same N" if same else ""
        out += [f"- Through Ansible a loop item cost {per_item['plumb_ms']:.0f} ms per pod at N = {per_item['n']}{extra} "
                "(one run):",
                "  the module's process start and Ansible's per-item work; hence the batch form (`pods`)."]
    return out + [""]


def _unplumb_kernel_bound(results):
    """The kernel-bound verdict of unplumbing as the JSON carries it (run_all.py quotes it)."""
    if not results["inprocess"]:
        return None
    unplumb = statistics.median(r["unplumb_ms"] for r in results["inprocess"])
    bound, kernel, share = kernel_bound(results["floor"], unplumb)
    return {"bound": bound, "kernel_ms": kernel, "share": round(share, 3), "unplumb_ms": round(unplumb, 2)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], help="pod counts, in-process")
    parser.add_argument("--playbook-sizes", type=int, nargs="+",
                        help="pod counts also run through ansible-playbook (default: --sizes)")
    parser.add_argument("--no-playbook", action="store_true")
    parser.add_argument("--no-dual-stack", action="store_true", help="skip the dual-stack pods (and their target)")
    parser.add_argument("--floor-rounds", type=int, default=5, help="rounds of the iproute2 reference figures")
    parser.add_argument("--report", default=str(REPO / "docs" / "performance-pod-bridge.md"))
    parser.add_argument("--json", help="also write the results as JSON to this file")
    parser.add_argument("--run-dir-base", default=None,
                        help="where the run_dir goes (default: /run if it is tmpfs, as on a node, else /dev/shm)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    # A killed benchmark still deletes its namespaces (NetLab cleans up on the way out).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    book_sizes = [] if args.no_playbook else (args.playbook_sizes or args.sizes)
    base = args.run_dir_base or run_dir_base()
    results = {"command": shown_command(), "machine": machine_line(), "date": now_utc(),
               "load_start": load_text(os.getloadavg()), "run_dir_fs": run_dir_fs(base),
               "commit": commit(), "target_plumb_ms": TARGET_PLUMB_MS, "inprocess": [], "playbook": [], "dual_stack": []}
    with tempfile.TemporaryDirectory(prefix="podnet-bench-", dir=base) as workdir:
        run_dir = os.path.join(workdir, "run")
        results["floor"] = kernel_floor(args.floor_rounds)
        print(f"kernel floor: empty bridge del {results['floor']['empty_bridge_del_ms']} ms, ip start "
              f"{results['floor']['ip_start_ms']} ms, ip -batch deleting tap and bridge "
              f"{results['floor']['tap_bridge_batch_ms']} ms", flush=True)
        results["cold_ms"] = cold_start(run_dir)
        print(f"cold start: first plumb in a fresh process {results['cold_ms']} ms", flush=True)
        for n in args.sizes:
            r = bench_inprocess(n, run_dir)
            results["inprocess"].append(r)
            print(f"in-process N={n:3d}: plumb {r['plumb_ms']} ms, unplumb {r['unplumb_ms']} ms, "
                  f"total {r['total_ms']} ms, no-op {r['noop_ms']} ms (per-pod medians)", flush=True)
        for n in [] if args.no_dual_stack else args.sizes:
            r = bench_inprocess(n, run_dir, dual_stack=True)
            results["dual_stack"].append(r)
            print(f"in-process dual-stack N={n:3d}: plumb {r['plumb_ms']} ms, unplumb {r['unplumb_ms']} ms", flush=True)
        for n in book_sizes:
            r = bench_playbook(n, run_dir, workdir)
            results["playbook"].append(r)
            print(f"ansible-playbook N={n:3d}: plumb {r['plumb_ms']} ms/pod, unplumb {r['unplumb_ms']} ms/pod", flush=True)
    results["load_end"] = load_text(os.getloadavg())
    results["target_met"], target_line = plumb_verdict(results["inprocess"])
    met, ratios, judged = dual_stack_verdict(results["inprocess"], results["dual_stack"])
    results["dual_stack_target"] = {"ratio_max": TARGET_DUAL_STACK_RATIO, "met": met, "ratios": ratios, "judged": judged}
    results["unplumb_kernel_bound"] = _unplumb_kernel_bound(results)
    print(target_line.replace("**", ""))  # the verdicts, as the report says them
    print(dual_stack_line(results["inprocess"], results["dual_stack"]).replace("**", ""))
    if args.report:
        write_report(args.report, results)
        print(f"wrote {shown_path(args.report)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
