"""Pods made by the real CNI bridge plugin, inside a NetLab's node namespace.

    with NetLab() as lab:
        cni = CniNetwork(lab, tmp_path)           # bridge + host-local IPAM, dual-stack
        pod = cni.add_pod()                       # CNI ADD: eth0 with an IPv4 and an IPv6 address
        cni.check(pod)                            # CNI CHECK: the CompletedProcess

The plugin runs in the lab's node namespace (``ip netns exec``), so its bridge, gateway
addresses and routes live there and nowhere else; the lab deletes every namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lib.netlab import NetLab, Pod, ip_json, link, sh
from lib.waiting import wait_for

CNI_PLUGIN = "/usr/lib/cni/bridge"
CNI_TIMEOUT = 30


@dataclass
class CniPod(Pod):
    ip6: str | None = None
    prefixlen6: int | None = None
    gateway6: str | None = None
    container_id: str = ""


def tentative(netns: str) -> list:
    """The addresses of the namespace still in IPv6 duplicate address detection."""
    return [a["local"] for e in ip_json(netns, "addr") for a in e.get("addr_info", []) if a.get("tentative")]


class CniNetwork:
    """One CNI bridge network (``isGateway``, host-local IPAM) in the lab's node namespace."""

    def __init__(self, lab: NetLab, tmp_path: Path, families=("4", "6"), mtu: int = 1400) -> None:
        lab.start()
        self.lab, self.mtu = lab, mtu
        self.results: dict = {}  # CNI ADD results by container id, for CHECK's prevResult
        index = lab.subnet_index
        self.subnet, self.gateway = f"10.247.{index}.0/24", f"10.247.{index}.1"
        self.subnet6, self.gateway6 = f"fd00:58:{index:x}::/64", f"fd00:58:{index:x}::1"
        ranges, routes = [], []
        if "4" in families:
            ranges.append([{"subnet": self.subnet, "gateway": self.gateway}])
            routes.append({"dst": "0.0.0.0/0"})
        if "6" in families:
            ranges.append([{"subnet": self.subnet6, "gateway": self.gateway6}])
            routes.append({"dst": "::/0"})
        self.conf = json.dumps({
            "cniVersion": "1.0.0", "name": f"podnet-{lab.tag}", "type": "bridge", "bridge": "cnib0",
            "isGateway": True, "ipMasq": False, "mtu": mtu,
            "ipam": {"type": "host-local", "dataDir": str(tmp_path / f"ipam-{lab.tag}"), "ranges": ranges,
                     "routes": routes},
        })
        # The node forwards between pods and answers as their gateway, as a real node does.
        lab.run(lab.node, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")

    def call(self, command: str, pod_netns: str, container_id: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": container_id, "CNI_NETNS": f"/run/netns/{pod_netns}",
               "CNI_IFNAME": "eth0", "CNI_PATH": os.path.dirname(CNI_PLUGIN),
               "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        conf = self.conf
        if command == "CHECK":
            conf = json.dumps(dict(json.loads(conf), prevResult=self.results[container_id]))
        proc = subprocess.run(["ip", "netns", "exec", self.lab.node, CNI_PLUGIN], input=conf, env=env,
                              capture_output=True, text=True, timeout=CNI_TIMEOUT, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"CNI {command} {pod_netns} failed ({proc.returncode}): {proc.stdout} {proc.stderr}")
        return proc

    def add_pod(self) -> CniPod:
        lab = self.lab
        index = len(lab.pods) + 1
        netns = f"{lab.prefix}-cni{index}-{lab.tag}"
        lab._add_netns(netns)
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        container_id = f"{lab.tag}{index:04d}"
        result = json.loads(self.call("ADD", netns, container_id).stdout)
        self.results[container_id] = result
        v4 = [ip for ip in result["ips"] if ":" not in ip["address"]]
        v6 = [ip for ip in result["ips"] if ":" in ip["address"]]
        ip, prefixlen = v4[0]["address"].split("/") if v4 else (None, 0)
        pod = CniPod(netns=netns, ip=ip, prefixlen=int(prefixlen), gateway=v4[0]["gateway"] if v4 else None,
                     mac=link(netns, "eth0")["address"], mtu=self.mtu, host_veth="", container_id=container_id)
        if v6:
            pod.ip6, pod.prefixlen6 = v6[0]["address"].split("/")[0], int(v6[0]["address"].split("/")[1])
            pod.gateway6 = v6[0]["gateway"]
        lab.pods.append(pod)
        # A real node's bridge is old; this one is new: its gateway answers only once DAD is done.
        for netns in (lab.node, netns):
            wait_for(lambda ns=netns: not tentative(ns), 10, what=f"IPv6 DAD done in {netns}")
        return pod

    def check(self, pod: CniPod) -> subprocess.CompletedProcess:
        return self.call("CHECK", pod.netns, pod.container_id, check=False)
