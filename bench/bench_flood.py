#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One VM floods the responder at full speed while the other pods renew.

Run as root from the repository root:

    python bench/bench_flood.py [--pods 50] [--samples 400] [--duration 10] [--json out.json] [--write-doc]
    python bench/bench_flood.py --quick          # smoke size

``--pods`` quiet pods plus one flooding pod (pod 0), in a NetLab node, all plumbed by the module's
code (``_pod_bridge.run``); then one real podnet-dhcpd with its default settings (tests/lib
ResponderProcess). From the VM side of each quiet pod's tap, REQUESTs in REBINDING state
(broadcast, ciaddr = the pod's IP) -> ACK round trips, spread evenly over the pods and over
``--duration`` seconds: first idle, then while a separate process (its own interpreter, not this
one's GIL) writes DHCP frames into pod 0's tap as fast as it can: DISCOVERs mostly, and REQUESTs,
each with a random xid and a random option-55 list, and reads what comes back as a VM would.
Measured during the flood: the frames written, the responder's CPU time (/proc/PID/stat
utime+stime) and the growth of its log file (rotated files included). Then, after
``--recover-wait`` seconds, one DISCOVER from pod 0: is it still served?

Then the cluster-side flood (issue 18, finding H1; tests/integration/test_responder_cluster_flood.py's
setup): a neighbour, another netns on the node's bridge cni0 as a CNI makes a pod, with the quiet
VMs' MACs for their pods' IPs as permanent neighbour entries, sends UDP from a process of its own
(``--cluster-rate`` frames a second) to every quiet pod IP's :67 and :547 and to the subnet's
broadcast :67 and :547. Those frames cross each pod's bridge and leave through its tap towards the
VM. Each quiet VM's NIC drops UDP to ports 67/547 itself (``nic_drops_server_ports``, a socket
filter on the tun), as a VM running no DHCP server would. The quiet VMs' REQUEST -> ACK round trips
are measured idle, then during this flood; with them the responder's CPU time, its ``received``
counter (the ``stats`` line it logs on SIGUSR1) in both phases, and the frames that left through
the quiet pods' taps (their tx counters), so the phase cannot pass without the flood arriving.

Every namespace has the prefix ``pfl-`` and a random suffix, and is deleted on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import ipaddress
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _paths  # noqa: F401  # pylint: disable=unused-import  # sets sys.path: the collection, tests/lib
from _common import (BINDING, commit, load_text, machine_line, nic_drops_server_ports, now_utc, percentile,
                     responder_stats, run_dir_base, run_dir_fs, run_header, shown_command, wait_for)
from bench_churn import add_output_arguments, cpu_s, start_as_root, write_outputs
from lib import plumbing
from lib.dhcpwire import client_frame, read_reply
from lib.netlab import NetLab, sh
from lib.responder import ResponderProcess
from lib.standin import open_tap

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as responder_code
from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_pod as responder_pod
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir as rundir

PREFIX = "pfl"
DISCOVER, OFFER, REQUEST, ACK = 1, 2, 3, 5
TARGET_RATIO = 2.0        # the quiet pods' median under the flood, against idle
TARGET_LOG_BYTES = 1 << 20
PARAMS = (55, [1, 3, 6, 12, 15, 26, 28, 119, 121])  # what a Linux guest's dhclient asks for
VARIANTS = 4096           # distinct frames the flooder cycles through
CLUSTER_RATE = 5000       # frames a second from the cluster neighbour (the integration test's rate)
CLUSTER_MIN = 1000        # frames out of the quiet pods' taps during the cluster flood, or it proved nothing
CLUSTER_BEFORE = 1000     # ... of them out before the flooded phase's first round trip
RECEIVED_SLACK = 4        # frames the responder may read beyond the quiet VMs' own during the cluster flood

