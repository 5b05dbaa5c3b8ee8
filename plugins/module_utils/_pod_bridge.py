# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the runners behind vm_pod_bridge and vm_pod_network_info.

``present``, ``absent`` and ``info`` for one pod, ``run_many`` for the batch. Each takes
the pod's lock, enters its namespace, asks the planner (``_plumbing``) for the changes and
applies them in order unless in check mode. The plan is the same list in both modes, so
check mode predicts exactly what a real run does.

Crash safety: the pod interface is recorded in the state cache before the first change,
and every step is ensure-style, so rerunning ``present`` finishes a killed run and
``absent`` undoes it from the cache.
"""

from __future__ import annotations

import os
import sys

from ansible_collections.virtnet.podnet.plugins.module_utils import _launcher
from ansible_collections.virtnet.podnet.plugins.module_utils import _netns
from ansible_collections.virtnet.podnet.plugins.module_utils import _options
from ansible_collections.virtnet.podnet.plugins.module_utils import _plumbing
from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_control
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._spec import validate_binding

CRASH_ENV = "VIRTNET_PODNET_CRASH_AFTER"
PAUSE_ENV = "VIRTNET_PODNET_PAUSE_AFTER"
PAUSE_FIFO_ENV = "VIRTNET_PODNET_PAUSE_FIFO"
CRASH_EXIT_CODE = 86
EMPTY_VIEW = {"links": {}, "addresses": {}}


# -- test hooks -------------------------------------------------------------------

def step_done(step):
    """Fault-injection point: VIRTNET_PODNET_CRASH_AFTER=<step> kills the process right here."""
    if os.environ.get(CRASH_ENV) == step:
        # os._exit skips the interpreter's flush: what was printed must not be lost with it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
    if os.environ.get(PAUSE_ENV) == step and os.environ.get(PAUSE_FIFO_ENV):
        # Tests hold the run here (lock taken) by keeping the FIFO's writer side closed.
        with open(os.environ[PAUSE_FIFO_ENV]) as fifo:
            fifo.read()


# -- one pod ----------------------------------------------------------------------

def _apply(changes):
    done = []
    for change in changes:
        change.apply()
        done.append(change.text)
        step_done(change.step)
    return done


def _prepare(params):
    """Validated options, binding, namespace path and state key, or PodnetError naming what is wrong."""
    params = _options.validate_options(params)
    binding = validate_binding(params.get("binding"))
    path = _netns.netns_path(params.get("netns"))
    key = _rundir.state_key(params["netns"], binding["pod_interface"])
    return params, binding, path, key


def alive(record):
    """Whether the namespace a record was made for still exists, and is that namespace."""
    netns = record.get("netns")
    ident = _netns.identity(netns) if isinstance(netns, str) else None
    return ident is not None and _rundir.same_namespace(record, ident)


def _gone(record):
    return None if alive(record) else "its namespace is gone or is another one now"


def _collect_stale(run_dir, key, record, ident, housekeeping):
    """Remove a record of a namespace that is gone; never a reason to refuse."""
    held = _rundir.identity_name(_rundir.record_identity(record)) == _rundir.identity_name(ident)
    for path in _rundir.collect(run_dir, key, record, lambda: _gone(record), held=held):
        housekeeping.append(f"remove {path} (recorded for a namespace that is gone)")


def _refuse_other_name(run_dir, key, ident, binding, housekeeping, check_mode):
    """Fail when this namespace was plumbed under another name: its record is the only copy of the
    pod's original configuration, and a run under this name would not see it (the IP would be lost).
    A record found there for a namespace that is gone is collected instead."""
    other_key = _rundir.record_elsewhere(run_dir, key, ident, binding["pod_interface"])
    if other_key is None:
        return
    other_path = _rundir.cache_path(run_dir, other_key)
    try:
        other = _rundir.read_json(other_path)
    except PodnetError:
        other = None
    if not isinstance(other, dict) or not isinstance(other.get("netns_inode"), list):
        return  # an index entry whose record is gone or unreadable: nothing to protect
    if _rundir.same_namespace(other, ident) and alive(other):
        raise PodnetError(f"this pod was plumbed under another name of the same namespace ({other.get('netns')}, "
                          f"recorded in {other_path}); use that netns value", recorded_netns=other.get("netns"),
                          cache_path=other_path)
    if check_mode:
        housekeeping.append(f"remove the stale record {other_path}")
    else:
        _collect_stale(run_dir, other_key, other, ident, housekeeping)


def _load_own_cache(ipr, run_dir, key, ident, binding, check_mode):
    """This pod's record, or None; a record of an earlier namespace of this name is collected.

    Returns ``(cache, housekeeping)``; in check mode nothing is removed, only reported.
    """
    housekeeping = []
    cache, stale = _rundir.load_cache(run_dir, key, ident, alive)
    record = None
    if cache is not None and (cache.get("netns_cookie") is None or ident["cookie"] is None) \
            and not _plumbing.record_fits_live(ipr, cache):
        record, cache, stale = cache, None, True  # the same inode, another pod: the kernel reused the number
    if stale:
        record = record or _rundir.read_json(_rundir.cache_path(run_dir, key))
        if check_mode:
            housekeeping.append(f"remove the stale record {_rundir.cache_path(run_dir, key)}")
        else:
            _collect_stale(run_dir, key, record, ident, housekeeping)
    if cache is None:
        _refuse_other_name(run_dir, key, ident, binding, housekeeping, check_mode)
    return cache, housekeeping


def _require_namespace(params, path):
    if _netns.netns_inode(path) is None:
        raise PodnetError(f"network namespace {params['netns']!r} not found ({path} does not exist)",
                          netns=params["netns"])


def _plumb(params, binding, key, check_mode, diff):
    """Plan and apply ``present`` in the pod; return ``(cache, done, housekeeping, before, after)``."""
    run_dir = params["run_dir"]
    with _netns.entered(params["netns"]) as (ipr, path, ident):
        with _rundir.pod_lock(run_dir, ident):
            cache, housekeeping = _load_own_cache(ipr, run_dir, key, ident, binding, check_mode)
            where = (path, ident, run_dir, key)
            cache, changes, live, addrs = _plumbing.plan_present(ipr, where, binding, params, cache)
            port = _plumbing.port_of(cache, binding)
            before = _plumbing.pod_view(live, addrs, binding, port)
            if check_mode:
                after = _plumbing.predict_present(before, binding, cache)
                return cache, [c.text for c in changes], housekeeping, before, after
            done = _apply(changes)
            if changes or cache.get("step") != "complete":
                cache = dict(cache, step="complete")
                _rundir.save_cache(run_dir, key, cache)
            # The real diff is read back from the kernel, not predicted (skipped when nobody asks).
            after = (_plumbing.pod_view(*_plumbing.read_view(ipr, binding, port=port), binding, port)
                     if changes and diff else before)
            return cache, done, housekeeping, before, after


def present(params, check_mode=False, diff=True):
    params, binding, path, key = _prepare(params)
    run_dir = params["run_dir"]
    wants_responder = binding["delegate_ip"] and params["responder"] == "auto"
    if wants_responder:
        # Fails before any change when it could not be started.
        _responder_control.ensure_responder(params, check_mode=True)
    _require_namespace(params, path)
    cache, done, housekeeping, before, after = _plumb(params, binding, key, check_mode, diff)
    responder_pid = None
    if wants_responder:
        started, responder_pid = _responder_control.ensure_responder(params, check_mode)
        if started:
            done.append(started)
    result = {
        "changed": bool(done), "changes": done, "diff": {"before": before, "after": after},
        "responder_pid": responder_pid, "warnings": params["warnings"], "housekeeping": housekeeping,
        "netns": params["netns"], "netns_path": path, "key": key, "pod_mac": cache["pod_mac"],
        "pod_port": _plumbing.port_of(cache, binding),
        "cache_path": _rundir.cache_path(run_dir, key),
        "lease_path": _rundir.lease_path(run_dir, key) if binding["delegate_ip"] else None,
        "original": cache["original"],
    }
    result.update(_launcher.launcher_facts(binding, cache["original"], params["multiqueue"]))
    return result


def _forget_vanished(result, run_dir, key, check_mode):
    """The pod is gone and its links with it; only our records may remain: removed under the pod's lock."""
    record = _rundir.read_json(_rundir.cache_path(run_dir, key))
    lease = _rundir.lease_path(run_dir, key)
    if isinstance(record, dict) and _rundir.record_identity(record)["inode"] is not None:
        if check_mode:
            result["housekeeping"].append(f"remove the records of the vanished pod ({_rundir.cache_path(run_dir, key)})")
        else:
            for path in _rundir.collect(run_dir, key, record, lambda: _gone(record)):
                result["housekeeping"].append(f"remove {path}")
    elif os.path.exists(lease):  # a declaration without a record: nothing to lock on
        result["housekeeping"].append(f"remove lease declaration {lease}")
        if not check_mode:
            _rundir.remove(lease)
    result["diff"] = {"before": EMPTY_VIEW, "after": EMPTY_VIEW}
    return result


