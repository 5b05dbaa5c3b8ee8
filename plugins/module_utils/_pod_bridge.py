# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the present / absent / info runners behind vm_pod_bridge.

Shape (want / have / changes): read the live pod state, plan a list of changes against
what is wanted, apply them in order unless in check mode. The plan is the same list in
both modes, so check mode predicts exactly what a real run does.

Crash safety: the pod interface is recorded in the state cache before the first change,
and every step is ensure-style, so rerunning ``present`` finishes a killed run and
``absent`` undoes it from the cache.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import zlib

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils import _netlink as nl
from ansible_collections.virtnet.podnet.plugins.module_utils import _netns
from ansible_collections.virtnet.podnet.plugins.module_utils import _state

CRASH_ENV = "VIRTNET_PODNET_CRASH_AFTER"
PAUSE_ENV = "VIRTNET_PODNET_PAUSE_AFTER"
PAUSE_FIFO_ENV = "VIRTNET_PODNET_PAUSE_FIFO"
CRASH_EXIT_CODE = 86
LEASE_VERSION = 1
DEFAULT_LEASE_TIME = 86400
MAIN_TABLE = 254

PRESENT_STEPS = ("cache", "bridge", "pod_port", "pod_learning", "tap", "tap_config", "bridge_up", "filters",
                 "delegate", "lease")
ABSENT_STEPS = ("absent_lease", "absent_links", "absent_tap", "absent_bridge", "absent_filters", "absent_pod",
                "absent_addresses", "absent_routes", "absent_cache")
RESPONDER_MODES = ("auto", "skip")
DEFAULT_RESPONDER_PYTHONPATH = "/opt/virtnet-podnet/lib"
DEFAULT_RESPONDER_LOG = "/var/log/podnet-dhcpd.log"
RESPONDER_RELPATH = os.path.join("ansible_collections", "virtnet", "podnet", "plugins", "module_utils", "_dhcp_responder.py")
GROUP_BASE = 0x6B740000  # "kt": device group of the bridge and tap, for one batched delete
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def _filters():
    # Imported late: the filters need pyroute2, and this module's unit tests run without it.
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_filters
    return _dhcp_filters


def validate_binding(binding):
    # Imported late so this module loads (and its unit tests run) wherever _spec is.
    from ansible_collections.virtnet.podnet.plugins.module_utils._spec import validate_binding as _validate
    return _validate(binding)


# -- test hooks -------------------------------------------------------------------

def step_done(step):
    """Fault-injection point: VIRTNET_PODNET_CRASH_AFTER=<step> kills the process right here."""
    if os.environ.get(CRASH_ENV) == step:
        os._exit(CRASH_EXIT_CODE)
    if os.environ.get(PAUSE_ENV) == step and os.environ.get(PAUSE_FIFO_ENV):
        # Tests hold the run here (lock taken) by keeping the FIFO's writer side closed.
        with open(os.environ[PAUSE_FIFO_ENV]) as fifo:
            fifo.read()


# -- lease declaration (read by the DHCP responder) ----------------------------------

def declare_lease(run_dir, declaration):
    """Write ``leases/<key>.json`` atomically; the responder serves only declared leases."""
    _state.ensure_dirs(run_dir)
    _state.atomic_write_json(_state.lease_path(run_dir, declaration["key"]), declaration)


def withdraw_lease(run_dir, key):
    """Remove the lease declaration; True if there was one."""
    return _state.remove(_state.lease_path(run_dir, key))


# -- options ---------------------------------------------------------------------

def pod_dns_defaults(netns):
    """DNS servers, search domains and host name from the pod's own files, where readable.

    A pod given as /proc/PID/ns/net has its files under /proc/PID/root; a named namespace
    has ``ip netns``' /etc/netns/<name>/resolv.conf. Only IPv4 servers are kept (option 6).
    """
    netns = str(netns or "")
    match = re.match(r"^/proc/(\d+)/ns/net$", netns)
    if match:
        root = f"/proc/{match.group(1)}/root/etc"
    elif netns and "/" not in netns:
        root = f"/etc/netns/{netns}"
    else:
        return [], [], None
    servers, search = [], []
    try:
        with open(os.path.join(root, "resolv.conf"), encoding="utf-8", errors="replace") as handle:
            for line in handle:
                words = line.split("#", 1)[0].split(";", 1)[0].split()
                if len(words) >= 2 and words[0] == "nameserver":
                    try:
                        servers.append(str(ipaddress.IPv4Address(words[1])))
                    except ValueError:
                        pass  # IPv6 servers cannot go into option 6
                elif words and words[0] in ("search", "domain"):
                    search = words[1:]  # the last search/domain line wins, as in the resolver
    except OSError:
        pass
    hostname = None
    try:
        with open(os.path.join(root, "hostname"), encoding="utf-8", errors="replace") as handle:
            hostname = handle.read().strip() or None
    except OSError:
        pass
    if hostname is not None and not HOSTNAME_RE.match(hostname):
        hostname = None
    return servers[:8], [d for d in search if HOSTNAME_RE.match(d.rstrip("."))][:6], hostname


