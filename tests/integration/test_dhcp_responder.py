"""podnet-dhcpd against real DHCP clients in real namespaces.

Each test builds its own lab (NetLab: unique namespace names, deleted even on failure),
its own run dir under tmp_path, its own responder process, pods plumbed by the real
plumbing (``vm_pod_bridge``'s entry point, in-process: tests/lib/plumbing.py) and the VM
stand-in's tap relay in place of qemu (playbooks/files/vm_standin.py, via tests/lib/standin.py).
Clients run in the "VM" namespace with their stock scripts (busybox udhcpc has none on
Debian: the stand-in's ``udhcpc_script``), inside ``unshare --uts`` so a client's hostname
hook can never rename the host, and with /etc/netns/<vm>/resolv.conf in place so their
resolv.conf writes land in the namespace's copy, never the host's.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from lib import plumbing
from lib.bindings import make_binding
from lib.dhcpwire import client_frame, read_reply
from lib.netlab import NetLab, link_exists, sh
from lib.processes import Processes, output_of
from lib.paths import STANDIN
from lib.responder import ResponderProcess, lease_state
from lib.standin import TapRelay, netns_entered, open_tap, udhcpc_script
from lib.waiting import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dhcp_client]

CLIENT_TIMEOUT = 40
# The DHCP extras every pod of these tests is plumbed with (vm_pod_bridge's options).
DHCP_EXTRAS = {"dns_servers": ["10.96.0.10"], "search_domains": ["default.svc.cluster.local", "svc.cluster.local"],
               "hostname": "vm1", "lease_time": 3600}

if os.geteuid() != 0:
    pytest.skip("needs root: network namespaces, taps, packet sockets", allow_module_level=True)
_missing = [tool for tool in ("ip", "busybox", "dhclient", "dhcpcd", "unshare") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"missing tools: {_missing}", allow_module_level=True)


# -- fixtures ---------------------------------------------------------------------------------
@contextmanager
def vm_resolv(vm: str):
    """/etc/netns/<vm>/resolv.conf: ``ip netns exec`` bind-mounts it over /etc/resolv.conf."""
    directory = Path("/etc/netns", vm)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "resolv.conf"
    path.write_text("")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        try:
            directory.rmdir()
        except OSError:
            pass


class Env:
    """One lab + run dir + responder; VMs added per test."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.run_dir = str(tmp_path / "run")
        os.makedirs(self.run_dir, mode=0o700)
        self.lab = NetLab()
        self.lab.start()
        self.responder = ResponderProcess(self.run_dir)
        self._stack: list = []
        self.procs = Processes()

    def start_responder(self) -> ResponderProcess:
        return self.responder.start()

    def plumb(self, pod, **options) -> dict:
        """The pod plumbed by the real plumbing; returns the module's result (``key``, ``lease_path``, ...)."""
        result = plumbing.plumb(pod.netns, make_binding(), self.run_dir, **dict(DHCP_EXTRAS, **options))
        assert result["vm_mac"] == pod.mac and result["ip"] == pod.ip and result["gateway"] == pod.gateway, result
        return result

    def pod_with_vm(self, calico: bool = False, vm_mac: str | None = None, **options):
        pod = self.lab.add_pod(calico=calico)
        declaration = self.plumb(pod, **options)
        vm = self.lab.add_namespace(f"vm{len(self.lab.pods)}")
        relay = TapRelay(pod.netns, vm, vm_mac or pod.mac, pod.mtu).start()
        self._stack.append(relay.stop)
        self._stack.append(lambda: forget_dhcpcd_lease(relay.vm_ifname))
        resolv_cm = vm_resolv(vm)
        resolv = resolv_cm.__enter__()
        self._stack.append(lambda: resolv_cm.__exit__(None, None, None))
        return pod, declaration, vm, relay, resolv

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return self.procs.popen(argv, **kwargs)

    def close(self) -> None:
        self.procs.stop_all()
        self.responder.stop()
        for undo in reversed(self._stack):
            undo()
        self.lab.close()


def forget_dhcpcd_lease(ifname: str) -> None:
    """dhcpcd keeps leases in /var/lib/dhcpcd/<ifname>*.lease and its hooks' state in
    /run/dhcpcd/hook-state/*/<ifname>.*: ours have unique names, drop them."""
    for path in [*Path("/var/lib/dhcpcd").glob(f"{ifname}*.lease*"),
                 *Path("/run/dhcpcd/hook-state").glob(f"*/{ifname}.*")]:
        path.unlink(missing_ok=True)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


