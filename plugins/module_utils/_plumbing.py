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

import os
import socket
import zlib

from ansible_collections.virtnet.podnet.plugins.module_utils import _gateway6
from ansible_collections.virtnet.podnet.plugins.module_utils import _launcher
from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as nl
from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_facts
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._digest import sha256
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

GROUP_BASE = 0x6B740000  # "kt": device group of the bridge and tap, for one batched delete
PRESENT_STEPS = ("cache", "bridge", "bridge_isolation", "pod_rename", "pod_dummy", "pod_port", "pod_learning", "tap",
                 "tap_config", "bridge_up", "filters", "delegate", "lease")
ABSENT_STEPS = ("absent_lease", "absent_links", "absent_tap", "absent_bridge", "absent_filters", "absent_dummy",
                "absent_rename", "absent_sysctls", "absent_pod", "absent_addresses", "absent_routes", "absent_cache")
PORT_SUFFIX = "-nic"  # KubeVirt's name for the renamed pod interface (eth0 -> eth0-nic)
IFNAME_MAX = 15


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
        self._ipv6 = None

    def ipv6_texts(self, index):
        """The link's IPv6 addresses as ``address/prefixlen``: one dump per plan, however many steps ask."""
        if self._ipv6 is None:
            self._ipv6 = nl.addresses_by_index(self.ipr, socket.AF_INET6)
        return _pod_facts.addr_texts(self._ipv6.get(index, []))

    def add(self, step, text, fn, *args, **kwargs):
        ipr = self.ipr
        self.append(Change(step, text, lambda: fn(ipr, *args, **kwargs)))

    def call(self, step, text, fn, *args):
        self.append(Change(step, text, lambda: fn(*args)))


def renamed_port(name):
    """The pod interface's name once a dummy keeps its own for kubelet: ``eth0`` -> ``eth0-nic``."""
    if len(name) + len(PORT_SUFFIX) <= IFNAME_MAX:
        return name + PORT_SUFFIX
    # Too long for IFNAMSIZ: a prefix and a hash of the whole name, still ending in -nic.
    return f"{name[:IFNAME_MAX - len(PORT_SUFFIX) - 3]}{zlib.crc32(name.encode()) & 0xFFF:03x}{PORT_SUFFIX}"


def port_of(cache, binding):
    """The bridge port the pod interface is: renamed under the pod identity, else itself.

    The record decides: records written before the pod identity existed have no ``pod_identity``.
    """
    if cache is not None and cache.get("pod_identity"):
        return cache["pod_port"]
    return binding["pod_interface"]


def keeper_kind(cache):
    """The kind of link that keeps the pod interface's name: as recorded, else what this kernel has."""
    return (cache or {}).get("keeper_kind") or nl.keeper_kind()


def identity_addresses(original):
    """What the dummy holds for kubelet: every IPv4 address and the global IPv6 ones (the kernel
    makes the link-local one)."""
    return list(original["ipv4"]) + _pod_facts.global_ipv6(original)


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
        raw = bytearray(sha256(f"{original}|{salt}|{counter}".encode()).digest()[:6])
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
    # KubeVirt's macAddress and dhcpOptions: in the binding only when the spec sets them, so
    # records and declarations written before they existed still compare equal.
    if binding.get("mac_address"):
        declaration["vm_mac"] = binding["mac_address"]
    if binding.get("dhcp_options"):
        declaration["dhcp_options"] = binding["dhcp_options"]
    if facts["ipv6"] is not None:
        gateway = original.get("ipv6_gateway") or {}
        declaration["ipv6"] = {"address": facts["ipv6"]["address"], "prefixlen": facts["ipv6"]["prefixlen"],
                               "gateway": gateway.get("address"), "gateway_mac": gateway.get("mac"),
                               "dns_servers": params.get("dns_servers6") or []}
    # Fails at plumb time, before any change, rather than when the responder serves it.
    return _rundir.validate_declaration(declaration)


# -- the pod as diff shows it --------------------------------------------------------------

def _view_names(binding, port):
    names = (binding["pod_interface"], port, binding["bridge"], binding["tap"])
    return tuple(dict.fromkeys(n for n in names if n))


