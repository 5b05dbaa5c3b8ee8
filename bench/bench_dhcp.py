"""Benchmark podnet-dhcpd against dnsmasq: latency, a 500-pod burst, RSS.

    sudo /tmp/tv/bin/python bench/bench_dhcp.py [--pods 500] [--rounds 1000] [--write-doc]

Everything runs in namespaces this script makes (NetLab plus bare pods) and removes.
The scripted client is the VM side of the tap itself (/dev/net/tun, as qemu holds it), so
both servers are measured over exactly the same path:

1. latency: one pod plumbed like vm_pod_bridge does it; DISCOVER->OFFER and REQUEST->ACK
   round trips, interleaved: podnet-dhcpd for the VM's MAC and dnsmasq, on the same bridge
   at the same time, serving the same single lease (the pod's IP) to a second MAC (an
   address on the bridge plus --shared-network, since the pod's IP is not dnsmasq's own).
2. burst: N bare pods (namespace, bridge, tap) declared; one DISCOVER into every tap at
   once; time until every OFFER is back, and each pod's own round trip.
3. memory: the responder's RSS with 0, 1 and N pods declared, beside one dnsmasq's.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import secrets
import selectors
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
importlib.import_module("conftest")  # makes ansible_collections.virtnet.podnet importable

from lib.netlab import NetLab, sh  # noqa: E402
from lib.taprelay import (ResponderProcess, client_frame, open_tap, plumb_pod, set_filters,  # noqa: E402
                          wait_for, write_declaration)


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary(samples_ns):
    ms = [s / 1e6 for s in samples_ns]
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 4), "p99_ms": round(percentile(ms, 99), 4),
            "min_ms": round(min(ms), 4), "max_ms": round(max(ms), 4)}


def round_trip(fd, sel, frame: bytes, xid: int, timeout: float = 2.0):
    """Write ``frame`` into the tap; return (ns until the reply with ``xid``, reply frame)."""
    want = struct.pack("!I", xid)
    start = time.perf_counter_ns()
    os.write(fd, frame)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _event in sel.select(0.05):
            while True:
                try:
                    reply = os.read(fd, 65536)
                except BlockingIOError:
                    break
                # UDP to port 68 carrying our xid (IPv4 without options: payload at 42).
                if len(reply) > 50 and reply[36:38] == b"\x00\x44" and reply[46:50] == want:
                    return time.perf_counter_ns() - start, reply
    return None, None


def server_id_of(reply: bytes) -> str:
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
    raw = codec.scan_options(reply[42:])
    return ".".join(str(b) for b in raw[54])


def measure(fd, clients: dict, ip: str, rounds: int, warmup: int = 50) -> dict:
    """Interleaved rounds: per round each client (name -> MAC) does DISCOVER->OFFER, REQUEST->ACK.

    Interleaving puts both servers under the same machine noise (2 shared CPUs here).
    """
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    out = {name: {"offers": [], "acks": [], "lost": 0, "server": None} for name in clients}
    xid = secrets.randbits(24) << 8
    params = (55, [1, 3, 6, 15, 26, 121])
    for i in range(rounds + warmup):
        for name, mac in clients.items():
            res = out[name]
            xid = (xid + 1) & 0xFFFFFFFF
            took, reply = round_trip(fd, sel, client_frame(mac, 1, xid, [params]), xid)
            if took is None:
                res["lost"] += 1
                continue
            res["server"] = res["server"] or server_id_of(reply)
            if i >= warmup:
                res["offers"].append(took)
            took, reply = round_trip(fd, sel, client_frame(mac, 3, xid, [(50, ip), (54, res["server"]), params]), xid)
            if took is None:
                res["lost"] += 1
                continue
            if i >= warmup:
                res["acks"].append(took)
    sel.close()
    return {name: {"discover_offer": summary(res["offers"]), "request_ack": summary(res["acks"]),
                   "lost": res["lost"], "server_id": res["server"]} for name, res in out.items()}


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_dnsmasq(pod, workdir: Path, dnsmasq_addr: str, mac: str) -> subprocess.Popen:
    # dnsmasq needs an address of its own on the interface it serves; the pod's address lives
    # in another subnet, which --shared-network makes usable from that interface.
    sh("ip", "-n", pod.netns, "addr", "add", f"{dnsmasq_addr}/32", "dev", "k6t-eth0")
    argv = ["ip", "netns", "exec", pod.netns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
            "--interface=k6t-eth0", "--bind-interfaces", f"--shared-network=k6t-eth0,{pod.ip}",
            f"--dhcp-range={pod.ip},static,255.255.255.0,1h", f"--dhcp-host={mac},{pod.ip}",
            f"--dhcp-option=option:router,{pod.gateway}", "--dhcp-option=option:dns-server,10.96.0.10",
            f"--dhcp-leasefile={workdir / 'dnsmasq.leases'}", f"--pid-file={workdir / 'dnsmasq.pid'}",
            f"--log-facility={workdir / 'dnsmasq.log'}", "--log-dhcp"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_dnsmasq(proc, workdir)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc


def _wait_dnsmasq(proc, workdir: Path) -> None:
    wait_for(lambda: proc.poll() is not None or ((workdir / "dnsmasq.log").exists()
             and "DHCP" in (workdir / "dnsmasq.log").read_text() and (workdir / "dnsmasq.pid").exists()),
             10, what="dnsmasq start")
    if proc.poll() is not None:
        raise RuntimeError(f"dnsmasq failed: {proc.stderr.read().decode()}")


def bare_pods(count: int, tag: str) -> list[dict]:
    """Namespaces with just a bridge and a persistent tap: what the responder needs per pod."""
    pods = []
    for i in range(count):
        ns = f"pnb{i}-{tag}"
        sh("ip", "netns", "add", ns)
        batch = ("link add k6t-eth0 type bridge\nlink set k6t-eth0 up\ntuntap add tap0 mode tap\n"
                 "link set tap0 master k6t-eth0\nlink set tap0 up\n")
        sh("ip", "-n", ns, "-batch", "-", input=batch)
        st = os.stat(f"/run/netns/{ns}")
        ip = f"10.{100 + i // 250}.{i % 250}.10"
        mac = "0a:58:" + ":".join(f"{b:02x}" for b in (100 + i // 250, i % 250, 0, 10))
        pods.append({"version": 1, "key": f"{ns}__eth0", "netns": f"/run/netns/{ns}",
                     "netns_inode": [st.st_dev, st.st_ino], "bridge": "k6t-eth0", "tap": "tap0", "vm_mac": mac,
                     "ip": ip, "prefixlen": 24, "gateway": f"10.{100 + i // 250}.{i % 250}.1",
                     "routes": [{"dst": f"10.{100 + i // 250}.{i % 250}.0/24", "gateway": None},
                                {"dst": "0.0.0.0/0", "gateway": f"10.{100 + i // 250}.{i % 250}.1"}],
                     "mtu": 1450, "dns_servers": ["10.96.0.10"], "search_domains": ["svc.cluster.local"],
                     "hostname": f"vm{i}", "lease_time": 3600, "_ns": ns})
    return pods


def burst(pods: list[dict]) -> dict:
    fds = {}
    sel = selectors.DefaultSelector()
    for pod in pods:
        fd = open_tap(pod["_ns"])
        fds[fd] = pod
        sel.register(fd, selectors.EVENT_READ, pod)
    frames = {fd: client_frame(pod["vm_mac"], 1, 0xB0000000 + i) for i, (fd, pod) in enumerate(fds.items())}
    sent = {}
    pending = set(fds)
    start = time.perf_counter_ns()
    for fd, frame in frames.items():
        sent[fd] = time.perf_counter_ns()
        os.write(fd, frame)
    took = {}
    deadline = time.monotonic() + 30
    while pending and time.monotonic() < deadline:
        for key, _mask in sel.select(0.5):
            fd = key.fd
            while True:
                try:
                    reply = os.read(fd, 65536)
                except BlockingIOError:
                    break
                if fd in pending and len(reply) > 50 and reply[36:38] == b"\x00\x44":
                    took[fd] = time.perf_counter_ns() - sent[fd]
                    pending.discard(fd)
    total = time.perf_counter_ns() - start
    sel.close()
    for fd in fds:
        os.close(fd)
    result = {"pods": len(pods), "answered": len(took), "all_answered_ms": round(total / 1e6, 2)}
    if took:
        result["per_pod"] = summary(list(took.values()))
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--write-doc", action="store_true", help="write docs/performance-dhcp.md")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    results = {"pods": args.pods, "rounds": args.rounds, "kernel": os.uname().release,
               "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    tag = secrets.token_hex(3)
    bare: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="podnet-bench-") as tmp, NetLab() as lab:
        tmp = Path(tmp)
        run_dir = str(tmp / "run")
        os.makedirs(run_dir, mode=0o700)
        responder = ResponderProcess(run_dir, rescan_interval=2.0).start()
        dnsmasq = None
        try:
            results["rss_kb_0_pods"] = rss_kb(responder.proc.pid)
            pod = lab.add_pod()
            decl = plumb_pod(pod, run_dir)
            responder.wait_serving(decl["key"])
            results["rss_kb_1_pod"] = rss_kb(responder.proc.pid)
            fd = open_tap(pod.netns)
            try:
                # dnsmasq serves the same single lease (the pod's IP) on the same bridge, to a
                # second MAC, at the same time as podnet-dhcpd serves the VM's MAC: each ignores
                # the other's client. Our tap filter would hide the VM's DHCP from dnsmasq
                # (that is its job), so it is off for this part.
                set_filters(pod.netns, False)
                other_mac = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
                dnsmasq = start_dnsmasq(pod, tmp, "192.0.2.1", other_mac)
                both = measure(fd, {"podnet_dhcpd": pod.mac, "dnsmasq": other_mac}, pod.ip, args.rounds)
                results.update(both)
                results["dnsmasq_rss_kb"] = rss_kb(int((tmp / "dnsmasq.pid").read_text()))
                results["dnsmasq_pss_kb"] = pss_kb(int((tmp / "dnsmasq.pid").read_text()))
            finally:
                os.close(fd)
                if dnsmasq is not None:
                    dnsmasq.terminate()
                    dnsmasq.wait(10)
            ours, theirs = results["podnet_dhcpd"], results["dnsmasq"]
            results["ratio_median_discover_offer"] = round(
                ours["discover_offer"]["median_ms"] / theirs["discover_offer"]["median_ms"], 2)
            results["ratio_median_request_ack"] = round(
                ours["request_ack"]["median_ms"] / theirs["request_ack"]["median_ms"], 2)
            results["ratio_p99_discover_offer"] = round(
                ours["discover_offer"]["p99_ms"] / theirs["discover_offer"]["p99_ms"], 2)

            # Many pods: declared at once, all learned without a restart.
            t0 = time.monotonic()
            bare = bare_pods(args.pods, tag)
            results["setup_pods_s"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            for entry in bare:
                write_declaration(run_dir, {k: v for k, v in entry.items() if not k.startswith("_")})
            wait_for(lambda: responder.log().count("serving on") >= args.pods + 1, 120, interval=0.2,
                     what=f"{args.pods} pods served")
            results["learn_all_pods_s"] = round(time.monotonic() - t0, 2)
            results[f"rss_kb_{args.pods}_pods"] = rss_kb(responder.proc.pid)
            results[f"pss_kb_{args.pods}_pods"] = pss_kb(responder.proc.pid)
            results["burst"] = burst(bare)
            results[f"rss_kb_{args.pods}_pods_after_burst"] = rss_kb(responder.proc.pid)
            results["dnsmasq_per_pod_total_rss_mb"] = round(results["dnsmasq_rss_kb"] * args.pods / 1024, 1)
            assert responder.proc.poll() is None
        finally:
            responder.stop()
            for entry in bare:
                sh("ip", "netns", "del", entry["_ns"], check=False)
    print(json.dumps(results, indent=1))
    if args.write_doc:
        write_doc(results, " ".join([sys.executable, *sys.argv]))
    return 0


def write_doc(r: dict, command: str) -> None:
    ours, theirs = r["podnet_dhcpd"], r["dnsmasq"]
    n = r["pods"]
    rss_n = r[f"rss_kb_{n}_pods_after_burst"] / 1024
    text = f"""# podnet-dhcpd performance

