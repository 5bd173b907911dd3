"""Message text shared by every stage: a few examples of many."""

from __future__ import annotations

from collections.abc import Iterable


def examples(items: Iterable[str], limit: int = 3, sep: str = ", ") -> str:
    """The first ``limit`` of ``items`` joined by ``sep``, then how many more: ``a, b, c and 4 more``
    (``a; b; c; and 4 more`` with ``sep="; "``)."""
    items = list(items)
    joint = ";" if sep.startswith(";") else ""  # "a, b and 3 more", "a; b; and 3 more"
    more = f"{joint} and {len(items) - limit:,} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more
