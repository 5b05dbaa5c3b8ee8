# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The code that runs on a node works with every node Python the docs promise (>= 3.9).

Nodes keep their distribution's Python (Debian 11 and RHEL 9: 3.9, Ubuntu 22.04: 3.10,
Debian 12: 3.11), while the tests run on the controller's. So every Python >= 3.9 found on
this machine (the system's python3 and the tests' own always, pyenv's where present) compiles
the modules, the node role's wheel installer and the VM stand-in, imports every node-side
module_utils (pyroute2 is imported lazily, so none is needed here), and starts the responder's
command line. Which ones that were is recorded (the run's summary prints "tested on: ...").

A stock Debian 12 (CI's machine) has no Python 3.9, so the promise ">= 3.9" is kept there by
the running interpreter's parser: every node-side file parses with Python 3.9's grammar
(``ast.parse(..., feature_version=(3, 9))``). That covers syntax only, and as far as CPython's
parser checks it (it rejects match, except* and type parameters, not parenthesised context
managers); the interpreters found here cover the rest.
"""

from __future__ import annotations

import ast
import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OLDEST = (3, 9)
SYSTEM_PYTHON = "/usr/bin/python3"  # what a Debian node runs the modules with
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
    # The system's and the running one first: where pyenv has the same version, they are the ones tested.
    candidates = [SYSTEM_PYTHON, sys.executable] + sorted(glob.glob("/usr/bin/python3.[0-9]*"))
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")))
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


def node_files():
    """The Python files that run on a node (the role's plan batch runs on the controller)."""
    utils = [path for path in sorted((REPO / "plugins" / "module_utils").glob("*.py")) if path.stem not in CONTROLLER_ONLY]
    return (sorted((REPO / "plugins" / "modules").glob("*.py")) + utils
            + [REPO / "roles" / "node" / "files" / "install_pure_wheel.py", REPO / "playbooks" / "files" / "vm_standin.py"])


def test_node_code_parses_with_the_oldest_grammar():
    errors = []
    for path in node_files():
        try:
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=OLDEST)
        except SyntaxError as exc:
            errors.append(f"{path.relative_to(REPO)}:{exc.lineno}: {exc.msg}")
    assert not errors, f"not Python {OLDEST[0]}.{OLDEST[1]} syntax:\n" + "\n".join(errors)


def test_says_which_pythons_it_tests(record_property):
    named = ", ".join(f"{major}.{minor} ({path})" for (major, minor), path in sorted(PYTHONS.items()))
    record_property("tested_on", f"node code compiled and imported on the Pythons found here: {named}; "
                                 f"parsed with Python {OLDEST[0]}.{OLDEST[1]}'s grammar")
    system = _version(SYSTEM_PYTHON)
    assert system is not None and PYTHONS.get(system) == SYSTEM_PYTHON, f"{SYSTEM_PYTHON} is not among {named}"
    assert tuple(sys.version_info[:2]) in PYTHONS, f"the running Python is not among {named}"


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
