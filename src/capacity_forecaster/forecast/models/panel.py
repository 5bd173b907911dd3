"""Series panel: a long history frame as a right-aligned (series x steps) matrix, and back to predictions.

Every model here works on the same layout: row ``i`` is one (server_id, metric) series, columns are
steps of the regular grid, right-aligned so that the last column is each series' last history row
(shorter series are NaN-padded on the left; rows missing from the grid are NaN). Predictions are
built from (series x horizon) arrays and clipped to [0, 100] with ``lower <= yhat <= upper``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster.errors import ForecastError, SchemaError
from capacity_forecaster.forecast.base import FREQUENCIES, PREDICTION_COLUMNS
from capacity_forecaster.messages import examples

HISTORY_COLUMNS = ("server_id", "metric", "ds", "value")
_STEP = {"D": np.timedelta64(1, "D"), "h": np.timedelta64(1, "h")}
# Series named in an error message; the rest are counted.
_NAMED_SERIES = 5


def step_of(freq: str) -> np.timedelta64:
    """The grid step of a frequency (``D`` or ``h``).

    Raises:
        ForecastError: unknown frequency.
    """
    if freq not in _STEP:
        raise ForecastError(f"unknown frequency '{freq}'; expected one of {', '.join(FREQUENCIES)}")
    return _STEP[freq]


def check_freq(model: str, freq: str, supported: tuple[str, ...]) -> None:
    """Raise ForecastError when ``model`` does not support ``freq``."""
    step_of(freq)
    if freq not in supported:
        raise ForecastError(
            f"model '{model}' does not support frequency '{freq}'; it supports {', '.join(supported)}"
        )


@dataclass(frozen=True)
class Panel:
    """Series of one batch as a right-aligned matrix.

    Attributes:
        server_id: server per series, shape (n,).
        metric: metric per series, shape (n,).
        end: last history timestamp per series (``datetime64[ns]``), shape (n,).
        length: grid steps per series from its first to its last row, shape (n,).
        values: (n, steps) float64, NaN where missing or before the series starts.
        freq: ``D`` or ``h``.
        tz: time zone of the input timestamps (None for naive); ``end`` is naive UTC.
    """

    server_id: np.ndarray
    metric: np.ndarray
    end: np.ndarray
    length: np.ndarray
    values: np.ndarray
    freq: str
    tz: str | None = None

    def __len__(self) -> int:
        return len(self.server_id)

    @property
    def step(self) -> np.timedelta64:
        return step_of(self.freq)

    def observed(self) -> np.ndarray:
        """Non-missing points per series, shape (n,)."""
        return np.isfinite(self.values).sum(axis=1)

    def names(self, rows: np.ndarray) -> str:
        """``server_id/metric`` of the given rows for messages (the first few, then a count)."""
        rows = np.asarray(rows)
        return examples((f"{self.server_id[i]}/{self.metric[i]}" for i in rows), _NAMED_SERIES, total=len(rows))

    def require_observed(self, model: str, minimum: int) -> None:
        """Raise ForecastError naming the series with fewer than ``minimum`` non-missing points."""
        short = np.flatnonzero(self.observed() < minimum)
        if len(short):
            raise ForecastError(
                f"model '{model}' needs at least {minimum} non-missing points per series; "
                f"too short: {self.names(short)}; give these series to the baseline model"
            )

    def take(self, rows: np.ndarray) -> Panel:
        """The panel of the given rows only (same width and frequency)."""
        rows = np.asarray(rows)
        return Panel(self.server_id[rows], self.metric[rows], self.end[rows], self.length[rows], self.values[rows],
                     self.freq, self.tz)

    def timestamps(self, offsets: np.ndarray) -> np.ndarray:
        """Timestamps ``end + offset * step`` per series, shape (n, len(offsets)), ``datetime64[ns]``."""
        step = self.step.astype("timedelta64[ns]")
        return self.end[:, None] + np.asarray(offsets, dtype=np.int64)[None, :] * step


def to_panel(history: pd.DataFrame, freq: str) -> Panel:
    """Build the right-aligned panel of a long history frame (the input is not modified).

    Args:
        history: ``server_id, metric, ds, value``; one row per grid step (missing rows allowed).
        freq: ``D`` or ``h``.

    Returns:
        The Panel, series ordered by (server_id, metric).

    Raises:
        SchemaError: missing columns, or missing server_id / metric / ds values.
        ForecastError: empty history, duplicate timestamps, or timestamps off the ``freq`` grid.
    """
    missing = [c for c in HISTORY_COLUMNS if c not in history.columns]
    if missing:
        raise SchemaError(f"history frame lacks columns {missing}; expected {list(HISTORY_COLUMNS)}")
    if history.empty:
        raise ForecastError("history frame is empty; nothing to forecast")
    keyed = _run_keys(history)
    checked = ("ds",) if keyed is not None else ("server_id", "metric", "ds")
    nulls = [c for c in checked if history[c].isna().any()]
    if nulls:
        raise SchemaError(f"history frame has missing values in key columns {nulls}; drop or fix those rows")
    step = step_of(freq).astype("timedelta64[ns]").astype(np.int64)
    ds_col = history["ds"]
    if not pd.api.types.is_datetime64_any_dtype(ds_col):
        ds_col = pd.to_datetime(ds_col)
    tz = getattr(ds_col.dt, "tz", None)
    if tz is not None:
        ds_col = ds_col.dt.tz_convert("UTC").dt.tz_localize(None)
    ds = ds_col.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if keyed is not None:
        codes, uniques = keyed
    else:
        server_codes, servers = pd.factorize(history["server_id"].astype(str), sort=True)
        metric_codes, metrics = pd.factorize(history["metric"].astype(str), sort=True)
        pair = server_codes.astype(np.int64) * len(metrics) + metric_codes
        present, codes = np.unique(pair, return_inverse=True)
        uniques = pd.MultiIndex.from_arrays(
            [
                np.asarray(servers, dtype=object)[present // len(metrics)],
                np.asarray(metrics, dtype=object)[present % len(metrics)],
            ]
        )
    n = len(uniques)
    first = np.full(n, np.iinfo(np.int64).max)
    last = np.full(n, np.iinfo(np.int64).min)
    np.minimum.at(first, codes, ds)
    np.maximum.at(last, codes, ds)
    offset = ds - first[codes]
    if np.any(offset % step):
        bad = np.unique(codes[offset % step != 0])
        raise ForecastError(f"timestamps off the '{freq}' grid in series {_key_names(uniques, bad)}")
    length = (last - first) // step + 1
    width = int(length.max())
    col = width - length[codes] + offset // step
    flat = codes.astype(np.int64) * width + col
    hits = np.bincount(flat, minlength=n * width)
    if hits.max() > 1:
        dup = np.unique(codes[hits[flat] > 1])
        raise ForecastError(f"duplicate timestamps in series {_key_names(uniques, dup)}; deduplicate in ETL")
    values = np.full(n * width, np.nan)
    values[flat] = pd.to_numeric(history["value"], errors="coerce").to_numpy(dtype=np.float64)
    values[~np.isfinite(values)] = np.nan
    return Panel(
        server_id=np.asarray(uniques.get_level_values(0), dtype=object),
        metric=np.asarray(uniques.get_level_values(1), dtype=object),
        end=last.astype("datetime64[ns]"),
        length=length,
        values=values.reshape(n, width),
        freq=freq,
        tz=None if tz is None else str(tz),
    )


def _run_keys(history: pd.DataFrame) -> tuple[np.ndarray, pd.MultiIndex] | None:
    """Series code per row and the sorted (server_id, metric) keys, looked up once per run of rows.

    A history holds each series as one run of rows, so comparing neighbours finds the series far
    faster than factorising every row's strings; the codes and keys equal the factorised ones. None
    (use the general path) unless every key is a string.
    """
    columns = [history[c].to_numpy() for c in ("server_id", "metric")]
    change = np.zeros(len(history), dtype=bool)
    change[0] = True
    try:
        for column in columns:
            change[1:] |= column[1:] != column[:-1]
    except TypeError:  # e.g. pd.NA, which has no truth value
        return None
    starts = np.flatnonzero(change)
    keys = list(zip(columns[0][starts].tolist(), columns[1][starts].tolist(), strict=True))
    if not all(type(s) is str and type(m) is str for s, m in keys):
        return None
    ordered = sorted(set(keys))
    position = {key: i for i, key in enumerate(ordered)}
    run_codes = np.array([position[key] for key in keys], dtype=np.int64)
    codes = np.repeat(run_codes, np.diff(np.append(starts, len(history))))
    return codes, pd.MultiIndex.from_tuples(ordered)


def _key_names(uniques: pd.MultiIndex, rows: np.ndarray) -> str:
    return examples((f"{uniques[i][0]}/{uniques[i][1]}" for i in rows), _NAMED_SERIES, total=len(rows))


def prediction_frame(
    panel: Panel, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> pd.DataFrame:
    """Long prediction frame from (series x horizon) arrays, clipped to [0, 100], lower <= yhat <= upper.

    Args:
        panel: the fitted panel (keys and last timestamps).
        yhat: point forecasts, (n, horizon).
        lower: interval lower bounds, (n, horizon).
        upper: interval upper bounds, (n, horizon).

    Returns:
        Columns ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``; ``horizon`` rows per series.

    Raises:
        ForecastError: a forecast is not finite (names the series).
    """
    bad = np.flatnonzero(~np.isfinite(yhat).all(axis=1))
    if len(bad):
        raise ForecastError(f"non-finite forecast for series {panel.names(bad)}")
    horizon = yhat.shape[1]
    point = np.clip(yhat, 0.0, 100.0)
    low = np.minimum(np.clip(np.nan_to_num(lower, nan=0.0), 0.0, 100.0), point)
    high = np.maximum(np.clip(np.nan_to_num(upper, nan=100.0), 0.0, 100.0), point)
    ds = panel.timestamps(np.arange(1, horizon + 1))
    frame = pd.DataFrame(
        {
            "server_id": np.repeat(panel.server_id, horizon),
            "metric": np.repeat(panel.metric, horizon),
            "ds": _localise(ds.ravel(), panel.tz),
            "yhat": point.ravel(),
            "yhat_lower": low.ravel(),
            "yhat_upper": high.ravel(),
        }
    )
    return frame.loc[:, list(PREDICTION_COLUMNS)]


def _localise(ds: np.ndarray, tz: str | None) -> np.ndarray | pd.DatetimeIndex:
    """Give naive-UTC timestamps back the input's time zone."""
    if tz is None:
        return ds
    return pd.DatetimeIndex(ds).tz_localize("UTC").tz_convert(tz)