def validate_options(params):
    """Check the non-binding options; return a normalised copy. One message names every bad option."""
    errors = []
    p = dict(params)
    p.setdefault("state", "present")
    p["run_dir"] = p.get("run_dir") or _state.DEFAULT_RUN_DIR
    if not os.path.isabs(p["run_dir"]):
        errors.append(f"run_dir: {p['run_dir']!r} must be an absolute path")
    for key in ("tap_uid", "tap_gid"):
        value = p.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 0xFFFFFFFF):
            errors.append(f"{key}: {value!r} is not a valid numeric id")
    p["multiqueue"] = bool(p.get("multiqueue"))
    mac = p.get("pod_mac")
    if mac is not None:
        mac = str(mac).lower()
        if not MAC_RE.match(mac) or int(mac[:2], 16) & 1:
            errors.append(f"pod_mac: {p['pod_mac']!r} is not a unicast MAC address like 02:00:00:00:00:01")
        p["pod_mac"] = mac
    if p.get("state") == "present" and (p.get("dns_servers") is None or p.get("search_domains") is None
                                        or p.get("hostname") is None):
        servers, search, hostname = pod_dns_defaults(p.get("netns"))
        for option, value in (("dns_servers", servers), ("search_domains", search), ("hostname", hostname)):
            if p.get(option) is None:
                p[option] = value
    dns = p.get("dns_servers") or []
    for i, server in enumerate(dns):
        try:
            ipaddress.IPv4Address(str(server))
        except ValueError:
            errors.append(f"dns_servers[{i}]: {server!r} is not an IPv4 address")
    p["dns_servers"] = [str(s) for s in dns]
    domains = p.get("search_domains") or []
    for i, domain in enumerate(domains):
        if not isinstance(domain, str) or not HOSTNAME_RE.match(domain.rstrip(".")):
            errors.append(f"search_domains[{i}]: {domain!r} is not a domain name")
    p["search_domains"] = list(domains)
    hostname = p.get("hostname")
    if hostname is not None and (not isinstance(hostname, str) or not HOSTNAME_RE.match(hostname)):
        errors.append(f"hostname: {hostname!r} is not a valid host name")
    lease_time = p.get("lease_time")
    if lease_time is None:
        lease_time = DEFAULT_LEASE_TIME
    if isinstance(lease_time, bool) or not isinstance(lease_time, int) or not 4 <= lease_time <= 0x7FFFFFFE:
        errors.append(f"lease_time: {lease_time!r} must be whole seconds between 4 and 2147483646")
    p["lease_time"] = lease_time
    # In-process callers (tests, benchmarks) leave the responder alone unless they ask;
    # the module's own default is "auto".
    p["responder"] = p.get("responder") or "skip"
    if p["responder"] not in RESPONDER_MODES:
        errors.append(f"responder: {p['responder']!r} is not one of {', '.join(RESPONDER_MODES)}")
    p["responder_pythonpath"] = p.get("responder_pythonpath") or DEFAULT_RESPONDER_PYTHONPATH
    p["responder_log_file"] = p.get("responder_log_file") or DEFAULT_RESPONDER_LOG
    if errors:
        raise PodnetError("invalid options: " + "; ".join(errors), errors=errors)
    return p


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


# -- facts derived from the cached pod interface ----------------------------------

def _cidr(route):
    return f"{route['dst'] or '0.0.0.0'}/{route['dst_len']}"


def gateway_of(original):
    main = [r for r in original["routes"] if r["table"] == MAIN_TABLE and r.get("gateway")]
    for route in main:
        if route["dst_len"] == 0:
            return route["gateway"]
    gateways = main or [r for r in original["routes"] if r.get("gateway")]
    return gateways[0]["gateway"] if gateways else None


def dhcp_routes(original):
    """Routes for option 121: link routes first, other gateway routes, the default route last."""
    main = [r for r in original["routes"] if r["table"] == MAIN_TABLE and r["type"] == 1]
    link = [{"dst": _cidr(r), "gateway": None} for r in main if not r.get("gateway") and r["dst_len"]]
    via = [{"dst": _cidr(r), "gateway": r["gateway"]} for r in main if r.get("gateway") and r["dst_len"]]
    default = [{"dst": "0.0.0.0/0", "gateway": r["gateway"]} for r in main if r.get("gateway") and not r["dst_len"]]
    seen, out = set(), []
    for route in link + via + default[:1]:
        if route["dst"] not in seen:
            seen.add(route["dst"])
            out.append(route)
    return out


def primary_ipv4(original):
    addrs = [a for a in original["ipv4"] if not a["flags"] & 0x01]  # IFA_F_SECONDARY
    addrs = addrs or original["ipv4"]
    return addrs[0] if addrs else None


