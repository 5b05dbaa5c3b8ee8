# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_vm_batch.plan_vms: the vm_network role's entries checked at once and turned into vm_pod_bridge's pods.

Namespace files are faked: ``FakeStat`` answers os.stat for a few paths, so two spellings of one
namespace are two paths with one (st_dev, st_ino). tests/integration/test_roles.py does the same
with real namespaces through the role.
"""

from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._spec import MAX_LISTED_ERRORS, build_plan
from ansible_collections.virtnet.podnet.plugins.module_utils._vm_batch import POD_EXTRAS, plan_vms

NSFS = 4  # the st_dev of every namespace file
# path -> inode; pod1 is also the namespace of process 42, pod2 of process 43.
NAMESPACES = {"/run/netns/pod1": 4026532001, "/proc/42/ns/net": 4026532001,
              "/run/netns/pod2": 4026532002, "/proc/43/ns/net": 4026532002,
              "/run/netns/pod3": 4026532003, "/var/run/pods/p4/net": 4026532004}
DENIED = "/run/netns/secret"


class FakeStat:
    """os.stat for the namespaces above; records the paths it was asked for."""

    def __init__(self):
        self.asked = []

    def __call__(self, path):
        self.asked.append(path)
        if path == DENIED:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        if path not in NAMESPACES:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return os.stat_result((0o100444, NAMESPACES[path], NSFS, 1, 0, 0, 0, 0, 0, 0))


def vm(name=None, **spec):
    obj = {"kind": "VM"}
    if name:
        obj["metadata"] = {"name": name}
    obj.update(spec)
    return obj


def run(entries, state="present", **kwargs):
    return plan_vms(entries, state=state, stat=FakeStat(), **kwargs)


BAD_SPEC = {"spec": {"devices": {"interfaces": [{"name": "red", "bridge": {"delegateIp": "yes"}}]},
                     "networks": [{"name": "red", "pod": {}}]}}

# Rejected batches: (id, entries, state, [(index, vm, path, substring of msg)]) - exactly these errors, in order.
REJECTED = [
    ("netns_missing", [{"vm": vm("a")}], "present", [(0, "a", "netns", "is required")]),
    ("netns_null", [{"vm": vm("a"), "netns": None}], "present", [(0, "a", "netns", "is required")]),
    ("netns_empty", [{"vm": vm("a"), "netns": ""}], "absent", [(0, "a", "netns", "is required")]),
    ("netns_not_a_string", [{"vm": vm("a"), "netns": 7}], "present", [(0, "a", "netns", "must be a namespace name")]),
    ("netns_bad_name", [{"vm": vm("a"), "netns": "pod 1"}], "present", [(0, "a", "netns", "is not a valid namespace name")]),
    ("netns_relative", [{"vm": vm("a"), "netns": "pods/p1"}], "present", [(0, "a", "netns", "is a relative path")]),
    ("namespace_gone", [{"vm": vm("a"), "netns": "pod1"}, {"vm": vm("b"), "netns": "gone"}], "present",
     [(1, "b", "netns", "the namespace 'gone' does not exist (/run/netns/gone)")]),
    ("namespace_unreadable", [{"vm": vm("a"), "netns": "secret"}], "present",
     [(0, "a", "netns", "cannot be checked (/run/netns/secret: Permission denied)")]),
    ("duplicate", [{"vm": vm("a"), "netns": "pod1"}, {"vm": vm("b"), "netns": "pod2"}, {"vm": vm("c"), "netns": "pod1"}],
     "present", [(2, "c", "netns", "'pod1' is also the pod namespace of a (vms[0])")]),
    ("duplicate_name_and_path", [{"vm": vm("a"), "netns": "pod1"}, {"vm": vm("b"), "netns": "/run/netns//pod1"}],
     "present", [(1, "b", "netns", "is also the pod namespace of a (vms[0]) (as 'pod1')")]),
    ("duplicate_gone_absent", [{"vm": vm("a"), "netns": "gone"}, {"vm": vm("b"), "netns": "gone"}], "absent",
     [(1, "b", "netns", "'gone' is also the pod namespace of a (vms[0])")]),
    ("two_spellings", [{"vm": vm("a"), "netns": "pod1"}, {"vm": vm("b"), "netns": "/proc/42/ns/net"}], "present",
     [(1, "b", "netns", "'/proc/42/ns/net' is the same namespace as 'pod1' of a (vms[0])")]),
    ("two_spellings_absent", [{"vm": vm("a"), "netns": "/proc/43/ns/net"}, {"vm": vm(), "netns": "pod2"}], "absent",
     [(1, None, "netns", "'pod2' is the same namespace as '/proc/43/ns/net' of a (vms[0])")]),
    ("three_share_one", [{"vm": vm("a"), "netns": "pod1"}, {"vm": vm("b"), "netns": "/proc/42/ns/net"},
                         {"vm": vm("c"), "netns": "pod1"}], "present",
     [(1, "b", "netns", "same namespace as 'pod1' of a (vms[0])"), (2, "c", "netns", "also the pod namespace of a (vms[0])")]),
    ("vm_missing", [{"netns": "pod1"}], "present", [(0, None, "vm", "is required")]),
    ("not_a_mapping", [{"vm": vm("a"), "netns": "pod1"}, "vm-b"], "present",
     [(1, None, "", "must be a mapping with vm and netns, got string 'vm-b'")]),
    ("unknown_key", [{"vm": vm("a"), "netns": "pod1", "dns": ["10.0.0.1"]}], "present",
     [(0, "a", "dns", "unknown key of a VM entry")]),
    ("bad_types", [{"vm": vm("a"), "netns": "pod1", "tap_uid": "qemu", "multiqueue": "maybe", "dns_servers": {"a": 1}}],
     "present", [(0, "a", "tap_uid", "cannot be string 'qemu'"), (0, "a", "multiqueue", "cannot be string 'maybe'"),
                 (0, "a", "dns_servers", "cannot be a mapping")]),
    ("spec_and_netns_of_one_vm", [{"vm": vm("a", **BAD_SPEC)}], "present",
     [(0, "a", "spec.devices.interfaces[0].bridge.delegateIp", "must be a boolean"), (0, "a", "netns", "is required")]),
]


@pytest.mark.parametrize("entries, state, expected", [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected(entries, state, expected):
    with pytest.raises(PodnetError) as info:
        run(entries, state)
    got = [(e["index"], e["vm"], e["path"]) for e in info.value.details["errors"]]
    assert got == [item[:3] for item in expected]
    for error, (_index, _vm, _path, text) in zip(info.value.details["errors"], expected):
        assert text in error["msg"], error
    invalid = len({item[0] for item in expected})
    count = f"{len(expected)} error" + ("s" if len(expected) != 1 else "")
    assert info.value.msg.startswith(f"invalid VMs ({count} in {invalid} of {len(entries)} VMs): ")


# Accepted batches: (id, entries, state, expected pods).
BINDING = build_plan({})[0]
ACCEPTED = [
    ("one", [{"vm": vm("a"), "netns": "pod1"}], "present", [{"netns": "pod1", "binding": BINDING, "hostname": "a"}]),
    ("distinct_spellings_of_distinct_pods",
     [{"vm": vm("a"), "netns": "/proc/42/ns/net"}, {"vm": vm("b"), "netns": "pod2"}, {"vm": vm("c"), "netns": "/var/run/pods/p4/net"}],
     "present", [{"netns": "/proc/42/ns/net", "binding": BINDING, "hostname": "a"},
                 {"netns": "pod2", "binding": BINDING, "hostname": "b"},
                 {"netns": "/var/run/pods/p4/net", "binding": BINDING, "hostname": "c"}]),
    ("gone_with_absent", [{"vm": vm("a"), "netns": "pod1"}, {"vm": vm("b"), "netns": "gone"}], "absent",
     [{"netns": "pod1", "binding": BINDING, "hostname": "a"}, {"netns": "gone", "binding": BINDING, "hostname": "b"}]),
    ("no_name_no_hostname", [{"vm": {}, "netns": "pod1"}], "present", [{"netns": "pod1", "binding": BINDING}]),
    ("own_hostname_and_extras",
     [{"vm": vm("a"), "netns": "pod1", "hostname": "web-1", "dns_servers": ["10.96.0.10"], "search_domains": "svc.local",
       "lease_time": "3600", "tap_uid": 107, "tap_gid": "107", "multiqueue": "yes", "pod_mac": "02:00:00:00:00:01"}],
     "present", [{"netns": "pod1", "binding": BINDING, "hostname": "web-1", "dns_servers": ["10.96.0.10"],
                  "search_domains": ["svc.local"], "lease_time": 3600, "tap_uid": 107, "tap_gid": 107, "multiqueue": True,
                  "pod_mac": "02:00:00:00:00:01"}]),
    ("null_extras_left_out", [{"vm": vm("a"), "netns": "pod1", "dns_servers": None, "lease_time": None}], "present",
     [{"netns": "pod1", "binding": BINDING, "hostname": "a"}]),
    ("empty_dns_list_kept", [{"vm": vm("a"), "netns": "pod1", "dns_servers": []}], "present",
     [{"netns": "pod1", "binding": BINDING, "hostname": "a", "dns_servers": []}]),
    ("none", [], "present", []),
]


@pytest.mark.parametrize("entries, state, pods", [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted(entries, state, pods):
    result = run(entries, state)
    assert result["pods"] == pods
    assert [p["vm_name"] for p in result["plans"]] == [e["vm"].get("metadata", {}).get("name") for e in entries]
    assert [p["netns"] for p in result["plans"]] == [e["netns"] for e in entries]
    assert [p["plan"] for p in result["plans"]] == [[BINDING]] * len(entries)


def test_vms_label_the_results():
    result = run([{"vm": vm("a", spec={"devices": {"interfaces": [{"name": "red", "bridge": {}}]},
                                       "networks": [{"name": "red", "pod": {}}]}), "netns": "pod1"},
                  {"vm": {}, "netns": "pod2"}])
    assert result["vms"] == [{"name": "a", "netns": "pod1", "connectivity": "ethernet"},
                             {"name": "vms[1]", "netns": "pod2", "connectivity": "ip"}]


def test_pod_interface_and_tap_reach_the_binding():
    result = run([{"vm": {}, "netns": "pod1"}], pod_interface="ens3", tap="tap7")
    assert result["pods"][0]["binding"]["bridge"] == "k6t-ens3"
    assert result["pods"][0]["binding"]["tap"] == "tap7"


def test_every_namespace_is_looked_at_once_by_its_path():
    stat = FakeStat()
    plan_vms([{"vm": {}, "netns": "pod1"}, {"vm": {}, "netns": "/proc/43/ns/net"}], stat=stat)
    assert stat.asked == ["/run/netns/pod1", "/proc/43/ns/net"]


def test_every_error_of_every_vm_at_once():
    entries = [{"vm": vm("ok"), "netns": "pod1"},
               {"vm": vm("bad-spec", **BAD_SPEC), "netns": "pod2"},
               {"vm": vm("same-pod"), "netns": "/proc/42/ns/net"},
               {"vm": vm("no-pod")},
               {"vm": vm("gone"), "netns": "gone"}]
    with pytest.raises(PodnetError) as info:
        run(entries)
    msg = info.value.msg
    assert msg.startswith("invalid VMs (4 errors in 4 of 5 VMs): bad-spec (vms[1]): spec.devices.interfaces[0].bridge.delegateIp: ")
    for text in ("same-pod (vms[2]): netns: '/proc/42/ns/net' is the same namespace as 'pod1' of ok (vms[0])",
                 "no-pod (vms[3]): netns: is required", "gone (vms[4]): netns: the namespace 'gone' does not exist"):
        assert text in msg
    assert sorted({e["index"] for e in info.value.details["errors"]}) == [1, 2, 3, 4]  # vms[0] is fine


def test_many_errors_are_counted_beyond_the_listed():
    entries = [{"vm": vm(f"vm{i}")} for i in range(MAX_LISTED_ERRORS + 5)]
    with pytest.raises(PodnetError) as info:
        run(entries)
    assert len(info.value.details["errors"]) == MAX_LISTED_ERRORS + 5
    assert info.value.msg.endswith("... and 5 more")


@pytest.mark.parametrize("vms", [None, "pod1", {"vm": {}, "netns": "pod1"}, 3], ids=["null", "string", "mapping", "int"])
def test_not_a_list_is_a_clear_error(vms):
    with pytest.raises(PodnetError, match=r"^invalid VM list \(1 error\): vms: must be a list of \{vm, netns\} entries"):
        run(vms)


def test_unknown_state_is_a_clear_error():
    with pytest.raises(PodnetError, match=r"state: must be one of present, absent, got string 'gone'"):
        run([], state="gone")


def test_extras_are_vm_pod_bridge_per_pod_options():
    # The keys a VM entry may carry beside vm and netns are vm_pod_bridge's per-pod options.
    from ansible_collections.virtnet.podnet.plugins.modules import vm_pod_bridge
    import yaml
    doc = yaml.safe_load(vm_pod_bridge.DOCUMENTATION)
    per_pod = set(doc["options"]["pods"]["suboptions"]) - {"netns", "binding"}
    assert set(POD_EXTRAS) == per_pod


def test_hundreds_of_vms_are_planned_with_one_stat_each():
    inodes = {f"/run/netns/p{i}": 5000 + i for i in range(500)}
    asked = []

    def stat(path):
        asked.append(path)
        return os.stat_result((0o100444, inodes[path], NSFS, 1, 0, 0, 0, 0, 0, 0))

    result = plan_vms([{"vm": vm(f"vm{i}"), "netns": f"p{i}"} for i in range(500)], stat=stat)
    assert len(result["pods"]) == 500 and len(asked) == 500
    assert [p["hostname"] for p in result["pods"]][-1] == "vm499"
