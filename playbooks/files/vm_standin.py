# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A VM stand-in for the demo and the molecule scenarios: a real DHCP client behind the pod's tap.

    python vm_standin.py --pod-netns POD --vm-netns VMNS --mac VM_MAC [--tap tap0] [--mtu 1500] [--name vm1]

As qemu would, it attaches to the persistent tap that ``vm_pod_bridge`` made in the pod
(/dev/net/tun, IFF_TAP|IFF_NO_PI, from a thread that entered the pod's namespace). The
"VM" is a network namespace VMNS (created here, deleted at the end) with a veth ``eth0``
carrying the VM's MAC; frames are relayed between the tap and the veth's peer both ways.
busybox ``udhcpc`` runs in VMNS with a small script (this file again) that applies the
lease; then the gateway is pinged. Prints one JSON line:

    {"vm": ..., "leased_ip": ..., "prefixlen": ..., "mac": ..., "gateway": ..., "gateway_reachable": ...}

Every wait is bounded (``--timeout``). Needs root. Exit status 0 when a lease was obtained
and the gateway answered, 1 otherwise (the JSON line is printed either way).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import ipaddress
import json
import os
import secrets
import selectors
import socket
import struct
import subprocess
import sys
import tempfile
import threading

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
SOL_PACKET, PACKET_AUXDATA, TP_STATUS_CSUMNOTREADY = 263, 8, 0x8
PACKET_OUTGOING = 4
ETH_P_ALL = 0x0003
CLONE_NEWNET = 0x40000000
EVENT_ENV = "PODNET_STANDIN_LEASE"


def run(*argv: str, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def setns(fd: int) -> None:
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def complete_l4_checksum(frame: bytes) -> bytes:
    """Finish a UDP/TCP checksum the VM's kernel left to "hardware" (CHECKSUM_PARTIAL on a veth)."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return frame
    ihl = (frame[14] & 0x0F) * 4
    proto = frame[23]
    total = struct.unpack("!H", frame[16:18])[0]
    start, end = 14 + ihl, 14 + total
    offset = {17: 6, 6: 16}.get(proto)
    if offset is None or end > len(frame):
        return frame
    seg = bytearray(frame[start:end])
    seg[offset:offset + 2] = b"\x00\x00"
    pseudo = frame[26:34] + struct.pack("!BBH", 0, proto, len(seg))
    value = _csum(pseudo + bytes(seg)) or (0xFFFF if proto == 17 else 0)
    seg[offset:offset + 2] = struct.pack("!H", value)
    return frame[:start] + bytes(seg) + frame[end:]


class Relay:
    """Copies frames between ``tap`` (in the pod) and the veth ``relay_ifname`` (in the pod, peer in the VM)."""

    def __init__(self, pod_netns: str, tap: str, relay_ifname: str) -> None:
        self.pod_netns, self.tap, self.relay_ifname = pod_netns, tap, relay_ifname
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.stop_r, self.stop_w = os.pipe()
        self.thread = threading.Thread(target=self._run, name="relay", daemon=True)

    def start(self, timeout: float) -> None:
        self.thread.start()
        if not self.ready.wait(timeout):
            raise TimeoutError("the tap relay did not start")
        if self.error is not None:
            raise RuntimeError(f"cannot attach to {self.tap} in {self.pod_netns}: {self.error}")

    def stop(self) -> None:
        os.write(self.stop_w, b"x")
        self.thread.join(5)

    def _open(self):
        # setns() moves only this thread; the main thread stays in the node's namespace.
        fd = os.open(f"/run/netns/{self.pod_netns}", os.O_RDONLY)
        try:
            setns(fd)
        finally:
            os.close(fd)
        tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", self.tap.encode(), IFF_TAP | IFF_NO_PI))
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except OSError:
            os.close(tun)
            raise
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.bind((self.relay_ifname, ETH_P_ALL))
        sock.setblocking(False)
        return tun, sock

    def _run(self) -> None:
        try:
            tun, sock = self._open()
        except OSError as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        sel = selectors.DefaultSelector()
        sel.register(tun, selectors.EVENT_READ, "tun")
        sel.register(sock, selectors.EVENT_READ, "sock")
        sel.register(self.stop_r, selectors.EVENT_READ, "stop")
        try:
            while True:
                for key, _mask in sel.select(1.0):
                    if key.data == "stop":
                        return
                    if key.data == "tun":
                        self._tap_to_vm(tun, sock)
                    else:
                        self._vm_to_tap(tun, sock)
        finally:
            sel.close()
            os.close(tun)
            sock.close()

    @staticmethod
    def _tap_to_vm(tun: int, sock: socket.socket) -> None:
        while True:
            try:
                frame = os.read(tun, 65536)
            except BlockingIOError:
                return
            try:
                sock.send(frame)
            except OSError:
                pass

    @staticmethod
    def _vm_to_tap(tun: int, sock: socket.socket) -> None:
        while True:
            try:
                frame, anc, _flags, addr = sock.recvmsg(65536, socket.CMSG_SPACE(32))
            except BlockingIOError:
                return
            if addr[2] == PACKET_OUTGOING:
                continue
            for level, ctype, data in anc:
                if level == SOL_PACKET and ctype == PACKET_AUXDATA and len(data) >= 4:
                    if struct.unpack("I", data[:4])[0] & TP_STATUS_CSUMNOTREADY:
                        frame = complete_l4_checksum(frame)
            try:
                os.write(tun, frame)
            except OSError:
                pass


# -- the udhcpc script (udhcpc runs this file with the event as argument) ---------------------
def udhcpc_event(event: str) -> int:
    """Apply the lease as busybox's default script would (address, MTU, option 121 or router) and record it."""
    env = os.environ
    iface = env.get("interface", "")
    if event == "deconfig":
        run("ip", "addr", "flush", "dev", iface, check=False)
        run("ip", "link", "set", iface, "up", check=False)
    elif event in ("bound", "renew"):
        prefix = ipaddress.IPv4Network(f"0.0.0.0/{env.get('subnet', '255.255.255.255')}").prefixlen
        run("ip", "addr", "replace", f"{env['ip']}/{prefix}", "dev", iface)
        if env.get("mtu"):
            run("ip", "link", "set", iface, "mtu", env["mtu"])
        words = env.get("staticroutes", "").split()
        gateway = None
        for dst, gw in zip(words[::2], words[1::2]):
            if gw == "0.0.0.0":
                run("ip", "route", "replace", dst, "dev", iface)
            else:
                run("ip", "route", "replace", dst, "via", gw, "dev", iface)
                if dst == "0.0.0.0/0":
                    gateway = gw
        if not words:
            for router in env.get("router", "").split()[:1]:
                run("ip", "route", "replace", "default", "via", router, "dev", iface)
                gateway = router
        with open(env[EVENT_ENV], "w", encoding="utf-8") as handle:
            json.dump({"ip": env["ip"], "prefixlen": prefix, "gateway": gateway, "mtu": env.get("mtu")}, handle)
    return 0


def _script(directory: str) -> str:
    path = os.path.join(directory, "udhcpc-script")
    here = os.path.dirname(os.path.abspath(__file__))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {here!r})\n"
                     "import vm_standin\nsys.exit(vm_standin.udhcpc_event(sys.argv[1] if len(sys.argv) > 1 else ''))\n")
    os.chmod(path, 0o700)
    return path


