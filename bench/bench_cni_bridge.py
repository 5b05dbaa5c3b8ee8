#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark the CNI reference bridge plugin: ADD and DEL per pod, a whole process per call.

Run as root from the repository root:

    python bench/bench_cni_bridge.py                  # N = 1, 10, 50, 100, 200
    python bench/bench_cni_bridge.py --sizes 1 10 --json /tmp/cni.json --report docs/performance-cni-bridge.md

What a container runtime does for each pod: exec ``/usr/lib/cni/bridge`` with CNI_COMMAND,
CNI_CONTAINERID, CNI_NETNS=/run/netns/<pod>, CNI_IFNAME=eth0, CNI_PATH and the network
configuration on stdin (``ipam`` host-local, its state under a temporary ``dataDir``); the
plugin execs host-local in turn. The pods are fresh, empty namespaces made by
tests/lib/netlab.py; the "host" the plugin runs in is the lab's node namespace (this
process enters it around the timed calls, so the plugin is spawned exactly as a runtime
spawns it, with no ``ip netns exec`` in between). Each call is timed from spawn to exit.
Every namespace is deleted on the way out, also when a call fails.
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

import _paths  # noqa: F401  # pylint: disable=unused-import  # sets sys.path: the collection, tests/lib
from _common import (CNI_PLUGIN, cni_plugin_version, commit, commit_line, load_text, machine_line, now_utc, shown_command,
                     shown_path)
from lib.netlab import NetLab, ip_json

from ansible_collections.virtnet.podnet.plugins.module_utils import _netns

PLUGIN = CNI_PLUGIN
CNI_PATH = os.path.dirname(PLUGIN)
CALL_TIMEOUT = 30


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def stats_ms(samples):
    return {"median_ms": round(statistics.median(samples) * 1000, 2), "p90_ms": round(percentile(samples, 90) * 1000, 2),
            "min_ms": round(min(samples) * 1000, 2), "max_ms": round(max(samples) * 1000, 2)}