def _unplumb(params, binding, key, result, check_mode, diff):
    """Plan and apply ``absent`` in the pod; fill ``result``."""
    run_dir = params["run_dir"]
    cache_file = _rundir.cache_path(run_dir, key)
    with _netns.entered(params["netns"]) as (ipr, _path, ident):
        with _rundir.pod_lock(run_dir, ident) as lock:
            cache, housekeeping = _load_own_cache(ipr, run_dir, key, ident, binding, check_mode)
            result["housekeeping"].extend(housekeeping)
            if cache is not None and cache["binding"] != binding:
                raise PodnetError(f"this pod was plumbed with another binding ({cache_file}); "
                                  "run state=absent with that binding", binding=cache["binding"])
            changes, warnings, live, addrs = _plumbing.plan_absent(ipr, run_dir, key, binding, cache)
            port = _plumbing.port_of(cache, binding)
            before = _plumbing.pod_view(live, addrs, binding, port)
            if check_mode:
                after = _plumbing.predict_absent(before, binding, cache)
                done = [c.text for c in changes]
            else:
                done = _apply(changes)
                # Last: the record must outlive every change it allows to undo.
                if _rundir.remove(cache_file):
                    result["housekeeping"].append(f"remove state cache {cache_file}")
                if cache is not None:
                    _rundir.remove(_rundir.id_path(run_dir, _rundir.record_identity(cache), binding["pod_interface"]))
                step_done("absent_cache")
                _rundir.remove(lock)  # held: waiters open the path anew
                after = (_plumbing.pod_view(*_plumbing.read_view(ipr, binding, port=port), binding, port)
                         if changes and diff else before)
    result.update(changed=bool(done), changes=done, warnings=warnings, diff={"before": before, "after": after})
    if cache is not None:
        result["original"] = cache["original"]
    return result


