# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the batch form of vm_network_plan.

It takes the ``vm_network_vms`` entries of the ``vm_network`` role as they are
(``{vm, netns, ...per-VM DHCP and tap options...}``), validates every one of them (the VM
spec with ``_spec.build_plan``, the entry's keys and types, and the pod namespaces against
each other and the host) and reports every violation at once, each labelled with its VM's
name and index. On success it returns what the role needs without any Jinja: ``pods``,
ready for vm_pod_bridge's ``pods`` option, and ``vms``, the per-VM labels of the results.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ansible.module_utils.common.validation import check_type_bool, check_type_int, check_type_list, check_type_str

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._netns import netns_path
from ansible_collections.virtnet.podnet.plugins.module_utils._options import POD_OPTIONS
from ansible_collections.virtnet.podnet.plugins.module_utils._spec import (
    DEFAULT_POD_INTERFACE, DEFAULT_TAP, build_plan, raise_invalid, vm_name)
from ansible_collections.virtnet.podnet.plugins.module_utils._spec_errors import SpecError, describe

STATES = ("present", "absent")
ONE_POD_PER_VM = "one pod namespace per VM"


def _str_list(value):
    return [check_type_str(item) for item in check_type_list(value)]


# The conversions vm_pod_bridge's argument spec applies, by option type, with what is allowed.
_CONVERSIONS = {"int": (check_type_int, "an integer"), "bool": (check_type_bool, "true, false"),
                "str": (check_type_str, "a string"), "list": (_str_list, "a list of strings")}
# The per-pod options of vm_pod_bridge's ``pods`` that a VM entry may carry beside vm and netns,
# converted here as vm_pod_bridge would, so that a bad type fails here, labelled by its VM.
POD_EXTRAS = {name: _CONVERSIONS[spec["type"]] for name, spec in POD_OPTIONS.items() if name not in ("netns", "binding")}
ENTRY_KEYS = ("vm", "netns") + tuple(POD_EXTRAS)


def label(index, name):
    """How errors name an entry: its VM's name and index, or the index alone."""
    return f"{name} (vms[{index}])" if name else f"vms[{index}]"


class VmError(SpecError):
    """A violation in one entry: the entry's index and VM name, then the path inside the entry."""

    __slots__ = ("index", "vm")

    def __init__(self, index, vm, path, problem, allowed=None):
        super().__init__(path, problem, allowed)
        self.index = index
        self.vm = vm

    def __str__(self):
        text = super().__str__() if self.path else self.problem
        return f"{label(self.index, self.vm)}: {text}"

    def as_dict(self):
        return dict(super().as_dict(), vm=self.vm, index=self.index)


class _Seen:
    """The namespaces met so far, by path and by (st_dev, st_ino), to find the same pod twice."""

    def __init__(self):
        self.paths = {}
        self.inodes = {}

    def check(self, entry, netns, path, inode, errors):
        other = self.paths.get(path)
        if other is not None:
            errors.append(entry.error("netns", f"{netns!r} is also the pod namespace of {other.label()}"
                                      + ("" if other.netns == netns else f" (as {other.netns!r})"), ONE_POD_PER_VM))
            return
        self.paths[path] = entry
        if inode is None:
            return
        other = self.inodes.get(inode)
        if other is not None:
            errors.append(entry.error("netns", f"{netns!r} is the same namespace as {other.netns!r} of {other.label()} "
                                      f"(both are inode {inode[1]} on device {inode[0]})", ONE_POD_PER_VM))
            return
        self.inodes[inode] = entry


class _Entry:
    """One entry of ``vms`` being checked."""

    def __init__(self, index, raw):
        self.index = index
        self.raw = raw
        self.name = vm_name(raw.get("vm")) if isinstance(raw, Mapping) else None
        self.netns = None

    def label(self):
        return label(self.index, self.name)

    def error(self, path, problem, allowed=None):
        return VmError(self.index, self.name, path, problem, allowed)


def _check_keys(entry, errors):
    for key in entry.raw:
        if key not in ENTRY_KEYS:
            errors.append(entry.error(str(key), "unknown key of a VM entry", ", ".join(ENTRY_KEYS)))


def _plan(entry, pod_interface, tap, errors):
    if "vm" not in entry.raw:
        errors.append(entry.error("vm", "is required", "the VM object; {} for the default pod network"))
        return None
    try:
        return build_plan(entry.raw["vm"], pod_interface=pod_interface, tap=tap)
    except PodnetError as exc:
        errors.extend(entry.error(e["path"], e["msg"], e["allowed"]) for e in exc.details["errors"])
        return None


