# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the checkout importable for the benchmarks: ``import _paths`` first in a bench/ script.

The repository root is the collection root. This puts on ``sys.path``:

- a directory holding ``ansible_collections/virtnet/podnet``: the real tree when the checkout
  already sits in one, else a relative symlink to the checkout under ``.build/bench-collections``
  (made here when missing; .build/ is not committed). ``ANSIBLE_COLLECTIONS_PATH`` points there
  too, so the benchmarks' ``ansible-playbook`` runs find the same code;
- ``tests/``, for the lab of namespaces (``lib.netlab``) only. Nothing of tests' conftest runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
DOCS = REPO / "docs"


def _collections_root() -> Path:
    if "ansible_collections" in REPO.parts:
        parts = REPO.parts
        return Path(*parts[:len(parts) - 1 - parts[::-1].index("ansible_collections")])
    root = REPO / ".build" / "bench-collections"
    link = root / "ansible_collections" / "virtnet" / "podnet"
    if not (link.is_symlink() and link.resolve() == REPO):
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".podnet.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(REPO, link.parent))
        os.replace(tmp, link)  # atomic: concurrent runs never see a missing link
    return root


COLLECTIONS_ROOT = _collections_root()
for _entry in (str(REPO / "tests"), str(COLLECTIONS_ROOT)):
    if _entry not in sys.path:
        sys.path.insert(0, _entry)
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS_ROOT)  # this checkout, not an installed copy
