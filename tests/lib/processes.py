"""Child processes of a test (DHCP clients, servers): started with their output captured, stopped for sure.

    procs = Processes()
    proc = procs.popen(["ip", "netns", "exec", vm, "dhclient", ...])
    ...
    output = procs.stop_all()        # terminate, then kill after 10 s; every process's output
"""

from __future__ import annotations

import os
import select
import subprocess
import time

STOP_TIMEOUT = 10
OUTPUT_TIMEOUT = 2.0


def output_of(proc: subprocess.Popen, timeout: float = OUTPUT_TIMEOUT) -> str:
    """What ``proc`` wrote to its stdout pipe, read until EOF or ``timeout``: never blocks longer. A client's
    own children may keep the pipe open after it exited (dhcpcd's privilege-separation helpers do when its
    main process dies), and a plain ``read()`` then waits for them forever (it hung a CI run for hours)."""
    if proc.stdout is None or proc.stdout.closed:
        return ""
    fd, chunks, ended = proc.stdout.fileno(), [], False
    os.set_blocking(fd, False)
    deadline = time.monotonic() + timeout
    while not ended and select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            continue
        ended = not chunk
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace") + ("" if ended else " [output cut: the pipe stayed open]")


def stop(proc: subprocess.Popen) -> int | None:
    """Terminate ``proc`` if it still runs, kill it if it does not end within STOP_TIMEOUT; its return code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
    return proc.returncode


class Processes:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        """Started with stdin closed and stdout+stderr in one text pipe."""
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, **kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> str:
        """Stop every process (in start order); their output, joined."""
        outputs = []
        for proc in self.procs:
            stop(proc)
            if proc.stdout is not None:
                outputs.append(output_of(proc))
                proc.stdout.close()
        return "\n".join(outputs)