def _extras(entry, errors):
    extras = {}
    for key, (convert, allowed) in POD_EXTRAS.items():
        value = entry.raw.get(key)
        if value is None:
            continue
        try:
            extras[key] = convert(value)
        except (TypeError, ValueError):
            errors.append(entry.error(key, f"cannot be {describe(value)}", allowed))
    return extras


def _check_netns(entry, state, seen, stat, errors):
    """Check the entry's netns: given, well-formed, existing (with state present), not another VM's."""
    netns = entry.raw.get("netns")
    if netns is None or netns == "":
        errors.append(entry.error("netns", "is required", "the pod's network namespace: a name under /run/netns "
                                  "or a path such as /proc/PID/ns/net"))
        return
    try:
        path = netns_path(netns)
    except PodnetError as exc:
        errors.append(entry.error("netns", exc.msg[len("netns: "):] if exc.msg.startswith("netns: ") else exc.msg))
        return
    entry.netns = netns
    inode = None
    try:
        st = stat(path)
        inode = (st.st_dev, st.st_ino)
    except (FileNotFoundError, NotADirectoryError):
        if state == "present":
            errors.append(entry.error("netns", f"the namespace {netns!r} does not exist ({path})",
                                      "an existing network namespace (state absent accepts one already deleted)"))
    except OSError as exc:
        errors.append(entry.error("netns", f"the namespace {netns!r} cannot be checked ({path}: {exc.strerror})"))
    seen.check(entry, netns, path, inode, errors)


def plan_vms(vms, state="present", pod_interface=DEFAULT_POD_INTERFACE, tap=DEFAULT_TAP, stat=None):
    """Validate the ``vm_network_vms`` entries; return ``{"plans", "pods", "vms"}``, one item per entry in order.

    Raises ``PodnetError`` with ``errors`` (dicts with ``vm``, ``index``, ``path``, ``msg``,
    ``allowed``) naming every violation of every entry at once, before anything is returned.
    Namespaces are compared by their files' (st_dev, st_ino), so ``pod1``, ``/run/netns/pod1``
    and ``/proc/PID/ns/net`` of one pod are one namespace. With ``state`` absent a namespace
    that no longer exists is accepted: vm_pod_bridge then only clears its records.
    ``stat`` defaults to ``os.stat`` (a parameter for tests).
    """
    stat = stat or os.stat
    if state not in STATES:
        raise_invalid([SpecError("state", f"must be one of {', '.join(STATES)}, got {describe(state)}")],
                      subject="VM list")
    if not isinstance(vms, list):
        raise_invalid([SpecError("vms", f"must be a list of {{vm, netns}} entries, got {describe(vms)}")],
                      subject="VM list")
    errors, seen, done = [], _Seen(), []
    for index, raw in enumerate(vms):
        entry = _Entry(index, raw)
        if not isinstance(raw, Mapping):
            errors.append(entry.error("", f"must be a mapping with vm and netns, got {describe(raw)}"))
            continue
        before = len(errors)
        _check_keys(entry, errors)
        plan = _plan(entry, pod_interface, tap, errors)
        _check_netns(entry, state, seen, stat, errors)
        extras = _extras(entry, errors)
        if len(errors) == before:
            done.append((entry, plan, extras))
    if errors:
        invalid = len({e.index for e in errors})
        raise_invalid(errors, subject="VMs", scope=f" in {invalid} of {len(vms)} VMs")
    return {
        "plans": [{"vm_name": e.name, "netns": e.netns, "plan": plan} for e, plan, _extras in done],
        "pods": [_pod(e, plan, extras) for e, plan, extras in done],
        "vms": [{"name": e.label() if e.name is None else e.name, "netns": e.netns,
                 "connectivity": plan[0]["connectivity"]} for e, plan, _extras in done],
    }


def _pod(entry, plan, extras):
    """One entry of vm_pod_bridge's ``pods``: the netns as given, the binding, the VM's own options.

    The hostname defaults to the VM's name; options the entry does not set are left out, so
    vm_pod_bridge applies the task's own (the role's defaults).
    """
    pod = {"netns": entry.netns, "binding": plan[0]}
    if entry.name is not None:
        pod["hostname"] = entry.name
    pod.update(extras)
    return pod
