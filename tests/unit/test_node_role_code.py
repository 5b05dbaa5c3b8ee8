# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The node role installs podnet-dhcpd's own code - every module it imports, and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "ansible_collections.virtnet.podnet.plugins.module_utils"
ENTRY_POINTS = ("_dhcp_responder", "_responder_control")  # the daemon, and --ensure-daemon's spawner


def import_closure():
    """The collection modules a fresh interpreter loads for the responder (no pyroute2 among them)."""
    code = ("import json, sys\nfrom lib import paths\npaths.setup()\n"
            + "".join(f"import {PACKAGE}.{name}\n" for name in ENTRY_POINTS)
            + f"print(json.dumps(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('{PACKAGE}.'))))\n"
            + "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'ansible')\n"
            + "                        or m in ('_hashlib', 'logging.handlers'))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO / "tests", check=True, capture_output=True,
                         text=True).stdout.splitlines()
    return json.loads(out[0]), json.loads(out[1])


def test_the_role_installs_exactly_the_responders_import_closure():
    listed = yaml.safe_load((REPO / "roles" / "node" / "vars" / "main.yml").read_text())["node_code_modules"]
    closure, third_party = import_closure()
    assert "_dhcp_responder" in closure and len(closure) > 5
    assert listed == closure, "roles/node/vars/main.yml node_code_modules must list what the responder imports"
    # Nor OpenSSL (_hashlib, ~4 MB of RSS) nor logging.handlers (~3.4 MB): measured, see _digest.
    assert third_party == [], "the responder needs nothing outside the standard library and its own modules"
    everything = sorted(p.stem for p in (REPO / "plugins" / "module_utils").glob("_*.py"))
    assert set(closure) < set(everything), "the module side's own code stays on the controller"


def test_the_builtin_sha256_is_hashlibs():
    import hashlib

    from ansible_collections.virtnet.podnet.plugins.module_utils._digest import sha256
    for data in (b"", b"podnet", bytes(range(256)) * 9):
        assert sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