# The cluster neighbour: its own interpreter in its own netns, paced at ``rate`` until a line (or EOF)
# on stdin or ``limit`` s; round robin over the targets ("ip:port"); prints "sent errors".
CLUSTER_FLOODER = r"""
import select, socket, sys, time
rate, limit, payload = float(sys.argv[1]), float(sys.argv[2]), bytes.fromhex(sys.argv[3])
targets = [(t.rsplit(":", 1)[0], int(t.rsplit(":", 1)[1])) for t in sys.argv[4:]]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
sent = errors = 0
t0 = time.monotonic()
print("flooding", flush=True)
while time.monotonic() - t0 < limit:
    for _ in range(30):
        try:
            sock.sendto(payload, targets[(sent + errors) % len(targets)])
            sent += 1
        except OSError:
            errors += 1
    ahead = max(0.0, (sent + errors) / rate - (time.monotonic() - t0))
    if select.select([sys.stdin], [], [], ahead)[0]:
        break
print(sent, errors, flush=True)
"""


# -- the flooding VM (a process of its own) ----------------------------------------------------

def flood_frames(mac, ip, server_id, count, seed):
    """DHCP frames from ``mac``: 70 % DISCOVER, 15 % REQUEST selecting, 15 % REQUEST rebinding;
    random xids, random option-55 lists (1 to 40 codes of 1..254), so no two ask the same."""
    rnd = random.Random(seed)
    frames = []
    for _round in range(count):
        xid = rnd.getrandbits(32)
        params = (55, rnd.sample(range(1, 255), rnd.randint(1, 40)))
        kind = rnd.random()
        if kind < 0.70:
            frames.append(client_frame(mac, DISCOVER, xid, [params]))
        elif kind < 0.85:
            frames.append(client_frame(mac, REQUEST, xid, [(50, ip), (54, server_id), params]))
        else:
            frames.append(client_frame(mac, REQUEST, xid, [params], ciaddr=ip))
    return frames


def flooder(netns, mac, ip, server_id, conn, limit):
    """Write frames into the pod's tap as fast as possible from "go" until "stop" (or ``limit`` s)."""
    frames = flood_frames(mac, ip, server_id, VARIANTS, secrets.randbits(64))
    fd = open_tap(netns)
    stats = {"frames": 0, "bytes": 0, "write_errors": 0, "frames_read": 0, "dhcp_replies": 0}
    conn.send("ready")
    conn.recv()  # "go"
    t0 = time.monotonic()
    deadline = t0 + limit
    write, read = os.write, os.read
    mask = VARIANTS - 1
    i = 0
    try:
        while True:
            for _round in range(1024):
                try:
                    stats["bytes"] += write(fd, frames[i & mask])
                    i += 1
                except OSError:
                    stats["write_errors"] += 1
            for _round in range(64):  # a VM reads its NIC too; bounded so writing stays the job
                try:
                    frame = read(fd, 65536)
                    stats["frames_read"] += 1
                    stats["dhcp_replies"] += frame[12:14] == b"\x08\x00" and frame[23] == 17 and frame[36:38] == b"\x00\x44"
                except BlockingIOError:
                    break
            if conn.poll() or time.monotonic() > deadline:
                break
    finally:
        stats["frames"] = i
        stats["seconds"] = time.monotonic() - t0
        os.close(fd)
        conn.send(stats)


# -- the quiet pods -------------------------------------------------------------------------------

def measure(taps, samples, duration):
    """``samples`` REQUEST(rebinding) -> ACK round trips, round robin over ``taps``, evenly over ``duration`` s."""
    latencies, lost = [], 0
    t0 = time.monotonic()
    for n in range(samples):
        fd, mac, ip = taps[n % len(taps)]
        wait = t0 + n * duration / samples - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # pacing, not synchronisation: the samples are spread over the phase
        xid = secrets.randbits(32)
        frame = client_frame(mac, REQUEST, xid, [PARAMS], ciaddr=ip)
        start = time.perf_counter()
        os.write(fd, frame)
        got = read_reply(fd, xid, timeout=2.0)
        took = time.perf_counter() - start
        if got is None or got[1]["message_type"] != ACK:
            lost += 1
        else:
            latencies.append(took)
    return {"samples": samples, "answered": len(latencies), "lost": lost, "seconds": round(time.monotonic() - t0, 2),
            "median_ms": _ms(statistics.median(latencies)) if latencies else None,
            "p90_ms": _ms(percentile(latencies, 90)) if latencies else None,
            "max_ms": _ms(max(latencies)) if latencies else None}


