# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: SHA-256 without OpenSSL.

``hashlib`` loads OpenSSL (``_hashlib``): ~4 MB of the responder's resident memory, measured,
for three short digests (the DHCPv6 server DUID, long state keys, generated MACs). CPython's own
implementation gives the same digest: ``_sha2`` from 3.12, ``_sha256`` before.
"""

from __future__ import annotations

try:
    from _sha2 import sha256 as _sha256  # Python 3.12+
except ImportError:  # pragma: no cover - depends on the Python
    try:
        from _sha256 import sha256 as _sha256  # Python 3.9-3.11
    except ImportError:  # a build without the builtin hashes
        from hashlib import sha256 as _sha256


def sha256(data: bytes):
    """A ``hashlib.sha256`` object of ``data`` (``digest()``, ``hexdigest()``)."""
    return _sha256(data)