def absent(params, check_mode=False, diff=True):
    params, binding, path, key = _prepare(params)
    result = {"netns": params["netns"], "netns_path": path, "key": key, "changed": False, "changes": [],
              "warnings": [], "housekeeping": []}
    if _netns.netns_inode(path) is None:
        return _forget_vanished(result, params["run_dir"], key, check_mode)
    return _unplumb(params, binding, key, result, check_mode, diff)


def _drift(ipr, where, binding, params, cache, lease):
    """What differs from a plumbed pod (like CNI CHECK), as the changes ``present`` would make."""
    options = dict(params, tap_uid=cache["tap_options"]["uid"], tap_gid=cache["tap_options"]["gid"],
                   multiqueue=cache["tap_options"]["multiqueue"], pod_identity=bool(cache.get("pod_identity")),
                   warnings=[])
    try:
        changes = _plumbing.plan_present(ipr, where, binding, options, cache)[1]
    except PodnetError as exc:
        return [exc.msg]
    # The lease's DHCP extras are options of vm_pod_bridge, unknown here: check presence only.
    drift = [c.text for c in changes if c.step != "lease"]
    if binding["delegate_ip"] and lease is None:
        drift.append(f"lease declaration {_rundir.lease_path(where[2], where[3])} is missing")
    return drift


def info(params):
    """Read-only: what is plumbed, drift from the cache, the cached original, the lease."""
    params, binding, path, key = _prepare(params)
    run_dir = params["run_dir"]
    cache_file = _rundir.cache_path(run_dir, key)
    result = {"changed": False, "netns": params["netns"], "netns_path": path, "key": key,
              "warnings": params["warnings"], "namespace_exists": False, "plumbed": False, "in_sync": False, "drift": [], "links": {},
              "addresses": {}, "original": None, "cache_path": cache_file,
              "lease": _rundir.read_json(_rundir.lease_path(run_dir, key)),
              "lease_state": _rundir.read_json(_rundir.lease_state_path(run_dir, key))}
    if _netns.netns_inode(path) is None:
        cache = _rundir.read_json(cache_file)
        result["original"] = cache and cache.get("original")
        if cache:
            result["drift"] = ["the pod's network namespace is gone; state=absent cleans up the records"]
        return result
    result["namespace_exists"] = True
    with _netns.entered(params["netns"]) as (ipr, path, ident):
        cache, stale = _rundir.load_cache(run_dir, key, ident, alive)
        port = _plumbing.port_of(cache, binding)
        view = _plumbing.pod_view(*_plumbing.read_view(ipr, binding, port=port), binding, port)
        result.update(links=view["links"], addresses=view["addresses"], pod_port=port)
        if stale:
            result["drift"] = [f"{cache_file} was recorded for an earlier namespace of this name (stale)"]
        if cache is None:
            return result
        result.update(original=cache["original"], plumbed=True)
        if cache["binding"] != binding:
            result["drift"] = ["plumbed with another binding: " + repr(cache["binding"])]
            return result
        result["drift"] = _drift(ipr, (path, ident, run_dir, key), binding, params, cache, result["lease"])
        result["in_sync"] = not result["drift"]
        result.update(_launcher.launcher_facts(binding, cache["original"], cache["tap_options"]["multiqueue"]))
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


