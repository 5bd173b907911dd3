"""Conformal prediction intervals calibrated on rolling-origin backtest residuals.

Split-conformal with absolute errors: for a series, model and horizon bucket, the half-width is the
``ceil((n + 1) * level) / n`` empirical quantile of the ``n`` absolute backtest errors, and the
interval is ``yhat -/+ half_width`` clipped to [0, 100]. Errors grow with lead time, so steps are
grouped into ``N_BUCKETS`` equal buckets of the lead a series' backtests scored (the horizon where
history allows: 30 days each for the default 180), at least ``MIN_BUCKET_STEPS`` wide, so the same
errors give the same interval to a step whatever horizon was asked for.

Pooled quantiles: errors of every series of the same model and metric are divided by each series'
scale (its mean absolute weekly difference, the MASE denominator), the quantile is taken over the
pooled scaled errors and multiplied back by the target series' scale. They are used where a series
has fewer than ``MIN_RESIDUALS`` errors in a bucket (short history, few windows) and, per model and
metric, wherever pooling covers closer to nominal on the backtests (``choose_pooling``).

Backtest intervals are honest: a window's half-widths, and the pooled-or-not choice, come from the
other windows only (``cross_window_bounds``, ``cross_window_pooling``), so the coverage measured on
a window, and any check made later with those intervals, never saw that window's errors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster.forecast.runs import lookup
from capacity_forecaster.schema import METRIC, SERIES_KEY

N_BUCKETS = 6
# Narrower buckets rest on one or two steps per window: with two months of history (15-day leads),
# sixths of the lead made the last bucket's quantile, which every extrapolated step grows from,
# noisier (Bitbrains Rnd at 5 rolling origins: extrapolated coverage 0.79 instead of 0.80 and a
# false medium flag more).
MIN_BUCKET_STEPS = 5
# A bucket id names its step range (``width * BUCKET_WIDTH_UNIT + index``: steps ``index * width + 1`` to
# ``(index + 1) * width``), so a pool only mixes errors at the same steps: series whose scored leads differ
# (a new server's 15 days beside a long series' 180) have buckets of different widths.
BUCKET_WIDTH_UNIT = 1_000_000
MIN_RESIDUALS = 30
# Scales below this (near-constant series) would blow up scaled errors in the pooled quantile.
SCALE_FLOOR = 0.01
LOWER, UPPER = 0.0, 100.0

_SERIES_MODEL = [*SERIES_KEY, "model", "bucket"]
_POOL = ["model", METRIC, "bucket"]
# A pooled table without any pool (no backtest point anywhere in the fleet).
EMPTY_POOL = pd.DataFrame({"model": pd.Series(dtype=object), METRIC: pd.Series(dtype=object),
                           "bucket": pd.Series(dtype="int64"), "q": pd.Series(dtype=float),
                           "n": pd.Series(dtype="int64")})


def horizon_bucket(step: np.ndarray | pd.Series, horizon: int | np.ndarray | pd.Series,
                   n_buckets: int = N_BUCKETS, min_width: int = 1) -> np.ndarray:
    """Bucket id of forecast steps 1..horizon split into ``n_buckets`` equal runs of at least ``min_width``
    steps: ``width * BUCKET_WIDTH_UNIT`` plus the run's 0-based index.

    ``horizon`` is one length for every step or one per step (each series' scored lead).
    """
    length = np.maximum(np.asarray(horizon, dtype="int64"), 1)
    width = np.maximum(np.ceil(length / np.minimum(n_buckets, length)).astype("int64"), min_width)
    return (width * BUCKET_WIDTH_UNIT + (np.asarray(step, dtype="int64") - 1) // width).astype("int64")


def conformal_quantile(frame: pd.DataFrame, keys: list[str], column: str, level: float) -> pd.DataFrame:
    """The split-conformal quantile of ``column`` within each group of ``keys`` (NaNs ignored).

    Args:
        frame: rows with ``keys`` and ``column``.
        keys: grouping columns.
        column: the non-negative scores (absolute errors).
        level: nominal coverage in (0, 1).

    Returns:
        One row per group: ``keys`` + ``q`` (the ``ceil((n+1) level)``-th smallest score, the
        largest when that rank exceeds ``n``) + ``n`` (scores in the group).
    """
    data = frame.loc[frame[column].notna(), [*keys, column]]
    if data.empty:
        return pd.DataFrame({**{k: pd.Series(dtype=frame[k].dtype) for k in keys}, "q": [], "n": []})
    codes = data.groupby(keys, sort=False, observed=True).ngroup().to_numpy()
    values = data[column].to_numpy(dtype=float)
    n = np.bincount(codes)
    starts = np.cumsum(n) - n
    rank = np.minimum(np.ceil((n + 1) * level).astype("int64") - 1, n - 1)
    first = np.zeros(len(n), dtype="int64")
    first[codes[::-1]] = np.arange(len(codes))[::-1]  # the first row of each group
    picked = data[keys].iloc[first].reset_index(drop=True)
    picked["q"] = _kth_smallest(codes, values, starts + rank)
    picked["n"] = n
    return picked


def _kth_smallest(codes: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Per group: the value at position ``at[g]`` of all values sorted by (group, value).

    Sorting one integer key (group, rank of the value among the distinct values) picks the same
    values as a two-key ``lexsort`` of the rows in a fraction of its time.
    """
    distinct, rank = np.unique(values, return_inverse=True)
    width = np.int64(max(len(distinct), 1))
    if len(at) * int(width) >= 2**62:
        return values[np.lexsort((values, codes))][at]
    key = np.sort(codes.astype(np.int64) * width + rank.reshape(-1))
    return distinct[key[at] - np.arange(len(at), dtype=np.int64) * width]


@dataclass(frozen=True)
class Calibration:
    """Half-widths learnt from backtest residuals.

    Attributes:
        level: nominal coverage (0.8 for 80 % intervals).
        series: ``server_id, metric, model, bucket, q, n`` where ``n >= MIN_RESIDUALS``.
        pooled: ``model, metric, bucket, q, n``: quantiles of scale-free errors over all series.
    """

    level: float
    series: pd.DataFrame
    pooled: pd.DataFrame

    def half_widths(self, targets: pd.DataFrame, pooled_only: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Half-widths for rows of ``server_id, metric, model, bucket, scale``.

        Args:
            targets: the rows to size.
            pooled_only: rows that use the pooled quantile even where the series has its own.

        Returns:
            ``(half_width, pooled)``: the half-width per row (NaN where neither the series nor its
            pool has enough residuals) and a boolean array marking pooled rows.
        """
        base = targets[_SERIES_MODEL].reset_index(drop=True)
        own = base.merge(self.series[[*_SERIES_MODEL, "q"]], on=_SERIES_MODEL, how="left", sort=False)["q"]
        pool = base[_POOL].merge(self.pooled[[*_POOL, "q"]], on=_POOL, how="left", sort=False)["q"]
        scale = np.maximum(np.nan_to_num(targets["scale"].to_numpy(dtype=float), nan=SCALE_FLOOR), SCALE_FLOOR)
        own_arr = own.to_numpy(dtype=float)
        use_pool = np.isnan(own_arr) if pooled_only is None else np.isnan(own_arr) | pooled_only
        return np.where(use_pool, pool.to_numpy(dtype=float) * scale, own_arr), use_pool & ~np.isnan(pool.to_numpy())


def calibrate(residuals: pd.DataFrame, level: float, min_residuals: int = MIN_RESIDUALS,
              pooled: pd.DataFrame | None = None) -> Calibration:
    """Learn conformal half-widths from backtest residuals.

    Args:
        residuals: one row per backtest point: ``server_id, metric, model, bucket, abs_error``
            (NaN where the actual is unknown) and ``scale`` (series scale at that cutoff).
        level: nominal coverage in (0, 1).
        min_residuals: fewest errors a series needs in a bucket for its own quantile.
        pooled: the pooled table when it was learnt elsewhere (over more series than ``residuals``
            holds: ``pooled.PooledErrors``); None learns it from ``residuals``.

    Returns:
        The Calibration (per-series table restricted to well-populated buckets, pooled table).
    """
    own = conformal_quantile(residuals, _SERIES_MODEL, "abs_error", level)
    own = own[own["n"] >= min_residuals].reset_index(drop=True)
    if pooled is not None:
        return Calibration(level=level, series=own, pooled=pooled)
    scaled = residuals[_POOL].copy()
    scaled["scaled"] = residuals["abs_error"].to_numpy(dtype=float) / np.maximum(
        residuals["scale"].to_numpy(dtype=float), SCALE_FLOOR
    )
    pooled = conformal_quantile(scaled, _POOL, "scaled", level)
    pooled = pooled[pooled["n"] >= min_residuals].reset_index(drop=True)
    return Calibration(level=level, series=own, pooled=pooled)


def _coded(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its string key columns as categoricals (a shallow copy; values unchanged).

    The window-by-window calibration groups and merges ~1 M backtest rows on these keys several
    times; categorical codes make that ~5x cheaper than hashing strings each time.
    """
    keys = [c for c in (*SERIES_KEY, "model") if c in frame.columns and frame[c].dtype == object]
    return frame.astype({c: "category" for c in keys}) if keys else frame


def apply_bounds(yhat: np.ndarray, half_width: np.ndarray, lower: np.ndarray, upper: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``yhat -/+ half_width`` clipped to [0, 100]; keeps ``lower``/``upper`` where the width is NaN."""
    lo = np.where(np.isnan(half_width), lower, yhat - half_width)
    hi = np.where(np.isnan(half_width), upper, yhat + half_width)
    return np.clip(np.minimum(lo, yhat), LOWER, UPPER), np.clip(np.maximum(hi, yhat), LOWER, UPPER)


def cross_window_bounds(residuals: pd.DataFrame, level: float, min_residuals: int = MIN_RESIDUALS,
                        pooled: dict[int, pd.DataFrame] | None = None, single: bool | None = None
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Honest backtest intervals: each window's bounds are calibrated on the *other* windows only.

    Calibrating on the window being scored would make the measured coverage optimistic. With a
    single window there is nothing else to calibrate on and that window calibrates itself (the
    measured coverage is then optimistic).

    Args:
        residuals: backtest points with ``server_id, metric, model, window, bucket, abs_error, scale,
            yhat, yhat_lower, yhat_upper`` (the last two are the model's own bounds, kept where no
            calibration is possible).
        level: nominal coverage.
        min_residuals: see ``calibrate``.
        pooled: pooled tables by held-out window, learnt over the whole fleet when ``residuals`` is
            one chunk of it (``pooled.PooledErrors.tables``); None learns them from ``residuals``.
        single: the fleet has a single window (default: ``residuals`` has one).

    Returns:
        ``{"series": (lower, upper), "pooled": (lower, upper)}``, arrays aligned with ``residuals``:
        per-series quantiles where a series has enough errors (pooled otherwise), and pooled only.
    """
    residuals = _coded(residuals[[*_SERIES_MODEL, "window", "abs_error", "scale", "yhat", "yhat_lower", "yhat_upper"]])
    own_lo = residuals["yhat_lower"].to_numpy(dtype=float)
    own_hi = residuals["yhat_upper"].to_numpy(dtype=float)
    out = {name: (own_lo.copy(), own_hi.copy()) for name in ("series", "pooled")}
    window = residuals["window"].to_numpy()
    yhat = residuals["yhat"].to_numpy(dtype=float)
    windows = np.unique(window)
    alone = len(windows) <= 1 if single is None else single
    # ``calibrate`` + ``half_widths`` per held-out window, with the groups numbered once: the same
    # quantiles (the same ranked errors of the same rows), looked up by group number, not by merges.
    series = residuals.groupby(_SERIES_MODEL, sort=False, observed=True).ngroup().to_numpy()
    pools = residuals.groupby(_POOL, sort=False, observed=True).ngroup().to_numpy()
    error = residuals["abs_error"].to_numpy(dtype=float)
    scale = residuals["scale"].to_numpy(dtype=float)
    scaled = error / np.maximum(scale, SCALE_FLOOR)
    target_scale = np.maximum(np.nan_to_num(scale, nan=SCALE_FLOOR), SCALE_FLOOR)
    pool_keys = residuals[_POOL].iloc[first_rows(pools)].reset_index(drop=True) if len(pools) else None
    for w in windows:
        rows = window == w
        train = rows if alone else ~rows
        own = _group_quantiles(series, error, train, level, min_residuals)[series[rows]]
        if pooled is None:
            pool_q = _group_quantiles(pools, scaled, train, level, min_residuals)
        else:
            pool_q = _table_quantiles(pool_keys, pooled.get(int(w), EMPTY_POOL))
        pool = pool_q[pools[rows]]
        for name, use_pool in (("series", np.isnan(own)), ("pooled", np.ones(int(rows.sum()), dtype=bool))):
            half = np.where(use_pool, pool * target_scale[rows], own)
            lo, hi = out[name]
            lo[rows], hi[rows] = apply_bounds(yhat[rows], half, own_lo[rows], own_hi[rows])
    return out


def first_rows(codes: np.ndarray) -> np.ndarray:
    """The first row of each group number 0..max (every number present): for ``ngroup(sort=False)``
    numbers, the rows ``drop_duplicates`` keeps, in the same order."""
    first = np.zeros(int(codes.max()) + 1 if len(codes) else 0, dtype="int64")
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return first


def _group_quantiles(codes: np.ndarray, values: np.ndarray, use: np.ndarray, level: float,
                     min_residuals: int) -> np.ndarray:
    """Per group number: ``conformal_quantile`` of the known ``values`` of the rows in ``use``; NaN
    where the group has fewer than ``min_residuals`` of them (as ``calibrate`` filters its tables)."""
    size = int(codes.max()) + 1 if len(codes) else 0
    out = np.full(size, np.nan)
    keep = use & ~np.isnan(values)
    if not keep.any():
        return out
    groups, compact = np.unique(codes[keep], return_inverse=True)
    n = np.bincount(compact)
    starts = np.cumsum(n) - n
    rank = np.minimum(np.ceil((n + 1) * level).astype("int64") - 1, n - 1)
    q = _kth_smallest(compact, values[keep], starts + rank)
    out[groups] = np.where(n >= min_residuals, q, np.nan)
    return out


def _table_quantiles(keys: pd.DataFrame | None, table: pd.DataFrame) -> np.ndarray:
    """``q`` of ``table`` (unique ``model, metric, bucket``) for each pool of ``keys`` (NaN where none)."""
    if keys is None:
        return np.empty(0)
    return keys.merge(table[[*_POOL, "q"]], on=_POOL, how="left", sort=False)["q"].to_numpy(dtype=float)


def choose_pooling(residuals: pd.DataFrame, bounds: dict[str, tuple[np.ndarray, np.ndarray]], level: float
                   ) -> pd.DataFrame:
    """Per model and metric, whether pooled or per-series quantiles cover closer to nominal.

    Per-series quantiles adapt to each series' spread but come from few *effective* samples when a
    series' errors are smooth (a disk forecast that is off by a level is off the whole window);
    pooled scale-free quantiles are steadier but ignore a series' own shape. Both are measured on
    the backtests window by window (``cross_window_bounds``) and the one whose coverage is nearer
    ``level`` is kept (ties keep per-series).

    Returns:
        ``model, metric, pooled`` (bool), ``coverage_series``, ``coverage_pooled``.
    """
    y = residuals["y"].to_numpy(dtype=float)
    known = ~np.isnan(y)
    out = residuals.loc[known, list(_POOL[:2])].copy()
    for name, (lo, hi) in bounds.items():
        out[f"coverage_{name}"] = ((lo <= y) & (y <= hi))[known]
    table = out.groupby(list(_POOL[:2]), sort=True, observed=True).mean().reset_index()
    table["pooled"] = (table["coverage_pooled"] - level).abs() < (table["coverage_series"] - level).abs()
    return table[[*_POOL[:2], "pooled", "coverage_series", "coverage_pooled"]]


def cross_window_pooling(residuals: pd.DataFrame, bounds: dict[str, tuple[np.ndarray, np.ndarray]], level: float,
                         tables: dict[int, pd.DataFrame] | None = None) -> np.ndarray:
    """Per row: pooled quantiles or not, chosen as ``choose_pooling`` does on the *other* windows only.

    With a single window the window chooses for itself (as in ``cross_window_bounds``).

    Args:
        residuals: backtest points (``model, metric, window, y``), aligned with ``bounds``.
        bounds: output of ``cross_window_bounds`` for ``residuals``.
        level: nominal coverage.
        tables: ``choose_pooling`` tables by held-out window, from the whole fleet when ``residuals``
            is one chunk of it (``pooled.PoolingCounts``); None chooses on ``residuals``.

    Returns:
        Boolean array aligned with ``residuals``.
    """
    keys = list(_POOL[:2])
    residuals = _coded(residuals[[*keys, "window", "y"]])
    window = residuals["window"].to_numpy()
    windows = np.unique(window)
    out = np.zeros(len(residuals), dtype=bool)
    for w in windows:
        rows = window == w
        train = ~rows if len(windows) > 1 else rows
        table = tables[int(w)] if tables is not None else choose_pooling(
            residuals.loc[train], {k: (lo[train], hi[train]) for k, (lo, hi) in bounds.items()}, level)
        at = lookup(residuals.loc[rows, keys], table, keys)  # a left join on the table's unique keys
        pooled = table["pooled"].eq(True).to_numpy()
        out[rows] = (at >= 0) & pooled[np.maximum(at, 0)] if len(pooled) else False
    return out
