# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: ``podnet-dhcpd``, the node's one DHCP responder for every pod.

    python -m ansible_collections.virtnet.podnet.plugins.module_utils._dhcp_responder \\
        --run-dir /run/virtnet-podnet [--pidfile F] [--log-file F]

It learns pods from ``<run_dir>/leases/*.json`` (inotify, SIGHUP, and a periodic rescan),
opens per pod a packet socket on the pod's tap inside the pod's namespace (setns in,
socket, setns back), and answers only the VM's MAC with the pod's address. One thread, one
``selectors`` loop. A socket keeps its namespace alive, so pods whose declaration, namespace
(/run/netns entry gone or a different inode) or tap is gone are closed and forgotten.

A declaration with an ``ipv6`` block is served IPv6 on the same socket (one fd per pod
whatever the families): DHCPv6 (``_dhcp6_codec.answer``, IA_NA with the pod's IPv6 address)
and Router Advertisements (M and O set, the default route via the pod's IPv6 gateway), three
at first, then every 200..600 s and in answer to the VM's Router Solicitations (at most one
per MIN_DELAY_BETWEEN_RAS). The socket filter takes DHCPv4, DHCPv6 and RS frames as the pod
needs them, and only those the VM sends (never those sent to it, see open_client_socket); the
frame budget and the log budget are the pod's, shared by both families.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import gc
import logging
import os
import selectors
import signal
import socket
import stat
import sys
import time

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_codec as codec
from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp6_codec as codec6
from ansible_collections.virtnet.podnet.plugins.module_utils import _lease_state as lease_state
from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_control as control
from ansible_collections.virtnet.podnet.plugins.module_utils import _responder_sockets as sockets
from ansible_collections.virtnet.podnet.plugins.module_utils import _router_adverts as ra_module
from ansible_collections.virtnet.podnet.plugins.module_utils import _reply_frames as reply_frames
from ansible_collections.virtnet.podnet.plugins.module_utils import _rundir as rundir
from ansible_collections.virtnet.podnet.plugins.module_utils._dhcp4_server import INFORM_ACK
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError
from ansible_collections.virtnet.podnet.plugins.module_utils._netns import identity, setns, socket_cookie
from ansible_collections.virtnet.podnet.plugins.module_utils._responder_pod import (
    FRAME_BURST, FRAMES_PER_SECOND, LOG_WINDOW, MACHINE_ID, PAUSED_DISCARD, Pod, TokenBucket, node_id)
from ansible_collections.virtnet.podnet.plugins.module_utils._version import VERSION

LOG = logging.getLogger("podnet-dhcpd")
RESCAN_INTERVAL = 1.0  # also how soon a deleted pod's socket is closed (inotify is sooner for /run/netns)
NETNS_DIR = "/run/netns"
_NETNS_DIRS = tuple(rundir.NETNS_DIRS)
STATE_DELAY = 0.5
# The node's budget, whatever many VMs send: a frame that defeats the reply cache costs ~0.8 ms,
# so 500 a second hold the one thread under half a core; the burst answers 1,000 VMs booting at once.
NODE_FRAMES_PER_SECOND = 500.0
NODE_FRAME_BURST = 2000.0
LOG_MAX_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3

# What each exchange does to a lease (_lease_state): by reply, else by message (negated).
_EVENTS4 = {codec.OFFER: lease_state.OFFERED, codec.ACK: lease_state.RENEWED, codec.NAK: lease_state.NAKED,
            INFORM_ACK: lease_state.INFORMED, -codec.RELEASE: lease_state.RELEASED,
            -codec.DECLINE: lease_state.DECLINED}
_EVENTS6 = {codec6.ADVERTISE: lease_state.ADVERTISED, codec6.SOLICIT: lease_state.BOUND,
            codec6.REQUEST: lease_state.BOUND, codec6.RENEW: lease_state.RENEWED, codec6.REBIND: lease_state.RENEWED,
            -codec6.RELEASE: lease_state.RELEASED, -codec6.DECLINE: lease_state.DECLINED}


class _Replaced(Exception):
    """The namespace at a declaration's path is another one than the declaration's."""


class Responder:
    def __init__(self, run_dir: str, rescan_interval: float = RESCAN_INTERVAL,
                 frame_rate: float = FRAMES_PER_SECOND, frame_burst: float = FRAME_BURST,
                 machine_id: str = MACHINE_ID, node_frame_rate: float = NODE_FRAMES_PER_SECOND,
                 node_frame_burst: float = NODE_FRAME_BURST) -> None:
        self.frame_rate, self.frame_burst = frame_rate, max(1.0, frame_burst)
        # Shared by all pods: while it is empty no socket is read (the kernel queues, then drops).
        self.node_bucket = TokenBucket(node_frame_rate, max(1.0, node_frame_burst))
        self.run_dir = run_dir
        rundir.ensure_dirs(run_dir)
        # The DHCPv6 server DUID: one per node, read once (a VM's Renew names it).
        self.server_duid = codec6.server_duid(node_id(run_dir, machine_id))
        self.ra_timers = ra_module.RaTimers()
        self.leases_dir = os.path.join(run_dir, rundir.LEASES)
        self.rescan_interval = rescan_interval
        self.pods: dict[str, Pod] = {}
        self.by_fd: dict[int, Pod] = {}
        self.bad_files: dict[str, object] = {}
        self.selector = selectors.DefaultSelector()
        self.closer = sockets.Closer()
        self.running = True
        self.rescan_wanted = True
        self.stats_wanted = False
        self.next_rescan = 0.0
        self.stats = {"received": 0, "dropped": 0, "replied": 0, "rate_limited": 0, "suppressed_lines": 0,
                      "lost_lines": 0, "ras": 0, "node_throttled": 0}
        self.paused: dict[str, Pod] = {}
        self.nsfs_dev = None
        self._stamp = (None, "")  # (second, its text): a log line's time, formatted once a second
        self.event_stream = None  # set by main(): where lease event lines go, bypassing logging
        self.event_stamped = True  # the lines carry time and PID (not on the journal, which adds its own)
        self.log_handler = None  # set by main() with a log file: rotated when it reaches its size
        self.pid = os.getpid()
        self._own_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            self.inotify = sockets.Inotify()
            self.inotify.watch(self.leases_dir, sockets.IN_CLOSE_WRITE | sockets.IN_MOVED_TO | sockets.IN_MOVED_FROM | sockets.IN_DELETE | sockets.IN_CREATE)
            if os.path.isdir(NETNS_DIR):
                self.inotify.watch(NETNS_DIR, sockets.IN_DELETE | sockets.IN_CREATE | sockets.IN_MOVED_FROM)
            self.selector.register(self.inotify.fd, selectors.EVENT_READ, "inotify")
        except OSError as exc:
            LOG.warning("inotify unavailable (%s): relying on SIGHUP and the periodic rescan", exc)
            self.inotify = None

    # -- signals -------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGUSR1, self._on_usr1)

    def _on_usr1(self, *_):
        self.stats_wanted = True

    def report_stats(self) -> None:
        """One line of the counters (SIGUSR1): ``stats pods=N received=N dropped=N ...``."""
        self.stats_wanted = False
        counters = " ".join(f"{name}={value}" for name, value in self.stats.items())
        LOG.info("stats pods=%d serving=%d %s", len(self.pods),
                 sum(1 for pod in self.pods.values() if pod.sock is not None), counters)

    def _on_hup(self, *_):
        self.rescan_wanted = True

    def _on_term(self, *_):
        self.running = False

    # -- pods ------------------------------------------------------------------------------
    def rescan(self) -> None:
        """Bring pods in line with the declarations and the namespaces that still exist."""
        if not os.path.isdir(self.run_dir):
            # The run dir was removed (a test's or a node being torn down): nothing can be declared again.
            LOG.info("run dir %s is gone; stopping", self.run_dir)
            self.running = False
            return
        try:
            names = [n for n in os.listdir(self.leases_dir) if n.endswith(".json") and not n.startswith(".")]
        except OSError as exc:
            LOG.error("cannot list %s: %s", self.leases_dir, exc)
            names = []
        seen = set()
        for name in names:
            key = name[:-5]
            seen.add(key)
            try:
                self._load_declaration(key, os.path.join(self.leases_dir, name))
            except Exception as exc:  # one bad declaration hurts only its own pod
                LOG.error("pod=%s ignoring lease declaration: %r", key, exc)
                self.bad_files[key] = None
        for key in [k for k in self.pods if k not in seen]:
            self.forget(self.pods[key], "declaration withdrawn", drop_state=True)
        for key in [k for k in self.bad_files if k not in seen]:
            del self.bad_files[key]
        for pod in list(self.pods.values()):
            try:
                self.check_pod(pod)
            except Exception as exc:
                self._note_error(pod, f"cannot serve: {exc!r}")

    def on_inotify(self) -> None:
        """Act on what inotify names: only the declarations and namespaces that changed (a full rescan
        lists and stats every one of them, per event). Lost events (the queue overflowed), an event on a
        watched directory itself (removed, moved) or an unknown watch: a full rescan."""
        events = self.inotify.read_events()
        if events is None:
            self.rescan_wanted = True
            return
        leases_wd = self.inotify.watches.get(self.leases_dir)
        netns_wd = self.inotify.watches.get(NETNS_DIR)
        keys: dict[str, None] = {}
        namespaces: dict[str, None] = {}
        for wd, _mask, name in events:
            if not name or wd not in (leases_wd, netns_wd):
                self.rescan_wanted = True
                return
            if wd == leases_wd:
                if name.endswith(".json") and not name.startswith("."):  # what rescan lists; not the temp files
                    keys[name[:-5]] = None
            else:
                namespaces[name] = None
        if keys or namespaces:
            self.rescan_some(keys, namespaces)

    def rescan_some(self, keys, namespaces) -> None:
        """``rescan`` for the declarations ``keys`` and the pods on the /run/netns entries ``namespaces`` only."""
        pods = {}
        for key in keys:
            try:
                present = self._load_declaration(key, os.path.join(self.leases_dir, key + ".json"))
            except Exception as exc:  # one bad declaration hurts only its own pod
                LOG.error("pod=%s ignoring lease declaration: %r", key, exc)
                self.bad_files[key] = None
                present = True
            if not present:
                if key in self.pods:
                    self.forget(self.pods[key], "declaration withdrawn", drop_state=True)
                self.bad_files.pop(key, None)
            if key in self.pods:
                pods[key] = self.pods[key]
        if namespaces:
            for pod in self.pods.values():
                # Every path that may name such an entry (a basename match is a superset), and pods on any
                # other path: an event in /run/netns may concern them too, as it did for the full rescan.
                netns = pod.decl["netns"]
                if not netns.startswith(_NETNS_DIRS) or netns.rsplit("/", 1)[-1] in namespaces:
                    pods[pod.key] = pod
        for pod in pods.values():
            if self.pods.get(pod.key) is not pod:
                continue  # forgotten meanwhile (collected with another)
            try:
                self.check_pod(pod)
            except Exception as exc:
                self._note_error(pod, f"cannot serve: {exc!r}")

    def _load_declaration(self, key: str, path: str) -> bool:
        """(Re)load one declaration file if it changed; a bad one is logged once and not served.
        False when there is no such file (nothing was done)."""
        # One open, never following a link nor blocking (a FIFO), and every check on that descriptor:
        # what is checked is what is read.
        open_error = None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            fd, open_error = None, exc
        try:
            st = os.fstat(fd) if fd is not None else os.lstat(path)
        except OSError as exc:
            if fd is not None:
                os.close(fd)
            return not isinstance(exc, FileNotFoundError)
        # ctime, mode and owner too: a chmod that makes a file untrusted changes nothing else.
        file_id = (st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns, st.st_mode, st.st_uid)
        pod = self.pods.get(key)
        try:
            if (pod is not None and pod.file_id == file_id) or self.bad_files.get(key) == file_id:
                return True
            if fd is None:
                raise PodnetError(f"cannot open {path}: {open_error.strerror or open_error}")
            if not stat.S_ISREG(st.st_mode):
                raise PodnetError(f"{path} is not a regular file")
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                # Declarations decide who gets which address: only ours (root's) count.
                raise PodnetError(f"{path} is not owned by uid {os.geteuid()} or is writable by others")
            decl = rundir.read_declaration_fd(fd, path)
            if decl["key"] != key:
                raise PodnetError(f"key {decl['key']!r} does not match the file name")
        except PodnetError as exc:
            LOG.error("pod=%s ignoring lease declaration: %s", key, exc.msg)
            self.bad_files[key] = file_id
            if pod is not None:
                self.forget(pod, "declaration not trusted")
            return True
        finally:
            if fd is not None:
                os.close(fd)
        self.bad_files.pop(key, None)
        if pod is not None:
            self.forget(pod, "declaration changed", quiet=True)
        pod = Pod(key, decl, file_id)
        pod.bucket = TokenBucket(self.frame_rate, self.frame_burst)
        pod.state = rundir.read_lease_state(self.run_dir, key) or {}
        if pod.state.get("vm_mac") != decl["vm_mac"] or pod.state.get("ip") != decl["ip"]:
            pod.state = {}
        if (pod.state.get("ipv6") or {}).get("address") != (pod.v6 or {}).get("address"):
            pod.state.pop("ipv6", None)
        self.pods[key] = pod
        v6 = f", IPv6 {pod.v6['address']}/{pod.v6['prefixlen']}" if pod.v6 else ""
        plen = f"/{decl['prefixlen']}" if decl.get("ip") else ""
        self._info(f"pod={key} {pod.who}{plen} declared (netns {decl['netns']}, tap {decl['tap']}{v6})")
        return True

    def check_pod(self, pod: Pod) -> None:
        """Close sockets whose namespace is gone (and collect its records); (re)open where it is back or new."""
        current = sockets.ns_id(pod.decl["netns"])
        if self.nsfs_dev is None:
            self.nsfs_dev = sockets.nsfs_device()  # one filesystem for every namespace, as long as the node runs
        if current is not None and current[0] != self.nsfs_dev:
            # The path is there but holds no namespace in this process's view: a pod being
            # deleted (the path goes next), or a mount namespace (the unit's sandbox) that pods
            # do not propagate into. Never collect on that - only a missing path means gone.
            self.close_socket(pod, "its netns path holds no namespace here")
            if not pod.unseen_warned:
                pod.unseen_warned = True
                LOG.warning("pod=%s netns %s is not a network namespace in this process's view: not served "
                            "(is /run/netns a shared mount? podnet-netns.service makes it one)",
                            pod.key, pod.decl["netns"])
            return
        pod.unseen_warned = False
        expected = pod.decl.get("netns_inode")
        alive = current is not None and (expected is None or current == expected)
        if pod.sock is not None and (not alive or (pod.ns_id is not None and current != pod.ns_id)):
            self.close_socket(pod, "namespace gone" if current is None else "namespace replaced")
        if current is None or (expected is not None and current != expected):
            self.collect(pod)
        elif pod.sock is None:
            self.open_socket(pod)

    def collect(self, pod: Pod) -> None:
        """Remove the records of a pod whose namespace is gone or is another one now (once, logged).

        Under the lock of the namespace now at that path, if any, then the pod's own: the order
        vm_pod_bridge takes them in, so a pod plumbed anew under the same name is never hurt.
        """
        decl = pod.decl
        record = None
        try:
            record = rundir.read_json(rundir.cache_path(self.run_dir, pod.key))
        except PodnetError:
            pass
        if not isinstance(record, dict) or rundir.record_identity(record) != rundir.record_identity(decl):
            record = {"netns": decl["netns"], "netns_inode": decl.get("netns_inode"),
                      "netns_cookie": decl.get("netns_cookie"),
                      "binding": {"pod_interface": pod.key.rsplit("__", 1)[-1]}}

        last = {}

        def why():
            now = last["identity"] = identity(decl["netns"])
            reason = last["reason"] = "namespace gone" if now is None else \
                None if rundir.same_namespace(record, now) else "namespace replaced"
            return reason

        if why() is None:
            return
        current = last["identity"]
        # Never wait on a lock here: the loop serves every pod, and a module run may hold this
        # pod's lock for seconds. A busy lock is tried again at the next rescan.
        try:
            outer = rundir.pod_lock(self.run_dir, current, blocking=False) if current is not None \
                else contextlib.nullcontext()
            with outer:
                removed = rundir.collect(self.run_dir, pod.key, record, why, blocking=False)
        except rundir.LockBusy as exc:
            LOG.debug("pod=%s not collected yet: %s", pod.key, exc.msg)
            return
        if removed:
            self._info(f"pod={pod.key} {pod.who} records removed ({last['reason']}): "
                       + " ".join(os.path.basename(p) for p in removed))
            pod.dirty = False  # its lease state went with its records: nothing to write, nor to remove again
            self.forget(pod, "its namespace is gone", quiet=True)

    def open_socket(self, pod: Pod) -> None:
        decl = pod.decl
        try:
            nsfd = os.open(decl["netns"], os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            self._note_error(pod, f"cannot open namespace {decl['netns']}: {exc.strerror}")
            return
        sock = None
        try:
            st = os.fstat(nsfd)
            ns_id = [st.st_dev, st.st_ino]
            if decl.get("netns_inode") not in (None, ns_id):
                self._note_error(pod, "namespace inode differs from the declaration")
                return
            setns(nsfd)
            try:
                sock = sockets.open_client_socket(decl["tap"], v4=bool(decl.get("ip")), v6=pod.v6 is not None)
                cookie = socket_cookie(sock)
                if decl.get("netns_cookie") is not None and cookie is not None and cookie != decl["netns_cookie"]:
                    # The kernel gave a freed namespace's inode to a new one: not this pod.
                    raise _Replaced()
                pod.src_mac = sockets.hwaddr(sock, decl["bridge"]) or sockets.hwaddr(sock, decl["tap"]) or pod.src_mac
            finally:
                setns(self._own_ns)
        except _Replaced:
            sock.close()
            self.collect(pod)
            return
        except OSError as exc:
            if sock is not None:
                sock.close()
            self._note_error(pod, f"cannot open a packet socket on {decl['tap']}: {exc.strerror or exc}")
            return
        finally:
            os.close(nsfd)
        sock.setblocking(False)
        pod.sock = sock
        pod.ns_id = ns_id
        pod.last_error = None
        self.by_fd[sock.fileno()] = pod
        self.selector.register(sock, selectors.EVENT_READ, pod)
        extra = ""
        if pod.v6 is not None:
            pod.ll_src = codec6.link_local_from_mac(pod.src_mac)
            pod.ra.initial = ra_module.INITIAL_RAS
            self.schedule_ra(pod, time.monotonic())
            extra = " with DHCPv6 and router advertisements" + ("" if decl.get("ip") else " (IPv6 only)")
        # Within the pod's line budget, like its lease events: a socket that keeps reopening (a tap
        # flapping in a loop) must not flood the log either.
        self.log_line(pod, f"serving on {decl['tap']}{extra}")

    def _note_error(self, pod: Pod, message: str) -> None:
        if pod.last_error != message:  # once per distinct problem, not every rescan
            LOG.warning("pod=%s not served: %s", pod.key, message)
            pod.last_error = message

    def close_socket(self, pod: Pod, why: str) -> None:
        if pod.sock is None:
            return
        try:
            self.selector.unregister(pod.sock)
        except (KeyError, ValueError):
            pass
        self.by_fd.pop(pod.sock.fileno(), None)
        self.paused.pop(pod.key, None)
        pod.resume_at = None
        self.closer.close(pod.sock)  # off the loop: the kernel makes a close wait ~16 ms
        pod.sock = None
        pod.ns_id = None
        pod.ra.stop()
        self.log_line(pod, f"socket closed: {why}")

    def forget(self, pod: Pod, why: str, quiet: bool = False, drop_state: bool = False) -> None:
        self.close_socket(pod, why)
        if drop_state:  # the lease is withdrawn: its state would only mislead vm_pod_network_info
            pod.dirty = False
            rundir.remove_lease_state(self.run_dir, pod.key)
        else:
            self.flush_state(pod)
        self.pods.pop(pod.key, None)
        if not quiet:
            LOG.info("pod=%s %s forgotten: %s", pod.key, pod.who, why)

    # -- protocol ------------------------------------------------------------------------------
    def on_readable(self, pod: Pod) -> None:
        if pod.resume_at is not None:
            return  # paused: an event the selector had already collected
        for _attempt in range(64):  # bounded, so one chatty pod cannot starve the others
            sock = pod.sock
            if sock is None:
                return
            if not self.node_bucket.available(time.monotonic()):
                self.stats["node_throttled"] += 1
                return  # left queued: read once the node's budget refills (run() waits for it)
            try:
                frame, addr = sock.recvfrom(2048)
            except BlockingIOError:
                return
            except OSError as exc:
                # ENETDOWN/ENXIO: the tap went down or away; the rescan reopens it if it returns.
                self.close_socket(pod, f"socket error: {exc.strerror or exc}")
                return
            if addr[2] == sockets.PACKET_OUTGOING:
                continue
            self.stats["received"] += 1
            now = time.monotonic()
            if not pod.bucket.take(now):
                self.pause(pod, now)
                return
            # Only a frame that is handled spends the node's budget: the one that pauses a flooding
            # pod costs a read, and must not take the tokens the quiet pods' frames need.
            self.node_bucket.take(now)
            try:
                self.handle_frame(pod, frame)
            except Exception as exc:  # never let one packet end the service
                self.stats["dropped"] += 1
                LOG.debug("pod=%s dropped a frame: %r", pod.key, exc)

    def pause(self, pod: Pod, now: float) -> None:
        """Stop reading a pod that sends too much until its bucket has a token again."""
        self.stats["rate_limited"] += 1
        pod.resume_at = pod.bucket.next_token(now)
        try:
            self.selector.unregister(pod.sock)
        except (KeyError, ValueError):
            pass
        self.paused[pod.key] = pod
        self.log_line(pod, "paused: more than %g DHCP frames a second" % self.frame_rate)

    def resume_paused(self, now: float) -> None:
        for key, pod in list(self.paused.items()):
            if pod.resume_at is not None and pod.resume_at > now:
                continue
            del self.paused[key]
            pod.resume_at = None
            if pod.sock is not None and self.pods.get(key) is pod:
                self._discard_queued(pod)
                self.selector.register(pod.sock, selectors.EVENT_READ, pod)

    def _discard_queued(self, pod: Pod) -> None:
        """Drop what queued while paused: stale, and the client retries. At most PAUSED_DISCARD frames, what
        the socket's buffer holds: "until the queue is empty" never came while a VM wrote frames faster than
        they were read (bench/bench_flood.py: one resume read 26,000 frames for 160 ms, the quiet pods waited).
        Whatever is left is read as fresh frames are, and pauses the pod again at once."""
        for _frame in range(PAUSED_DISCARD):
            try:
                pod.sock.recvfrom(2048)
            except OSError:  # BlockingIOError: the queue is empty
                return
            self.stats["dropped"] += 1

    def handle_frame(self, pod: Pod, frame: bytes) -> None:
        if frame[12:14] == b"\x86\xdd":
            self.handle_frame6(pod, frame)
            return
        parsed = codec.parse_frame(frame) if pod.lease4 is not None else None
        if parsed is None:
            self.stats["dropped"] += 1
            return
        _src_mac, _src_ip, dst_ip, payload = parsed
        frames = pod.frames4
        if frames is None or frames.src_mac != pod.src_mac or frames.lease is not pod.lease4:
            frames = pod.frames4 = reply_frames.Frames4(pod.lease4, pod.src_mac, pod.server_id)
        result, reply_frame = frames.answer(payload, dst_ip)
        request = result.request
        if reply_frame is None:
            self.stats["dropped"] += 1
            if request is None:
                return  # not our VM's, or malformed: silently
            if result.reply is not None:  # a reply that does not fit what the VM takes
                self._note_error(pod, result.reason)
            elif result.detail is not None:  # noted: another server selected, RELEASE, DECLINE
                self.log_event(pod, request, result.detail, None)
                if request["message_type"] in (codec.RELEASE, codec.DECLINE):
                    self.update_state(pod, request["message_type"], None)
            return
        if self._send(pod, reply_frame):
            self.stats["replied"] += 1
            self.log_event(pod, request, result.detail, result.reply)
            self.update_state(pod, request["message_type"], result.reply)

    def log_event(self, pod: Pod, request: dict, detail: str, reply) -> None:
        name = codec.MESSAGE_NAMES[request["message_type"]]
        if detail:
            name += f"({detail})"
        sent = {None: "-", INFORM_ACK: "ACK(inform)"}.get(reply) or codec.MESSAGE_NAMES[reply]
        self.log_line(pod, f"msg={name} reply={sent} xid=0x{request['xid']:08x}")

    def log_line(self, pod: Pod, text: str, ip6: bool = False, level: str = "INFO") -> None:
        """One lease event line of a pod, within the pod's line budget (a VM must not fill the disk)."""
        suppressed = pod.log_budget.roll(time.monotonic())
        if suppressed:
            self._write_event(pod, f"{suppressed} similar lines suppressed in the last {LOG_WINDOW:g} s")
        if pod.log_budget.allow():
            if ip6 or level != "INFO":
                self._write_event(pod, text, ip6, level)
            else:
                self._write_event(pod, text)
        else:
            self.stats["suppressed_lines"] += 1

    def report_suppressed(self) -> None:
        """Say how many lines each pod's budget held back, once its window is over."""
        now = time.monotonic()
        for pod in self.pods.values():
            if pod.log_budget.suppressed and now - pod.log_budget.start >= LOG_WINDOW:
                self._write_event(pod, f"{pod.log_budget.roll(now)} similar lines suppressed in the last "
                                       f"{LOG_WINDOW:g} s")

    def _write_event(self, pod: Pod, text: str, ip6: bool = False, level: str = "INFO") -> None:
        if ip6:
            line = f"pod={pod.key} mac={pod.decl['vm_mac']} ip6={pod.v6['address']} {text}"
        else:
            line = f"pod={pod.key} {pod.who} {text}"
        if not self._emit(line, level):
            LOG.log(logging.WARNING if level == "WARNING" else logging.INFO, "%s", line)

    def _info(self, line: str) -> None:
        """A LOG.info line of a pod's lifecycle (declared, records removed) by the lease events' path when the log
        is a stream of ours: the same line in the same place, without the logging machinery."""
        if not (LOG.isEnabledFor(logging.INFO) and self._emit(line, "INFO")):
            LOG.info("%s", line)

    def _emit(self, line: str, level: str) -> bool:
        """Write one line to the log's stream as its handler would; False when there is no stream of ours."""
        # With a log file, its handler's current stream: a rotation (by a LOG line too) replaces it.
        stream = self.log_handler.stream if self.log_handler is not None else self.event_stream
        if stream is None:
            return False
        # The per-packet line skips the logging machinery (half the cost of an answer) but
        # keeps the same format as every other line of the log, and the same size cap.
        head = ""
        if self.event_stamped:
            now = time.time()
            second, stamp = self._stamp
            if second != int(now):
                second, stamp = self._stamp = int(now), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
            head = f"{stamp},{int(now * 1000) % 1000:03d} podnet-dhcpd[{self.pid}] "
        try:
            stream.write(f"{head}{level} {line}\n")
            stream.flush()
            if self.log_handler is not None and stream.tell() >= self.log_handler.maxBytes > 0:
                self.log_handler.doRollover()
        except (OSError, ValueError) as exc:
            self.stats["lost_lines"] += 1
            if self.stats["lost_lines"] == 1:
                LOG.error("cannot write lease events: %r", exc)
        return True

    def update_state(self, pod: Pod, mtype: int, reply) -> None:
        """The IPv4 lease's state after a DHCPv4 exchange (``_lease_state``)."""
        event = _EVENTS4.get(reply) or _EVENTS4.get(-mtype)
        reply_name = {None: None, INFORM_ACK: "ACK"}.get(reply, codec.MESSAGE_NAMES.get(reply))
        lease_state.record(self._state(pod), event, codec.MESSAGE_NAMES[mtype], reply_name, time.time(),
                           pod.decl["lease_time"])
        pod.dirty = True

    @staticmethod
    def _state(pod: Pod) -> dict:
        """The pod's lease state, with the header every reader of version 1 knows (IPv4 fields top level;
        the IPv6 lease's own fields under "ipv6")."""
        state = pod.state
        if not state.get("key"):
            state.update({"version": 1, "key": pod.key, "vm_mac": pod.decl["vm_mac"], "ip": pod.decl.get("ip")})
        return state

    def update_state6(self, pod: Pod, mtype: int, reply: int | None, assigned: bool) -> None:
        """The IPv6 lease's state (``ipv6`` of the lease state) after a DHCPv6 exchange (``_lease_state``)."""
        if mtype in (codec6.RELEASE, codec6.DECLINE):
            event = _EVENTS6[-mtype]
        elif reply == codec6.REPLY:
            event = _EVENTS6.get(mtype) if assigned else None
        else:
            event = _EVENTS6.get(reply)
        state = self._state(pod).setdefault("ipv6", {"address": pod.v6["address"]})
        lease_state.record(state, event, codec6.MESSAGE_NAMES.get(mtype, str(mtype)),
                           codec6.MESSAGE_NAMES.get(reply) if reply is not None else None, time.time(),
                           pod.decl["lease_time"])
        pod.dirty = True

    # -- IPv6: DHCPv6 and router advertisements ------------------------------------------------
    def handle_frame6(self, pod: Pod, frame: bytes) -> None:
        """A DHCPv6 message or Router Solicitation from the pod's VM (frame source = the VM's MAC)."""
        if pod.v6 is None or frame[6:12] != pod.mac_bytes:
            self.stats["dropped"] += 1  # not served IPv6, or not the VM: silently, as for DHCPv4
            return
        if codec6.parse_router_solicitation(frame) is not None:
            self.on_router_solicitation(pod, time.monotonic())
            return
        parsed = codec6.parse_udp6_frame(frame)
        if parsed is None:
            self.stats["dropped"] += 1
            return
        src_mac, src_ip, _dst_ip, payload = parsed
        frames = pod.frames6
        if frames is None or frames.src_mac != pod.src_mac or frames.src_ip != pod.ll_src or frames.lease is not pod.v6:
            frames = pod.frames6 = reply_frames.Frames6(pod.v6, self.server_duid, pod.mtu, pod.src_mac, pod.ll_src)
        result, out = frames.answer(payload, src_mac, src_ip)
        request = result.request
        if request is None:
            self.stats["dropped"] += 1  # malformed
            return
        mtype = request["msg_type"]
        name = codec6.MESSAGE_NAMES.get(mtype, str(mtype))
        xid = f"xid=0x{request['xid']:06x}"
        if result.reply is None:
            self.stats["dropped"] += 1
            self.log_line(pod, f"msg={name} reply=- {xid} ({result.reason})", ip6=True)
            return
        if not self._send(pod, out):
            return
        self.stats["replied"] += 1
        reply = result.reply[0]
        sent = codec6.MESSAGE_NAMES[reply]
        words = result.reason.split(": ", 1)[-1].split(" ", 1)
        if len(words) == 2:
            sent += f"({words[1]})"  # NoAddrsAvail, Success, NotOnLink
        if mtype == codec6.DECLINE:
            self.log_line(pod, f"msg={name} reply={sent} {xid}: the VM found {pod.v6['address']} in use",
                          ip6=True, level="WARNING")
        else:
            self.log_line(pod, f"msg={name} reply={sent} {xid}", ip6=True)
        self.update_state6(pod, mtype, reply, bool(request["ia_na"]))

    def _send(self, pod: Pod, frame: bytes) -> bool:
        try:
            pod.sock.send(frame)
        except (BlockingIOError, InterruptedError):
            self.stats["dropped"] += 1  # a full queue: the client retransmits
            return False
        except OSError as exc:
            # No room in the device queue, or a frame larger than the link: this frame is lost, the socket is
            # fine. Closing it would make the rescan reopen it every second for as long as the VM asks.
            if exc.errno in (errno.ENOBUFS, errno.EMSGSIZE):
                self.stats["dropped"] += 1
                return False
            self.close_socket(pod, f"send failed: {exc.strerror or exc}")
            return False
        return True

    def schedule_ra(self, pod: Pod, when: float) -> None:
        self.ra_timers.schedule(pod.key, pod.ra, when)

    def on_router_solicitation(self, pod: Pod, now: float) -> None:
        """Answer an RS with an RA, at once or when the RFC lets us (``RaSchedule.on_solicitation``)."""
        what, when = pod.ra.on_solicitation(now)
        if what == ra_module.NOW:
            self.log_line(pod, "msg=RS reply=RA", ip6=True)
            self.send_ra(pod, now, solicited=True)
        elif what == ra_module.LATER:
            self.log_line(pod, f"msg=RS reply=RA(in {when - now:.1f} s)", ip6=True)
            self.schedule_ra(pod, when)
        else:
            self.stats["dropped"] += 1  # an RA is already due by then: it answers this RS too

    def router_advertisement(self, pod: Pod) -> bytes:
        return ra_module.router_advertisement(pod.decl, pod.src_mac, pod.ll_src)

    def send_ra(self, pod: Pod, now: float, solicited: bool = False) -> None:
        """Send the pod's RA now and schedule the next."""
        if pod.sock is None or pod.v6 is None:
            return
        sent = self._send(pod, self.router_advertisement(pod))
        if sent:
            self.stats["ras"] += 1
        if pod.sock is None:
            return  # the send closed it
        when = pod.ra.after_send(now, sent, solicited)
        if when is not None:
            self.schedule_ra(pod, when)

    def _ra_live(self, key: str, token: int) -> bool:
        pod = self.pods.get(key)
        return pod is not None and pod.ra.token == token and pod.sock is not None

    def run_timers(self, now: float) -> None:
        """Send the RAs that are due."""
        for key in self.ra_timers.pop_due(now, self._ra_live):
            pod = self.pods[key]
            pod.ra.at = None
            self.send_ra(pod, now)

    def next_timer(self):
        """When the earliest live RA timer is due, or None."""
        return self.ra_timers.next_due(self._ra_live)

    def flush_state(self, pod: Pod) -> None:
        if not pod.dirty:
            return
        pod.dirty = False
        try:
            rundir.write_lease_state(self.run_dir, pod.key, pod.state)
        except OSError as exc:
            LOG.error("pod=%s cannot write lease state: %s", pod.key, exc)

    # -- loop -----------------------------------------------------------------------------------
    def run(self) -> None:
        LOG.info("podnet-dhcpd %s started, run dir %s", os.getpid(), self.run_dir)
        dirty: dict[str, Pod] = {}
        flush_at = None
        while self.running:
            now = time.monotonic()
            if self.rescan_wanted or now >= self.next_rescan:
                self.rescan_wanted = False
                self.rescan()
                self.report_suppressed()
                self.next_rescan = time.monotonic() + self.rescan_interval
            if self.stats_wanted:
                self.report_stats()
            self.resume_paused(now)
            self.run_timers(now)
            ra_due = self.next_timer()
            deadline = min([self.next_rescan] + ([flush_at] if flush_at is not None else [])
                           + ([ra_due] if ra_due is not None else [])
                           + [pod.resume_at for pod in self.paused.values() if pod.resume_at is not None])
            if not self.node_bucket.available(now):
                # Over the node's budget: no frame is read until a token is back (a few ms; the
                # sockets would be ready at once and spin the loop).
                time.sleep(max(0.0, min(self.node_bucket.next_token(now), deadline) - now))
            events = self.selector.select(max(0.0, deadline - time.monotonic()))
            for selkey, _mask in events:
                data = selkey.data
                if data == "wake":
                    try:
                        while self._wake_r.recv(512):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                elif data == "inotify":
                    self.on_inotify()
                else:
                    self.on_readable(data)
                    if data.dirty:
                        dirty[data.key] = data
            # Lease state is informational: written (fsync'd) at most once per STATE_DELAY,
            # never between a request and its reply, so disk latency never delays an answer.
            if dirty and flush_at is None:
                flush_at = time.monotonic() + STATE_DELAY
            if flush_at is not None and time.monotonic() >= flush_at:
                for pod in dirty.values():
                    self.flush_state(pod)
                dirty.clear()
                flush_at = None
        self.close()

    def close(self) -> None:
        for pod in list(self.pods.values()):
            self.flush_state(pod)
            self.close_socket(pod, "shutting down")
        self.pods.clear()
        if not self.closer.drain():
            LOG.warning("sockets still closing after 30 s")
        LOG.info("podnet-dhcpd %s stopped", os.getpid())


# -- CLI ------------------------------------------------------------------------------------
class _Pidfile:
    """A pidfile held under flock: a second responder on the same file refuses to start."""

    def __init__(self, path: str) -> None:
        self.path = path
        rundir.ensure_dir(os.path.dirname(os.path.abspath(path)))
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise PodnetError(f"another podnet-dhcpd holds {path}") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)


def _ensure_daemon(parser, args) -> int:
    if not args.pidfile or not args.log_file:
        parser.error("--ensure-daemon needs --pidfile and --log-file")
    pid = control.running_pid(args.pidfile)
    if pid:
        sys.stdout.write(f"running {pid}\n")
        return 0
    unit_file = control.systemd_unit()
    if unit_file is not None:  # systemd runs the responder here: never a second, unmanaged one
        sys.stderr.write(f"podnet-dhcpd: {control.unit_not_running_error(unit_file, args.pidfile).msg}\n")
        return 1
    # The daemon runs this same code, from wherever this process found it.
    package_root = os.path.abspath(__file__).rsplit(os.sep + "ansible_collections" + os.sep, 1)[0]
    try:
        pid = control.spawn_daemon(os.path.abspath(args.run_dir), args.pidfile, args.log_file, pythonpath=package_root)
    except PodnetError as exc:
        sys.stderr.write(f"podnet-dhcpd: {exc.msg}\n")
        return 1
    sys.stdout.write(f"started {pid}\n")
    return 0


def stderr_is_journal() -> bool:
    """systemd sets JOURNAL_STREAM to "<dev>:<inode>" of the journal stream it made stderr."""
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return os.environ.get("JOURNAL_STREAM", "") == f"{stat.st_dev}:{stat.st_ino}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="podnet-dhcpd", description="DHCP responder handing pod IPs to VMs")
    parser.add_argument("--version", action="version", version=f"podnet-dhcpd {VERSION}")
    parser.add_argument("--run-dir", default=rundir.DEFAULT_RUN_DIR)
    parser.add_argument("--pidfile", default=None)
    parser.add_argument("--log-file", default=None,
                        help="append log lines here instead of stderr (under systemd: leave it unset, the journal "
                             "takes stderr); rotated at --log-max-bytes")
    parser.add_argument("--log-max-bytes", type=int, default=LOG_MAX_BYTES,
                        help="rotate the log file at this size (0: never)")
    parser.add_argument("--log-backups", type=int, default=LOG_BACKUPS, help="rotated log files kept")
    parser.add_argument("--rescan-interval", type=float, default=RESCAN_INTERVAL)
    parser.add_argument("--frame-rate", type=float, default=FRAMES_PER_SECOND,
                        help="DHCP frames a second one pod may send before it is paused (0: no limit)")
    parser.add_argument("--frame-burst", type=float, default=FRAME_BURST, help="frames a pod may send at once")
    parser.add_argument("--node-frame-rate", type=float, default=NODE_FRAMES_PER_SECOND,
                        help="DHCP frames a second read from all pods together; beyond it every socket waits "
                             "(0: no limit)")
    parser.add_argument("--node-frame-burst", type=float, default=NODE_FRAME_BURST,
                        help="frames all pods together may send at once")
    parser.add_argument("--debug", action="store_true")
    parser.add_argument("--ensure-daemon", action="store_true",
                        help="start a detached responder unless one holds --pidfile, print 'started PID' or "
                             "'running PID', and exit (for nodes without systemd)")
    args = parser.parse_args(argv)
    if args.ensure_daemon:
        return _ensure_daemon(parser, args)
    if args.log_file:
        # ~3.4 MB of resident memory (it imports pickle, queue, threading): only with a log file.
        from logging.handlers import RotatingFileHandler  # pylint: disable=import-outside-toplevel
        handler = RotatingFileHandler(args.log_file, maxBytes=max(0, args.log_max_bytes),
                                      backupCount=max(0, args.log_backups))
    else:
        handler = logging.StreamHandler(sys.stderr)
    # The journal stamps each line with the time, unit and PID itself.
    prefix = "" if (handler.stream is sys.stderr and stderr_is_journal()) else "%(asctime)s podnet-dhcpd[%(process)d] "
    handler.setFormatter(logging.Formatter(prefix + "%(levelname)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.DEBUG if args.debug else logging.INFO)
    LOG.propagate = False
    os.umask(0o077)
    pidfile = None
    try:
        if args.pidfile:
            pidfile = _Pidfile(args.pidfile)
        responder = Responder(os.path.abspath(args.run_dir), args.rescan_interval, args.frame_rate, args.frame_burst,
                              node_frame_rate=args.node_frame_rate, node_frame_burst=args.node_frame_burst)
        responder.event_stream = handler.stream
        responder.event_stamped = bool(prefix)
        if args.log_file:
            responder.log_handler = handler
        responder.install_signal_handlers()
        # What exists now (modules, the responder) lives as long as the process: kept out of the cyclic
        # collector's full collections, which otherwise walk all of it again and again as pods come and go.
        gc.freeze()
        responder.run()
    except PodnetError as exc:
        LOG.error("%s", exc.msg)
        return 1
    except OSError as exc:
        LOG.error("cannot run: %s", exc)
        return 1
    finally:
        if pidfile is not None:
            pidfile.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