def check_horizon(horizon: int, level: float) -> None:
    """Raise ForecastError for a non-positive horizon or a level outside (0, 100)."""
    if int(horizon) != horizon or horizon < 1:
        raise ForecastError(f"horizon must be a positive whole number of steps, got {horizon!r}")
    if not 0.0 < level < 100.0:
        raise ForecastError(f"interval level must lie strictly between 0 and 100 (percent), got {level!r}")


def row_quantiles(a: np.ndarray, q: np.ndarray) -> np.ndarray:
    """NaN-ignoring quantiles along the last axis, vectorised (``np.nanquantile`` loops per row).

    Args:
        a: (..., m) array; NaN entries are ignored.
        q: quantiles in [0, 1], shape (k,).

    Returns:
        (..., k) quantiles (linear interpolation); NaN where a row has no finite value.
    """
    q = np.asarray(q, dtype=np.float64)
    ordered = np.sort(a, axis=-1)  # NaN sorts last
    count = np.isfinite(a).sum(axis=-1)
    pos = q * np.maximum(count - 1, 0)[..., None]
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0)[..., None])
    frac = pos - lo
    lo_v = np.take_along_axis(ordered, lo, axis=-1)
    hi_v = np.take_along_axis(ordered, hi, axis=-1)
    out = lo_v + frac * (hi_v - lo_v)
    out[count == 0] = np.nan
    return out


