# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vm_pod_bridge's batch form (pods), DNS defaults from the pod, the responder started on demand,
and the DHCP filters it installs and removes — on real namespaces."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest

from integration.conftest import COLLECTIONS_ROOT, IS_ROOT
from integration.test_pod_bridge import stop_responder
from lib.bindings import make_binding
from lib.netlab import sh, snapshot

pytestmark = [pytest.mark.root, pytest.mark.skipif(not IS_ROOT, reason="needs root: creates network namespaces")]

if IS_ROOT:
    from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_bridge, _responder_control
    from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
    from ansible_collections.virtnet.podnet.plugins.module_utils._rundir import lease_path


def wait_for(condition, timeout=10.0):
    """Poll a state the kernel or another process changes, with a deadline (no event to await)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def batch(run_dir, pods, **extra):
    return dict({"pods": pods, "run_dir": run_dir, "state": "present"}, **extra)


OUR_FILTER = "pref 3404 bpf"  # _dhcp_filters.FILTER_PRIO, as tc prints it


def filters(netns, dev):
    return sh("tc", "-n", netns, "filter", "show", "dev", dev, "ingress").stdout


def test_batch_plumbs_every_pod_idempotently_and_undoes_exactly(lab, run_dir):
    pods = [lab.add_pod(), lab.add_pod(), lab.add_pod(calico=True)]
    before = {p.netns: snapshot(p.netns) for p in pods}
    entries = [{"netns": p.netns, "binding": make_binding(), "hostname": f"vm{i}"} for i, p in enumerate(pods)]

    predicted = _pod_bridge.run_many(batch(run_dir, entries), check_mode=True)
    assert {p.netns: snapshot(p.netns) for p in pods} == before, "check mode changed a pod"
    result = _pod_bridge.run_many(batch(run_dir, entries))
    assert result["changed"] and result["changes"] == predicted["changes"]
    assert [r["netns"] for r in result["pods"]] == [p.netns for p in pods]
    for pod, pod_result in zip(pods, result["pods"]):
        assert (pod_result["ip"], pod_result["vm_mac"], pod_result["gateway"]) == (pod.ip, pod.mac, pod.gateway)
        with open(lease_path(run_dir, pod_result["key"]), encoding="utf-8") as handle:
            assert json.load(handle)["ip"] == pod.ip
        # The VM's DHCP stays in the pod, and the cluster's DHCP replies stay out.
        assert OUR_FILTER in filters(pod.netns, "tap0") and OUR_FILTER in filters(pod.netns, "eth0-nic")
    assert set(result["diff"]["before"]) == {p.netns for p in pods}

    again = _pod_bridge.run_many(batch(run_dir, entries))
    assert again["changed"] is False and again["changes"] == []

    undone = _pod_bridge.run_many(batch(run_dir, entries, state="absent"))
    assert undone["changed"]
    assert {p.netns: snapshot(p.netns) for p in pods} == before
    assert all(OUR_FILTER not in filters(p.netns, "eth0") for p in pods)
    # The ingress qdisc the filters needed is gone too: tc state is as the CNI left it.
    assert all("ingress" not in sh("tc", "-n", p.netns, "qdisc", "show", "dev", "eth0").stdout for p in pods)


def test_batch_with_an_invalid_entry_touches_no_pod(lab, run_dir):
    good, other = lab.add_pod(), lab.add_pod()
    before = {p.netns: snapshot(p.netns) for p in (good, other)}
    entries = [{"netns": good.netns, "binding": make_binding()},
               {"netns": other.netns, "binding": make_binding(tap="a-tap-name-too-long")},
               {"netns": good.netns, "binding": make_binding()}]
    with pytest.raises(PodnetError) as info:
        _pod_bridge.run_many(batch(run_dir, entries))
    assert "nothing was changed" in info.value.msg
    assert "pods[1]" in info.value.msg and "binding.tap" in info.value.msg
    assert "pods[2]: the same pod interface as pods[0]" in info.value.msg
    assert {p.netns: snapshot(p.netns) for p in (good, other)} == before
    assert not os.path.exists(os.path.join(run_dir, "pods")) or not os.listdir(os.path.join(run_dir, "pods"))


def test_batch_failure_of_one_pod_does_not_stop_the_others(lab, run_dir):
    good, broken = lab.add_pod(), lab.add_pod(with_ip=False)  # nothing to delegate on the second
    entries = [{"netns": broken.netns, "binding": make_binding()}, {"netns": good.netns, "binding": make_binding()}]
    with pytest.raises(PodnetError) as info:
        _pod_bridge.run_many(batch(run_dir, entries))
    assert info.value.msg.startswith("1 of 2 pods failed")
    assert broken.netns in info.value.msg and "nothing to delegate" in info.value.msg
    results = info.value.details["pods"]
    assert results[0]["failed"] and results[1]["ip"] == good.ip and info.value.details["changed"]
    _pod_bridge.run_many(batch(run_dir, entries[1:], state="absent"))


def test_dns_search_and_hostname_default_to_the_pods_own_files(lab, run_dir):
    pod = lab.add_pod()
    etc = f"/etc/netns/{pod.netns}"
    os.makedirs(etc)
    try:
        with open(os.path.join(etc, "resolv.conf"), "w", encoding="utf-8") as handle:
            handle.write("# from the CNI\nnameserver 10.96.0.10\nnameserver fd00::10\n"
                         "search default.svc.cluster.local svc.cluster.local\noptions ndots:5\n")
        result = _pod_bridge.run({"netns": pod.netns, "binding": make_binding(), "run_dir": run_dir})
        with open(lease_path(run_dir, result["key"]), encoding="utf-8") as handle:
            declaration = json.load(handle)
        assert declaration["dns_servers"] == ["10.96.0.10"]
        assert declaration["search_domains"] == ["default.svc.cluster.local", "svc.cluster.local"]
        explicit = _pod_bridge.run({"netns": pod.netns, "binding": make_binding(), "run_dir": run_dir,
                                    "dns_servers": [], "search_domains": []})
        with open(lease_path(run_dir, result["key"]), encoding="utf-8") as handle:
            assert json.load(handle)["dns_servers"] == []
        assert explicit["changed"]  # the declaration changed
    finally:
        shutil.rmtree(etc)
        _pod_bridge.run({"netns": pod.netns, "binding": make_binding(), "run_dir": run_dir, "state": "absent"})


def test_responder_auto_starts_one_responder_for_all_pods(lab, run_dir, tmp_path):
    pods = [lab.add_pod(), lab.add_pod()]
    options = {"responder": "auto", "responder_pythonpath": str(COLLECTIONS_ROOT),
               "responder_log_file": str(tmp_path / "dhcpd.log")}
    entries = [{"netns": p.netns, "binding": make_binding()} for p in pods]
    try:
        predicted = _pod_bridge.run_many(batch(run_dir, entries, **options), check_mode=True)
        assert predicted["changes"][-1].startswith("start podnet-dhcpd") and predicted["responder_pid"] is None
        assert _responder_control.running_pid(os.path.join(run_dir, "podnet-dhcpd.pid")) is None
        result = _pod_bridge.run_many(batch(run_dir, entries, **options))
        pid = _responder_control.running_pid(os.path.join(run_dir, "podnet-dhcpd.pid"))
        assert result["responder_pid"] == pid and pid > 0
        again = _pod_bridge.run_many(batch(run_dir, entries, **options))
        assert again["changed"] is False and again["responder_pid"] == pid
    finally:
        stop_responder(run_dir)
        _pod_bridge.run_many(batch(run_dir, entries, state="absent"))


def test_responder_auto_without_an_installed_copy_fails_clearly(lab, run_dir, tmp_path, monkeypatch):
    pod = lab.add_pod()
    before = snapshot(pod.netns)
    # Pretend this code is not a collection on disk: only the configured (empty) path counts.
    monkeypatch.setattr(_responder_control, "__file__", str(tmp_path / "payload.zip" / "_responder_control.py"))
    with pytest.raises(PodnetError, match="podnet-dhcpd is not running .* run the virtnet.podnet.node role"):
        _pod_bridge.run({"netns": pod.netns, "binding": make_binding(), "run_dir": run_dir, "responder": "auto",
                         "responder_pythonpath": str(tmp_path / "nothing-here")}, check_mode=True)
    assert snapshot(pod.netns) == before


def test_another_name_of_a_plumbed_namespace_is_refused_not_half_undone(lab, run_dir):
    pod = lab.add_pod()
    before = snapshot(pod.netns)
    _pod_bridge.run({"netns": pod.netns, "binding": make_binding(), "run_dir": run_dir})
    plumbed = snapshot(pod.netns)
    holder = subprocess.Popen(["ip", "netns", "exec", pod.netns, "sleep", "60"])  # the pod's "container"
    try:
        other_name = f"/proc/{holder.pid}/ns/net"
        wait_for(lambda: os.stat(other_name).st_ino == os.stat(pod.netns_path).st_ino)  # sleep entered the pod
        for state in ("absent", "present"):
            with pytest.raises(PodnetError, match=f"plumbed under another name of the same namespace \\(/run/netns/{pod.netns}"):
                _pod_bridge.run({"netns": other_name, "binding": make_binding(), "run_dir": run_dir, "state": state})
        assert snapshot(pod.netns) == plumbed, "the refused run changed the pod"
    finally:
        holder.kill()
        holder.wait(timeout=10)
    _pod_bridge.run({"netns": pod.netns, "binding": make_binding(), "run_dir": run_dir, "state": "absent"})
    assert snapshot(pod.netns) == before


def test_responder_stops_when_its_run_dir_is_removed(tmp_path):
    run_dir = tmp_path / "run"
    pid = _responder_control.spawn_daemon(str(run_dir), str(tmp_path / "dhcpd.pid"), str(tmp_path / "dhcpd.log"),
                                          pythonpath=str(COLLECTIONS_ROOT))
    shutil.rmtree(run_dir)
    os.kill(pid, signal.SIGHUP)  # rescan now rather than at the next periodic rescan
    wait_for(lambda: _responder_control.running_pid(str(tmp_path / "dhcpd.pid")) is None)
    assert "is gone; stopping" in (tmp_path / "dhcpd.log").read_text()
