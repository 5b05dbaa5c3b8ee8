# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for integration tests on real network namespaces (root only)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys


import pytest

from lib.netlab import NetLab
from lib.paths import COLLECTIONS_ROOT
from lib.waiting import wait_for

IS_ROOT = os.geteuid() == 0
SUBPROCESS_TIMEOUT = 60


# The longest tests first (minutes each, mostly waiting: a container's whole README run, the
# roles' playbooks, qemu guests), so that pytest-xdist's workers start them at once and the
# short tests fill the gaps, instead of one long test starting last and alone.
LONGEST_FIRST = ("test_fresh_machine.py", "test_roles.py", "test_real_vm_networkd.py", "test_galaxy_build.py",
                 "test_bench_smoke.py", "test_real_vm.py", "test_playbook_plan_and_filters.py")


def _cost_rank(item):
    name = item.path.name
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(config, items):
    items.sort(key=_cost_rank)  # stable: the order within a file stays
    if IS_ROOT:
        return
    skip = pytest.mark.skip(reason="needs root: creates network namespaces and links")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def lab():
    with NetLab() as netlab:
        yield netlab


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "run"
    return str(path)


_RUNNER = """
import json, sys
sys.path.insert(0, {root!r})
from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_bridge
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
params = json.loads(sys.argv[1])
try:
    result = _pod_bridge.run(params, check_mode=bool(params.pop("_check", False)))
except PodnetError as exc:
    result = {{"failed": True, "msg": exc.msg}}
print(json.dumps(result))
"""


def run_subprocess(params, env=None, check_mode=False):
    """Run the entry point in a fresh process (for crash and concurrency tests)."""
    args = dict(params, _check=check_mode)
    return subprocess.Popen(
        [sys.executable, "-c", _RUNNER.format(root=str(COLLECTIONS_ROOT)), json.dumps(args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, **(env or {})))


def finish(proc):
    out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
    return proc.returncode, (json.loads(out) if out.strip() else None), err


@pytest.fixture
def node(tmp_path):
    """Variables that keep the roles inside tmp_path; stops the responder they started."""
    paths = {
        "node_pyroute2": "present",
        "node_install_dir": str(tmp_path / "opt"),
        "node_dhcpd_command": str(tmp_path / "opt" / "podnet-dhcpd"),  # not /usr/local/sbin of the host
        "node_run_dir": str(tmp_path / "run"),
        "node_log_file": str(tmp_path / "podnet-dhcpd.log"),
        "vm_network_run_dir": str(tmp_path / "run"),
        "vm_network_responder_pythonpath": str(tmp_path / "opt" / "lib"),
        "podnet_hosts": "localhost",
    }
    yield paths
    from ansible_collections.virtnet.podnet.plugins.module_utils._responder_control import running_pid
    pidfile = os.path.join(paths["node_run_dir"], "podnet-dhcpd.pid")
    pid = running_pid(pidfile)
    if pid and pid > 0:
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: running_pid(pidfile) is None, 15, what="the test's responder to stop")
