# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_rundir: keys, paths, atomic writes, the records and their validation, the per-pod lock (no root needed)."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.strategies import text as st_text

from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

from lib.pod_samples import declaration


@pytest.mark.parametrize("netns, key", [
    ("pod1", "pod1"),
    ("/proc/1234/ns/net", "proc-1234-ns-net"),
    ("/run/netns/pod1", "pod1"),  # the same namespace as "pod1": same key and lock
    ("/var/run/netns/cni-1f2e", "cni-1f2e"),
    ("/run/netns/sub/dir", "run-netns-sub-dir"),
    ("/var/run/podns/pod 1", "var-run-podns-pod-1"),
    ("..", "ns-__"),
])
def test_netns_key_is_file_safe(netns, key):
    assert _rundir.netns_key(netns) == key
    assert "/" not in _rundir.state_key(netns, "eth0")
    assert _rundir.state_key(netns, "eth0") == key + "__eth0"


def test_ensure_dirs_root_only(tmp_path):
    run_dir = tmp_path / "run"
    os.umask(0o022)
    _rundir.ensure_dirs(str(run_dir))
    for sub in ("", "pods", "locks", "leases", "lease-state", "ids"):
        assert stat.S_IMODE(os.stat(run_dir / sub).st_mode) == 0o700


def test_ensure_dirs_never_chmods_an_existing_directory(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    os.chmod(run_dir, 0o755)
    _rundir.ensure_dirs(str(run_dir))
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o755, "a directory of the user's is left as it was"


def test_ensure_dirs_refuses_a_directory_others_can_write(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    with pytest.raises(PodnetError, match="writable by others"):
        _rundir.ensure_dirs(str(shared))
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777 and os.listdir(shared) == []


def test_ensure_dirs_refuses_a_symlinked_subdirectory(tmp_path):
    run_dir, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run_dir.mkdir(mode=0o700)
    elsewhere.mkdir(mode=0o700)
    (run_dir / "pods").symlink_to(elsewhere)
    with pytest.raises(PodnetError, match="pods is not a root-only directory"):
        _rundir.ensure_dirs(str(run_dir))


def test_atomic_write_json_mode_content_no_temp_left(tmp_path):
    path = tmp_path / "x.json"
    _rundir.atomic_write_json(str(path), {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    _rundir.atomic_write_json(str(path), {"c": 3})
    assert json.loads(path.read_text()) == {"c": 3}
    assert os.listdir(tmp_path) == ["x.json"]


def test_atomic_write_failure_keeps_old_file_and_no_temp(tmp_path):
    path = tmp_path / "x.json"
    _rundir.atomic_write_json(str(path), {"ok": True})
    with pytest.raises(TypeError):
        _rundir.atomic_write_json(str(path), {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["x.json"]


def test_read_json_missing_and_corrupt(tmp_path):
    assert _rundir.read_json(str(tmp_path / "none.json")) is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PodnetError, match="cannot read"):
        _rundir.read_json(str(bad))


def test_remove_tolerates_missing(tmp_path):
    path = tmp_path / "x.json"
    path.write_text("{}")
    assert _rundir.remove(str(path)) is True
    assert _rundir.remove(str(path)) is False


def record(**extra):
    out = {"netns": "/run/netns/pod1", "netns_inode": [4, 100], "netns_cookie": 7,
           "binding": {"pod_interface": "eth0"}, "pod_mac": "02:00:00:00:00:01",
           "original": {"mac": "aa:bb:cc:dd:ee:ff", "mtu": 1500, "ipv4": [], "routes": []}}
    out.update(extra)
    return out


def never_alive(_record):
    return False


def test_cache_round_trip_and_stale_detection(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    key = _rundir.state_key("pod1", "eth0")
    _rundir.save_cache(run_dir, key, record())
    cache, stale = _rundir.load_cache(run_dir, key, {"inode": [4, 100], "cookie": 7}, never_alive)
    assert not stale and cache["original"]["mac"] == "aa:bb:cc:dd:ee:ff"
    assert cache["version"] == _rundir.CACHE_VERSION and cache["key"] == key
    # The kernel reused the inode for a new namespace: the cookie tells them apart.
    assert _rundir.load_cache(run_dir, key, {"inode": [4, 100], "cookie": 8}, never_alive) == (None, True)
    assert _rundir.load_cache(run_dir, key, {"inode": [4, 101], "cookie": None}, never_alive) == (None, True)
    assert _rundir.load_cache(run_dir, "other__eth0", {"inode": [4, 100], "cookie": 7}, never_alive) == (None, False)


def test_a_record_of_01_without_cookie_matches_by_inode(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    _rundir.save_cache(run_dir, "pod1__eth0", record(netns_cookie=None))
    cache, stale = _rundir.load_cache(run_dir, "pod1__eth0", {"inode": [4, 100], "cookie": 9}, never_alive)
    assert cache is not None and not stale


def test_cache_of_another_live_namespace_is_not_dropped(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    _rundir.save_cache(run_dir, "k__eth0", record())
    with pytest.raises(PodnetError, match="shares this state key"):
        _rundir.load_cache(run_dir, "k__eth0", {"inode": [4, 101], "cookie": 8}, lambda _record: True)
    assert os.path.exists(_rundir.cache_path(run_dir, "k__eth0"))


@pytest.mark.parametrize("content, message", [
    ([], "not a state record"),
    ("a string", "not a state record"),
    ({"version": 1}, "bad or missing: binding, netns, netns_inode, original, pod_mac"),
    (dict(record(), version=1, original={"mac": "aa:bb:cc:dd:ee:ff"}), "original.mtu, original.ipv4, original.routes"),
    (dict(record(), version=2), "written by another version"),
])
def test_a_record_not_understood_is_refused_clearly(tmp_path, content, message):
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    _rundir.atomic_write_json(_rundir.cache_path(run_dir, "pod1__eth0"), content)
    with pytest.raises(PodnetError, match=message):
        _rundir.load_cache(run_dir, "pod1__eth0", {"inode": [4, 100], "cookie": 7}, never_alive)


def test_records_are_indexed_by_namespace_identity(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    _rundir.save_record(run_dir, "pod1__eth0", record())
    ident = {"inode": [4, 100], "cookie": 7}
    assert _rundir.record_elsewhere(run_dir, "proc-42-ns-net__eth0", ident, "eth0") == "pod1__eth0"
    assert _rundir.record_elsewhere(run_dir, "pod1__eth0", ident, "eth0") is None, "its own record is not elsewhere"
    assert _rundir.record_elsewhere(run_dir, "x__eth0", {"inode": [4, 100], "cookie": 8}, "eth0") is None
    assert _rundir.record_elsewhere(run_dir, "x__net1", ident, "net1") is None


def test_records_of_01_are_indexed_once(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    legacy = record(netns_cookie=None)
    del legacy["netns_cookie"]
    _rundir.save_cache(run_dir, "pod1__eth0", legacy)  # as 0.1 wrote it: no ids/ entry
    found = _rundir.record_elsewhere(run_dir, "proc-42-ns-net__eth0", {"inode": [4, 100], "cookie": 9}, "eth0")
    assert found == "pod1__eth0"
    assert os.path.exists(os.path.join(run_dir, "ids", ".indexed"))


def test_collect_removes_every_file_of_a_gone_pod_and_nothing_else(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.ensure_dirs(run_dir)
    for key, rec in (("pod1__eth0", record()), ("pod2__eth0", record(netns="/run/netns/pod2", netns_cookie=8))):
        _rundir.save_record(run_dir, key, rec)
        _rundir.write_declaration(run_dir, declaration(key=key))
        _rundir.write_lease_state(run_dir, key, {"state": "bound"})
        with _rundir.pod_lock(run_dir, _rundir.record_identity(rec)):
            pass
    assert _rundir.collect(run_dir, "pod1__eth0", record(), lambda: None) == [], "alive after all: kept"
    removed = _rundir.collect(run_dir, "pod1__eth0", record(), lambda: "gone")
    assert len(removed) == 5
    left = sorted(name for sub in ("pods", "leases", "lease-state", "ids", "locks")
                  for name in os.listdir(os.path.join(run_dir, sub)) if not name.startswith("."))
    assert left == ["cookie-8.lock", "cookie-8__eth0", "pod2__eth0.json", "pod2__eth0.json", "pod2__eth0.json"]


def test_netns_keys_never_hide_or_overflow():
    assert _rundir.netns_key(".pod") == "ns-.pod", "a leading dot would hide the lease from the responder"
    long_key = _rundir.netns_key("/var/run/" + "x" * 400)
    assert len(long_key) <= _rundir.KEY_MAX and long_key != _rundir.netns_key("/var/run/" + "x" * 399)


@given(st_text(min_size=1, max_size=60))
def test_netns_key_is_always_a_plain_file_name(netns):
    key = _rundir.netns_key(netns)
    assert key and "/" not in key and key not in (".", "..") and not key.startswith(".")
    assert all(c.isalnum() and c.isascii() or c in "_.-" for c in key)


POD1, POD2 = {"inode": [4, 1], "cookie": 1}, {"inode": [4, 2], "cookie": 2}


def _hold_and_report(run_dir, ident, queue, release):
    with _rundir.pod_lock(run_dir, ident):
        queue.put("locked")
        release.wait(30)
    queue.put("released")


def test_pod_lock_serializes_processes(tmp_path):
    run_dir = str(tmp_path / "run")
    ctx = multiprocessing.get_context("fork")
    queue, release = ctx.Queue(), ctx.Event()
    holder = ctx.Process(target=_hold_and_report, args=(run_dir, POD1, queue, release))
    holder.start()
    try:
        assert queue.get(timeout=30) == "locked"
        import fcntl
        fd = os.open(_rundir.lock_path(run_dir, POD1), os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # another pod's namespace is not blocked
            with _rundir.pod_lock(run_dir, POD2):
                pass
            release.set()
            assert queue.get(timeout=30) == "released"
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free now
        finally:
            os.close(fd)
    finally:
        release.set()
        holder.join(30)
    assert stat.S_IMODE(os.stat(_rundir.lock_path(run_dir, POD1)).st_mode) == 0o600


# -- lease declarations and lease state -------------------------------------------------
def test_declaration_errors_name_every_field():
    with pytest.raises(PodnetError) as info:
        _rundir.validate_declaration(dict(declaration(), vm_mac="nope", ip="10.0.0.300", prefixlen=40, lease_time=1,
                                          search_domains=["-x"], mtu=20, tap="tap with space"))
    text = info.value.msg
    for field in ("vm_mac", "ip:", "prefixlen", "lease_time", "search_domains[0]", "mtu", "tap"):
        assert field in text, field


DHCP_OPTIONS = {"boot_file_name": "pxelinux.0", "tftp_server_name": "10.0.0.5", "ntp_servers": ["10.0.0.1"],
                "private_options": [{"option": 224, "value": "hello"}]}


def test_declaration_dhcp_options_validated_and_normalised():
    """KubeVirt's dhcpOptions, as vm_network_plan puts them in the binding: optional in a declaration."""
    assert "dhcp_options" not in declaration()  # declarations of older versions stay as they were
    assert declaration(dhcp_options=DHCP_OPTIONS)["dhcp_options"] == DHCP_OPTIONS
    # Unset values (KubeVirt's omitempty) are dropped; nothing left, no key; null is no options.
    assert declaration(dhcp_options=dict(DHCP_OPTIONS, boot_file_name="", private_options=[]))["dhcp_options"] == {
        "tftp_server_name": "10.0.0.5", "ntp_servers": ["10.0.0.1"]}
    assert "dhcp_options" not in declaration(dhcp_options={"ntp_servers": []})
    assert "dhcp_options" not in declaration(dhcp_options=None)


@pytest.mark.parametrize("options, fragments", [
    ("pxelinux.0", ["dhcp_options: must be a mapping, got string 'pxelinux.0'"]),
    ({"bootFileName": "x"}, ["dhcp_options.bootFileName: unknown field of dhcp_options"]),
    ({"boot_file_name": "a\x00b"}, ["dhcp_options.boot_file_name: holds control characters"]),
    ({"boot_file_name": "x" * 256}, ["dhcp_options.boot_file_name: is 256 bytes long"]),
    ({"boot_file_name": "x" * 10 ** 6}, ["dhcp_options.boot_file_name: is 1000000 characters long"]),
    ({"tftp_server_name": "\ud800"}, ["dhcp_options.tftp_server_name: is not valid UTF-8 text"]),
    ({"ntp_servers": ["10.0.0.1", "10.0.0.256", None]},
     ["ntp_servers[1]: string '10.0.0.256' is not an IPv4", "ntp_servers[2]: null is not an IPv4"]),
    ({"ntp_servers": ["10.0.0.1"] * 17}, ["dhcp_options.ntp_servers: has 17 entries"]),
    ({"private_options": [{"option": 224, "value": "a"}] * 1000}, ["dhcp_options.private_options: has 1000 entries"]),
    ({"private_options": [{"option": 255, "value": "a"}, {"option": 224.0, "value": "b"}, {"option": 224}]},
     ["private_options[0].option: number 255 is not a private option", "private_options[1].option: number 224.0",
      "private_options[2].value: is required"]),
    ({"private_options": [{"option": 224, "value": "a"}, {"option": 224, "value": "b"}]},
     ["private_options[1].option: duplicate option 224, also in dhcp_options.private_options[0]"]),
])
def test_hostile_dhcp_options_are_named_in_the_error(options, fragments):
    with pytest.raises(PodnetError) as info:
        _rundir.validate_declaration(dict(declaration(), dhcp_options=options))
    assert info.value.msg.startswith("invalid lease declaration: ")
    for fragment in fragments:
        assert fragment in info.value.msg, info.value.msg
    assert len(info.value.msg) < 1000


def test_state_written_atomically_root_only(tmp_path):
    run_dir = str(tmp_path / "run")
    _rundir.write_lease_state(run_dir, "pod1__eth0", {"state": "bound"})
    path = _rundir.lease_state_path(run_dir, "pod1__eth0")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert _rundir.read_lease_state(run_dir, "pod1__eth0") == {"state": "bound"}
    assert [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")] == []
    assert _rundir.read_lease_state(run_dir, "other") is None
    decl_path = _rundir.write_declaration(run_dir, declaration())
    assert _rundir.read_declaration(decl_path)["ip"] == "10.244.1.10"
    assert _rundir.remove_declaration(run_dir, "pod1__eth0") and not _rundir.remove_declaration(run_dir, "pod1__eth0")


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12)
FIELDS = ("version", "key", "netns", "netns_inode", "netns_cookie", "bridge", "tap", "vm_mac", "ip", "prefixlen",
          "gateway", "routes", "mtu", "dns_servers", "search_domains", "hostname", "lease_time", "dhcp_options")
# dhcp_options shaped like the real thing often enough to reach its inner checks.
DHCP_OPTIONS_SHAPED = st.fixed_dictionaries({}, optional={
    "boot_file_name": JSON, "tftp_server_name": JSON, "ntp_servers": st.lists(JSON, max_size=3) | JSON,
    "private_options": st.lists(st.fixed_dictionaries({}, optional={"option": st.integers(220, 258) | JSON,
                                                                    "value": JSON}) | JSON, max_size=3) | JSON,
}) | JSON


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=len(FIELDS)), st.booleans(), DHCP_OPTIONS_SHAPED)
def test_a_declaration_is_valid_or_a_clear_error_never_a_crash(fields, over_a_valid_one, dhcp_options):
    """The responder reads declarations anyone with root could write: any JSON gives a normalised
    declaration or one PodnetError naming the fields (issue 10: "routes": 5 crashed the responder)."""
    decl = dict(declaration(), **fields) if over_a_valid_one else fields
    if over_a_valid_one and "dhcp_options" not in fields:
        decl["dhcp_options"] = dhcp_options
    try:
        out = _rundir.validate_declaration(decl)
    except PodnetError as exc:
        assert exc.msg.startswith("invalid lease declaration") or exc.msg == "lease declaration must be a JSON object"
        return
    assert isinstance(out["routes"], list) and all(isinstance(r, dict) for r in out["routes"])
    assert all("\x00" not in str(v) for v in (out["netns"], out["tap"], out["bridge"]))
    if "dhcp_options" in out:  # what the responder encodes: only known keys, each fitting an option
        options = out["dhcp_options"]
        assert options and set(options) <= {"boot_file_name", "tftp_server_name", "ntp_servers", "private_options"}
        for text in [options.get("boot_file_name"), options.get("tftp_server_name")] + [
                p["value"] for p in options.get("private_options", [])]:
            assert text is None or 0 < len(text.encode()) <= 255
        assert all(224 <= p["option"] <= 254 for p in options.get("private_options", []))


# -- the ipv6 block (issue 12) --------------------------------------------------------------------
IPV6_BLOCK = {"address": "FD00:58:0::7", "prefixlen": 64, "gateway": "fe80::1c38:fbff:fec0:1bf0",
              "gateway_mac": "1E:38:FB:C0:1B:F0", "dns_servers": ["fd00:96::a"]}
V6_ONLY = {"ip": None, "prefixlen": None, "gateway": None, "routes": []}


def test_declaration_ipv6_block_normalised():
    decl = declaration(ipv6=IPV6_BLOCK)
    assert decl["ipv6"] == {"address": "fd00:58::7", "prefixlen": 64, "gateway": "fe80::1c38:fbff:fec0:1bf0",
                            "gateway_mac": "1e:38:fb:c0:1b:f0", "dns_servers": ["fd00:96::a"]}
    assert decl["ip"] == "10.244.1.10"
    assert "ipv6" not in declaration()  # absent stays absent: declarations without IPv6 read as before
    assert declaration(ipv6=None)["ipv6"] is None
    calico = declaration(ipv6=dict(IPV6_BLOCK, prefixlen=128, gateway=None, gateway_mac=None, dns_servers=[]))
    assert calico["ipv6"]["prefixlen"] == 128 and calico["ipv6"]["gateway"] is None
    assert _rundir.DECLARATION_VERSION == 1


def test_ipv6_only_declaration(tmp_path):
    decl = declaration(ipv6=IPV6_BLOCK, **V6_ONLY)
    assert decl["ip"] is None and decl["prefixlen"] is None and decl["routes"] == []
    path = _rundir.write_declaration(str(tmp_path), decl)
    assert _rundir.read_declaration(path) == decl


@pytest.mark.parametrize("extra, fragments", [
    ({"ipv6": "fd00::7"}, ["ipv6: 'fd00::7' is not null or an object"]),
    ({"ipv6": dict(IPV6_BLOCK, address="fe80::7")}, ["ipv6.address: 'fe80::7' is not a global unicast"]),
    ({"ipv6": dict(IPV6_BLOCK, address="ff02::1")}, ["ipv6.address"]),
    ({"ipv6": dict(IPV6_BLOCK, address=None)}, ["ipv6.address: None"]),
    ({"ipv6": dict(IPV6_BLOCK, prefixlen=129)}, ["ipv6.prefixlen: 129 is not a whole number 1..128"]),
    ({"ipv6": dict(IPV6_BLOCK, prefixlen=0)}, ["ipv6.prefixlen"]),
    ({"ipv6": dict(IPV6_BLOCK, gateway="fd00:58::1")}, ["ipv6.gateway: 'fd00:58::1' is not a link-local"]),
    ({"ipv6": dict(IPV6_BLOCK, gateway_mac="01:00:5e:00:00:01")}, ["ipv6.gateway_mac"]),
    ({"ipv6": dict(IPV6_BLOCK, dns_servers=["10.96.0.10"])}, ["ipv6.dns_servers[0]"]),
    ({"ipv6": dict(IPV6_BLOCK, dns_servers=[f"fd00::{i}" for i in range(1, 10)])},
     ["ipv6.dns_servers: 9 entries, at most 8"]),
    ({"ipv6": dict(IPV6_BLOCK, extra=1)}, ["ipv6.extra: unknown field"]),
    ({"ipv6": dict(IPV6_BLOCK, address="fd00:58::7%eth0")}, ["ipv6.address: 'fd00:58::7%eth0' is not"]),  # issue 18 M3
    ({"ipv6": dict(IPV6_BLOCK, gateway="fe80::1c38:fbff:fec0:1bf0%eth0")}, ["ipv6.gateway"]),
    ({"ipv6": dict(IPV6_BLOCK, dns_servers=["fd00:96::a", "fd00::53%\x1b[2J" + "x" * 4000])}, ["ipv6.dns_servers[1]"]),
    ({"ip": None}, ["ip: null without an ipv6 block"]),
    ({"ip": None, "ipv6": None}, ["ip: null without an ipv6 block"]),
    (dict(V6_ONLY, ipv6=IPV6_BLOCK, prefixlen=24), ["prefixlen: 24 without ip"]),
    (dict(V6_ONLY, ipv6=IPV6_BLOCK, gateway="10.244.1.1"), ["gateway: '10.244.1.1' without ip"]),
    (dict(V6_ONLY, ipv6=IPV6_BLOCK, routes=[{"dst": "0.0.0.0/0", "gateway": "10.244.1.1"}]),
     ["routes: must be empty without ip"]),
])
def test_ipv6_block_errors_name_the_field(extra, fragments):
    with pytest.raises(PodnetError) as info:
        declaration(**extra)
    text = "; ".join(info.value.details["errors"])
    for fragment in fragments:
        assert fragment in text, text


def test_a_declaration_file_with_a_scoped_address_is_refused(tmp_path):
    """Issue 18 M3: what the responder reads is checked again; a scope would reach inet_pton at serve time."""
    path = _rundir.write_declaration(str(tmp_path), declaration(ipv6=IPV6_BLOCK))
    with open(path) as handle:
        data = json.load(handle)
    data["ipv6"]["dns_servers"] = ["fd00::53%eth0"]
    with open(path, "w") as handle:
        json.dump(data, handle)
    with pytest.raises(PodnetError) as info:
        _rundir.read_declaration(path)
    assert "ipv6.dns_servers[0]: 'fd00::53%eth0' is not" in "; ".join(info.value.details["errors"])


def test_dhcp6_node_id_is_kept_and_hidden(tmp_path):
    run_dir = str(tmp_path)
    _rundir.ensure_dirs(run_dir)
    first = _rundir.dhcp6_node_id(run_dir)
    assert len(first) == 32 and _rundir.dhcp6_node_id(run_dir) == first
    path = os.path.join(run_dir, "lease-state", ".dhcp6-node-id")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, "w") as handle:
        handle.write("garbage")
    assert _rundir.dhcp6_node_id(run_dir) != first  # unreadable: a new one, kept