def pod_view(live, addrs, binding, port=None):
    """The pod's links (pod interface, its renamed port, bridge, tap) and their IPv4 addresses, as shown in diff."""
    names = {v["index"]: n for n, v in live.items()}
    view = {"links": {}, "addresses": {}}
    for name in _view_names(binding, port):
        link = live.get(name)
        if link is None:
            continue
        master = link["master"]
        entry = {"kind": link["kind"] or "", "mtu": link["mtu"], "up": link["up"],
                 "master": (names.get(master) or nl.ifname(master)) if master else None}
        if name in (binding["pod_interface"], port):
            entry["mac"] = link["mac"]  # bridge and tap MACs are kernel-chosen: not part of the contract
        view["links"][name] = entry
        view["addresses"][name] = addrs.get(name, [])
    return view


def record_fits_live(ipr, cache):
    """Whether a record matched only by inode (no cookie) fits the live pod: its interface (under its
    own name or renamed) still has the MAC we gave it or its original one, and the ifindex recorded
    (records of 0.1 have none). A new pod that got a freed inode has another MAC."""
    live = nl.links_named(ipr, _view_names(cache["binding"], port_of(cache, cache["binding"]))[:2])
    return any(pod["mac"] in (cache["pod_mac"], cache["original"]["mac"]) and cache.get("pod_ifindex") in (None, pod["index"])
               for pod in live.values())


def read_view(ipr, binding, full=False, port=None):
    """The links that matter (one small request each) and their IPv4 addresses (one dump)."""
    live = nl.links_named(ipr, _view_names(binding, port))
    by_index = nl.addresses_by_index(ipr)
    addrs = {n: _pod_facts.addr_texts(by_index.get(v["index"], [])) for n, v in live.items()}
    return (live, addrs, by_index) if full else (live, addrs)


def predict_present(before, binding, cache):
    """The pod view after ``present``: used as diff ``after`` in check mode."""
    name, bridge, tap, original = binding["pod_interface"], binding["bridge"], binding["tap"], cache["original"]
    port, mtu = port_of(cache, binding), original["mtu"]
    after = {"links": {k: dict(v) for k, v in before["links"].items()},
             "addresses": {k: list(v) for k, v in before["addresses"].items()}}
    links, addresses = after["links"], after["addresses"]
    if port not in links:  # renamed by this run
        links[port], addresses[port] = links.pop(name), addresses.pop(name, [])
    links[port].update(mac=cache["pod_mac"], master=bridge, up=True)
    links[bridge] = {"kind": "bridge", "mtu": mtu, "up": True, "master": None}
    links[tap] = {"kind": "tun", "mtu": mtu, "up": True, "master": bridge}
    addresses.setdefault(bridge, [])
    addresses.setdefault(tap, [])
    if port != name:
        links[name] = {"kind": keeper_kind(cache), "mtu": mtu, "up": True, "master": None, "mac": original["mac"]}
        have = addresses.get(name, [])
        addresses[name] = have + [a for a in _pod_facts.addr_texts(original["ipv4"]) if a not in have]
    if binding["delegate_ip"]:
        gone = set(_pod_facts.addr_texts(original["ipv4"]))
        addresses[port] = [a for a in addresses[port] if a not in gone]
    return after


def predict_absent(before, binding, cache):
    """The pod view after ``absent``: used as diff ``after`` in check mode."""
    name, bridge, tap = binding["pod_interface"], binding["bridge"], binding["tap"]
    port = port_of(cache, binding)
    after = {"links": {k: dict(v) for k, v in before["links"].items() if k not in (bridge, tap)},
             "addresses": {k: list(v) for k, v in before["addresses"].items() if k not in (bridge, tap)}}
    if port != name and port in after["links"]:  # renamed back; the dummy goes first
        if after["links"].get(name, {}).get("kind") == keeper_kind(cache):
            del after["links"][name]
            after["addresses"].pop(name, None)
        if name not in after["links"]:
            after["links"][name], after["addresses"][name] = after["links"].pop(port), after["addresses"].pop(port, [])
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

def pod_link(live, binding, cache, port):
    """``(name it has now, link)`` of the pod interface: under its own name, or renamed to ``port``
    (found by the ifindex recorded: the dummy that took its name has another)."""
    name = binding["pod_interface"]
    if port != name and cache is not None:
        for candidate in (port, name):
            link = live.get(candidate)
            if link is not None and link["index"] == cache.get("pod_ifindex"):
                return candidate, link
        return name, None
    return name, live.get(name)


