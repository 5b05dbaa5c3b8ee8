# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Table-driven tests of the VM network spec: the cases are data in spec_cases.yaml."""

from __future__ import annotations

import builtins
import copy
from pathlib import Path

import pytest
import yaml

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils import _spec
from ansible_collections.virtnet.podnet.plugins.module_utils._spec import build_plan, validate_binding

CASES_FILE = Path(__file__).with_name("spec_cases.yaml")
TABLE = yaml.safe_load(CASES_FILE.read_text(encoding="utf-8"))
PLAN_CASES = TABLE["build_plan"]
ACCEPTED = [c for c in PLAN_CASES if "plan" in c]
REJECTED = [c for c in PLAN_CASES if "errors" in c]
BINDING_BASE = TABLE["validate_binding"]["base"]
BINDING_CASES = TABLE["validate_binding"]["cases"]

# The rules of issue 2 and what the table must hold for each: accepted (a) and/or rejected (r) cases.
RULES = {
    "default": "a",
    "both_lists": "r",
    "names": "ar",
    "pairing": "r",
    "one_interface": "r",
    "connection_method": "ar",
    "backend": "ar",
    "unknown_fields": "r",
    "delegate_ip": "r",
    "connectivity": "a",
    "kind": "ar",
    "other_parts": "a",
    "shape": "r",
    "pod_names": "ar",
    # Extensions beyond the seed spec (issue 12): KubeVirt's Interface.macAddress and Interface.dhcpOptions.
    "mac_address": "ar",
    "dhcp_options": "ar",
}
ERROR_KEYS = {"path", "msg", "allowed"}


def _param(case):
    marks = []
    if case.get("xfail"):
        raises = getattr(builtins, case["xfail_raises"]) if "xfail_raises" in case else None
        marks.append(pytest.mark.xfail(strict=True, raises=raises, reason=case["xfail"]))
    return pytest.param(case, id=case["id"], marks=marks)


def _raised_errors(call):
    with pytest.raises(PodnetError) as info:
        call()
    exc = info.value
    errors = exc.details.get("errors")
    assert isinstance(errors, list) and errors, "PodnetError carries no errors"
    for error in errors:
        assert set(error) == ERROR_KEYS
        assert isinstance(error["path"], str) and error["path"]
        assert isinstance(error["msg"], str) and error["msg"]
        assert error["allowed"] is None or isinstance(error["allowed"], str)
    return exc, errors


def _assert_expected_errors_present(errors, expected):
    for want in expected:
        candidates = [e for e in errors if e["path"] == want["path"]]
        assert candidates, f"no error at {want['path']!r}; got {errors}"
        matching = [e for e in candidates if want["msg"] in e["msg"]
                    and ("allowed" not in want or want["allowed"] in (e["allowed"] or ""))]
        assert matching, f"no error at {want['path']!r} with msg ~ {want['msg']!r} / allowed ~ {want.get('allowed')!r}: {candidates}"


# --- the table itself ---------------------------------------------------------------------------

def test_table_is_large_and_ids_unique():
    ids = [c["id"] for c in PLAN_CASES] + [f"binding-{c['id']}" for c in BINDING_CASES]
    assert len(ids) == len(set(ids))
    assert len(PLAN_CASES) >= 45
    assert all(("plan" in c) != ("errors" in c) for c in PLAN_CASES)


def test_table_covers_every_rule():
    for rule, kinds in RULES.items():
        cases = [c for c in PLAN_CASES if c["rule"] == rule]
        if "a" in kinds:
            assert any("plan" in c for c in cases), f"no accepted case for rule {rule}"
        if "r" in kinds:
            assert any("errors" in c and not c.get("xfail") for c in cases), f"no (passing) rejected case for rule {rule}"
    assert {c["rule"] for c in PLAN_CASES} <= set(RULES)


# --- build_plan -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", [_param(c) for c in ACCEPTED])
def test_accepted(case):
    kwargs = copy.deepcopy(case["input"])
    plan = build_plan(**kwargs)
    assert plan == case["plan"]
    # The VM object (metadata, disks, domain, ...) is left untouched.
    assert kwargs == case["input"]


