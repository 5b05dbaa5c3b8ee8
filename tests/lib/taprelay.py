"""Test fixtures for podnet-dhcpd: a tap<->veth relay, the pod plumbing, the responder process.

A namespace cannot open a tap that lives in another one, and a DHCP client wants an
ordinary interface, so ``TapRelay`` stands in for qemu: it attaches to the pod's persistent
``tap0`` through /dev/net/tun (IFF_TAP|IFF_NO_PI, from a thread that entered the pod's
namespace) and copies frames to and from a veth whose peer sits in a "VM" namespace.

``plumb_pod`` does what ``vm_pod_bridge`` will do (bridge, tap, new pod MAC, IPv4 moved away,
filters, lease declaration) with ``ip`` commands, until that module exists.
"""

from __future__ import annotations

import fcntl
import importlib.util
import ipaddress
import json
import os
import secrets
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from lib.netlab import NetLab, Pod, sh

REPO_ROOT = Path(__file__).resolve().parents[2]
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
SOL_PACKET, PACKET_AUXDATA = 263, 8
TP_STATUS_CSUMNOTREADY = 0x8
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
CLONE_NEWNET = 0x40000000


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; bounded, raises on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _load_standin():
    """The demo's VM stand-in (playbooks/files/vm_standin.py) is standalone; the tests share its frame code."""
    spec = importlib.util.spec_from_file_location("podnet_vm_standin", REPO_ROOT / "playbooks" / "files" / "vm_standin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Finishes a checksum the VM's kernel left to "hardware" (CHECKSUM_PARTIAL on a veth).
complete_l4_checksum = _load_standin().complete_l4_checksum


class TapRelay:
    """Relay frames between ``tap`` in ``pod_netns`` and a veth into ``vm_netns``."""

    def __init__(self, pod_netns: str, vm_netns: str, vm_mac: str, mtu: int = 1500, tap: str = "tap0",
                 vm_ifname: str | None = None) -> None:
        self.pod_netns, self.vm_netns, self.tap = pod_netns, vm_netns, tap
        self.vm_mac, self.mtu = vm_mac, mtu
        tag = secrets.token_hex(3)
        self.vm_ifname = vm_ifname or f"ve{tag}"   # unique: dhcpcd keys its files by name
        self.relay_ifname = f"vr{tag}"
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = os.pipe()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.frames = [0, 0]

    def start(self) -> TapRelay:
        sh("ip", "-n", self.pod_netns, "link", "add", self.relay_ifname, "mtu", str(self.mtu), "type", "veth",
           "peer", "name", self.vm_ifname, "netns", self.vm_netns)
        sh("ip", "-n", self.vm_netns, "link", "set", self.vm_ifname, "address", self.vm_mac, "mtu", str(self.mtu))
        sh("ip", "-n", self.vm_netns, "link", "set", self.vm_ifname, "up")
        sh("ip", "-n", self.pod_netns, "link", "set", self.relay_ifname, "up")
        self._thread = threading.Thread(target=self._run, name=f"taprelay-{self.tap}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("tap relay did not start")
        if self._error:
            raise RuntimeError(f"tap relay failed: {self._error!r}")
        return self

    def _run(self) -> None:
        tun = sock = None
        try:
            # setns() moves only this thread; the test's own thread stays where it was.
            fd = os.open(f"/run/netns/{self.pod_netns}", os.O_RDONLY)
            os.setns(fd, CLONE_NEWNET)
            os.close(fd)
            tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", self.tap.encode(), IFF_TAP | IFF_NO_PI))
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            sock.bind((self.relay_ifname, ETH_P_ALL))
            sock.setblocking(False)
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()
            if tun is not None:
                os.close(tun)
            if sock is not None:
                sock.close()
            return
        self._ready.set()
        sel = selectors.DefaultSelector()
        sel.register(tun, selectors.EVENT_READ, "tun")
        sel.register(sock, selectors.EVENT_READ, "sock")
        sel.register(self._stop_r, selectors.EVENT_READ, "stop")
        try:
            while True:
                for key, _mask in sel.select(1.0):
                    if key.data == "stop":
                        return
                    if key.data == "tun":
                        while True:
                            try:
                                frame = os.read(tun, 65536)
                            except BlockingIOError:
                                break
                            except OSError:
                                return
                            try:
                                sock.send(frame)
                                self.frames[0] += 1
                            except OSError:
                                pass
                    else:
                        while True:
                            try:
                                frame, anc, _flags, addr = sock.recvmsg(65536, socket.CMSG_SPACE(32))
                            except BlockingIOError:
                                break
                            except OSError:
                                return
                            if addr[2] == PACKET_OUTGOING:
                                continue
                            for level, ctype, data in anc:
                                if level == SOL_PACKET and ctype == PACKET_AUXDATA and len(data) >= 4:
                                    if struct.unpack("I", data[:4])[0] & TP_STATUS_CSUMNOTREADY:
                                        frame = complete_l4_checksum(frame)
                            try:
                                os.write(tun, frame)
                                self.frames[1] += 1
                            except OSError:
                                pass
        finally:
            sel.close()
            os.close(tun)
            sock.close()

    def stop(self) -> None:
        if self._thread is not None:
            os.write(self._stop_w, b"x")
            self._thread.join(10)
            self._thread = None
        for fd in (self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
        sh("ip", "-n", self.pod_netns, "link", "del", self.relay_ifname, check=False)

    def __enter__(self) -> TapRelay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- the pod side, as vm_pod_bridge will build it ---------------------------------------------
def routes_for(pod: Pod) -> list[dict]:
    if pod.prefixlen == 32:
        return [{"dst": f"{pod.gateway}/32", "gateway": None}, {"dst": "0.0.0.0/0", "gateway": pod.gateway}]
    net = ipaddress.IPv4Network(f"{pod.ip}/{pod.prefixlen}", strict=False)
    return [{"dst": str(net), "gateway": None}, {"dst": "0.0.0.0/0", "gateway": pod.gateway}]


def plumb_pod(pod: Pod, run_dir: str, filters: bool = True, declare: bool = True, **overrides) -> dict:
    """Bridge k6t-eth0 enslaving eth0 (new MAC), persistent tap0, pod IPv4 removed, declaration."""
    ns = pod.netns
    sh("ip", "-n", ns, "tuntap", "add", "tap0", "mode", "tap")
    sh("ip", "-n", ns, "link", "add", "k6t-eth0", "mtu", str(pod.mtu), "type", "bridge")
    sh("ip", "-n", ns, "link", "set", "k6t-eth0", "up")
    new_mac = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
    sh("ip", "-n", ns, "addr", "del", f"{pod.ip}/{pod.prefixlen}", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "down")
    sh("ip", "-n", ns, "link", "set", "eth0", "address", new_mac, "master", "k6t-eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "tap0", "mtu", str(pod.mtu), "master", "k6t-eth0")
    sh("ip", "-n", ns, "link", "set", "tap0", "up")
    if filters:
        set_filters(ns, True)
    decl = declaration_for(pod, **overrides)
    if declare:
        write_declaration(run_dir, decl)
    return decl


def set_filters(netns: str, present: bool) -> dict:
    from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_filters import (
        install_dhcp_filters, remove_dhcp_filters)
    from ansible_collections.virtnet.podnet.plugins.module_utils._netns import entered
    with entered(netns) as (ipr, _path, _inode):
        return (install_dhcp_filters if present else remove_dhcp_filters)(ipr, "tap0", "eth0")


def declaration_for(pod: Pod, **overrides) -> dict:
    st = os.stat(pod.netns_path)
    decl = {
        "version": 1,
        "key": f"{pod.netns}__eth0",
        "netns": pod.netns_path,
        "netns_inode": [st.st_dev, st.st_ino],
        "bridge": "k6t-eth0",
        "tap": "tap0",
        "vm_mac": pod.mac,
        "ip": pod.ip,
        "prefixlen": pod.prefixlen,
        "gateway": pod.gateway,
        "routes": routes_for(pod),
        "mtu": pod.mtu,
        "dns_servers": ["10.96.0.10"],
        "search_domains": ["default.svc.cluster.local", "svc.cluster.local"],
        "hostname": "vm1",
        "lease_time": 3600,
    }
    decl.update(overrides)
    return decl


def write_declaration(run_dir: str, decl: dict) -> str:
    from ansible_collections.virtnet.podnet.plugins.module_utils import _lease
    return _lease.write_declaration(run_dir, decl)


# -- the responder as a process ---------------------------------------------------------------
class ResponderProcess:
    """``python -m ..._dhcp_responder`` with a per-test run dir and log file."""

    def __init__(self, run_dir: str, log_file: str | None = None, rescan_interval: float = 1.0) -> None:
        self.run_dir = run_dir
        self.log_file = log_file or os.path.join(run_dir, "podnet-dhcpd.log")
        self.pidfile = os.path.join(run_dir, "podnet-dhcpd.pid")
        self.rescan_interval = rescan_interval
        self.proc: subprocess.Popen | None = None
        self._log_offset = 0

    def start(self) -> ResponderProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder",
             "--run-dir", self.run_dir, "--pidfile", self.pidfile, "--log-file", self.log_file,
             "--rescan-interval", str(self.rescan_interval)],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: self.proc.poll() is not None or "started" in self.log(), 20, what="responder start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"responder exited: {self.proc.stderr.read().decode()} {self.log()}")
        return self

    def log(self) -> str:
        try:
            return Path(self.log_file).read_text()
        except OSError:
            return ""

    def wait_log(self, text: str, timeout: float = 20.0, count: int = 1) -> str:
        return wait_for(lambda: self.log().count(text) >= count and self.log(), timeout, what=f"log line {text!r}")

    def wait_serving(self, key: str, timeout: float = 20.0) -> None:
        self.wait_log(f"pod={key} ", timeout)
        wait_for(lambda: f"pod={key} " in self.log() and "serving on" in self.log().split(f"pod={key} ", 1)[1],
                 timeout, what=f"responder serving {key}")

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def __enter__(self) -> ResponderProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def lease_state(run_dir: str, key: str) -> dict:
    try:
        return json.loads(Path(run_dir, "lease-state", f"{key}.json").read_text())
    except (OSError, ValueError):
        return {}


__all__ = ["NetLab", "TapRelay", "open_tap", "udhcpc_script", "read_reply", "client_frame", "plumb_pod",
           "declaration_for", "write_declaration", "ResponderProcess",
           "wait_for", "set_filters", "lease_state", "routes_for", "complete_l4_checksum"]


def udhcpc_script(directory) -> str:
    """An executable copy of udhcpc_script.py run by this interpreter (no shell, no PATH lookup)."""
    target = Path(directory) / "udhcpc-script"
    if not target.exists():
        source = Path(__file__).with_name("udhcpc_script.py").read_text()
        target.write_text(f"#!{sys.executable}\n{source}")
        target.chmod(0o700)
    return str(target)


def open_tap(pod_netns: str, tap: str = "tap0") -> int:
    """Attach to the pod's persistent tap as qemu would: the fd stays bound to it after setns back."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{pod_netns}", os.O_RDONLY)
    try:
        os.setns(target, CLONE_NEWNET)
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
        return fd
    finally:
        os.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


def read_reply(fd: int, xid: int, timeout: float = 5.0):
    """The first DHCP reply with ``xid`` the tap hands to its VM side, decoded; None on timeout."""
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not sel.select(left):
                continue
            while True:
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                parsed = codec.parse_frame(frame, dport=68)
                if parsed is None or len(parsed[3]) < 8 or struct.unpack("!I", parsed[3][4:8])[0] != xid:
                    continue
                return frame, codec.decode_message(parsed[3])
    finally:
        sel.close()


def client_frame(mac: str, mtype: int, xid: int, options=(), ciaddr: str = "0.0.0.0", flags: int = 0,
                 dst_ip: str = "255.255.255.255", dst_mac: str = "ff:ff:ff:ff:ff:ff") -> bytes:
    """A client's DHCP frame as a VM would put it on its NIC."""
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
    payload = codec.encode_message({"op": 1, "xid": xid, "chaddr": mac, "ciaddr": ciaddr, "flags": flags},
                                   [(53, mtype), *options])
    return codec.build_frame(mac, dst_mac, ciaddr, dst_ip, payload, sport=68, dport=67)
