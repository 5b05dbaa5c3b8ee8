"""Where the checkout is, and the one explicit step that makes the collection importable.

Importing this module (or any other of tests/lib) changes nothing. ``setup()`` does the
path setup that tests/conftest.py and the bench scripts need, and nothing else:

    sys.path.insert(0, "<checkout>/tests")
    from lib import paths
    paths.setup()                 # ansible_collections.virtnet.podnet importable from this checkout

The repository root is the collection root, so the collection is reached through a symlink
``.build/pytest-collections/ansible_collections/virtnet/podnet`` -> the checkout (Python and
ansible-playbook follow symlinks; ansible-test, which wants a real directory, gets its own).
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"
COLLECTIONS_ROOT = REPO_ROOT / ".build" / "pytest-collections"
STANDIN = REPO_ROOT / "playbooks" / "files" / "vm_standin.py"
MODULE_UTILS = "ansible_collections.virtnet.podnet.plugins.module_utils"


def ensure_collection_link() -> Path:
    """``COLLECTIONS_ROOT/ansible_collections/virtnet/podnet`` -> the checkout; atomic, idempotent."""
    link = COLLECTIONS_ROOT / "ansible_collections" / "virtnet" / "podnet"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == REPO_ROOT:
        return link
    tmp = link.with_name(f".podnet.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(REPO_ROOT, link.parent))  # relative: the checkout may move
    os.replace(tmp, link)  # atomic: concurrent runs never see a missing link
    return link


def collections_root() -> Path:
    """The directory holding ``ansible_collections/virtnet/podnet`` for this checkout: the real tree
    when the checkout already sits in one (ansible-test), else COLLECTIONS_ROOT with its link."""
    if "ansible_collections" in REPO_ROOT.parts:
        parts = REPO_ROOT.parts
        return Path(*parts[:len(parts) - 1 - parts[::-1].index("ansible_collections")])
    ensure_collection_link()
    return COLLECTIONS_ROOT


def setup() -> None:
    """Make ``lib.*`` and ``ansible_collections.virtnet.podnet`` importable; default ANSIBLE_COLLECTIONS_PATH.

    Under ansible-test the checkout already sits in a real ansible_collections tree: no link then.
    """
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    if "ansible_collections" in REPO_ROOT.parts:
        return
    root = collections_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    os.environ.setdefault("ANSIBLE_COLLECTIONS_PATH", str(root))


def module_utils(name: str):
    """``ansible_collections.virtnet.podnet.plugins.module_utils.<name>``, with a clear error before ``setup()``."""
    try:
        return importlib.import_module(f"{MODULE_UTILS}.{name}")
    except ModuleNotFoundError as exc:
        if not exc.name or not exc.name.startswith("ansible_collections"):
            raise
        raise ModuleNotFoundError(f"{MODULE_UTILS}.{name} is not importable: call lib.paths.setup() first "
                                  "(tests/conftest.py does)", name=exc.name) from exc
