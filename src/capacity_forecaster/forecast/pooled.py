"""Fleet-wide pieces of conformal calibration, gathered chunk by chunk from small summaries.

The pooled quantiles of ``intervals`` (scale-free errors of every series of a model and metric)
and the pooled-or-not choice (``intervals.choose_pooling``) are the only parts of the forecast
stage's calibration that need every series at once. When the fleet is forecast in chunks of series
they are rebuilt here from per-chunk summaries, with the same numbers as on the whole fleet:

- ``PooledErrors`` finds the exact conformal quantile of each pool (model, metric, horizon bucket),
  for every held-out window and for all windows, in two passes over the chunks' backtest points. The
  first counts the scaled errors of each (pool, window) in a fixed histogram whose bins are exact
  functions of the float's bits (``_bins``: monotone, so the ``k``-th smallest error lies in the bin
  where the cumulative count passes ``k``); the second keeps only the errors that fall in those
  bins, and the quantile is picked among them. Memory: the histogram (pools x windows x
  ``N_BINS`` counts) and one bin's worth of errors per quantile, whatever the fleet size.
- ``PoolingCounts`` sums, per model, metric and window, the known actuals and how many fall inside
  the per-series and the pooled bounds; coverage on any set of windows is a ratio of those sums.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from capacity_forecaster.forecast.intervals import MIN_RESIDUALS, SCALE_FLOOR, first_rows
from capacity_forecaster.schema import METRIC

# Histogram bins: 32 per power of two over 2**-MAX_EXP .. 2**MAX_EXP (end bins take the rest), bin 0 = 0.
BINS_PER_OCTAVE = 32
MAX_EXP = 40
N_BINS = 1 + 2 * MAX_EXP * BINS_PER_OCTAVE
POOL = ["model", METRIC, "bucket"]
ALL = -1  # the "held-out window" of the calibration on every window


def _bins(values: np.ndarray) -> np.ndarray:
    """Histogram bin of each non-negative float, monotone in the value and exact (no rounding)."""
    mantissa, exponent = np.frexp(values)  # values = mantissa * 2**exponent, mantissa in [0.5, 1)
    fine = np.floor((mantissa - 0.5) * (2 * BINS_PER_OCTAVE)).astype(np.int64)
    out = 1 + (exponent.astype(np.int64) + MAX_EXP) * BINS_PER_OCTAVE + fine
    return np.where(values > 0, np.clip(out, 1, N_BINS - 1), 0)


def _scaled(rows: pd.DataFrame, raw: bool = False) -> pd.DataFrame:
    """``model, metric, bucket, window, scaled`` of the backtest points whose error is known (``raw``: the
    absolute errors themselves, every point in window 0)."""
    error = rows["abs_error"].to_numpy(dtype=float)
    scaled = error if raw else error / np.maximum(rows["scale"].to_numpy(dtype=float), SCALE_FLOOR)
    keep = ~np.isnan(scaled)
    out = rows.loc[keep, [*POOL, "window"]].reset_index(drop=True)
    if raw:
        out["window"] = 0
    out["scaled"] = scaled[keep]
    return out


def held_out(window: np.ndarray, targets: np.ndarray, single: bool) -> np.ndarray:
    """Per row of ``window``: may the calibration of each of ``targets`` use it? (rows x targets).

    A window is calibrated on the other windows; with a single window in the fleet, on itself.
    """
    if single:
        return np.ones((len(window), len(targets)), dtype=bool)
    return window[:, None] != targets[None, :]


@dataclass
class PooledErrors:
    """Exact pooled conformal quantiles from chunks of backtest points (see the module docstring).

    Use: ``add`` every chunk, ``plan`` once, ``collect`` every chunk again, then ``tables``. ``raw``: quantiles
    of the absolute errors, not divided by each series' scale, over every window (the ``ALL`` table): what a
    series without a usable scale of its own takes (``stage.calibrate_forecasts``).
    """

    level: float
    min_residuals: int = MIN_RESIDUALS
    raw: bool = False
    _counts: dict[tuple[str, str, int, int], np.ndarray] = field(default_factory=dict)
    _windows: set[int] = field(default_factory=set)
    _queries: pd.DataFrame | None = None
    _found: list[pd.DataFrame] = field(default_factory=list)

    def add(self, rows: pd.DataFrame) -> None:
        """Count the scaled errors of one chunk's backtest points (``model, metric, bucket, window,
        abs_error, scale``)."""
        self._windows.update({0} if self.raw else {int(w) for w in np.unique(rows["window"].to_numpy())})
        data = _scaled(rows, self.raw)
        if data.empty:
            return
        codes = data.groupby([*POOL, "window"], sort=False, observed=True).ngroup().to_numpy()
        keys = data[[*POOL, "window"]].iloc[first_rows(codes)].to_numpy().tolist()
        counts = np.bincount(codes * N_BINS + _bins(data["scaled"].to_numpy()), minlength=len(keys) * N_BINS)
        for i, key in enumerate(keys):
            k = (str(key[0]), str(key[1]), int(key[2]), int(key[3]))
            own = counts[i * N_BINS:(i + 1) * N_BINS]
            self._counts[k] = self._counts[k] + own if k in self._counts else own.copy()

    def windows(self) -> np.ndarray:
        """The backtest windows seen (with or without known errors)."""
        return np.array(sorted(self._windows), dtype=np.int64)

    def plan(self) -> None:
        """Locate each quantile's bin and its rank inside it, from the counts (after every ``add``)."""
        windows = self.windows()
        pools = sorted({k[:3] for k in self._counts})
        rows = []
        for pool in pools:
            per_window = np.stack([self._counts.get((*pool, int(w)), np.zeros(N_BINS, np.int64)) for w in windows])
            uses = [np.ones(len(windows), bool), *held_out(windows, windows, len(windows) <= 1).T]
            for out, use in zip([ALL, *windows.tolist()], uses, strict=True):
                hist = per_window[use].sum(axis=0)
                n = np.int64(hist.sum())
                if n == 0:
                    continue
                # The same rank as intervals.conformal_quantile.
                rank = np.minimum(np.ceil((n + 1) * self.level).astype("int64") - 1, n - 1)
                cum = np.cumsum(hist)
                b = int(np.searchsorted(cum, rank, side="right"))
                rows.append((*pool, int(out), b, int(rank - (cum[b] - hist[b])), int(n)))
        self._queries = pd.DataFrame(rows, columns=[*POOL, "held_out", "bin", "offset", "n"])
        self._found = []

    def collect(self, rows: pd.DataFrame) -> None:
        """Keep one chunk's scaled errors that fall in a quantile's bin (after ``plan``)."""
        if self._queries is None:
            raise RuntimeError("PooledErrors.collect before plan")
        data = _scaled(rows, self.raw)
        data["bin"] = _bins(data["scaled"].to_numpy())
        # Only a few bins per pool matter: drop every other error before the (costly) merge.
        pools = data.groupby(POOL, sort=False, observed=True).ngroup().to_numpy()
        first = data[POOL].iloc[first_rows(pools)].reset_index(drop=True)
        wanted = first.reset_index().merge(self._queries[[*POOL, "bin"]], on=POOL)
        data = data[np.isin(pools * N_BINS + data["bin"].to_numpy(),
                            wanted["index"].to_numpy() * N_BINS + wanted["bin"].to_numpy())]
        hit = data.merge(self._queries[[*POOL, "held_out", "bin"]], on=[*POOL, "bin"])
        window, out = hit["window"].to_numpy(), hit["held_out"].to_numpy()
        single = len(self.windows()) <= 1
        keep = (out == ALL) | single | (window != out)
        self._found.append(hit.loc[keep, [*POOL, "held_out", "scaled"]])

    def tables(self) -> dict[int, pd.DataFrame]:
        """Pooled quantile tables by held-out window (``ALL``: every window), as ``intervals.calibrate``'s.

        Returns:
            ``{window: model, metric, bucket, q, n}`` restricted to ``n >= min_residuals``.
        """
        if self._queries is None:
            raise RuntimeError("PooledErrors.tables before plan")
        queries = self._queries
        found = pd.concat(self._found, ignore_index=True) if self._found else pd.DataFrame(
            columns=[*POOL, "held_out", "scaled"])
        found = found.sort_values([*POOL, "held_out", "scaled"], kind="mergesort")
        found["_i"] = found.groupby([*POOL, "held_out"], sort=False, observed=True).cumcount()
        picked = queries.merge(found.rename(columns={"_i": "offset"}), on=[*POOL, "held_out", "offset"], how="left")
        picked = picked.rename(columns={"scaled": "q"})
        picked = picked[picked["n"] >= self.min_residuals]
        held = picked["held_out"].to_numpy()
        return {int(w): picked.loc[held == w, [*POOL, "q", "n"]].reset_index(drop=True) for w in np.unique(held)}