@pytest.mark.parametrize("case", [_param(c) for c in REJECTED])
def test_rejected_exact_paths(case):
    kwargs = copy.deepcopy(case["input"])
    exc, errors = _raised_errors(lambda: build_plan(**kwargs))
    assert sorted(e["path"] for e in errors) == sorted(w["path"] for w in case["errors"]), exc.msg
    assert kwargs == case["input"]


@pytest.mark.parametrize("case", [_param(c) for c in REJECTED])
def test_rejected_messages(case):
    exc, errors = _raised_errors(lambda: build_plan(**copy.deepcopy(case["input"])))
    _assert_expected_errors_present(errors, case["errors"])
    # One readable msg naming every error (there are never more than 20 in the table).
    count = len(errors)
    assert exc.msg.startswith(f"invalid VM spec ({count} error{'s' if count != 1 else ''}): ")
    for error in errors:
        assert error["path"] in exc.msg and error["msg"] in exc.msg
    assert "Traceback" not in exc.msg


def test_default_plan_is_a_fresh_copy():
    first = build_plan({})
    first[0]["interface"] = "mutated"
    first.append("junk")
    assert build_plan({}) == [ACCEPTED[0]["plan"][0]]


def test_msg_lists_at_most_20_errors():
    interfaces = [{"name": f"if{i}", "bridge": {"delegateIp": "yes"}} for i in range(30)]
    networks = [{"name": f"if{i}", "pod": {}} for i in range(30)]
    exc, errors = _raised_errors(lambda: build_plan({"kind": "VM", "spec": {"devices": {"interfaces": interfaces}, "networks": networks}}))
    # 30 delegateIp errors, plus "has 30 interfaces" and "has 30 networks".
    assert len(errors) == 32
    assert exc.msg.startswith("invalid VM spec (32 errors): ")
    assert exc.msg.endswith("; ... and 12 more")
    assert "spec.devices.interfaces[19].bridge.delegateIp" in exc.msg
    assert "spec.devices.interfaces[20].bridge.delegateIp" not in exc.msg


# --- validate_binding -------------------------------------------------------------------------------

@pytest.mark.parametrize("vm, kwargs", [
    ({}, {}),
    ({"kind": "VM", "spec": {"devices": {"interfaces": [{"name": "red", "bridge": {}}]}, "networks": [{"name": "red", "pod": {}}]}},
     {"pod_interface": "ens3", "tap": "tap-red"}),
    ({"kind": "VM", "spec": {"devices": {"interfaces": [{"name": "red", "bridge": {"delegateIp": True}}]},
                             "networks": [{"name": "red", "pod": None}]}}, {}),
    ({"kind": "VM", "spec": {"devices": {"interfaces": [{
        "name": "red", "bridge": {"delegateIp": True}, "macAddress": "02-AB-00-00-00-01",
        "dhcpOptions": {"bootFileName": "pxelinux.0", "tftpServerName": "10.0.0.5", "ntpServers": ["10.0.0.1"],
                        "privateOptions": [{"option": 224, "value": "x"}]}}]},
        "networks": [{"name": "red", "pod": {}}]}}, {}),
], ids=["default", "ethernet_custom_names", "ip", "kubevirt_extensions"])
def test_binding_real_plan_entry_passes(vm, kwargs):
    entry = build_plan(vm, **kwargs)[0]
    original = copy.deepcopy(entry)
    clean = validate_binding(entry)
    assert clean == original
    assert clean is not entry
    assert entry == original


def _binding_for(case):
    if "binding" in case:
        return copy.deepcopy(case["binding"])
    binding = dict(BINDING_BASE)
    for key in case.get("unset", []):
        del binding[key]
    binding.update(copy.deepcopy(case.get("set", {})))
    return binding


@pytest.mark.parametrize("case", [_param(c) for c in BINDING_CASES])
def test_binding_rejected(case):
    binding = _binding_for(case)
    exc, errors = _raised_errors(lambda: validate_binding(binding))
    assert sorted(e["path"] for e in errors) == sorted(w["path"] for w in case["errors"]), exc.msg
    _assert_expected_errors_present(errors, case["errors"])
    assert exc.msg.startswith("invalid binding (")


