# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Property tests: whatever build_plan is given, it returns a plan or fails clearly."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._spec import (
    MAX_LISTED_ERRORS, build_plan, validate_binding)

# database=None: no .hypothesis/ directory in the checkout; failures print their reproducing example.
SETTINGS = settings(max_examples=250, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# One listed error is a path, a problem and what is allowed; values and keys are shown at most 40 characters
# long, names at most 63, listings at most 5 names: a few hundred characters is plenty.
MAX_ERROR_TEXT = 600
MAX_MSG = 100 + (MAX_LISTED_ERRORS + 1) * (MAX_ERROR_TEXT + 2)

SPEC_WORDS = ["kind", "VM", "spec", "devices", "interfaces", "networks", "name", "bridge", "pod",
              "delegateIp", "masquerade", "multus", "metadata", "red", "default", "eth0",
              "macAddress", "dhcpOptions", "bootFileName", "tftpServerName", "ntpServers", "privateOptions",
              "option", "value", "02:00:00:00:00:01", "10.0.0.1"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.text(max_size=300), st.sampled_from(SPEC_WORDS),
)
keys = st.one_of(st.sampled_from(SPEC_WORDS), st.text(max_size=200))
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=6), st.dictionaries(keys, children, max_size=6)),
    max_leaves=40,
)

# VM-shaped input, so that the deeper rules are reached often, with junk anywhere.
names = st.one_of(st.sampled_from(["red", "blue", "default", "Red", "-x", "", "a" * 64]), json_like)
interface_items = st.one_of(
    st.fixed_dictionaries({}, optional={
        "name": names,
        "bridge": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"delegateIp": json_like}), json_like),
        "masquerade": json_like,
        "macAddress": st.one_of(st.sampled_from(["02:00:00:00:00:01", "02-00-00-00-00-01", "01:00:00:00:00:01", ""]),
                                json_like),
        "dhcpOptions": st.one_of(
            st.fixed_dictionaries({}, optional={
                "bootFileName": json_like, "tftpServerName": json_like,
                "ntpServers": st.one_of(st.lists(st.sampled_from(["10.0.0.1", "x"]) | json_like, max_size=3),
                                        json_like),
                "privateOptions": st.one_of(st.lists(st.one_of(
                    st.fixed_dictionaries({}, optional={"option": st.integers(220, 256) | json_like,
                                                        "value": json_like}), json_like), max_size=3), json_like),
            }),
            json_like),
    }).flatmap(lambda d: st.dictionaries(keys, json_like, max_size=2).map(lambda extra: {**extra, **d})),
    json_like,
)
network_items = st.one_of(
    st.fixed_dictionaries({}, optional={
        "name": names,
        "pod": st.one_of(st.none(), st.just({}), json_like),
        "multus": json_like,
    }),
    json_like,
)
vm_shaped = st.fixed_dictionaries({}, optional={
    "kind": st.one_of(st.just("VM"), st.just("VM"), json_like),
    "metadata": json_like,
    "spec": st.one_of(
        st.fixed_dictionaries({}, optional={
            "devices": st.one_of(
                st.fixed_dictionaries({}, optional={"interfaces": st.one_of(st.lists(interface_items, max_size=4), json_like),
                                                    "disks": json_like}),
                json_like),
            "networks": st.one_of(st.lists(network_items, max_size=4), json_like),
            "domain": json_like,
        }),
        json_like),
})
# Mostly valid, so that validation goes on to the spec (bad pod names end it early).
pod_names = st.one_of(st.just("eth0"), st.just("eth0"), st.just("ens3"), st.text(max_size=300))
tap_names = st.one_of(st.just("tap0"), st.just("tap0"), st.just("tap1"), st.text(max_size=300))


def _plan_or_clear_failure(vm, **kwargs):
    """Run build_plan; return the plan, or the PodnetError after checking it is a clear failure."""
    try:
        plan = build_plan(vm, **kwargs)
    except PodnetError as exc:
        errors = exc.details.get("errors")
        assert isinstance(errors, list) and errors
        for error in errors:
            assert isinstance(error, dict)
            assert isinstance(error["path"], str) and error["path"]
            assert isinstance(error["msg"], str) and error["msg"]
            assert error["allowed"] is None or isinstance(error["allowed"], str)
            text = f"{error['path']}: {error['msg']} (allowed: {error['allowed']})"
            assert len(text) <= MAX_ERROR_TEXT, text
        assert isinstance(exc.msg, str) and exc.msg.startswith("invalid VM spec (")
        assert len(exc.msg) <= MAX_MSG, f"msg is {len(exc.msg)} characters long"
        if len(errors) > MAX_LISTED_ERRORS:
            assert exc.msg.endswith(f"; ... and {len(errors) - MAX_LISTED_ERRORS} more")
        return exc
    # Anything else that is raised escapes and fails the test.
    assert isinstance(plan, list) and plan
    for entry in plan:
        assert entry["backend"] == "pod" and entry["connection"] == "bridge"
        assert entry["connectivity"] == ("ip" if entry["delegate_ip"] else "ethernet")
        assert validate_binding(entry) == entry  # the plan's extensions pass their second check unchanged
    return plan


