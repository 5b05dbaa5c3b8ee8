# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run vm_network_plan's main() in-process, as Ansible would, and read its JSON result."""

from __future__ import annotations

import json
import os
import types

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtnet.podnet.plugins.module_utils import _vm_batch
from ansible_collections.virtnet.podnet.plugins.modules import vm_network_plan

RED_VM = {
    "kind": "VM",
    "metadata": {"name": "vm1", "labels": {"app": "web"}},
    "spec": {
        "domain": {"cpu": {"cores": 2}},
        "devices": {
            "disks": [{"name": "root", "disk": {"bus": "virtio"}}],
            "interfaces": [{"name": "red", "bridge": {"delegateIp": True}}],
        },
        "networks": [{"name": "red", "pod": {}}],
    },
}
RED_PLAN = [{
    "interface": "red", "network": "red", "backend": "pod", "connection": "bridge", "delegate_ip": True,
    "connectivity": "ip", "pod_interface": "eth0", "bridge": "k6t-eth0", "tap": "tap0",
}]
DEFAULT_PLAN = [dict(RED_PLAN[0], interface="default", network="default")]


def run_module(capsys, **args):
    """Run main() with ``args``; return (exit code, result)."""
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            vm_network_plan.main()
    out = capsys.readouterr().out
    return info.value.code, json.loads(out)


@pytest.mark.parametrize("check_mode", [False, True], ids=["normal", "check_mode"])
def test_success_returns_plan_unchanged(capsys, check_mode):
    args = {"vm": RED_VM}
    if check_mode:
        args["_ansible_check_mode"] = True
    code, result = run_module(capsys, **args)
    assert code == 0
    assert result["changed"] is False
    assert "failed" not in result
    assert result["plan"] == RED_PLAN
    assert result["vm_name"] == "vm1"


def test_check_mode_returns_same_plan_as_normal(capsys):
    _code, normal = run_module(capsys, vm=RED_VM, pod_interface="ens3", tap="tap7")
    _code, checked = run_module(capsys, vm=RED_VM, pod_interface="ens3", tap="tap7", _ansible_check_mode=True)
    assert normal["plan"] == checked["plan"]
    assert checked["plan"][0]["bridge"] == "k6t-ens3" and checked["plan"][0]["tap"] == "tap7"
    assert checked["changed"] is False


@pytest.mark.parametrize("vm", [{}, {"kind": "VM"}, {"kind": "VM", "spec": {"devices": {"interfaces": []}, "networks": []}}],
                         ids=["empty", "kind_only", "empty_lists"])
def test_default_network(capsys, vm):
    code, result = run_module(capsys, vm=vm)
    assert code == 0
    assert result["changed"] is False
    assert result["plan"] == DEFAULT_PLAN


def test_pod_interface_and_tap_options(capsys):
    code, result = run_module(capsys, vm={"kind": "VM"}, pod_interface="eth01234567", tap="tap-vm1")
    assert code == 0
    assert result["plan"][0]["pod_interface"] == "eth01234567"
    assert result["plan"][0]["bridge"] == "k6t-eth01234567"
    assert result["plan"][0]["tap"] == "tap-vm1"


@pytest.mark.parametrize("check_mode", [False, True], ids=["normal", "check_mode"])
def test_failure_returns_msg_and_errors(capsys, check_mode):
    vm = {"kind": "VM", "spec": {"devices": {"interfaces": [{"name": "red", "bridge": {"delegateIp": "yes", "mtu": 1}}]},
                                 "networks": [{"name": "red", "pod": {}}]}}
    args = {"vm": vm}
    if check_mode:
        args["_ansible_check_mode"] = True
    code, result = run_module(capsys, **args)
    assert code == 1
    assert result["failed"] is True
    assert result["changed"] is False
    assert "plan" not in result
    assert result["msg"].startswith("invalid VM spec (2 errors): ")
    assert "spec.devices.interfaces[0].bridge.delegateIp: must be a boolean, got string 'yes'" in result["msg"]
    assert result["errors"] == [
        {"path": "spec.devices.interfaces[0].bridge.delegateIp", "msg": "must be a boolean, got string 'yes'", "allowed": "true, false"},
        {"path": "spec.devices.interfaces[0].bridge.mtu", "msg": "unknown option of the 'bridge' connection", "allowed": "delegateIp"},
    ]
    assert "exception" not in result


