# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the state cache, lease declarations and the per-pod lock.

Layout (docs/internals.md): ``<run_dir>/pods/<key>.json``, ``locks/<nskey>.lock``,
``leases/<key>.json``; directories 0700, files 0600, every write atomic.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile

from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError

DEFAULT_RUN_DIR = "/run/virtnet-podnet"
CACHE_VERSION = 1
SUBDIRS = ("pods", "locks", "leases")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


NETNS_DIRS = ("/run/netns/", "/var/run/netns/")


def netns_key(netns):
    """The ``netns`` argument made file-safe: ``pod1``, ``/proc/1234/ns/net`` -> ``proc-1234-ns-net``.

    ``/run/netns/pod1`` is the namespace named ``pod1``: same key, same lock.
    """
    for prefix in NETNS_DIRS:
        if netns.startswith(prefix) and "/" not in netns[len(prefix):]:
            netns = netns[len(prefix):]
    key = _UNSAFE.sub("-", netns.strip("/").replace("/", "-")).strip("-")
    # A name made only of dots would be a path component with a meaning.
    if not key or set(key) <= {"."}:
        key = "ns-" + key.replace(".", "_")
    return key


def state_key(netns, pod_interface):
    return f"{netns_key(netns)}__{pod_interface}"


def cache_path(run_dir, key):
    return os.path.join(run_dir, "pods", key + ".json")


def lease_path(run_dir, key):
    return os.path.join(run_dir, "leases", key + ".json")


def lock_path(run_dir, netns):
    return os.path.join(run_dir, "locks", netns_key(netns) + ".lock")


def ensure_dirs(run_dir):
    """Create the run directory tree, root-only."""
    for sub in ("",) + SUBDIRS:
        path = os.path.join(run_dir, sub) if sub else run_dir
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise PodnetError(f"run_dir: cannot create {path}: {exc.strerror}", path=path) from None
        # makedirs honours the umask; a pre-existing directory may be wider.
        os.chmod(path, 0o700)


def atomic_write_json(path, data, durable=True):
    """Write ``data`` as JSON to ``path``: temp file in the same directory, fsync, rename, fsync dir.

    ``durable=False`` keeps the write atomic but skips the fsyncs, for bookkeeping that a
    crash may lose without harm.
    """
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write("\n")
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(directory)


def _fsync_dir(directory):
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_json(path):
    """The JSON document at ``path``, or None when there is none."""
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PodnetError(f"cannot read {path}: {exc}; remove it if the pod is gone", path=path) from None


def remove(path):
    """Delete ``path``; True when something was deleted (a missing file is fine)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _fsync_dir(os.path.dirname(path))
    return True


def load_cache(run_dir, key, inode):
    """Return ``(cache, stale)``: the cache for ``key`` if it belongs to the namespace with ``inode``.

    A cache recorded for another namespace of the same name (the pod was recreated) is stale:
    it is returned as ``None`` with ``stale=True`` so the caller can drop it.
    """
    cache = read_json(cache_path(run_dir, key))
    if cache is None:
        return None, False
    if cache.get("version") != CACHE_VERSION or (inode is not None and cache.get("netns_inode") != list(inode)):
        recorded = cache.get("netns")
        try:
            st = os.stat(recorded) if isinstance(recorded, str) else None
        except OSError:
            st = None
        if st is not None and [st.st_dev, st.st_ino] == cache.get("netns_inode"):
            # Not stale: another live namespace maps to the same key. Never drop its record.
            raise PodnetError(f"{cache_path(run_dir, key)} records the live namespace {recorded}, which shares "
                              "this state key; address this pod by another name or path", path=recorded)
        return None, True
    return cache, False


def record_elsewhere(run_dir, key, inode, pod_interface):
    """The cache file of this same namespace and interface recorded under another key, if any.

    One namespace can be named several ways (``pod1``, ``/proc/PID/ns/net``, a bind mount);
    the record made under one name must not be missed when the next run uses another.
    """
    folder = os.path.join(run_dir, "pods")
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and n != key + ".json")
    except OSError:
        return None
    for name in names:
        other = read_json(os.path.join(folder, name))
        if (isinstance(other, dict) and other.get("netns_inode") == list(inode)
                and (other.get("binding") or {}).get("pod_interface") == pod_interface):
            return os.path.join(folder, name)
    return None


def save_cache(run_dir, key, cache, durable=True):
    atomic_write_json(cache_path(run_dir, key), dict(cache, version=CACHE_VERSION, key=key), durable)


@contextlib.contextmanager
def pod_lock(run_dir, netns):
    """Hold an exclusive ``flock`` for the pod namespace; two runs on one pod serialize."""
    ensure_dirs(run_dir)
    path = lock_path(run_dir, netns)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                break
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno != errno.EINTR:
                    raise
        yield path
    finally:
        # Closing releases the lock; the file stays so waiters lock the same inode.
        os.close(fd)