def launcher_facts(binding, original, params):
    """What a VM launcher needs: tap, MAC, MTU, IP, gateway, routes, libvirt and qemu snippets."""
    tap, mac, mtu = binding["tap"], original["mac"], original["mtu"]
    netdev_id = f"net-{binding['interface']}"
    netdev = f"tap,id={netdev_id},ifname={tap},script=no,downscript=no"
    device = f"virtio-net-pci,netdev={netdev_id},mac={mac},host_mtu={mtu}"
    driver = ""
    if params["multiqueue"]:
        netdev += ",vhost=on"
        device += ",mq=on"
        driver = "  <driver name='vhost'/>\n"
    xml = (f"<interface type='ethernet'>\n  <mac address='{mac}'/>\n  <target dev='{tap}' managed='no'/>\n"
           f"  <model type='virtio'/>\n{driver}  <mtu size='{mtu}'/>\n</interface>")
    facts = {
        "tap": tap, "bridge": binding["bridge"], "pod_interface": binding["pod_interface"],
        "vm_mac": mac, "mtu": mtu, "delegate_ip": binding["delegate_ip"],
        "ip": None, "prefixlen": None, "gateway": None, "routes": [],
        "libvirt_interface_xml": xml, "qemu_args": ["-netdev", netdev, "-device", device],
    }
    if binding["delegate_ip"]:
        addr = primary_ipv4(original)
        facts.update(ip=addr and addr["address"], prefixlen=addr and addr["prefixlen"],
                     gateway=gateway_of(original), routes=dhcp_routes(original))
    return facts


def lease_declaration(key, cache, params):
    """The declaration the DHCP responder reads, checked by its own validator when available."""
    original, binding = cache["original"], cache["binding"]
    facts = launcher_facts(binding, original, params)
    declaration = {
        "version": LEASE_VERSION, "key": key, "netns": cache["netns"], "netns_inode": cache["netns_inode"],
        "bridge": binding["bridge"], "tap": binding["tap"], "vm_mac": original["mac"],
        "ip": facts["ip"], "prefixlen": facts["prefixlen"], "gateway": facts["gateway"], "routes": facts["routes"],
        "mtu": original["mtu"], "dns_servers": params["dns_servers"], "search_domains": params["search_domains"],
        "hostname": params.get("hostname"), "lease_time": params["lease_time"],
    }
    try:
        from ansible_collections.virtnet.podnet.plugins.module_utils._lease import validate_declaration
    except ImportError:  # the responder's module needs pyroute2.dhcp; plumbing does not
        return declaration
    # Fails at plumb time, before any change, rather than when the responder serves it.
    return validate_declaration(declaration)


# -- views for diff ---------------------------------------------------------------

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


def _addr_texts(addrs):
    return [f"{a['address']}/{a['prefixlen']}" for a in addrs]


def read_view(ipr, binding, full=False):
    """The three links that matter (one small request each) and their IPv4 addresses (one dump)."""
    live = nl.links_named(ipr, (binding["pod_interface"], binding["bridge"], binding["tap"]))
    by_index = nl.addresses_by_index(ipr)
    addrs = {n: _addr_texts(by_index.get(v["index"], [])) for n, v in live.items()}
    return (live, addrs, by_index) if full else (live, addrs)


# -- planning ---------------------------------------------------------------------

class Change:
    __slots__ = ("step", "text", "apply")

    def __init__(self, step, text, apply):
        self.step, self.text, self.apply = step, text, apply


def _validate_fresh(binding, pod, original):
    name = binding["pod_interface"]
    if binding["delegate_ip"]:
        if not original["ipv4"]:
            raise PodnetError(f"pod interface {name} has no IPv4 address: nothing to delegate to the VM "
                              "(delegate_ip is true; use a binding with delegate_ip false for Ethernet mode)",
                              pod_interface=name)
        if gateway_of(original) is None:
            addrs = ", ".join(_addr_texts(original["ipv4"]))
            raise PodnetError(f"pod interface {name} has IPv4 {addrs} but no route through a gateway: "
                              "the VM could not be given a default route", pod_interface=name)


