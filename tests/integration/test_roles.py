# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/connect.yml and disconnect.yml (roles node and vm_network) through a real ansible-playbook.

Each test gets its own lab (tests/lib/netlab.py) and its own install dir, run dir and responder
(pidfile under the test's run dir), stopped at the end, so nothing meets /run/virtnet-podnet.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lib.netlab import link_exists, sh, snapshot

pytestmark = [pytest.mark.root]

REPO_ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS_ROOT = REPO_ROOT / ".build" / "pytest-collections"
PLAYBOOK_TIMEOUT = 300
PROCESS_TIMEOUT = 10


def vm(name, delegate_ip=None, **extra):
    obj = {"kind": "VM", "metadata": {"name": name}}
    if delegate_ip is not None:
        bridge = {"delegateIp": True} if delegate_ip else {}
        obj["spec"] = {"devices": {"interfaces": [{"name": "red", "bridge": bridge}]},
                       "networks": [{"name": "red", "pod": {}}]}
    obj.update(extra)
    return obj


def playbook(name, variables, tmp_path):
    extra = tmp_path / f"vars-{name}-{os.getpid()}.json"
    extra.write_text(json.dumps(variables))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_ROOT), ANSIBLE_STDOUT_CALLBACK="default",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    proc = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{extra}", str(REPO_ROOT / "playbooks" / f"{name}.yml")],
        capture_output=True, text=True, timeout=PLAYBOOK_TIMEOUT, env=env, check=False)
    return proc


