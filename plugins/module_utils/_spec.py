# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the VM network spec, its validation, and the plan.

``build_plan`` plans one VM object; ``validate_binding`` checks one plan entry handed back
by a user. The batch form (many VMs with their pod namespaces) is ``_vm_batch``.

One place knows the schema of ``spec.devices.interfaces`` and ``spec.networks``.
Backends and connection methods are entries in two registries (``BACKENDS``,
``CONNECTIONS``): supporting a new one is a local addition there.

Validation never stops at the first problem: every violation is collected as a
``SpecError`` naming the field's path, and reported at once.

``SpecError`` and its message texts are ``_spec_errors``'; ``dhcpOptions`` is checked by
``_dhcp_options``, which the responder's lease declarations share (without the rest of the spec).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_options import SPEC_DHCP_NAMES, validate_dhcp_options
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._spec_errors import (
    SpecError, describe, key_text, names_text, shorten)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")  # used with fullmatch: "$" would accept a trailing newline
DNS_LABEL_MAX = 63
IFNAME_MAX = 15  # Linux IFNAMSIZ - 1
# Characters the kernel refuses in interface names, plus the ones that make names unsafe as file names.
BRIDGE_PREFIX = "k6t-"
DEFAULT_POD_INTERFACE = "eth0"
DEFAULT_TAP = "tap0"
MAX_LISTED_ERRORS = 20
MAX_SUPPORTED_INTERFACES = 1

INTERFACES_PATH = "spec.devices.interfaces"
NETWORKS_PATH = "spec.networks"


def _listing(names, limit=5):
    """At most ``limit`` quoted names, then how many more."""
    names = list(names)
    shown = ", ".join(repr(shorten(n)) for n in names[:limit]) or "none"
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# --- registries -----------------------------------------------------------------------------

class Backend:
    """A network backend (the ``spec.networks[]`` key other than ``name``)."""

    name = ""
    description = ""
    fields = {}  # field name -> validator(value, path, errors)

    def validate(self, value, path, errors):
        """Check the backend's own mapping (``pod: {}``)."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            errors.append(SpecError(path, f"must be a mapping, got {describe(value)}", "{}"))
            return {}
        normalized = {}
        for key, item in value.items():
            if key not in self.fields:
                allowed = names_text(self.fields) if self.fields else "no fields"
                errors.append(SpecError(f"{path}.{key_text(key)}", f"unknown field of the {self.name!r} backend", allowed))
                continue
            normalized[key] = self.fields[key](item, f"{path}.{key}", errors)
        return normalized


class PodBackend(Backend):
    name = "pod"
    description = "the pod's own network interface"


class Connection:
    """A connection method (the ``spec.devices.interfaces[]`` key other than ``name``)."""

    name = ""
    options = {}  # option name -> (validator, default, backends it is valid with or None for all)

    def validate(self, value, path, errors):
        if value is None:  # "bridge:" with nothing after it in YAML
            value = {}
        if not isinstance(value, Mapping):
            errors.append(SpecError(path, f"must be a mapping, got {describe(value)}", names_text(self.options) or "{}"))
            return None
        normalized = {}
        for key, item in value.items():
            if key not in self.options:
                errors.append(SpecError(f"{path}.{key_text(key)}", f"unknown option of the {self.name!r} connection",
                                        names_text(self.options) or "no options"))
                continue
            validator = self.options[key][0]
            normalized[key] = validator(item, f"{path}.{key}", errors)
        for key, (_validator, default, _backends) in self.options.items():
            normalized.setdefault(key, default)
        return normalized

    def check_backend(self, options, backend, path, errors):
        """Options that only make sense with some backends."""
        for key, (_validator, default, backends) in self.options.items():
            if backends is not None and options.get(key) != default and backend.name not in backends:
                errors.append(SpecError(f"{path}.{key}", f"is valid only with the {names_text(backends)} backend, "
                                        f"but network uses the {backend.name!r} backend"))

    def plan_fields(self, options, backend):
        """The plan's connection-specific fields."""
        raise NotImplementedError