def _check_identity(live, binding, at, port, kind):
    name = binding["pod_interface"]
    if at == name and port in live:
        raise PodnetError(f"{port} exists in the pod: it is the name {name} takes so that a dummy {name} keeps the "
                          "pod's identity for kubelet; remove it, or set pod_identity false", pod_port=port)
    other = live.get(name)
    if at == port and other is not None and other["kind"] != kind:
        raise PodnetError(f"{name} exists in the pod but is a {other['kind'] or 'plain'} link, not the {kind} that "
                          "keeps the pod's identity; remove it and rerun", pod_interface=name)


def _check_live(live, binding, params, cache, path, port):
    """Refuse, before any change, links that exist but are not what this binding would make.

    Returns ``(name the pod interface has now, pod interface, bridge, tap)``.
    """
    name, bridge, tap = binding["pod_interface"], binding["bridge"], binding["tap"]
    at, pod = pod_link(live, binding, cache, port)
    br, tp = live.get(bridge), live.get(tap)
    if pod is None:
        hint = " (the cache records it: it vanished after plumbing; run state=absent)" if cache else ""
        raise PodnetError(f"pod interface {name} not found in network namespace {path}{hint}", pod_interface=name)
    if port != name:
        _check_identity(live, binding, at, port, keeper_kind(cache))
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
    return at, pod, br, tp


def _check_delegable(binding, original):
    name = binding["pod_interface"]
    if not binding["delegate_ip"]:
        return
    if not original["ipv4"] and _pod_facts.primary_ipv6(original) is None:
        raise PodnetError(f"pod interface {name} has no IPv4 and no global IPv6 address: nothing to delegate to "
                          "the VM (delegate_ip is true; use a binding with delegate_ip false for Ethernet mode)",
                          pod_interface=name)
    if original["ipv4"] and _pod_facts.gateway_of(original) is None:
        addrs = ", ".join(_pod_facts.addr_texts(original["ipv4"]))
        raise PodnetError(f"pod interface {name} has IPv4 {addrs} but no route through a gateway: "
                          "the VM could not be given a default route", pod_interface=name)


def _new_record(changes, ipr, pod, ipv4, where, binding, params, port):
    """Discover the pod interface and plan to record it: the first step, before any change.

    ``port`` is the name the pod interface takes (itself unless the pod identity renames it).
    """
    name = binding["pod_interface"]
    path, ident, run_dir, key = where
    inode = ident["inode"]
    original = nl.discover(ipr, name, pod, ipv4=ipv4)
    _check_delegable(binding, original)
    if binding["delegate_ip"] and _pod_facts.primary_ipv6(original) is not None:
        gateway = _pod_facts.gateway6_of(original)
        # Learned now, while the pod interface still has its addresses (never again: it is recorded).
        original["ipv6_gateway"] = _gateway6.discover(name, gateway) if gateway else None
    cache = {
        "netns": path, "netns_inode": inode, "netns_cookie": ident["cookie"], "pod_ifindex": pod["index"],
        "binding": binding, "original": original,
        "pod_mac": params.get("pod_mac") or new_pod_mac(original["mac"], f"{inode}|{name}"),
        "tap_options": {"uid": params.get("tap_uid"), "gid": params.get("tap_gid"),
                        "multiqueue": params["multiqueue"]},
        "step": "cached", "key": key,
        "pod_identity": port != name, "pod_port": port if port != name else None,
        "keeper_kind": nl.keeper_kind() if port != name else None,
        "pod_sysctls": nl.read_link_sysctls("all", nl.POD_ISOLATION_SYSCTLS) if port != name else None,
    }
    if cache["pod_mac"] == original["mac"]:
        raise PodnetError(f"pod_mac: {cache['pod_mac']} is the pod interface's own MAC, which the VM takes")
    if cache["pod_mac"] == binding.get("mac_address"):
        raise PodnetError(f"pod_mac: {cache['pod_mac']} is the VM's MAC (binding.mac_address); one bridge cannot "
                          "have it twice")
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


def _pod_port_steps(changes, pod, br, binding, cache, name):
    """MAC, master and up state of the pod interface (named ``name`` by now) in one message; then
    learning off on its port."""
    bridge = binding["bridge"]
    pod_mac, vm_mac = cache["pod_mac"], binding.get("mac_address") or cache["original"]["mac"]
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