def _ms(seconds):
    return round(seconds * 1000, 3)


def log_bytes(log_file):
    """The log file and its rotated copies, together."""
    path = Path(log_file)
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())


def log_lines(log_file, key):
    """Lines of the flooding pod in the log (rotated copies included)."""
    path, count = Path(log_file), 0
    for p in path.parent.glob(path.name + "*"):
        with open(p, errors="replace") as handle:
            count += sum(1 for line in handle if f"pod={key} " in line)
    return count


def discover_offer(netns, mac, timeout):
    """One DISCOVER into the pod's tap; seconds to the OFFER, or None."""
    fd = open_tap(netns)
    try:
        xid = secrets.randbits(32)
        start = time.perf_counter()
        os.write(fd, client_frame(mac, DISCOVER, xid, [PARAMS]))
        got = read_reply(fd, xid, timeout=timeout)
        return round(time.perf_counter() - start, 4) if got and got[1]["message_type"] == OFFER else None
    finally:
        os.close(fd)


def run(args, results):
    ctx = multiprocessing.get_context("fork")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="podnet-bench-flood-", dir=run_dir_base()))
        lab = stack.enter_context(NetLab(prefix=PREFIX))
        run_dir = os.path.join(tmp, "run")
        rundir.ensure_dirs(run_dir)
        t0 = time.monotonic()
        pods = [lab.add_pod() for _round in range(args.pods + 1)]
        plumbed = [plumbing.plumb(pod.netns, BINDING, run_dir, diff=False) for pod in pods]
        results["setup_s"] = round(time.monotonic() - t0, 1)
        responder = stack.enter_context(ResponderProcess(run_dir))  # default rate limit and log budget
        for result in plumbed:
            responder.wait_serving(result["key"])
        pid = responder.proc.pid
        flood_pod, flood = pods[0], plumbed[0]
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=flooder, args=(flood_pod.netns, flood["vm_mac"], flood["ip"], flood_pod.gateway, child,
                                                 args.duration + 60), daemon=True)
        proc.start()
        stack.callback(_end, proc)
        if not parent.poll(30):
            raise RuntimeError("the flooder did not get ready")
        parent.recv()
        taps = []
        for pod, result in zip(pods[1:], plumbed[1:]):
            taps.append((open_tap(pod.netns), result["vm_mac"], result["ip"]))
            stack.callback(os.close, taps[-1][0])
        measure(taps, len(taps), min(2.0, args.duration))  # warm-up: every pod's reply template, once
        cpu_idle = cpu_s(pid)
        results["idle"] = measure(taps, args.samples, args.duration)
        results["idle"]["responder_cpu_s"] = round(cpu_s(pid) - cpu_idle, 2)
        cpu0, log0, lines0 = cpu_s(pid), log_bytes(responder.log_file), log_lines(responder.log_file, flood["key"])
        t_go = time.monotonic()
        parent.send("go")
        results["flooded"] = measure(taps, args.samples, args.duration)
        parent.send("stop")
        if not parent.poll(30):
            raise RuntimeError("the flooder did not stop")
        stats = parent.recv()
        flood_s = time.monotonic() - t_go
        cpu1, log1 = cpu_s(pid), log_bytes(responder.log_file)
        results["flood"] = dict(stats, seconds=round(stats["seconds"], 2), frames_per_s=round(stats["frames"] / stats["seconds"]),
                                responder_cpu_s=round(cpu1 - cpu0, 2), wall_s=round(flood_s, 2),
                                responder_cpu_share=round((cpu1 - cpu0) / flood_s, 3), log_growth_bytes=log1 - log0,
                                flood_pod_log_lines=log_lines(responder.log_file, flood["key"]) - lines0)
        proc.join(10)
        # The flooding pod after the flood: its bucket refills at the responder's rate.
        time.sleep(args.recover_wait)  # the bounded wait is the test itself: how soon the VM is served again
        results["after"] = {"wait_s": args.recover_wait, "offer_s": discover_offer(flood_pod.netns, flood["vm_mac"], 2.0)}
        if args.cluster_rate > 0:
            results["cluster"] = cluster_flood(stack, lab, pods[1:], plumbed[1:], taps, responder, args)
        results["responder_alive"] = responder.proc.poll() is None


