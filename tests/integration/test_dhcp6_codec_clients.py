"""_dhcp6_codec against real DHCPv6 clients, without the responder.

Each test makes two namespaces of its own (NetLab.add_namespace: random suffix, deleted in
``finally``) joined by a veth. In the "server" namespace a thread holds an AF_PACKET socket on
the veth and answers with the codec alone: ``parse_udp6_frame`` + ``answer`` +
``build_udp6_frame`` for DHCPv6, ``parse_router_solicitation`` + ``build_router_advertisement``
for the RA (plus one unsolicited RA at start). The real client runs in the "client"
namespace: ISC dhclient -6 (a tiny script applies the address) and dhcpcd (its own RA
handling gives the default route). DAD is off in both namespaces, so nothing waits on
tentative addresses; accept_ra is off on the client link, so the default route can only
come from dhcpcd. Every address is a ULA or link-local inside the test's namespaces.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import threading

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as codec
from lib.netlab import NetLab, ip_json, link, sh
from lib.processes import output_of, stop
from lib.standin import netns_entered
from lib.waiting import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dhcp_client]

if os.geteuid() != 0:
    pytest.skip("needs root: network namespaces, packet sockets", allow_module_level=True)
_missing = [tool for tool in ("ip", "dhclient", "dhcpcd", "unshare", "mount") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"missing tools: {_missing}", allow_module_level=True)

CLIENT_TIMEOUT = 40
GATEWAY_LL = "fe80::1"
PACKET_OUTGOING = 4


class Link6:
    """Two namespaces of one NetLab and a veth between them; the lease for the client end."""

    def __init__(self, lab: NetLab, **lease) -> None:
        self.server_ns = lab.add_namespace("srv6")
        self.client_ns = lab.add_namespace("cli6")
        self.server_if, self.client_if = f"s{lab.tag}", f"c{lab.tag}"
        for ns in (self.server_ns, self.client_ns):
            for scope in ("all", "default"):
                lab.run(ns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.accept_dad=0")
        sh("ip", "-n", self.server_ns, "link", "add", self.server_if, "type", "veth",
           "peer", "name", self.client_if, "netns", self.client_ns)
        lab.run(self.client_ns, "sysctl", "-qw", f"net.ipv6.conf.{self.client_if}.accept_ra=0")
        sh("ip", "-n", self.server_ns, "addr", "add", f"{GATEWAY_LL}/64", "dev", self.server_if, "nodad")
        for ns, ifname in ((self.server_ns, self.server_if), (self.client_ns, self.client_if)):
            sh("ip", "-n", ns, "link", "set", ifname, "up")
        self.server_mac = link(self.server_ns, self.server_if)["address"]
        self.client_mac = link(self.client_ns, self.client_if)["address"]
        prefix = f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}"
        self.prefix = f"{prefix}::/64"
        self.lease = codec.normalise_lease({
            "vm_mac": self.client_mac, "address": f"{prefix}::10", "prefixlen": 64,
            "dns_servers": [f"{prefix}::53"], "search_domains": ["svc.cluster.local"],
            "preferred_lifetime": 3600, "valid_lifetime": 7200, **lease})

    def addresses(self) -> list[str]:
        return [a["local"] for e in ip_json(self.client_ns, "-6", "addr", "show", "dev", self.client_if)
                for a in e.get("addr_info", []) if a.get("scope") == "global"]

    def default_routes(self) -> list[dict]:
        return [r for r in ip_json(self.client_ns, "-6", "route", "show") if r.get("dst") == "default"]


class Server6(threading.Thread):
    """The codec's server on a packet socket; ``reasons`` records every ``answer`` and RA."""

    def __init__(self, net: Link6) -> None:
        super().__init__(daemon=True)
        self.net = net
        self.server_id = codec.server_duid(secrets.token_hex(16).encode())
        self.reasons: list[str] = []
        self.errors: list[BaseException] = []
        self._halt = threading.Event()
        with netns_entered(net.server_ns):
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(codec.ETH_P_IPV6))
            self.sock.bind((net.server_if, codec.ETH_P_IPV6))

    def send_ra(self, why: str) -> None:
        self.sock.send(codec.build_router_advertisement(
            self.net.server_mac, GATEWAY_LL, prefix=self.net.prefix, mtu=1500, router_lifetime=1800))
        self.reasons.append(f"RA ({why})")

    def run(self) -> None:
        try:
            self.send_ra("unsolicited")
            while not self._halt.is_set():
                ready = select.select([self.sock], [], [], 0.2)[0]
                if not ready:
                    continue
                frame, addr = self.sock.recvfrom(65535)
                if addr[2] == PACKET_OUTGOING:
                    continue
                if codec.parse_router_solicitation(frame):
                    self.send_ra("solicited")
                    continue
                parsed = codec.parse_udp6_frame(frame)
                if parsed is None:
                    continue
                src_mac, src_ip, _dst, payload = parsed
                result = codec.answer(payload, self.net.lease, self.server_id, src_mac)
                self.reasons.append(result.reason)
                if result.reply is not None:
                    self.sock.send(codec.build_udp6_frame(self.net.server_mac, src_mac, GATEWAY_LL, src_ip,
                                                          result.reply))
        except BaseException as exc:  # reported by the test, never lost in a thread
            self.errors.append(exc)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.sock.close()