def _delegate6_steps(changes, pod, renamed, cache, name):
    """The delegated IPv6 address leaves the port too (it stays where a rename's link-down did not take it:
    without the pod identity, or with keep_addr_on_down)."""
    address = _pod_facts.primary_ipv6(cache["original"])
    if address is None or renamed:
        return
    text = f"{address['address']}/{address['prefixlen']}"
    if text in changes.ipv6_texts(pod["index"]):
        changes.add("delegate", f"remove {text} from {name} (delegated to the VM)", nl.del_address, name, address)


def _delegate_steps(changes, tp, port_state, binding, cache, params, where, name):
    """Keep DHCP inside the pod, move the addresses off the pod interface (named ``name`` by now), declare
    the lease. ``port_state`` is ``(pod interface, its IPv4 addresses, renamed by this run)``."""
    tap = binding["tap"]
    pod, pod_addrs, renamed = port_state
    run_dir, key = where[2], where[3]
    filters = _filters()
    if tp is None or not all(filters.dhcp_filters_present(changes.ipr, tap, name).values()):
        changes.add("filters", f"drop DHCP requests entering from {tap} and DHCP replies entering from {name} (tc)",
                    filters.install_dhcp_filters, tap, name)
    present_addrs = set(pod_addrs)
    for addr in cache["original"]["ipv4"]:
        text = f"{addr['address']}/{addr['prefixlen']}"
        if text in present_addrs:
            changes.add("delegate", f"remove {text} from {name} (delegated to the VM; its routes are cached)",
                        nl.del_address, name, addr)
    _delegate6_steps(changes, pod, renamed, cache, name)
    declaration = lease_declaration(key, cache, params)
    if _rundir.read_json(_rundir.lease_path(run_dir, key)) != declaration:
        leased = [f"{declaration['ip']}/{declaration['prefixlen']}"] if declaration["ip"] else []
        if declaration.get("ipv6"):
            leased.append(f"{declaration['ipv6']['address']}/{declaration['ipv6']['prefixlen']}")
        changes.call("lease", f"declare the lease of {' and '.join(leased)} "
                     f"for {declaration['vm_mac']} in {_rundir.lease_path(run_dir, key)}",
                     _rundir.save_declaration, run_dir, declaration)


def _wanted_port(binding, params, cache):
    """The port name this run works with: the record's layout wins over the option (never rebuilt under
    a running VM); a disagreement is a warning."""
    name, wanted = binding["pod_interface"], params.get("pod_identity", True) and binding["delegate_ip"]
    if cache is None:
        return renamed_port(name) if wanted else name
    has = bool(cache.get("pod_identity"))
    if binding["delegate_ip"] and has != bool(params.get("pod_identity", True)):
        params["warnings"].append(
            f"this pod was plumbed {'with' if has else 'without'} the pod identity (by an earlier version, or with "
            f"pod_identity {str(has).lower()}) and is kept so; state=absent, then present, changes it")
    return port_of(cache, binding)


def _warn_ipv6(binding, cache, params, port):
    original = cache["original"]
    held = [a for a in identity_addresses(original) if ":" in a["address"]]
    if not binding["delegate_ip"] or not held:
        return
    name = binding["pod_interface"]
    if _pod_facts.primary_ipv6(original) is None:
        where = f"the {keeper_kind(cache)} {name} keeps" if port != name else f"{port} keeps"
        params["warnings"].append(f"IPv6 {', '.join(_pod_facts.addr_texts(held))} is not delegated to the VM (the "
                                  f"pod was plumbed by a version that delegated IPv4 only); {where} it")
    elif original.get("ipv6_gateway") is None:
        gateway = _pod_facts.gateway6_of(original)
        params["warnings"].append(
            f"the pod's IPv6 gateway {gateway} did not answer before the move: the VM's router advertisements carry "
            "no default route" if gateway else "the pod has no IPv6 default route: the VM's router advertisements "
            "carry none")
    elif original["ipv6_gateway"].get("how") == "eui64":
        params["warnings"].append(f"the pod's IPv6 gateway did not answer echo requests to all nodes: its link-local "
                                  f"address is taken as {original['ipv6_gateway']['address']} (EUI-64 of its MAC)")


