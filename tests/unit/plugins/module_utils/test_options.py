# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_options: the option sets, the argument specs built from them, and value checks."""

from __future__ import annotations

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_facts
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._options import (
    POD_OPTIONS, bridge_argument_spec, info_argument_spec, validate_options)

from lib.pod_samples import BINDING


def options(**extra):
    return validate_options(dict({"netns": "pod1", "binding": BINDING}, **extra))


def test_options_defaults():
    p = options()
    assert p["run_dir"] == "/run/virtnet-podnet" and p["lease_time"] == 86400
    assert p["dns_servers"] == [] and p["search_domains"] == [] and p["multiqueue"] is False


@pytest.mark.parametrize("bad, field", [
    ({"tap_uid": -1}, "tap_uid"),
    ({"tap_gid": "qemu"}, "tap_gid"),
    ({"pod_mac": "01:00:5e:00:00:01"}, "pod_mac"),  # multicast
    ({"pod_mac": "zz"}, "pod_mac"),
    ({"dns_servers": ["10.96.0.10", "dns.example"]}, "dns_servers[1]"),
    ({"search_domains": ["bad domain"]}, "search_domains[0]"),
    ({"hostname": "-vm"}, "hostname"),
    ({"lease_time": 0}, "lease_time"),
    ({"lease_time": True}, "lease_time"),
    ({"run_dir": "relative/dir"}, "run_dir"),
    ({"dns_servers": [f"10.96.0.{i}" for i in range(1, 65)]}, "dns_servers: 64 entries, at most 16"),
    ({"dns_servers6": ["fd00::53", "fd00::53%eth0"]}, "dns_servers6[1]: 'fd00::53%eth0' is not"),  # issue 18 M3
    ({"dns_servers6": ["fd00::53%\x1b[2J" + "x" * 4000]}, "dns_servers6[0]"),
    ({"dns_servers": ["10.96.0.10%eth0"]}, "dns_servers[0]"),
])
def test_bad_options_name_the_option(bad, field):
    with pytest.raises(PodnetError) as err:
        options(**bad)
    assert field in err.value.msg


def test_all_bad_options_in_one_message():
    with pytest.raises(PodnetError) as err:
        options(tap_uid=-1, hostname="-x", lease_time=1)
    assert len(err.value.details["errors"]) == 3


def test_argument_specs_are_built_from_one_option_set():
    spec = bridge_argument_spec()
    entry = spec["pods"]["options"]
    assert set(entry) == set(POD_OPTIONS)
    assert entry["netns"]["required"] and entry["binding"]["required"]
    assert all("default" not in option for option in entry.values()), "an entry's unset option is the call's"
    assert spec["lease_time"]["default"] == 86400 and spec["multiqueue"]["default"] is False
    assert "required" not in spec["netns"]
    info = info_argument_spec()
    assert set(info) == {"netns", "binding", "run_dir"} and info["netns"]["required"]
    assert "required" not in POD_OPTIONS["netns"], "building the specs must not change the option set"


@pytest.mark.parametrize("bad, field", [
    ({"hostname": "vm1\n"}, "hostname"),
    ({"search_domains": ["cluster.local\n"]}, "search_domains[0]"),
])
def test_trailing_newline_is_rejected(bad, field):
    with pytest.raises(PodnetError) as err:
        options(**bad)
    assert field in err.value.msg


def test_in_process_callers_default_to_no_responder():
    assert options()["responder"] == "skip"
    assert options(responder="auto")["responder"] == "auto"


def test_a_scoped_nameserver_in_the_pods_resolv_conf_never_reaches_the_options(tmp_path, monkeypatch):
    """Issue 18 M3: the pod's files fill unset DNS options; a scoped server there is left out, not failed on."""
    (tmp_path / "resolv.conf").write_text("nameserver fd00::53%\x1b[2J" + "x" * 4000 + "\nnameserver fd00::10\n")
    monkeypatch.setattr(_pod_facts, "pod_files_dir", lambda netns: (str(tmp_path), ""))
    p = options(netns="/proc/1/ns/net")
    assert p["dns_servers6"] == ["fd00::10"] and p["warnings"] == []