@pytest.fixture
def net(request):
    lab = NetLab(prefix="pnt6")
    try:
        yield Link6(lab, **getattr(request, "param", {}))
    finally:
        lab.close()


@pytest.fixture
def server(net):
    srv = Server6(net)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
    assert not srv.errors, srv.errors


class Client:
    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

    def check_running(self) -> None:
        if self.proc.poll() is not None and self.proc.returncode != 0:
            raise AssertionError(f"client exited {self.proc.returncode}: {output_of(self.proc)}")

    def stop(self) -> str:
        stop(self.proc)
        return output_of(self.proc)


# T1 of 2 s: dhclient Renews (with our Server ID) within the test.
@pytest.mark.parametrize("net", [{"t1": 2, "t2": 3000}], indirect=True)
def test_dhclient_gets_renews_and_releases_the_lease(net, server, tmp_path):
    script = tmp_path / "apply.sh"
    script.write_text('#!/bin/sh\ncase "$reason" in BOUND6|RENEW6|REBIND6|REBOOT6)\n'
                      '  ip -6 addr replace "$new_ip6_address/$new_ip6_prefixlen" dev "$interface";;\nesac\nexit 0\n')
    script.chmod(0o755)
    lease_file = tmp_path / "dhclient6.leases"
    lease_file.touch()
    common = ["-lf", str(lease_file), "-pf", str(tmp_path / "dhclient6.pid"), "-sf", str(script), net.client_if]
    in_client = ["ip", "netns", "exec", net.client_ns, "unshare", "--uts", "dhclient", "-6"]
    client = Client(in_client + ["-1", "-d", "-v", "-D", "LL"] + common)
    address = net.lease["address"]
    try:
        def bound():
            client.check_running()
            return address in net.addresses() and "iaaddr" in lease_file.read_text()
        wait_for(bound, CLIENT_TIMEOUT, what=f"dhclient to apply {address}")
        wait_for(lambda: "RENEW: reply" in server.reasons, CLIENT_TIMEOUT, what="a Renew answered")
        # -r: stops the running dhclient (its pid file) and sends a Release with our Server ID.
        released = subprocess.run(in_client + ["-r", "-v"] + common, capture_output=True, text=True,
                                  timeout=CLIENT_TIMEOUT, check=False)
        assert released.returncode == 0, released.stdout + released.stderr
        wait_for(lambda: "RELEASE: reply" in server.reasons, CLIENT_TIMEOUT, what="a Release answered")
    finally:
        output = client.stop()
    text = lease_file.read_text()
    assert f"iaaddr {address}" in text, text
    assert "preferred-life 3600" in text and "max-life 7200" in text, text
    assert net.lease["dns_servers"][0] in text and "svc.cluster.local" in text, text
    # A DUID-LL (-D LL) over the client's MAC: the codec's MAC rule let it through.
    assert server.reasons[1:4] == ["SOLICIT: advertise", "REQUEST: reply", "RENEW: reply"], server.reasons
    assert not [r for r in server.reasons if r.startswith("ignored")], server.reasons
    print(f"dhclient: {net.addresses()} reasons={server.reasons}\n{output}")


@pytest.mark.parametrize("rapid_commit", [False, True], ids=["advertise", "rapid-commit"])
def test_dhcpcd_gets_the_lease_and_the_default_route(net, server, tmp_path, rapid_commit):
    conf = tmp_path / "dhcpcd.conf"
    conf.write_text("ipv6only\nnoipv4ll\nipv6rs\nnohook resolv.conf\nnohook hostname\n"
                    + ("option rapid_commit\n" if rapid_commit else ""))
    # Own mount namespace: tmpfs over dhcpcd's state (no host DUID, no leftover lease) and over /run,
    # where dhcpcd makes its own /run/dhcpcd (absent on a machine that never ran it); gone on exit.
    inner = ("mount -t tmpfs podnet6 /var/lib/dhcpcd && mount -t tmpfs podnet6 /run && "
             f"exec dhcpcd -f {conf} -c /bin/true -6 -B -d -t {CLIENT_TIMEOUT} {net.client_if}")
    client = Client(["ip", "netns", "exec", net.client_ns, "unshare", "--uts", "--mount", "sh", "-c", inner])
    address = net.lease["address"]
    try:
        def configured():
            client.check_running()
            routes = net.default_routes()
            return address in net.addresses() and routes and routes[0].get("gateway") == GATEWAY_LL
        wait_for(configured, CLIENT_TIMEOUT, what=f"dhcpcd to apply {address} and a default route")
        routes = net.default_routes()
        addrs = ip_json(net.client_ns, "-6", "addr", "show", "dev", net.client_if)
    finally:
        output = client.stop()
    assert routes[0]["dev"] == net.client_if, routes
    assert "RA (solicited)" in server.reasons, server.reasons
    # dhcpcd's DUID-LLT (fresh state dir) carries the client's MAC: the codec's MAC rule let it through.
    if rapid_commit:
        assert "SOLICIT: reply" in server.reasons and "REQUEST: reply" not in server.reasons, server.reasons
    else:
        assert "SOLICIT: advertise" in server.reasons and "REQUEST: reply" in server.reasons, server.reasons
    assert not [r for r in server.reasons if r.startswith("ignored")], server.reasons
    print(f"dhcpcd: routes={json.dumps(routes)} addrs={json.dumps(addrs)} reasons={server.reasons}\n{output}")