# -- the cluster-side flood (H1) --------------------------------------------------------------------

def taps_out(pods):
    """Frames the kernel sent out of the pods' taps towards their VMs (tx packets + tx dropped), summed."""
    total = 0
    for pod in pods:
        link = json.loads(sh("ip", "-n", pod.netns, "-s", "-j", "link", "show", "dev", BINDING["tap"]).stdout)[0]
        total += link["stats64"]["tx"]["packets"] + link["stats64"]["tx"]["dropped"]
    return total


def start_cluster_flood(netns, targets, rate, limit):
    foreign = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
    payload = codec.encode_message({"op": 1, "xid": secrets.randbits(32), "chaddr": foreign}, [(53, DISCOVER)])
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", CLUSTER_FLOODER, str(rate), str(limit),
                             payload.hex(), *targets],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.stdout.readline().strip() != "flooding":
        proc.kill()
        raise RuntimeError(f"the cluster flooder did not start: {proc.communicate(timeout=10)[1]}")
    return proc


def stop_cluster_flood(proc):
    """End the flooder (a line on its stdin); (frames sent, send errors)."""
    if proc.poll() is not None and proc.stdin.closed:
        return 0, 0
    try:
        out, _err = proc.communicate("stop\n", timeout=10)
    except (subprocess.TimeoutExpired, ValueError, OSError):
        proc.kill()
        out, _err = proc.communicate(timeout=10)
    words = out.split()
    return (int(words[0]), int(words[1])) if len(words) == 2 else (0, 0)


def _received(responder):
    stats = responder_stats(responder)
    return None if stats is None else stats.get("received")


def cluster_flood(stack, lab, quiet_pods, quiet, taps, responder, args):
    """A neighbour on the node's bridge floods the quiet pods' IPs and the subnet broadcast on :67 and :547 while
    the quiet VMs renew: their latency idle and flooded, the responder's CPU and ``received`` counter in both."""
    pid = responder.pid
    neighbour = lab.add_pod()  # another pod of the node, on cni0, in the quiet pods' /24
    for pod, result in zip(quiet_pods, quiet):
        # A real neighbour learned the VM's MAC for the pod's IP earlier; the scripted VM answers no ARP.
        sh("ip", "-n", neighbour.netns, "neigh", "replace", result["ip"], "lladdr", result["vm_mac"],
           "dev", "eth0", "nud", "permanent")
    first = quiet_pods[0]
    broadcast = str(ipaddress.ip_network(f"{first.ip}/{first.prefixlen}", strict=False).broadcast_address)
    targets = [f"{address}:{port}" for port in (67, 547) for address in [r["ip"] for r in quiet] + [broadcast]]
    for fd, _mac, _ip in taps:
        nic_drops_server_ports(fd)  # the VM's NIC drops what a VM without a DHCP server would
    out = {"neighbour_targets": len(targets), "rate": args.cluster_rate, "broadcast": broadcast,
           "stats_counter": responder_stats(responder) is not None}
    received0, cpu0, t0 = _received(responder), cpu_s(pid), time.monotonic()
    out["idle"] = measure(taps, args.samples, args.duration)
    received1, cpu1 = _received(responder), cpu_s(pid)
    out["idle"]["responder_cpu_s"] = round(cpu1 - cpu0, 3)
    out["idle"]["responder_cpu_share"] = round((cpu1 - cpu0) / (time.monotonic() - t0), 4)
    out["idle"]["received"] = None if received0 is None else received1 - received0
    tx0, cpu2, received2, t_go = taps_out(quiet_pods), cpu_s(pid), _received(responder), time.monotonic()
    proc = start_cluster_flood(neighbour.netns, targets, args.cluster_rate, args.duration + 60)
    stack.callback(stop_cluster_flood, proc)
    # The flood is arriving, and has had time to fill any queue it can fill, before the first round trip.
    wait_for(lambda: taps_out(quiet_pods) - tx0 >= CLUSTER_BEFORE, 20,
             f"{CLUSTER_BEFORE} cluster flood frames out of the quiet pods' taps", interval=0.1)
    out["flooded"] = measure(taps, args.samples, args.duration)
    sent, errors = stop_cluster_flood(proc)
    wall = time.monotonic() - t_go
    cpu3, received3, tx1 = cpu_s(pid), _received(responder), taps_out(quiet_pods)
    out["flood"] = {"sent": sent, "send_errors": errors, "seconds": round(wall, 2), "frames_per_s": round(sent / wall),
                    "out_of_taps": tx1 - tx0, "responder_cpu_s": round(cpu3 - cpu2, 3),
                    "responder_cpu_share": round((cpu3 - cpu2) / wall, 4)}
    out["flooded"]["received"] = None if received2 is None else received3 - received2
    # Each round trip is one frame from a quiet VM: beyond that, what the responder read came from elsewhere.
    for phase in ("idle", "flooded"):
        got = out[phase]["received"]
        out[phase]["received_beyond_own"] = None if got is None else got - out[phase]["samples"]
    idle, flooded = out["idle"]["median_ms"], out["flooded"]["median_ms"]
    out["ratio"] = round(flooded / idle, 2) if idle and flooded else None
    arrived = out["flood"]["out_of_taps"] >= CLUSTER_MIN
    beyond = out["flooded"]["received_beyond_own"]
    out["verdicts"] = {
        "ratio": arrived and out["ratio"] is not None and out["ratio"] <= TARGET_RATIO
        and not out["idle"]["lost"] and not out["flooded"]["lost"],
        "received": None if beyond is None else arrived and beyond <= RECEIVED_SLACK}
    return out