def plan_present(ipr, run_dir, key, path, inode, binding, params, cache):
    """Return ``(cache, changes, live, addrs)`` for ``present``; raises before any change on bad input."""
    name, bridge, tap = binding["pod_interface"], binding["bridge"], binding["tap"]
    live, addrs, ipv4_by_index = read_view(ipr, binding, full=True)
    pod = live.get(name)
    if pod is None:
        hint = " (the cache records it: it vanished after plumbing; run state=absent)" if cache else ""
        raise PodnetError(f"pod interface {name} not found in network namespace {path}{hint}", pod_interface=name)
    br = live.get(bridge)
    if br is not None and br["kind"] != "bridge":
        raise PodnetError(f"{bridge} exists in the pod but is a {br['kind'] or 'plain'} link, not a bridge", bridge=bridge)
    if pod["master"] and (br is None or pod["master"] != br["index"]):
        master = nl.ifname(pod["master"])
        raise PodnetError(f"pod interface {name} is already enslaved to {master}; it must not have a master",
                          pod_interface=name, master=master)
    tp = live.get(tap)
    if tp is not None:
        if tp["kind"] != "tun" or tp.get("tun_type") != nl.TUN_TYPE_TAP:
            raise PodnetError(f"{tap} exists in the pod but is not a tap device (kind {tp['kind']})", tap=tap)
        if tp["multiqueue"] != params["multiqueue"]:
            raise PodnetError(f"tap {tap} exists with multiqueue {str(tp['multiqueue']).lower()}; a tap's queue mode "
                              "cannot change: run state=absent first", tap=tap)
        if tp["master"] and (br is None or tp["master"] != br["index"]):
            raise PodnetError(f"tap {tap} is already enslaved to another master", tap=tap)

    changes = []
    if cache is None:
        if pod["master"]:
            raise PodnetError(f"pod interface {name} is already enslaved to {bridge} but no state is recorded "
                              f"in {run_dir}; its original configuration is unknown", pod_interface=name)
        original = nl.discover(ipr, name, pod, ipv4=ipv4_by_index.get(pod["index"]))
        _validate_fresh(binding, pod, original)
        cache = {
            "netns": path, "netns_inode": inode, "binding": binding, "original": original,
            "pod_mac": params.get("pod_mac") or new_pod_mac(original["mac"], f"{inode}|{name}"),
            "tap_options": {"uid": params.get("tap_uid"), "gid": params.get("tap_gid"),
                            "multiqueue": params["multiqueue"]},
            "step": "cached",
        }
        if cache["pod_mac"] == original["mac"]:
            raise PodnetError(f"pod_mac: {cache['pod_mac']} is the pod interface's own MAC, which the VM takes")
        record = dict(cache)
        changes.append(Change("cache", f"record {name}'s original configuration in {_state.cache_path(run_dir, key)}",
                              lambda: _state.save_cache(run_dir, key, record)))
    else:
        if cache["binding"] != binding:
            raise PodnetError(f"this pod is already plumbed with another binding ({_state.cache_path(run_dir, key)}); "
                              "run state=absent with the old binding first", binding=cache["binding"])
    original, pod_mac, mtu = cache["original"], cache["pod_mac"], cache["original"]["mtu"]

    def add(step, text, fn, *args, **kwarg):
        changes.append(Change(step, text, lambda: fn(ipr, *args, **kwarg)))

    group = link_group(bridge)
    if br is None:
        add("bridge", f"create bridge {bridge} (MTU {mtu}, STP off, forward delay 0, no IPv6 autoconf)",
            nl.create_bridge, bridge, mtu, group)
    else:
        if br["mtu"] != mtu:
            add("bridge", f"set MTU of {bridge} to {mtu} (was {br['mtu']})", nl.set_link, bridge, "setting the MTU", mtu=mtu)
        if br.get("stp_state") != 0 or br.get("forward_delay") != 0:
            add("bridge", f"set STP off and forward delay 0 on {bridge}", nl.set_bridge_options, bridge)
        if not nl.ipv6_autoconf_off(bridge):
            changes.append(Change("bridge", f"turn IPv6 autoconf off on {bridge}",
                                  lambda: nl.disable_ipv6_autoconf(bridge)))
    # MAC, master and up state of the pod interface in one message.
    port, port_texts = {}, []
    if pod["mac"] != pod_mac:
        port["mac"] = pod_mac
        port_texts.append(f"set MAC of {name} to {pod_mac} (was {pod['mac']}; the VM takes {original['mac']})")
    enslaved = br is not None and pod["master"] == br["index"]
    if not enslaved:
        port["master_name"] = bridge
        port_texts.append(f"enslave {name} to {bridge}")
    if not pod["up"]:
        port["state"] = "up"
        port_texts.append(f"set {name} up")
    if port:
        add("pod_port", "; ".join(port_texts), nl.set_port, name, **port)
    if not enslaved or pod.get("learning", True):
        add("pod_learning", f"turn learning off on {name}'s port of {bridge}", nl.set_learning, name, False)
    uid, gid = params.get("tap_uid"), params.get("tap_gid")
    if tp is None:
        owner = "".join([f", owner {uid}" if uid is not None else "", f", group {gid}" if gid is not None else "",
                         ", multiqueue" if params["multiqueue"] else ""])
        add("tap", f"create persistent tap {tap}{owner}", nl.create_tap, tap, uid, gid, params["multiqueue"])
    elif (uid is not None and tp["uid"] != uid) or (gid is not None and tp["gid"] != gid):
        add("tap", f"set owner of tap {tap} to {uid}:{gid} (was {tp['uid']}:{tp['gid']})",
            nl.create_tap, tap, uid, gid, params["multiqueue"])
    # One netlink message per tap: the kernel applies MTU, master, then up, in that order.
    tap_set, tap_texts = {}, []
    if tp is None or tp["mtu"] != mtu:
        tap_set["mtu"] = mtu
        tap_texts.append(f"set MTU of {tap} to {mtu}")
    if tp is None or br is None or tp["master"] != br["index"]:
        tap_set["master_name"] = bridge
        tap_texts.append(f"enslave {tap} to {bridge}")
    if tp is None or not tp["up"]:
        tap_set["state"] = "up"
        tap_texts.append(f"set {tap} up")
    if tap_set:
        tap_set["group"] = group  # silent: lets absent delete bridge and tap in one request
        add("tap_config", "; ".join(tap_texts), nl.set_link, tap, "configuring", **tap_set)
    if br is None or not br["up"]:
        add("bridge_up", f"set {bridge} up", nl.set_link, bridge, "setting up", state="up")
    if binding["delegate_ip"]:
        # The VM's DHCP is answered in the pod: keep it off the cluster network, and keep
        # the cluster's DHCP servers away from the VM.
        if tp is None or not all(_filters().dhcp_filters_present(ipr, tap, name).values()):
            changes.append(Change("filters", f"drop DHCP requests entering from {tap} and DHCP replies entering from {name} (tc)",
                                  lambda: _filters().install_dhcp_filters(ipr, tap, name)))
        present_addrs = set(addrs.get(name, []))
        for addr in original["ipv4"]:
            text = f"{addr['address']}/{addr['prefixlen']}"
            if text in present_addrs:
                add("delegate", f"remove {text} from {name} (delegated to the VM; its routes are cached)",
                    nl.del_address, name, addr)
        declaration = lease_declaration(key, cache, params)
        if _state.read_json(_state.lease_path(run_dir, key)) != declaration:
            changes.append(Change("lease", f"declare the lease of {declaration['ip']}/{declaration['prefixlen']} "
                                  f"for {original['mac']} in {_state.lease_path(run_dir, key)}",
                                  lambda: declare_lease(run_dir, declaration)))
    return cache, changes, live, addrs