# -- the stand-in ------------------------------------------------------------------------------
def standin(args) -> dict:
    result = {"vm": args.name, "leased_ip": None, "prefixlen": None, "mac": args.mac, "gateway": None,
              "gateway_reachable": False}
    relay_ifname = f"vs{secrets.token_hex(3)}"
    relay = None
    made_netns = False
    with tempfile.TemporaryDirectory(prefix="podnet-standin-") as tmp:
        try:
            run("ip", "netns", "add", args.vm_netns)
            made_netns = True
            run("ip", "-n", args.vm_netns, "link", "set", "lo", "up")
            run("ip", "-n", args.pod_netns, "link", "add", relay_ifname, "mtu", str(args.mtu), "type", "veth",
                "peer", "name", "eth0", "netns", args.vm_netns)
            run("ip", "-n", args.vm_netns, "link", "set", "eth0", "address", args.mac, "mtu", str(args.mtu))
            run("ip", "-n", args.vm_netns, "link", "set", "eth0", "up")
            run("ip", "-n", args.pod_netns, "link", "set", relay_ifname, "up")
            relay = Relay(args.pod_netns, args.tap, relay_ifname)
            relay.start(args.timeout)
            lease_file = os.path.join(tmp, "lease.json")
            env = dict(os.environ, **{EVENT_ENV: lease_file})
            tries = max(2, int(args.timeout // 2))
            subprocess.run(["ip", "netns", "exec", args.vm_netns, "busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0",
                            "-t", str(tries), "-T", "1", "-A", "1", "-s", _script(tmp)],
                           capture_output=True, text=True, env=env, timeout=args.timeout + 5, check=False)
            if os.path.exists(lease_file):
                with open(lease_file, encoding="utf-8") as handle:
                    lease = json.load(handle)
                result.update(leased_ip=lease["ip"], prefixlen=lease["prefixlen"], gateway=lease["gateway"])
            gateway = result["gateway"] or args.gateway
            result["gateway"] = gateway
            if gateway and result["leased_ip"]:
                ping = run("ip", "netns", "exec", args.vm_netns, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-w",
                           str(max(3, int(args.timeout // 3))), gateway, check=False, timeout=args.timeout)
                result["gateway_reachable"] = "bytes from" in ping.stdout
        except (OSError, RuntimeError, subprocess.TimeoutExpired, TimeoutError) as exc:
            result["error"] = str(exc)
        finally:
            if relay is not None:
                relay.stop()
            run("ip", "-n", args.pod_netns, "link", "del", relay_ifname, check=False)
            if made_netns:
                run("ip", "netns", "del", args.vm_netns, check=False)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="A VM stand-in with a real DHCP client behind a pod's tap")
    parser.add_argument("--pod-netns", required=True, help="the pod's network namespace (a name under /run/netns)")
    parser.add_argument("--vm-netns", required=True, help="the namespace to create for the VM (deleted at the end)")
    parser.add_argument("--mac", required=True, help="the VM's MAC (vm_pod_bridge's vm_mac)")
    parser.add_argument("--tap", default="tap0")
    parser.add_argument("--mtu", type=int, default=1500)
    parser.add_argument("--name", default="vm")
    parser.add_argument("--gateway", default=None, help="ping this when the lease names no gateway")
    parser.add_argument("--timeout", type=float, default=20.0, help="bound for the lease and for the ping")
    args = parser.parse_args(argv)
    result = standin(args)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["leased_ip"] and result["gateway_reachable"] else 1


if __name__ == "__main__":
    sys.exit(main())
