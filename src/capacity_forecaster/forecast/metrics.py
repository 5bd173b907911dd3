"""Forecast accuracy metrics: small array kernels and one vectorised scorer over long backtest frames.

Conventions follow Nixtla ``utilsforecast``: MAPE and sMAPE are fractions (0.1 = 10 %), sMAPE is
``|y - yhat| / (|y| + |yhat|)`` (range 0-1, 0/0 counts as 0), actuals of exactly 0 are left out of
MAPE, and missing actuals are left out of everything. MASE divides MAE by the in-sample mean
absolute *weekly* seasonal difference of the training history (7 steps daily, 168 hourly), so
MASE < 1 means better than a weekly seasonal naive forecast would have been in-sample.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.forecast.runs import sorted_groups
from capacity_forecaster.schema import DS, SERIES_KEY, VALUE

SCORE_COLUMNS = ("mae", "rmse", "mape", "smape", "mase", "coverage", "n_points")


def _pair(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=float)
    yhat_arr = np.asarray(yhat, dtype=float)
    keep = ~np.isnan(y_arr)
    return y_arr[keep], yhat_arr[keep]


def mae(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series) -> float:
    """Mean absolute error over the points where ``y`` is known."""
    a, b = _pair(y, yhat)
    return float(np.mean(np.abs(a - b))) if a.size else float("nan")


def rmse(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series) -> float:
    """Root mean squared error over the points where ``y`` is known."""
    a, b = _pair(y, yhat)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else float("nan")


def mape(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series) -> float:
    """Mean absolute percentage error as a fraction; actuals equal to 0 are left out."""
    a, b = _pair(y, yhat)
    nonzero = a != 0
    return float(np.mean(np.abs(a - b)[nonzero] / np.abs(a[nonzero]))) if nonzero.any() else float("nan")


def smape(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series) -> float:
    """Symmetric MAPE ``|y - yhat| / (|y| + |yhat|)`` as a fraction in [0, 1]; 0/0 counts as 0."""
    a, b = _pair(y, yhat)
    if not a.size:
        return float("nan")
    denom = np.abs(a) + np.abs(b)
    ratio = np.divide(np.abs(a - b), denom, out=np.zeros_like(a), where=denom > 0)
    return float(np.mean(ratio))


def mase(y: np.ndarray | pd.Series, yhat: np.ndarray | pd.Series, scale: float) -> float:
    """MAE divided by ``scale`` (the training history's mean absolute weekly difference); NaN if 0."""
    return mae(y, yhat) / scale if scale > 0 else float("nan")


def coverage(y: np.ndarray | pd.Series, lower: np.ndarray | pd.Series, upper: np.ndarray | pd.Series) -> float:
    """Share of known actuals inside ``[lower, upper]``."""
    y_arr = np.asarray(y, dtype=float)
    keep = ~np.isnan(y_arr)
    inside = (np.asarray(lower, dtype=float) <= y_arr) & (y_arr <= np.asarray(upper, dtype=float))
    return float(np.mean(inside[keep])) if keep.any() else float("nan")


def seasonal_scale(history: pd.DataFrame, season: int, cutoffs: pd.DataFrame) -> pd.Series:
    """The MASE denominator of each series at each cutoff, using only history up to the cutoff.

    Args:
        history: ``server_id, metric, ds, value`` on a regular grid, sorted by series then ``ds``.
        season: seasonal lag in steps (7 for daily data, 168 for hourly).
        cutoffs: ``server_id, metric, cutoff`` rows; each cutoff must be a ``ds`` of its series.

    Returns:
        A float Series aligned with ``cutoffs``: mean ``|y_t - y_{t-season}|`` over the pairs
        with both values known and ``t <= cutoff``; NaN where no such pair exists.
    """
    grouped = history.groupby(list(SERIES_KEY), sort=False, observed=True)[VALUE]
    diff = (history[VALUE] - grouped.shift(season)).abs()
    known = diff.notna()
    frame = history[[*SERIES_KEY, DS]].copy()
    frame["_sum"] = diff.fillna(0.0).groupby([history[k] for k in SERIES_KEY], sort=False, observed=True).cumsum()
    frame["_n"] = known.groupby([history[k] for k in SERIES_KEY], sort=False, observed=True).cumsum()
    looked_up = cutoffs[[*SERIES_KEY, "cutoff"]].merge(
        frame.rename(columns={DS: "cutoff"}), on=[*SERIES_KEY, "cutoff"], how="left", sort=False
    )
    n = looked_up["_n"].to_numpy(dtype=float)
    total = looked_up["_sum"].to_numpy(dtype=float)
    out = np.divide(total, n, out=np.full(len(n), np.nan), where=n > 0)
    return pd.Series(out, index=cutoffs.index, name="scale")


def score(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Score forecasts against actuals for every group of ``keys`` in one vectorised pass.

    Args:
        frame: one row per forecast point with ``keys`` plus ``y`` (actual, NaN if unknown),
            ``yhat``, ``yhat_lower``, ``yhat_upper`` and ``scale`` (the MASE denominator of the
            group, see ``seasonal_scale``).
        keys: the grouping columns, e.g. ``server_id, metric, model, cutoff``.

    Returns:
        One row per group: ``keys`` + ``mae, rmse, mape, smape, mase, coverage, n_points``
        (``n_points`` = known actuals; groups without any have NaN metrics), sorted by ``keys``.
    """
    y = frame["y"].to_numpy(dtype=float)
    yhat = frame["yhat"].to_numpy(dtype=float)
    known = ~np.isnan(y)
    err = np.abs(y - yhat)
    denom = np.abs(y) + np.abs(yhat)
    parts = pd.DataFrame(
        {
            "ae": err,
            "se": err**2,
            "ape": np.divide(err, np.abs(y), out=np.full(len(y), np.nan), where=known & (y != 0)),
            "sape": np.where(known, np.divide(err, denom, out=np.zeros(len(y)), where=denom > 0), np.nan),
            "inside": np.where(
                known,
                (frame["yhat_lower"].to_numpy(dtype=float) <= y) & (y <= frame["yhat_upper"].to_numpy(dtype=float)),
                np.nan,
            ),
            "scale": frame["scale"].to_numpy(dtype=float),
            "known": known.astype(float),
        },
        index=frame.index,
    )
    aggregations = {"mae": ("ae", "mean"), "mse": ("se", "mean"), "mape": ("ape", "mean"),
                    "smape": ("sape", "mean"), "coverage": ("inside", "mean"), "scale": ("scale", "first"),
                    "n_points": ("known", "sum")}
    groups = sorted_groups(frame, keys)
    if groups is None:
        for key in keys:
            parts[key] = frame[key]
        agg = parts.groupby(keys, sort=True, observed=True, dropna=False).agg(**aggregations).reset_index()
    else:
        # Backtest rows hold their keys in runs: number the groups per run (``runs.sorted_groups``)
        # instead of hashing every row's strings; same groups, same order, same row order inside.
        codes, first = groups
        agg = parts.groupby(codes, sort=True).agg(**aggregations).reset_index(drop=True)
        for key in reversed(keys):
            agg.insert(0, key, frame[key].iloc[first].reset_index(drop=True))
    agg["rmse"] = np.sqrt(agg["mse"])
    agg["mase"] = agg["mae"] / agg["scale"].where(agg["scale"] > 0)
    agg["n_points"] = agg["n_points"].astype("int64")
    return agg[[*keys, *SCORE_COLUMNS]]
