# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_pod_bridge logic without netlink: options, facts, lease declaration, planning on a faked pod."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_bridge as pb
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

BINDING = {"interface": "default", "network": "default", "backend": "pod", "connection": "bridge",
           "delegate_ip": True, "connectivity": "ip", "pod_interface": "eth0", "bridge": "k6t-eth0", "tap": "tap0"}

ROUTES_24 = [
    {"dst": None, "dst_len": 0, "gateway": "10.244.1.1", "scope": 0, "proto": 3, "type": 1, "table": 254,
     "priority": None, "prefsrc": None, "tos": 0, "onlink": False},
    {"dst": "10.244.1.0", "dst_len": 24, "gateway": None, "scope": 253, "proto": 2, "type": 1, "table": 254,
     "priority": None, "prefsrc": "10.244.1.10", "tos": 0, "onlink": False},
]
ROUTES_CALICO = [
    {"dst": None, "dst_len": 0, "gateway": "169.254.1.1", "scope": 0, "proto": 3, "type": 1, "table": 254,
     "priority": None, "prefsrc": None, "tos": 0, "onlink": False},
    {"dst": "169.254.1.1", "dst_len": 32, "gateway": None, "scope": 253, "proto": 3, "type": 1, "table": 254,
     "priority": None, "prefsrc": None, "tos": 0, "onlink": False},
]


def original(routes=None, ipv4=None):
    routes = ROUTES_24 if routes is None else routes
    return {"name": "eth0", "mac": "0a:58:0a:f4:01:0a", "mtu": 1450, "up": True, "kind": "veth", "master": None,
            "ipv4": [{"address": "10.244.1.10", "prefixlen": 24, "scope": 0, "flags": 128, "peer": None,
                      "broadcast": None, "label": "eth0"}] if ipv4 is None else ipv4,
            "ipv6": [], "routes": routes}


def options(**extra):
    return pb.validate_options(dict({"netns": "pod1", "binding": BINDING}, **extra))


# -- options --------------------------------------------------------------------

def test_options_defaults():
    p = options()
    assert p["run_dir"] == "/run/virtnet-podnet" and p["lease_time"] == 86400
    assert p["dns_servers"] == [] and p["search_domains"] == [] and p["multiqueue"] is False


@pytest.mark.parametrize("bad, field", [
    ({"tap_uid": -1}, "tap_uid"),
    ({"tap_gid": "qemu"}, "tap_gid"),
    ({"pod_mac": "01:00:5e:00:00:01"}, "pod_mac"),  # multicast
    ({"pod_mac": "zz"}, "pod_mac"),
    ({"dns_servers": ["10.96.0.10", "dns.example"]}, "dns_servers[1]"),
    ({"search_domains": ["bad domain"]}, "search_domains[0]"),
    ({"hostname": "-vm"}, "hostname"),
    ({"lease_time": 0}, "lease_time"),
    ({"lease_time": True}, "lease_time"),
    ({"run_dir": "relative/dir"}, "run_dir"),
])
def test_bad_options_name_the_option(bad, field):
    with pytest.raises(PodnetError) as err:
        options(**bad)
    assert field in err.value.msg


def test_all_bad_options_in_one_message():
    with pytest.raises(PodnetError) as err:
        options(tap_uid=-1, hostname="-x", lease_time=1)
    assert len(err.value.details["errors"]) == 3


def test_pod_mac_is_locally_administered_deterministic_and_new():
    mac = pb.new_pod_mac("0a:58:0a:f4:01:0a", "salt")
    first = int(mac[:2], 16)
    assert first & 0x02 and not first & 0x01
    assert mac == pb.new_pod_mac("0a:58:0a:f4:01:0a", "salt")
    assert mac != pb.new_pod_mac("0a:58:0a:f4:01:0a", "other")
    assert mac != "0a:58:0a:f4:01:0a"


# -- facts --------------------------------------------------------------------------

def test_gateway_and_option_121_routes_flannel():
    orig = original()
    assert pb.gateway_of(orig) == "10.244.1.1"
    assert pb.dhcp_routes(orig) == [{"dst": "10.244.1.0/24", "gateway": None},
                                    {"dst": "0.0.0.0/0", "gateway": "10.244.1.1"}]


def test_gateway_and_option_121_routes_calico():
    orig = original(routes=ROUTES_CALICO, ipv4=[{"address": "10.245.1.10", "prefixlen": 32, "scope": 0,
                                                 "flags": 128, "peer": None, "broadcast": None, "label": "eth0"}])
    assert pb.gateway_of(orig) == "169.254.1.1"
    assert pb.dhcp_routes(orig) == [{"dst": "169.254.1.1/32", "gateway": None},
                                    {"dst": "0.0.0.0/0", "gateway": "169.254.1.1"}]