# -- clients ----------------------------------------------------------------------------------
def in_vm(vm: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", vm, "unshare", "--uts", *argv]


def run_udhcpc(env: Env, vm: str, ifname: str, resolv: Path, once: bool = True, tries: int = 5,
               log: Path | None = None):
    argv = in_vm(vm, "busybox", "udhcpc", "-i", ifname, "-f", "-t", str(tries), "-T", "1", "-s", udhcpc_script(env.tmp))
    child_env = dict(os.environ, PODNET_RESOLV=str(resolv))
    if log:
        child_env["PODNET_UDHCPC_LOG"] = str(log)
    if once:
        return subprocess.run(argv + ["-q", "-n"], capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                              env=child_env, check=False)
    return env.popen(argv, env=child_env)


def start_dhclient(env: Env, vm: str, ifname: str, lease_file: Path | None = None) -> subprocess.Popen:
    lease_file = lease_file or env.tmp / f"dhclient-{ifname}.leases"
    lease_file.touch()
    return env.popen(in_vm(vm, "dhclient", "-4", "-d", "-v", "-lf", str(lease_file),
                           "-pf", str(env.tmp / f"dhclient-{ifname}.pid"), "-sf", "/sbin/dhclient-script", ifname))


def start_dhcpcd(env: Env, vm: str, ifname: str) -> subprocess.Popen:
    return env.popen(in_vm(vm, "dhcpcd", "-B", "-4", "--noipv4ll", "-t", "30", ifname))


def start_client(env: Env, client: str, vm: str, ifname: str, resolv: Path):
    if client == "udhcpc":
        return run_udhcpc(env, vm, ifname, resolv, once=False)
    if client == "dhclient":
        return start_dhclient(env, vm, ifname)
    return start_dhcpcd(env, vm, ifname)


# -- what the VM applied ------------------------------------------------------------------------
def vm_addresses(vm: str, ifname: str) -> list[tuple[str, int]]:
    out = json.loads(sh("ip", "-n", vm, "-j", "-4", "addr", "show", "dev", ifname).stdout or "[]")
    return [(a["local"], a["prefixlen"]) for e in out for a in e.get("addr_info", [])]


def vm_routes(vm: str) -> list[dict]:
    return json.loads(sh("ip", "-n", vm, "-j", "-4", "route", "show").stdout or "[]")


def wait_bound(vm: str, ifname: str, pod, proc=None, timeout: float = CLIENT_TIMEOUT) -> None:
    def bound():
        if proc is not None and proc.poll() is not None and proc.returncode != 0:
            raise AssertionError(f"client exited {proc.returncode}: {output_of(proc)}")
        return (pod.ip, pod.prefixlen) in vm_addresses(vm, ifname) and any(
            r.get("dst") == "default" for r in vm_routes(vm))
    wait_for(bound, timeout, what=f"{pod.ip}/{pod.prefixlen} and a default route in {vm}")


def assert_applied(lab: NetLab, vm: str, ifname: str, pod, resolv: Path, check_dns: bool = True) -> None:
    assert (pod.ip, pod.prefixlen) in vm_addresses(vm, ifname)
    defaults = [r for r in vm_routes(vm) if r.get("dst") == "default"]
    assert defaults and defaults[0].get("gateway") == pod.gateway, vm_routes(vm)
    mtu = json.loads(sh("ip", "-n", vm, "-j", "link", "show", "dev", ifname).stdout)[0]["mtu"]
    assert mtu == pod.mtu
    if check_dns:
        text = wait_for(lambda: resolv.read_text() if "10.96.0.10" in resolv.read_text() else None, 10,
                        what="resolv.conf written")
        assert "nameserver 10.96.0.10" in text
        assert "default.svc.cluster.local" in text
    ping = lab.run(vm, "ping", "-c", "1", "-W", "3", pod.gateway, check=False, timeout=15)
    assert ping.returncode == 0, ping.stdout + ping.stderr


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("client", ["udhcpc", "dhclient", "dhcpcd"])
def test_client_gets_the_pod_address(env, client):
    env.start_responder()
    pod, decl, vm, relay, resolv = env.pod_with_vm()
    env.responder.wait_serving(decl["key"])
    proc = start_client(env, client, vm, relay.vm_ifname, resolv)
    wait_bound(vm, relay.vm_ifname, pod, proc)
    assert_applied(env.lab, vm, relay.vm_ifname, pod, resolv)
    log = env.responder.log()
    assert f"pod={decl['key']} mac={pod.mac} ip={pod.ip} msg=DISCOVER reply=OFFER" in log
    assert "reply=ACK" in log
    state = wait_for(lambda: lease_state(env.run_dir, decl["key"]).get("state") == "bound"
                     and lease_state(env.run_dir, decl["key"]), 10, what="lease state bound")
    assert state["ip"] == pod.ip and state["vm_mac"] == pod.mac and state["expires_at"] > time.time()


@pytest.mark.parametrize("client", ["udhcpc", "dhclient", "dhcpcd"])
def test_calico_pod_routes_through_option_121(env, client):
    env.start_responder()
    pod, decl, vm, relay, resolv = env.pod_with_vm(calico=True)
    assert pod.prefixlen == 32 and pod.gateway == "169.254.1.1"
    env.responder.wait_serving(decl["key"])
    proc = start_client(env, client, vm, relay.vm_ifname, resolv)
    wait_bound(vm, relay.vm_ifname, pod, proc)
    routes = vm_routes(vm)
    assert any(r["dst"] == "169.254.1.1" and "gateway" not in r for r in routes), routes
    assert_applied(env.lab, vm, relay.vm_ifname, pod, resolv)


def test_renewal_at_t1_is_unicast_to_the_gateway_and_answered(env):
    env.start_responder()
    pod, decl, vm, relay, resolv = env.pod_with_vm(lease_time=8)  # T1 = 4 s
    env.responder.wait_serving(decl["key"])
    proc = start_dhclient(env, vm, relay.vm_ifname)
    wait_bound(vm, relay.vm_ifname, pod, proc)
    # The real client's renewal: unicast to the server identifier (the gateway), through the tap.
    env.responder.wait_log(f"msg=REQUEST(renewing to {pod.gateway}) reply=ACK", timeout=20)
    env.responder.wait_log(f"msg=REQUEST(renewing to {pod.gateway}) reply=ACK", timeout=20, count=2)
    assert "rebinding" not in env.responder.log()
    state = lease_state(env.run_dir, decl["key"])
    assert state["state"] == "bound" and state.get("last_renewal")
    assert (pod.ip, pod.prefixlen) in vm_addresses(vm, relay.vm_ifname)


def test_responder_restart_mid_lease_loses_nothing(env, tmp_path):
    env.start_responder()
    pod, decl, vm, relay, resolv = env.pod_with_vm(lease_time=8)
    env.responder.wait_serving(decl["key"])
    events = tmp_path / "udhcpc.events"
    proc = run_udhcpc(env, vm, relay.vm_ifname, resolv, once=False, log=events)
    wait_bound(vm, relay.vm_ifname, pod, proc)
    first_log = env.responder.log()
    env.responder.stop()
    restarted = ResponderProcess(env.run_dir, log_file=str(tmp_path / "second.log")).start()
    try:
        restarted.wait_serving(decl["key"])
        restarted.wait_log("reply=ACK", timeout=20)  # the client's renewal, answered by the new process
        assert "msg=REQUEST(renewing" in restarted.log()
        wait_for(lambda: "renew" in events.read_text(), 10, what="udhcpc renew event")
        assert (pod.ip, pod.prefixlen) in vm_addresses(vm, relay.vm_ifname)
        assert "reply=ACK" in first_log
        assert lease_state(env.run_dir, decl["key"])["bound_at"] < time.time()
    finally:
        restarted.stop()


def test_init_reboot_with_a_wrong_address_is_naked_then_leased(env, tmp_path):
    env.start_responder()
    pod, decl, vm, relay, resolv = env.pod_with_vm()
    env.responder.wait_serving(decl["key"])
    wrong = str(ipaddress.IPv4Address(pod.ip) + 50)
    lease_file = tmp_path / "stale.leases"
    lease_file.write_text(
        f'lease {{\n  interface "{relay.vm_ifname}";\n  fixed-address {wrong};\n'
        f'  option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier {pod.gateway};\n'
        f'  option dhcp-lease-time 86400;\n  renew 4 2099/01/01 00:00:00;\n  rebind 4 2099/01/01 00:00:00;\n'
        f'  expire 4 2099/01/01 00:00:00;\n}}\n')
    proc = start_dhclient(env, vm, relay.vm_ifname, lease_file=lease_file)
    wait_bound(vm, relay.vm_ifname, pod, proc)
    log = env.responder.log()
    nak = log.index(f"msg=REQUEST(init-reboot, asked for {wrong}) reply=NAK")
    assert log.index("msg=DISCOVER reply=OFFER", nak) > nak
    assert (wrong, 24) not in vm_addresses(vm, relay.vm_ifname)


def test_foreign_mac_gets_nothing(env):
    env.start_responder()
    foreign = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
    pod, decl, vm, relay, resolv = env.pod_with_vm(vm_mac=foreign)
    env.responder.wait_serving(decl["key"])
    result = run_udhcpc(env, vm, relay.vm_ifname, resolv, once=True, tries=3)
    assert result.returncode != 0, result.stdout
    assert vm_addresses(vm, relay.vm_ifname) == []
    log = env.responder.log()
    assert "msg=" not in log and foreign not in log
    assert lease_state(env.run_dir, decl["key"]) == {}


@contextmanager
def packet_capture(netns: str, ifname: str):
    """Count UDP 67/68 frames on ``ifname`` in ``netns`` (a packet socket opened there)."""
    with netns_entered(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sock.bind((ifname, 0x0003))
    sock.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                frame, addr = sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[2] == 4:  # PACKET_OUTGOING: what the test itself sends from this side
                continue
            if len(frame) >= 42 and frame[12:14] == b"\x08\x00" and frame[23] == 17:
                ihl = (frame[14] & 0x0F) * 4
                dport = struct.unpack("!H", frame[14 + ihl + 2:14 + ihl + 4])[0]
                if dport in (67, 68):
                    seen.append(frame)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_vm_dhcp_stays_inside_the_pod(env):
    env.start_responder()
    pod, decl, vm, relay, resolv = env.pod_with_vm(lease_time=8)
    env.responder.wait_serving(decl["key"])
    with packet_capture(env.lab.node, pod.host_veth) as node_side, \
            packet_capture(vm, relay.vm_ifname) as vm_side:
        proc = start_dhclient(env, vm, relay.vm_ifname)
        wait_bound(vm, relay.vm_ifname, pod, proc)
        env.responder.wait_log(f"msg=REQUEST(renewing to {pod.gateway}) reply=ACK", timeout=20)
        # A DHCP server reply arriving from the cluster network must not reach the VM.
        from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
        rogue = codec.build_frame("02:00:00:00:00:99", pod.mac, "10.244.250.250", "255.255.255.255",
                                  codec.encode_message({"xid": 0x5EED, "chaddr": pod.mac, "yiaddr": "10.244.250.99"},
                                                       [(53, codec.OFFER), (54, "10.244.250.250")]))
        with netns_entered(env.lab.node):
            tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            tx.bind((pod.host_veth, 0))
        marker = struct.pack("!I", 0x5EED)

        def rogue_seen():
            return [f for f in vm_side if marker in f[42:50]]

        with tx:
            for _copy in range(5):
                tx.send(rogue)
            # Our own replies are seen in the VM; wait for one more to be sure the capture runs.
            env.responder.wait_log(f"msg=REQUEST(renewing to {pod.gateway}) reply=ACK", timeout=20, count=2)
            assert vm_side, "the VM-side capture saw nothing at all"
            assert not rogue_seen(), "a cluster-side DHCP reply reached the VM"
            assert node_side == [], f"{len(node_side)} DHCP frames left the pod towards the node"
            # Control: without the filters the same frame does reach the VM (the test can fail).
            assert plumbing.set_dhcp_filters(pod.netns, False)["changed"]
            tx.send(rogue)
            wait_for(rogue_seen, 10, what="the rogue reply to reach the VM without filters")


def test_inform_release_decline_and_other_server(env):
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
    env.start_responder()
    pod, decl, vm, relay, resolv = env.pod_with_vm()
    env.responder.wait_serving(decl["key"])
    client = ScriptedClient(vm, relay.vm_ifname, pod.mac)
    try:
        reply = client.exchange(codec.INFORM, ciaddr=pod.ip)
        assert reply["message_type"] == codec.ACK and reply["ciaddr"] == pod.ip and reply["yiaddr"] == "0.0.0.0"
        assert "lease_time" not in reply["options"] and reply["options"]["subnet_mask"] == "255.255.255.0"
        client.send(codec.REQUEST, options=[(50, pod.ip), (54, "10.9.9.9")])  # chose another server
        client.send(codec.RELEASE, ciaddr=pod.ip, options=[(54, pod.gateway)])
        client.send(codec.DECLINE, options=[(50, pod.ip), (54, pod.gateway)])
        env.responder.wait_log("msg=DECLINE reply=-")
        assert client.receive(0.5) is None  # none of the three gets an answer
        log = env.responder.log()
        assert "msg=INFORM reply=ACK(inform)" in log
        assert "msg=RELEASE reply=-" in log and "msg=REQUEST(selecting) reply=-" not in log
        assert "msg=REQUEST(selecting another server) reply=-" in log
        # The lease stays offered: a DISCOVER still gets the pod's address.
        offer = client.exchange(codec.DISCOVER)
        assert offer["message_type"] == codec.OFFER and offer["yiaddr"] == pod.ip
        assert lease_state(env.run_dir, decl["key"]).get("last_message") in ("DISCOVER", "DECLINE")
    finally:
        client.close()


def test_pods_learned_and_forgotten_without_restart(env):
    pod = env.lab.add_pod()
    # Plumbed for real, but its lease declaration taken back before the responder starts:
    # the test hands it over to a running responder itself.
    decl = plumbing.take_declaration(env.run_dir, env.plumb(pod)["key"])
    env.start_responder()
    assert f"pod={decl['key']}" not in env.responder.log()
    plumbing.write_declaration(env.run_dir, decl)
    env.responder.wait_serving(decl["key"], timeout=5)
    fd = open_tap(pod.netns)  # the VM side: one DISCOVER, so there is lease state
    try:
        # Retransmitted once, as a client does: one CI run under load 8 (2 cores) saw no OFFER for
        # the first frame written right after the tap was attached, never reproduced since.
        for attempt in (1, 2):
            os.write(fd, client_frame(pod.mac, 1, 0xABCDEF))
            if read_reply(fd, 0xABCDEF, timeout=5) is not None:
                break
            print(f"no OFFER to DISCOVER {attempt}:\n{env.responder.log()[-2000:]}")
        else:
            pytest.fail("no OFFER to two DISCOVERs")
    finally:
        os.close(fd)
    wait_for(lambda: lease_state(env.run_dir, decl["key"]).get("state") == "offered", 10, what="state offered")
    os.unlink(os.path.join(env.run_dir, "leases", f"{decl['key']}.json"))
    env.responder.wait_log(f"pod={decl['key']} mac={pod.mac} ip={pod.ip} forgotten: declaration withdrawn", 10)
    assert lease_state(env.run_dir, decl["key"]) == {}
    # An invalid declaration is reported, not served, and does not stop the service.
    bad = dict(decl, search_domains=["ok.example", "-bad-.example"], key="broken__eth0")
    Path(env.run_dir, "leases", "broken__eth0.json").write_text(json.dumps(bad))
    env.responder.wait_log("pod=broken__eth0 ignoring lease declaration: invalid", 10)
    assert env.responder.proc.poll() is None


def test_deleted_namespace_is_released_not_held(env):
    env.start_responder()
    pod = env.lab.add_pod()
    decl = env.plumb(pod)
    env.responder.wait_serving(decl["key"])
    assert link_exists(env.lab.node, pod.host_veth)
    sh("ip", "netns", "del", pod.netns)
    env.lab.namespaces.remove(pod.netns)
    env.responder.wait_log(f"pod={decl['key']} mac={pod.mac} ip={pod.ip} socket closed: namespace gone", 10)
    # If any socket still pinned the namespace, its veth would live on in the node namespace.
    wait_for(lambda: not link_exists(env.lab.node, pod.host_veth), 10, what="pod namespace destroyed")


def test_deleted_tap_closes_the_socket(env):
    env.start_responder()
    pod = env.lab.add_pod()
    decl = env.plumb(pod)
    env.responder.wait_serving(decl["key"])
    sh("ip", "-n", pod.netns, "link", "del", "tap0")
    env.responder.wait_log(f"pod={decl['key']} mac={pod.mac} ip={pod.ip} socket closed: socket error", 10)
    sh("ip", "-n", pod.netns, "tuntap", "add", "tap0", "mode", "tap")
    sh("ip", "-n", pod.netns, "link", "set", "tap0", "master", "k6t-eth0", "up")
    env.responder.wait_log(f"pod={decl['key']} mac={pod.mac} ip={pod.ip} serving on tap0", 10, count=2)


class ScriptedClient:
    """A DHCP client in a few lines: a packet socket on the VM's interface."""

    def __init__(self, vm: str, ifname: str, mac: str) -> None:
        with netns_entered(vm):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
            self.sock.bind((ifname, 0x0800))
        self.mac = mac
        self.xid = secrets.randbits(32)

    def send(self, mtype: int, ciaddr: str = "0.0.0.0", options=()) -> None:
        from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
        self.xid = (self.xid + 1) & 0xFFFFFFFF
        payload = codec.encode_message({"op": 1, "xid": self.xid, "chaddr": self.mac, "ciaddr": ciaddr},
                                       [(53, mtype), *options])
        src = ciaddr if ciaddr != "0.0.0.0" else "0.0.0.0"
        frame = codec.build_frame(self.mac, "ff:ff:ff:ff:ff:ff", src, "255.255.255.255", payload,
                                  sport=68, dport=67)
        self.sock.send(frame)

    def receive(self, timeout: float):
        from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                frame = self.sock.recv(4096)
            except socket.timeout:
                return None
            parsed = codec.parse_frame(frame, dport=68)
            if parsed is None:
                continue
            message = codec.decode_message(parsed[3])
            if message["xid"] == self.xid:
                return message

    def exchange(self, mtype: int, timeout: float = 5.0, **kwargs):
        self.send(mtype, **kwargs)
        reply = self.receive(timeout)
        assert reply is not None, "no reply"
        return reply

    def close(self) -> None:
        self.sock.close()


def test_calico_renewal_reaches_the_responder(env):
    # Server identifier 169.254.1.1: the renewal is ARPed for (the node answers by proxy ARP)
    # and sent towards the node through the tap, where the responder sees and answers it.
    env.start_responder()
    pod, decl, vm, relay, resolv = env.pod_with_vm(calico=True, lease_time=8)
    env.responder.wait_serving(decl["key"])
    proc = start_dhclient(env, vm, relay.vm_ifname)
    wait_bound(vm, relay.vm_ifname, pod, proc)
    env.responder.wait_log("msg=REQUEST(renewing to 169.254.1.1) reply=ACK", timeout=20)
    assert "rebinding" not in env.responder.log()


def test_untrusted_declaration_is_ignored(env):
    env.start_responder()
    pod = env.lab.add_pod()
    decl = env.plumb(pod)
    path = decl["lease_path"]
    assert os.stat(path).st_mode & 0o777 == 0o600  # as the module wrote it: trusted
    env.responder.wait_serving(decl["key"], timeout=5)
    os.chmod(path, 0o666)  # anyone could now hand out addresses: no longer trusted
    env.responder.hup()
    env.responder.wait_log(f"pod={decl['key']} ignoring lease declaration", 10)
    env.responder.wait_log(f"pod={decl['key']} mac={pod.mac} ip={pod.ip} forgotten: declaration not trusted", 10)


def test_second_responder_on_the_same_pidfile_refuses(env):
    env.start_responder()
    second = ResponderProcess(env.run_dir, log_file=str(env.tmp / "second.log"))
    with pytest.raises(RuntimeError, match="responder exited"):
        second.start()
    assert "another podnet-dhcpd holds" in second.log()
    assert env.responder.proc.poll() is None
    pid = int(Path(env.responder.pidfile).read_text())
    assert pid == env.responder.proc.pid
    env.responder.stop()
    assert not Path(env.responder.pidfile).exists()


def test_spawn_daemon_detached_and_idempotent(env):
    from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_control as responder
    pidfile = str(env.tmp / "daemon.pid")
    log_file = str(env.tmp / "daemon.log")
    assert responder.running_pid(pidfile) is None
    pid = responder.spawn_daemon(env.run_dir, pidfile, log_file, pythonpath=os.pathsep.join(p for p in sys.path if p))
    try:
        assert pid > 0 and responder.running_pid(pidfile) == pid
        assert os.getsid(pid) == pid  # its own session: survives the caller
        assert responder.spawn_daemon(env.run_dir, pidfile, log_file) == pid  # already running: no second one
        pod = env.lab.add_pod()
        decl = env.plumb(pod)
        wait_for(lambda: f"pod={decl['key']} mac={pod.mac} ip={pod.ip} serving on tap0" in Path(log_file).read_text(),
                 10, what="daemon serving the pod")
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: responder.running_pid(pidfile) is None, 10, what="daemon stopped")
    assert "stopped" in Path(log_file).read_text()


def test_filters_idempotent_removable_and_tolerant(env):
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_filters as filters
    from ansible_collections.virtnet.podnet.plugins.module_utils._netns import entered
    from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
    pod = env.lab.add_pod()
    env.plumb(pod)
    # The module installed the filters; this test installs and removes them itself, so they go first.
    assert plumbing.set_dhcp_filters(pod.netns, False) == {"changed": True, "tap": "removed", "pod_interface": "removed"}
    with pytest.raises(PodnetError, match="from inside the pod's namespace"):
        filters.install_dhcp_filters(object(), "tap0", "eth0")  # never the node's own links
    with entered(pod.netns) as (ipr, _path, _inode):
        added = {"changed": True, "tap": "added", "pod_interface": "added"}
        present = {"changed": False, "tap": "present", "pod_interface": "present"}
        assert filters.install_dhcp_filters(ipr, "tap0", "eth0-nic") == added
        assert filters.install_dhcp_filters(ipr, "tap0", "eth0-nic") == present
        assert filters.dhcp_filters_present(ipr, "tap0", "eth0-nic") == {"tap": True, "pod_interface": True}
        shown = sh("tc", "-n", pod.netns, "filter", "show", "dev", "tap0", "ingress").stdout
        assert "bpf" in shown and "direct-action" in shown
        # Someone else's filter on the pod interface's ingress survives our removal, qdisc included.
        sh("tc", "-n", pod.netns, "filter", "add", "dev", "eth0-nic", "ingress", "prio", "7", "protocol", "ip",
           "u32", "match", "u32", "0", "0", "classid", "1:1")
        removed = {"changed": True, "tap": "removed", "pod_interface": "removed"}
        absent = {"changed": False, "tap": "absent", "pod_interface": "absent"}
        assert filters.remove_dhcp_filters(ipr, "tap0", "eth0-nic") == removed
        assert filters.remove_dhcp_filters(ipr, "tap0", "eth0-nic") == absent
        assert "ingress" not in sh("tc", "-n", pod.netns, "qdisc", "show", "dev", "tap0").stdout
        assert "ingress" in sh("tc", "-n", pod.netns, "qdisc", "show", "dev", "eth0-nic").stdout
        assert "pref 7 u32" in sh("tc", "-n", pod.netns, "filter", "show", "dev", "eth0-nic", "ingress").stdout
        # Missing links: reported, never an error.
        assert filters.install_dhcp_filters(ipr, "nosuchtap", "nosuchif") == {
            "changed": False, "tap": "missing", "pod_interface": "missing"}
        assert filters.remove_dhcp_filters(ipr, "nosuchtap", "nosuchif")["changed"] is False


@pytest.mark.parametrize("calico", [False, True], ids=["flannel", "calico"])
def test_end_to_end_with_vm_pod_bridge(env, calico):
    """The contract between the two halves: vm_pod_bridge's declaration, served to a real client."""
    env.start_responder()
    pod = env.lab.add_pod(calico=calico)
    result = plumbing.plumb(pod.netns, make_binding(), env.run_dir, dns_servers=["10.96.0.10"],
                            search_domains=["default.svc.cluster.local"], hostname="vm1", lease_time=3600)
    # The module installed the DHCP filters itself; nothing is added behind its back.
    assert plumbing.dhcp_filters_present(pod.netns) == {"tap": True, "pod_interface": True}
    env.responder.wait_serving(result["key"])
    vm = env.lab.add_namespace("vm")
    relay = TapRelay(pod.netns, vm, pod.mac, pod.mtu).start()
    try:
        with vm_resolv(vm) as resolv:
            proc = run_udhcpc(env, vm, relay.vm_ifname, resolv, once=False)
            wait_bound(vm, relay.vm_ifname, pod, proc)
            assert_applied(env.lab, vm, relay.vm_ifname, pod, resolv)
            proc.terminate()
            proc.wait(10)
    finally:
        relay.stop()
    plumbing.unplumb(pod.netns, make_binding(), env.run_dir)
    env.responder.wait_log(f"pod={result['key']} mac={pod.mac} ip={pod.ip} forgotten: declaration withdrawn", 10)


def run_standin(pod, vm_netns: str, timeout: float = 20.0) -> tuple[int, dict]:
    """playbooks/files/vm_standin.py as the demo and molecule run it: a script, its JSON line, its exit status."""
    proc = subprocess.run([sys.executable, str(STANDIN), "--pod-netns", pod.netns, "--vm-netns", vm_netns,
                           "--mac", pod.mac, "--mtu", str(pod.mtu), "--name", "vm-test", "--timeout", str(timeout)],
                          capture_output=True, text=True, timeout=timeout * 3 + 30, check=False)
    lines = proc.stdout.strip().splitlines()
    assert lines, proc.stderr
    return proc.returncode, json.loads(lines[-1])


@pytest.mark.parametrize("calico", [False, True], ids=["flannel", "calico"])
def test_standin_reports_what_the_lease_and_the_wire_said(env, calico):
    pod = env.lab.add_pod(calico=calico)
    result = env.plumb(pod)
    env.start_responder()
    env.responder.wait_serving(result["key"])
    vm_netns = f"{env.lab.prefix}-standin-{env.lab.tag}"
    env.lab.namespaces.append(vm_netns)  # the stand-in deletes it; the lab too if it could not
    code, seen = run_standin(pod, vm_netns)
    assert code == 0, seen
    assert seen["leased_ip"] == pod.ip and seen["prefixlen"] == pod.prefixlen, seen
    assert seen["gateway"] == pod.gateway and seen["gateway_reachable"] is True, seen
    # Not echoes of --mac: the kernel's MAC of the VM's NIC, and the chaddr of the ACK the relay carried.
    assert seen["mac"] == pod.mac and seen["served_mac"] == pod.mac, seen
    assert seen["frames_to_vm"] > 0 and seen["frames_from_vm"] > 0, seen
    assert lease_state(env.run_dir, result["key"]).get("state") == "bound"
    assert not os.path.exists(f"/run/netns/{vm_netns}")


def test_standin_without_router_reports_no_gateway(env):
    """A lease with neither option 3 nor 121: the stand-in must say "no gateway", never guess one."""
    pod = env.lab.add_pod()
    key = env.plumb(pod)["key"]
    # Plumbed for real; then its declaration loses the gateway and the routes, the one thing this test needs.
    decl = plumbing.take_declaration(env.run_dir, key)
    plumbing.write_declaration(env.run_dir, dict(decl, gateway=None, routes=[]))
    env.start_responder()
    env.responder.wait_serving(key)
    vm_netns = f"{env.lab.prefix}-standin-{env.lab.tag}"
    env.lab.namespaces.append(vm_netns)
    code, seen = run_standin(pod, vm_netns, timeout=10)
    assert seen["leased_ip"] == pod.ip and seen["served_mac"] == pod.mac, seen
    assert seen["gateway"] is None and seen["gateway_reachable"] is False, seen
    assert code == 1


def served_pod_and_holding_standin(env, hold, hold_timeout):
    """A plumbed pod its responder serves, and the argv of a stand-in that holds its lease in ``hold``."""
    pod = env.lab.add_pod()
    key = env.plumb(pod)["key"]
    env.start_responder()
    env.responder.wait_serving(key)
    vm_netns = f"{env.lab.prefix}-standin-{env.lab.tag}"
    env.lab.namespaces.append(vm_netns)  # the stand-in deletes it; the lab too if it could not
    argv = [sys.executable, str(STANDIN), "--pod-netns", pod.netns, "--vm-netns", vm_netns, "--mac", pod.mac,
            "--mtu", str(pod.mtu), "--timeout", "15", "--hold-dir", str(hold), "--hold-timeout", str(hold_timeout)]
    return pod, key, argv


def test_standin_holds_its_lease_and_renews_with_a_restarted_responder(env, tmp_path):
    """--hold-dir, as the fleet scenario uses it around `systemctl kill`: lease, hold until told,
    then renew (udhcpc's T1 REQUEST, unicast to the server) - answered by a new responder."""
    hold = tmp_path / "hold"
    hold.mkdir()
    pod, key, argv = served_pod_and_holding_standin(env, hold, hold_timeout=60)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    restarted = None
    try:
        wait_for(lambda: (hold / "lease.json").exists() or proc.poll() is not None, 30, what="the stand-in's lease")
        assert proc.poll() is None, proc.communicate()
        assert json.loads((hold / "lease.json").read_text())["ip"] == pod.ip
        env.responder.stop()
        restarted = ResponderProcess(env.run_dir, log_file=str(tmp_path / "second.log")).start()
        restarted.wait_serving(key)
        with open(hold / "renew", "w", encoding="utf-8") as trigger:  # the FIFO: opens once the stand-in reads it
            trigger.write("renew\n")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if restarted is not None:
            restarted.stop()
    assert proc.returncode == 0, out + err
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["renewed"] and seen["renewed"].startswith(f"renew ip={pod.ip} "), seen
    assert seen["leased_ip"] == pod.ip and seen["gateway_reachable"] is True, seen
    assert f"mac={pod.mac} ip={pod.ip} msg=REQUEST(renewing to {pod.gateway}) reply=ACK" in restarted.log()


def test_standin_hold_without_a_trigger_ends_unrenewed(env, tmp_path):
    """Nobody writes to DIR/renew: the hold is bounded, the result says "not renewed"."""
    pod, _key, argv = served_pod_and_holding_standin(env, tmp_path, hold_timeout=1)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, check=False)
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["leased_ip"] == pod.ip and seen["renewed"] is None, seen
    assert seen["gateway_reachable"] is True, seen