def predict_present(before, binding, cache):
    """The pod view after ``present``: used as diff ``after`` in check mode."""
    name, bridge, tap, mtu = binding["pod_interface"], binding["bridge"], binding["tap"], cache["original"]["mtu"]
    after = {"links": {k: dict(v) for k, v in before["links"].items()},
             "addresses": {k: list(v) for k, v in before["addresses"].items()}}
    pod = after["links"][name]
    pod.update(mac=cache["pod_mac"], master=bridge, up=True)
    after["links"][bridge] = {"kind": "bridge", "mtu": mtu, "up": True, "master": None}
    after["links"][tap] = {"kind": "tun", "mtu": mtu, "up": True, "master": bridge}
    after["addresses"].setdefault(bridge, [])
    after["addresses"].setdefault(tap, [])
    if binding["delegate_ip"]:
        gone = set(_addr_texts(cache["original"]["ipv4"]))
        after["addresses"][name] = [a for a in after["addresses"][name] if a not in gone]
    return after


def plan_absent(ipr, run_dir, key, binding, cache):
    name, bridge, tap = binding["pod_interface"], binding["bridge"], binding["tap"]
    live, addrs = read_view(ipr, binding)
    changes, warnings = [], []

    def add(step, text, fn, *args, **kwarg):
        changes.append(Change(step, text, lambda: fn(ipr, *args, **kwarg)))

    if os.path.exists(_state.lease_path(run_dir, key)):
        changes.append(Change("absent_lease", "withdraw the lease declaration", lambda: withdraw_lease(run_dir, key)))
    tp, br, pod = live.get(tap), live.get(bridge), live.get(name)
    group = link_group(bridge)
    if tp is not None and tp["kind"] != "tun":
        warnings.append(f"{tap} is not a tap (kind {tp['kind']}); left alone")
        tp = None
    if br is not None and br["kind"] != "bridge":
        warnings.append(f"{bridge} is not a bridge (kind {br['kind']}); left alone")
        br = None
    # One request deletes the whole group: only when it holds exactly this binding's two links.
    if (tp is not None and br is not None and tp["group"] == br["group"] == group
            and {n for n, v in nl.all_links(ipr).items() if v["group"] == group} == {tap, bridge}):
        add("absent_links", f"delete tap {tap} and bridge {bridge} (releases {name})", nl.delete_group, group)
    else:
        if tp is not None:
            add("absent_tap", f"delete tap {tap}", nl.delete_link, tap)
        if br is not None:
            add("absent_bridge", f"delete bridge {bridge} (releases {name})", nl.delete_link, bridge)
    if pod is not None and _filters().dhcp_filters_present(ipr, tap, name)["pod_interface"]:
        changes.append(Change("absent_filters", f"remove the DHCP reply filter from {name}",
                              lambda: _filters().remove_dhcp_filters(ipr, tap, name)))
    if cache is not None and pod is not None:
        original = cache["original"]
        restore, texts = {}, []
        if pod["mac"] != original["mac"]:
            restore["mac"] = original["mac"]
            texts.append(f"restore MAC of {name} to {original['mac']}")
        if pod["mtu"] != original["mtu"]:
            restore["mtu"] = original["mtu"]
            texts.append(f"restore MTU of {name} to {original['mtu']}")
        if pod["up"] != original["up"]:
            restore["state"] = "up" if original["up"] else "down"
            texts.append(f"set {name} {restore['state']}")
        if restore:
            add("absent_pod", "; ".join(texts), _restore_link, name, restore)
        present_addrs = set(addrs.get(name, []))
        missing = [a for a in original["ipv4"] if f"{a['address']}/{a['prefixlen']}" not in present_addrs]
        for addr in missing:
            add("absent_addresses", f"restore {addr['address']}/{addr['prefixlen']} on {name}", nl.add_address, name, addr)
        live_routes = {nl.route_key(r) for r in nl.routes(ipr, pod["index"])}
        # Link routes first, so gateways are reachable when their routes return.
        todo = sorted((r for r in original["routes"] if r["proto"] != nl.RTPROT_KERNEL
                       and nl.route_key(r) not in live_routes), key=lambda r: -r["scope"])
        for route in todo:
            add("absent_routes", f"restore route {nl.route_text(route)} on {name}", nl.add_route, name, route)
    elif cache is not None:
        warnings.append(f"pod interface {name} is gone; nothing to restore")
    return changes, warnings, live, addrs