def _end(proc):
    if proc.is_alive():
        proc.terminate()
        proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join(10)


# -- the report -----------------------------------------------------------------------------------

def section(r):
    idle, flooded, flood, after = r["idle"], r["flooded"], r["flood"], r["after"]
    ratio_ok, log_ok = r["verdicts"]["ratio"], r["verdicts"]["log"]
    lines = [
        "## Flood: one VM floods, the other pods renew",
        "",
        *run_header(r),
        f"{r['pods']} quiet pods and one flooding pod, plumbed by `_pod_bridge.run`; one podnet-dhcpd with its defaults",
        f"({r['defaults']['frame_rate']:g} frames/s per pod, burst {r['defaults']['frame_burst']:g}, "
        f"{r['defaults']['log_lines']} log lines per pod per {r['defaults']['log_window']:g} s).",
        f"From the VM side of the quiet pods' taps: {r['samples']} REQUEST (REBINDING, ciaddr set) -> ACK round trips per",
        f"phase, round robin over the {r['pods']} pods, spread over {r['duration']:g} s. Idle first; then while a separate process",
        "writes DHCP frames into the flooding pod's tap as fast as it can (70 % DISCOVER, 30 % REQUEST; random xid and",
        "random option-55 list of 1 to 40 codes per frame, 4,096 distinct frames cycled) and reads its replies.",
        "",
        "| quiet pods' REQUEST -> ACK | median | p90 | max | answered |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| idle | {idle['median_ms']} ms | {idle['p90_ms']} ms | {idle['max_ms']} ms | {idle['answered']}/{idle['samples']} |",
        f"| during the flood | {flooded['median_ms']} ms | {flooded['p90_ms']} ms | {flooded['max_ms']} ms "
        f"| {flooded['answered']}/{flooded['samples']} |",
        "",
        "| the flood | |",
        "| --- | ---: |",
        f"| frames written into the flooding pod's tap | {flood['frames']:,} in {flood['seconds']} s "
        f"({flood['frames_per_s']:,}/s) |",
        f"| frames the flooding VM read from its tap: all / DHCP replies (the rate limit) | {flood['frames_read']:,} / "
        f"{flood['dhcp_replies']:,} |",
        f"| responder CPU time (utime + stime) | {flood['responder_cpu_s']} s in {flood['wall_s']} s "
        f"({flood['responder_cpu_share'] * 100:.1f} % of one core); idle phase: {idle['responder_cpu_s']} s |",
        f"| responder log growth (rotated files included) | {flood['log_growth_bytes']:,} bytes |",
        f"| ... of it, lines of the flooding pod | {flood['flood_pod_log_lines']} |",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        f"| quiet pods' median during the flood <= {TARGET_RATIO:g}x idle, no round trip lost in either phase "
        f"| {r['ratio']}x; lost: idle {idle['lost']}/{idle['samples']}, flood {flooded['lost']}/{flooded['samples']} "
        f"| {'met' if ratio_ok else '**missed**'} |",
        f"| log growth during the flood <= 1 MB | {flood['log_growth_bytes'] / 1e6:.3f} MB | {'met' if log_ok else '**missed**'} |",
        f"| every quiet pod's request answered during the flood | {flooded['answered']}/{flooded['samples']} "
        f"| {'met' if flooded['lost'] == 0 else '**missed**'} |",
        f"| the flooding pod served again {after['wait_s']:g} s after the flood (one DISCOVER) "
        f"| {'OFFER after ' + str(round(after['offer_s'] * 1000, 2)) + ' ms' if after['offer_s'] is not None else 'no OFFER within 2 s'} "
        f"| {'met' if after['offer_s'] is not None else '**missed**'} |",
        "",
        f"The responder {'was still running' if r['responder_alive'] else '**had exited**'} at the end. The machine has "
        f"{os.cpu_count()} cores: the flooder's",
        "own CPU (a VM's vCPU on a real node) competes here with the responder and the measuring client.",
        "",
        *cluster_section(r.get("cluster")),
    ]
    return "\n".join(lines)


