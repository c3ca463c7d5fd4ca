"""Helpers for table-driven scenario tests (not a test module)."""

from __future__ import annotations

import copy
from typing import Any

DELETE = object()
"""A patch value that removes the key."""


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``patch`` merged in: nested tables merged, other values replaced,
    keys patched with :data:`DELETE` removed; ``base`` is not changed."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is DELETE:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
