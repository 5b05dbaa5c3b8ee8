# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Install a pure-Python wheel into the running interpreter's purelib, without pip.

    python install_pure_wheel.py WHEEL

Run by the node role with the venv's interpreter (a venv made ``--without-pip``: Debian's
python3 has no ensurepip without python3-venv). For a wheel whose WHEEL file says
``Root-Is-Purelib: true`` and which carries no ``.data`` directory, installing is unpacking
it into purelib (the wheel format's own install step; scripts and data are what pip would add,
and such a wheel has none). What an earlier install of the project made (its RECORD's top-level
entries) is removed first, so an upgrade leaves no stale module behind. Standard library only.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
import zipfile


def _installed_tops(site: str, project: str) -> set:
    """The top-level entries an earlier install of ``project`` made (its dist-info's RECORD)."""
    tops = set()
    for entry in os.listdir(site):
        if entry.startswith(f"{project}-") and entry.endswith(".dist-info"):
            tops.add(entry)
            try:
                with open(os.path.join(site, entry, "RECORD"), encoding="utf-8") as record:
                    tops.update(line.split(",", 1)[0].split("/")[0] for line in record if line.strip())
            except OSError:
                pass
    return {top for top in tops if top and top not in (".", "..") and not top.startswith("/")}


def install(wheel: str) -> str:
    name = os.path.basename(wheel)
    project, version = name.split("-")[:2]
    site = sysconfig.get_path("purelib")
    with zipfile.ZipFile(wheel) as archive:
        members = archive.namelist()
        info = f"{project}-{version}.dist-info/"
        if f"{info}WHEEL" not in members:
            raise SystemExit(f"{name}: no {info}WHEEL, not a wheel")
        meta = archive.read(f"{info}WHEEL").decode("utf-8")
        if "Root-Is-Purelib: true" not in meta:
            raise SystemExit(f"{name}: not a pure-Python wheel (Root-Is-Purelib is not true)")
        if any(m.startswith(f"{project}-{version}.data/") for m in members):
            raise SystemExit(f"{name}: has a .data directory, which needs pip")
        for member in members:
            if member.startswith("/") or ".." in member.split("/"):
                raise SystemExit(f"{name}: unsafe path {member!r}")
        for top in sorted(_installed_tops(site, project) | {m.split("/")[0] for m in members}):
            path = os.path.join(site, top)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.unlink(path)
        archive.extractall(site)
    return site


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(install(sys.argv[1]))