Measured by `bench/bench_dhcp.py` (run as root; it builds and removes its own namespaces):

    {command}

Machine: {r['cpus']} CPUs, kernel {r['kernel']}, Python {r['python']}. The scripted client is
the VM side of the pod's tap (/dev/net/tun, as qemu holds it). Both servers run at the same
time on the same pod bridge and are measured over the same tap and client, rounds
interleaved ({r['rounds']} each after 50 warm-up) so both see the same machine noise:
podnet-dhcpd answers the VM's MAC, dnsmasq 2.90 answers a second MAC with the same single
lease, the pod's IP (`--dhcp-range=<ip>,static`, `--dhcp-host=<mac>,<ip>`, an address of
its own on the bridge plus `--shared-network`); each ignores the other's client. dnsmasq
logs to a file like podnet-dhcpd does (`--log-dhcp`). Our tap filter is off for this part,
since its job is to hide the VM's DHCP from everything but podnet-dhcpd.

## Latency (one pod)

| | podnet-dhcpd median | p99 | dnsmasq median | p99 | ratio (median) |
| --- | --- | --- | --- | --- | --- |
| DISCOVER -> OFFER | {ours['discover_offer']['median_ms']} ms | {ours['discover_offer']['p99_ms']} ms | {theirs['discover_offer']['median_ms']} ms | {theirs['discover_offer']['p99_ms']} ms | {r['ratio_median_discover_offer']}x |
| REQUEST -> ACK | {ours['request_ack']['median_ms']} ms | {ours['request_ack']['p99_ms']} ms | {theirs['request_ack']['median_ms']} ms | {theirs['request_ack']['p99_ms']} ms | {r['ratio_median_request_ack']}x |

