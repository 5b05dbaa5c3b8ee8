# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the module_utils unit tests."""

from __future__ import annotations

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _dhcp_responder as dr


@pytest.fixture
def responder(tmp_path):
    """An in-process podnet-dhcpd on a fresh run dir (no socket open until a test declares a pod)."""
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("0123456789abcdef0123456789abcdef\n")
    r = dr.Responder(str(tmp_path / "run"), machine_id=str(machine_id))
    yield r
    r.close()
