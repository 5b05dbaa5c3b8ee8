# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: the error types every module catches and reports."""

from __future__ import annotations


class PodnetError(Exception):
    """A failure to report to the user as one clear message (never a traceback).

    ``details`` carries structured extras (for example a list of validation errors)
    that a module returns beside ``msg``.
    """

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details
