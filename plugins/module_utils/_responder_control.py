# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: finding, and where needed starting, the node's DHCP responder.

The responder (``_dhcp_responder``) holds ``<run_dir>/podnet-dhcpd.pid`` under flock while
it runs. Under systemd the ``node`` role's unit runs it; elsewhere ``vm_pod_bridge`` (with
``responder: auto``) and ``podnet-dhcpd --ensure-daemon`` start it detached. Where systemd is
PID 1 and knows the unit, nothing here starts one: an unmanaged, unsandboxed responder would
hold the pidfile the unit needs.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

RESPONDER_MODULE = "ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder"
RESPONDER_RELPATH = os.path.join(*RESPONDER_MODULE.split(".")) + ".py"
UNIT = "podnet-dhcpd.service"
# systemd is PID 1 when this directory exists (sd_booted(3)).
SYSTEMD_RUNTIME_DIR = "/run/systemd/system"
# Where systemd looks for a system unit (systemd.unit(5)), the node role's /etc first.
# How long a unit (re)started a moment ago may take to hold its pidfile (Python's start on a busy
# node); only a responder that stays missing waits this long before the error.
UNIT_GRACE = 10.0
UNIT_DIRS = ("/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system",
             "/usr/lib/systemd/system", "/lib/systemd/system")


def running_pid(pidfile):
    """The pid of the responder holding ``pidfile``, or None when none runs (a stale file is not one)."""
    try:
        fd = os.open(pidfile, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            # Locked: a live responder holds it.
            data = os.read(fd, 32).decode(errors="replace").strip()
            return int(data) if data.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def spawn_daemon(run_dir, pidfile, log_file, python=None, pythonpath=None, timeout=10.0):
    """Start the responder detached (new session, no terminal) unless one holds ``pidfile``.

    ``pythonpath`` must reach a stable copy of the collection (not a module's temporary
    payload). Returns the daemon's pid.
    """
    pid = running_pid(pidfile)
    if pid:
        return pid
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    python = python or sys.executable
    argv = [python, "-m", RESPONDER_MODULE, "--run-dir", run_dir, "--pidfile", pidfile, "--log-file", log_file]
    # fork + setsid + execve: detached from the caller's session, no shell, and stderr (a
    # crash before logging is set up) lands in the log file. (ansible-test bans the spawn
    # helpers in module_utils in favour of run_command, which cannot detach.)
    null_fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    log_fd = os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover - the child only execs
            try:
                os.setsid()
                os.dup2(null_fd, 0)
                os.dup2(null_fd, 1)
                os.dup2(log_fd, 2)
                os.chdir("/")
                os.execve(python, argv, env)
            finally:
                os._exit(127)
    finally:
        os.close(null_fd)
        os.close(log_fd)
    return _wait_for_pidfile(child, pidfile, log_file, timeout)


def _wait_for_pidfile(child, pidfile, log_file, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = running_pid(pidfile)
        if pid:
            return pid
        done, status = os.waitpid(child, os.WNOHANG)
        if done:
            raise PodnetError(f"podnet-dhcpd did not start (exit {os.waitstatus_to_exitcode(status)}), see {log_file}",
                              log_file=log_file)
        time.sleep(0.05)  # the daemon gives no other sign than taking the lock
    raise PodnetError(f"podnet-dhcpd did not take {pidfile} within {timeout} s", log_file=log_file)


def code_root(pythonpath):
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


def systemd_unit(systemd_dir=SYSTEMD_RUNTIME_DIR, unit_dirs=UNIT_DIRS, unit=UNIT):
    """The file of ``unit`` when systemd is PID 1 and has it, else None. Two stats, no D-Bus, no systemctl."""
    if not os.path.isdir(systemd_dir):
        return None
    for directory in unit_dirs:
        path = os.path.join(directory, unit)
        if os.path.lexists(path):
            return path
    return None


def _unit_state(path, unit_dirs, unit):
    """What the unit files alone say: ``masked``, ``enabled`` or ``disabled`` (no systemctl needed)."""
    try:
        if os.path.realpath(path) == os.devnull:
            return "masked"
    except OSError:
        pass
    wanted = any(os.path.lexists(os.path.join(d, target, unit))
                 for d in unit_dirs for target in ("multi-user.target.wants", "default.target.wants"))
    return "enabled" if wanted else "disabled"


def unit_not_running_error(path, pidfile, unit_dirs=UNIT_DIRS, unit=UNIT):
    """The PodnetError for a unit systemd knows that runs no responder: never start one beside it."""
    state = _unit_state(path, unit_dirs, unit)
    start = f"systemctl start {unit}"
    if state == "masked":
        start = f"systemctl unmask {unit} && {start}"
    return PodnetError(
        f"podnet-dhcpd is not running (no process holds {pidfile}), and systemd manages it here as {unit} "
        f"({path}, {state}; stopped or failed): start the unit with `{start}` (`systemctl status {unit}` and "
        f"`journalctl -u {unit}` say why it stopped), or set responder=skip. An unmanaged responder is not started "
        "beside the unit: it would run without the unit's sandbox and keep the unit from taking its pidfile",
        pidfile=pidfile, unit=unit, unit_file=path, unit_state=state)


def ensure_responder(params, check_mode, systemd_dir=SYSTEMD_RUNTIME_DIR, unit_dirs=UNIT_DIRS, unit_grace=UNIT_GRACE):
    """Start podnet-dhcpd unless one holds the run dir's pidfile; return ``(change text or None, pid)``.

    Where systemd is PID 1 and knows ``podnet-dhcpd.service`` (the node role installed it), a
    missing responder is an error naming the unit and how to start it, in check mode too - after
    ``unit_grace`` seconds: a unit (re)started a moment ago (the node role's handler) runs a
    responder that has not taken its pidfile yet.
    """
    run_dir = params["run_dir"]
    pidfile = _rundir.pidfile_path(run_dir)
    pid = running_pid(pidfile)
    if pid:
        return None, pid
    unit_file = systemd_unit(systemd_dir, unit_dirs)
    if unit_file is not None:
        deadline = time.monotonic() + unit_grace
        while time.monotonic() < deadline:
            time.sleep(0.1)
            pid = running_pid(pidfile)
            if pid:
                return None, pid
        raise unit_not_running_error(unit_file, pidfile, unit_dirs)
    root = code_root(params["responder_pythonpath"])
    if root is None:
        raise PodnetError(f"podnet-dhcpd is not running (no process holds {pidfile}) and is not installed under "
                          f"{params['responder_pythonpath']}: run the virtnet.podnet.node role on this node, or set "
                          "responder=skip if you run the responder yourself", pidfile=pidfile)
    text = f"start podnet-dhcpd (pidfile {pidfile}, log {params['responder_log_file']})"
    if check_mode:
        return text, None
    return text, spawn_daemon(run_dir, pidfile, params["responder_log_file"], pythonpath=root)