def _boolean(value, path, errors):
    if isinstance(value, bool):
        return value
    errors.append(SpecError(path, f"must be a boolean, got {describe(value)}", "true, false"))
    return False


class BridgeConnection(Connection):
    name = "bridge"
    options = {"delegateIp": (_boolean, False, ("pod",))}

    def plan_fields(self, options, backend):
        delegate = bool(options.get("delegateIp"))
        # The spec's support matrix: pod + bridge is Ethernet, pod + bridge.delegateIp is IP.
        return {"delegate_ip": delegate, "connectivity": "ip" if delegate else "ethernet"}


BACKENDS = {b.name: b for b in (PodBackend(),)}
CONNECTIONS = {c.name: c for c in (BridgeConnection(),)}


# --- extensions beyond the seed spec: KubeVirt's Interface.macAddress and Interface.dhcpOptions --

MAC_FORMS = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}")  # one separator throughout
MAC_ALLOWED = "a unicast MAC address like 02:00:00:00:00:01 or 02-00-00-00-00-01"


def validate_mac_address(value, path, errors, unset_ok=True):
    """KubeVirt's ``macAddress``: a unicast MAC, colon or dash separated, any case; returned lower case
    with colons. "" and null are no MAC (KubeVirt's omitempty) unless ``unset_ok`` is false."""
    if unset_ok and value in (None, ""):
        return None
    if not isinstance(value, str):
        errors.append(SpecError(path, f"must be a string, got {describe(value)}", MAC_ALLOWED))
        return None
    if not MAC_FORMS.fullmatch(value):
        errors.append(SpecError(path, f"{shorten(value)!r} is not a MAC address", MAC_ALLOWED))
        return None
    mac = value.lower().replace("-", ":")
    if int(mac[:2], 16) & 1:
        errors.append(SpecError(path, f"{value!r} is a multicast address", "a unicast MAC address (first octet even)"))
        return None
    if mac == "00:00:00:00:00:00":
        errors.append(SpecError(path, f"{value!r} is the all-zero address", MAC_ALLOWED))
        return None
    return mac


def _spec_dhcp_options(value, path, errors):
    return validate_dhcp_options(value, path, errors, SPEC_DHCP_NAMES)


# Interface fields besides name and the connection method: field -> validator(value, path, errors).
INTERFACE_FIELDS = {"macAddress": validate_mac_address, "dhcpOptions": _spec_dhcp_options}

DEFAULT_INTERFACES = [{"name": "default", "bridge": {"delegateIp": True}}]
DEFAULT_NETWORKS = [{"name": "default", "pod": {}}]


# --- validation -----------------------------------------------------------------------------

def _validate_name(item, path, errors):
    if "name" not in item:
        errors.append(SpecError(f"{path}.name", "is required", "a lowercase DNS label"))
        return None
    name = item["name"]
    if not isinstance(name, str):
        errors.append(SpecError(f"{path}.name", f"must be a string, got {describe(name)}", "a lowercase DNS label"))
        return None
    if len(name) > DNS_LABEL_MAX:
        errors.append(SpecError(f"{path}.name", f"is {len(name)} characters long", f"at most {DNS_LABEL_MAX}"))
        return None
    if not DNS_LABEL.fullmatch(name):
        errors.append(SpecError(f"{path}.name", f"{shorten(name)!r} is not a valid name",
                                "lowercase letters, digits and '-', starting and ending with a letter or digit"))
        return None
    return name


