# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_plumbing: the change planner on a faked pod (no netlink), MACs, groups and the lease."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _plumbing as plumbing
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._options import validate_options

from lib.pod_samples import BINDING, ROUTES_24, original

WHERE = ("/run/netns/pod1", {"inode": [4, 7], "cookie": 9}, "/run/virtnet-podnet", "pod1__eth0")


def options(**extra):
    return validate_options(dict({"netns": "pod1", "binding": BINDING}, **extra))


def test_pod_mac_is_locally_administered_deterministic_and_new():
    mac = plumbing.new_pod_mac("0a:58:0a:f4:01:0a", "salt")
    first = int(mac[:2], 16)
    assert first & 0x02 and not first & 0x01
    assert mac == plumbing.new_pod_mac("0a:58:0a:f4:01:0a", "salt")
    assert mac != plumbing.new_pod_mac("0a:58:0a:f4:01:0a", "other")
    assert mac != "0a:58:0a:f4:01:0a"


def test_lease_declaration_matches_internals_contract():
    cache = {"netns": "/run/netns/pod1", "netns_inode": [4, 4026532700], "binding": BINDING, "original": original()}
    extras = options(dns_servers=["10.96.0.10"], hostname="vm1", search_domains=["svc.cluster.local"])
    decl = plumbing.lease_declaration("pod1__eth0", cache, extras)
    assert set(decl) == {"version", "key", "netns", "netns_inode", "bridge", "tap", "vm_mac", "ip", "prefixlen",
                         "gateway", "routes", "mtu", "dns_servers", "search_domains", "hostname", "lease_time",
                         "netns_cookie"}
    assert decl["version"] == 1 and decl["vm_mac"] == "0a:58:0a:f4:01:0a" and decl["routes"][-1]["dst"] == "0.0.0.0/0"


# -- planning on a faked pod -----------------------------------------------------------

class FakeNetlink:
    """Stands in for the _netlink readers: the pod as a CNI left it."""

    def __init__(self, live, addrs):
        self.live, self.addrs = live, addrs

    def install(self, monkeypatch):
        monkeypatch.setattr(plumbing.nl, "links_named", self.links_named)
        monkeypatch.setattr(plumbing.nl, "addresses_by_index", lambda ipr, family=2: self.addrs)
        monkeypatch.setattr(plumbing.nl, "ifname", self.ifname)
        monkeypatch.setattr(plumbing.nl, "discover", self.discover)
        monkeypatch.setattr(plumbing.nl, "routes", lambda ipr, index: ROUTES_24)
        monkeypatch.setattr(plumbing.nl, "ipv6_autoconf_off", lambda name: True)

    @staticmethod
    def discover(ipr, name, link=None, ipv4=None):
        return original()

    def ifname(self, index):
        return next((n for n, v in self.live.items() if v["index"] == index), str(index))

    def links_named(self, ipr, names):
        return {n: v for n, v in self.live.items() if n in names}


def fresh_pod():
    live = {"eth0": {"name": "eth0", "index": 2, "kind": "veth", "mac": "0a:58:0a:f4:01:0a", "mtu": 1450,
                     "up": True, "master": None}}
    return FakeNetlink(live, {2: original()["ipv4"]})


def test_plan_fresh_pod_lists_every_step_in_order(monkeypatch, tmp_path):
    fake = fresh_pod()
    fake.install(monkeypatch)
    run_dir = str(tmp_path)
    cache, changes, live, addrs = plumbing.plan_present(None, WHERE[:2] + (run_dir, "pod1__eth0"), BINDING,
                                                        options(run_dir=run_dir), None)
    assert [c.step for c in changes] == list(plumbing.PRESENT_STEPS)
    assert cache["original"]["mac"] == "0a:58:0a:f4:01:0a"
    assert not os.listdir(run_dir), "planning wrote something"
    before = plumbing.pod_view(live, {"eth0": ["10.244.1.10/24"]}, BINDING, "eth0-nic")
    after = plumbing.predict_present(before, BINDING, cache)
    # The pod identity: the veth becomes the port eth0-nic, an inert eth0 keeps the MAC and the IP for kubelet.
    assert after["addresses"]["eth0-nic"] == [] and after["links"]["eth0-nic"]["master"] == "k6t-eth0"
    assert after["links"]["eth0-nic"]["mac"] == cache["pod_mac"]
    assert after["addresses"]["eth0"] == ["10.244.1.10/24"] and after["links"]["eth0"]["mac"] == "0a:58:0a:f4:01:0a"
    assert after["links"]["eth0"]["kind"] == plumbing.keeper_kind(cache) and after["links"]["eth0"]["master"] is None


@pytest.mark.parametrize("mutate, message", [
    (lambda live: live["eth0"].update(master=9) or live.update(br9={"name": "br9", "index": 9, "kind": "bridge",
                                                                    "mac": "", "mtu": 1500, "up": True,
                                                                    "master": None}), "enslaved to br9"),
    (lambda live: live.pop("eth0"), "eth0 not found"),
    (lambda live: live.update({"k6t-eth0": {"name": "k6t-eth0", "index": 5, "kind": "veth", "mac": "", "mtu": 1450,
                                            "up": True, "master": None}}), "not a bridge"),
    (lambda live: live.update({"tap0": {"name": "tap0", "index": 6, "kind": "tun", "tun_type": 1, "mac": "",
                                        "mtu": 1450, "up": True, "master": None, "multiqueue": False}}),
     "not a tap"),
])
def test_plan_rejects_bad_pods(monkeypatch, tmp_path, mutate, message):
    fake = fresh_pod()
    mutate(fake.live)
    fake.install(monkeypatch)
    with pytest.raises(PodnetError, match=message):
        plumbing.plan_present(None, WHERE, BINDING, options(), None)


def test_plan_rejects_delegate_without_ipv4_or_gateway(monkeypatch, tmp_path):
    fake = fresh_pod()
    fake.install(monkeypatch)
    monkeypatch.setattr(plumbing.nl, "discover", lambda ipr, name, link=None, ipv4=None: original(ipv4=[]))
    with pytest.raises(PodnetError, match="nothing to delegate"):
        plumbing.plan_present(None, WHERE, BINDING, options(), None)
    no_gateway = [r for r in ROUTES_24 if not r["gateway"]]
    monkeypatch.setattr(plumbing.nl, "discover", lambda ipr, name, link=None, ipv4=None: original(routes=no_gateway))
    with pytest.raises(PodnetError, match="no route through a gateway"):
        plumbing.plan_present(None, WHERE, BINDING, options(), None)


def test_plan_with_cache_for_other_binding_fails(monkeypatch, tmp_path):
    fresh_pod().install(monkeypatch)
    cache = {"binding": dict(BINDING, tap="tap1"), "original": original(), "pod_mac": "02:00:00:00:00:01",
             "key": "pod1__eth0"}
    with pytest.raises(PodnetError, match="another binding"):
        plumbing.plan_present(None, WHERE, BINDING, options(), cache)


def test_link_group_is_stable_and_tagged():
    assert plumbing.link_group("k6t-eth0") == plumbing.link_group("k6t-eth0")
    assert plumbing.link_group("k6t-eth0") & 0xFFFF0000 == plumbing.GROUP_BASE
