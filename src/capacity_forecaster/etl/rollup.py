"""Daily roll-up of sub-daily samples: duplicate times removed, then P95, count, mean, max and coverage."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from capacity_forecaster.errors import SchemaError
from capacity_forecaster.etl.days import DAY_NS, DAY_SECONDS, day_lengths, local_days
from capacity_forecaster.etl.runs import split_runs, weighted_daily
from capacity_forecaster.schema import METRICS

logger = logging.getLogger(__name__)

__all__ = ["DAILY_COLUMNS", "DAY_NS", "DAY_SECONDS", "Duplicates", "Samples", "day_lengths", "empty_daily",
           "local_days", "rollup_daily", "rollup_frame", "series_intervals", "sort_and_dedupe"]
DAILY_COLUMNS = ("server_id", "ds", "metric", "value", "samples", "value_mean", "value_max",
                 "coverage", "low_coverage")


@dataclass(frozen=True)
class Samples:
    """Accepted sample values, one entry each, in source order.

    Attributes:
        server: int32 codes into the ingest's server names.
        metric: int8 codes into schema.METRICS.
        ts: int64 UTC nanoseconds.
        value: float64 values in percent.
        row: int64 id of the source row (increasing in the order sources were read).
        weight: float64 samples each entry stands for (run-length rows), or None when every entry is
            one sample.
    """

    server: np.ndarray
    metric: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    row: np.ndarray
    weight: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.value)

    def take(self, index: np.ndarray) -> Samples:
        """The samples at ``index``."""
        return Samples(self.server[index], self.metric[index], self.ts[index], self.value[index],
                       self.row[index], None if self.weight is None else self.weight[index])


@dataclass(frozen=True)
class Duplicates:
    """Samples repeating the (server, metric, time) of an earlier one.

    Attributes:
        position: index into the samples of each repeat.
        first: index of the earlier sample it repeats (the one kept).
    """

    position: np.ndarray
    first: np.ndarray


def _series_order(series: np.ndarray, ts: np.ndarray) -> np.ndarray | None:
    """Stable order by (series, time), or None when the input is already in that order."""
    if len(series) < 2:
        return None
    step = np.diff(series)
    if (step >= 0).all() and ((step > 0) | (np.diff(ts) >= 0)).all():
        return None
    order = np.argsort(series, kind="stable")
    s, t = series[order], ts[order]
    if np.any((s[1:] == s[:-1]) & (t[1:] < t[:-1])):
        order = np.lexsort((ts, series))
    return order


def _series(samples: Samples) -> np.ndarray:
    return samples.server.astype(np.int64) * len(METRICS) + samples.metric


def sort_and_dedupe(samples: Samples) -> tuple[Samples, Duplicates]:
    """Sort samples by (server, metric, time) and drop repeated times, keeping the first one read.

    Args:
        samples: the accepted samples in source order.

    Returns:
        (kept samples sorted by server, metric, time; the duplicates, as positions in ``samples``).
    """
    series = _series(samples)
    order = _series_order(series, samples.ts)
    if order is None:
        order = np.arange(len(series))
        s, t = series, samples.ts
    else:
        s, t = series[order], samples.ts[order]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = (s[1:] == s[:-1]) & (t[1:] == t[:-1])
    # The first of a run of equal times is the nearest earlier position that is not a repeat.
    starts = np.where(~repeat, np.arange(len(order)), 0)
    first_sorted = np.maximum.accumulate(starts) if len(order) else starts
    duplicates = Duplicates(order[repeat], order[first_sorted[repeat]])
    if not repeat.any() and np.array_equal(order, np.arange(len(order))):
        return samples, duplicates
    return samples.take(order[~repeat]), duplicates


# Spacings under this share of a series' 75th-percentile spacing are a second sample of the same slot (two
# collectors seconds apart), not the sampling interval.
PAIRED_SPACING = 0.25


def series_intervals(series: np.ndarray, ts: np.ndarray) -> pd.Series:
    """Median spacing in seconds between consecutive samples of each series (sorted input, no repeats).

    Spacings shorter than ``PAIRED_SPACING`` of the series' 75th-percentile spacing are left out: two exports
    of one server a few seconds out of phase alternate 7 s and 293 s, whose median (7 s) made every day read
    4 % coverage; the interval is the 293-300 s between slots, and such days read coverage 2 (and are warned
    about). Regular sampling, with or without gaps, is unchanged.
    """
    same = series[1:] == series[:-1]
    key = series[1:][same]
    gaps = pd.Series((ts[1:] - ts[:-1])[same] / 1e9)
    reference = gaps.groupby(key).quantile(0.75)
    floor = reference.reindex(key).to_numpy() * PAIRED_SPACING
    slots = gaps.to_numpy() >= floor
    return gaps[slots].groupby(key[slots]).median()


def _aggregate(group_series: np.ndarray, group_day: np.ndarray, value: np.ndarray, q: float) -> dict:
    table = pa.table({"s": group_series, "d": group_day, "v": value})
    # A cursor of DuckDB's default in-memory database: its own connection (registrations stay
    # private to it) without the ~70 ms cost of starting a new database.
    with duckdb.default_connection().cursor() as con:
        con.register("ingest_samples", table)
        return con.execute(
            "SELECT s, d, quantile_cont(v, ?) AS p, count(*) AS n, avg(v) AS mean, max(v) AS mx "
            "FROM ingest_samples GROUP BY s, d ORDER BY s, d", [q]
        ).fetchnumpy()


def measured_intervals(samples: Samples) -> pd.Series:
    """``series_intervals`` of unsorted, de-duplicated samples, indexed by series code
    (``server * len(METRICS) + metric``)."""
    series = _series(samples)
    order = _series_order(series, samples.ts)
    return series_intervals(series, samples.ts) if order is None else series_intervals(series[order],
                                                                                        samples.ts[order])


def refit_coverage(daily: pd.DataFrame, rows: np.ndarray, interval: float, min_coverage: float,
                   day_timezone: str = "UTC") -> pd.DataFrame:
    """``daily`` with the coverage (and ``low_coverage``) of ``rows`` (a boolean mask) recomputed at
    ``interval`` seconds: what ``rollup_daily`` gives a series with one sample, whose interval is the
    median over every series rolled up (an ingest spilled to disk learns it after its last group)."""
    if not rows.any():
        return daily
    out = daily.copy()
    days = out.loc[rows, "ds"].to_numpy(dtype="datetime64[ns]").view(np.int64) // DAY_NS
    unique_days, day_index = np.unique(days, return_inverse=True)
    expected = np.maximum(1.0, day_lengths(unique_days, day_timezone)[day_index] / interval)
    coverage = out.loc[rows, "samples"].to_numpy(dtype=float) / expected
    out.loc[rows, "coverage"] = coverage
    out.loc[rows, "low_coverage"] = coverage < min_coverage
    return out


def rollup_daily(samples: Samples, server_names: list[str], percentile: float, min_coverage: float,
                 day_timezone: str = "UTC", interval_seconds: float | None = None) -> pd.DataFrame:
    """One row per server, local day and metric from de-duplicated samples.

    The value is the day's ``percentile`` with linear interpolation between closest ranks (numpy's
    default method, DuckDB's ``quantile_cont``). Coverage is samples / expected samples, where
    expected = day length / interval (at least 1); the interval is ``interval_seconds`` or the series'
    median spacing (a series with one sample takes the median over all series, else one day).

    Weighted samples (run-length rows, ``samples.weight``; ``interval_seconds`` required) are split
    at day boundaries and count by weight in the percentile (see ``runs``), ``samples``, the mean
    and the coverage.

    Args:
        samples: accepted samples without repeated (server, metric, time).
        server_names: names of the server codes.
        percentile: the percentile in (0, 100].
        min_coverage: coverage below which ``low_coverage`` is set.
        day_timezone: zone whose calendar days are rolled up.
        interval_seconds: nominal sample spacing, or None to measure it.

    Returns:
        Frame with columns server_id (str), ds (datetime64[ns], the local date), metric (str),
        value, samples (int64; the rounded sum of weights for weighted samples), value_mean, value_max,
        coverage (float64) and low_coverage (bool), sorted by server_id, metric, ds.

    Raises:
        ValueError: weighted samples without ``interval_seconds``.
    """
    if len(samples) == 0:
        return empty_daily()
    series = _series(samples)
    order = _series_order(series, samples.ts)
    ts, value, weight = samples.ts, samples.value, samples.weight
    if order is not None:
        series, ts, value = series[order], ts[order], value[order]
        weight = None if weight is None else weight[order]
    if weight is not None:
        if interval_seconds is None:
            raise ValueError("weighted samples need interval_seconds")
        run, days, piece = split_runs(ts, weight, interval_seconds, day_timezone)
        keep = piece > 0
        out = weighted_daily(series[run][keep], days[keep], value[run][keep], piece[keep], percentile / 100.0)
    else:
        out = _aggregate(series, local_days(ts, day_timezone), value, percentile / 100.0)
    if interval_seconds is not None:
        interval = np.full(len(out["s"]), float(interval_seconds))
    else:
        measured = series_intervals(series, ts)
        fallback = float(measured.median()) if len(measured) else DAY_SECONDS
        interval = measured.reindex(out["s"]).fillna(fallback).to_numpy()
    unique_days, day_index = np.unique(out["d"], return_inverse=True)
    expected = np.maximum(1.0, day_lengths(unique_days, day_timezone)[day_index] / interval)
    coverage = out["n"] / expected
    names = np.asarray(server_names, dtype=object)
    frame = pd.DataFrame({
        "server_id": names[out["s"] // len(METRICS)],
        "ds": (out["d"].astype(np.int64) * DAY_NS).view("datetime64[ns]"),
        "metric": np.asarray(METRICS, dtype=object)[out["s"] % len(METRICS)],
        "value": out["p"].astype(np.float64),
        "samples": np.round(out["n"]).astype(np.int64),
        "value_mean": out["mean"].astype(np.float64),
        "value_max": out["mx"].astype(np.float64),
        "coverage": coverage.astype(np.float64),
        "low_coverage": coverage < min_coverage,
    })
    return frame.sort_values(["server_id", "metric", "ds"], kind="stable", ignore_index=True)


def empty_daily() -> pd.DataFrame:
    """The roll-up frame without rows, with its column types."""
    return pd.DataFrame({
        "server_id": pd.Series(dtype=object), "ds": pd.Series(dtype="datetime64[ns]"),
        "metric": pd.Series(dtype=object), "value": pd.Series(dtype=np.float64),
        "samples": pd.Series(dtype=np.int64), "value_mean": pd.Series(dtype=np.float64),
        "value_max": pd.Series(dtype=np.float64), "coverage": pd.Series(dtype=np.float64),
        "low_coverage": pd.Series(dtype=bool),
    })


def rollup_frame(samples: pd.DataFrame, percentile: float = 95.0, min_coverage: float = 0.5,
                 day_timezone: str = "UTC", interval_seconds: float | None = None) -> pd.DataFrame:
    """Roll a long frame of timestamped samples up to days (a frame-level wrapper of rollup_daily).

    Args:
        samples: columns server_id, ts (UTC datetime, or naive meaning UTC), metric (one of
            schema.METRICS) and value. Repeated (server_id, metric, ts) keep their first row.
        percentile: the daily percentile.
        min_coverage: coverage below which ``low_coverage`` is set.
        day_timezone: zone whose calendar days are rolled up.
        interval_seconds: nominal sample spacing, or None to measure each series' median spacing.

    Returns:
        The daily frame described in rollup_daily.
    """
    server = pd.Categorical(samples["server_id"].astype(str))
    metric = pd.Categorical(samples["metric"], categories=list(METRICS))
    if (metric.codes < 0).any():
        unknown = sorted(set(samples["metric"][metric.codes < 0].astype(str)))
        raise SchemaError(
            f"rollup input: metric must be one of {', '.join(METRICS)}; found {', '.join(unknown)}")
    ts = pd.DatetimeIndex(samples["ts"])
    ts_ns = (ts.tz_convert("UTC").tz_localize(None) if ts.tz is not None else ts).as_unit("ns").asi8
    pool = Samples(server.codes.astype(np.int32), metric.codes.astype(np.int8), ts_ns,
                   samples["value"].to_numpy(dtype=np.float64), np.arange(len(samples), dtype=np.int64))
    kept, _ = sort_and_dedupe(pool)
    return rollup_daily(kept, list(server.categories), percentile, min_coverage, day_timezone,
                        interval_seconds)
