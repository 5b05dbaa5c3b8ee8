"""A small lab of real network namespaces, built the way a CNI plugin would build pods.

    with NetLab() as lab:
        pod = lab.add_pod()                 # flannel-like: 10.244.x.y/24 via 10.244.x.1
        calico = lab.add_pod(calico=True)   # /32 address, gateway 169.254.1.1 by link route
        lab.run(pod.netns, "ip", "-j", "addr")

Every name carries a random suffix so tests can run twice, concurrently and after a
crashed run; ``close()`` (or leaving the ``with``) deletes every namespace the lab made,
and with them every link inside. All addresses live only inside these namespaces.
The lab uses the ``ip`` command on purpose: it plays the CNI, not the code under test.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from dataclasses import dataclass, field

from lib import pod_snapshot

DEFAULT_TIMEOUT = 20


def sh(*argv: str, check: bool = True, timeout: float = DEFAULT_TIMEOUT, input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its stderr (never hang: bounded timeout)."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class Pod:
    netns: str
    ip: str
    prefixlen: int
    gateway: str
    mac: str
    mtu: int
    host_veth: str
    calico: bool = False
    interface: str = "eth0"

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"


@dataclass
class NetLab:
    """A node namespace with a gateway, and pods as namespaces with a veth ``eth0``."""

    prefix: str = "pnt"
    mtu: int = 1450
    subnet_index: int | None = None
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    pods: list[Pod] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        # A random /24 per lab keeps concurrent labs apart in logs; namespaces keep them apart on the wire.
        if self.subnet_index is None:
            self.subnet_index = secrets.randbelow(200) + 1
        self.node = f"{self.prefix}-node-{self.tag}"
        self.gateway = f"10.244.{self.subnet_index}.1"
        self.calico_gateway = "169.254.1.1"
        self._started = False

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> NetLab:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        if self._started:
            return
        self._add_netns(self.node)
        node = self.node
        sh("ip", "-n", node, "link", "set", "lo", "up")
        sh("ip", "-n", node, "link", "add", "cni0", "type", "bridge")
        sh("ip", "-n", node, "link", "set", "cni0", "mtu", str(self.mtu), "up")
        sh("ip", "-n", node, "addr", "add", f"{self.gateway}/24", "dev", "cni0")
        self._started = True

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        self.pods.clear()
        self._started = False

    def _add_netns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)

    # -- pods --------------------------------------------------------------
    def add_pod(self, calico: bool = False, with_ip: bool = True, with_gateway: bool = True, mtu: int | None = None) -> Pod:
        self.start()
        index = len(self.pods) + 1
        netns = f"{self.prefix}-pod{index}-{self.tag}"
        host_veth = f"v{self.tag}{index}"
        mtu = mtu or self.mtu
        self._add_netns(netns)
        sh("ip", "-n", netns, "link", "set", "lo", "up")
        sh("ip", "-n", self.node, "link", "add", host_veth, "mtu", str(mtu), "type", "veth",
           "peer", "name", "eth0", "netns", netns)
        sh("ip", "-n", netns, "link", "set", "eth0", "mtu", str(mtu), "up")
        if calico:
            ip, prefixlen, gateway = f"10.245.{self.subnet_index}.{index + 9}", 32, self.calico_gateway
            sh("ip", "-n", self.node, "link", "set", host_veth, "up")
            # Calico answers ARP for the gateway from the host side by proxy ARP.
            sh("ip", "netns", "exec", self.node, "sysctl", "-qw", f"net.ipv4.conf.{host_veth}.proxy_arp=1")
            sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            sh("ip", "-n", self.node, "route", "add", f"{ip}/32", "dev", host_veth)
            # The node owns the gateway address in the lab, so "gateway reachable" can be pinged.
            if not any(a.get("local") == gateway for e in ip_json(self.node, "addr", "show", "dev", "lo")
                       for a in e.get("addr_info", [])):
                sh("ip", "-n", self.node, "addr", "add", f"{gateway}/32", "dev", "lo")
            if with_ip:
                sh("ip", "-n", netns, "addr", "add", f"{ip}/32", "dev", "eth0")
            if with_gateway:
                sh("ip", "-n", netns, "route", "add", f"{gateway}/32", "dev", "eth0", "scope", "link")
                sh("ip", "-n", netns, "route", "add", "default", "via", gateway, "dev", "eth0")
        else:
            ip, prefixlen, gateway = f"10.244.{self.subnet_index}.{index + 9}", 24, self.gateway
            sh("ip", "-n", self.node, "link", "set", host_veth, "master", "cni0", "up")
            if with_ip:
                sh("ip", "-n", netns, "addr", "add", f"{ip}/24", "dev", "eth0")
                if with_gateway:
                    sh("ip", "-n", netns, "route", "add", "default", "via", gateway, "dev", "eth0")
        mac = link(netns, "eth0")["address"]
        pod = Pod(netns=netns, ip=ip, prefixlen=prefixlen, gateway=gateway, mac=mac, mtu=mtu,
                  host_veth=host_veth, calico=calico)
        self.pods.append(pod)
        return pod

    # -- helpers -----------------------------------------------------------
    def add_namespace(self, role: str) -> str:
        """An extra namespace (e.g. a VM stand-in), deleted with the lab."""
        name = f"{self.prefix}-{role}-{self.tag}"
        self._add_netns(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    @staticmethod
    def run(netns: str, *argv: str, check: bool = True, timeout: float = DEFAULT_TIMEOUT) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", netns, *argv, check=check, timeout=timeout)


def ip_json(netns: str, *args: str) -> list:
    out = sh("ip", "-n", netns, "-j", *args).stdout
    return json.loads(out) if out.strip() else []


def link(netns: str, name: str) -> dict:
    return ip_json(netns, "-d", "link", "show", "dev", name)[0]


def link_exists(netns: str, name: str) -> bool:
    return sh("ip", "-n", netns, "link", "show", "dev", name, check=False).returncode == 0


def snapshot(netns: str) -> dict:
    """The namespace as "restored exactly" compares it (lib.pod_snapshot, which molecule runs too)."""
    return pod_snapshot.snapshot(netns)
