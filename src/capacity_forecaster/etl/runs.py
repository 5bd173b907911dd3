"""Weighted samples: run-length rows split at day boundaries, and the weighted daily percentile.

A run-length row stands for ``weight`` consecutive samples of one value, ``interval`` apart, the
first at the row's time (Bitbrains fastStorage merges equal 5-minute samples into one row with a
duration). The roll-up must weigh such a row by its samples, and a run that crosses midnight must
count on each day for the samples that fall into it.

The weighted percentile is the linear-interpolation percentile (numpy's default method) of the
sample expanded by weight: with N = sum of weights, the value at rank h = (N - 1) q, interpolated
between the values at expanded positions floor(h) and floor(h) + 1. For integer weights this is
exactly ``np.percentile(np.repeat(values, weights), 100 q)``; with every weight 1 it is the plain
percentile. Fractional weights (a duration that is not a whole number of intervals) extend the same
rule through the cumulative weights.
"""

from __future__ import annotations

import numpy as np

from capacity_forecaster.etl.days import day_starts, local_days


def split_runs(ts: np.ndarray, weight: np.ndarray, interval_seconds: float,
               timezone: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split every run into the local calendar days its samples fall on.

    Sample k of a run (k = 0, 1, ...) is at ``ts + k * interval``; a fractional weight gives the last
    sample that fraction of a sample.

    Args:
        ts: int64 UTC nanoseconds of each run's first sample.
        weight: samples per run (> 0).
        interval_seconds: spacing of the samples.
        timezone: zone of the calendar days.

    Returns:
        (run index, local day, weight within that day), one entry per (run, day) touched, in run order.
    """
    interval = interval_seconds * 1e9
    last = ts + ((np.ceil(weight) - 1.0) * interval).astype(np.int64)
    first_day, last_day = local_days(ts, timezone), local_days(last, timezone)
    pieces = last_day - first_day + 1
    if (pieces == 1).all():
        return np.arange(len(ts)), first_day, weight
    run = np.repeat(np.arange(len(ts)), pieces)
    offset = np.arange(len(run)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    day = first_day[run] + offset
    # Samples of the run inside day d: k in [ceil((start(d) - ts) / interval), ceil((start(d+1) - ts) / interval)).
    begin = np.maximum(np.ceil((day_starts(day, timezone) - ts[run]) / interval), 0.0)
    end = np.ceil((day_starts(day + 1, timezone) - ts[run]) / interval)
    return run, day, np.maximum(np.minimum(weight[run], end) - begin, 0.0)


def weighted_daily(series: np.ndarray, day: np.ndarray, value: np.ndarray,
                   weight: np.ndarray, q: float) -> dict[str, np.ndarray]:
    """Weighted percentile, weight sum, weighted mean and max per (series, day).

    Args:
        series: int64 series code per entry.
        day: int64 day per entry.
        value: float64 values.
        weight: samples each entry stands for (> 0).
        q: the quantile in (0, 1].

    Returns:
        Arrays sorted by series then day: s (series), d (day), p (weighted percentile), n (sum of
        weights), mean (weighted mean), mx (max).
    """
    if len(value) == 0:
        empty = np.empty(0)
        return {"s": empty.astype(np.int64), "d": empty.astype(np.int64), "p": empty, "n": empty,
                "mean": empty, "mx": empty}
    first = int(day.min())
    span = int(day.max()) - first + 1
    key = series.astype(np.int64) * span + (day - first)
    order = np.lexsort((value, key))
    key, value, weight = key[order], value[order], weight[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    cum = np.cumsum(weight)
    total = np.add.reduceat(weight, starts)
    before = cum[starts] - weight[starts]
    rank = np.maximum((total - 1.0) * q, 0.0)
    low = np.floor(rank)

    def at(position: np.ndarray) -> np.ndarray:
        # The expanded sample at ``position`` is the first entry whose cumulative weight exceeds it.
        index = np.searchsorted(cum, before + position, side="right")
        return value[np.clip(index, starts, ends - 1)]

    below, above = at(low), at(low + 1.0)
    group = key[starts]
    return {
        "s": group // span,
        "d": group % span + first,
        "p": below + (rank - low) * (above - below),
        "n": total,
        "mean": np.add.reduceat(value * weight, starts) / total,
        "mx": np.maximum.reduceat(value, starts),
    }