def _clear_failure(vm, **kwargs):
    """Run build_plan on input it must refuse: the PodnetError, checked as _plan_or_clear_failure does."""
    result = _plan_or_clear_failure(vm, **kwargs)
    assert isinstance(result, PodnetError), f"build_plan accepted input it must refuse: {result!r:.300}"
    return result


@SETTINGS
@given(vm=json_like)
def test_arbitrary_json_plans_or_fails_clearly(vm):
    _plan_or_clear_failure(vm)


@SETTINGS
@given(vm=vm_shaped, pod_interface=pod_names, tap=tap_names)
def test_vm_shaped_junk_plans_or_fails_clearly(vm, pod_interface, tap):
    _plan_or_clear_failure(vm, pod_interface=pod_interface, tap=tap)


dns_labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\Z", fullmatch=True)
ifnames = st.from_regex(r"\A[a-z0-9]{1,11}\Z", fullmatch=True)


@SETTINGS
@given(
    name=dns_labels,
    delegate=st.sampled_from(["absent", "bridge-null", True, False]),
    pod=st.sampled_from([{}, None]),
    metadata=json_like,
    domain=json_like,
    pod_interface=ifnames,
    tap=ifnames,
)
def test_valid_spec_always_plans(name, delegate, pod, metadata, domain, pod_interface, tap):
    _check_valid_spec(name, delegate, pod, metadata, domain, pod_interface, tap)


mac_texts = st.tuples(st.integers(0, 2 ** 48 - 1), st.sampled_from([":", "-"]), st.booleans()).filter(
    lambda t: t[0] and not (t[0] >> 40) & 1)
option_texts = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60)


@SETTINGS
@given(
    name=dns_labels,
    mac=st.one_of(st.none(), mac_texts),
    boot=st.one_of(st.none(), option_texts),
    ntp=st.lists(st.ip_addresses(v=4).map(str), max_size=16),
    private=st.dictionaries(st.integers(224, 254), option_texts, max_size=31),
)
def test_valid_extensions_always_plan(name, mac, boot, ntp, private):
    interface = {"name": name, "bridge": {"delegateIp": True}}
    want = {}
    if mac is not None:
        number, separator, upper = mac
        text = separator.join(f"{b:02x}" for b in number.to_bytes(6, "big"))
        interface["macAddress"] = text.upper() if upper else text
        want["mac_address"] = ":".join(f"{b:02x}" for b in number.to_bytes(6, "big"))
    options = {}
    if boot is not None:
        options["bootFileName"] = boot
    if ntp:
        options["ntpServers"] = ntp
    if private:
        options["privateOptions"] = [{"option": k, "value": v} for k, v in private.items()]
    if options:
        interface["dhcpOptions"] = options
        want["dhcp_options"] = {key: value for key, value in (
            ("boot_file_name", boot), ("ntp_servers", ntp),
            ("private_options", [{"option": k, "value": v} for k, v in private.items()])) if value}
    vm = {"kind": "VM", "spec": {"devices": {"interfaces": [interface]}, "networks": [{"name": name, "pod": {}}]}}
    plan = build_plan(vm)
    assert plan == [dict({"interface": name, "network": name, "backend": "pod", "connection": "bridge",
                          "delegate_ip": True, "connectivity": "ip", "pod_interface": "eth0", "bridge": "k6t-eth0",
                          "tap": "tap0"}, **want)]
    assert validate_binding(plan[0]) == plan[0]


def _check_valid_spec(name, delegate, pod, metadata, domain, pod_interface, tap):
    if tap == pod_interface:
        tap = "t" + tap[:10] if tap[0] != "t" else "u" + tap[1:]
    if delegate == "bridge-null":
        bridge = None
    elif delegate == "absent":
        bridge = {}
    else:
        bridge = {"delegateIp": delegate}
    vm = {"kind": "VM", "metadata": metadata,
          "spec": {"domain": domain, "devices": {"interfaces": [{"name": name, "bridge": bridge}]},
                   "networks": [{"name": name, "pod": pod}]}}
    delegate_ip = delegate is True
    assert build_plan(vm, pod_interface=pod_interface, tap=tap) == [{
        "interface": name, "network": name, "backend": "pod", "connection": "bridge",
        "delegate_ip": delegate_ip, "connectivity": "ip" if delegate_ip else "ethernet",
        "pod_interface": pod_interface, "bridge": "k6t-" + pod_interface, "tap": tap,
    }]


# --- big and deep inputs, explicitly --------------------------------------------------------------

