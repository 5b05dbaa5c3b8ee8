"""Child processes of a test (DHCP clients, servers): started with their output captured, stopped for sure.

    procs = Processes()
    proc = procs.popen(["ip", "netns", "exec", vm, "dhclient", ...])
    ...
    output = procs.stop_all()        # terminate, then kill after 10 s; every process's output
"""

from __future__ import annotations

import subprocess

STOP_TIMEOUT = 10


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
                outputs.append(proc.stdout.read())
                proc.stdout.close()
        return "\n".join(outputs)
