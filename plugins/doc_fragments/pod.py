# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # What every module working inside a pod's network namespace shares.
    DOCUMENTATION = r"""
options:
  run_dir:
    description:
      - Directory of the state cache, the per-pod locks, the lease declarations and the lease state.
      - Must be the same for every module and for the node's DHCP responder.
    type: path
    default: /run/virtnet-podnet
requirements:
  - pyroute2 >= 0.9
  - root on the node (CAP_NET_ADMIN, and CAP_SYS_ADMIN to enter the namespace)
attributes:
  platform:
    support: full
    platforms: posix
    description: Linux nodes only.
"""
