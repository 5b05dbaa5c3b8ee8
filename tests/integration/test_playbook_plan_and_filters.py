# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run vm_network_plan and the name-matching filters through a real ansible-playbook; render their docs and the roles'."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

PLAYBOOK = Path(__file__).with_name("playbooks") / "plan_and_filters.yml"
BIN = Path(sys.executable).parent
TIMEOUT = 180
RECAP = re.compile(
    r"^localhost\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+"
    r"failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)\s+rescued=(?P<rescued>\d+)\s+ignored=(?P<ignored>\d+)",
    re.MULTILINE,
)
# Tasks of the playbook: all run (also with --check), three of them fail on purpose and are ignored.
EXPECTED_TASKS = 17
EXPECTED_IGNORED = 3


def _tool(name):
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} not found next to {sys.executable}")
    return str(path)


def _env(tmp_path):
    env = dict(os.environ)
    assert env.get("ANSIBLE_COLLECTIONS_PATH"), "tests/conftest.py sets ANSIBLE_COLLECTIONS_PATH"
    env.update({
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_HOME": str(tmp_path / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "ANSIBLE_DEPRECATION_WARNINGS": "0",
    })
    env.pop("ANSIBLE_CONFIG", None)
    return env


def _run(argv, tmp_path):
    # cwd is a fresh directory, so no ansible.cfg of anyone else is picked up.
    return subprocess.run(argv, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


@pytest.mark.parametrize("extra", [[], ["--check"]], ids=["normal", "check_mode"])
def test_playbook_plan_and_filters(tmp_path, extra):
    argv = [_tool("ansible-playbook"), "-i", "localhost,", "-c", "local",
            "-e", f"ansible_python_interpreter={sys.executable}", *extra, str(PLAYBOOK)]
    proc = _run(argv, tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    recaps = RECAP.findall(proc.stdout)
    assert len(recaps) == 1, output
    recap = RECAP.search(proc.stdout).groupdict()
    assert recap["failed"] == "0", output
    assert recap["unreachable"] == "0", output
    assert recap["changed"] == "0", output
    assert recap["skipped"] == "0", output
    assert recap["ok"] == str(EXPECTED_TASKS), output
    assert recap["ignored"] == str(EXPECTED_IGNORED), output
    assert "Traceback" not in output
    assert "All assertions passed" in proc.stdout


@pytest.mark.parametrize("argv, title", [
    (["-t", "filter", "virtnet.podnet.pair_by_name"], "Pair a VM's interfaces with its networks by name"),
    (["-t", "filter", "virtnet.podnet.unmatched_interfaces"], "List a VM's interfaces that have no network of the same name"),
    (["-t", "filter", "virtnet.podnet.unmatched_networks"], "List a VM's networks that no interface of the same name connects to"),
    (["virtnet.podnet.vm_network_plan"], "Validate a VM's network spec and turn it into a plan"),
], ids=["pair_by_name", "unmatched_interfaces", "unmatched_networks", "vm_network_plan"])
def test_ansible_doc_renders(tmp_path, argv, title):
    proc = _run([_tool("ansible-doc"), *argv], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert argv[-1] in proc.stdout
    assert "EXAMPLES:" in proc.stdout
    assert "RETURN VALUES:" in proc.stdout
    assert "ERROR" not in proc.stderr and "WARNING" not in proc.stderr, proc.stderr
    # Also as JSON, with the short description of the sidecar YAML / DOCUMENTATION.
    proc = _run([_tool("ansible-doc"), "--json", *argv], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert title in proc.stdout


# Role options that came after 0.1.0, with the release that brought them.
LATER_OPTIONS = {"node_pyroute2_wheel": "0.2.0", "node_pyroute2_wheel_cache": "0.2.0", "node_pyroute2_index_url": "0.2.0",
                 "node_responder_max_pods": "0.2.0", "vm_network_pod_identity": "0.2.0",
                 "vm_network_dns_servers6": "0.2.0", "node_dhcpd_command": "0.2.1"}


@pytest.mark.parametrize("role, options", [
    ("virtnet.podnet.vm_network", {"vm_network_vms", "vm_network_state", "vm_network_lease_time",
                                   *(name for name in LATER_OPTIONS if name.startswith("vm_network_"))}),
    ("virtnet.podnet.node", {"node_pyroute2", "node_run_dir", *(name for name in LATER_OPTIONS if name.startswith("node_"))}),
], ids=["vm_network", "node"])
def test_role_docs_say_version_added(tmp_path, role, options):
    import json
    proc = _run([_tool("ansible-doc"), "-t", "role", "--json", role], tmp_path)
    assert proc.returncode == 0, proc.stderr
    entry = json.loads(proc.stdout)[role]["entry_points"]["main"]
    assert entry["version_added"] == "0.1.0"
    assert options <= set(entry["options"])
    wanted = {name: LATER_OPTIONS.get(name, "0.1.0") for name in entry["options"]}
    assert {name: opt.get("version_added") for name, opt in entry["options"].items()} == wanted
    # The text shows every option's version. The entry point's own line ("ADDED IN: ...") comes
    # with ansible-core 2.21; 2.19 prints "added in: ..." for the options only.
    proc = _run([_tool("ansible-doc"), "-t", "role", role], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = Counter(re.findall(r"^\s*added in:\s*version (\S+)", proc.stdout, re.IGNORECASE | re.MULTILINE))
    assert not Counter(wanted.values()) - shown, (shown, wanted)
    assert shown - Counter(wanted.values()) in (Counter(), Counter({"0.1.0": 1})), proc.stdout