def net_conf(data_dir, mtu):
    """A typical bridge network: a gateway on the bridge, host-local IPAM, no masquerading."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "podnet-bench",
        "type": "bridge",
        "bridge": "cnib0",
        "isGateway": True,
        "ipMasq": False,  # masquerading would add iptables calls; NetLab's pods have none either
        "mtu": mtu,
        "ipam": {"type": "host-local", "dataDir": data_dir,
                 "ranges": [[{"subnet": "10.246.0.0/16", "gateway": "10.246.0.1"}]],
                 "routes": [{"dst": "0.0.0.0/0"}]},
    })


def call(command, container_id, netns, conf):
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": f"/run/netns/{netns}",
           "CNI_IFNAME": "eth0", "CNI_PATH": CNI_PATH, "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    t0 = time.perf_counter()
    proc = subprocess.run([PLUGIN], input=conf, env=env, capture_output=True, text=True, timeout=CALL_TIMEOUT, check=False)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"CNI {command} {netns} failed ({proc.returncode}): {proc.stdout.strip()} {proc.stderr.strip()}")
    return took, proc.stdout


class InNamespace:
    """Enter a named network namespace for this thread, and come back on the way out."""

    def __init__(self, netns):
        self.path = f"/run/netns/{netns}"
        self.home = None

    def __enter__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(self.path, os.O_RDONLY)
        try:
            _netns.setns(target)  # os.setns exists from Python 3.12 only; _netns falls back to libc
        finally:
            os.close(target)
        return self

    def __exit__(self, *exc):
        try:
            _netns.setns(self.home)
        finally:
            os.close(self.home)


def bench_size(n, workdir, min_samples=1, mtu=1450):
    """ADD on ``n`` fresh pods, then DEL on them; per-pod times and a check of the result.

    With fewer than ``min_samples`` pods the ADD-all/DEL-all round is repeated on the same pods
    (a DEL leaves the namespace as empty as before the ADD) until there are enough samples.
    """
    data_dir = tempfile.mkdtemp(prefix=f"ipam-{n}-", dir=workdir)
    conf = net_conf(data_dir, mtu)
    adds, dels = [], []
    with NetLab(prefix="pcb") as lab:
        pods = [lab.add_namespace(f"p{i}") for i in range(n)]
        warm = lab.add_namespace("warm")
        with InNamespace(lab.node):
            # One call outside the sample: the bridge is created and the page cache is warm.
            call("ADD", f"bench-{warm}", warm, conf)
            call("DEL", f"bench-{warm}", warm, conf)
        rounds = 0
        while rounds == 0 or len(adds) < min_samples:
            rounds += 1
            with InNamespace(lab.node):
                results = []
                for netns in pods:
                    took, out = call("ADD", f"bench-{netns}", netns, conf)
                    adds.append(took)
                    results.append(out)
            # Check a few: eth0 exists with the address IPAM gave it, and a default route.
            for netns, out in list(zip(pods, results))[:3]:
                address = json.loads(out)["ips"][0]["address"]
                addrs = [f"{a['local']}/{a['prefixlen']}" for e in ip_json(netns, "addr", "show", "dev", "eth0")
                         for a in e.get("addr_info", []) if a.get("family") == "inet"]
                routes = ip_json(netns, "-4", "route", "show", "default")
                assert address in addrs and routes, f"CNI ADD did not configure {netns}: {addrs} {routes}"
            with InNamespace(lab.node):
                for netns in pods:
                    took, out = call("DEL", f"bench-{netns}", netns, conf)
                    dels.append(took)
            for netns in pods[:3]:
                assert not _has_eth0(netns), f"CNI DEL left eth0 in {netns}"
    return {"n": n, "rounds": rounds, "samples": len(adds), "add": stats_ms(adds), "del": stats_ms(dels)}


def _has_eth0(netns):
    return any(e.get("ifname") == "eth0" for e in ip_json(netns, "link"))


def write_report(path, out):
    lines = [
        "# CNI reference bridge plugin: ADD / DEL per pod",
        "",
        "Generated by `bench/bench_cni_bridge.py` (`make bench` runs it through `bench/run_all.py`). Command:",
        "",
        f"    {out['command']}",
        "",
        f"Machine: {out['machine']}. Plugin: {out['plugin']}, version {out['version']}, host-local IPAM.",
        commit_line(out["commit"]),
        f"Measured {out['date']}, load average (1, 5, 15 min) at the start {out['load_start']}, at the end {out['load_end']}.",
        "",
        "Each call is a whole plugin process, as a container runtime runs it, timed from spawn to exit.",
        "The comparison with vm_pod_bridge's plumbing, from the same run, is in docs/performance.md.",
        "",
        "| N pods | samples | ADD median ms | ADD p90 ms | DEL median ms | DEL p90 ms |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in out["sizes"]:
        lines.append(f"| {r['n']} | {r['samples']} | {r['add']['median_ms']} | {r['add']['p90_ms']} "
                     f"| {r['del']['median_ms']} | {r['del']['p90_ms']} |")
    lines.append("")
    Path(path).write_text("\n".join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50, 100, 200])
    parser.add_argument("--min-samples", type=int, default=20,
                        help="repeat the ADD/DEL round on the same pods until each has this many samples (small N)")
    parser.add_argument("--json", help="write the results as JSON to this file")
    parser.add_argument("--report", help="write a Markdown table to this file")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    if not os.access(PLUGIN, os.X_OK):
        sys.exit(f"{PLUGIN} is missing: apt-get install containernetworking-plugins")
    signal.signal(signal.SIGTERM, lambda *args: sys.exit(143))
    out = {"plugin": PLUGIN, "version": cni_plugin_version(PLUGIN), "command": shown_command(), "machine": machine_line(),
           "commit": commit(),
           "date": now_utc(), "load_start": load_text(os.getloadavg())}
    results = []
    with tempfile.TemporaryDirectory(prefix="podnet-bench-cni-") as workdir:
        for n in args.sizes:
            r = bench_size(n, workdir, args.min_samples)
            results.append(r)
            print(f"CNI bridge N={n:3d}: ADD median {r['add']['median_ms']} ms p90 {r['add']['p90_ms']} ms, "
                  f"DEL median {r['del']['median_ms']} ms p90 {r['del']['p90_ms']} ms (per pod, {r['samples']} samples)",
                  flush=True)
    out.update(sizes=results, load_end=load_text(os.getloadavg()))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    if args.report:
        write_report(args.report, out)
        print(f"wrote {shown_path(args.report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
