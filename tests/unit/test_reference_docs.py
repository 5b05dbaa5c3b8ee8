# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/reference/ is what tools/gen_reference.py makes from the plugins' own documentation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "tools" / "gen_reference.py"


def _generate(output):
    return subprocess.run([sys.executable, str(GENERATOR), "--output", str(output)], cwd=REPO, check=False,
                          capture_output=True, text=True)


def test_reference_docs_are_up_to_date(tmp_path):
    """One generation (ansible-doc takes seconds): complete, and equal to the committed pages."""
    proc = _generate(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    generated = {p.name: p.read_text(encoding="utf-8") for p in tmp_path.glob("*.md")}
    modules = {f"{p.stem}_module.md" for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_")}
    filters = {f"{p.stem}_filter.md" for p in (REPO / "plugins" / "filter").glob("*.yml")}
    roles = {f"{p.parent.parent.name}_role.md" for p in (REPO / "roles").glob("*/meta/argument_specs.yml")}
    missing = sorted((modules | filters | roles | {"index.md"}) - set(generated))
    assert not missing, f"no reference page for {missing}"
    committed = REPO / "docs" / "reference"
    have = {p.name: p.read_text(encoding="utf-8") for p in committed.glob("*.md")}
    assert sorted(have) == sorted(generated), "docs/reference has other pages than generated: run python tools/gen_reference.py"
    stale = [name for name in sorted(generated) if have[name] != generated[name]]
    assert not stale, f"docs/reference is out of date ({', '.join(stale)}): run python tools/gen_reference.py"
