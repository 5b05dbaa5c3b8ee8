# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the name-matching filters pair_by_name, unmatched_interfaces, unmatched_networks."""

from __future__ import annotations

import copy
import re

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.virtnet.podnet.plugins.filter.networks import (
    FilterModule,
    pair_by_name,
    unmatched_interfaces,
    unmatched_networks,
)

RED_IF = {"name": "red", "bridge": {"delegateIp": True}}
BLUE_IF = {"name": "blue", "bridge": {}}
GREEN_IF = {"name": "green", "bridge": None}
RED_NET = {"name": "red", "pod": {}}
BLUE_NET = {"name": "blue", "pod": None}
PINK_NET = {"name": "pink", "pod": {}}


def test_filter_module_exposes_the_three_filters():
    filters = FilterModule().filters()
    assert filters == {
        "pair_by_name": pair_by_name,
        "unmatched_interfaces": unmatched_interfaces,
        "unmatched_networks": unmatched_networks,
    }


# --- results ------------------------------------------------------------------------------------

def test_pair_by_name_spec_example():
    assert pair_by_name([RED_IF], [RED_NET]) == [{"name": "red", "interface": RED_IF, "network": RED_NET}]


def test_pair_by_name_keeps_interface_order_and_leaves_out_unmatched():
    interfaces = [GREEN_IF, BLUE_IF, RED_IF]
    networks = [RED_NET, PINK_NET, BLUE_NET]
    before = copy.deepcopy((interfaces, networks))
    assert pair_by_name(interfaces, networks) == [
        {"name": "blue", "interface": BLUE_IF, "network": BLUE_NET},
        {"name": "red", "interface": RED_IF, "network": RED_NET},
    ]
    assert (interfaces, networks) == before


def test_unmatched_interfaces_in_interface_order():
    assert unmatched_interfaces([GREEN_IF, RED_IF, {"name": "black"}], [RED_NET, PINK_NET]) == ["green", "black"]


def test_unmatched_networks_in_network_order():
    assert unmatched_networks([PINK_NET, RED_NET, {"name": "white", "pod": {}}], [RED_IF, GREEN_IF]) == ["pink", "white"]


def test_all_matched():
    assert unmatched_interfaces([RED_IF, BLUE_IF], [BLUE_NET, RED_NET]) == []
    assert unmatched_networks([BLUE_NET, RED_NET], [RED_IF, BLUE_IF]) == []


@pytest.mark.parametrize("interfaces, networks, pairs, lonely_interfaces, lonely_networks", [
    (None, None, [], [], []),
    ([], [], [], [], []),
    ([RED_IF], None, [], ["red"], []),
    (None, [RED_NET], [], [], ["red"]),
    ([RED_IF], [], [], ["red"], []),
], ids=["both_none", "both_empty", "networks_none", "interfaces_none", "networks_empty"])
def test_none_and_empty_inputs(interfaces, networks, pairs, lonely_interfaces, lonely_networks):
    assert pair_by_name(interfaces, networks) == pairs
    assert unmatched_interfaces(interfaces, networks) == lonely_interfaces
    assert unmatched_networks(networks, interfaces) == lonely_networks


def test_names_are_matched_exactly():
    """Matching is by exact name: case and white space matter (validation is vm_network_plan's job)."""
    interfaces = [{"name": "Red"}, {"name": "blue "}]
    networks = [{"name": "red"}, {"name": "blue"}]
    assert pair_by_name(interfaces, networks) == []
    assert unmatched_interfaces(interfaces, networks) == ["Red", "blue "]
    assert unmatched_networks(networks, interfaces) == ["red", "blue"]


def test_many_entries():
    interfaces = [{"name": f"n{i}"} for i in range(3000)]
    networks = [{"name": f"n{i}"} for i in reversed(range(1000, 4000))]
    assert [p["name"] for p in pair_by_name(interfaces, networks)] == [f"n{i}" for i in range(1000, 3000)]
    assert unmatched_interfaces(interfaces, networks) == [f"n{i}" for i in range(1000)]
    assert unmatched_networks(networks, interfaces) == [f"n{i}" for i in reversed(range(3000, 4000))]


# --- errors -------------------------------------------------------------------------------------

ERROR_CASES = [
    # (filter, input, argument, expected message)
    (pair_by_name, "red", [], "pair_by_name: interfaces must be a list, got string 'red'"),
    (pair_by_name, {"name": "red"}, [], "pair_by_name: interfaces must be a list, got a mapping"),
    (pair_by_name, [], 5, "pair_by_name: networks must be a list, got number 5"),
    (pair_by_name, [RED_IF], ["red"], "pair_by_name: networks[0] must be a mapping, got string 'red'"),
    (pair_by_name, [RED_IF, None], [RED_NET], "pair_by_name: interfaces[1] must be a mapping, got null"),
    (pair_by_name, [{"bridge": {}}], [RED_NET], "pair_by_name: interfaces[0].name must be a non-empty string, got null"),
    (pair_by_name, [{"name": ""}], [RED_NET], "pair_by_name: interfaces[0].name must be a non-empty string, got string ''"),
    (pair_by_name, [{"name": 7}], [RED_NET], "pair_by_name: interfaces[0].name must be a non-empty string, got number 7"),
    (pair_by_name, [RED_IF, {"name": "red"}], [RED_NET], "pair_by_name: interfaces has the name 'red' more than once"),
    (pair_by_name, [RED_IF], [RED_NET, PINK_NET, {"name": "pink"}], "pair_by_name: networks has the name 'pink' more than once"),
    (unmatched_interfaces, True, [], "unmatched_interfaces: interfaces must be a list, got boolean true"),
    (unmatched_interfaces, [RED_IF], [[RED_NET]], "unmatched_interfaces: networks[0] must be a mapping, got a list"),
    (unmatched_interfaces, [{}], [], "unmatched_interfaces: interfaces[0].name must be a non-empty string, got null"),
    (unmatched_interfaces, [RED_IF, RED_IF], [], "unmatched_interfaces: interfaces has the name 'red' more than once"),
    (unmatched_networks, "pod", [], "unmatched_networks: networks must be a list, got string 'pod'"),
    (unmatched_networks, [], {"red": {}}, "unmatched_networks: interfaces must be a list, got a mapping"),
    (unmatched_networks, [{"pod": {}}], [], "unmatched_networks: networks[0].name must be a non-empty string, got null"),
    (unmatched_networks, [RED_NET, RED_NET], [], "unmatched_networks: networks has the name 'red' more than once"),
    (unmatched_networks, [], [BLUE_IF, BLUE_IF], "unmatched_networks: interfaces has the name 'blue' more than once"),
]


@pytest.mark.parametrize("filter_function, value, argument, message", ERROR_CASES,
                         ids=[f"{c[0].__name__}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_errors(filter_function, value, argument, message):
    with pytest.raises(AnsibleFilterError, match=f"^{re.escape(message)}$"):
        filter_function(value, argument)


def test_long_values_are_shortened_in_messages():
    with pytest.raises(AnsibleFilterError) as info:
        pair_by_name("x" * 10000, [])
    assert len(str(info.value)) < 200


# An int of more than 4300 digits cannot be printed by Python (e.g. '{{ 10 ** 5000 }}' in a template).
@pytest.mark.parametrize("value", [10 ** 5000, [{"name": 10 ** 5000}]], ids=["input", "name"])
def test_huge_int_fails_clearly(value):
    with pytest.raises(AnsibleFilterError, match="pair_by_name: interfaces"):
        pair_by_name(value, [])
