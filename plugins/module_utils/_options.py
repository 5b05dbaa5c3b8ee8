# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the options of vm_pod_bridge and vm_pod_network_info, defined once.

``POD_OPTIONS`` are per pod (top level, and each entry of ``pods``), ``CALL_OPTIONS`` are
per call. The modules' argument specs and the ``pods`` suboptions are built from them;
``validate_options`` checks the values the argument spec cannot (ranges, addresses, names)
and fills the DHCP extras from the pod's own files.
"""

from __future__ import annotations

import copy
import os

from ansible_collections.virtnet.podnet.plugins.module_utils import _fields as fields
from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_facts
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

RESPONDER_MODES = ("auto", "skip")
DEFAULT_RESPONDER_PYTHONPATH = "/opt/virtnet-podnet/lib"
DEFAULT_RESPONDER_LOG = "/var/log/podnet-dhcpd.log"
DHCP_EXTRAS = ("dns_servers", "search_domains", "hostname", "dns_servers6")

POD_OPTIONS = {
    "netns": {"type": "str"},
    "binding": {"type": "dict"},
    "tap_uid": {"type": "int"},
    "tap_gid": {"type": "int"},
    "multiqueue": {"type": "bool", "default": False},
    "pod_mac": {"type": "str"},
    "dns_servers": {"type": "list", "elements": "str"},
    "dns_servers6": {"type": "list", "elements": "str"},
    "search_domains": {"type": "list", "elements": "str"},
    "hostname": {"type": "str"},
    "lease_time": {"type": "int", "default": _rundir.DEFAULT_LEASE_TIME},
    "pod_identity": {"type": "bool", "default": True},
}
CALL_OPTIONS = {
    "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
    "run_dir": {"type": "path", "default": _rundir.DEFAULT_RUN_DIR},
    "responder": {"type": "str", "choices": list(RESPONDER_MODES), "default": "auto"},
    "responder_pythonpath": {"type": "path", "default": DEFAULT_RESPONDER_PYTHONPATH},
    "responder_log_file": {"type": "path", "default": DEFAULT_RESPONDER_LOG},
}
# What identifies a plumbed pod: all vm_pod_network_info needs.
INFO_OPTIONS = ("netns", "binding", "run_dir")


def _spec(options):
    return copy.deepcopy(options)


def bridge_argument_spec():
    """vm_pod_bridge's argument spec: every option, and ``pods`` whose entries override the per-pod ones."""
    spec = _spec(POD_OPTIONS)
    spec.update(_spec(CALL_OPTIONS))
    entry = _spec(POD_OPTIONS)
    for option in entry.values():
        option.pop("default", None)  # unset in an entry: the call's value
    entry["netns"]["required"] = entry["binding"]["required"] = True
    spec["pods"] = {"type": "list", "elements": "dict", "options": entry}
    return spec


def info_argument_spec():
    spec = _spec({name: dict(POD_OPTIONS, **CALL_OPTIONS)[name] for name in INFO_OPTIONS})
    spec["netns"]["required"] = spec["binding"]["required"] = True
    return spec


def _numeric_id(value, field, errors):
    if value is not None and (not fields.is_int(value) or not 0 <= value < 0xFFFFFFFF):
        errors.append(f"{field}: {value!r} is not a valid numeric id")


def _fill_dhcp_extras(p):
    """Unset DNS servers, search domains and host name come from the pod's own files."""
    p["warnings"] = []
    if p["state"] == "present" and any(p.get(name) is None for name in DHCP_EXTRAS):
        *values, p["warnings"] = _pod_facts.pod_dns_defaults(p.get("netns"))
        defaults = dict(zip(DHCP_EXTRAS, values))
        for name in DHCP_EXTRAS:
            if p.get(name) is None:
                p[name] = defaults[name]


def validate_options(params):
    """Check the options other than the binding; return a normalised copy naming every bad one.

    In-process callers (tests, benchmarks) that leave ``responder`` unset get ``skip``:
    only the module's own default is ``auto``.
    """
    errors = []
    p = {name: spec.get("default") for name, spec in dict(POD_OPTIONS, **CALL_OPTIONS).items()}
    p.update({k: v for k, v in params.items() if v is not None})
    p["responder"] = params.get("responder") or "skip"
    if not os.path.isabs(p["run_dir"]):
        errors.append(f"run_dir: {p['run_dir']!r} must be an absolute path")
    _numeric_id(p["tap_uid"], "tap_uid", errors)
    _numeric_id(p["tap_gid"], "tap_gid", errors)
    p["multiqueue"] = bool(p["multiqueue"])
    p["pod_identity"] = bool(p["pod_identity"])
    if p["pod_mac"] is not None:
        p["pod_mac"] = fields.mac(p["pod_mac"], "pod_mac", errors, unicast=True)
    _fill_dhcp_extras(p)
    p["dns_servers"] = fields.string_list(p["dns_servers"], "dns_servers", errors, fields.ipv4, fields.MAX_DNS_SERVERS)
    p["dns_servers6"] = fields.string_list(p["dns_servers6"], "dns_servers6", errors, fields.ipv6,
                                           fields.MAX_DNS_SERVERS)
    p["search_domains"] = fields.string_list(p["search_domains"], "search_domains", errors, fields.domain_name)
    p["hostname"] = fields.hostname(p["hostname"], "hostname", errors)
    fields.int_in(p["lease_time"], _rundir.MIN_LEASE_TIME, _rundir.MAX_LEASE_TIME, "lease_time", errors, " seconds")
    for name, choices in (("state", CALL_OPTIONS["state"]["choices"]), ("responder", RESPONDER_MODES)):
        if p[name] not in choices:
            errors.append(f"{name}: {p[name]!r} is not one of {', '.join(choices)}")
    if errors:
        raise PodnetError("invalid options: " + "; ".join(errors), errors=errors)
    return p
