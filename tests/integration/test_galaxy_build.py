# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection as users get it: build the tarball, check it holds what users need and nothing
of the development tree, install it into a clean collections path under tmp_path - never the
user's ~/.ansible/collections, where a copy would hide a missing collections path elsewhere -
and run playbooks/connect.yml and disconnect.yml from there (not from this checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile

import pytest
import yaml

from integration.test_roles import recap, vm
from lib.netlab import snapshot

pytestmark = [pytest.mark.root]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


# What only developers need: galaxy.yml's build_ignore keeps it out of the tarball.
DEVELOPMENT_ONLY = ("bench/", "tools/", "tests/", "requirements/", "extensions/", ".ci/", ".venv/", ".build/",
                    ".git/", "changelogs/fragments/", "Makefile", "podnet-dev", "pytest.ini", ".ansible-lint",
                    ".gitignore")
USER_COLLECTION = os.path.expanduser("~/.ansible/collections/ansible_collections/virtnet/podnet")


def galaxy(*args, env, cwd=REPO_ROOT):
    proc = subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_built_tarball_installs_and_connects(lab, node, tmp_path):
    user_copy_before = os.path.lexists(USER_COLLECTION)
    collections = tmp_path / "collections"
    # ANSIBLE_HOME under tmp_path: nothing of this test lands under ~/.ansible (galaxy cache, tmp).
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_HOME=str(tmp_path / "ansible-home"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_STDOUT_CALLBACK="default")
    galaxy("build", "--output-path", str(tmp_path), env=env)
    with open(os.path.join(REPO_ROOT, "galaxy.yml"), encoding="utf-8") as handle:
        version = yaml.safe_load(handle)["version"]
    tarball = tmp_path / f"virtnet-podnet-{version}.tar.gz"
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    # What users need is in; what only this checkout needs is not (galaxy.yml build_ignore).
    assert "plugins/modules/vm_pod_bridge.py" in names and "playbooks/connect.yml" in names
    assert "meta/execution-environment.yml" in names
    for needed in ("LICENSE", "README.md", "changelogs/changelog.yaml", "changelogs/config.yaml", "meta/runtime.yml",
                   "roles/node/tasks/main.yml", "plugins/filter/networks.py"):
        assert needed in names, needed
    with open(os.path.join(REPO_ROOT, "LICENSE"), encoding="utf-8") as handle:
        head = handle.read(2000)
    assert "GNU GENERAL PUBLIC LICENSE" in head and "Version 3, 29 June 2007" in head
    shipped_dev = [n for n in names if n.startswith(DEVELOPMENT_ONLY) or n in {d.rstrip("/") for d in DEVELOPMENT_ONLY}]
    assert not shipped_dev, shipped_dev
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    galaxy("install", "--force", str(tarball), "-p", str(collections), env=env)
    installed = collections / "ansible_collections" / "virtnet" / "podnet"
    assert (installed / "MANIFEST.json").is_file()

    pod = lab.add_pod()
    before = snapshot(pod.netns)
    extra = tmp_path / "vars.yml"
    extra.write_text(yaml.safe_dump(dict(node, vm_network_vms=[{"vm": vm("vm-tar"), "netns": pod.netns}])))
    # Only the installed copy is on the collections path (env above).
    for name in ("connect", "disconnect"):
        proc = subprocess.run(
            [os.path.join(BIN, "ansible-playbook"), "-i", "localhost,", "-c", "local",
             "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"@{extra}", str(installed / "playbooks" / f"{name}.yml")],
            capture_output=True, text=True, timeout=300, env=env, check=False)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        assert recap(proc)["changed"] > 0
        if name == "connect":
            assert f"vm-tar in {pod.netns}: tap0, MAC {pod.mac}" in proc.stdout
    assert snapshot(pod.netns) == before
    assert os.path.lexists(USER_COLLECTION) == user_copy_before, "a copy of the collection appeared in ~/.ansible"
