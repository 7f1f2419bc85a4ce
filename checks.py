"""Argument checks shared by every module: one message format for a value a constructor refuses.

jsonargparse checks types from the signatures; these check what a type cannot say (a lower bound, a list that
must not be empty). The CLI turns the ``ValueError`` into one ``error:`` line before anything runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_int(name: str, value: Any, low: int, none_ok: bool = False) -> None:
    """Refuse ``value`` unless it is an int (not a bool) >= ``low`` (or None, with ``none_ok``)."""
    if value is None and none_ok:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}{' or null' if none_ok else ''}, got {value!r}")


def check_ints(prefix: str, low: int, **values: Any) -> None:
    """``check_int`` for several values named ``prefix + key``."""
    for key, value in values.items():
        check_int(f"{prefix}{key}", value, low)


def positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    """``values`` as a tuple of ints, refused unless non-empty and all >= 1 (widths, shapes)."""
    values = tuple(int(v) for v in values)
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{name} must be a non-empty list of integers >= 1, got {list(values)}")
    return values
