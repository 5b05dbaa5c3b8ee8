# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""roles/node/files/install_pure_wheel.py: the node role's pip-less install of the pyroute2 wheel.

Synthetic wheels (zip files with a dist-info) installed into a temporary purelib: an install,
an upgrade that leaves nothing of the old version behind, and the wheels it must refuse.
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "roles" / "node" / "files" / "install_pure_wheel.py"


@pytest.fixture
def installer(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("podnet_install_pure_wheel", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.setattr(module.sysconfig, "get_path", lambda name: str(site))
    return module, site


def make_wheel(directory, version, files, purelib=True, extra=None):
    """pyroute2-<version>-py3-none-any.whl with ``files`` ({path: text}) and a RECORD of them."""
    info = f"pyroute2-{version}.dist-info"
    path = Path(directory) / f"pyroute2-{version}-py3-none-any.whl"
    members = dict(files)
    members[f"{info}/WHEEL"] = f"Wheel-Version: 1.0\nRoot-Is-Purelib: {'true' if purelib else 'false'}\n"
    members[f"{info}/METADATA"] = f"Name: pyroute2\nVersion: {version}\n"
    members.update(extra or {})
    members[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*members, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return str(path)


def test_installs_then_upgrades_leaving_nothing_of_the_old_version(installer, tmp_path):
    module, site = installer
    old = make_wheel(tmp_path, "0.9.6", {"pyroute2/__init__.py": "v = 1\n", "pyroute2/gone.py": "", "pr2old/x.py": ""})
    assert module.install(old) == str(site)
    assert (site / "pyroute2" / "gone.py").exists() and (site / "pr2old" / "x.py").exists()
    new = make_wheel(tmp_path, "0.9.7", {"pyroute2/__init__.py": "v = 2\n"})
    module.install(new)
    assert (site / "pyroute2" / "__init__.py").read_text() == "v = 2\n"
    # The old version's modules, top-level packages and dist-info are gone (its RECORD named them).
    assert not (site / "pyroute2" / "gone.py").exists()
    assert not (site / "pr2old").exists()
    assert sorted(p.name for p in site.iterdir()) == ["pyroute2", "pyroute2-0.9.7.dist-info"]
    module.install(new)  # again: the same tree
    assert sorted(p.name for p in site.iterdir()) == ["pyroute2", "pyroute2-0.9.7.dist-info"]


@pytest.mark.parametrize("case, message", [
    ("platlib", "not a pure-Python wheel"),
    ("data", "has a .data directory"),
    ("traversal", "unsafe path"),
    ("no_wheel_file", "not a wheel"),
])
def test_refuses_what_needs_pip_or_escapes_purelib(installer, tmp_path, case, message):
    module, site = installer
    if case == "no_wheel_file":
        wheel = str(tmp_path / "pyroute2-0.9.7-py3-none-any.whl")
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("pyroute2/__init__.py", "")
    else:
        wheel = make_wheel(tmp_path, "0.9.7", {"pyroute2/__init__.py": ""}, purelib=case != "platlib",
                           extra={"data": {"pyroute2-0.9.7.data/scripts/x": ""},
                                  "traversal": {"pyroute2/../../escape.py": ""}}.get(case))
    with pytest.raises(SystemExit, match=message):
        module.install(wheel)
    assert list(site.iterdir()) == []  # nothing written
    assert not (tmp_path / "escape.py").exists()