# -- many pods ----------------------------------------------------------------------

def _batch_entries(params):
    """Each ``pods`` entry merged over the call's options and validated; ``(entries, errors)``."""
    pods = params.get("pods")
    if not isinstance(pods, list):
        raise PodnetError(f"pods: must be a list, got {type(pods).__name__}")
    common = {k: v for k, v in params.items() if k != "pods"}
    entries, errors, seen = [], [], {}
    for index, pod in enumerate(pods):
        if not isinstance(pod, dict):
            errors.append(f"pods[{index}]: must be a mapping with netns and binding")
            continue
        unknown = sorted(str(k) for k in pod if k not in _options.POD_OPTIONS)
        if unknown:
            errors.append(f"pods[{index}]: unknown option(s) {', '.join(unknown)} "
                          f"(allowed: {', '.join(_options.POD_OPTIONS)})")
            continue
        entry = dict(common)
        entry.update({k: v for k, v in pod.items() if v is not None})
        entry["responder"] = "skip"  # ensured once for all pods, after them
        try:
            _prepare(entry)
        except PodnetError as exc:
            errors.append(f"pods[{index}] (netns {pod.get('netns')!r}): {exc.msg}")
            continue
        key = _rundir.state_key(entry["netns"], entry["binding"]["pod_interface"])
        if key in seen:
            errors.append(f"pods[{index}]: the same pod interface as pods[{seen[key]}] ({key})")
        seen[key] = index
        entries.append(entry)
    return common, entries, errors


def _run_each(entries, check_mode, diff):
    results, failures, warnings, before, after = [], [], [], {}, {}
    for entry in entries:
        try:
            result = run(entry, check_mode, diff)
        except PodnetError as exc:
            failures.append(f"netns {entry['netns']!r}: {exc.msg}")
            results.append({"netns": entry["netns"], "failed": True, "msg": exc.msg, "changed": False, "changes": []})
            continue
        pod_diff = result.pop("diff")
        before[entry["netns"]], after[entry["netns"]] = pod_diff["before"], pod_diff["after"]
        warnings.extend(f"netns {entry['netns']!r}: {text}" for text in result.get("warnings", []))
        results.append(result)
    return results, failures, warnings, {"before": before, "after": after}


def run_many(params, check_mode=False, diff=True):
    """Many pods in one call (the module's ``pods``): one process and one task for a whole node.

    Each entry takes the call's options as defaults. Every entry is validated before any
    pod is touched; then each pod is plumbed (or unplumbed) in turn. A pod that fails does
    not stop the others: the failure lists every failed pod, and ``pods`` says what was
    done to each, so a rerun finishes the job. The responder is ensured once, at the end.
    """
    common, entries, errors = _batch_entries(params)
    common_options = _options.validate_options(dict(common, netns=None))
    wants_responder = (common_options["state"] == "present" and common_options["responder"] == "auto"
                       and any(e["binding"]["delegate_ip"] for e in entries))
    if wants_responder:
        try:
            _responder_control.ensure_responder(common_options, check_mode=True)
        except PodnetError as exc:
            errors.append(exc.msg)
    if errors:
        raise PodnetError(f"invalid pods ({len(errors)} error{'s' if len(errors) != 1 else ''}), nothing was changed: "
                          + "; ".join(errors), errors=errors)
    results, failures, warnings, pods_diff = _run_each(entries, check_mode, diff)
    changes = [f"{r['netns']}: {text}" for r in results for text in r["changes"]]
    responder_pid = None
    if wants_responder and len(failures) < len(entries):
        started, responder_pid = _responder_control.ensure_responder(common_options, check_mode)
        if started:
            changes.append(started)
    summary = {"changed": bool(changes), "changes": changes, "pods": results, "responder_pid": responder_pid,
               "warnings": warnings, "diff": pods_diff}
    if failures:
        raise PodnetError(f"{len(failures)} of {len(entries)} pods failed (the others are done; rerun to finish): "
                          + "; ".join(failures), **{k: v for k, v in summary.items() if k != "diff"})
    return summary
