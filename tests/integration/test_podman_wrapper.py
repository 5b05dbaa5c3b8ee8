# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tools/podman.sh picks the vfs storage driver exactly where podman's storage is on overlayfs.

A CI machine that is itself a container has an overlayfs root, where podman's overlay driver
fails ("'overlay' is not supported over overlayfs"). The overlayfs here is a real one, mounted
in a private mount namespace (``unshare -m``), so nothing is left mounted after a crash; podman
itself is a stand-in on PATH that prints the arguments it was given.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.root]

WRAPPER = Path(__file__).resolve().parents[2] / "tools" / "podman.sh"


def fake_podman(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "podman"
    script.write_text('#!/bin/sh\necho "podman $*"\n')
    script.chmod(0o755)
    return bindir


def run_wrapper(tmp_path, storage, mount_overlay):
    bindir = fake_podman(tmp_path)
    mount = ""
    if mount_overlay:
        for part in ("lower", "upper", "work", "merged"):
            (tmp_path / part).mkdir()
        mount = (f"mount -t overlay overlay -o lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,"
                 f"workdir={tmp_path}/work {tmp_path}/merged && ")
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", PODNET_PODMAN_STORAGE=str(storage))
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", f'{mount}exec "$0" info', str(WRAPPER)],
                          capture_output=True, text=True, timeout=30, env=env, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_vfs_where_the_storage_would_be_made_on_overlayfs(tmp_path):
    # Not yet made, as on a fresh machine: the filesystem it will be made on decides.
    out = run_wrapper(tmp_path, tmp_path / "merged" / "var" / "lib" / "containers" / "storage", mount_overlay=True)
    assert out == "podman --runtime runc --cgroup-manager=cgroupfs --storage-driver vfs info"


def test_podmans_own_choice_elsewhere(tmp_path):
    out = run_wrapper(tmp_path, tmp_path / "storage", mount_overlay=False)
    assert out == "podman --runtime runc --cgroup-manager=cgroupfs info"