def test_binding_without_the_extensions_is_exactly_the_old_binding():
    """Records of older versions store the binding and compare it for equality with new ones."""
    old_keys = ["interface", "network", "backend", "connection", "delegate_ip", "connectivity", "pod_interface",
                "bridge", "tap"]
    unset = {"name": "red", "bridge": {}, "macAddress": "", "dhcpOptions": None}
    for vm in ({}, {"kind": "VM", "spec": {"devices": {"interfaces": [unset]}, "networks": [{"name": "red", "pod": {}}]}}):
        entry = build_plan(vm)[0]
        assert list(entry) == old_keys
        assert list(validate_binding(entry)) == old_keys


def test_binding_extensions_are_normalised_like_the_spec():
    binding = dict(BINDING_BASE, mac_address="02-AB-CD-00-00-01",
                   dhcp_options={"ntp_servers": ["10.0.0.1"], "boot_file_name": "", "private_options": []})
    clean = validate_binding(binding)
    assert clean["mac_address"] == "02:ab:cd:00:00:01"
    assert clean["dhcp_options"] == {"ntp_servers": ["10.0.0.1"]}
    nothing_left = validate_binding(dict(BINDING_BASE, dhcp_options={"boot_file_name": ""}))
    assert "dhcp_options" not in nothing_left


def test_extension_errors_are_bounded_whatever_the_input():
    """A hostile spec (huge strings, thousands of entries) gives short errors, few of them."""
    vm = {"kind": "VM", "spec": {"devices": {"interfaces": [{
        "name": "red", "bridge": {"delegateIp": True}, "macAddress": "x" * 100000,
        "dhcpOptions": {"bootFileName": "y" * 100000, "ntpServers": ["1.2.3.4"] * 10000,
                        "privateOptions": [{"option": 224, "value": "z"}] * 10000, "k" * 10000: 1}}]},
        "networks": [{"name": "red", "pod": {}}]}}
    exc, errors = _raised_errors(lambda: build_plan(vm))
    assert len(errors) == 5, errors
    assert all(len(str(e["msg"])) + len(e["path"]) + len(e["allowed"] or "") < 300 for e in errors), errors
    assert len(exc.msg) < 2000


# --- registries: a new backend is a local addition; delegateIp stays pod-only -------------------

class _FakeBackend(_spec.Backend):
    name = "fake"
    description = "a backend that does not exist, registered only by this test"


def _vm_on(backend, bridge):
    return {"kind": "VM", "spec": {"devices": {"interfaces": [{"name": "red", "bridge": bridge}]},
                                   "networks": [{"name": "red", backend: {}}]}}


def test_delegate_ip_is_valid_only_with_the_pod_backend(monkeypatch):
    monkeypatch.setitem(_spec.BACKENDS, "fake", _FakeBackend())
    _exc, errors = _raised_errors(lambda: build_plan(_vm_on("fake", {"delegateIp": True})))
    assert [(e["path"], e["msg"]) for e in errors] == [
        ("spec.devices.interfaces[0].bridge.delegateIp", "is valid only with the pod backend, but network uses the 'fake' backend"),
        ("spec.devices.interfaces[0]", "is connected to a 'fake' network"),
    ]


def test_a_registered_backend_is_listed_but_only_pod_is_supported(monkeypatch):
    monkeypatch.setitem(_spec.BACKENDS, "fake", _FakeBackend())
    _exc, errors = _raised_errors(lambda: build_plan(_vm_on("fake", {})))
    assert [(e["path"], e["allowed"]) for e in errors] == [
        ("spec.devices.interfaces[0]", "a pod network (the only supported backend today)"),
    ]
    _exc, errors = _raised_errors(lambda: build_plan(_vm_on("multus", {})))
    assert errors[0]["path"] == "spec.networks[0].multus"
    assert errors[0]["allowed"] == "name, and one of fake, pod"
    # Adding a backend changes nothing for the pod network.
    assert build_plan(_vm_on("pod", {}))[0]["backend"] == "pod"