@pytest.mark.parametrize("args, path", [
    ({"vm": "not a vm"}, "vm"),
    ({"vm": [1, 2]}, "vm"),
    ({"vm": {"kind": "Pod"}}, "kind"),
    ({"vm": {"kind": "VM", "spec": {"networks": [{"name": "red", "pod": {}}]}}}, "spec.devices.interfaces"),
    ({"vm": {}, "pod_interface": "eth012345678"}, "pod_interface"),
    ({"vm": {}, "tap": "eth0"}, "tap"),
], ids=["string", "list", "kind", "one_list", "pod_interface", "tap"])
def test_failures_name_the_path(capsys, args, path):
    code, result = run_module(capsys, **args)
    assert code == 1
    assert result["failed"] is True and result["changed"] is False
    assert [e["path"] for e in result["errors"]] == [path]
    assert result["msg"].startswith("invalid VM spec (1 error): " + path + ": ")


@pytest.mark.parametrize("args", [{}, {"vm": None}], ids=["absent", "null"])
def test_missing_vm_is_a_clear_failure(capsys, args):
    code, result = run_module(capsys, **args)
    assert code == 1
    assert result["failed"] is True
    assert "vm" in result["msg"]
    assert "exception" not in result


def test_unknown_option_is_a_clear_failure(capsys):
    code, result = run_module(capsys, vm={}, bridge="br0")
    assert code == 1
    assert result["failed"] is True
    assert "bridge" in result["msg"]


@pytest.fixture
def pods(monkeypatch):
    """Fake namespace files: pod1 and /proc/42/ns/net are one namespace, pod2 another."""
    inodes = {"/run/netns/pod1": 4026532001, "/proc/42/ns/net": 4026532001, "/run/netns/pod2": 4026532002}

    def fake_stat(path):
        if path not in inodes:
            raise FileNotFoundError(2, "No such file or directory", path)
        return os.stat_result((0o100444, inodes[path], 4, 1, 0, 0, 0, 0, 0, 0))

    monkeypatch.setattr(_vm_batch, "os", types.SimpleNamespace(stat=fake_stat))
    return inodes


@pytest.mark.parametrize("check_mode", [False, True], ids=["normal", "check_mode"])
def test_vms_returns_plans_pods_and_vms(capsys, pods, check_mode):
    args = {"vms": [{"vm": {"metadata": {"name": "a"}}, "netns": "pod1", "dns_servers": ["10.96.0.10"]},
                    {"vm": {}, "netns": "pod2", "lease_time": "600"}]}
    if check_mode:
        args["_ansible_check_mode"] = True
    code, result = run_module(capsys, **args)
    assert code == 0
    assert result["changed"] is False
    assert [p["vm_name"] for p in result["plans"]] == ["a", None]
    assert all(p["plan"] == DEFAULT_PLAN for p in result["plans"])
    assert result["pods"] == [
        {"netns": "pod1", "binding": DEFAULT_PLAN[0], "hostname": "a", "dns_servers": ["10.96.0.10"]},
        {"netns": "pod2", "binding": DEFAULT_PLAN[0], "lease_time": 600},
    ]
    assert result["vms"] == [{"name": "a", "netns": "pod1", "connectivity": "ip"},
                             {"name": "vms[1]", "netns": "pod2", "connectivity": "ip"}]
    assert "plan" not in result


def test_vms_failure_names_each_vm(capsys, pods):
    code, result = run_module(capsys, vms=[{"vm": {"metadata": {"name": "a"}}, "netns": "pod1"},
                                           {"vm": {"metadata": {"name": "b"}, "kind": "Pod"}, "netns": "pod2"},
                                           {"vm": {"metadata": {"name": "c"}}, "netns": "/proc/42/ns/net"},
                                           {"vm": {}}])
    assert code == 1
    assert result["failed"] is True and result["changed"] is False
    assert [(e["vm"], e["index"], e["path"]) for e in result["errors"]] == [
        ("b", 1, "kind"), ("c", 2, "netns"), (None, 3, "netns")]
    assert result["msg"].startswith("invalid VMs (3 errors in 3 of 4 VMs): b (vms[1]): kind: must be 'VM'")
    assert "c (vms[2]): netns: '/proc/42/ns/net' is the same namespace as 'pod1' of a (vms[0])" in result["msg"]
    assert "plans" not in result and "pods" not in result


