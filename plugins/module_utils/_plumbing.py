# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the change planner of vm_pod_bridge (want / have / changes).

``plan_present`` and ``plan_absent`` read the live pod (``_netlink``), compare it with what
is wanted and return the list of ``Change``s, one per step, in the order they must run.
Nothing here changes the pod: the runner (``_pod_bridge``) applies the list, or in check
mode only reports it, so check mode predicts exactly what a real run does. Every step is
ensure-style (the CNI bridge plugin's way): what already is as wanted adds no change, and a
link of the wrong type is refused before any change.
"""

from __future__ import annotations

import hashlib
import os
import zlib

from ansible_collections.virtnet.podnet.plugins.module_utils import _launcher
from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as nl
from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_facts
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

GROUP_BASE = 0x6B740000  # "kt": device group of the bridge and tap, for one batched delete
PRESENT_STEPS = ("cache", "bridge", "pod_port", "pod_learning", "tap", "tap_config", "bridge_up", "filters",
                 "delegate", "lease")
ABSENT_STEPS = ("absent_lease", "absent_links", "absent_tap", "absent_bridge", "absent_filters", "absent_pod",
                "absent_addresses", "absent_routes", "absent_cache")


def _filters():
    # Imported late: the filters module checks its handle came from _netns.entered(), which needs pyroute2.
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_filters
    return _dhcp_filters


class Change:
    """One step: its name (for the crash hooks), the text users see, and the function that does it."""

    __slots__ = ("step", "text", "apply")

    def __init__(self, step, text, apply):
        self.step, self.text, self.apply = step, text, apply


class Changes(list):
    """The planned steps, each a call on the namespace's netlink handle unless given as a function."""

    def __init__(self, ipr):
        super().__init__()
        self.ipr = ipr

    def add(self, step, text, fn, *args, **kwargs):
        ipr = self.ipr
        self.append(Change(step, text, lambda: fn(ipr, *args, **kwargs)))

    def call(self, step, text, fn, *args):
        self.append(Change(step, text, lambda: fn(*args)))


def link_group(bridge):
    """The device group of a binding's bridge and tap; unlikely to be anyone else's in the pod."""
    return GROUP_BASE | (zlib.crc32(bridge.encode()) & 0xFFFF)


def new_pod_mac(original, salt=""):
    """A locally administered unicast MAC for the pod interface, never its original one.

    Derived from the original MAC and the namespace (not random) so check mode predicts
    the very MAC a real run then sets.
    """
    counter = 0
    while True:
        raw = bytearray(hashlib.sha256(f"{original}|{salt}|{counter}".encode()).digest()[:6])
        raw[0] = (raw[0] & 0xFC) | 0x02
        mac = ":".join(f"{b:02x}" for b in raw)
        if mac != original:
            return mac
        counter += 1


def lease_declaration(key, cache, params):
    """The declaration the DHCP responder reads, validated as the responder will read it."""
    original, binding = cache["original"], cache["binding"]
    facts = _launcher.launcher_facts(binding, original, params["multiqueue"])
    declaration = {
        "version": _rundir.DECLARATION_VERSION, "key": key, "netns": cache["netns"],
        "netns_inode": cache["netns_inode"], "netns_cookie": cache.get("netns_cookie"),
        "bridge": binding["bridge"], "tap": binding["tap"],
        "vm_mac": original["mac"], "ip": facts["ip"], "prefixlen": facts["prefixlen"], "gateway": facts["gateway"],
        "routes": facts["routes"], "mtu": original["mtu"], "dns_servers": params["dns_servers"],
        "search_domains": params["search_domains"], "hostname": params.get("hostname"),
        "lease_time": params["lease_time"],
    }
    # Fails at plumb time, before any change, rather than when the responder serves it.
    return _rundir.validate_declaration(declaration)


# -- the pod as diff shows it --------------------------------------------------------------

def pod_view(live, addrs, binding):
    """The pod's links (pod interface, bridge, tap) and their IPv4 addresses, as shown in diff."""
    names = {v["index"]: n for n, v in live.items()}
    view = {"links": {}, "addresses": {}}
    for name in (binding["pod_interface"], binding["bridge"], binding["tap"]):
        link = live.get(name)
        if link is None:
            continue
        master = link["master"]
        entry = {"kind": link["kind"] or "", "mtu": link["mtu"], "up": link["up"],
                 "master": (names.get(master) or nl.ifname(master)) if master else None}
        if name == binding["pod_interface"]:
            entry["mac"] = link["mac"]  # bridge and tap MACs are kernel-chosen: not part of the contract
        view["links"][name] = entry
        view["addresses"][name] = addrs.get(name, [])
    return view


def record_fits_live(ipr, cache):
    """Whether a record matched only by inode (no cookie) fits the live pod: its interface still has
    the MAC we gave it or its original one, and the ifindex recorded (records of 0.1 have none).
    A new pod that got a freed inode has another MAC."""
    pod = nl.links_named(ipr, (cache["binding"]["pod_interface"],)).get(cache["binding"]["pod_interface"])
    return (pod is not None and pod["mac"] in (cache["pod_mac"], cache["original"]["mac"])
            and cache.get("pod_ifindex") in (None, pod["index"]))


def read_view(ipr, binding, full=False):
    """The three links that matter (one small request each) and their IPv4 addresses (one dump)."""
    live = nl.links_named(ipr, (binding["pod_interface"], binding["bridge"], binding["tap"]))
    by_index = nl.addresses_by_index(ipr)
    addrs = {n: _pod_facts.addr_texts(by_index.get(v["index"], [])) for n, v in live.items()}
    return (live, addrs, by_index) if full else (live, addrs)


def predict_present(before, binding, cache):
    """The pod view after ``present``: used as diff ``after`` in check mode."""
    name, bridge, tap, mtu = binding["pod_interface"], binding["bridge"], binding["tap"], cache["original"]["mtu"]
    after = {"links": {k: dict(v) for k, v in before["links"].items()},
             "addresses": {k: list(v) for k, v in before["addresses"].items()}}
    after["links"][name].update(mac=cache["pod_mac"], master=bridge, up=True)
    after["links"][bridge] = {"kind": "bridge", "mtu": mtu, "up": True, "master": None}
    after["links"][tap] = {"kind": "tun", "mtu": mtu, "up": True, "master": bridge}
    after["addresses"].setdefault(bridge, [])
    after["addresses"].setdefault(tap, [])
    if binding["delegate_ip"]:
        gone = set(_pod_facts.addr_texts(cache["original"]["ipv4"]))
        after["addresses"][name] = [a for a in after["addresses"][name] if a not in gone]
    return after


def predict_absent(before, binding, cache):
    """The pod view after ``absent``: used as diff ``after`` in check mode."""
    name, bridge, tap = binding["pod_interface"], binding["bridge"], binding["tap"]
    after = {"links": {k: dict(v) for k, v in before["links"].items() if k not in (bridge, tap)},
             "addresses": {k: list(v) for k, v in before["addresses"].items() if k not in (bridge, tap)}}
    if name in after["links"]:
        pod = after["links"][name]
        if pod["master"] in (bridge, tap):
            pod["master"] = None
        if cache is not None:
            original = cache["original"]
            pod.update(mac=original["mac"], mtu=original["mtu"], up=original["up"])
            have = after["addresses"][name]
            after["addresses"][name] = have + [a for a in _pod_facts.addr_texts(original["ipv4"]) if a not in have]
    return after


# -- present ---------------------------------------------------------------------------------

def _check_live(live, binding, params, cache, path):
    """Refuse, before any change, links that exist but are not what this binding would make."""
    name, bridge, tap = binding["pod_interface"], binding["bridge"], binding["tap"]
    pod, br, tp = live.get(name), live.get(bridge), live.get(tap)
    if pod is None:
        hint = " (the cache records it: it vanished after plumbing; run state=absent)" if cache else ""
        raise PodnetError(f"pod interface {name} not found in network namespace {path}{hint}", pod_interface=name)
    if br is not None and br["kind"] != "bridge":
        raise PodnetError(f"{bridge} exists in the pod but is a {br['kind'] or 'plain'} link, not a bridge", bridge=bridge)
    if pod["master"] and (br is None or pod["master"] != br["index"]):
        master = nl.ifname(pod["master"])
        raise PodnetError(f"pod interface {name} is already enslaved to {master}; it must not have a master",
                          pod_interface=name, master=master)
    if tp is not None:
        if tp["kind"] != "tun" or tp.get("tun_type") != nl.TUN_TYPE_TAP:
            raise PodnetError(f"{tap} exists in the pod but is not a tap device (kind {tp['kind']})", tap=tap)
        if tp["multiqueue"] != params["multiqueue"]:
            raise PodnetError(f"tap {tap} exists with multiqueue {str(tp['multiqueue']).lower()}; a tap's queue mode "
                              "cannot change: run state=absent first", tap=tap)
        if tp["master"] and (br is None or tp["master"] != br["index"]):
            raise PodnetError(f"tap {tap} is already enslaved to another master", tap=tap)
    if cache is None and pod["master"]:
        raise PodnetError(f"pod interface {name} is already enslaved to {bridge} but no state is recorded "
                          f"in {params['run_dir']}; its original configuration is unknown", pod_interface=name)
    if cache is not None and cache["binding"] != binding:
        raise PodnetError(f"this pod is already plumbed with another binding "
                          f"({_rundir.cache_path(params['run_dir'], cache['key'])}); "
                          "run state=absent with the old binding first", binding=cache["binding"])
    return pod, br, tp


def _check_delegable(binding, original):
    name = binding["pod_interface"]
    if not binding["delegate_ip"]:
        return
    if not original["ipv4"]:
        raise PodnetError(f"pod interface {name} has no IPv4 address: nothing to delegate to the VM "
                          "(delegate_ip is true; use a binding with delegate_ip false for Ethernet mode)",
                          pod_interface=name)
    if _pod_facts.gateway_of(original) is None:
        addrs = ", ".join(_pod_facts.addr_texts(original["ipv4"]))
        raise PodnetError(f"pod interface {name} has IPv4 {addrs} but no route through a gateway: "
                          "the VM could not be given a default route", pod_interface=name)


def _new_record(changes, ipr, pod, ipv4, where, binding, params):
    """Discover the pod interface and plan to record it: the first step, before any change."""
    name = binding["pod_interface"]
    path, ident, run_dir, key = where
    inode = ident["inode"]
    original = nl.discover(ipr, name, pod, ipv4=ipv4)
    _check_delegable(binding, original)
    cache = {
        "netns": path, "netns_inode": inode, "netns_cookie": ident["cookie"], "pod_ifindex": pod["index"],
        "binding": binding, "original": original,
        "pod_mac": params.get("pod_mac") or new_pod_mac(original["mac"], f"{inode}|{name}"),
        "tap_options": {"uid": params.get("tap_uid"), "gid": params.get("tap_gid"),
                        "multiqueue": params["multiqueue"]},
        "step": "cached", "key": key,
    }
    if cache["pod_mac"] == original["mac"]:
        raise PodnetError(f"pod_mac: {cache['pod_mac']} is the pod interface's own MAC, which the VM takes")
    record = dict(cache)
    changes.call("cache", f"record {name}'s original configuration in {_rundir.cache_path(run_dir, key)}",
                 _rundir.save_record, run_dir, key, record)
    return cache


def _bridge_steps(changes, br, bridge, mtu, group):
    if br is None:
        changes.add("bridge", f"create bridge {bridge} (MTU {mtu}, STP off, forward delay 0, no IPv6 autoconf)",
                    nl.create_bridge, bridge, mtu, group)
        return
    if br["mtu"] != mtu:
        changes.add("bridge", f"set MTU of {bridge} to {mtu} (was {br['mtu']})", nl.set_link, bridge,
                    "setting the MTU", mtu=mtu)
    if br.get("stp_state") != 0 or br.get("forward_delay") != 0:
        changes.add("bridge", f"set STP off and forward delay 0 on {bridge}", nl.set_bridge_options, bridge)
    if not nl.ipv6_autoconf_off(bridge):
        changes.call("bridge", f"turn IPv6 autoconf off on {bridge}", nl.disable_ipv6_autoconf, bridge)


def _pod_port_steps(changes, pod, br, binding, cache):
    """MAC, master and up state of the pod interface in one message; then learning off on its port."""
    name, bridge = binding["pod_interface"], binding["bridge"]
    pod_mac, vm_mac = cache["pod_mac"], cache["original"]["mac"]
    port, texts = {}, []
    if pod["mac"] != pod_mac:
        port["mac"] = pod_mac
        texts.append(f"set MAC of {name} to {pod_mac} (was {pod['mac']}; the VM takes {vm_mac})")
    enslaved = br is not None and pod["master"] == br["index"]
    if not enslaved:
        port["master_name"] = bridge
        texts.append(f"enslave {name} to {bridge}")
    if not pod["up"]:
        port["state"] = "up"
        texts.append(f"set {name} up")
    if port:
        changes.add("pod_port", "; ".join(texts), nl.set_port, name, **port)
    if not enslaved or pod.get("learning", True):
        changes.add("pod_learning", f"turn learning off on {name}'s port of {bridge}", nl.set_learning, name, False)


def _tap_steps(changes, tp, br, binding, params, mtu, group):
    tap, bridge = binding["tap"], binding["bridge"]
    uid, gid, multiqueue = params.get("tap_uid"), params.get("tap_gid"), params["multiqueue"]
    if tp is None:
        owner = "".join([f", owner {uid}" if uid is not None else "", f", group {gid}" if gid is not None else "",
                         ", multiqueue" if multiqueue else ""])
        changes.add("tap", f"create persistent tap {tap}{owner}", nl.create_tap, tap, uid, gid, multiqueue)
    elif (uid is not None and tp["uid"] != uid) or (gid is not None and tp["gid"] != gid):
        changes.add("tap", f"set owner of tap {tap} to {uid}:{gid} (was {tp['uid']}:{tp['gid']})",
                    nl.create_tap, tap, uid, gid, multiqueue)
    # One netlink message per tap: the kernel applies MTU, master, then up, in that order.
    wanted, texts = {}, []
    if tp is None or tp["mtu"] != mtu:
        wanted["mtu"] = mtu
        texts.append(f"set MTU of {tap} to {mtu}")
    if tp is None or br is None or tp["master"] != br["index"]:
        wanted["master_name"] = bridge
        texts.append(f"enslave {tap} to {bridge}")
    if tp is None or not tp["up"]:
        wanted["state"] = "up"
        texts.append(f"set {tap} up")
    if wanted:
        wanted["group"] = group  # silent: lets absent delete bridge and tap in one request
        changes.add("tap_config", "; ".join(texts), nl.set_link, tap, "configuring", **wanted)
    if br is None or not br["up"]:
        changes.add("bridge_up", f"set {bridge} up", nl.set_link, bridge, "setting up", state="up")


def _delegate_steps(changes, tp, addrs, binding, cache, params, where):
    """Keep DHCP inside the pod, move the IPv4 addresses off the pod interface, declare the lease."""
    name, tap = binding["pod_interface"], binding["tap"]
    run_dir, key = where[2], where[3]
    filters = _filters()
    if tp is None or not all(filters.dhcp_filters_present(changes.ipr, tap, name).values()):
        changes.add("filters", f"drop DHCP requests entering from {tap} and DHCP replies entering from {name} (tc)",
                    filters.install_dhcp_filters, tap, name)
    present_addrs = set(addrs.get(name, []))
    for addr in cache["original"]["ipv4"]:
        text = f"{addr['address']}/{addr['prefixlen']}"
        if text in present_addrs:
            changes.add("delegate", f"remove {text} from {name} (delegated to the VM; its routes are cached)",
                        nl.del_address, name, addr)
    declaration = lease_declaration(key, cache, params)
    if _rundir.read_json(_rundir.lease_path(run_dir, key)) != declaration:
        changes.call("lease", f"declare the lease of {declaration['ip']}/{declaration['prefixlen']} "
                     f"for {declaration['vm_mac']} in {_rundir.lease_path(run_dir, key)}",
                     _rundir.save_declaration, run_dir, declaration)


def plan_present(ipr, where, binding, params, cache):
    """Return ``(cache, changes, live, addrs)`` for ``present``; raises before any change on bad input.

    ``where`` is ``(namespace path, namespace identity, run_dir, key)``.
    """
    live, addrs, ipv4_by_index = read_view(ipr, binding, full=True)
    pod, br, tp = _check_live(live, binding, params, cache, where[0])
    changes = Changes(ipr)
    if cache is None:
        cache = _new_record(changes, ipr, pod, ipv4_by_index.get(pod["index"]), where, binding, params)
    mtu, group = cache["original"]["mtu"], link_group(binding["bridge"])
    _bridge_steps(changes, br, binding["bridge"], mtu, group)
    _pod_port_steps(changes, pod, br, binding, cache)
    _tap_steps(changes, tp, br, binding, params, mtu, group)
    if binding["delegate_ip"]:
        _delegate_steps(changes, tp, addrs, binding, cache, params, where)
    return cache, changes, live, addrs


# -- absent ----------------------------------------------------------------------------------

def _link_removal_steps(changes, live, binding, warnings):
    name, bridge, tap = binding["pod_interface"], binding["bridge"], binding["tap"]
    tp, br = live.get(tap), live.get(bridge)
    if tp is not None and tp["kind"] != "tun":
        warnings.append(f"{tap} is not a tap (kind {tp['kind']}); left alone")
        tp = None
    if br is not None and br["kind"] != "bridge":
        warnings.append(f"{bridge} is not a bridge (kind {br['kind']}); left alone")
        br = None
    group = link_group(bridge)
    # One request deletes the whole group: only when it holds exactly this binding's two links.
    if (tp is not None and br is not None and tp["group"] == br["group"] == group
            and {n for n, v in nl.all_links(changes.ipr).items() if v["group"] == group} == {tap, bridge}):
        changes.add("absent_links", f"delete tap {tap} and bridge {bridge} (releases {name})", nl.delete_group, group)
        return
    if tp is not None:
        changes.add("absent_tap", f"delete tap {tap}", nl.delete_link, tap)
    if br is not None:
        changes.add("absent_bridge", f"delete bridge {bridge} (releases {name})", nl.delete_link, bridge)


def _restore_link(ipr, name, restore):
    restore = dict(restore)
    mac = restore.pop("mac", None)
    if mac is not None:
        nl.set_mac(ipr, name, mac)
    if restore:
        nl.set_link(ipr, name, "restoring", **restore)


def _pod_restore_steps(changes, pod, addrs, name, original):
    """MAC, MTU and up state, then the addresses, then the routes, as recorded."""
    restore, texts = {}, []
    if pod["mac"] != original["mac"]:
        restore["mac"] = original["mac"]
        texts.append(f"restore MAC of {name} to {original['mac']}")
    if pod["mtu"] != original["mtu"]:
        restore["mtu"] = original["mtu"]
        texts.append(f"restore MTU of {name} to {original['mtu']}")
    if original.get("txqlen") is not None and pod.get("txqlen") != original["txqlen"]:
        # Records of 0.1 have no txqlen: nothing to compare.
        restore["txqlen"] = original["txqlen"]
        texts.append(f"restore txqlen of {name} to {original['txqlen']}")
    if pod["up"] != original["up"]:
        restore["state"] = "up" if original["up"] else "down"
        texts.append(f"set {name} {restore['state']}")
    if restore:
        changes.add("absent_pod", "; ".join(texts), _restore_link, name, restore)
    present_addrs = set(addrs.get(name, []))
    for addr in original["ipv4"]:
        if f"{addr['address']}/{addr['prefixlen']}" not in present_addrs:
            changes.add("absent_addresses", f"restore {addr['address']}/{addr['prefixlen']} on {name}",
                        nl.add_address, name, addr)
    live_routes = {nl.route_key(r) for r in nl.routes(changes.ipr, pod["index"])}
    # Link routes first, so gateways are reachable when their routes return.
    todo = sorted((r for r in original["routes"] if r["proto"] != nl.RTPROT_KERNEL
                   and nl.route_key(r) not in live_routes), key=lambda r: -r["scope"])
    for route in todo:
        changes.add("absent_routes", f"restore route {nl.route_text(route)} on {name}", nl.add_route, name, route)


def plan_absent(ipr, run_dir, key, binding, cache):
    """Return ``(changes, warnings, live, addrs)`` for ``absent``; missing links are fine."""
    name, tap = binding["pod_interface"], binding["tap"]
    live, addrs = read_view(ipr, binding)
    changes, warnings = Changes(ipr), []
    if os.path.lexists(_rundir.lease_path(run_dir, key)):
        changes.call("absent_lease", "withdraw the lease declaration", _rundir.remove_declaration, run_dir, key)
    _link_removal_steps(changes, live, binding, warnings)
    pod = live.get(name)
    filters = _filters()
    if pod is not None and filters.dhcp_filters_present(ipr, tap, name)["pod_interface"]:
        changes.add("absent_filters", f"remove the DHCP reply filter from {name}", filters.remove_dhcp_filters, tap, name)
    if cache is not None and pod is not None:
        _pod_restore_steps(changes, pod, addrs, name, cache["original"])
    elif cache is not None:
        warnings.append(f"pod interface {name} is gone; nothing to restore")
    return changes, warnings, live, addrs