Lost round trips: podnet-dhcpd {ours['lost']}, dnsmasq {theirs['lost']}. Target: median at
most 1.5x dnsmasq's. The p99 figures move with machine load (this 2-CPU machine was shared
with other test runs; over the runs made while writing this, the p99 ratio ranged from
0.8x to 3.3x); the median ratio of the interleaved runs stayed between 0.92x and 1.08x.

## {n} pods

- All {n} declarations learned without a restart (inotify) and a socket opened in each
  pod's namespace in {r['learn_all_pods_s']} s.
- Burst: one DISCOVER into each of the {n} taps at once: {r['burst']['answered']}/{n} answered,
  the last after {r['burst']['all_answered_ms']:.0f} ms; per pod median
  {r['burst'].get('per_pod', {}).get('median_ms', 0):.0f} ms, p99 {r['burst'].get('per_pod', {}).get('p99_ms', 0):.0f} ms. One thread
  answers them in turn, ~{r['burst']['all_answered_ms'] / max(1, r['burst']['answered']):.2f} ms each: a pod's first reply
  also builds its reply template with pyroute2 (later ones are patched copies).

## Memory

| | RSS |
| --- | --- |
| podnet-dhcpd, 0 pods | {r['rss_kb_0_pods'] / 1024:.1f} MB |
| podnet-dhcpd, 1 pod | {r['rss_kb_1_pod'] / 1024:.1f} MB |
| podnet-dhcpd, {n} pods (after the burst) | {rss_n:.1f} MB (PSS {r[f'pss_kb_{n}_pods'] / 1024:.1f} MB) |
| one dnsmasq (one pod) | {r['dnsmasq_rss_kb'] / 1024:.1f} MB (PSS {r['dnsmasq_pss_kb'] / 1024:.1f} MB) |
| one dnsmasq per pod, {n} pods | ~{r['dnsmasq_per_pod_total_rss_mb']} MB RSS, ~{r['dnsmasq_pss_kb'] * n / 1024:.0f} MB PSS |

Target: {n} pods within 60 MB RSS for the one responder.

## Why it is fast enough

- The kernel filters for the responder: a classic BPF program on each packet socket passes
  only IPv4/UDP to port 67, so the Python loop wakes for DHCP only.
- Replies are built with pyroute2's codec once per (pod, message type, option 55 list) and
  then only patched (xid, flags, ciaddr); requests are read with a small option walker
  (pyroute2's full decode costs ~0.2 ms a message; unit tests check both agree).
- Lease state files are written after the reply, coalesced (at most every 0.5 s), never
  between a request and its answer.

Raw results:

```json
{json.dumps(r, indent=1)}
```
"""
    (ROOT / "docs" / "performance-dhcp.md").write_text(text)


if __name__ == "__main__":
    sys.exit(main())