def _restore_link(ipr, name, restore):
    restore = dict(restore)
    mac = restore.pop("mac", None)
    if mac is not None:
        nl.set_mac(ipr, name, mac)
    if restore:
        nl.set_link(ipr, name, "restoring", **restore)


def predict_absent(before, binding, cache):
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
            after["addresses"][name] = have + [a for a in _addr_texts(original["ipv4"]) if a not in have]
    return after


# -- the node's DHCP responder ---------------------------------------------------

def responder_pidfile(run_dir):
    return os.path.join(run_dir, "podnet-dhcpd.pid")


def _responder_code_root(pythonpath):
    """A directory holding a stable copy of the collection for the daemon to run from."""
    candidates = [pythonpath]
    here = os.path.abspath(__file__)
    if os.path.isfile(here):  # a collection on disk, not a module's temporary zipped payload
        candidates.append(here.rsplit(os.sep + "ansible_collections" + os.sep, 1)[0])
    for root in candidates:
        if not root or not os.path.isfile(os.path.join(root, RESPONDER_RELPATH)):
            continue
        collection = os.path.join(root, "ansible_collections", "virtnet", "podnet")
        # An installed collection (MANIFEST.json), a checkout (galaxy.yml), or the node role's copy
        # (module_utils only, at the configured path); never a module's extracted payload.
        if root == pythonpath or any(os.path.exists(os.path.join(collection, f)) for f in ("MANIFEST.json", "galaxy.yml")):
            return root
    return None


def ensure_responder(params, check_mode):
    """Start podnet-dhcpd unless one holds the run dir's pidfile; return ``(change text or None, pid)``."""
    from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder
    run_dir = params["run_dir"]
    pidfile = responder_pidfile(run_dir)
    pid = _dhcp_responder.running_pid(pidfile)
    if pid:
        return None, pid
    root = _responder_code_root(params["responder_pythonpath"])
    if root is None:
        raise PodnetError(f"podnet-dhcpd is not running (no process holds {pidfile}) and is not installed under "
                          f"{params['responder_pythonpath']}: run the virtnet.podnet.node role on this node, or set "
                          "responder=skip if you run the responder yourself", pidfile=pidfile)
    text = f"start podnet-dhcpd (pidfile {pidfile}, log {params['responder_log_file']})"
    if check_mode:
        return text, None
    return text, _dhcp_responder.spawn_daemon(run_dir, pidfile, params["responder_log_file"], pythonpath=root)


# -- runners ----------------------------------------------------------------------

def _apply(changes):
    done = []
    for change in changes:
        change.apply()
        done.append(change.text)
        step_done(change.step)
    return done


def _prepare(params):
    params = validate_options(params)
    binding = validate_binding(params.get("binding"))
    path = _netns.netns_path(params.get("netns"))
    key = _state.state_key(params["netns"], binding["pod_interface"])
    return params, binding, path, key


def _refuse_other_name(run_dir, key, inode, binding):
    """Fail when this namespace was plumbed under another name: its record is the only copy of the
    pod's original configuration, and a run under this name would not see it (the IP would be lost)."""
    other = _state.record_elsewhere(run_dir, key, inode, binding["pod_interface"])
    if other is not None:
        recorded = (_state.read_json(other) or {}).get("netns")
        raise PodnetError(f"this pod was plumbed under another name of the same namespace ({recorded}, recorded in "
                          f"{other}); use that netns value", recorded_netns=recorded, cache_path=other)


