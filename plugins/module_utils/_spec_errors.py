# -*- coding: utf-8 -*-
# Copyright: virtnet.podnet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Private to this collection: how VM spec validation reports a violation, shared by ``_spec`` and ``_dhcp_options``.

A ``SpecError`` names the field's path, the problem and what is allowed there; ``describe`` and the text
helpers keep values and keys short and safe in those messages, whatever their type.
"""

from __future__ import annotations

from collections.abc import Mapping


class SpecError:
    """One violation: where it is, what is wrong, and what is allowed there."""

    __slots__ = ("path", "problem", "allowed")

    def __init__(self, path, problem, allowed=None):
        self.path = path
        self.problem = problem
        self.allowed = allowed

    def __str__(self):
        text = f"{self.path}: {self.problem}"
        return f"{text} (allowed: {self.allowed})" if self.allowed else text

    def as_dict(self):
        return {"path": self.path, "msg": self.problem, "allowed": self.allowed}


def describe(value):
    """A short, safe description of a value of any type for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {shorten(value)!r}"
    if isinstance(value, (int, float)):
        return f"number {number_text(value)}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a value of type {type(value).__name__}"


def shorten(text, limit=40):
    """``text`` cut to ``limit`` characters, "..." marking the cut."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def number_text(value):
    """A number as a message shows it, bounded."""
    # Python refuses to print ints of more than 4300 digits; nobody wants to read them anyway.
    if isinstance(value, int) and value.bit_length() > 128:
        return f"({value.bit_length()}-bit integer)"
    return shorten(repr(value))


def key_text(key):
    """A mapping key as it appears in a path, bounded so messages stay short."""
    if isinstance(key, str):
        return shorten(key)
    return number_text(key) if isinstance(key, (int, float)) else shorten(repr(key))


def names_text(keys):
    """The allowed names, sorted, as a message lists them."""
    return ", ".join(sorted(keys))