@dataclass
class PoolingCounts:
    """Per model, metric and window: known actuals, inside the per-series bounds, inside the pooled."""

    _parts: list[pd.DataFrame] = field(default_factory=list)

    def add(self, rows: pd.DataFrame, bounds: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Count one chunk (rows with ``model, metric, window, y``; ``bounds`` from ``cross_window_bounds``)."""
        y = rows["y"].to_numpy(dtype=float)
        known = ~np.isnan(y)
        part = rows.loc[known, ["model", METRIC, "window"]].copy()
        part["known"] = 1
        for name, (lo, hi) in bounds.items():
            part[f"in_{name}"] = ((lo <= y) & (y <= hi))[known].astype(np.int64)
        self._parts.append(part.groupby(["model", METRIC, "window"], sort=False, observed=True).sum().reset_index())

    def table(self, out: int, level: float, single: bool) -> pd.DataFrame:
        """``intervals.choose_pooling`` on every window (``out = ALL``) or on the windows other than ``out``
        (all of them when ``single``: the fleet has one window).

        Returns:
            ``model, metric, pooled, coverage_series, coverage_pooled``.
        """
        keys = ["model", METRIC]
        sums = pd.concat(self._parts, ignore_index=True) if self._parts else pd.DataFrame(
            columns=[*keys, "window", "known", "in_series", "in_pooled"])
        sums = sums.groupby([*keys, "window"], sort=True, observed=True).sum().reset_index()
        if out != ALL:
            sums = sums[held_out(sums["window"].to_numpy(), np.array([out]), single)[:, 0]]
        table = sums.groupby(keys, sort=True, observed=True)[["known", "in_series", "in_pooled"]].sum().reset_index()
        table = table[table["known"] > 0]
        for name in ("series", "pooled"):
            inside = table[f"in_{name}"].to_numpy(dtype=float)
            table[f"coverage_{name}"] = inside / table["known"].to_numpy(dtype=float)
        table["pooled"] = (table["coverage_pooled"] - level).abs() < (table["coverage_series"] - level).abs()
        return table[[*keys, "pooled", "coverage_series", "coverage_pooled"]].reset_index(drop=True)
