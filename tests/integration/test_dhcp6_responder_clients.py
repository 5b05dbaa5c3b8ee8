"""podnet-dhcpd's DHCPv6 and Router Advertisements against real clients in real namespaces (issue 12).

Each test builds its own lab (NetLab: unique namespace names, deleted in ``finally``), its own run
dir and responder process, a pod plumbed by the real plumbing, and the VM stand-in's tap relay.
Until the plumbing writes the ``ipv6`` block itself, each test takes the module's declaration
back and writes it again with the block added (tests/lib/plumbing.py). The lab's node bridge
cni0 gets a fixed MAC and fd00:58:<n>::1/64; the pod's IPv6 gateway is cni0's link-local and MAC,
as a real node's. DAD is off in the node and VM namespaces so nothing waits on tentative addresses.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import shutil
import socket
import struct
import threading
import time
from contextlib import contextmanager

import pytest

from lib import plumbing
from lib.bindings import make_binding
from lib.netlab import NetLab, ip_json, sh
from lib.processes import Processes, output_of
from lib.responder import ResponderProcess, lease_state
from lib.standin import TapRelay, netns_entered
from lib.waiting import wait_for

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as c6

pytestmark = [pytest.mark.root, pytest.mark.dhcp_client]

if os.geteuid() != 0:
    pytest.skip("needs root: network namespaces, taps, packet sockets", allow_module_level=True)
_missing = [tool for tool in ("ip", "dhclient", "dhcpcd", "unshare", "mount", "ping") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"missing tools: {_missing}", allow_module_level=True)

CLIENT_TIMEOUT = 40


class Env6:
    """A lab whose node bridge serves IPv6, a run dir, a responder; one pod with its VM."""

    def __init__(self, tmp_path) -> None:
        self.tmp = tmp_path
        self.run_dir = str(tmp_path / "run")
        os.makedirs(self.run_dir, mode=0o700)
        self.lab = NetLab(prefix="pn6")
        self.responder = ResponderProcess(self.run_dir)
        self.procs = Processes()
        self.relay = None
        self.lab.start()
        node = self.lab.node
        for scope in ("all", "default"):
            self.lab.run(node, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
        # A fixed MAC: a bridge's own would follow its ports, and its link-local with it.
        self.gateway_mac = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
        sh("ip", "-n", node, "link", "set", "cni0", "address", self.gateway_mac)
        self.gateway_ll = c6.link_local_from_mac(self.gateway_mac)
        self.prefix = f"fd00:58:{self.lab.subnet_index:x}::"
        self.gateway6 = self.prefix + "1"
        sh("ip", "-n", node, "addr", "add", f"{self.gateway6}/64", "dev", "cni0", "nodad")
        # Its EUI-64 link-local, set now rather than waited for (the kernel makes it only with a port up).
        sh("ip", "-n", node, "addr", "replace", f"{self.gateway_ll}/64", "dev", "cni0", "nodad")

    def pod(self, ipv6_only: bool = False, prefixlen: int = 64, address_suffix: str = "7", vm_mac=None, **ipv6):
        """A plumbed pod whose declaration carries the ipv6 block; its VM namespace and tap relay."""
        pod = self.lab.add_pod()
        result = plumbing.plumb(pod.netns, make_binding(), self.run_dir, lease_time=3600,
                                search_domains=["svc.cluster.local"])
        decl = plumbing.take_declaration(self.run_dir, result["key"])
        block = {"address": self.prefix + address_suffix, "prefixlen": prefixlen, "gateway": self.gateway_ll,
                 "gateway_mac": self.gateway_mac, "dns_servers": ["fd00:96::a"]}
        block.update(ipv6)
        decl["ipv6"] = block
        if ipv6_only:
            decl.update(ip=None, prefixlen=None, gateway=None, routes=[], dns_servers=[])
        plumbing.write_declaration(self.run_dir, decl)
        vm = self.lab.add_namespace(f"vm{len(self.lab.pods)}")
        for scope in ("all", "default"):
            self.lab.run(vm, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
        self.relay = TapRelay(pod.netns, vm, vm_mac or pod.mac, pod.mtu).start()
        return pod, decl, vm, self.relay

    def popen(self, argv):
        return self.procs.popen(argv)

    def close(self) -> None:
        self.procs.stop_all()
        self.responder.stop()
        if self.relay is not None:
            self.relay.stop()
        self.lab.close()


@pytest.fixture
def env(tmp_path):
    e = Env6(tmp_path)
    try:
        yield e
    finally:
        e.close()


def start_dhclient6(env: Env6, vm: str, ifname: str):
    script = env.tmp / "apply6.sh"
    script.write_text('#!/bin/sh\ncase "$reason" in BOUND6|RENEW6|REBIND6|REBOOT6)\n'
                      '  ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface";;\nesac\nexit 0\n')
    script.chmod(0o755)
    lease_file = env.tmp / "dhclient6.leases"
    lease_file.touch()
    # The default route comes from our RA through the VM's kernel (accept_ra, as on a stock VM).
    return env.popen(["ip", "netns", "exec", vm, "unshare", "--uts", "dhclient", "-6", "-d", "-v", "-lf",
                      str(lease_file), "-pf", str(env.tmp / "dhclient6.pid"), "-sf", str(script), ifname])


def start_dhcpcd6(env: Env6, vm: str, ifname: str):
    conf = env.tmp / "dhcpcd.conf"
    conf.write_text("ipv6only\nnoipv4ll\nipv6rs\nnohook resolv.conf\nnohook hostname\n")
    # Own mount namespace: tmpfs over dhcpcd's state (no host DUID, no leftover lease) and over /run,
    # where dhcpcd makes its own /run/dhcpcd (absent on a machine that never ran it); gone on exit.
    inner = ("mount -t tmpfs podnet6 /var/lib/dhcpcd && mount -t tmpfs podnet6 /run && "
             f"exec dhcpcd -f {conf} -c /bin/true -6 -B -d -t {CLIENT_TIMEOUT} {ifname}")
    return env.popen(["ip", "netns", "exec", vm, "unshare", "--uts", "--mount", "sh", "-c", inner])


START = {"dhclient": start_dhclient6, "dhcpcd": start_dhcpcd6}


def vm_addresses6(vm: str, ifname: str) -> list[str]:
    return [a["local"] for e in ip_json(vm, "-6", "addr", "show", "dev", ifname)
            for a in e.get("addr_info", []) if a.get("scope") == "global"]


def vm_default6(vm: str) -> list[dict]:
    return [r for r in ip_json(vm, "-6", "route", "show") if r.get("dst") == "default"]


def wait_configured(env: Env6, vm: str, ifname: str, address: str, proc) -> list[dict]:
    def configured():
        if proc.poll() is not None and proc.returncode != 0:
            raise AssertionError(f"client exited {proc.returncode}: {output_of(proc)}")
        routes = vm_default6(vm)
        return address in vm_addresses6(vm, ifname) and routes and routes[0].get("gateway") == env.gateway_ll \
            and routes
    return wait_for(configured, CLIENT_TIMEOUT, what=f"{address} and a default route via {env.gateway_ll} in {vm}")


def ping6(env: Env6, vm: str) -> str:
    def answered():
        proc = env.lab.run(vm, "ping", "-6", "-c", "1", "-W", "2", env.gateway6, check=False, timeout=10)
        return proc.returncode == 0 and proc.stdout
    return wait_for(answered, 20, what=f"ping {env.gateway6} from {vm}", interval=0.5)


# -- real clients -----------------------------------------------------------------------------------
@pytest.mark.parametrize("client", ["dhclient", "dhcpcd"])
def test_client_gets_the_ipv6_address_default_route_and_reaches_the_gateway(env, client):
    pod, decl, vm, relay = env.pod()
    env.responder.start()
    env.responder.wait_serving(decl["key"])
    address = decl["ipv6"]["address"]
    proc = START[client](env, vm, relay.vm_ifname)
    routes = wait_configured(env, vm, relay.vm_ifname, address, proc)
    out = ping6(env, vm)
    log = env.responder.log()
    assert f"pod={decl['key']} mac={pod.mac} ip6={address} msg=SOLICIT reply=ADVERTISE xid=0x" in log
    assert f"pod={decl['key']} mac={pod.mac} ip6={address} msg=REQUEST reply=REPLY xid=0x" in log
    state = wait_for(lambda: lease_state(env.run_dir, decl["key"]).get("ipv6", {}).get("state") == "bound"
                     and lease_state(env.run_dir, decl["key"]), 10, what="IPv6 lease state bound")
    assert state["ipv6"]["address"] == address and state["ip"] == pod.ip and state["vm_mac"] == pod.mac
    print(f"{client}: addresses={vm_addresses6(vm, relay.vm_ifname)} default={json.dumps(routes)}\n{out}")


@pytest.mark.parametrize("client", ["dhclient", "dhcpcd"])
def test_ipv6_only_pod_with_a_128(env, client):
    pod, decl, vm, relay = env.pod(ipv6_only=True, prefixlen=128, address_suffix="8")
    assert decl["ip"] is None
    env.responder.start()
    env.responder.wait_serving(decl["key"])
    address = decl["ipv6"]["address"]
    proc = START[client](env, vm, relay.vm_ifname)
    routes = wait_configured(env, vm, relay.vm_ifname, address, proc)
    # No prefix option in the RA: no on-link route for the pod's /64 (the kernel's or dhcpcd's).
    onlink = [r for r in ip_json(vm, "-6", "route", "show") if r.get("dst", "").startswith(env.prefix)
              and "/128" not in r.get("dst", "") and r.get("dst") != address]
    assert onlink == [], onlink
    out = ping6(env, vm)
    log = env.responder.log()
    assert "msg=DISCOVER" not in log and "(IPv6 only)" in log
    print(f"{client} /128 v6-only: addresses={vm_addresses6(vm, relay.vm_ifname)} default={json.dumps(routes)}\n{out}")


# -- scripted VM: foreign MACs, RS, and what leaves the pod --------------------------------------------
class ScriptedVm6:
    """A packet socket on the VM's interface: sends a SOLICIT or an RS from any MAC, reads what comes back."""

    def __init__(self, vm: str, ifname: str) -> None:
        with netns_entered(vm):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(c6.ETH_P_IPV6))
            self.sock.bind((ifname, c6.ETH_P_IPV6))

    def solicit(self, mac: str, xid: int) -> None:
        duid = bytes.fromhex("00030001") + c6.mac_bytes(mac)
        payload = c6.encode_message(c6.SOLICIT, xid, [c6.option(c6.OPT_CLIENTID, duid), c6.ia_na_option(1, 0, 0)])
        self.sock.send(c6.build_udp6_frame(mac, None, c6.link_local_from_mac(mac), c6.ALL_DHCP_AGENTS, payload,
                                           sport=546, dport=547, hop_limit=1))

    def rs(self, mac: str) -> None:
        src = ipaddress.IPv6Address(c6.link_local_from_mac(mac)).packed
        dst = ipaddress.IPv6Address("ff02::2").packed
        body = bytearray(struct.pack("!BBHI", 133, 0, 0, 0) + b"\x01\x01" + c6.mac_bytes(mac))
        struct.pack_into("!H", body, 2, c6.checksum(src + dst + struct.pack("!I3xB", len(body), 58) + bytes(body)))
        header = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + src + dst
        self.sock.send(bytes.fromhex("333300000002") + c6.mac_bytes(mac) + b"\x86\xdd" + header + bytes(body))

    def receive(self, want, timeout: float):
        """The first frame ``want(frame)`` accepts within ``timeout`` seconds, else None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                frame, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                return None
            if addr[2] != 4 and want(frame):
                return frame

    def close(self) -> None:
        self.sock.close()


def is_ra(frame) -> bool:
    return len(frame) > 54 and frame[20] == 58 and frame[54] == 134


def is_dhcp6_reply(xid):
    def want(frame):
        parsed = c6.parse_udp6_frame(frame, dport=546)
        return parsed is not None and int.from_bytes(parsed[3][1:4], "big") == xid
    return want


def test_foreign_mac_gets_nothing_rs_is_answered(env):
    pod, decl, vm, relay = env.pod()
    env.responder.start()
    env.responder.wait_serving(decl["key"])
    vm_sock = ScriptedVm6(vm, relay.vm_ifname)
    foreign = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
    try:
        # The initial RAs (3, 4 s apart) first, so an RA seen below answers the RS.
        env.responder.wait_log("serving on", 10)
        wait_for(lambda: vm_sock.receive(is_ra, 0.5), 15, what="an unsolicited RA")
        vm_sock.solicit(foreign, 0x0F0F0F)
        vm_sock.rs(foreign)
        assert vm_sock.receive(is_dhcp6_reply(0x0F0F0F), 2.0) is None
        vm_sock.solicit(pod.mac, 0x0A0A0A)
        reply = vm_sock.receive(is_dhcp6_reply(0x0A0A0A), 5.0)
        assert reply is not None and reply[0:6] == c6.mac_bytes(pod.mac)
        vm_sock.rs(pod.mac)
        ra = vm_sock.receive(is_ra, 5.0)
        assert ra is not None and ra[6:12] == c6.mac_bytes(env.gateway_mac)
        assert str(ipaddress.IPv6Address(ra[22:38])) == env.gateway_ll
        env.responder.wait_log("msg=RS reply=RA", 10)
    finally:
        vm_sock.close()
    log = env.responder.log()
    assert foreign not in log and "0x0f0f0f" not in log
    assert "msg=SOLICIT reply=ADVERTISE xid=0x0a0a0a" in log


@contextmanager
def capture6(netns: str, ifname: str):
    """IPv6 frames on ``ifname`` in ``netns`` that are DHCPv6 (546/547) or RS/RA, as (kind, frame)."""
    with netns_entered(netns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sock.bind((ifname, 0x0003))
    sock.settimeout(0.2)
    seen: list = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                frame, addr = sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[2] == 4 or len(frame) < 58 or frame[12:14] != b"\x86\xdd":
                continue
            if frame[20] == 17 and struct.unpack("!H", frame[56:58])[0] in (546, 547):
                seen.append(("dhcp6", frame))
            elif frame[20] == 58 and frame[54] in (133, 134):
                seen.append((frame[54], frame))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def test_vm_dhcp6_and_rs_stay_inside_the_pod_and_cluster_ras_stay_out(env):
    pod, decl, vm, relay = env.pod()
    assert plumbing.dhcp_filters_present(pod.netns) == {"tap": True, "pod_interface": True}
    env.responder.start()
    env.responder.wait_serving(decl["key"])
    vm_sock = ScriptedVm6(vm, relay.vm_ifname)
    rogue = c6.build_router_advertisement("02:00:00:00:00:99", "fe80::99", prefix="fd99::/64", mtu=1400)
    try:
        with capture6(env.lab.node, pod.host_veth) as node_side, capture6(vm, relay.vm_ifname) as vm_side:
            vm_sock.solicit(pod.mac, 0x0B0B0B)
            assert vm_sock.receive(is_dhcp6_reply(0x0B0B0B), 5.0) is not None
            vm_sock.rs(pod.mac)
            env.responder.wait_log("msg=RS reply=RA", 10)
            with netns_entered(env.lab.node):
                tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
                tx.bind((pod.host_veth, 0))

            def rogue_seen():
                return [f for kind, f in vm_side if kind == 134 and f[6:12] == bytes.fromhex("020000000099")]

            with tx:
                for _copy in range(3):
                    tx.send(rogue)
                # Our own RA after the rogue ones proves the VM-side capture was running meanwhile.
                vm_sock.rs(pod.mac)
                wait_for(lambda: len([k for k, f in vm_side if k == 134 and f[6:12] == c6.mac_bytes(env.gateway_mac)])
                         >= 2, 10, what="our RAs seen in the VM")
                assert not rogue_seen(), "a cluster-side RA reached the VM"
                leaked = [k for k, f in node_side if f[6:12] == c6.mac_bytes(pod.mac)]
                assert leaked == [], f"{leaked} left the pod towards the node"
                # Control: without the filters the same RA does reach the VM (the test can fail).
                assert plumbing.set_dhcp_filters(pod.netns, False)["changed"]
                tx.send(rogue)
                wait_for(rogue_seen, 10, what="the rogue RA to reach the VM without filters")
    finally:
        vm_sock.close()


def test_filters_of_01_are_outdated_and_replaced(env):
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_filters as filters
    from ansible_collections.virtnet.podnet.plugins.module_utils._netns import entered
    pod = env.lab.add_pod()
    plumbing.plumb(pod.netns, make_binding(), env.run_dir)
    assert plumbing.set_dhcp_filters(pod.netns, False)["changed"]
    # The 0.1 install: protocol ip, the IPv4-only program, at our priority.
    for dev, port in (("tap0", 67), ("eth0-nic", 68)):
        ops = ",".join(" ".join(str(v) for v in insn) for insn in filters.udp_dport_drop_program(port))
        sh("tc", "-n", pod.netns, "qdisc", "add", "dev", dev, "ingress")
        sh("tc", "-n", pod.netns, "filter", "add", "dev", dev, "ingress", "prio", str(filters.FILTER_PRIO),
           "protocol", "ip", "bpf", "bytecode", f"{len(filters.udp_dport_drop_program(port))},{ops}", "da")
    with entered(pod.netns) as (ipr, _path, _inode):
        assert filters.dhcp_filters_state(ipr, "tap0", "eth0-nic") == {"tap": "outdated", "pod_interface": "outdated"}
        assert filters.dhcp_filters_present(ipr, "tap0", "eth0-nic") == {"tap": False, "pod_interface": False}
        assert filters.install_dhcp_filters(ipr, "tap0", "eth0-nic") == {
            "changed": True, "tap": "replaced", "pod_interface": "replaced"}
        assert filters.dhcp_filters_present(ipr, "tap0", "eth0-nic") == {"tap": True, "pod_interface": True}
        shown = sh("tc", "-n", pod.netns, "filter", "show", "dev", "tap0", "ingress").stdout
        assert "protocol all" in shown and shown.count("bpf") >= 1, shown
        assert filters.remove_dhcp_filters(ipr, "tap0", "eth0-nic")["changed"]
        assert filters.dhcp_filters_state(ipr, "tap0", "eth0-nic") == {"tap": "absent", "pod_interface": "absent"}
