"""podnet-dhcpd as a process of its own, with a per-test run dir and log file.

    with ResponderProcess(run_dir) as responder:       # python -m ..._dhcp_responder
        responder.wait_serving(key)
        lease_state(run_dir, key)                      # what it recorded for that pod

The child gets this process's sys.path as PYTHONPATH, so call ``lib.paths.setup()`` first.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from lib.paths import MODULE_UTILS
from lib.processes import stop
from lib.waiting import wait_for


class ResponderProcess:
    """``python -m ..._dhcp_responder`` with a per-test run dir and log file."""

    def __init__(self, run_dir: str, log_file: str | None = None, rescan_interval: float = 1.0,
                 extra_args: tuple = ()) -> None:
        self.run_dir = run_dir
        self.extra_args = tuple(extra_args)
        self.log_file = log_file or os.path.join(run_dir, "podnet-dhcpd.log")
        self.pidfile = os.path.join(run_dir, "podnet-dhcpd.pid")
        self.rescan_interval = rescan_interval
        self.proc: subprocess.Popen | None = None

    def start(self) -> ResponderProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"{MODULE_UTILS}._dhcp_responder",
             "--run-dir", self.run_dir, "--pidfile", self.pidfile, "--log-file", self.log_file,
             "--rescan-interval", str(self.rescan_interval), *self.extra_args],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: self.proc.poll() is not None or "started" in self.log(), 20, what="responder start")
        if self.proc.poll() is not None:
            raise RuntimeError(f"responder exited: {self.proc.stderr.read().decode()} {self.log()}")
        return self

    def log(self) -> str:
        try:
            return Path(self.log_file).read_text()
        except OSError:
            return ""

    def wait_log(self, text: str, timeout: float = 20.0, count: int = 1) -> str:
        return wait_for(lambda: self.log().count(text) >= count and self.log(), timeout, what=f"log line {text!r}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def serving(self, key: str) -> bool:
        """This pod's own "serving on" line is in the log (another pod's later one does not count)."""
        return any(f"pod={key} " in line and " serving on " in line for line in self.log().splitlines())

    def wait_serving(self, key: str, timeout: float = 20.0) -> None:
        wait_for(lambda: self.serving(key), timeout, what=f"responder serving {key}")

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def hup(self) -> None:
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = stop(self.proc)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None
        return code

    def __enter__(self) -> ResponderProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def lease_state(run_dir: str, key: str) -> dict:
    """The responder's ``lease-state/<key>.json``; {} when it wrote none (or it is unreadable)."""
    try:
        return json.loads(Path(run_dir, "lease-state", f"{key}.json").read_text())
    except (OSError, ValueError):
        return {}
