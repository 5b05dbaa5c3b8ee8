# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The README's two commands on a truly fresh Debian 12 machine.

A container stands in for the machine: a Debian 12 rootfs made by ``mmdebstrap`` with python3
and nothing more (no make, no python3-venv, no git - what a cloud image ships as far as this
project cares), imported into podman by ``tools/fresh_debian_image.sh``, which caches it under
``~/.cache/virtnet-podnet/images`` keyed by a hash of its package list. Inside runs a copy of
the files a clone of this working tree would hold (tracked and not-ignored files; in CI, the
commit under test), with the two commands read from README.md's first ``sh`` block:

- the demo command runs fully: Debian packages, venv, demo, cleanup - and afterwards neither a
  ``podnet-demo-*`` namespace nor the DHCP responder may be left;
- the test command runs as ``test stock``: what depends on the Python and ansible-core a machine
  has, or on a machine where nothing ran before - the unit tests, the real DHCP clients (IPv4
  and IPv6: dhcpcd on a machine that never ran it), ansible-doc, the role docs and the filters
  through ansible-core - and ansible-lint. With the demo (the roles and modules through
  ansible-playbook), this is the path a stock Debian 12 takes - Python 3.11 with the ansible-core
  2.19 lock, Debian's own packages - proven on every ``make test``, also where the host has a
  newer Python (pyenv) and takes the 2.21 lock.

  Left out in the container, and why: ansible-test sanity, which installs its tools into venvs
  of its own from a Python index, which the container does not reach (the host runs sanity on
  every ``make test``); the rest of the integration tests, the real-VM tests and molecule, which
  the host runs right beside this test - running them a second time would double ``make test``
  (about 15 minutes more on two cores, against a 20-minute budget), and none depends on the
  controller's Python or ansible-core version beyond what runs here.

The container reaches Debian's mirror (plain http) but no Python package index, so the Python
packages come from a wheelhouse that the host's pip downloads for CPython 3.11 from
``requirements/dev-py311.txt`` (cached under ``~/.cache/virtnet-podnet/wheels``), mounted
read-only and named through pip's own ``PIP_NO_INDEX``/``PIP_FIND_LINKS``, which ./podnet-dev
honours.

Podman runs through ``tools/podman.sh`` (runc, cgroupfs, and the vfs driver where its storage is on
overlayfs), with explicit ulimits (no CAP_SYS_RESOURCE) and ``--privileged`` (so that network
namespaces and taps work inside). Skipped only when podman or mmdebstrap cannot be
installed - and never in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest

pytestmark = [pytest.mark.root, pytest.mark.slow]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "virtnet-podnet")
LOCK_311 = os.path.join(REPO_ROOT, "requirements", "dev-py311.txt")
PODMAN = [os.path.join(REPO_ROOT, "tools", "podman.sh")]
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(reason):
    if IN_CI:
        pytest.fail(f"CI=true, yet {reason}")
    pytest.skip(reason)


