# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_pod_facts: the gateway, the option 121 routes and the pod's DNS files."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_facts

from lib.pod_samples import ROUTES_CALICO, original


def test_gateway_and_option_121_routes_flannel():
    orig = original()
    assert _pod_facts.gateway_of(orig) == "10.244.1.1"
    assert _pod_facts.dhcp_routes(orig) == [{"dst": "10.244.1.0/24", "gateway": None},
                                            {"dst": "0.0.0.0/0", "gateway": "10.244.1.1"}]


def test_gateway_and_option_121_routes_calico():
    orig = original(routes=ROUTES_CALICO, ipv4=[{"address": "10.245.1.10", "prefixlen": 32, "scope": 0,
                                                 "flags": 128, "peer": None, "broadcast": None, "label": "eth0"}])
    assert _pod_facts.gateway_of(orig) == "169.254.1.1"
    assert _pod_facts.dhcp_routes(orig) == [{"dst": "169.254.1.1/32", "gateway": None},
                                            {"dst": "0.0.0.0/0", "gateway": "169.254.1.1"}]


def test_resolv_conf_as_the_resolver_reads_it():
    lines = ["# comment", "nameserver 10.96.0.10", "nameserver fd00::10", "search a.example", "options ndots:5",
             "search svc.cluster.local cluster.local.  ; trailing", "nameserver 10.96.0.11 # second"]
    servers, search = _pod_facts.parse_resolv_conf(lines)
    assert servers == ["10.96.0.10", "10.96.0.11"], "IPv6 servers cannot go into option 6"
    assert search == ["svc.cluster.local", "cluster.local"], "the last search line wins"


def test_pod_files_dir():
    assert _pod_facts.pod_files_dir("/proc/42/ns/net") == ("/proc/42/root", "etc/")
    assert _pod_facts.pod_files_dir("pod1") == ("/etc/netns/pod1", "")
    assert _pod_facts.pod_files_dir("/proc/42/ns/net\n") is None
    assert _pod_facts.pod_files_dir("/var/run/pods/x") is None


# -- the pod's files are hostile input ---------------------------------------------------------

@pytest.fixture
def pod_root(tmp_path):
    """A pod's root next to a 'host' file it must never reach."""
    (tmp_path / "host-secret").write_text("root-only-host-file\n")
    root = tmp_path / "pod"
    (root / "etc").mkdir(parents=True)
    return root


def test_a_pod_without_files_gives_no_warning(tmp_path):
    assert _pod_facts.read_pod_file(str(tmp_path / "no-such-root"), "etc/hostname") == (None, None)


def test_regular_files_are_read(pod_root):
    (pod_root / "etc" / "hostname").write_text("vm1\n")
    assert _pod_facts.read_pod_file(str(pod_root), "etc/hostname") == ("vm1\n", None)
    assert _pod_facts.read_pod_file(str(pod_root), "etc/resolv.conf") == (None, None), "missing is not a warning"


@pytest.mark.parametrize("target", ["/host-secret", "../../host-secret", "../host-secret"])
def test_links_never_leave_the_pods_root(pod_root, target):
    (pod_root / "etc" / "hostname").symlink_to(target)
    text, _why = _pod_facts.read_pod_file(str(pod_root), "etc/hostname")
    assert text is None or "root-only-host-file" not in text


def test_links_inside_the_root_are_followed(pod_root):
    (pod_root / "data").mkdir()
    (pod_root / "data" / "name").write_text("vm2\n")
    (pod_root / "etc" / "hostname").symlink_to("/data/name")
    assert _pod_facts.read_pod_file(str(pod_root), "etc/hostname")[0] == "vm2\n"


def test_a_fifo_is_refused_without_blocking(pod_root):
    os.mkfifo(pod_root / "etc" / "hostname")
    assert _pod_facts.read_pod_file(str(pod_root), "etc/hostname") == (None, "etc/hostname is not a regular file")


def test_a_huge_file_is_refused(pod_root):
    with open(pod_root / "etc" / "resolv.conf", "wb") as handle:
        handle.truncate(10 * 1024 * 1024)
    text, why = _pod_facts.read_pod_file(str(pod_root), "etc/resolv.conf")
    assert text is None and "larger than 65536 bytes" in why


def test_a_directory_is_refused(pod_root):
    (pod_root / "etc" / "hostname").mkdir()
    assert _pod_facts.read_pod_file(str(pod_root), "etc/hostname")[1] == "etc/hostname is not a regular file"


def test_dns_defaults_warn_and_fall_back(pod_root, monkeypatch):
    os.mkfifo(pod_root / "etc" / "hostname")
    (pod_root / "etc" / "resolv.conf").write_text("nameserver 10.96.0.10\nsearch svc.cluster.local\n")
    monkeypatch.setattr(_pod_facts, "pod_files_dir", lambda netns: (str(pod_root), "etc/"))
    servers, search, hostname, servers6, warnings = _pod_facts.pod_dns_defaults("/proc/1/ns/net")
    assert (servers, search, hostname, servers6) == (["10.96.0.10"], ["svc.cluster.local"], None, [])
    assert len(warnings) == 1 and "hostname" in warnings[0] and "not a regular file" in warnings[0]


# Issue 18 M3: Python's ipaddress takes "fd00::53%<scope>", whatever the scope holds.
HOSTILE_SCOPED = "fd00::53%\x1b[2J" + "x" * 4000


@pytest.mark.parametrize("scoped", ["fd00::53%eth0", HOSTILE_SCOPED, "fe80::1%eth0"])
def test_scoped_nameservers_are_skipped_like_other_unusable_lines(pod_root, monkeypatch, scoped):
    (pod_root / "etc" / "resolv.conf").write_text(f"nameserver 10.96.0.10\nnameserver {scoped}\nnameserver fd00::10\n")
    monkeypatch.setattr(_pod_facts, "pod_files_dir", lambda netns: (str(pod_root), "etc/"))
    servers, _search, _hostname, servers6, warnings = _pod_facts.pod_dns_defaults("/proc/1/ns/net")
    assert (servers, servers6, warnings) == (["10.96.0.10"], ["fd00::10"], [])
