"""The risk table paged, sorted and filtered on the server (Dash DataTable's custom actions): one page per answer."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.report.dashboard_guard import BadInput, shorten

log = logging.getLogger(__name__)

# Characters of a filter query and terms in it the server accepts (the table's filter row makes a few dozen).
MAX_QUERY_CHARS = 2_000
MAX_TERMS = 32
# The DataTable's relational operators, by the name its filter row writes, each with an optional i/s
# (case-insensitive / -sensitive) prefix; the symbols are the same operators.
_OPERATORS = {"contains": "contains", "datestartswith": "datestartswith", "eq": "eq", "=": "eq", "ne": "ne",
              "!=": "ne", "lt": "lt", "<": "lt", "le": "le", "<=": "le", "gt": "gt", ">": "gt", "ge": "ge",
              ">=": "ge"}
_TERM = re.compile(r"^\s*\{(?P<column>[^{}]+)\}\s*(?P<op>[is]?(?:contains|datestartswith|eq|ne|lt|le|gt|ge|"
                   r"<=|>=|!=|=|<|>))\s*(?P<value>.*?)\s*$", re.DOTALL)


@dataclass(frozen=True)
class Term:
    """One ``{column} operator value`` of a filter query."""

    column: str
    op: str
    value: str | float
    case: bool = True  # case-sensitive (the table's default; an ``i`` prefix turns it off)


def parse_filter(query: Any, columns: Collection[str]) -> list[Term]:
    """The terms of a DataTable ``filter_query`` (``{col} op value`` joined by ``&&``) over ``columns``.

    A term the table's filter row would not write (no ``{column}``, an unknown column or operator) is left
    out, as the native filter ignores an invalid one.

    Raises:
        BadInput: not a string, or too long or too many terms.
    """
    if query is None or query == "":
        return []
    if not isinstance(query, str) or len(query) > MAX_QUERY_CHARS:
        raise BadInput(f"filter_query must be a text of at most {MAX_QUERY_CHARS} characters, got {shorten(query)}")
    parts = query.split(" && ")
    if len(parts) > MAX_TERMS:
        raise BadInput(f"filter_query may have at most {MAX_TERMS} terms, got {len(parts)}")
    terms = []
    for part in parts:
        found = _TERM.match(part)
        if found is None or found["column"] not in columns:
            log.debug("dashboard: filter term ignored: %s", shorten(part))
            continue
        op = found["op"]
        case = not op.startswith("i")
        name = op[1:] if op[:1] in ("i", "s") and op[1:] in _OPERATORS else op
        terms.append(Term(found["column"], _OPERATORS[name], _value(found["value"]), case))
    return terms


def _value(text: str) -> str | float:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        return text[1:-1].replace("\\" + text[0], text[0])
    try:
        number = float(text)
    except ValueError:
        return text
    return number if math.isfinite(number) else text


def apply_filter(frame: pd.DataFrame, terms: list[Term], numeric: Collection[str]) -> pd.DataFrame:
    """The rows of ``frame`` every term holds for (numeric columns compare as numbers, others as text)."""
    keep = np.ones(len(frame), dtype=bool)
    for term in terms:
        column = frame[term.column]
        if term.column in numeric and term.op not in ("contains", "datestartswith"):
            if not isinstance(term.value, float):
                keep &= False
                continue
            values = pd.to_numeric(column, errors="coerce").to_numpy(float)
            with np.errstate(invalid="ignore"):
                keep &= _compare(values, term.op, term.value) & ~np.isnan(values)
            continue
        text = column.astype(object).where(column.notna(), "").astype(str)
        wanted = _text(term.value)
        if not term.case:
            text, wanted = text.str.lower(), wanted.lower()
        if term.op == "contains":
            keep &= text.str.contains(wanted, regex=False).to_numpy(bool)
        elif term.op == "datestartswith":
            keep &= text.str.startswith(wanted).to_numpy(bool)
        else:
            keep &= _compare(text.to_numpy(object), term.op, wanted) & column.notna().to_numpy(bool)
    return frame[keep]


def _text(value: str | float) -> str:
    return f"{value:g}" if isinstance(value, float) else value


def _compare(values: np.ndarray, op: str, wanted: Any) -> np.ndarray:
    result = {"eq": values == wanted, "ne": values != wanted, "lt": values < wanted, "le": values <= wanted,
              "gt": values > wanted, "ge": values >= wanted}[op]
    return np.asarray(result, dtype=bool)


# The hidden column a shown column sorts by, where its text does not sort as it reads (a risk level by
# severity, a breach cell such as "now" or "likely by 2026-08-14" by its date): ``SORT_KEY + column``.
SORT_KEY = "_sort_"


def apply_sort(frame: pd.DataFrame, sort_by: Any, columns: Collection[str]) -> pd.DataFrame:
    """``frame`` sorted by a DataTable ``sort_by`` (``[{"column_id": c, "direction": "asc"|"desc"}]``), blanks last.

    A column with a ``SORT_KEY`` twin in ``frame`` sorts by the twin.

    Raises:
        BadInput: not a list of such objects over ``columns``.
    """
    if not sort_by:
        return frame
    if not isinstance(sort_by, list) or len(sort_by) > len(columns):
        raise BadInput(f"sort_by must be a list of columns to sort by, got {shorten(sort_by)}")
    keys, ascending = [], []
    for item in sort_by:
        if not isinstance(item, dict) or item.get("column_id") not in columns or \
                item.get("direction") not in ("asc", "desc"):
            raise BadInput(f"sort_by items must name a column and asc or desc, got {shorten(item)}")
        twin = SORT_KEY + item["column_id"]
        keys.append(twin if twin in frame.columns else item["column_id"])
        ascending.append(item["direction"] == "asc")
    return frame.sort_values(keys, ascending=ascending, kind="stable", na_position="last")


def page_of(frame: pd.DataFrame, page: Any, size: int) -> tuple[pd.DataFrame, int]:
    """Rows of page ``page`` (from 0; past the last: the last) and the page count (at least 1).

    Raises:
        BadInput: ``page`` is not a whole number >= 0.
    """
    if page is None:
        page = 0
    if isinstance(page, bool) or not isinstance(page, int) or page < 0:
        raise BadInput(f"page_current must be a whole number >= 0, got {shorten(page)}")
    count = max(1, math.ceil(len(frame) / size))
    start = min(page, count - 1) * size
    return frame.iloc[start: start + size], count


def served_page(frame: pd.DataFrame, page: Any, sort_by: Any, filter_query: Any, numeric: Collection[str],
                size: int, columns: Collection[str] | None = None) -> tuple[pd.DataFrame, int]:
    """One page of ``frame`` after the DataTable's filter and sort, and the page count (custom actions).

    Args:
        frame: every row of the table, in its default order, with the table's columns.
        page: ``page_current`` (from 0).
        sort_by: ``sort_by`` (empty: the default order).
        filter_query: ``filter_query`` (``{column} op value`` terms joined by ``&&``).
        numeric: columns compared as numbers.
        size: rows per page.
        columns: the columns a filter or sort may name (default: every column of ``frame`` but the
            ``SORT_KEY`` ones, which sort their twins and are not served).

    Raises:
        BadInput: a malformed page, sort or filter (answered with 400).
    """
    columns = set(frame.columns if columns is None else columns) - {c for c in frame.columns if c.startswith(SORT_KEY)}
    shown = apply_sort(apply_filter(frame, parse_filter(filter_query, columns), numeric), sort_by, columns)
    rows, count = page_of(shown, page, size)
    return rows.drop(columns=[c for c in rows.columns if c.startswith(SORT_KEY)]), count