def present(params, check_mode=False, diff=True):
    params, binding, path, key = _prepare(params)
    run_dir = params["run_dir"]
    wants_responder = binding["delegate_ip"] and params["responder"] == "auto"
    if wants_responder:
        ensure_responder(params, check_mode=True)  # fails before any change when it could not be started
    if _netns.netns_inode(path) is None:
        raise PodnetError(f"network namespace {params['netns']!r} not found ({path} does not exist)",
                          netns=params["netns"])
    with _state.pod_lock(run_dir, params["netns"]), _netns.entered(params["netns"]) as (ipr, path, inode):
        cache, stale = _state.load_cache(run_dir, key, inode)
        if cache is None:
            _refuse_other_name(run_dir, key, inode, binding)
        if stale and not check_mode:
            # A pod recreated under the same name: the old record describes a namespace that is gone.
            _state.remove(_state.cache_path(run_dir, key))
            withdraw_lease(run_dir, key)
        cache, changes, live, addrs = plan_present(ipr, run_dir, key, path, inode, binding, params, cache)
        before = pod_view(live, addrs, binding)
        if check_mode:
            after = predict_present(before, binding, cache)
            done = [c.text for c in changes]
        else:
            done = _apply(changes)
            if changes or cache.get("step") != "complete":
                cache = dict(cache, step="complete")
                # Only the step changes: losing it in a crash is harmless, so no fsync.
                _state.save_cache(run_dir, key, cache, durable=False)
            # The real diff is read back from the kernel, not predicted (skipped when nobody asks).
            after = pod_view(*read_view(ipr, binding), binding) if changes and diff else before
    responder_pid = None
    if wants_responder:
        started, responder_pid = ensure_responder(params, check_mode)
        if started:
            done.append(started)
    result = {
        "changed": bool(done), "changes": done, "diff": {"before": before, "after": after},
        "responder_pid": responder_pid,
        "netns": params["netns"], "netns_path": path, "key": key, "pod_mac": cache["pod_mac"],
        "cache_path": _state.cache_path(run_dir, key),
        "lease_path": _state.lease_path(run_dir, key) if binding["delegate_ip"] else None,
        "original": cache["original"],
    }
    result.update(launcher_facts(binding, cache["original"], params))
    return result


def absent(params, check_mode=False, diff=True):
    params, binding, path, key = _prepare(params)
    run_dir = params["run_dir"]
    cache_file, lease_file = _state.cache_path(run_dir, key), _state.lease_path(run_dir, key)
    result = {"netns": params["netns"], "netns_path": path, "key": key, "changed": False, "changes": [],
              "warnings": [], "housekeeping": []}
    empty = {"links": {}, "addresses": {}}
    if _netns.netns_inode(path) is None:
        # The pod is gone and its links with it; only our records may remain.
        for label, file in (("lease declaration", lease_file), ("state cache", cache_file)):
            if os.path.exists(file):
                result["housekeeping"].append(f"remove {label} {file}")
                if not check_mode:
                    _state.remove(file)
        result["diff"] = {"before": empty, "after": empty}
        return result
    with _state.pod_lock(run_dir, params["netns"]), _netns.entered(params["netns"]) as (ipr, path, inode):
        cache, stale = _state.load_cache(run_dir, key, inode)
        if cache is None:
            _refuse_other_name(run_dir, key, inode, binding)
        if stale:
            result["housekeeping"].append(f"remove stale state cache {cache_file} (recorded for an earlier namespace)")
            if not check_mode:
                _state.remove(cache_file)
        if cache is not None and cache["binding"] != binding:
            raise PodnetError(f"this pod was plumbed with another binding ({cache_file}); "
                              "run state=absent with that binding", binding=cache["binding"])
        changes, warnings, live, addrs = plan_absent(ipr, run_dir, key, binding, cache)
        before = pod_view(live, addrs, binding)
        if check_mode:
            after = predict_absent(before, binding, cache)
            done = [c.text for c in changes]
        else:
            done = _apply(changes)
            # Last: the record must outlive every change it allows to undo.
            if _state.remove(cache_file):
                result["housekeeping"].append(f"remove state cache {cache_file}")
            step_done("absent_cache")
            after = pod_view(*read_view(ipr, binding), binding) if changes and diff else before
    result.update(changed=bool(done), changes=done, warnings=warnings, diff={"before": before, "after": after})
    if cache is not None:
        result["original"] = cache["original"]
    return result


def info(params):
    """Read-only: what is plumbed, drift from the cache (like CNI CHECK), the cached original, the lease."""
    params, binding, path, key = _prepare(params)
    run_dir = params["run_dir"]
    cache_file, lease_file = _state.cache_path(run_dir, key), _state.lease_path(run_dir, key)
    state_file = os.path.join(run_dir, "lease-state", key + ".json")
    result = {"changed": False, "netns": params["netns"], "netns_path": path, "key": key,
              "namespace_exists": False, "plumbed": False, "in_sync": False, "drift": [], "links": {},
              "addresses": {}, "original": None, "cache_path": cache_file,
              "lease": _state.read_json(lease_file), "lease_state": _state.read_json(state_file)}
    if _netns.netns_inode(path) is None:
        cache = _state.read_json(cache_file)
        result["original"] = cache and cache.get("original")
        if cache:
            result["drift"] = ["the pod's network namespace is gone; state=absent cleans up the records"]
        return result
    result["namespace_exists"] = True
    with _netns.entered(params["netns"]) as (ipr, path, inode):
        cache, stale = _state.load_cache(run_dir, key, inode)
        live, addrs = read_view(ipr, binding)
        view = pod_view(live, addrs, binding)
        result.update(links=view["links"], addresses=view["addresses"])
        if stale:
            result["drift"] = [f"{cache_file} was recorded for an earlier namespace of this name (stale)"]
        if cache is None:
            return result
        result["original"] = cache["original"]
        result["plumbed"] = True
        if cache["binding"] != binding:
            result["drift"] = ["plumbed with another binding: " + repr(cache["binding"])]
            return result
        options = dict(params, tap_uid=cache["tap_options"]["uid"], tap_gid=cache["tap_options"]["gid"],
                       multiqueue=cache["tap_options"]["multiqueue"])
        try:
            changes = plan_present(ipr, run_dir, key, path, inode, binding, options, cache)[1]
            # The lease's DHCP extras are options of vm_pod_bridge, unknown here: check presence only.
            result["drift"] = [c.text for c in changes if c.step != "lease"]
            if binding["delegate_ip"] and result["lease"] is None:
                result["drift"].append(f"lease declaration {lease_file} is missing")
        except PodnetError as exc:
            result["drift"] = [exc.msg]
        result["in_sync"] = not result["drift"]
        result.update(launcher_facts(binding, cache["original"], options))
    return result


