"""Human-readable cells for ``capfc sql --format table``: dates as dates, rounded floats, empty nulls.

Rules, per column (csv and json output keep full precision and are not touched):

- timestamps print as ``YYYY-MM-DD`` when every value of the column is at midnight, else as
  ``YYYY-MM-DD HH:MM:SS`` (with the UTC offset, ``+00:00``, for zone-aware columns);
- floats share one number of decimals per column: none when every value is whole, else enough for 4
  significant digits of the column's largest absolute value, between 0 and 6 (a column of
  percentages reaching 10-100 gets 2 decimals, shares below 1 get 4); thousands are separated by
  commas;
- nulls (``None``, ``NaN``, ``NaT``, ``<NA>``) print as empty cells.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd

SIGNIFICANT = 4
MAX_DECIMALS = 6


def float_decimals(values: pd.Series) -> int:
    """Decimals giving ``SIGNIFICANT`` digits to the largest absolute finite value (0 to ``MAX_DECIMALS``)."""
    finite = values[np.isfinite(values)]
    largest = float(np.abs(finite).max()) if len(finite) else 0.0
    if len(finite) and bool((finite == np.round(finite)).all()):
        return 0  # whole numbers (a SUM or COUNT DuckDB returns as a float): "76", not "76.00"
    if largest == 0.0:
        return 2
    return int(min(MAX_DECIMALS, max(0, SIGNIFICANT - 1 - math.floor(math.log10(largest)))))


def _timestamps(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values, errors="coerce")
    known = stamps.dropna()
    midnight = known.empty or bool((known == known.dt.normalize()).all())
    if midnight:
        pattern = "%Y-%m-%d"
    else:
        pattern = "%Y-%m-%d %H:%M:%S%z" if getattr(stamps.dt, "tz", None) is not None else "%Y-%m-%d %H:%M:%S"
    shown = stamps.dt.strftime(pattern).str.replace(r"([+-]\d\d)(\d\d)$", r"\1:\2", regex=True)
    return shown.where(stamps.notna(), "")


def _is_dates(values: pd.Series) -> bool:
    """An object column holding only ``datetime.date``/``datetime`` values (DuckDB DATE may come back so)."""
    known = values.dropna()
    return not known.empty and all(isinstance(v, dt.date) for v in known.head(100))


def format_column(values: pd.Series) -> pd.Series:
    """The column as display strings (see the module docstring for the rules)."""
    if pd.api.types.is_datetime64_any_dtype(values) or (values.dtype == object and _is_dates(values)):
        return _timestamps(values)
    if pd.api.types.is_float_dtype(values):
        numbers = pd.Series(values.to_numpy(dtype="float64", na_value=np.nan), index=values.index)
        decimals = float_decimals(numbers)
        shown = pd.Series([f"{v:,.{decimals}f}" for v in numbers.fillna(0.0)], index=values.index)
        return shown.where(numbers.notna(), "")
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_integer_dtype(values):
        return values.astype("string").fillna("")
    shown = values.astype("string")
    return shown.where(values.notna(), "").fillna("")


def format_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Every column as display strings; the input frame is not modified.

    Returns:
        A frame of the same columns and index, all values ``str``.
    """
    return pd.DataFrame({column: format_column(frame[column]) for column in frame.columns}, index=frame.index)


def is_numeric(values: pd.Series) -> bool:
    """Right-justify numbers (not booleans) in a table."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
