"""Make the checkout importable as ``ansible_collections.virtnet.podnet`` (and tests/lib as ``lib``).

The path setup itself lives in tests/lib/paths.py (``setup()``), which the bench scripts
call too; importing any module of tests/lib has no side effect.

Under ``CI=true`` a skipped test fails the run unless ``ALLOWED_SKIPS_IN_CI`` names it (with
pytest-xdist too: the controller receives every worker's reports). Tests may record what they
covered as a ``tested_on`` property (``record_property``); the summary prints it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from lib import paths  # noqa: E402

paths.setup()
REPO_ROOT = paths.REPO_ROOT
COLLECTIONS_ROOT = paths.COLLECTIONS_ROOT


# -- under CI=true, a skip is a failure unless it is allowed here ---------------------------------
# Audit (issue 17): every skip in tests/ guards something CI's machine has - root, the Debian
# packages ``./podnet-dev test`` installs (iproute2, the DHCP clients, busybox, qemu, mmdebstrap,
# the CNI plugins), the venv's tools and pyroute2. So no skip is acceptable there yet. An entry
# is (test id prefix, words of the skip reason, why skipping it in CI loses nothing).
ALLOWED_SKIPS_IN_CI: tuple[tuple[str, str, str], ...] = ()

IN_CI = os.environ.get("CI", "").lower() == "true"
_skips: list[tuple[str, str]] = []  # (test or module id, reason), on the controller
_tested_on: list[str] = []  # what tests recorded as "tested_on": which Pythons, for instance


def _on_controller(config) -> bool:
    """Not a pytest-xdist worker: workers' reports reach the controller, which decides."""
    return not hasattr(config, "workerinput")


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, (tuple, list)) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _allowed(nodeid: str, reason: str) -> bool:
    return any(nodeid.startswith(prefix) and words in reason for prefix, words, _why in ALLOWED_SKIPS_IN_CI)


def pytest_collectreport(report):
    # A module-level pytest.skip skips the whole file at collection.
    if report.skipped:
        _skips.append((report.nodeid, _skip_reason(report)))


def pytest_runtest_logreport(report):
    # An xfail also reports "skipped": it ran and failed as expected, which is no skip.
    if report.skipped and not hasattr(report, "wasxfail"):
        _skips.append((report.nodeid, _skip_reason(report)))
    if report.when == "call":
        _tested_on.extend(str(value) for name, value in report.user_properties
                          if name == "tested_on" and str(value) not in _tested_on)


def _unexpected_skips() -> list[tuple[str, str]]:
    return [(nodeid, reason) for nodeid, reason in _skips if not _allowed(nodeid, reason)]


def pytest_sessionfinish(session):
    if IN_CI and _on_controller(session.config) and _unexpected_skips() \
            and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    if not _on_controller(config):
        return
    for line in _tested_on:
        terminalreporter.write_line(f"tested on: {line}")
    unexpected = _unexpected_skips()
    if unexpected:
        verdict = "CI=true: these skips fail the run" if IN_CI else "under CI=true these skips would fail the run"
        terminalreporter.section(f"{verdict} (not in tests/conftest.py's ALLOWED_SKIPS_IN_CI)", sep="-")
        for nodeid, reason in unexpected:
            terminalreporter.write_line(f"{nodeid}: {reason}")
