# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_pod_bridge: the runners' entry points and the crash hooks, without a pod."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_bridge as pb
from ansible_collections.virtnet.podnet.plugins.module_utils._errors import PodnetError


def test_run_rejects_unknown_state():
    with pytest.raises(PodnetError, match="state"):
        pb.run({"state": "plumbed"})


def test_crash_hook_exits_right_after_the_named_step():
    code = ("import sys; sys.path[:0] = {path!r}; "
            "from ansible_collections.virtnet.podnet.plugins.module_utils import _pod_bridge as pb; "
            "pb.step_done('bridge'); print('survived bridge'); pb.step_done('tap'); print('not reached')")
    proc = subprocess.run([sys.executable, "-c", code.format(path=sys.path)], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, VIRTNET_PODNET_CRASH_AFTER="tap"), check=False)
    assert proc.returncode == pb.CRASH_EXIT_CODE
    assert proc.stdout.strip() == "survived bridge"
