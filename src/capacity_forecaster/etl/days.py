"""Local calendar days of UTC times: day numbers, the UTC instant each day starts, day lengths."""

from __future__ import annotations

import numpy as np
import pandas as pd

DAY_NS = 86_400 * 1_000_000_000
DAY_SECONDS = 86_400.0


def latest_plausible_day() -> pd.Timestamp:
    """Tomorrow (UTC midnight, naive): no observed day after it is real (a day's grace for time zones).

    The ETL warns about servers with data after it; the risk stage never takes the fleet's latest day
    after it.
    """
    return pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() + pd.Timedelta(days=1)


def local_days(ts: np.ndarray, timezone: str) -> np.ndarray:
    """Calendar day (days since 1970-01-01) of each UTC nanosecond time in ``timezone``."""
    if timezone == "UTC":
        return ts // DAY_NS
    wall = pd.DatetimeIndex(pd.to_datetime(ts, utc=True)).tz_convert(timezone).tz_localize(None)
    return wall.asi8 // DAY_NS


def day_starts(days: np.ndarray, timezone: str) -> np.ndarray:
    """UTC nanoseconds at which each local calendar day (days since 1970-01-01) begins."""
    days = np.asarray(days, dtype=np.int64)
    if timezone == "UTC" or len(days) == 0:
        return days * DAY_NS
    unique, inverse = np.unique(days, return_inverse=True)
    midnight = pd.DatetimeIndex((unique * DAY_NS).view("datetime64[ns]")).tz_localize(
        timezone, ambiguous=np.ones(len(unique), dtype=bool), nonexistent="shift_forward")
    return midnight.asi8[inverse]


def day_lengths(days: np.ndarray, timezone: str) -> np.ndarray:
    """Length in seconds of each local calendar day (23 or 25 h on DST changes)."""
    if timezone == "UTC" or len(days) == 0:
        return np.full(len(days), DAY_SECONDS)
    return (day_starts(np.asarray(days) + 1, timezone) - day_starts(days, timezone)) / 1e9