def _validate_entries(entries, path, registry, kind, errors, extra_fields=None):
    """Validate a list of interfaces or networks; return [(index, name, method, options, extras)].

    ``method`` is None for an entry whose method or options are invalid (already reported).
    ``extra_fields`` are the entry's fields besides name and the method (field -> validator);
    ``extras`` maps those the entry sets (not null) to their normalised values.
    """
    extra_fields = extra_fields or {}
    fields_text = "".join(f"{name}, " for name in sorted(extra_fields))
    if not isinstance(entries, list):
        errors.append(SpecError(path, f"must be a list, got {describe(entries)}"))
        return []
    result = []
    seen = {}
    for index, item in enumerate(entries):
        item_path = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            errors.append(SpecError(item_path, f"must be a mapping, got {describe(item)}"))
            continue
        name = _validate_name(item, item_path, errors)
        if name is not None:
            if name in seen:
                errors.append(SpecError(f"{item_path}.name", f"duplicate name {name!r}, also used by {path}[{seen[name]}]",
                                        f"unique names in {path}"))
                name = None
            else:
                seen[name] = index
        methods, unknown = [], False
        for key in item:
            if key == "name" or key in extra_fields:
                continue
            if key in registry:
                methods.append(key)
            else:
                unknown = True
                errors.append(SpecError(f"{item_path}.{key_text(key)}", f"unknown field of a {kind}",
                                        f"name, {fields_text}and one of {names_text(registry)}"))
        extras = {key: check(item[key], f"{item_path}.{key}", errors)
                  for key, check in extra_fields.items() if item.get(key) is not None}
        method = options = None
        if len(methods) == 1:
            method = methods[0]
            options = registry[method].validate(item[method], f"{item_path}.{method}", errors)
        elif methods:
            errors.append(SpecError(item_path, f"names more than one {kind} ({names_text(methods)})",
                                    f"exactly one of {names_text(registry)}"))
        elif not unknown:  # an unknown field was already reported with the allowed ones
            errors.append(SpecError(item_path, f"names no {kind}", f"exactly one of {names_text(registry)}"))
        # Invalid entries still take part in name matching, so pairing errors stay accurate.
        result.append((index, name, method if options is not None else None, options, extras))
    return result


def _section(vm, errors):
    """Pick ``spec.devices.interfaces`` and ``spec.networks`` out of the VM object."""
    if not isinstance(vm, Mapping):
        errors.append(SpecError("vm", f"must be a VM object (a mapping with kind: VM), got {describe(vm)}"))
        return None, None
    kind = vm.get("kind")
    if kind is not None and kind != "VM":
        errors.append(SpecError("kind", f"must be 'VM', got {describe(kind)}", "VM"))
    spec = vm.get("spec")
    if spec is None:
        return None, None
    if not isinstance(spec, Mapping):
        errors.append(SpecError("spec", f"must be a mapping, got {describe(spec)}"))
        return None, None
    devices = spec.get("devices")
    if devices is not None and not isinstance(devices, Mapping):
        errors.append(SpecError("spec.devices", f"must be a mapping, got {describe(devices)}"))
        devices = None
    interfaces = devices.get("interfaces") if devices is not None else None
    return interfaces, spec.get("networks")


def vm_name(vm):
    """The VM's metadata.name, or None; used to label errors of many VMs."""
    if isinstance(vm, Mapping) and isinstance(vm.get("metadata"), Mapping):
        name = vm["metadata"].get("name")
        if isinstance(name, str):
            return name
    return None


def match_by_name(interfaces, networks):
    """Pair items of two lists by ``name``: (pairs, unmatched interfaces, unmatched networks).

    ``pairs`` keeps the interfaces' order. Items are anything with a ``name`` key.
    """
    by_name = {}
    for network in networks:
        by_name.setdefault(network["name"], network)
    pairs, lonely_interfaces = [], []
    matched = set()
    for interface in interfaces:
        network = by_name.get(interface["name"])
        if network is None:
            lonely_interfaces.append(interface)
        else:
            pairs.append((interface, network))
            matched.add(interface["name"])
    lonely_networks = [n for n in networks if n["name"] not in matched]
    return pairs, lonely_interfaces, lonely_networks