def test_launcher_facts_snippets():
    facts = pb.launcher_facts(BINDING, original(), options(multiqueue=True))
    assert facts["vm_mac"] == "0a:58:0a:f4:01:0a" and facts["ip"] == "10.244.1.10" and facts["prefixlen"] == 24
    assert facts["qemu_args"][0] == "-netdev" and facts["qemu_args"][2] == "-device"
    assert "ifname=tap0,script=no,downscript=no" in facts["qemu_args"][1]
    assert "mac=0a:58:0a:f4:01:0a" in facts["qemu_args"][3] and "mq=on" in facts["qemu_args"][3]
    xml = facts["libvirt_interface_xml"]
    assert xml.startswith("<interface type='ethernet'>") and "<target dev='tap0' managed='no'/>" in xml
    assert "<mtu size='1450'/>" in xml


def test_ethernet_mode_has_no_ip_facts():
    binding = dict(BINDING, delegate_ip=False, connectivity="ethernet")
    facts = pb.launcher_facts(binding, original(), options())
    assert facts["ip"] is None and facts["gateway"] is None and facts["routes"] == []


def test_lease_declaration_matches_internals_contract():
    cache = {"netns": "/run/netns/pod1", "netns_inode": [4, 4026532700], "binding": BINDING, "original": original()}
    decl = pb.lease_declaration("pod1__eth0", cache, options(dns_servers=["10.96.0.10"], hostname="vm1",
                                                             search_domains=["svc.cluster.local"]))
    assert set(decl) == {"version", "key", "netns", "netns_inode", "bridge", "tap", "vm_mac", "ip", "prefixlen",
                         "gateway", "routes", "mtu", "dns_servers", "search_domains", "hostname", "lease_time"}
    assert decl["version"] == 1 and decl["vm_mac"] == "0a:58:0a:f4:01:0a" and decl["routes"][-1]["dst"] == "0.0.0.0/0"


def test_declare_and_withdraw_lease(tmp_path):
    run_dir = str(tmp_path / "run")
    pb.declare_lease(run_dir, {"key": "pod1__eth0", "ip": "10.244.1.10"})
    path = os.path.join(run_dir, "leases", "pod1__eth0.json")
    assert json.load(open(path))["ip"] == "10.244.1.10"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert pb.withdraw_lease(run_dir, "pod1__eth0") is True
    assert pb.withdraw_lease(run_dir, "pod1__eth0") is False


# -- planning on a faked pod -----------------------------------------------------------

class FakeNetlink:
    """Stands in for the _netlink readers: the pod as a CNI left it."""

    def __init__(self, live, addrs):
        self.live, self.addrs = live, addrs

    def install(self, monkeypatch):
        monkeypatch.setattr(pb.nl, "links_named", self.links_named)
        monkeypatch.setattr(pb.nl, "addresses_by_index", lambda ipr, family=2: self.addrs)
        monkeypatch.setattr(pb.nl, "ifname", self.ifname)
        monkeypatch.setattr(pb.nl, "discover", self.discover)
        monkeypatch.setattr(pb.nl, "routes", lambda ipr, index: ROUTES_24)
        monkeypatch.setattr(pb.nl, "ipv6_autoconf_off", lambda name: True)

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
    cache, changes, live, addrs = pb.plan_present(None, run_dir, "pod1__eth0", "/run/netns/pod1", [4, 7], BINDING,
                                                  options(run_dir=run_dir), None)
    assert [c.step for c in changes] == list(pb.PRESENT_STEPS)
    assert cache["original"]["mac"] == "0a:58:0a:f4:01:0a"
    assert not os.listdir(run_dir), "planning wrote something"
    before = pb.pod_view(live, {"eth0": ["10.244.1.10/24"]}, BINDING)
    after = pb.predict_present(before, BINDING, cache)
    assert after["addresses"]["eth0"] == [] and after["links"]["eth0"]["master"] == "k6t-eth0"
    assert after["links"]["eth0"]["mac"] == cache["pod_mac"]


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
        pb.plan_present(None, str(tmp_path), "k", "/run/netns/pod1", [4, 7], BINDING, options(), None)


