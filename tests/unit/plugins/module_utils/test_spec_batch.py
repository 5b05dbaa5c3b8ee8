"""build_plans: many VMs in one call, all validated before any plan is returned."""

from __future__ import annotations

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._spec import build_plan, build_plans

RED = {"kind": "VM", "metadata": {"name": "vm-red"},
       "spec": {"devices": {"interfaces": [{"name": "red", "bridge": {"delegateIp": True}}]},
                "networks": [{"name": "red", "pod": {}}]}}
BAD = {"kind": "VM", "metadata": {"name": "vm-bad"},
       "spec": {"devices": {"interfaces": [{"name": "red", "bridge": {"delegateIp": "yes"}}]},
                "networks": [{"name": "blue", "pod": {}}]}}


def test_plans_keep_order_and_names():
    result = build_plans([RED, {}, {"metadata": {"name": "vm-default"}}])
    assert [r["vm_name"] for r in result] == ["vm-red", None, "vm-default"]
    assert [r["plan"] for r in result] == [build_plan(RED), build_plan({}), build_plan({})]


def test_empty_list_plans_nothing():
    assert build_plans([]) == []


def test_every_error_of_every_vm_is_named_by_vm():
    with pytest.raises(PodnetError) as info:
        build_plans([RED, BAD, "not a vm", RED])
    paths = [e["path"] for e in info.value.details["errors"]]
    assert paths == [
        "vm-bad: spec.devices.interfaces[0].bridge.delegateIp",
        "vm-bad: spec.devices.interfaces[0]",
        "vm-bad: spec.networks[0]",
        "vms[2]: vm",
    ]
    assert info.value.msg.startswith("invalid VM specs in 2 of 4 VMs (4 errors): vm-bad: ")


@pytest.mark.parametrize("vms", [None, "x", {"vm": RED}, 3])
def test_not_a_list_is_a_clear_error(vms):
    with pytest.raises(PodnetError, match=r"^invalid VM list \(1 error\): vms: must be a list of VM objects"):
        build_plans(vms)


def test_hundreds_of_vms_are_cheap_to_plan():
    vms = [{"kind": "VM", "metadata": {"name": f"vm{i}"}} for i in range(500)]
    assert len(build_plans(vms)) == 500