def _dummy_steps(changes, live, addrs, binding, cache):
    """The dummy under the pod interface's name: its MAC, MTU and addresses, for kubelet."""
    original, kind = cache["original"], keeper_kind(cache)
    name, held = binding["pod_interface"], identity_addresses(original)
    dummy = live.get(name)
    if dummy is None:
        changes.add("pod_dummy", f"create {kind} {name} (MAC {original['mac']}, MTU {original['mtu']}) holding "
                    f"{', '.join(_pod_facts.addr_texts(held)) or 'no address'}", make_dummy, name, original, held, kind)
        return
    if (dummy["mac"], dummy["mtu"], dummy["up"]) != (original["mac"], original["mtu"], True):
        changes.add("pod_dummy", f"set {kind} {name} to MAC {original['mac']}, MTU {original['mtu']}, up",
                    nl.create_dummy, name, original["mac"], original["mtu"], kind)
    have = set(addrs.get(name, [])) | set(changes.ipv6_texts(dummy["index"]))
    for addr in held:
        text = f"{addr['address']}/{addr['prefixlen']}"
        if text not in have:
            changes.add("pod_dummy", f"add {text} to {kind} {name}", nl.add_address, name, addr)


def _set_sysctls(todo):
    for link, table in todo:
        nl.set_link_sysctls(link, table)


def make_dummy(ipr, name, original, held, kind):
    nl.create_dummy(ipr, name, original["mac"], original["mtu"], kind)
    for addr in held:
        nl.add_address(ipr, name, addr)


def _identity_steps(changes, live, addrs, at, br, binding, cache, port):
    """Kubelet keeps seeing the pod interface (KubeVirt's bridge binding): it is renamed to ``port``, a
    dummy takes its name, MAC, MTU and addresses, and the pod's own stack stays off the bridge."""
    name, bridge = binding["pod_interface"], binding["bridge"]
    todo, texts = [], []
    if br is None or not nl.link_sysctls_set(bridge, nl.BRIDGE_ISOLATION_SYSCTLS):
        todo.append((bridge, nl.BRIDGE_ISOLATION_SYSCTLS))
        texts.append(f"arp_ignore 1, arp_announce 2 and IPv6 off on {bridge}")
    if not nl.link_sysctls_set("all", nl.POD_ISOLATION_SYSCTLS):
        todo.append(("all", nl.POD_ISOLATION_SYSCTLS))
        texts.append("arp_ignore 1 on all of the pod's links")
    if todo:
        changes.call("bridge_isolation", f"keep the pod's own stack from answering for the VM's addresses: "
                     f"{'; '.join(texts)}", _set_sysctls, todo)
    if at != port:
        changes.add("pod_rename", f"set {name} down and rename it to {port} (the {keeper_kind(cache)} {name} "
                    "made next keeps the pod's identity for kubelet)", nl.rename_link, name, port)
    _dummy_steps(changes, live if at == port else {}, addrs, binding, cache)


def plan_present(ipr, where, binding, params, cache):
    """Return ``(cache, changes, live, addrs)`` for ``present``; raises before any change on bad input.

    ``where`` is ``(namespace path, namespace identity, run_dir, key)``.
    """
    port = _wanted_port(binding, params, cache)
    live, addrs, ipv4_by_index = read_view(ipr, binding, full=True, port=port)
    at, pod, br, tp = _check_live(live, binding, params, cache, where[0], port)
    changes = Changes(ipr)
    if cache is None:
        cache = _new_record(changes, ipr, pod, ipv4_by_index.get(pod["index"]), where, binding, params, port)
    _warn_ipv6(binding, cache, params, port)
    mtu, group = cache["original"]["mtu"], link_group(binding["bridge"])
    _bridge_steps(changes, br, binding["bridge"], mtu, group)
    if port != binding["pod_interface"]:
        _identity_steps(changes, live, addrs, at, br, binding, cache, port)
        if at != port:
            pod = dict(pod, up=False)  # the rename takes it down
    _pod_port_steps(changes, pod, br, binding, cache, port)
    _tap_steps(changes, tp, br, binding, params, mtu, group)
    if binding["delegate_ip"]:
        _delegate_steps(changes, tp, (pod, addrs.get(at, []), at != port), binding, cache, params, where, port)
    return cache, changes, live, addrs


# -- absent ----------------------------------------------------------------------------------

def _link_removal_steps(changes, live, binding, warnings, name):
    """The tap and the bridge go; ``name`` is the pod interface's name as a port (it is released)."""
    bridge, tap = binding["bridge"], binding["tap"]
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


