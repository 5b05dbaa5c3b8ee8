# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The node role's podnet-dhcpd.service, rendered as the role renders it, rated by systemd (issue 18, L2).

`systemd-analyze security --offline=yes --threshold=25` fails a unit whose exposure is above 2.5
(the threshold is the 0-10 score times 10). The unit of 0.2.0 rated 5.4. The template is rendered
by ansible's own template module with the role's defaults and vars, as the role's task does.
Also the role's `podnet-dhcpd` command, rendered the same way, must run the responder's CLI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib import paths

ROLE = paths.REPO_ROOT / "roles" / "node"
ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
THRESHOLD = 25  # tenths: 2.5
PYTHON = "/opt/virtnet-podnet/venv/bin/python"


def render(template: str, dest: Path, tmp_path: Path, **extra) -> str:
    """``ansible localhost -m template`` of the role's template with the role's defaults and vars."""
    args = [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-m", "ansible.builtin.template",
            "-a", f"src={ROLE / 'templates' / template} dest={dest}",
            "-e", f"@{ROLE / 'defaults' / 'main.yml'}", "-e", f"@{ROLE / 'vars' / 'main.yml'}",
            "-e", f"ansible_python_interpreter={sys.executable}", "-e", f"virtnet_podnet_python={PYTHON}"]
    for name, value in extra.items():
        args += ["-e", f"{name}={value}"]
    env = dict(os.environ, ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_HOME=str(tmp_path / "ansible-home"))
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dest.read_text()


def exposure(unit: Path) -> tuple[int, float, str]:
    proc = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", f"--threshold={THRESHOLD}", str(unit)],
                          capture_output=True, text=True, timeout=60, check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    return proc.returncode, float(match.group(1)), proc.stdout


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines by section (``[Unit]``, ``[Service]``), comments dropped."""
    sections: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = line
            sections.setdefault(current, [])
        elif line and not line.startswith("#"):
            sections.setdefault(current, []).append(line)
    return sections


def value(lines: list[str], key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in lines if line.split("=", 1)[0] == key]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian: systemd)")
@pytest.mark.parametrize("run_dir", ["/run/virtnet-podnet", "/var/lib/virtnet-podnet"])
def test_unit_exposure_at_most_2_5(tmp_path, run_dir, record_property):
    unit = tmp_path / "podnet-dhcpd.service"  # systemd-analyze names the unit after the file
    render("podnet-dhcpd.service.j2", unit, tmp_path, node_run_dir=run_dir)
    rc, score, report = exposure(unit)
    record_property("podnet-dhcpd.service exposure", score)
    print(f"podnet-dhcpd.service (node_run_dir={run_dir}): exposure {score}")
    assert rc == 0 and score <= THRESHOLD / 10, report


def test_unit_directives(tmp_path):
    """What the score does not tell: the capabilities and families the daemon needs and no more, the
    restart policy, the journal's rate limit against the daemon's own budget, the command it runs."""
    unit = tmp_path / "podnet-dhcpd.service"
    sections = directives(render("podnet-dhcpd.service.j2", unit, tmp_path, node_responder_max_pods="1000"))
    service, unit_section = sections["[Service]"], sections["[Unit]"]
    assert value(unit_section, "StartLimitIntervalSec") == ["0"]  # in [Unit]: systemd ignores it in [Service]
    assert value(service, "Restart") == ["always"]
    assert value(service, "CapabilityBoundingSet") == ["CAP_NET_RAW CAP_SYS_ADMIN"]
    assert value(service, "RestrictAddressFamilies") == ["AF_UNIX AF_PACKET"]
    assert value(service, "RestrictNamespaces") == ["net"]
    assert value(service, "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert value(service, "SystemCallErrorNumber") == ["EPERM"]
    assert value(service, "IPAddressDeny") == ["any"]
    assert value(service, "UMask") == ["0077"]
    # Not "invisible": a /proc/PID/ns/net it may not open must fail with EPERM, not read as a pod gone (ENOENT).
    assert value(service, "ProtectProc") == ["noaccess"]
    # 20 lines per pod per 10 s is the responder's own budget (LOG_LINES_PER_WINDOW, LOG_WINDOW).
    assert value(service, "LogRateLimitIntervalSec") == ["10s"]
    assert int(value(service, "LogRateLimitBurst")[0]) >= 21 * 1000
    assert value(service, "MemoryMax") == [f"{128 + 1000 // 8}M"] and value(service, "TasksMax") == ["16"]
    assert value(service, "ExecStart")[0].startswith("/usr/local/sbin/podnet-dhcpd --run-dir /run/virtnet-podnet ")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian: systemd)")
def test_syscall_filter_keeps_setns(tmp_path):
    """The daemon's setns(2) is in @system-service (through @process), and not in what is taken out."""
    def group(name):
        out = subprocess.run([SYSTEMD_ANALYZE, "syscall-filter", name], capture_output=True, text=True,
                             timeout=60, check=True).stdout
        return set(re.findall(r"^\s+([a-z_0-9]+)\s*$", out, re.M))
    assert "setns" in group("@process")
    for removed in ("@privileged", "@resources"):
        assert "setns" not in group(removed)
        assert not {"socket", "bind", "setsockopt", "recvfrom", "sendto", "inotify_init1", "flock"} & group(removed)


def test_podnet_dhcpd_command_runs_the_responder_cli(tmp_path):
    """The role's `podnet-dhcpd`: the node's interpreter, the role's PYTHONPATH, the responder module, "$@"."""
    install = tmp_path / "install"
    (install / "lib").mkdir(parents=True)
    (install / "lib" / "ansible_collections").symlink_to(paths.collections_root() / "ansible_collections")
    command = tmp_path / "podnet-dhcpd"
    text = render("podnet-dhcpd.sh.j2", command, tmp_path, node_install_dir=str(install),
                  virtnet_podnet_python=sys.executable)
    assert text.startswith("#!/bin/sh\n") and '"$@"' in text
    command.chmod(0o755)
    env = {key: val for key, val in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.run([str(command), "--help"], capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: podnet-dhcpd") and "--run-dir" in proc.stdout
