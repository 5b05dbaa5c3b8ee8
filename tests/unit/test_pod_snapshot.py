# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The "restored exactly" snapshot (tests/lib/pod_snapshot.py) reads what the plumbing writes."""

from __future__ import annotations

from lib import pod_snapshot
from lib.paths import module_utils


def test_every_sysctl_the_plumbing_sets_is_in_the_snapshot():
    netlink = module_utils("_netlink")
    written = {(family, key) for table in (netlink.IPV6_SYSCTLS, netlink.BRIDGE_ISOLATION_SYSCTLS,
                                           netlink.POD_ISOLATION_SYSCTLS) for family, key, _value in table}
    read = {(family, key) for family, keys in pod_snapshot.SYSCTLS.items() for key in keys}
    assert written <= read, f"the snapshot misses {sorted(written - read)}"


def test_only_the_kernels_own_qdisc_handles_are_left_out():
    assert pod_snapshot._stable_handle("8001:") == "auto:"
    assert pod_snapshot._stable_handle("8002:1") == "auto:1"
    assert pod_snapshot._stable_handle("ffff:") == "ffff:"
    assert pod_snapshot._stable_handle("ffff:fff1") == "ffff:fff1"
    assert pod_snapshot._stable_handle("1:") == "1:"
    assert pod_snapshot._stable_handle("0:") == "0:"