def recap(proc) -> dict:
    match = re.search(r"localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
    assert match, proc.stdout[-4000:] + proc.stderr[-4000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def test_connect_idempotent_disconnect_restores(lab, node, tmp_path):
    pods = [lab.add_pod(), lab.add_pod(), lab.add_pod(calico=True)]
    before = {pod.netns: snapshot(pod.netns) for pod in pods}
    vms = [{"vm": vm("vm-a"), "netns": pods[0].netns},
           {"vm": vm("vm-b", delegate_ip=False), "netns": pods[1].netns},
           {"vm": vm("vm-c", delegate_ip=True), "netns": pods[2].netns_path, "hostname": "c1", "dns_servers": ["10.96.0.10"]}]
    variables = dict(node, vm_network_vms=vms)

    first = playbook("connect", variables, tmp_path)
    assert first.returncode == 0, first.stdout[-6000:] + first.stderr[-4000:]
    assert recap(first)["changed"] > 0
    # What each VM got, as connect.yml shows it from vm_network_results.
    assert f"vm-a in {pods[0].netns}: tap0, MAC {pods[0].mac}, MTU 1450, {pods[0].ip}/24 via {pods[0].gateway}" in first.stdout
    assert f"vm-b in {pods[1].netns}: tap0, MAC {pods[1].mac}, MTU 1450, Ethernet only" in first.stdout
    assert f"{pods[2].ip}/32 via 169.254.1.1" in first.stdout
    for pod in pods:
        assert link_exists(pod.netns, "tap0") and link_exists(pod.netns, "k6t-eth0")
    leases = sorted(p.name for p in Path(node["node_run_dir"], "leases").glob("*.json"))
    assert leases == sorted(f"{pod.netns}__eth0.json" for pod in (pods[0], pods[2]))

    again = playbook("connect", variables, tmp_path)
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-4000:]
    assert recap(again)["changed"] == 0, again.stdout[-6000:]

    gone = playbook("disconnect", variables, tmp_path)
    assert gone.returncode == 0, gone.stdout[-6000:] + gone.stderr[-4000:]
    assert recap(gone)["changed"] > 0
    assert {pod.netns: snapshot(pod.netns) for pod in pods} == before
    assert not list(Path(node["node_run_dir"], "leases").glob("*.json"))

    gone_again = playbook("disconnect", variables, tmp_path)
    assert gone_again.returncode == 0, gone_again.stdout[-6000:] + gone_again.stderr[-4000:]
    assert recap(gone_again)["changed"] == 0, gone_again.stdout[-6000:]
    assert {pod.netns: snapshot(pod.netns) for pod in pods} == before


def test_invalid_vm_fails_before_any_pod_is_touched(lab, node, tmp_path):
    pods = [lab.add_pod() for _index in range(4)]
    before = {pod.netns: snapshot(pod.netns) for pod in pods}
    bad_bridge = vm("vm-bad-bridge")
    bad_bridge["spec"] = {"devices": {"interfaces": [{"name": "red", "bridge": {"delegateIp": "yes"}}]},
                          "networks": [{"name": "red", "pod": {}}]}
    bad_network = vm("vm-bad-network")
    bad_network["spec"] = {"devices": {"interfaces": [{"name": "blue", "bridge": {}}]},
                           "networks": [{"name": "blue", "multus": {}}]}
    vms = [{"vm": vm("vm-good-1"), "netns": pods[0].netns},
           {"vm": bad_bridge, "netns": pods[1].netns},
           {"vm": vm("vm-good-2"), "netns": pods[2].netns},
           {"vm": bad_network, "netns": pods[3].netns}]
    proc = playbook("connect", dict(node, vm_network_vms=vms), tmp_path)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Plan every VM's network" in out
    assert "vm-bad-bridge" in out and "vm-bad-network" in out
    assert "delegateIp" in out and "multus" in out
    assert "Traceback" not in out
    assert {pod.netns: snapshot(pod.netns) for pod in pods} == before
    assert not Path(node["node_run_dir"], "pods").exists() or not list(Path(node["node_run_dir"], "pods").iterdir())


def records(node, folder):
    """The run directory's records of one kind (pods: state caches, leases: lease declarations)."""
    return sorted(p.name for p in Path(node["node_run_dir"], folder).glob("*.json"))


@contextlib.contextmanager
def process_in(netns):
    """A process inside ``netns``: /proc/PID/ns/net is then a second spelling of the namespace."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c",
                             "import sys; print('in', flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        # ip execs python after entering the namespace: once python speaks, the pid is inside.
        assert proc.stdout.readline() == "in\n"
        yield proc.pid
    finally:
        proc.stdin.close()
        proc.wait(timeout=PROCESS_TIMEOUT)


def test_missing_shared_and_gone_netns_are_refused_before_any_pod_is_touched(lab, node, tmp_path):
    pods = [lab.add_pod(), lab.add_pod()]
    before = {pod.netns: snapshot(pod.netns) for pod in pods}
    gone = f"{pods[0].netns}-never-made"
    with process_in(pods[0].netns) as pid:
        same = f"/proc/{pid}/ns/net"
        assert os.stat(same).st_ino == os.stat(pods[0].netns_path).st_ino  # really one namespace, two spellings
        vms = [{"vm": vm("vm-1"), "netns": pods[0].netns}, {"vm": vm("vm-2"), "netns": same},
               {"vm": vm("vm-3")}, {"vm": vm("vm-4"), "netns": pods[0].netns_path},
               {"vm": vm("vm-5"), "netns": gone}, {"vm": vm("vm-6"), "netns": pods[1].netns}]
        proc = playbook("connect", dict(node, vm_network_vms=vms), tmp_path)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Plan every VM's network" in out and "Traceback" not in out
    assert "invalid VMs (4 errors in 4 of 6 VMs)" in out
    assert f"vm-2 (vms[1]): netns: '{same}' is the same namespace as '{pods[0].netns}' of vm-1 (vms[0])" in out
    assert "vm-3 (vms[2]): netns: is required" in out
    assert f"vm-4 (vms[3]): netns: '{pods[0].netns_path}' is also the pod namespace of vm-1 (vms[0])" in out
    assert f"vm-5 (vms[4]): netns: the namespace '{gone}' does not exist" in out
    assert "vm-6" not in out.split("invalid VMs", 1)[1].split("\n", 1)[0]  # the valid VM has no error
    assert {pod.netns: snapshot(pod.netns) for pod in pods} == before
    assert records(node, "pods") == [] and records(node, "leases") == []


def test_disconnect_succeeds_after_a_pod_namespace_was_deleted(lab, node, tmp_path):
    pods = [lab.add_pod(), lab.add_pod(), lab.add_pod(calico=True)]
    kept = pods[1:]
    before = {pod.netns: snapshot(pod.netns) for pod in kept}
    vms = [{"vm": vm(f"vm-{index}"), "netns": pod.netns} for index, pod in enumerate(pods)]
    variables = dict(node, vm_network_vms=vms)
    connect = playbook("connect", variables, tmp_path)
    assert connect.returncode == 0, connect.stdout[-6000:] + connect.stderr[-4000:]
    assert records(node, "leases") == sorted(f"{pod.netns}__eth0.json" for pod in pods)

    sh("ip", "netns", "del", pods[0].netns)  # the pod is deleted under us, its VM still listed

    refused = playbook("connect", variables, tmp_path)
    assert refused.returncode != 0
    assert f"vm-0 (vms[0]): netns: the namespace '{pods[0].netns}' does not exist" in refused.stdout + refused.stderr

    gone = playbook("disconnect", variables, tmp_path)
    assert gone.returncode == 0, gone.stdout[-6000:] + gone.stderr[-4000:]
    assert recap(gone)["changed"] > 0
    assert {pod.netns: snapshot(pod.netns) for pod in kept} == before
    assert records(node, "leases") == [] and records(node, "pods") == []

    again = playbook("disconnect", variables, tmp_path)
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-4000:]
    assert recap(again)["changed"] == 0, again.stdout[-6000:]
    assert {pod.netns: snapshot(pod.netns) for pod in kept} == before
