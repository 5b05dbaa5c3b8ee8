# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The VM stand-in: a real DHCP client behind a pod's tap. The one implementation, used by the
demo, the molecule scenarios and the tests (tests/lib/standin.py loads this file by its path).

    python vm_standin.py --pod-netns POD --vm-netns VMNS --mac VM_MAC [--tap tap0] [--mtu 1500] [--name vm1]
    python vm_standin.py ... --static 10.244.51.20/24 --static-gateway 10.244.51.1   # Ethernet only, no DHCP
    python vm_standin.py ... --hold-dir DIR   # lease, wait for a write to DIR/renew, renew (T1)
    python vm_standin.py ... --dhcp6 [--ping6 fd00:58::1]   # dual stack: then dhcpcd -6, ping the IPv6 gateway

Standalone on purpose: only the standard library, so it runs without the collection on
sys.path (and with Python 3.11, whose ``os`` has no ``setns``).

As qemu would, it attaches to the persistent tap that ``vm_pod_bridge`` made in the pod
(/dev/net/tun, IFF_TAP|IFF_NO_PI, from a thread that entered the pod's namespace). The
"VM" is a network namespace VMNS (created here, deleted at the end) with a veth ``eth0``
carrying the VM's MAC; ``TapRelay`` copies frames between the tap and the veth's peer both
ways. busybox ``udhcpc`` runs in VMNS with a small script (this file again:
``udhcpc_event``) that applies the lease; then the gateway the lease named is pinged. With
``--static`` there is no DHCP: the address and default route are set by hand, and the
gateway is pinged through the tap all the same. With ``--dhcp6`` (a dual-stack pod), once the
IPv4 part is done, ``dhcpcd -6`` runs in VMNS too (its state on a tmpfs of a mount namespace
of its own): it takes the address by DHCPv6 and the default route from the Router
Advertisements; then the IPv6 gateway is pinged. Prints one JSON line:

    {"vm", "mode": "dhcp"|"static", "leased_ip", "static_ip", "prefixlen", "gateway",
     "gateway_reachable", "mac", "served_mac", "frames_to_vm", "frames_from_vm"[, "renewed"],
     "dhcp6", "leased_ip6", "prefixlen6", "gateway6", "pinged6", "gateway6_reachable"[, "error6"]}

- ``gateway``: only what the lease says (option 121's default route, else option 3); null
  when the lease names none. There is no fallback: a lease without a router is visible.
- ``mac``: the MAC of the VM's NIC as the kernel holds it after the lease.
- ``served_mac``: the client hardware address (chaddr) of the DHCPACK the relay carried
  from the pod to the VM, i.e. the MAC the responder served; null when no ACK came through.
- ``frames_*``: frames relayed each way, so a caller can tell that traffic crossed the tap.
- ``dhcp6``: whether ``--dhcp6`` was given; without it the other IPv6 fields stay null/false.
- ``leased_ip6``/``prefixlen6``: the global IPv6 address the VM's NIC holds (DAD done) after
  DHCPv6, as the kernel has it; ``gateway6``: the gateway of the VM's IPv6 default route (from
  the RA: the pod gateway's link-local address), null when there is none.
- ``pinged6``: the address pinged - ``--ping6`` (the gateway's global address), else
  ``gateway6`` on eth0; ``gateway6_reachable``: whether it answered. ``error6``: why not.

Every wait is bounded (``--timeout``). Needs root. Exit status 0 when the VM has an address
(leased, or static) and the gateway answered - and with ``--dhcp6`` also an IPv6 address and an
answer from the IPv6 gateway -, 1 otherwise (the JSON line is printed either way).

Library use (tests/lib/standin.py): ``setns``, ``netns_entered``, ``open_tap``, ``TapRelay``,
``dhcp_reply_of``, ``udhcpc_script``, ``udhcpc_event``, ``complete_l4_checksum``; and for IPv6
``dhcpcd6_argv``, ``ipv6_global_address``, ``ipv6_default_gateway``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import fcntl
import ipaddress
import json
import os
import secrets
import select
import selectors
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
SOL_PACKET, PACKET_AUXDATA, TP_STATUS_CSUMNOTREADY = 263, 8, 0x8
PACKET_OUTGOING, PACKET_IGNORE_OUTGOING = 4, 23
RELAY_BATCH = 64  # frames relayed one way per wake-up, so a flood one way never starves the other
ETH_P_ALL = 0x0003
CLONE_NEWNET = 0x40000000
DHCPACK = 5
LEASE_ENV = "PODNET_STANDIN_LEASE"     # udhcpc_event writes the lease here as JSON
EVENT_LOG_ENV = "PODNET_UDHCPC_LOG"    # udhcpc_event appends one line per event here
RESOLV_ENV = "PODNET_RESOLV"           # the namespace's resolv.conf copy udhcpc_event may write
DHCPCD_STATE_DIRS = ("/var/lib/dhcpcd", "/run/dhcpcd")  # dhcpcd's DUID and leases, its pidfile and socket
DHCPCD6_CONF = "ipv6only\nnoipv4ll\nipv6rs\nnohook resolv.conf\nnohook hostname\n"


def run(*argv: str, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


# -- network namespaces -------------------------------------------------------------------------
def setns(fd: int) -> None:
    """Move the calling thread into the network namespace ``fd`` refers to.

    ``os.setns`` exists only from Python 3.12; on 3.11 (Debian 12's own) libc's setns(2) does it.
    """
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_path(netns: str) -> str:
    return netns if netns.startswith("/") else f"/run/netns/{netns}"


@contextlib.contextmanager
def netns_entered(netns: str):
    """Run the body with this thread in ``netns`` (a name under /run/netns or a path); then return.

    Sockets and file descriptors opened inside stay bound to that namespace afterwards.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path(netns), os.O_RDONLY)
        try:
            setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            setns(own)
    finally:
        os.close(own)


def open_tap(pod_netns: str, tap: str = "tap0") -> int:
    """Attach to the pod's persistent tap as qemu would: a non-blocking fd that stays bound to it."""
    with netns_entered(pod_netns):
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tap.encode(), IFF_TAP | IFF_NO_PI))
        except OSError:
            os.close(fd)
            raise
        return fd


# -- frames ---------------------------------------------------------------------------------------
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


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def dhcp_reply_of(frame: bytes) -> dict | None:
    """A DHCP server reply (Ethernet/IPv4/UDP to port 68, BOOTREPLY) summarised, else None:
    ``{"type": option 53, "chaddr", "yiaddr", "dst_mac"}``."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    udp = 14 + (frame[14] & 0x0F) * 4
    if len(frame) < udp + 8 + 240 or struct.unpack("!H", frame[udp + 2:udp + 4])[0] != 68:
        return None
    bootp = frame[udp + 8:]
    if bootp[0] != 2 or bootp[236:240] != b"\x63\x82\x53\x63":
        return None
    mtype, i = None, 240
    while i + 1 < len(bootp) and bootp[i] != 255:
        if bootp[i] == 0:
            i += 1
            continue
        length = bootp[i + 1]
        if bootp[i] == 53 and length >= 1 and i + 2 < len(bootp):
            mtype = bootp[i + 2]
            break
        i += 2 + length
    return {"type": mtype, "chaddr": _mac_text(bootp[28:34]), "yiaddr": socket.inet_ntoa(bootp[16:20]),
            "dst_mac": _mac_text(frame[0:6])}


# -- the relay: qemu's part -----------------------------------------------------------------------
class TapRelay:
    """Relay frames between ``tap`` in ``pod_netns`` and a veth whose peer ``vm_ifname`` is in ``vm_netns``.

    ``start()`` makes the veth pair (the VM's end carries ``vm_mac`` and ``mtu``) and the relay
    thread; ``stop()`` ends the thread and deletes the pair. ``frames`` counts relayed frames
    ``[tap -> VM, VM -> tap]``; ``dhcp_replies`` keeps the last DHCP replies carried to the VM
    (``dhcp_reply_of``), recorded before the VM can see them.
    """

    def __init__(self, pod_netns: str, vm_netns: str, vm_mac: str, mtu: int = 1500, tap: str = "tap0",
                 vm_ifname: str | None = None) -> None:
        self.pod_netns, self.vm_netns, self.tap = pod_netns, vm_netns, tap
        self.vm_mac, self.mtu = vm_mac, mtu
        tag = secrets.token_hex(3)
        self.vm_ifname = vm_ifname or f"ve{tag}"   # unique by default: dhcpcd keys its files by name
        self.relay_ifname = f"vr{tag}"
        self.frames = [0, 0]
        self.dhcp_replies: collections.deque = collections.deque(maxlen=256)
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = os.pipe()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._made_veth = False

    def start(self, timeout: float = 10.0) -> TapRelay:
        try:
            run("ip", "-n", self.pod_netns, "link", "add", self.relay_ifname, "mtu", str(self.mtu), "type", "veth",
                "peer", "name", self.vm_ifname, "netns", self.vm_netns)
            self._made_veth = True
            run("ip", "-n", self.vm_netns, "link", "set", self.vm_ifname, "address", self.vm_mac, "mtu", str(self.mtu))
            run("ip", "-n", self.vm_netns, "link", "set", self.vm_ifname, "up")
            run("ip", "-n", self.pod_netns, "link", "set", self.relay_ifname, "up")
            self._thread = threading.Thread(target=self._run, name=f"taprelay-{self.tap}", daemon=True)
            self._thread.start()
            if not self._ready.wait(timeout):
                raise TimeoutError(f"the tap relay on {self.tap} in {self.pod_netns} did not start")
            if self._error is not None:
                raise RuntimeError(f"cannot attach to {self.tap} in {self.pod_netns}: {self._error!r}")
        except BaseException:
            self.stop()
            raise
        return self

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
        self._stop_r = self._stop_w = -1
        if self._made_veth:
            run("ip", "-n", self.pod_netns, "link", "del", self.relay_ifname, check=False)
            self._made_veth = False

    def __enter__(self) -> TapRelay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _open(self):
        # netns_entered() moves only this thread; the caller's thread stays where it was.
        with netns_entered(self.pod_netns):
            tun = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
            try:
                fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", self.tap.encode(), IFF_TAP | IFF_NO_PI))
                sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            except OSError:
                os.close(tun)
                raise
            try:
                sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
                try:
                    # What the relay itself sends to the VM never queues here (a flood towards the
                    # VM would otherwise fill this queue and drop the VM's own frames).
                    sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                except OSError:
                    pass  # before Linux 4.20: skipped after reading, below
                sock.bind((self.relay_ifname, ETH_P_ALL))
                sock.setblocking(False)
            except OSError:
                os.close(tun)
                sock.close()
                raise
        return tun, sock

    def _run(self) -> None:
        try:
            tun, sock = self._open()
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
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
                        if not self._tap_to_vm(tun, sock):
                            return
                    elif not self._vm_to_tap(tun, sock):
                        return
        finally:
            sel.close()
            os.close(tun)
            sock.close()

    def _tap_to_vm(self, tun: int, sock: socket.socket) -> bool:
        for _frame in range(RELAY_BATCH):
            try:
                frame = os.read(tun, 65536)
            except BlockingIOError:
                return True
            except OSError:
                return False  # the tap is gone
            reply = dhcp_reply_of(frame)
            if reply is not None:
                self.dhcp_replies.append(reply)
            try:
                sock.send(frame)
                self.frames[0] += 1
            except OSError:
                pass
        return True

    def _vm_to_tap(self, tun: int, sock: socket.socket) -> bool:
        for _frame in range(RELAY_BATCH):
            try:
                frame, anc, _flags, addr = sock.recvmsg(65536, socket.CMSG_SPACE(32))
            except BlockingIOError:
                return True
            except OSError:
                return False
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
        return True


# -- the udhcpc script (udhcpc runs udhcpc_script()'s wrapper, which calls udhcpc_event) ----------
def udhcpc_event(event: str) -> int:
    """Apply the lease as busybox's default script would, and record it.

    Debian ships busybox without /usr/share/udhcpc/default.script. Applied: address and
    prefix, MTU, option 121 routes (else the router), and DNS and search list into
    ``$PODNET_RESOLV`` when that is the namespace's bind-mounted /etc/resolv.conf (never the
    host's). Recorded: the lease as JSON in ``$PODNET_STANDIN_LEASE``; one line per event
    appended to ``$PODNET_UDHCPC_LOG``. ``gateway`` is only what the lease named.
    """
    try:
        _apply_event(event, os.environ)
    finally:
        # Last, so that a reader of the line finds the event applied and its lease written.
        log = os.environ.get(EVENT_LOG_ENV)
        if log:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(f"{event} ip={os.environ.get('ip', '')} lease={os.environ.get('lease', '')} "
                             f"serverid={os.environ.get('serverid', '')}\n")
    return 0


def _apply_event(event: str, env) -> None:
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
        if words:  # RFC 3442: with option 121 the router option is ignored
            for dst, gw in zip(words[::2], words[1::2]):
                if gw == "0.0.0.0":
                    run("ip", "route", "replace", dst, "dev", iface)
                else:
                    run("ip", "route", "replace", dst, "via", gw, "dev", iface)
                    if dst == "0.0.0.0/0":
                        gateway = gw
        else:
            for router in env.get("router", "").split()[:1]:
                run("ip", "route", "replace", "default", "via", router, "dev", iface)
                gateway = router
        _write_resolv(env)
        if env.get(LEASE_ENV):
            with open(env[LEASE_ENV], "w", encoding="utf-8") as handle:
                json.dump({"ip": env["ip"], "prefixlen": prefix, "gateway": gateway, "mtu": env.get("mtu"),
                           "router": env.get("router") or None, "staticroutes": env.get("staticroutes") or None},
                          handle)


def _write_resolv(env) -> None:
    lines = []
    search = env.get("search") or env.get("domain")
    if search:
        lines.append(f"search {search}")
    lines += [f"nameserver {server}" for server in env.get("dns", "").split()]
    target = env.get(RESOLV_ENV)  # only the namespace's bind-mounted copy, never the host's
    if lines and target and os.path.exists(target) and os.path.samefile("/etc/resolv.conf", target):
        with open("/etc/resolv.conf", "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")


def udhcpc_script(directory) -> str:
    """Write ``<directory>/udhcpc-script``: run by this interpreter, it calls ``udhcpc_event`` of this file."""
    path = os.path.join(str(directory), "udhcpc-script")
    if not os.path.exists(path):
        here = os.path.abspath(__file__)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(f"#!{sys.executable}\nimport importlib.util, sys\n"
                         f"spec = importlib.util.spec_from_file_location('podnet_vm_standin', {here!r})\n"
                         "standin = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(standin)\n"
                         "sys.exit(standin.udhcpc_event(sys.argv[1] if len(sys.argv) > 1 else ''))\n")
        os.chmod(path, 0o700)
    return path


# -- the stand-in ---------------------------------------------------------------------------------
def _kernel_mac(netns: str, ifname: str) -> str | None:
    out = run("ip", "-n", netns, "-j", "link", "show", "dev", ifname, check=False).stdout
    links = json.loads(out) if out.strip() else []
    return links[0].get("address") if links else None


def _lease(args, tmp: str) -> dict | None:
    lease_file = os.path.join(tmp, "lease.json")
    env = dict(os.environ, **{LEASE_ENV: lease_file})
    tries = max(2, int(args.timeout // 2))
    subprocess.run(["ip", "netns", "exec", args.vm_netns, "busybox", "udhcpc", "-f", "-q", "-n", "-i", "eth0",
                    "-t", str(tries), "-T", "1", "-A", "1", "-s", udhcpc_script(tmp)],
                   capture_output=True, text=True, env=env, timeout=args.timeout + 5, check=False)
    if not os.path.exists(lease_file):
        return None
    with open(lease_file, encoding="utf-8") as handle:
        return json.load(handle)


def _read_event(fd: int, pending: list, want: tuple, deadline: float) -> str | None:
    """The next line of the udhcpc event FIFO whose event is one of ``want``, or None at the deadline."""
    while True:
        while pending:
            line = pending.pop(0)
            if line.split(" ", 1)[0] in want:
                return line
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        try:
            chunk = os.read(fd, 4096).decode("utf-8", "replace")
        except BlockingIOError:  # a writer opened the FIFO but has not written yet
            continue
        pending.extend(line for line in chunk.splitlines() if line)


def _lease_and_hold(args, tmp: str, while_bound) -> tuple[dict | None, str | None]:
    """--hold-dir: lease, then keep udhcpc running until something writes to HOLD/renew (a
    FIFO), then renew as a running client does at T1 (SIGUSR1: a REQUEST to the server
    that leased). Returns the lease and the renew event line ("renew ip=..."), or None when
    no renewal came. Writes HOLD/lease.json once leased, for the caller to wait on. The
    client's events come over a FIFO (udhcpc_event writes one line per event), so every wait
    is on an event, bounded. ``while_bound(lease)`` runs last, while the client still holds
    the address (stopping it deconfigures the interface)."""
    lease_file = os.path.join(tmp, "lease.json")
    events = os.path.join(tmp, "events")
    trigger = os.path.join(args.hold_dir, "renew")
    os.mkfifo(events, 0o600)
    if os.path.lexists(trigger):
        os.unlink(trigger)
    os.mkfifo(trigger, 0o600)
    events_fd = os.open(events, os.O_RDONLY | os.O_NONBLOCK)
    trigger_fd = os.open(trigger, os.O_RDONLY | os.O_NONBLOCK)
    # Our own writer on each FIFO: without one, the FIFO reads as end-of-file (always
    # "readable") once the first writer closed it, and select() would spin.
    keep_open = [os.open(events, os.O_WRONLY | os.O_NONBLOCK), os.open(trigger, os.O_WRONLY | os.O_NONBLOCK)]
    env = dict(os.environ, **{LEASE_ENV: lease_file, EVENT_LOG_ENV: events})
    client = subprocess.Popen(["ip", "netns", "exec", args.vm_netns, "busybox", "udhcpc", "-f", "-i", "eth0",
                               "-t", "5", "-T", "1", "-A", "1", "-s", udhcpc_script(tmp)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    pending: list = []
    try:
        if _read_event(events_fd, pending, ("bound",), time.monotonic() + args.timeout) is None:
            while_bound(None)
            return None, None
        with open(lease_file, encoding="utf-8") as handle:
            lease = json.load(handle)
        with open(os.path.join(args.hold_dir, "lease.json.tmp"), "w", encoding="utf-8") as handle:
            json.dump(lease, handle)
        os.replace(os.path.join(args.hold_dir, "lease.json.tmp"), os.path.join(args.hold_dir, "lease.json"))
        renewed = None
        if select.select([trigger_fd], [], [], args.hold_timeout)[0]:
            client.send_signal(signal.SIGUSR1)  # reaches udhcpc: `ip netns exec` execs it
            renewed = _read_event(events_fd, pending, ("renew", "bound"), time.monotonic() + args.timeout)
        while_bound(lease)
        return lease, renewed
    finally:
        client.terminate()
        try:
            client.wait(timeout=5)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()
        for fd in [events_fd, trigger_fd, *keep_open]:
            os.close(fd)


def _check_vm(args, relay, result: dict, lease: dict | None) -> None:
    """Record what the VM holds - the lease (when DHCP), the MAC that was served, the NIC's
    MAC - and ping the gateway: the lease's, or the static one."""
    if not args.static:
        if lease is not None:
            result.update(leased_ip=lease["ip"], prefixlen=lease["prefixlen"], gateway=lease["gateway"])
        acks = [r for r in list(relay.dhcp_replies) if r["type"] == DHCPACK]
        result["served_mac"] = acks[-1]["chaddr"] if acks else None
    result["mac"] = _kernel_mac(args.vm_netns, "eth0")
    if result["gateway"] and (result["leased_ip"] or result["static_ip"]):
        ping = run("ip", "netns", "exec", args.vm_netns, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-w",
                   str(max(3, int(args.timeout // 3))), result["gateway"], check=False, timeout=args.timeout)
        result["gateway_reachable"] = "bytes from" in ping.stdout


# -- IPv6: dhcpcd -6 in the VM namespace ----------------------------------------------------------
def dhcpcd6_argv(vm_netns: str, ifname: str, conf: str, timeout: float) -> list:
    """The argv that runs ``dhcpcd -6`` in the foreground on ``ifname`` in ``vm_netns``.

    Debian's busybox has no udhcpc6. dhcpcd runs in a mount namespace of its own (private
    propagation, ``unshare --mount``) with a tmpfs over its state directories - over the
    parent where one does not exist yet - so it finds no host DUID or lease, never meets the
    host's dhcpcd and leaves nothing behind. ``conf`` is its configuration file (``DHCPCD6_CONF``);
    no hook script runs (``-c`` true): dhcpcd itself applies the address and the routes.
    """
    mounts = [f"mount -t tmpfs podnet-standin {shlex.quote(d if os.path.isdir(d) else os.path.dirname(d))}"
              for d in DHCPCD_STATE_DIRS]
    inner = " && ".join(mounts + [f"exec dhcpcd -f {shlex.quote(conf)} -c /bin/true -6 -B -d -t {max(5, int(timeout))} "
                                  f"{shlex.quote(ifname)}"])
    return ["ip", "netns", "exec", vm_netns, "unshare", "--uts", "--mount", "sh", "-c", inner]


def ipv6_global_address(netns: str, ifname: str) -> tuple[str, int] | None:
    """``(address, prefixlen)`` of the first global IPv6 address of ``ifname`` that is usable
    (its duplicate address detection done), else None."""
    out = run("ip", "-n", netns, "-6", "-j", "addr", "show", "dev", ifname, "scope", "global", check=False).stdout
    for entry in json.loads(out) if out.strip() else []:
        for addr in entry.get("addr_info", []):
            if addr.get("family") == "inet6" and not addr.get("tentative") and not addr.get("dadfailed"):
                return addr["local"], addr["prefixlen"]
    return None


def ipv6_default_gateway(netns: str) -> str | None:
    """The gateway of the IPv6 default route in ``netns`` (the first one), else None."""
    out = run("ip", "-n", netns, "-6", "-j", "route", "show", "default", check=False).stdout
    for route in json.loads(out) if out.strip() else []:
        if route.get("gateway"):
            return route["gateway"]
    return None


def _lease6_and_check(args, tmp: str, result: dict) -> None:
    """--dhcp6: dhcpcd -6 on eth0 until the VM holds a global address and a default route, then
    ping the IPv6 gateway (``--ping6``, else the default route's gateway on eth0). Runs after
    the IPv4 part: udhcpc's deconfig flushed eth0's addresses, its link-local one too, so IPv6
    restarts on eth0 first (the kernel makes the link-local address anew; IPv4 stays)."""
    for value in ("1", "0"):
        run("ip", "netns", "exec", args.vm_netns, "sysctl", "-qw", f"net.ipv6.conf.eth0.disable_ipv6={value}")
    conf = os.path.join(tmp, "dhcpcd6.conf")
    with open(conf, "w", encoding="utf-8") as handle:
        handle.write(DHCPCD6_CONF)
    log_path = os.path.join(tmp, "dhcpcd6.log")
    with open(log_path, "w", encoding="utf-8") as log:
        # A session of its own: dhcpcd's privilege-separated helpers are in its process group.
        client = subprocess.Popen(dhcpcd6_argv(args.vm_netns, "eth0", conf, args.timeout + 5),
                                  stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + args.timeout
        address = gateway = None
        while time.monotonic() < deadline:
            address, gateway = ipv6_global_address(args.vm_netns, "eth0"), ipv6_default_gateway(args.vm_netns)
            if (address and gateway) or client.poll() is not None:
                break
            time.sleep(0.2)
        if address:
            result.update(leased_ip6=address[0], prefixlen6=address[1])
        result["gateway6"] = gateway
        if not (address and gateway):
            with open(log_path, encoding="utf-8", errors="replace") as handle:
                tail = " | ".join(handle.read().strip().splitlines()[-4:])
            state = "exited" if client.poll() is not None else f"gave no {'default route' if address else 'address'}"
            result["error6"] = f"dhcpcd -6 {state} within {args.timeout:g}s: {tail}"
            return
        target = getattr(args, "ping6", None) or f"{gateway}%eth0"
        result["pinged6"] = target
        ping = run("ip", "netns", "exec", args.vm_netns, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "-w",
                   str(max(3, int(args.timeout // 3))), target, check=False, timeout=args.timeout)
        result["gateway6_reachable"] = "bytes from" in ping.stdout
    finally:
        client.terminate()  # dhcpcd stops its helpers and removes what it applied
        try:
            client.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.killpg(client.pid, signal.SIGKILL)
            client.wait()


def standin(args) -> dict:
    result = {"vm": args.name, "mode": "static" if args.static else "dhcp", "leased_ip": None, "static_ip": None,
              "prefixlen": None, "gateway": None, "gateway_reachable": False, "mac": None, "served_mac": None,
              "frames_to_vm": 0, "frames_from_vm": 0, "dhcp6": bool(getattr(args, "dhcp6", False)), "leased_ip6": None,
              "prefixlen6": None, "gateway6": None, "pinged6": None, "gateway6_reachable": False}
    relay = None
    made_netns = False
    with tempfile.TemporaryDirectory(prefix="podnet-standin-") as tmp:
        try:
            run("ip", "netns", "add", args.vm_netns)
            made_netns = True
            run("ip", "-n", args.vm_netns, "link", "set", "lo", "up")
            relay = TapRelay(args.pod_netns, args.vm_netns, args.mac, args.mtu, args.tap, vm_ifname="eth0")
            relay.start(args.timeout)
            if args.static:
                iface = ipaddress.IPv4Interface(args.static)
                run("ip", "-n", args.vm_netns, "addr", "add", str(iface), "dev", "eth0")
                run("ip", "-n", args.vm_netns, "route", "add", "default", "via", args.static_gateway, "dev", "eth0")
                result.update(static_ip=str(iface.ip), prefixlen=iface.network.prefixlen, gateway=args.static_gateway)
            else:
                if args.hold_dir:
                    result["renewed"] = _lease_and_hold(args, tmp, lambda lease: _check_vm(args, relay, result, lease))[1]
                else:
                    _check_vm(args, relay, result, _lease(args, tmp))
                if result["dhcp6"]:
                    try:
                        _lease6_and_check(args, tmp, result)
                    except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
                        result["error6"] = str(exc)
            if result["static_ip"]:
                _check_vm(args, relay, result, None)
        except (OSError, RuntimeError, ValueError, subprocess.TimeoutExpired, TimeoutError) as exc:
            result["error"] = str(exc)
        finally:
            if relay is not None:
                relay.stop()
                result["frames_to_vm"], result["frames_from_vm"] = relay.frames
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
    parser.add_argument("--static", metavar="ADDRESS/PREFIX",
                        help="no DHCP: give the VM this address (Ethernet-only VMs) and ping --static-gateway")
    parser.add_argument("--static-gateway", metavar="ADDRESS", help="the default gateway with --static")
    parser.add_argument("--timeout", type=float, default=20.0, help="bound for the lease and for the ping")
    parser.add_argument("--hold-dir", metavar="DIR",
                        help="after the lease, write DIR/lease.json and wait for a write to the FIFO DIR/renew, then "
                             "renew (udhcpc's T1 REQUEST); the result's 'renewed' is the renew event, or null")
    parser.add_argument("--hold-timeout", type=float, default=120.0, help="bound for the wait on DIR/renew")
    parser.add_argument("--dhcp6", action="store_true",
                        help="a dual-stack pod: after the IPv4 part, dhcpcd -6 takes the IPv6 address (DHCPv6) and "
                             "the default route (the RA), then the IPv6 gateway is pinged")
    parser.add_argument("--ping6", metavar="ADDRESS",
                        help="with --dhcp6: the IPv6 gateway's (global) address to ping; default: the gateway of the "
                             "VM's IPv6 default route, on eth0")
    args = parser.parse_args(argv)
    if bool(args.static) != bool(args.static_gateway):
        parser.error("--static and --static-gateway go together")
    if args.static and args.dhcp6:
        parser.error("--dhcp6 needs DHCP: not with --static")
    if args.ping6 and not args.dhcp6:
        parser.error("--ping6 goes with --dhcp6")
    result = standin(args)
    sys.stdout.write(json.dumps(result) + "\n")
    ok = (result["leased_ip"] or result["static_ip"]) and result["gateway_reachable"]
    ok6 = not args.dhcp6 or (result["leased_ip6"] and result["gateway6_reachable"])
    return 0 if ok and ok6 else 1


if __name__ == "__main__":
    sys.exit(main())