def validate_ifname(name, path, errors):
    if not isinstance(name, str) or not name:
        errors.append(SpecError(path, f"must be a non-empty string, got {describe(name)}", "a Linux interface name"))
        return False
    size = len(name.encode("utf-8", "surrogatepass"))  # the kernel counts bytes, not characters
    if size > IFNAME_MAX:
        errors.append(SpecError(path, f"{shorten(name)!r} is {size} bytes long", f"at most {IFNAME_MAX} (Linux limit)"))
        return False
    if fields.ifname(name, path, []) is None:
        # Names go into qemu's -netdev lists and libvirt XML: no ',', quotes, '<' or control characters.
        errors.append(SpecError(path, f"{shorten(name)!r} is not a valid Linux interface name",
                                "letters, digits, '_', '.', '-'; not '.' or '..'"))
        return False
    return True


def validate_pod_names(pod_interface, tap, errors):
    ok = validate_ifname(pod_interface, "pod_interface", errors)
    if ok and len((BRIDGE_PREFIX + pod_interface).encode("utf-8", "surrogatepass")) > IFNAME_MAX:
        errors.append(SpecError("pod_interface", f"bridge name {BRIDGE_PREFIX + pod_interface!r} would exceed "
                                f"{IFNAME_MAX} bytes", f"a pod interface name of at most {IFNAME_MAX - len(BRIDGE_PREFIX)} bytes"))
    if validate_ifname(tap, "tap", errors) and tap == pod_interface:
        errors.append(SpecError("tap", f"{tap!r} is also the pod interface's name", "a different name"))


def raise_invalid(errors, subject="VM spec", scope=""):
    """Raise one ``PodnetError`` listing ``errors`` (``SpecError``s): the first MAX_LISTED_ERRORS in
    ``msg``, all of them as dicts in ``errors``. ``scope`` follows the count (" in 2 of 4 VMs")."""
    listed = [str(e) for e in errors[:MAX_LISTED_ERRORS]]
    more = len(errors) - len(listed)
    if more > 0:
        listed.append(f"... and {more} more")
    count = f"{len(errors)} error" + ("s" if len(errors) != 1 else "")
    raise PodnetError(f"invalid {subject} ({count}{scope}): " + "; ".join(listed), errors=[e.as_dict() for e in errors])


def _pair(valid_interfaces, valid_networks, pair_them, errors):
    """Interfaces paired with the networks of the same name; every one left alone is an error."""
    named_interfaces = [{"name": e[1], "entry": e} for e in valid_interfaces if e[1] is not None]
    named_networks = [{"name": e[1], "entry": e} for e in valid_networks if e[1] is not None]
    pairs, lonely_interfaces, lonely_networks = [], [], []
    if pair_them:  # both given, or both defaulted: pair them by name
        pairs, lonely_interfaces, lonely_networks = match_by_name(named_interfaces, named_networks)
    network_names = _listing(n["name"] for n in named_networks)
    interface_names = _listing(i["name"] for i in named_interfaces)
    for item in lonely_interfaces:
        index, name = item["entry"][0], item["name"]
        errors.append(SpecError(f"{INTERFACES_PATH}[{index}]", f"interface {name!r} has no network named {name!r} "
                                f"in {NETWORKS_PATH}", f"a network of the same name; networks: {network_names}"))
    for item in lonely_networks:
        index, name = item["entry"][0], item["name"]
        errors.append(SpecError(f"{NETWORKS_PATH}[{index}]", f"network {name!r} has no interface named {name!r} "
                                f"in {INTERFACES_PATH}", f"an interface of the same name; interfaces: {interface_names}"))
    return pairs