def _deep(depth, leaf):
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


@pytest.mark.parametrize("where", ["vm", "metadata", "devices", "interfaces", "bridge", "delegateIp", "pod", "name"])
def test_deep_nesting(where):
    deep = _deep(5000, "x")
    vm = {"kind": "VM", "spec": {"devices": {"interfaces": [{"name": "red", "bridge": {}}]}, "networks": [{"name": "red", "pod": {}}]}}
    if where == "vm":
        vm = [deep]
    elif where == "metadata":
        vm["metadata"] = deep
    elif where == "devices":
        vm["spec"]["devices"] = deep
    elif where == "interfaces":
        vm["spec"]["devices"]["interfaces"] = deep
    elif where == "bridge":
        vm["spec"]["devices"]["interfaces"][0]["bridge"] = {"delegateIp": True, "x": deep}
    elif where == "delegateIp":
        vm["spec"]["devices"]["interfaces"][0]["bridge"] = {"delegateIp": deep}
    elif where == "pod":
        vm["spec"]["networks"][0]["pod"] = deep
    else:
        vm["spec"]["networks"][0]["name"] = deep
    result = _plan_or_clear_failure(vm)
    assert isinstance(result, PodnetError) == (where != "metadata")


def test_thousands_of_matching_entries():
    n = 5000
    vm = {"kind": "VM", "spec": {"devices": {"interfaces": [{"name": f"n{i}", "bridge": {"delegateIp": "no"}} for i in range(n)]},
                                 "networks": [{"name": f"n{i}", "pod": {"x": 1}} for i in range(n)]}}
    exc = _clear_failure(vm)
    assert len(exc.details["errors"]) == 2 * n + 2
    assert exc.msg.endswith(f"; ... and {2 * n + 2 - MAX_LISTED_ERRORS} more")


def test_thousands_of_junk_entries():
    junk = [None, "red", 1, [], {}, {"name": None}, {"name": "x", "bridge": 1}, {"name": "y" * 100}]
    vm = {"kind": "VM", "spec": {"devices": {"interfaces": junk * 500}, "networks": junk * 500}}
    _clear_failure(vm)


def test_thousands_of_unmatched_names_keep_msg_bounded():
    n = 1000
    vm = {"kind": "VM", "spec": {"devices": {"interfaces": [{"name": f"interface-{i}", "bridge": {}} for i in range(n)]},
                                 "networks": [{"name": f"network-{i}", "pod": {}} for i in range(n)]}}
    exc = _clear_failure(vm)
    assert max(len(str(e)) for e in exc.details["errors"]) < 400
    assert len(exc.details["errors"]) == 2 * n + 2


def test_long_unknown_key_keeps_msg_bounded():
    vm = {"kind": "VM", "spec": {"devices": {"interfaces": [{"name": "red", "bridge": {}, "k" * 100000: 1}]},
                                 "networks": [{"name": "red", "pod": {}}]}}
    _clear_failure(vm)


def test_long_pod_interface_keeps_msg_bounded():
    _clear_failure({}, pod_interface="e" * 100000)


# Python refuses to print an int of more than 4300 digits; a shorter one must not flood msg either.
@pytest.mark.parametrize("where", ["delegateIp", "pod_interface", "key"])
def test_huge_int_fails_clearly(where):
    huge = 10 ** 5000
    vm = {"kind": "VM", "spec": {"devices": {"interfaces": [{"name": "red", "bridge": {}}]}, "networks": [{"name": "red", "pod": {}}]}}
    kwargs = {}
    if where == "delegateIp":
        vm["spec"]["devices"]["interfaces"][0]["bridge"]["delegateIp"] = huge
    elif where == "pod_interface":
        kwargs["pod_interface"] = huge
    else:
        vm["spec"]["devices"]["interfaces"][0][huge] = 1
    _clear_failure(vm, **kwargs)


def test_long_int_keeps_msg_bounded():
    interfaces = [{"name": f"n{i}", "bridge": {"delegateIp": 10 ** 4000}} for i in range(20)]
    networks = [{"name": f"n{i}", "pod": {}} for i in range(20)]
    _clear_failure({"kind": "VM", "spec": {"devices": {"interfaces": interfaces}, "networks": networks}})


def test_error_text_pattern():
    """Every listed error reads '<path>: <problem>' optionally followed by ' (allowed: ...)'."""
    exc = _clear_failure({"kind": "VM", "spec": {"devices": {"interfaces": [{"name": "red", "bridge": {"delegateIp": 1}}]},
                                                 "networks": [{"name": "red", "pod": {}}]}})
    assert re.fullmatch(r"invalid VM spec \(1 error\): spec\.devices\.interfaces\[0\]\.bridge\.delegateIp: "
                        r"must be a boolean, got number 1 \(allowed: true, false\)", exc.msg)