def _pod_restore_steps(changes, pod, addrs, name, original, identity=False, renamed=False):
    """MAC, MTU and up state, then the addresses, then the routes, as recorded.

    Under the pod identity the link went down (renamed): IPv6 addresses and all routes went with it.
    ``renamed`` says this very run renames it back, so none of them is live any more when it restores.
    """
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
    present_addrs = set(addrs)
    wanted = list(original["ipv4"])
    families = [(socket.AF_INET, original["routes"])]
    if identity:
        wanted += [a for a in identity_addresses(original) if ":" in a["address"]]
        families.append((socket.AF_INET6, original.get("routes6") or []))
        if not renamed:
            present_addrs |= set(changes.ipv6_texts(pod["index"]))
    for addr in wanted:
        if f"{addr['address']}/{addr['prefixlen']}" not in present_addrs:
            changes.add("absent_addresses", f"restore {addr['address']}/{addr['prefixlen']} on {name}",
                        nl.add_address, name, addr)
    for family, recorded in families:
        live_routes = set() if renamed else {nl.route_key(r) for r in nl.routes(changes.ipr, pod["index"], family)}
        # Link routes first, so gateways are reachable when their routes return.
        todo = sorted((r for r in recorded if r["proto"] != nl.RTPROT_KERNEL
                       and nl.route_key(r) not in live_routes), key=lambda r: -r["scope"])
        for route in todo:
            changes.add("absent_routes", f"restore route {nl.route_text(route)} on {name}", nl.add_route, name, route,
                        family)


def _unrename_steps(changes, live, binding, at, port, kind, warnings):
    """Under the pod identity: the dummy goes, and the pod interface takes its name back. True if renamed here."""
    name = binding["pod_interface"]
    if port == name or at != port:  # no pod identity, or the pod interface has its own name back
        return False
    other = live.get(name)
    if other is not None and other["kind"] != kind:
        warnings.append(f"{name} is a {other['kind'] or 'plain'} link, not the {kind} made for the pod identity; "
                        f"left alone, and {port} keeps its name")
        return False
    if other is not None:
        changes.add("absent_dummy", f"delete {kind} {name} (it kept the pod's identity for kubelet)", nl.delete_link,
                    name)
    changes.add("absent_rename", f"set {port} down and rename it back to {name}", nl.rename_link, port, name)
    return True


def _sysctl_restore_steps(changes, recorded):
    """The pod-wide sysctls the pod identity set, back to their recorded values."""
    table = tuple(tuple(k.split("/", 1)) + (v,) for k, v in sorted(recorded.items())
                  if isinstance(k, str) and "/" in k and isinstance(v, str) and v.isdigit())
    table = tuple(t for t in table if (t[0], t[1]) in {(f, k) for f, k, _v in nl.POD_ISOLATION_SYSCTLS})
    if table and not nl.link_sysctls_set("all", table):
        texts = ", ".join(f"{key} {value}" for _family, key, value in table)
        changes.call("absent_sysctls", f"restore {texts} on all of the pod's links", nl.set_link_sysctls, "all", table)


def plan_absent(ipr, run_dir, key, binding, cache):
    """Return ``(changes, warnings, live, addrs)`` for ``absent``; missing links are fine."""
    name, tap = binding["pod_interface"], binding["tap"]
    port = port_of(cache, binding)
    live, addrs = read_view(ipr, binding, port=port)
    changes, warnings = Changes(ipr), []
    if os.path.lexists(_rundir.lease_path(run_dir, key)):
        changes.call("absent_lease", "withdraw the lease declaration", _rundir.remove_declaration, run_dir, key)
    at, pod = pod_link(live, binding, cache, port)
    _link_removal_steps(changes, live, binding, warnings, at)
    filters = _filters()
    # An outdated filter (of an earlier version: IPv4 only) is ours too, and goes as well.
    if pod is not None and filters.dhcp_filters_state(ipr, tap, at)["pod_interface"] in ("current", "outdated"):
        changes.add("absent_filters", f"remove the DHCP reply filter from {at}", filters.remove_dhcp_filters, tap, at)
    renamed = pod is not None and _unrename_steps(changes, live, binding, at, port, keeper_kind(cache), warnings)
    if cache is not None and cache.get("pod_sysctls"):
        _sysctl_restore_steps(changes, cache["pod_sysctls"])
    if cache is not None and pod is not None:
        if renamed:
            pod = dict(pod, up=False)  # the rename takes it down
        restore_as = name if renamed else at
        _pod_restore_steps(changes, pod, addrs.get(at, []), restore_as, cache["original"], port != name, renamed)
    elif cache is not None:
        warnings.append(f"pod interface {name} is gone; nothing to restore")
    return changes, warnings, live, addrs
