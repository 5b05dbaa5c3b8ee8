"""Make the checkout importable as ``ansible_collections.virtnet.podnet``.

The repository root is the collection root, so tests reach it through a symlinked
``ansible_collections/virtnet/podnet`` under ``.build/`` (Python and ansible-playbook
follow symlinks; only ansible-test insists on a real directory, which the Makefile
provides separately).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS_ROOT = REPO_ROOT / ".build" / "pytest-collections"


def _ensure_collection_link() -> None:
    link = COLLECTIONS_ROOT / "ansible_collections" / "virtnet" / "podnet"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == REPO_ROOT:
        return
    tmp = link.with_name(f".podnet.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(REPO_ROOT)
    os.replace(tmp, link)  # atomic: concurrent pytest runs never see a missing link


# ansible-test runs the unit tests from a real ansible_collections tree already.
if "ansible_collections" not in REPO_ROOT.parts:
    _ensure_collection_link()
    sys.path.insert(0, str(COLLECTIONS_ROOT))
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(COLLECTIONS_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))
