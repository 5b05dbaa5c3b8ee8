#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark the plumbing's two netlink layers (raw rtnetlink, pyroute2) against the CNI bridge plugin.

Run as root from the repository root:

    python bench/bench_netlink_layers.py                                # N = 1, 10, 100
    python bench/bench_netlink_layers.py --sizes 1 10 --rounds 2 --json /tmp/layers.json
    python bench/bench_netlink_layers.py --sizes 10 --profile 10        # and cProfile both layers

For each N: a node namespace and N pod namespaces (tests/lib/netlab.py). Each round, the CNI
reference bridge plugin ADDs every pod (veth ``eth0``, its peer on the node's bridge, an IPv4
/24 from host-local IPAM, a default route via the gateway), exactly as bench_cni_bridge.py
spawns it; then each layer plumbs every pod (``_pod_bridge.run``, state present, responder
skip, in-process) and unplumbs it again (state absent); then the plugin DELs every pod. The
layers take turns going first from one round to the next, so machine load falls on both
alike. Each call is timed alone; a few pods are checked after each phase (plumbed as wanted,
restored exactly). The layer is swapped inside this process only, by rebinding the ``nl``
name of the modules that plan the plumbing; the DHCP filters (``_dhcp_filters``) stay raw
under both layers, as they must (pyroute2 encodes TCA_BPF_OPS wrongly).

``--requests`` adds per-request costs: each reader and idempotent writer of both layers,
called repeatedly on a plumbed pod, and the cost of opening each layer's socket.

Every namespace (and with it every link) is deleted on the way out, also on failure, Ctrl-C
or SIGTERM. Every figure printed comes from this run.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import math
import os
import pstats
import secrets
import signal
import socket
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import _paths  # noqa: F401  # pylint: disable=unused-import  # sets sys.path: the collection, tests/lib
from _common import (BINDING, cni_plugin_version, commit, commit_line, run_dir_base, run_dir_fs, load_text, machine_line, now_utc, percentile,
                     shown_command, shown_path)
import bench_cni_bridge as cni
from lib.netlab import NetLab, ip_json, snapshot

import netlink_pyroute2_layer as _netlink_pyroute2
from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink, _netns, _plumbing, _pod_bridge

PKG = "ansible_collections.virtnet.podnet.plugins.module_utils"
LAYERS = {"raw": _netlink, "pyroute2": _netlink_pyroute2}
TARGET = 0.3  # per-pod plumbing at most this times the CNI bridge plugin's ADD (issue 9)


# -- the layer swap -------------------------------------------------------------------------

def use_layer(name):
    """Rebind ``nl`` in every loaded module that plans the plumbing; the DHCP filters keep raw."""
    layer = LAYERS[name]
    swapped = []
    for modname, module in list(sys.modules.items()):
        if (modname.startswith(PKG + ".") and not modname.endswith("._dhcp_filters")
                and getattr(module, "nl", None) in LAYERS.values()):
            module.nl = layer
            swapped.append(modname.rsplit(".", 1)[1])
    if not swapped:
        raise RuntimeError("no module of the plumbing holds the netlink layer as `nl`: the bench cannot swap it")
    return sorted(swapped)


def planner_layer():
    """The layer the planner uses right now (for the checks)."""
    for modname in ("_plumbing", "_pod_bridge"):
        module = sys.modules.get(f"{PKG}.{modname}")
        if module is not None and getattr(module, "nl", None) in LAYERS.values():
            return next(k for k, v in LAYERS.items() if v is module.nl)
    return None


# -- figures --------------------------------------------------------------------------------

def stats_ms(samples):
    return {"samples": len(samples), "median_ms": round(statistics.median(samples) * 1000, 3),
            "p90_ms": round(percentile(samples, 90) * 1000, 3), "min_ms": round(min(samples) * 1000, 3),
            "max_ms": round(max(samples) * 1000, 3)}


def cni_conf(data_dir, mtu):
    """bench_cni_bridge's network, with a /24 pod subnet (a node's pod CIDR), as the pods here are."""
    conf = json.loads(cni.net_conf(data_dir, mtu))
    third = secrets.randbelow(250) + 1
    conf["ipam"]["ranges"] = [[{"subnet": f"10.246.{third}.0/24", "gateway": f"10.246.{third}.1"}]]
    return json.dumps(conf)