def run(argv, timeout, **kwargs):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def readme_commands():
    """The commands of README.md's first ``sh`` block, without their comments."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as handle:
        block = re.search(r"^```sh\n(.*?)^```", handle.read(), re.S | re.M)
    assert block, "README.md has no ```sh block"
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.split("#", 1)[0].strip()]


@pytest.fixture(scope="module")
def image():
    if os.geteuid() != 0:
        pytest.skip("needs root: mmdebstrap and podman run as root here")
    proc = run([os.path.join(REPO_ROOT, "tools", "system_deps.sh"), "--fresh-machine"], timeout=900)
    if proc.returncode != 0 or not (shutil.which("podman") and shutil.which("mmdebstrap")):
        unavailable("podman or mmdebstrap cannot be installed: " + (proc.stdout + proc.stderr)[-1500:])
    start = time.monotonic()
    proc = run([os.path.join(REPO_ROOT, "tools", "fresh_debian_image.sh")], timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"fresh Debian 12 image ready in {time.monotonic() - start:.0f}s")
    return proc.stdout.split()[-1]


@pytest.fixture(scope="module")
def wheelhouse():
    """The Python packages of the 3.11 lock as CPython 3.11 wheels for glibc <= 2.36 (Debian 12)."""
    with open(LOCK_311, "rb") as handle:
        key = hashlib.sha256(handle.read()).hexdigest()[:16]
    path = os.path.join(CACHE, "wheels", f"py311-{key}")
    if os.path.isdir(path):
        return path
    tmp = f"{path}.tmp.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    platforms = [f"manylinux_2_{minor}_x86_64" for minor in range(36, 16, -1)] + ["manylinux2014_x86_64"]
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--dest", tmp,
            "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp",
            "--abi", "cp311", "--abi", "abi3", "--abi", "none", "-r", LOCK_311]
    for platform in platforms:
        argv += ["--platform", platform]
    proc = run(argv, timeout=900)
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        unavailable("cannot download the wheels of requirements/dev-py311.txt: " + proc.stderr[-1500:])
    try:
        os.replace(tmp, path)
    except OSError:  # another run finished the same wheelhouse first
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def clone_of_working_tree(dest):
    """What a clone of the working tree's next commit holds: tracked files that exist, and
    untracked files not ignored, in a git repository of their own."""
    proc = run(["git", "-C", REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], timeout=60)
    assert proc.returncode == 0, proc.stderr
    for rel in sorted(set(filter(None, proc.stdout.split("\0")))):
        src = os.path.join(REPO_ROOT, rel)
        if not os.path.lexists(src):
            continue  # deleted in the working tree
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    # A clone is a git repository (tools/prepare_ansible_test.py lists the files with git).
    env = dict(os.environ, GIT_AUTHOR_NAME="fresh", GIT_AUTHOR_EMAIL="fresh@invalid",
               GIT_COMMITTER_NAME="fresh", GIT_COMMITTER_EMAIL="fresh@invalid")
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-q", "--no-verify", "-m", "working tree"]):
        proc = run(["git", "-C", dest, *argv], timeout=120, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr


# Run inside the container, from the clone: the README's demo command, a check that the demo
# left nothing running, then the README's test command limited to its stock step.
SCRIPT = r"""
set -u
step() { echo; echo "=== fresh: $1"; }
step "@DEMO@"
start=$SECONDS
@DEMO@; echo "=== fresh: demo exit $? in $((SECONDS - start))s"
step "left behind"
for ns in /run/netns/podnet-demo-*; do [ -e "$ns" ] && echo "LEFT namespace ${ns##*/}"; done
[ -e /run/virtnet-podnet/podnet-dhcpd.pid ] && echo "LEFT pidfile /run/virtnet-podnet/podnet-dhcpd.pid"
for p in /proc/[0-9]*; do  # a Python process naming the responder's pidfile (not this shell)
  case $(readlink "$p/exe" 2>/dev/null) in *python*) ;; *) continue ;; esac
  tr '\0' ' ' < "$p/cmdline" 2>/dev/null | grep -q 'podnet-dhcpd.pid' && echo "LEFT responder ${p#/proc/}"
done
step "@TEST@ stock"
start=$SECONDS
@TEST@ stock; echo "=== fresh: test exit $? in $((SECONDS - start))s"
"""


def test_readme_commands_on_a_fresh_debian12(image, wheelhouse, tmp_path):
    commands = readme_commands()
    assert len(commands) >= 2, commands
    demo, test = commands[0], commands[1]
    assert demo.endswith(" demo") and test.endswith(" test"), commands

    clone = tmp_path / "podnet"
    clone_of_working_tree(str(clone))
    name = f"podnet-fresh-{uuid.uuid4().hex[:10]}"
    argv = PODMAN + [
        "run", "--rm", "--name", name, "--privileged",
        "--ulimit", "nofile=10000:10000", "--ulimit", "nproc=4096:4096",
        "-v", f"{clone}:/root/podnet", "-v", f"{wheelhouse}:/wheels:ro",
        "-e", "PIP_NO_INDEX=1", "-e", "PIP_FIND_LINKS=/wheels", "-e", "DEBIAN_FRONTEND=noninteractive",
        "-e", f"CI={os.environ.get('CI', '')}",  # the skip guard holds inside too
        "-w", "/root/podnet", image,
        "bash", "-c", SCRIPT.replace("@DEMO@", demo).replace("@TEST@", test),
    ]
    start = time.monotonic()
    try:
        proc = run(argv, timeout=2400)
    finally:
        run(PODMAN + ["rm", "--force", "--ignore", name], timeout=120)
        shutil.rmtree(clone, ignore_errors=True)
    out = proc.stdout + proc.stderr
    print(f"README commands in the fresh container: {time.monotonic() - start:.0f}s")
    print("\n".join(line for line in out.splitlines() if line.startswith("=== fresh")))
    tail = out[-8000:]
    assert proc.returncode == 0, tail
    assert "=== fresh: demo exit 0 " in out, tail
    # The demo's table: every VM with a delegated IP leased its pod's IP and reached its gateway.
    assert re.search(r"vm-red +podnet-demo-pod1 +10\.244\.0\.11/24 +10\.244\.0\.11/24 .* yes \(10\.244\.0\.1\)", out), tail
    assert "cleanup failed" not in out, tail
    assert "no podnet-demo-* namespace left" in out, tail
    assert "LEFT " not in out, tail
    assert "=== fresh: test exit 0 " in out, tail
    for step in ("pytest", "ansible-lint"):  # tools/run_tests.sh's summary of the stock step
        assert re.search(rf"^\s+{step}\s+ok", out, re.M), tail
    # Idempotent: the second command reuses the venv the first one built.
    assert out.count("building .venv") == 1, tail