def test_plan_rejects_delegate_without_ipv4_or_gateway(monkeypatch, tmp_path):
    fake = fresh_pod()
    fake.install(monkeypatch)
    monkeypatch.setattr(pb.nl, "discover", lambda ipr, name, link=None, ipv4=None: original(ipv4=[]))
    with pytest.raises(PodnetError, match="nothing to delegate"):
        pb.plan_present(None, str(tmp_path), "k", "/run/netns/pod1", [4, 7], BINDING, options(), None)
    no_gateway = [r for r in ROUTES_24 if not r["gateway"]]
    monkeypatch.setattr(pb.nl, "discover", lambda ipr, name, link=None, ipv4=None: original(routes=no_gateway))
    with pytest.raises(PodnetError, match="no route through a gateway"):
        pb.plan_present(None, str(tmp_path), "k", "/run/netns/pod1", [4, 7], BINDING, options(), None)


def test_plan_with_cache_for_other_binding_fails(monkeypatch, tmp_path):
    fresh_pod().install(monkeypatch)
    cache = {"binding": dict(BINDING, tap="tap1"), "original": original(), "pod_mac": "02:00:00:00:00:01"}
    with pytest.raises(PodnetError, match="another binding"):
        pb.plan_present(None, str(tmp_path), "k", "/run/netns/pod1", [4, 7], BINDING, options(), cache)


def test_run_rejects_unknown_state():
    with pytest.raises(PodnetError, match="state"):
        pb.run({"state": "plumbed"})


def test_crash_hook_exits_right_after_the_named_step():
    code = ("import sys; sys.path[:0] = {path!r}; "
            "from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_bridge as pb; "
            "pb.step_done('bridge'); print('survived bridge'); pb.step_done('tap'); print('not reached')")
    proc = subprocess.run([sys.executable, "-c", code.format(path=sys.path)], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, VIRTNET_PODNET_CRASH_AFTER="tap"), check=False)
    assert proc.returncode == pb.CRASH_EXIT_CODE
    assert proc.stdout.strip() == "survived bridge"


# -- raw rtnetlink encoding and parsing ------------------------------------------------------

def test_nla_padding_and_parse_round_trip():
    from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as nl
    blob = nl._nla(nl.IFLA_IFNAME, b"tap0\0") + nl._u32(nl.IFLA_MTU, 1450) + nl._nla(nl.IFLA_ADDRESS, b"\x02" * 6)
    assert len(blob) % 4 == 0
    attrs = nl._parse_attrs(blob, 0, len(blob))
    assert nl._str(attrs[nl.IFLA_IFNAME]) == "tap0" and nl._int(attrs[nl.IFLA_MTU]) == 1450
    assert attrs[nl.IFLA_ADDRESS] == b"\x02" * 6


def test_link_view_raw_parses_a_bridge_port_tap():
    from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as nl
    import struct
    tun = (nl._u32(nl.IFLA_TUN_OWNER, 107) + nl._u32(nl.IFLA_TUN_GROUP, 0xFFFFFFFF)
           + nl._nla(nl.IFLA_TUN_TYPE, b"\x02") + nl._nla(nl.IFLA_TUN_MULTI_QUEUE, b"\x01"))
    port = nl._nla(nl.IFLA_BRPORT_LEARNING, b"\x00")
    info = (nl._nla(nl.IFLA_INFO_KIND, b"tun\0") + nl._nla(nl.IFLA_INFO_DATA | nl.NLA_F_NESTED, tun)
            + nl._nla(nl.IFLA_INFO_SLAVE_KIND, b"bridge\0") + nl._nla(nl.IFLA_INFO_SLAVE_DATA | nl.NLA_F_NESTED, port))
    body = (struct.pack("=BxHiII", 0, 1, 7, 1, 0) + nl._nla(nl.IFLA_IFNAME, b"tap0\0")
            + nl._nla(nl.IFLA_ADDRESS, bytes.fromhex("0a58000000ff")) + nl._u32(nl.IFLA_MTU, 1450)
            + nl._u32(nl.IFLA_MASTER, 5) + nl._u32(nl.IFLA_GROUP, 42) + nl._nla(nl.IFLA_LINKINFO | nl.NLA_F_NESTED, info))
    view = nl.link_view_raw(body)
    assert view == {"name": "tap0", "index": 7, "kind": "tun", "mac": "0a:58:00:00:00:ff", "mtu": 1450, "up": True,
                    "master": 5, "group": 42, "tun_type": 2, "uid": 107, "gid": None, "multiqueue": True,
                    "persist": False, "learning": False}


def test_link_group_is_stable_and_tagged():
    assert pb.link_group("k6t-eth0") == pb.link_group("k6t-eth0")
    assert pb.link_group("k6t-eth0") & 0xFFFF0000 == pb.GROUP_BASE
