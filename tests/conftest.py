"""Make the checkout importable as ``ansible_collections.virtnet.podnet`` (and tests/lib as ``lib``).

The path setup itself lives in tests/lib/paths.py (``setup()``), which the bench scripts
call too; importing any module of tests/lib has no side effect.
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from lib import paths  # noqa: E402

paths.setup()
REPO_ROOT = paths.REPO_ROOT
COLLECTIONS_ROOT = paths.COLLECTIONS_ROOT