def params(netns, run_dir, state):
    return {"netns": netns, "binding": BINDING, "run_dir": run_dir, "state": state, "responder": "skip"}


def run_pod(netns, run_dir, state):
    t0 = time.perf_counter()
    result = _pod_bridge.run(params(netns, run_dir, state), diff=False)  # as the module without --diff
    took = time.perf_counter() - t0
    if not result["changed"]:
        raise AssertionError(f"{state} on {netns} changed nothing: {result}")
    return took


def check_plumbed(netns, run_dir):
    again = _pod_bridge.run(params(netns, run_dir, "present"), diff=False)
    assert not again["changed"], f"second present on {netns} is not a no-op: {again['changes']}"
    links, port = {e["ifname"]: e for e in ip_json(netns, "-d", "link")}, again["pod_port"]
    assert links[port].get("master") == BINDING["bridge"], f"{port} of {netns} is not enslaved"
    assert links[BINDING["tap"]].get("master") == BINDING["bridge"], f"{BINDING['tap']} of {netns} is not enslaved"
    inet = [a for e in ip_json(netns, "addr", "show", "dev", port) for a in e.get("addr_info", [])
            if a.get("family") == "inet"]
    assert not inet, f"{port} of {netns} still has {inet} (not delegated)"


def pod_snapshot(netns):
    """lib.netlab's snapshot without txqlen: the CNI plugin makes eth0 with txqlen 0 and the kernel
    raises it to 1000 when the DHCP filters' ingress qdisc is added (tc does the same); unplumb
    leaves it. Reported, not a difference between the layers."""
    snap = snapshot(netns)
    links = snap.get("links", snap.get("addr", []))  # lib.netlab's snapshot: links by name, or ``ip -j addr``'s list
    for entry in links.values() if isinstance(links, dict) else links:
        entry.pop("txqlen", None)
    return snap


def check_readers_agree(netns):
    """On a plumbed pod: both layers' readers return the same facts (what the planner sees)."""
    with _netns.entered(netns) as (ipr, _path, _inode):
        port = _plumbing.renamed_port(BINDING["pod_interface"])
        index = _netlink.get_link(ipr, port)["index"]
        names = (BINDING["pod_interface"], port, BINDING["bridge"], BINDING["tap"], "lo", "nope0")
        for fn, args in (("links_named", (names,)), ("all_links", ()), ("addresses_by_index", ()),
                         ("addresses_by_index", (socket.AF_INET6,)), ("routes", (index,)),
                         ("routes", (index, socket.AF_INET6)), ("discover", (port,)),
                         ("discover", (BINDING["pod_interface"],))):
            raw, twin = getattr(_netlink, fn)(ipr, *args), getattr(_netlink_pyroute2, fn)(ipr, *args)
            assert raw == twin, f"{fn}{args}: raw {raw!r} != pyroute2 {twin!r}"


# -- one size -------------------------------------------------------------------------------

