# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/conftest.py's guard: under CI=true an unexpected skip fails the run, with and without xdist.

A pytest of its own runs a few tests beside tests/conftest.py loaded as a plugin: a module
skipped at collection, a test skipped while it runs, a strict xfail (no skip) and a pass.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]

SKIPPED_MODULE = """
import pytest
pytest.skip("no frobnicator here", allow_module_level=True)
"""
OTHER_TESTS = """
import pytest

def test_passes():
    pass

def test_skips_at_run_time():
    pytest.skip("no widget here")

@pytest.mark.xfail(strict=True, reason="a known bug")
def test_known_bug():
    assert False
"""
HAS_XDIST = importlib.util.find_spec("xdist") is not None
MODES = [[], ["-p", "xdist.plugin", "-n", "2"]] if HAS_XDIST else [[]]


def run_guarded(tmp_path, ci, extra):
    (tmp_path / "test_skipped_module.py").write_text(SKIPPED_MODULE)
    (tmp_path / "test_other.py").write_text(OTHER_TESTS)
    # No third-party plugin but the ones asked for: each start costs seconds otherwise.
    env = dict(os.environ, CI=ci, PYTHONPATH=str(TESTS), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "conftest", "-c", os.devnull,
                           "--rootdir", str(tmp_path), *extra, str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("extra", MODES, ids=lambda extra: "xdist" if extra else "serial")
def test_unexpected_skips_fail_the_run_in_ci(tmp_path, extra, record_property):
    record_property("tested_on", "the CI skip guard " + ("with and without pytest-xdist" if HAS_XDIST
                                                         else "without pytest-xdist (not installed)"))
    proc = run_guarded(tmp_path, "true", extra)
    out = proc.stdout + proc.stderr
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, out
    assert "CI=true: these skips fail the run" in out, out
    assert "test_skipped_module.py: no frobnicator here" in out, out
    assert "test_other.py::test_skips_at_run_time: no widget here" in out, out
    assert "test_known_bug" not in out.split("these skips fail the run")[1], out


def test_outside_ci_skips_only_warn(tmp_path):
    proc = run_guarded(tmp_path, "", [])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "under CI=true these skips would fail the run" in out, out