def _verdict(met):
    return {True: "met", False: "**missed**", None: "not measured"}[met]


def _received_text(phase):
    got = phase["received"]
    if got is None:
        return "n/a (the responder logs no stats on SIGUSR1)"
    return f"{got:,} ({phase['received_beyond_own']:+,} beyond the quiet VMs' own {phase['samples']})"


def cluster_section(c):
    """The cluster-side flood (H1): a neighbour floods the quiet pods' IPs and the broadcast on :67 and :547."""
    if c is None:
        return ["### Cluster-side flood", "", "Not run (`--cluster-rate 0`).", ""]
    idle, flooded, flood = c["idle"], c["flooded"], c["flood"]
    arrived = flood["out_of_taps"] >= CLUSTER_MIN
    return [
        "### Cluster-side flood: a neighbour floods the pods' IPs on UDP 67 and 547 (finding H1)",
        "",
        "After the VM flood, the same quiet pods and responder. A neighbour (another netns on the node's bridge cni0,",
        "as a CNI makes a pod, with each quiet VM's MAC for its pod's IP as a permanent neighbour entry) sends UDP",
        f"DISCOVER payloads of a foreign MAC from a process of its own at {c['rate']:g} frames/s, round robin to every",
        f"quiet pod IP's :67 and :547 and to the subnet broadcast {c['broadcast']} :67 and :547 ({c['neighbour_targets']}",
        "targets). The frames cross each pod's bridge and leave through its tap towards the VM; each quiet VM's NIC",
        "drops UDP to ports 67/547 itself (a socket filter on the tun, `nic_drops_server_ports`), as a VM running no",
        f"DHCP server would. The quiet VMs' REQUEST -> ACK round trips: {c['idle']['samples']} per phase, as above, idle",
        "(the NIC filter on) and then during the flood, which had sent at least "
        f"{CLUSTER_BEFORE:,} frames out of the taps before the first round trip.",
        "",
        "| quiet VMs' REQUEST -> ACK | median | p90 | max | answered | responder CPU | responder `received` |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| idle | {idle['median_ms']} ms | {idle['p90_ms']} ms | {idle['max_ms']} ms | {idle['answered']}/{idle['samples']} "
        f"| {idle['responder_cpu_s']} s ({idle['responder_cpu_share'] * 100:.1f} % of one core) | {_received_text(idle)} |",
        f"| during the cluster flood | {flooded['median_ms']} ms | {flooded['p90_ms']} ms | {flooded['max_ms']} ms "
        f"| {flooded['answered']}/{flooded['samples']} | {flood['responder_cpu_s']} s in {flood['seconds']} s "
        f"({flood['responder_cpu_share'] * 100:.1f} % of one core) | {_received_text(flooded)} |",
        "",
        f"The neighbour sent {flood['sent']:,} frames in {flood['seconds']} s ({flood['frames_per_s']:,}/s; "
        f"{flood['send_errors']} send errors); {flood['out_of_taps']:,} frames left through the quiet pods' taps "
        "(their tx counters, the quiet VMs' own replies included) - "
        + (f"the flood arrived (at least {CLUSTER_MIN:,})." if arrived
           else f"**fewer than {CLUSTER_MIN:,}: the flood did not arrive, the phase proves nothing**."),
        "`received` is the responder's counter of frames it read (its `stats` line on SIGUSR1), taken before and after",
        "each phase; the flooded phase's count starts before the flooder does.",
        "",
        "| target | measured | verdict |",
        "| --- | --- | --- |",
        f"| quiet VMs' median during the cluster flood <= {TARGET_RATIO:g}x idle, none lost, the flood arrived "
        f"| {c['ratio']}x; lost: idle {idle['lost']}/{idle['samples']}, flood {flooded['lost']}/{flooded['samples']} "
        f"| {_verdict(c['verdicts']['ratio'])} |",
        f"| `received` not moved by the flood: at most {RECEIVED_SLACK} frames beyond the quiet VMs' own, the flood "
        f"arrived | {_received_text(flooded)} | {_verdict(c['verdicts']['received'])} |",
        "",
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=50, help="quiet pods (plus one flooding pod)")
    parser.add_argument("--samples", type=int, default=400, help="round trips per phase")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase (and of the flood)")
    parser.add_argument("--recover-wait", type=float, default=1.0, help="seconds after the flood before the flooding pod's DISCOVER")
    parser.add_argument("--cluster-rate", type=float, default=CLUSTER_RATE,
                        help="frames/s of the cluster neighbour's flood to the quiet pods' IPs and broadcast :67/:547 "
                             "(0: no cluster flood phase)")
    parser.add_argument("--quick", action="store_true", help="smoke size: --pods 5 --samples 50 --duration 3")
    add_output_arguments(parser)
    args = parser.parse_args()
    if args.quick:
        args.pods, args.samples, args.duration = 5, 50, 3.0
    if not start_as_root():
        return 2
    results = {"command": shown_command(), "machine": machine_line(), "run_dir_fs": run_dir_fs(run_dir_base()), "commit": commit(), "date": now_utc(),
               "load_start": load_text(os.getloadavg()),
               "pods": args.pods, "samples": args.samples, "duration": args.duration,
               "defaults": {"frame_rate": responder_code.FRAMES_PER_SECOND, "frame_burst": responder_code.FRAME_BURST,
                            "log_lines": responder_pod.LOG_LINES_PER_WINDOW, "log_window": responder_pod.LOG_WINDOW}}
    run(args, results)
    results["load_end"] = load_text(os.getloadavg())
    idle, flooded = results["idle"]["median_ms"], results["flooded"]["median_ms"]
    results["ratio"] = round(flooded / idle, 2) if idle and flooded else None
    lost = results["idle"]["lost"] + results["flooded"]["lost"]
    results["verdicts"] = {"ratio": results["ratio"] is not None and results["ratio"] <= TARGET_RATIO and not lost,
                           "log": results["flood"]["log_growth_bytes"] <= TARGET_LOG_BYTES,
                           "quiet_all_answered": results["flooded"]["lost"] == 0,
                           "flooder_served_after": results["after"]["offer_s"] is not None}
    if "cluster" in results:
        results["verdicts"]["cluster_ratio"] = results["cluster"]["verdicts"]["ratio"]
        results["verdicts"]["cluster_received"] = results["cluster"]["verdicts"]["received"]
    shown = ("idle", "flooded", "ratio", "flood", "after", "verdicts") + (("cluster",) if "cluster" in results else ())
    write_outputs(args, results, "flood", section, shown)
    # A missed target is a verdict on the page (run_all.py's too), not a failed run; a dead responder is.
    return 0 if results["responder_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