def _plan_entries(pairs, pod_interface, tap, pod_names_valid, errors):
    """One plan entry per valid pair; a pair its connection or backend refuses adds errors instead."""
    plan = []
    for interface, network in pairs:
        index, name, method, options, extras = interface["entry"]
        backend_name = network["entry"][2]
        if method is None or backend_name is None:
            continue
        connection, backend = CONNECTIONS[method], BACKENDS[backend_name]
        path = f"{INTERFACES_PATH}[{index}].{method}"
        before = len(errors)
        connection.check_backend(options, backend, path, errors)
        if backend_name != "pod":
            errors.append(SpecError(f"{INTERFACES_PATH}[{index}]", f"is connected to a {backend_name!r} network",
                                    "a pod network (the only supported backend today)"))
        planned = connection.plan_fields(options, backend)
        if "dhcpOptions" in extras and not planned["delegate_ip"]:
            # KubeVirt allows them with bridge and masquerade; here only bridge.delegateIp serves DHCP.
            errors.append(SpecError(f"{INTERFACES_PATH}[{index}].dhcpOptions", "needs bridge.delegateIp: true: "
                                    "without it the VM gets no DHCP from the node, so no options either",
                                    "bridge: {delegateIp: true}, or no dhcpOptions"))
        if len(errors) > before or not pod_names_valid:
            continue
        entry = {"interface": name, "network": network["name"], "backend": backend_name, "connection": method}
        entry.update(planned)
        entry.update({"pod_interface": pod_interface, "bridge": BRIDGE_PREFIX + pod_interface, "tap": tap})
        # Only when set: a spec without them plans exactly the binding of older versions (records compare it).
        if extras.get("macAddress"):
            entry["mac_address"] = extras["macAddress"]
        if extras.get("dhcpOptions"):
            entry["dhcp_options"] = extras["dhcpOptions"]
        plan.append(entry)
    return plan


def _unique_macs(valid_interfaces, errors):
    """No two interfaces of a VM with one macAddress."""
    seen = {}
    for index, _name, _method, _options, extras in valid_interfaces:
        mac = extras.get("macAddress")
        if not mac:
            continue
        if mac in seen:
            errors.append(SpecError(f"{INTERFACES_PATH}[{index}].macAddress", f"duplicate MAC address {mac}, also used "
                                    f"by {INTERFACES_PATH}[{seen[mac]}]", "a unique MAC address per interface"))
        else:
            seen[mac] = index


def build_plan(vm, pod_interface=DEFAULT_POD_INTERFACE, tap=DEFAULT_TAP):
    """Validate a VM object and return its plan: one entry per interface.

    Raises ``PodnetError`` with ``errors`` (a list of {path, msg, allowed}) naming every
    violation at once. Never raises anything else, whatever ``vm`` is.
    """
    errors = []
    validate_pod_names(pod_interface, tap, errors)
    pod_names_valid = not errors
    interfaces, networks = _section(vm, errors)
    if not isinstance(vm, Mapping):
        raise_invalid(errors)

    has_interfaces = interfaces is not None and interfaces != []
    has_networks = networks is not None and networks != []
    if not has_interfaces and not has_networks:
        interfaces, networks = DEFAULT_INTERFACES, DEFAULT_NETWORKS
    elif not has_interfaces:
        errors.append(SpecError(INTERFACES_PATH, f"is missing while {NETWORKS_PATH} is given",
                                "both lists, or neither for the default pod network"))
    elif not has_networks:
        errors.append(SpecError(NETWORKS_PATH, f"is missing while {INTERFACES_PATH} is given",
                                "both lists, or neither for the default pod network"))

    valid_interfaces = _validate_entries(interfaces, INTERFACES_PATH, CONNECTIONS, "connection method", errors,
                                         INTERFACE_FIELDS) if has_interfaces or not has_networks else []
    _unique_macs(valid_interfaces, errors)
    valid_networks = _validate_entries(networks, NETWORKS_PATH, BACKENDS, "backend", errors) \
        if has_networks or not has_interfaces else []

    if isinstance(interfaces, list) and len(interfaces) > MAX_SUPPORTED_INTERFACES:
        errors.append(SpecError(INTERFACES_PATH, f"has {len(interfaces)} interfaces; only {MAX_SUPPORTED_INTERFACES} "
                                "is supported today", "a single interface connected to the pod network"))
    if isinstance(networks, list) and len(networks) > MAX_SUPPORTED_INTERFACES:
        errors.append(SpecError(NETWORKS_PATH, f"has {len(networks)} networks; only {MAX_SUPPORTED_INTERFACES} "
                                "is supported today", "a single pod network"))

    pairs = _pair(valid_interfaces, valid_networks, has_interfaces == has_networks, errors)
    plan = _plan_entries(pairs, pod_interface, tap, pod_names_valid, errors)
    if errors:
        raise_invalid(errors)
    return plan


