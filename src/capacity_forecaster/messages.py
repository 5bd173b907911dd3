"""Message text shared by every stage: a few examples of many."""

from __future__ import annotations

from collections.abc import Iterable, Sized
from itertools import islice


def examples(items: Iterable[str], limit: int = 3, sep: str = ", ", total: int | None = None) -> str:
    """The first ``limit`` of ``items`` joined by ``sep``, then how many more: ``a, b, c and 4 more``
    (``a; b; c; and 4 more`` with ``sep="; "``). Only the first ``limit`` items are taken from a generator when
    ``total`` (how many there are) is given, so a caller formats three of a million, not all of them."""
    iterator = iter(items)
    shown = list(islice(iterator, limit))
    if total is None:
        total = len(items) if isinstance(items, Sized) else len(shown) + sum(1 for _ in iterator)
    joint = ";" if sep.startswith(";") else ""  # "a, b and 3 more", "a; b; and 3 more"
    more = f"{joint} and {total - len(shown):,} more" if total > len(shown) else ""
    return sep.join(shown) + more