def bench_size(n, rounds, workdir, run_dir, mtu=1450):
    data_dir = tempfile.mkdtemp(prefix=f"ipam-{n}-", dir=workdir)
    conf = cni_conf(data_dir, mtu)
    samples = {"cni_add": [], "cni_del": []}
    for layer in LAYERS:
        samples[f"{layer}_plumb"], samples[f"{layer}_unplumb"] = [], []
    order_log = []
    with NetLab(prefix="pnl", mtu=mtu) as lab:
        pods = [lab.add_namespace(f"p{i}") for i in range(n)]
        warm = lab.add_namespace("warm")
        # Outside the sample: the node's bridge is created, caches are warm, every code path has
        # run once per layer, and the two layers' readers are compared on a plumbed pod.
        with cni.InNamespace(lab.node):
            cni.call("ADD", f"bench-{warm}", warm, conf)
        for layer in LAYERS:
            use_layer(layer)
            run_pod(warm, run_dir, "present")
            check_plumbed(warm, run_dir)
            check_readers_agree(warm)
            run_pod(warm, run_dir, "absent")
        with cni.InNamespace(lab.node):
            cni.call("DEL", f"bench-{warm}", warm, conf)

        for rnd in range(rounds):
            order = list(LAYERS) if rnd % 2 == 0 else list(reversed(LAYERS))
            order_log.append(order)
            with cni.InNamespace(lab.node):
                for netns in pods:
                    took, _out = cni.call("ADD", f"bench-{netns}", netns, conf)
                    samples["cni_add"].append(took)
            checked = pods[:3]
            before = {netns: pod_snapshot(netns) for netns in checked}
            for netns in checked:
                assert ip_json(netns, "-4", "route"), f"CNI ADD gave {netns} no route"
            for layer in order:
                use_layer(layer)
                assert planner_layer() == layer
                for netns in pods:
                    samples[f"{layer}_plumb"].append(run_pod(netns, run_dir, "present"))
                for netns in checked:
                    check_plumbed(netns, run_dir)
                for netns in pods:
                    samples[f"{layer}_unplumb"].append(run_pod(netns, run_dir, "absent"))
                for netns in checked:
                    assert pod_snapshot(netns) == before[netns], f"{layer}: unplumb did not restore {netns} exactly"
            with cni.InNamespace(lab.node):
                for netns in pods:
                    took, _out = cni.call("DEL", f"bench-{netns}", netns, conf)
                    samples["cni_del"].append(took)
    out = {"n": n, "rounds": rounds, "order": order_log, "stats": {k: stats_ms(v) for k, v in samples.items()},
           "samples_s": samples}
    add, dele = out["stats"]["cni_add"]["median_ms"], out["stats"]["cni_del"]["median_ms"]
    out["ratios"] = {layer: {"plumb_to_add": round(out["stats"][f"{layer}_plumb"]["median_ms"] / add, 3),
                             "unplumb_to_del": round(out["stats"][f"{layer}_unplumb"]["median_ms"] / dele, 3)}
                     for layer in LAYERS}
    return out


# -- per-request costs ----------------------------------------------------------------------

def _median_us(fn, reps):
    times = []
    for dummy in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times) * 1e6, 1)