def fill_gaps(values: np.ndarray) -> np.ndarray:
    """Fill NaN inside each row by linear interpolation, then carry the ends outward.

    Rows without any finite value are left NaN. Leading padding is filled too, so callers that need
    it untouched must mask it themselves.

    Returns:
        A new (n, m) array.
    """
    n, m = values.shape
    finite = np.isfinite(values)
    idx = np.arange(m)
    prev_idx = np.maximum.accumulate(np.where(finite, idx, -1), axis=1)
    next_idx = np.minimum.accumulate(np.where(finite, idx, m)[:, ::-1], axis=1)[:, ::-1]
    has_prev = prev_idx >= 0
    has_next = next_idx < m
    rows = np.arange(n)[:, None]
    prev_v = values[rows, np.clip(prev_idx, 0, m - 1)]
    next_v = values[rows, np.clip(next_idx, 0, m - 1)]
    span = np.maximum(next_idx - prev_idx, 1)
    weight = np.where(has_prev & has_next, (idx - prev_idx) / span, 0.0)
    out = np.where(has_prev, prev_v, next_v)
    both = has_prev & has_next & ~finite
    out = np.where(both, prev_v + weight * (next_v - prev_v), out)
    return np.where(finite, values, out)


# Windows up to this many steps are sorted in place (memory: rows x steps x window floats); longer
# ones use pandas' rolling median.
_SORTED_WINDOW_MAX = 32


def rolling_median(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Trailing rolling median along each row, NaN ignored: ``pd.DataFrame(values.T).rolling(window,
    min_periods=min_periods).median()`` transposed, with the same numbers.

    Short windows are sorted all at once (pandas runs a skip list per series); the median of an even
    count is the mean of the two middle values, as pandas computes it.

    Returns:
        (n, m) medians; NaN where a window holds fewer than ``min_periods`` known values.
    """
    if window > _SORTED_WINDOW_MAX or values.shape[1] == 0:
        return pd.DataFrame(values.T).rolling(window, min_periods=min_periods).median().to_numpy().T
    n = values.shape[0]
    padded = np.concatenate([np.full((n, window - 1), np.nan), values], axis=1)
    ordered = np.sort(np.lib.stride_tricks.sliding_window_view(padded, window, axis=1), axis=-1)  # NaN last
    count = np.isfinite(ordered).sum(axis=-1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    high = np.take_along_axis(ordered, np.minimum(count // 2, window - 1)[..., None], axis=-1)[..., 0]
    return np.where((count >= max(min_periods, 1)) & (count > 0), (low + high) / 2, np.nan)