def run(params, check_mode=False, diff=True):
    """The module entry point: ``params`` as the module receives them.

    With ``diff=False`` the pod is not read back after a change, so ``diff.after`` is not
    the real state; modules pass their ``_diff`` flag.
    """
    state = params.get("state", "present")
    if state == "present":
        return present(params, check_mode, diff)
    if state == "absent":
        return absent(params, check_mode, diff)
    raise PodnetError(f"state: {state!r} is not one of present, absent")


POD_OPTIONS = ("netns", "binding", "tap_uid", "tap_gid", "multiqueue", "pod_mac", "dns_servers", "search_domains",
               "hostname", "lease_time")


def run_many(params, check_mode=False, diff=True):
    """Many pods in one call (the module's ``pods``): one process and one task for a whole node.

    Each entry takes the call's options as defaults. Every entry is validated before any
    pod is touched; then each pod is plumbed (or unplumbed) in turn. A pod that fails does
    not stop the others: the failure lists every failed pod, and ``pods`` says what was
    done to each, so a rerun finishes the job. The responder is ensured once, at the end.
    """
    pods = params.get("pods")
    if not isinstance(pods, list):
        raise PodnetError(f"pods: must be a list, got {type(pods).__name__}")
    common = {k: v for k, v in params.items() if k != "pods"}
    entries, errors, seen = [], [], {}
    for index, pod in enumerate(pods):
        if not isinstance(pod, dict):
            errors.append(f"pods[{index}]: must be a mapping with netns and binding")
            continue
        unknown = sorted(str(k) for k in pod if k not in POD_OPTIONS)
        if unknown:
            errors.append(f"pods[{index}]: unknown option(s) {', '.join(unknown)} (allowed: {', '.join(POD_OPTIONS)})")
            continue
        entry = dict(common)
        entry.update({k: v for k, v in pod.items() if v is not None})
        entry["responder"] = "skip"  # ensured once for all pods, below
        try:
            _prepare(entry)
        except PodnetError as exc:
            errors.append(f"pods[{index}] (netns {pod.get('netns')!r}): {exc.msg}")
            continue
        key = _state.state_key(entry["netns"], entry["binding"]["pod_interface"])
        if key in seen:
            errors.append(f"pods[{index}]: the same pod interface as pods[{seen[key]}] ({key})")
        seen[key] = index
        entries.append(entry)
    common_options = validate_options(dict(common, netns=None))
    wants_responder = (common_options["state"] == "present" and common_options["responder"] == "auto"
                       and any(e["binding"]["delegate_ip"] for e in entries))
    if wants_responder:
        try:
            ensure_responder(common_options, check_mode=True)
        except PodnetError as exc:
            errors.append(exc.msg)
    if errors:
        raise PodnetError(f"invalid pods ({len(errors)} error{'s' if len(errors) != 1 else ''}), nothing was changed: "
                          + "; ".join(errors), errors=errors)

    results, failures = [], []
    before, after = {}, {}
    for entry in entries:
        try:
            result = run(entry, check_mode, diff)
        except PodnetError as exc:
            failures.append(f"netns {entry['netns']!r}: {exc.msg}")
            results.append({"netns": entry["netns"], "failed": True, "msg": exc.msg, "changed": False, "changes": []})
            continue
        pod_diff = result.pop("diff")
        before[entry["netns"]], after[entry["netns"]] = pod_diff["before"], pod_diff["after"]
        results.append(result)
    changes = [f"{r['netns']}: {text}" for r in results for text in r["changes"]]
    responder_pid = None
    if wants_responder and len(failures) < len(entries):
        started, responder_pid = ensure_responder(common_options, check_mode)
        if started:
            changes.append(started)
    summary = {"changed": bool(changes), "changes": changes, "pods": results, "responder_pid": responder_pid,
               "diff": {"before": before, "after": after}}
    if failures:
        raise PodnetError(f"{len(failures)} of {len(entries)} pods failed (the others are done; rerun to finish): "
                          + "; ".join(failures), **{k: v for k, v in summary.items() if k != "diff"})
    return summary
