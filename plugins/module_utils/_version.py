# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: its version, for code that runs without it (podnet-dhcpd on a node).

Kept equal to galaxy.yml's ``version`` (test_dhcp_responder_loop.py checks).
"""

from __future__ import annotations

VERSION = "0.2.0"