# --- bindings (one plan entry, as handed to vm_pod_bridge) ---------------------------------

BINDING_KEYS = ("interface", "network", "backend", "connection", "delegate_ip", "connectivity",
                "pod_interface", "bridge", "tap")
OPTIONAL_BINDING_KEYS = ("mac_address", "dhcp_options")  # only when the spec sets macAddress, dhcpOptions


def validate_binding(binding):
    """Check that ``binding`` is one entry of a valid plan; return a clean copy.

    Raises ``PodnetError`` naming every bad key.
    """
    errors = []
    if not isinstance(binding, Mapping):
        raise_invalid([SpecError("binding", f"must be one entry of vm_network_plan's plan, got {describe(binding)}")],
                      subject="binding")
    for key in binding:
        if key not in BINDING_KEYS and key not in OPTIONAL_BINDING_KEYS:
            errors.append(SpecError(f"binding.{key_text(key)}", "unknown key (not produced by vm_network_plan)",
                                    ", ".join(BINDING_KEYS + OPTIONAL_BINDING_KEYS)))
    for key in BINDING_KEYS:
        if key not in binding:
            errors.append(SpecError(f"binding.{key}", "is missing (use an entry of vm_network_plan's plan)"))
    if errors:
        raise_invalid(errors, subject="binding")

    for key in ("interface", "network"):
        value = binding[key]
        if not isinstance(value, str) or len(value) > DNS_LABEL_MAX or not DNS_LABEL.fullmatch(value):
            errors.append(SpecError(f"binding.{key}", f"is not a valid name: {describe(value)}", "a lowercase DNS label"))
    if binding["interface"] != binding["network"]:
        errors.append(SpecError("binding.network", "differs from binding.interface", "the interface's own name"))
    if not isinstance(binding["backend"], str) or binding["backend"] not in BACKENDS:
        errors.append(SpecError("binding.backend", f"unknown backend {describe(binding['backend'])}", names_text(BACKENDS)))
    if not isinstance(binding["connection"], str) or binding["connection"] not in CONNECTIONS:
        errors.append(SpecError("binding.connection", f"unknown connection {describe(binding['connection'])}",
                                names_text(CONNECTIONS)))
    delegate = binding["delegate_ip"]
    if not isinstance(delegate, bool):
        errors.append(SpecError("binding.delegate_ip", f"must be a boolean, got {describe(delegate)}", "true, false"))
    elif binding["connectivity"] != ("ip" if delegate else "ethernet"):
        errors.append(SpecError("binding.connectivity", f"{describe(binding['connectivity'])} does not match "
                                f"delegate_ip {str(delegate).lower()}", "ip" if delegate else "ethernet"))
    pod_interface, tap = binding["pod_interface"], binding["tap"]
    name_errors = []
    validate_pod_names(pod_interface, tap, name_errors)
    errors.extend(SpecError(f"binding.{e.path}", e.problem, e.allowed) for e in name_errors)
    if not name_errors and binding["bridge"] != BRIDGE_PREFIX + pod_interface:
        errors.append(SpecError("binding.bridge", f"{describe(binding['bridge'])} is not derived from the pod interface",
                                repr(BRIDGE_PREFIX + str(pod_interface))))
    clean = {key: binding[key] for key in BINDING_KEYS}
    # The extensions, checked again: a binding may be written by hand, not only planned.
    if "mac_address" in binding:
        clean["mac_address"] = validate_mac_address(binding["mac_address"], "binding.mac_address", errors,
                                                    unset_ok=False)
    if "dhcp_options" in binding:
        options = validate_dhcp_options(binding["dhcp_options"], "binding.dhcp_options", errors)
        if binding["dhcp_options"] is not None and delegate is not True:
            errors.append(SpecError("binding.dhcp_options", "needs delegate_ip true: without it no DHCP is served",
                                    "delegate_ip: true, or no dhcp_options"))
        if options:
            clean["dhcp_options"] = options
    if errors:
        raise_invalid(errors, subject="binding")
    return clean