def request_costs(reps, workdir, run_dir, mtu=1450):
    """Each reader and idempotent writer of both layers on a plumbed pod, median µs per call."""
    from pyroute2 import IPRoute
    out = {}
    with NetLab(prefix="pnr", mtu=mtu) as lab:
        conf = cni_conf(tempfile.mkdtemp(prefix="ipam-req-", dir=workdir), mtu)
        netns = lab.add_namespace("req")
        with cni.InNamespace(lab.node):
            cni.call("ADD", f"bench-{netns}", netns, conf)
        use_layer("raw")
        run_pod(netns, run_dir, "present")
        bridge, tap = BINDING["bridge"], BINDING["tap"]
        port = _plumbing.renamed_port(BINDING["pod_interface"])  # the bridge port under the pod identity
        with _netns.entered(netns) as (ipr, _path, _inode):
            index = _netlink.get_link(ipr, port)["index"]
            out["open socket (+close)"] = {
                "raw": _median_us(lambda: _netlink.RawRtnl().close(), reps),
                "pyroute2": _median_us(lambda: IPRoute().close(), max(10, reps // 10)),
            }
            calls = {
                "get_link (1 GETLINK)": lambda nl: nl.get_link(ipr, port),
                "links_named, 3 links (3 GETLINK)": lambda nl: nl.links_named(ipr, (port, bridge, tap)),
                "all_links (GETLINK dump)": lambda nl: nl.all_links(ipr),
                "addresses_by_index (GETADDR dump)": lambda nl: nl.addresses_by_index(ipr),
                "routes (GETROUTE dump)": lambda nl: nl.routes(ipr, index),
                "discover (GETLINK + 2 GETADDR + 2 GETROUTE)": lambda nl: nl.discover(ipr, port),
                "set_link mtu, unchanged (NEWLINK)": lambda nl: nl.set_link(ipr, tap, "bench", mtu=mtu),
                "set_port state up, unchanged (NEWLINK)": lambda nl: nl.set_port(ipr, port, state="up"),
                "set_learning off, unchanged": lambda nl: nl.set_learning(ipr, port, False),
                "set_bridge_options, unchanged (NEWLINK)": lambda nl: nl.set_bridge_options(ipr, bridge),
            }
            for label, call in calls.items():
                out[label] = {}
                for layer, nl in LAYERS.items():
                    call(nl)  # the handle's sockets exist before timing
                    out[label][layer] = _median_us(lambda: call(nl), reps)
            costs = {
                "del_address, address absent (DELADDR, EADDRNOTAVAIL)":
                    lambda nl: nl.del_address(ipr, port, {"address": "192.0.2.9", "prefixlen": 24}),
                "delete_group, empty group (DELLINK)": lambda nl: nl.delete_group(ipr, 0x6B74FFFF),
            }
            for label, call in costs.items():
                out[label] = {layer: _median_us(lambda: call(nl), reps) for layer, nl in LAYERS.items()}
        run_pod(netns, run_dir, "absent")
        with cni.InNamespace(lab.node):
            cni.call("DEL", f"bench-{netns}", netns, conf)
    return out


def calls_per_pod(workdir, run_dir, mtu=1450):
    """How often the planner calls each layer function in one plumb and one unplumb (CNI-made pod)."""
    counts = {"present": {}, "absent": {}}
    state = {"now": None}
    proxy = types.ModuleType("counting_netlink")
    for name in dir(_netlink):
        value = getattr(_netlink, name)
        if callable(value) and not isinstance(value, type) and not name.startswith("_"):
            def wrapped(*a, _fn=value, _name=name, **k):
                bucket = counts[state["now"]]
                bucket[_name] = bucket.get(_name, 0) + 1
                return _fn(*a, **k)
            setattr(proxy, name, wrapped)
        else:
            setattr(proxy, name, value)
    with NetLab(prefix="pnc", mtu=mtu) as lab:
        conf = cni_conf(tempfile.mkdtemp(prefix="ipam-count-", dir=workdir), mtu)
        netns = lab.add_namespace("count")
        with cni.InNamespace(lab.node):
            cni.call("ADD", f"bench-{netns}", netns, conf)
        LAYERS["counting"] = proxy
        try:
            use_layer("counting")
            for st in ("present", "absent"):
                state["now"] = st
                run_pod(netns, run_dir, st)
        finally:
            use_layer("raw")
            del LAYERS["counting"]
        with cni.InNamespace(lab.node):
            cni.call("DEL", f"bench-{netns}", netns, conf)
    return counts


# -- profile --------------------------------------------------------------------------------

def _category(filename):
    if "/pyroute2/" in filename:
        return "pyroute2"
    if "/asyncio/" in filename or "selectors.py" in filename:
        return "asyncio"
    if "module_utils" in filename or "/bench/" in filename or "/tests/lib/" in filename:
        return "this collection"
    if filename == "~":
        return "builtins (syscalls, C code)"
    return "other stdlib"


def profile_layers(n, workdir, run_dir, mtu=1450, top=12):
    """cProfile plumb + unplumb of ``n`` pods with each layer: time by category and top functions."""
    out = {}
    conf = cni_conf(tempfile.mkdtemp(prefix="ipam-prof-", dir=workdir), mtu)
    with NetLab(prefix="pnp", mtu=mtu) as lab:
        pods = [lab.add_namespace(f"p{i}") for i in range(n)]
        with cni.InNamespace(lab.node):
            for netns in pods:
                cni.call("ADD", f"bench-{netns}", netns, conf)
        for layer in LAYERS:
            use_layer(layer)
            run_pod(pods[0], run_dir, "present")  # warm
            run_pod(pods[0], run_dir, "absent")
            prof = cProfile.Profile()
            prof.enable()
            for netns in pods:
                _pod_bridge.run(params(netns, run_dir, "present"), diff=False)
            for netns in pods:
                _pod_bridge.run(params(netns, run_dir, "absent"), diff=False)
            prof.disable()
            st = pstats.Stats(prof)
            total = sum(v[2] for v in st.stats.values())
            cats = {}
            for (filename, _line, _name), (_cc, _nc, tt, _ct, _callers) in st.stats.items():
                cats[_category(filename)] = cats.get(_category(filename), 0.0) + tt
            rows = sorted(st.stats.items(), key=lambda kv: -kv[1][2])[:top]
            out[layer] = {
                "pods": n, "total_ms_per_pod": round(total * 1000 / n / 2, 3),
                "by_category_ms_per_op": {k: round(v * 1000 / n / 2, 3) for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
                "top_tottime": [{"function": f"{os.path.basename(fn)}:{line}({name})", "calls": nc,
                                 "tottime_ms_per_op": round(tt * 1000 / n / 2, 3), "cumtime_ms_per_op": round(ct * 1000 / n / 2, 3)}
                                for (fn, line, name), (_cc, nc, tt, ct, _callers) in rows],
            }
        with cni.InNamespace(lab.node):
            for netns in pods:
                cni.call("DEL", f"bench-{netns}", netns, conf)
    return out


# -- output ---------------------------------------------------------------------------------

def print_table(results):
    head = ("| N | variant | samples | plumb / ADD median ms | p90 ms | x CNI ADD | unplumb / DEL median ms | p90 ms "
            "| x CNI DEL | plumb <= 0.3x ADD |")
    print(head)
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in results:
        s = r["stats"]
        print(f"| {r['n']} | CNI bridge ADD / DEL | {s['cni_add']['samples']} | {s['cni_add']['median_ms']} "
              f"| {s['cni_add']['p90_ms']} | 1 | {s['cni_del']['median_ms']} | {s['cni_del']['p90_ms']} | 1 | |")
        for layer in LAYERS:
            p, u, q = s[f"{layer}_plumb"], s[f"{layer}_unplumb"], r["ratios"][layer]
            met = "met" if q["plumb_to_add"] <= TARGET else "**missed**"
            print(f"| {r['n']} | {layer} plumb / unplumb | {p['samples']} | {p['median_ms']} | {p['p90_ms']} "
                  f"| {q['plumb_to_add']} | {u['median_ms']} | {u['p90_ms']} | {q['unplumb_to_del']} | {met} |")


def print_requests(costs):
    print("\n| per call, median µs | raw | pyroute2 | pyroute2 - raw |")
    print("| --- | ---: | ---: | ---: |")
    for label, v in costs.items():
        print(f"| {label} | {v['raw']} | {v['pyroute2']} | {round(v['pyroute2'] - v['raw'], 1)} |")


def print_projection(out):
    """Per function: calls per plumb / unplumb (measured) x the pyroute2 - raw cost per call (measured)."""
    costs, counts = out["requests_us"], out["calls_per_pod"]
    label_of = {label.split(" ", 1)[0].rstrip(","): label for label in costs}
    print("\n| function | calls per plumb | calls per unplumb | pyroute2 - raw per call, µs | "
          "pyroute2 adds per plumb, ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in sorted(set(counts["present"]) | set(counts["absent"])):
        label = label_of.get(name)
        delta = round(costs[label]["pyroute2"] - costs[label]["raw"], 1) if label else None
        plumb = counts["present"].get(name, 0)
        added = round(plumb * delta / 1000, 3) if delta is not None else "not timed"
        print(f"| {name} | {plumb} | {counts['absent'].get(name, 0)} | {delta if delta is not None else 'not timed'} "
              f"| {added} |")
    opened = costs["open socket (+close)"]
    print(f"| (pyroute2's IPRoute, once per pod) | 1 | 1 | {round(opened['pyroute2'] - opened['raw'], 1)} "
          f"| {round((opened['pyroute2'] - opened['raw']) / 1000, 3)} |")


def print_profile(prof):
    for layer, p in prof.items():
        print(f"\ncProfile, {layer} layer: {p['total_ms_per_pod']} ms per plumb or unplumb under the profiler "
              f"({p['pods']} pods); by where the code lives, ms per operation:")
        print("  " + ", ".join(f"{k} {v}" for k, v in p["by_category_ms_per_op"].items()))
        for row in p["top_tottime"]:
            print(f"    {row['tottime_ms_per_op']:8.3f} ms own, {row['cumtime_ms_per_op']:8.3f} ms cum, "
                  f"{row['calls']:6d} calls  {row['function']}")


def choice(results):
    """The layer the plumbing should use, from this run's figures: pyroute2 wherever it meets the target."""
    worst = {layer: max(r["ratios"][layer]["plumb_to_add"] for r in results) for layer in LAYERS}
    extra = [round(r["stats"]["pyroute2_plumb"]["median_ms"] - r["stats"]["raw_plumb"]["median_ms"], 2) for r in results]
    sizes = ", ".join(str(r["n"]) for r in results)
    if worst["pyroute2"] <= TARGET:
        return (f"Choice: pyroute2 meets the target (plumb <= {TARGET}x the CNI ADD) at N = {sizes} "
                f"(worst {worst['pyroute2']}x): the plumbing can use it.")
    return (f"Choice: raw rtnetlink stays for the plumbing. With pyroute2 it took up to {worst['pyroute2']}x the CNI "
            f"ADD at N = {sizes} (target {TARGET}x; raw: up to {worst['raw']}x), {min(extra)}-{max(extra)} ms more "
            "per pod. pyroute2 keeps the two restores of state=absent, which have no such target.")


def report_page(out, tables):
    return (f"# Netlink layers: raw rtnetlink and pyroute2, beside the CNI bridge plugin\n\n"
            f"Written by `{out['command']}` on {out['date']}.\n\n{out['machine']}  \n{commit_line(out['commit'])}  \n"
            f"CNI bridge plugin: {out['cni_version']}; run_dir on {out['run_dir_fs']}; the DHCP filters stay raw under "
            "both layers (pyroute2 encodes TCA_BPF_OPS wrongly).\n"
            f"{tables}\n{out['choice']}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--rounds", type=int, default=3, help="ADD / plumb / unplumb / DEL rounds per size (at least)")
    parser.add_argument("--min-samples", type=int, default=20,
                        help="more rounds for small N until each variant has this many samples")
    parser.add_argument("--requests", type=int, default=0, metavar="REPS",
                        help="also time each netlink call of both layers REPS times on a plumbed pod")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="also cProfile both layers on N pods")
    parser.add_argument("--json", help="write every figure (and the raw samples) to this file")
    parser.add_argument("--report", help="write the tables and the choice they lead to as a markdown page")
    parser.add_argument("--run-dir-base", help="where the run_dir goes (default: /run if it is tmpfs, as on a node, "
                        "else /dev/shm)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the benchmark creates network namespaces")
    if not os.access(cni.PLUGIN, os.X_OK):
        sys.exit(f"{cni.PLUGIN} is missing: apt-get install containernetworking-plugins")
    if max(args.sizes) > 250:
        sys.exit("--sizes: at most 250 pods (one /24 of pod addresses)")
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # leave the with-blocks: namespaces are deleted
    out = {"command": shown_command(), "machine": machine_line(), "commit": commit(), "date": now_utc(),
           "cni_plugin": cni.PLUGIN, "cni_version": cni_plugin_version(cni.PLUGIN),
           "load_start": load_text(os.getloadavg()), "target_plumb_to_add": TARGET}
    base = args.run_dir_base or run_dir_base()
    out["run_dir_fs"] = run_dir_fs(base)
    out["swapped_modules"] = use_layer("raw")
    print(f"{out['machine']}\nCNI: {out['cni_plugin']} {out['cni_version']}\n"
          f"layer swapped in: {', '.join(out['swapped_modules'])} (the DHCP filters stay raw under both); "
          f"run_dir on {out['run_dir_fs']}", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="podnet-bench-layers-", dir=base) as workdir:
        run_dir = os.path.join(workdir, "run")
        for n in args.sizes:
            rounds = max(args.rounds, math.ceil(args.min_samples / n))
            t0 = time.monotonic()
            r = bench_size(n, rounds, workdir, run_dir)
            results.append(r)
            s = r["stats"]
            print(f"N={n}: {rounds} rounds in {time.monotonic() - t0:.1f} s; CNI ADD {s['cni_add']['median_ms']} ms, "
                  + ", ".join(f"{layer} plumb {s[layer + '_plumb']['median_ms']} ms ({r['ratios'][layer]['plumb_to_add']}x)"
                              for layer in LAYERS), flush=True)
        if args.requests:
            out["requests_us"] = request_costs(args.requests, workdir, run_dir)
            out["calls_per_pod"] = calls_per_pod(workdir, run_dir)
        if args.profile:
            out["profile"] = profile_layers(args.profile, workdir, run_dir)
    use_layer("raw")
    out["load_end"] = load_text(os.getloadavg())
    out["sizes"] = results
    tables = io.StringIO()
    with contextlib.redirect_stdout(tables):
        print(f"\nLoad average at the start {out['load_start']}, at the end {out['load_end']}. Per pod, each call alone:\n")
        print_table(results)
        if "requests_us" in out:
            print_requests(out["requests_us"])
            print_projection(out)
        if "profile" in out:
            print_profile(out["profile"])
    print(tables.getvalue(), end="")
    out["choice"] = choice(results)
    print("\n" + out["choice"])
    if args.report:
        Path(args.report).write_text(report_page(out, tables.getvalue()))
        print(f"wrote {shown_path(args.report)}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