@pytest.mark.parametrize("state, ok", [("present", False), ("absent", True)])
def test_vms_gone_namespace_fails_only_when_present(capsys, pods, state, ok):
    code, result = run_module(capsys, vms=[{"vm": {"metadata": {"name": "a"}}, "netns": "deleted-pod"}], state=state)
    assert (code == 0) is ok
    if ok:
        assert result["pods"] == [{"netns": "deleted-pod", "binding": DEFAULT_PLAN[0], "hostname": "a"}]
    else:
        assert [e["path"] for e in result["errors"]] == ["netns"]
        assert "does not exist (/run/netns/deleted-pod)" in result["msg"]


def test_vms_with_real_namespace_files(capsys):
    # /proc/self/ns/net and /proc/PID/ns/net of this process are one namespace under two spellings.
    code, result = run_module(capsys, vms=[{"vm": {}, "netns": "/proc/self/ns/net"},
                                           {"vm": {}, "netns": f"/proc/{os.getpid()}/ns/net"}])
    assert code == 1
    assert [(e["index"], e["path"]) for e in result["errors"]] == [(1, "netns")]
    assert "is the same namespace as '/proc/self/ns/net'" in result["errors"][0]["msg"]


def test_state_is_checked_by_the_argument_spec(capsys):
    code, result = run_module(capsys, vms=[], state="gone")
    assert code == 1
    assert "state" in result["msg"] and "present, absent" in result["msg"]


def test_vm_and_vms_are_mutually_exclusive(capsys):
    code, result = run_module(capsys, vm={}, vms=[{}])
    assert code == 1
    assert "mutually exclusive" in result["msg"]


# -- KubeVirt's macAddress and dhcpOptions (extensions beyond the seed spec) ----------------------
KUBEVIRT_VM = {
    "kind": "VM", "metadata": {"name": "pxe"},
    "spec": {
        "devices": {"interfaces": [{
            "name": "red", "bridge": {"delegateIp": True}, "macAddress": "02-00-00-AA-BB-CC",
            "dhcpOptions": {"bootFileName": "pxelinux.0", "tftpServerName": "tftp.example.com",
                            "ntpServers": ["10.96.0.20"], "privateOptions": [{"option": 240, "value": "extra"}]},
        }]},
        "networks": [{"name": "red", "pod": {}}],
    },
}


def test_plan_carries_mac_address_and_dhcp_options(capsys, pods):
    code, result = run_module(capsys, vm=KUBEVIRT_VM)
    assert code == 0, result
    assert result["plan"] == [dict(RED_PLAN[0], mac_address="02:00:00:aa:bb:cc", dhcp_options={
        "boot_file_name": "pxelinux.0", "tftp_server_name": "tftp.example.com", "ntp_servers": ["10.96.0.20"],
        "private_options": [{"option": 240, "value": "extra"}]})]
    # The batch form hands the same entry to vm_pod_bridge as the binding.
    code, batch = run_module(capsys, vms=[{"vm": KUBEVIRT_VM, "netns": "pod1"}])
    assert code == 0, batch
    assert batch["pods"][0]["binding"] == result["plan"][0]


def test_spec_without_the_extensions_plans_the_old_binding(capsys):
    _code, result = run_module(capsys, vm=RED_VM)
    assert list(result["plan"][0]) == list(RED_PLAN[0])


def test_extension_errors_name_their_field_path(capsys):
    vm = {"kind": "VM", "spec": {
        "devices": {"interfaces": [{"name": "red", "bridge": {}, "macAddress": "01:00:00:00:00:01",
                                    "dhcpOptions": {"privateOptions": [{"option": 224, "value": "a"},
                                                                       {"option": 224, "value": "b"}]}}]},
        "networks": [{"name": "red", "pod": {}}]}}
    code, result = run_module(capsys, vm=vm)
    assert code == 1 and result["failed"] is True
    assert [e["path"] for e in result["errors"]] == [
        "spec.devices.interfaces[0].macAddress",
        "spec.devices.interfaces[0].dhcpOptions.privateOptions[1].option",
        "spec.devices.interfaces[0].dhcpOptions",
    ]
    assert "needs bridge.delegateIp: true" in result["errors"][2]["msg"]
