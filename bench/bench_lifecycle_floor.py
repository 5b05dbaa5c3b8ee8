#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The kernel's floor for one pod lifecycle in podnet-dhcpd: only the syscalls the responder must make
per pod, timed by CPU (user + system) of this process.

Per pod: open the netns file, fstat it, setns in, AF_PACKET socket + filter + PACKET_IGNORE_OUTGOING +
SO_RCVBUF + bind to the tap, SIOCGIFHWADDR, setns back, close the netns fd; later close the socket; and the
records' syscalls: open/fstat/pread/close of the declaration, 5 unlinks (lease, lease state, cache, id,
lock) and the lock's open/flock/stat/fstat/close. Namespaces are made once (ip netns add) and reused:
making them is the CNI's cost, not the responder's.

    python bench/bench_lifecycle_floor.py [--pods 1000]      (as root)
"""
import argparse
import ctypes
import fcntl
import os
import resource
import socket
import struct
import subprocess
import tempfile
import time

import _paths  # noqa: F401  # pylint: disable=unused-import  # sets sys.path: the collection, tests/lib
from _common import run_dir_base

CLONE_NEWNET = 0x40000000
libc = ctypes.CDLL(None, use_errno=True)
# A filter of the responder's size (accept all; the length is what the kernel checks and copies).
PROGRAM = struct.pack("=HBBI", 0x06, 0, 0, 0xFFFF) * 20


def setns(fd):
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


PHASES = {}


def phase(name, t0):
    t1 = time.thread_time()
    PHASES[name] = PHASES.get(name, 0.0) + t1 - t0
    return t1


def one_pod(ns_path, home, run):
    t = time.thread_time()
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    os.fstat(fd)
    t = phase("open+fstat netns", t)
    setns(fd)
    t = phase("setns in", t)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    buf = ctypes.create_string_buffer(PROGRAM)
    sock.setsockopt(socket.SOL_SOCKET, 26, struct.pack("HL", len(PROGRAM) // 8, ctypes.addressof(buf)))
    sock.setsockopt(263, 23, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.bind(("tap0", 0x0003))
    fcntl.ioctl(sock.fileno(), 0x8927, struct.pack("256s", b"tap0"))
    t = phase("packet socket: socket, filter, options, bind, hwaddr", t)
    setns(home)
    t = phase("setns back", t)
    os.close(fd)
    # the declaration, read once on one descriptor
    dfd = os.open(os.path.join(run, "decl.json"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    os.fstat(dfd)
    os.pread(dfd, 1 << 20, 0)
    os.close(dfd)
    phase("declaration open/fstat/pread/close + netns close", t)
    return sock


def collect(sock, run, n):
    t = time.thread_time()
    sock.close()
    t = phase("packet socket close", t)
    lock = os.path.join(run, "x.lock")
    lfd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    fcntl.flock(lfd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.stat(lock)
    os.fstat(lfd)
    for i in range(4):
        os.unlink(os.path.join(run, f"f{n}-{i}"))
    os.unlink(lock)
    os.close(lfd)
    phase("records: lock open/flock/stat/fstat, 5 unlinks, close", t)


def floor(pods):
    """The floor over ``pods`` pod lifecycles: ``{"cpu_ms", "user_ms", "system_ms", "wall_ms", "steps_us"}`` per pod."""
    PHASES.clear()
    name = f"kfloor-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "tuntap", "add", "tap0", "mode", "tap"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "tap0", "up"], check=True)
        home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with tempfile.TemporaryDirectory(dir=run_dir_base()) as run:  # a node's /run is a tmpfs
                with open(os.path.join(run, "decl.json"), "w") as handle:
                    handle.write("{}" + " " * 600)
                # The 4 record files of each pod are made beforehand: making them is the writers' cost.
                for n in range(pods):
                    for i in range(4):
                        with open(os.path.join(run, f"f{n}-{i}"), "w"):
                            pass
                u0, s0 = cpu()
                t0 = time.perf_counter()
                for n in range(pods):
                    collect(one_pod(f"/run/netns/{name}", home, run), run, n)
                u1, s1 = cpu()
                t1 = time.perf_counter()
        finally:
            os.close(home)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    return {"pods": pods, "cpu_ms": round(1000 * (u1 - u0 + s1 - s0) / pods, 3), "user_ms": round(1000 * (u1 - u0) / pods, 3),
            "system_ms": round(1000 * (s1 - s0) / pods, 3), "wall_ms": round(1000 * (t1 - t0) / pods, 2),
            "steps_us": {key: round(value / pods * 1e6, 1) for key, value in PHASES.items()}}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=200)
    args = parser.parse_args()
    r = floor(args.pods)
    print(f"kernel floor per pod lifecycle: {r['cpu_ms']:.3f} ms CPU (getrusage; its user/system split is by "
          f"ticks: user {r['user_ms']:.3f} ms, system {r['system_ms']:.3f} ms); wall {r['wall_ms']:.2f} ms "
          f"with the socket close's RCU wait; over {args.pods} pods; run dir on {run_dir_base()}")
    for key, value in r["steps_us"].items():
        print(f"  {key}: {value:.1f} us")
    print(f"  thread_time total: {sum(r['steps_us'].values()) / 1000:.3f} ms")


if __name__ == "__main__":
    main()
