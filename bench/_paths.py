# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the checkout importable for the benchmarks: ``import _paths`` first in a bench/ script.

The same explicit step the tests take (``tests/lib/paths.py``; nothing of tests' conftest
runs): ``ansible_collections.virtnet.podnet`` and ``lib.*`` become importable, and
``ANSIBLE_COLLECTIONS_PATH`` points at this checkout, so the benchmarks' ``ansible-playbook``
runs use the same code and never an installed copy.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
DOCS = REPO / "docs"

if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))
from lib import paths  # noqa: E402  # pylint: disable=wrong-import-position

paths.setup()
COLLECTIONS_ROOT = paths.collections_root()
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS_ROOT)  # this checkout, not an installed copy
