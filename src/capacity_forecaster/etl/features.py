"""Forecasting features per (server_id, ds, metric): lags, past-only rolling statistics, calendar flags.

Rolling statistics for day t cover the ``w`` days t-w .. t-1: they never include the day itself, so a
model trained on them cannot peek at its own target. Lags and windows count calendar days over the
processed series (imputed values included; days left empty stay missing and are skipped, a window
needs at least half its days and at least two). Lag and rolling columns are float32 to keep the frame small.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.etl.calendar import DayCalendar

CALENDAR_COLUMNS = (
    "weekday", "month_of_year", "is_weekend", "is_month_end", "is_quarter_end", "is_year_end", "is_us_bank_holiday",
)


def feature_names(lags: tuple[int, ...], windows: tuple[int, ...]) -> list[str]:
    """Names of the lag and rolling columns, in output order."""
    names = [f"lag_{k}" for k in lags]
    for w in windows:
        names += [f"roll_mean_{w}", f"roll_std_{w}", f"roll_max_{w}"]
    return names


def _past_rolling(values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std and max over the ``window`` days before each day, per series.

    The series are laid end to end in one array, each preceded by ``window + 1`` empty days so that no
    window reaches into the previous series; one pandas rolling pass then covers them all.
    """
    n_series, n_days = values.shape
    pad = window + 1
    flat = np.full((n_series, pad + n_days), np.nan)
    flat[:, pad:] = values
    rolling = pd.Series(flat.ravel()).shift(1).rolling(window, min_periods=max(2, (window + 1) // 2))

    def grid(result: pd.Series) -> np.ndarray:
        return result.to_numpy().reshape(n_series, pad + n_days)[:, pad:]

    return grid(rolling.mean()), grid(rolling.std()), grid(rolling.max())


def series_features(
    values: np.ndarray, rows: np.ndarray, cols: np.ndarray, lags: tuple[int, ...], windows: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Lag and rolling features of the processed grid at the given cells.

    Args:
        values: processed (series x days) matrix (NaN where a day is left empty or outside a span).
        rows: series index of each output cell.
        cols: day index of each output cell.
        lags: lags in days.
        windows: rolling window lengths in days.

    Returns:
        Mapping of column name (see ``feature_names``) to a float32 array aligned with the cells.
    """
    out: dict[str, np.ndarray] = {}
    n_days = values.shape[1]
    for k in lags:
        src = cols - k
        ok = src >= 0
        lagged = values[rows, np.clip(src, 0, max(n_days - 1, 0))]
        out[f"lag_{k}"] = np.where(ok, lagged, np.nan).astype(np.float32)
    for w in windows:
        mean, std, peak = _past_rolling(values, w)
        out[f"roll_mean_{w}"] = mean[rows, cols].astype(np.float32)
        out[f"roll_std_{w}"] = std[rows, cols].astype(np.float32)
        out[f"roll_max_{w}"] = peak[rows, cols].astype(np.float32)
    return out


def calendar_features(cal: DayCalendar, cols: np.ndarray) -> dict[str, np.ndarray]:
    """Calendar flags at the given day indexes.

    Month, quarter and year ends are the last business day (not a weekend, not an NYSE holiday) of the
    period; ``is_us_bank_holiday`` is the NYSE holiday calendar (``holidays.financial_holidays("NYSE")``).

    Args:
        cal: calendar of the grid's days.
        cols: day index of each output cell.

    Returns:
        Mapping of ``CALENDAR_COLUMNS`` to arrays aligned with the cells (weekday Monday=0, month 1-12).
    """
    month = cal.dates.astype("datetime64[M]").astype(np.int64) % 12 + 1
    return {
        "weekday": cal.weekday.astype(np.int8)[cols],
        "month_of_year": month.astype(np.int8)[cols],
        "is_weekend": cal.is_weekend[cols],
        "is_month_end": cal.is_month_end[cols],
        "is_quarter_end": cal.is_quarter_end[cols],
        "is_year_end": cal.is_year_end[cols],
        "is_us_bank_holiday": cal.is_holiday[cols],
    }
