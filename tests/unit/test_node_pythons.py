# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The code that runs on a node works with every node Python the docs promise (>= 3.9).

Nodes keep their distribution's Python (Debian 11 and RHEL 9: 3.9, Ubuntu 22.04: 3.10,
Debian 12: 3.11), while the tests run on the controller's. So every Python >= 3.9 found on
this machine (pyenv's and the system's) compiles the modules, the node role's wheel
installer and the VM stand-in, imports every node-side module_utils (pyroute2 is imported
lazily, so none is needed here), and starts the responder's command line.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OLDEST = (3, 9)
CONTROLLER_ONLY = {"_vm_batch"}  # the role's plan batch runs on the controller, with ansible-core

NODE_SCRIPT = r"""
import glob, importlib, os, sys
root, collections = sys.argv[1], sys.argv[2]
sys.path.insert(0, collections)
for path in (sorted(glob.glob(os.path.join(root, "plugins", "modules", "*.py")))
             + [os.path.join(root, "roles", "node", "files", "install_pure_wheel.py"),
                os.path.join(root, "playbooks", "files", "vm_standin.py")]):
    with open(path, encoding="utf-8") as handle:
        compile(handle.read(), path, "exec")
for path in sorted(glob.glob(os.path.join(root, "plugins", "module_utils", "*.py"))):
    name = os.path.basename(path)[:-3]
    if name not in sys.argv[3:]:
        importlib.import_module("ansible_collections.virtnet.podnet.plugins.module_utils." + name)
print("ok", sys.version_info[0], sys.version_info[1])
"""


def _version(python):
    try:
        out = subprocess.run([python, "-c", "import sys; print(sys.version_info[0], sys.version_info[1])"],
                             capture_output=True, text=True, timeout=30, check=False).stdout.split()
        return tuple(int(part) for part in out) if len(out) == 2 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def node_pythons():
    """One interpreter per version >= OLDEST found here: {(major, minor): path}."""
    found = {}
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
    candidates += sorted(glob.glob("/usr/bin/python3.[0-9]*")) + [sys.executable]
    for python in candidates:
        if not python.endswith("-config") and os.access(python, os.X_OK):
            version = _version(python)
            if version and version >= OLDEST:
                found.setdefault(version, python)
    return found


PYTHONS = node_pythons()


def _collections_dir(tmp_path):
    link = tmp_path / "ansible_collections" / "virtnet" / "podnet"
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO)
    return tmp_path


def test_the_oldest_promised_python_is_here():
    if OLDEST not in PYTHONS:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true, yet no Python {OLDEST[0]}.{OLDEST[1]} to prove the node code on")
        pytest.skip(f"no Python {OLDEST[0]}.{OLDEST[1]} on this machine (pyenv install 3.9)")


@pytest.mark.parametrize("version", sorted(PYTHONS), ids=lambda v: f"python{v[0]}.{v[1]}")
def test_node_code_compiles_and_imports(version, tmp_path):
    python = PYTHONS[version]
    proc = subprocess.run([python, "-c", NODE_SCRIPT, str(REPO), str(_collections_dir(tmp_path)), *CONTROLLER_ONLY],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.split() == ["ok", str(version[0]), str(version[1])]


@pytest.mark.parametrize("version", sorted(PYTHONS), ids=lambda v: f"python{v[0]}.{v[1]}")
def test_responder_command_line_starts(version, tmp_path):
    """The unit's ExecStart, up to argument parsing, on that Python."""
    python = PYTHONS[version]
    env = dict(os.environ, PYTHONPATH=str(_collections_dir(tmp_path)))
    proc = subprocess.run([python, "-m", "ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder",
                           "--help"], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "--run-dir" in proc.stdout
