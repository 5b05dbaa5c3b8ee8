"""KubeVirt's macAddress and dhcpOptions reach real DHCP clients in real namespaces.

Each test builds its own lab (NetLab: unique namespace names, deleted even on failure), its own
run dir under tmp_path and its own responder process; the pod is plumbed by the real plumbing
(``vm_pod_bridge``'s entry point, in-process) with a binding as ``vm_network_plan`` plans it for
an interface with ``macAddress`` and ``dhcpOptions``; the VM stand-in's tap relay plays qemu with
the VM's MAC. The clients run in the "VM" namespace with an event script that only records its
environment (it changes nothing), inside ``unshare --uts`` so nothing can rename the host:

- busybox udhcpc: ``tftp``, ``bootfile``, ``ntpsrv`` (options 66, 67, 42, not asked for), ``optNNN``
  for the private options it asks for with ``-O``, and the BOOTP header's ``boot_file``, ``sname``, ``siaddr``;
- ISC dhclient: its lease file, with the private options declared (``option ... code 224 = string``)
  and requested in a ``-cf`` config;
- dhcpcd: its hook script's ``new_*`` variables, the private options defined in a ``-f`` config.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from lib import plumbing
from lib.bindings import make_binding
from lib.netlab import NetLab, sh
from lib.processes import Processes, output_of
from lib.responder import ResponderProcess, lease_state
from lib.standin import TapRelay
from lib.waiting import wait_for

pytestmark = [pytest.mark.root, pytest.mark.dhcp_client]

CLIENT_TIMEOUT = 40
if os.geteuid() != 0:
    pytest.skip("needs root: network namespaces, taps, packet sockets", allow_module_level=True)
_missing = [tool for tool in ("ip", "busybox", "dhclient", "dhcpcd", "unshare") if shutil.which(tool) is None]
if _missing:
    pytest.skip(f"missing tools: {_missing}", allow_module_level=True)

# As vm_network_plan plans them from
#   dhcpOptions: {bootFileName: pxelinux.0, tftpServerName: 10.96.0.30, ntpServers: [10.96.0.20, 10.96.0.21],
#                 privateOptions: [{option: 224, value: site-data}, {option: 250, value: more-data}]}
DHCP_OPTIONS = {"boot_file_name": "pxelinux.0", "tftp_server_name": "10.96.0.30",
                "ntp_servers": ["10.96.0.20", "10.96.0.21"],
                "private_options": [{"option": 224, "value": "site-data"}, {"option": 250, "value": "more-data"}]}


def random_mac() -> str:
    """A locally administered unicast MAC: what a user would put in macAddress."""
    return "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))


class Env:
    """One lab, run dir and responder; one pod plumbed with the KubeVirt fields, a VM stand-in on its tap."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.run_dir = str(tmp_path / "run")
        os.makedirs(self.run_dir, mode=0o700)
        self.lab = NetLab()
        self.lab.start()
        self.responder = ResponderProcess(self.run_dir)
        self.relays: list = []
        self.procs = Processes()

    def pod_with_vm(self, vm_mac: str, **binding_extras):
        """Plumb a pod with ``binding_extras`` in its binding, start the responder; the VM's NIC has ``vm_mac``."""
        pod = self.lab.add_pod()
        result = plumbing.plumb(pod.netns, make_binding(**binding_extras), self.run_dir, lease_time=3600,
                                hostname="vm1")
        vm = self.lab.add_namespace(f"vm{len(self.lab.pods)}")
        relay = TapRelay(pod.netns, vm, vm_mac, pod.mtu).start()
        self.relays.append(relay)
        if self.responder.proc is None:
            self.responder.start()
        self.responder.wait_serving(result["key"])
        return pod, result, vm, relay

    def popen(self, argv: list[str]) -> subprocess.Popen:
        return self.procs.popen(argv)

    def close(self) -> None:
        self.procs.stop_all()
        self.responder.stop()
        for relay in reversed(self.relays):
            relay.stop()
            for path in Path("/var/lib/dhcpcd").glob(f"{relay.vm_ifname}*.lease*"):
                path.unlink(missing_ok=True)  # dhcpcd's leases of our uniquely named interfaces
        self.lab.close()


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def in_vm(vm: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", vm, "unshare", "--uts", *argv]


def env_dump_script(directory: Path, name: str) -> tuple[str, Path]:
    """An event script that writes its environment to ``<directory>/<name>.<event>`` and changes nothing.

    The event is $1 (udhcpc) or $reason (dhclient, dhcpcd); the file appears complete (renamed into place).
    """
    dump = directory / name
    script = directory / f"{name}.sh"
    script.write_text(f'#!/bin/sh\nevent="${{1:-$reason}}"\n'
                      f'env > "{dump}.tmp.$$"\nmv "{dump}.tmp.$$" "{dump}.$event"\n')
    script.chmod(0o700)
    return str(script), dump


def read_env(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


def run_udhcpc(env: Env, vm: str, ifname: str, *extra: str, tries: int = 5) -> tuple[subprocess.CompletedProcess, Path]:
    script, dump = env_dump_script(env.tmp, f"udhcpc-{ifname}")
    proc = subprocess.run(in_vm(vm, "busybox", "udhcpc", "-i", ifname, "-f", "-q", "-n", "-t", str(tries), "-T", "1",
                                "-s", script, *extra),
                          capture_output=True, text=True, timeout=CLIENT_TIMEOUT, check=False)
    return proc, dump


# -- tests ------------------------------------------------------------------------------------------
def test_udhcpc_gets_every_option_at_the_mac_address(env):
    vm_mac = random_mac()
    pod, result, vm, relay = env.pod_with_vm(vm_mac, mac_address=vm_mac, dhcp_options=DHCP_OPTIONS)
    assert result["vm_mac"] == vm_mac != pod.mac  # the launcher facts: the VM takes macAddress
    assert f"mac={vm_mac}" in result["qemu_args"][3]
    # Options 66, 67 and 42 are not asked for (udhcpc's default option 55): sent all the same.
    proc, dump = run_udhcpc(env, vm, relay.vm_ifname, "-O", "224", "-O", "250")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = read_env(Path(f"{dump}.bound"))
    assert got["ip"] == pod.ip and got["router"] == pod.gateway
    assert got["tftp"] == "10.96.0.30" and got["bootfile"] == "pxelinux.0"  # options 66 and 67
    assert got["ntpsrv"].split() == ["10.96.0.20", "10.96.0.21"]  # option 42
    assert bytes.fromhex(got["opt224"]) == b"site-data" and bytes.fromhex(got["opt250"]) == b"more-data"
    # The BOOTP header, as PXE ROMs read it: file, sname, and siaddr (the TFTP server is an address).
    assert got["boot_file"] == "pxelinux.0" and got["sname"] == "10.96.0.30" and got["siaddr"] == "10.96.0.30"
    log = env.responder.log()
    assert f"pod={result['key']} mac={vm_mac} ip={pod.ip} msg=DISCOVER reply=OFFER" in log
    assert f"mac={vm_mac} ip={pod.ip} msg=REQUEST(selecting) reply=ACK" in log
    state = wait_for(lambda: lease_state(env.run_dir, result["key"]).get("state") == "bound"
                     and lease_state(env.run_dir, result["key"]), 10, what="lease state bound")
    assert state["vm_mac"] == vm_mac and state["ip"] == pod.ip


def test_the_pods_original_mac_is_not_served_once_mac_address_is_set(env):
    vm_mac = random_mac()
    pod, result, vm, relay = env.pod_with_vm(vm_mac, mac_address=vm_mac)
    # The VM's NIC with the pod's original MAC instead of macAddress: no lease for it.
    sh("ip", "-n", vm, "link", "set", "dev", relay.vm_ifname, "address", pod.mac)
    proc, dump = run_udhcpc(env, vm, relay.vm_ifname, tries=3)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert not Path(f"{dump}.bound").exists()
    assert "msg=" not in env.responder.log(), "a request from the original MAC was answered"
    # Control: back at macAddress, the same client leases at once (the test can fail).
    sh("ip", "-n", vm, "link", "set", "dev", relay.vm_ifname, "address", vm_mac)
    proc, dump = run_udhcpc(env, vm, relay.vm_ifname)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert read_env(Path(f"{dump}.bound"))["ip"] == pod.ip
    assert f"mac={vm_mac} ip={pod.ip} msg=DISCOVER reply=OFFER" in env.responder.log()


def test_dhclient_records_every_option_in_its_lease(env):
    vm_mac = random_mac()
    pod, result, vm, relay = env.pod_with_vm(vm_mac, mac_address=vm_mac, dhcp_options=DHCP_OPTIONS)
    config = env.tmp / "dhclient.conf"
    config.write_text("option podnet-224 code 224 = string;\noption podnet-250 code 250 = string;\n"
                      "request subnet-mask, routers, interface-mtu, rfc3442-classless-static-routes,\n"
                      "        tftp-server-name, bootfile-name, ntp-servers, podnet-224, podnet-250;\n")
    lease_file = env.tmp / "dhclient.leases"
    lease_file.touch()
    script, _dump = env_dump_script(env.tmp, "dhclient")
    proc = env.popen(in_vm(vm, "dhclient", "-4", "-d", "-v", "-cf", str(config), "-lf", str(lease_file),
                           "-pf", str(env.tmp / "dhclient.pid"), "-sf", script, relay.vm_ifname))

    def leased():
        if proc.poll() is not None:
            raise AssertionError(f"dhclient exited {proc.returncode}: {output_of(proc)}")
        text = lease_file.read_text()
        return text if "fixed-address" in text else None

    lease = wait_for(leased, CLIENT_TIMEOUT, what="dhclient's lease")
    assert f"fixed-address {pod.ip};" in lease
    assert 'option tftp-server-name "10.96.0.30";' in lease
    assert 'option bootfile-name "pxelinux.0";' in lease
    assert "option ntp-servers 10.96.0.20,10.96.0.21;" in lease
    assert 'option podnet-224 "site-data";' in lease and 'option podnet-250 "more-data";' in lease
    assert 'filename "pxelinux.0";' in lease and 'server-name "10.96.0.30";' in lease  # the BOOTP header
    assert f"mac={vm_mac} ip={pod.ip} msg=REQUEST(selecting) reply=ACK" in env.responder.log()


def test_dhcpcd_hands_every_option_to_its_hook(env):
    vm_mac = random_mac()
    pod, result, vm, relay = env.pod_with_vm(vm_mac, mac_address=vm_mac, dhcp_options=DHCP_OPTIONS)
    config = env.tmp / "dhcpcd.conf"
    config.write_text("define 224 string podnet_224\ndefine 250 string podnet_250\n"
                      "option tftp_server_name, bootfile_name, ntp_servers, podnet_224, podnet_250\n")
    script, dump = env_dump_script(env.tmp, "dhcpcd")
    proc = env.popen(in_vm(vm, "dhcpcd", "-B", "-4", "--noipv4ll", "-t", "30", "-f", str(config), "-c", script,
                           relay.vm_ifname))

    def bound():
        if proc.poll() is not None:
            raise AssertionError(f"dhcpcd exited {proc.returncode}: {output_of(proc)}")
        return Path(f"{dump}.BOUND").exists()

    try:
        wait_for(bound, CLIENT_TIMEOUT, what="dhcpcd's BOUND hook")
    except TimeoutError:
        proc.terminate()
        events = sorted(p.name for p in env.tmp.glob("dhcpcd.*"))
        raise AssertionError(f"no BOUND; hook events {events}; dhcpcd: {proc.communicate(timeout=10)[0][-3000:]}; "
                             f"responder: {env.responder.log()[-2000:]}") from None
    got = read_env(Path(f"{dump}.BOUND"))
    assert got["new_ip_address"] == pod.ip
    assert got["new_tftp_server_name"] == "10.96.0.30" and got["new_bootfile_name"] == "pxelinux.0"
    assert got["new_ntp_servers"].split() == ["10.96.0.20", "10.96.0.21"]
    assert got["new_podnet_224"] == "site-data" and got["new_podnet_250"] == "more-data"
    assert f"mac={vm_mac} ip={pod.ip} msg=REQUEST(selecting) reply=ACK" in env.responder.log()


def test_without_the_fields_clients_get_neither(env):
    """A binding as older versions planned it: the pod's own MAC, no extra options."""
    pod = env.lab.add_pod()  # the VM takes the pod's original MAC, known once the pod exists
    result = plumbing.plumb(pod.netns, make_binding(), env.run_dir, lease_time=3600)
    assert result["vm_mac"] == pod.mac and "dhcp_options" not in plumbing.read_declaration(result["lease_path"])
    vm = env.lab.add_namespace("vm-plain")
    relay = TapRelay(pod.netns, vm, pod.mac, pod.mtu).start()
    env.relays.append(relay)
    env.responder.start()
    env.responder.wait_serving(result["key"])
    proc, dump = run_udhcpc(env, vm, relay.vm_ifname, "-O", "224")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = read_env(Path(f"{dump}.bound"))
    assert got["ip"] == pod.ip
    assert not {"tftp", "bootfile", "ntpsrv", "opt224", "boot_file", "sname", "siaddr"} & set(got), got
