"""Rolling-origin backtests: what history each fit may see, series triage and the cutoff plan.

Cutoffs are anchored on each series' own last day: window ``k`` of ``n`` (0 = oldest) has cutoff
``last - (horizon + (n - 1 - k) * step)`` steps and scores the ``horizon`` steps after it, so the
newest window ends on the last observed day. The default step is ``horizon // 2``: for a 3-year
daily history and h = 180 the three cutoffs sit 360, 270 and 180 days before the end, every
backtest fit still has >= 2 years (the same yearly-season choice the final fit makes) and the
windows cover the last full year of seasonal phases for interval calibration. A step of
``horizon`` would cut the oldest fit to 555 days and test a different model configuration.

Short histories get a design of their own (``design``): the scored lead and the step shrink with
the history, so two months of daily data still backtest (and choose between) models for a 30-day
horizon; the forecast steps beyond the scored lead are marked as extrapolation by the stage.

Leakage guard: ``history_until`` slices by position and re-checks ``ds <= cutoff``; it is the
only way the engine builds a fit's input.

``published_paths`` keeps, for the model each series published, its forecast at every cutoff with
the interval it would have had there, for checking breach probabilities against what happened.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.errors import ForecastError, SchemaError
from capacity_forecaster.forecast.runs import lookup, series_spans
from capacity_forecaster.schema import BACKTEST_FORECAST_COLUMNS, DS, METRIC, SERIES_KEY, SERVER_ID, VALUE

HISTORY_COLUMNS = (SERVER_ID, METRIC, DS, VALUE)
# MASE scale and seasonal-difference lag: one week of steps.
SEASON = {"D": 7, "h": 168}
STEPS_PER_DAY = {"D": 1, "h": 24}
TWO_YEARS_DAYS = 730
YEAR_DAYS = 364  # 52 weeks: the shortest history with a same-weekday value a year earlier


def step_delta(freq: str) -> pd.Timedelta:
    """One grid step (a day or an hour)."""
    return pd.Timedelta(1, unit="D" if freq == "D" else "h")


def steps_between(later: pd.Series | np.ndarray | np.datetime64, earlier: pd.Series | np.ndarray, freq: str
                  ) -> np.ndarray:
    """Whole grid steps from ``earlier`` to ``later`` (int64, floor division; negative before)."""
    gap = (np.asarray(later, dtype="datetime64[ns]") - np.asarray(earlier, dtype="datetime64[ns]")).astype("int64")
    return gap // int(step_delta(freq).value)


def prepare_history(metrics: pd.DataFrame, freq: str) -> pd.DataFrame:
    """The processed metrics as a regular-grid long frame, one row per series per step.

    Args:
        metrics: processed metrics (``server_id, ds, metric, value`` and any other columns).
        freq: ``D`` or ``h``.

    Returns:
        ``server_id, metric, ds, value`` sorted by series then ``ds``; steps missing inside a
        series' span are added with NaN values; daily ``ds`` are normalised to midnight.

    Raises:
        SchemaError: a series has two rows for one step (naming it), or ``ds`` is not a timestamp.
    """
    frame = metrics[[SERVER_ID, METRIC, DS, VALUE]].copy()
    try:
        if not pd.api.types.is_datetime64_any_dtype(frame[DS]):
            frame[DS] = pd.to_datetime(frame[DS], cache=False)
        frame[DS] = frame[DS].dt.floor("D" if freq == "D" else "h")
    except (TypeError, ValueError) as err:
        raise SchemaError(f"metrics: column 'ds' must hold dates or timestamps: {err}") from err
    if frame[DS].dt.tz is not None:
        frame[DS] = frame[DS].dt.tz_convert("UTC").dt.tz_localize(None)
    frame[SERVER_ID] = frame[SERVER_ID].astype(str)
    frame[METRIC] = frame[METRIC].astype(str)
    frame[VALUE] = pd.to_numeric(frame[VALUE], errors="coerce").astype(float)
    dup = frame.duplicated([*SERIES_KEY, DS])
    if dup.any():
        first = frame.loc[dup].iloc[0]
        raise SchemaError(
            f"metrics: series ({first[SERVER_ID]}, {first[METRIC]}) has {int(dup.sum())} duplicate row(s) per "
            f"{'day' if freq == 'D' else 'hour'}, e.g. at {first[DS]}; roll the data up to one row per step "
            f"or set forecast.freq to match the data"
        )
    if frame.empty:
        return frame.reset_index(drop=True)
    span = frame.groupby(list(SERIES_KEY), sort=True, observed=True)[DS].agg(["min", "max"]).reset_index()
    delta = step_delta(freq)
    lengths = steps_between(span["max"], span["min"], freq) + 1
    starts = np.repeat(span["min"].to_numpy(), lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    grid = pd.DataFrame(
        {
            SERVER_ID: np.repeat(span[SERVER_ID].to_numpy(), lengths),
            METRIC: np.repeat(span[METRIC].to_numpy(), lengths),
            DS: starts + offsets * delta.to_timedelta64(),
        }
    )
    return grid.merge(frame, on=[*SERIES_KEY, DS], how="left", sort=False)[list(HISTORY_COLUMNS)]


def series_index(history: pd.DataFrame) -> pd.DataFrame:
    """Row ranges and simple statistics of every series in a prepared history.

    Returns:
        One row per series, in history order: ``server_id, metric, start, stop`` (row positions,
        stop exclusive), ``first_ds, last_ds, n_rows, n_obs, vmin, vmax``.
    """
    keys = [history[k] for k in SERIES_KEY]
    grouped = history.groupby(keys, sort=False, observed=True)
    out = grouped[DS].agg(first_ds="min", last_ds="max", n_rows="size")
    stats = grouped[VALUE].agg(n_obs="count", vmin="min", vmax="max")
    out = out.join(stats).reset_index()
    out["stop"] = np.cumsum(out["n_rows"].to_numpy())
    out["start"] = out["stop"] - out["n_rows"]
    return out


def triage(index: pd.DataFrame, min_history_steps: int, freq: str) -> pd.DataFrame:
    """Decide per series whether models are fitted, with the reason recorded.

    Rules, first match wins: no known value -> ``skip`` (no forecast can be made); every known
    value equal -> ``baseline`` (flat); fewer than ``min_history_steps`` known values ->
    ``baseline`` with wide intervals; otherwise ``model`` (series under two years are noted: no yearly
    season is fitted, and under a year no yearly pattern at all).

    Returns:
        ``server_id, metric, n_obs, first_ds, last_ds, status, reason``.
    """
    unit = "days" if freq == "D" else "hours"
    per_day = STEPS_PER_DAY[freq]
    n_obs = index["n_obs"].to_numpy()
    status = np.full(len(index), "model", dtype=object)
    reason = np.full(len(index), "", dtype=object)
    span_days = index["n_rows"].to_numpy() // per_day
    # Yearly seasonality needs two years (harmonic, MSTL, Prophet); under one, not even a year-ago lag exists.
    reason[span_days < TWO_YEARS_DAYS] = ("under two years of history: no yearly season fitted (it needs two years); "
                                          "a year-ago lag only where a model uses one")
    under_year = span_days < YEAR_DAYS
    reason[under_year] = [f"{n} days of history (under a year): too short for any yearly pattern"
                          for n in span_days[under_year]]
    short = n_obs < min_history_steps
    status[short] = "baseline"
    reason[short] = [f"short history: {n} {unit} known, {min_history_steps} needed; baseline with wide intervals"
                     for n in n_obs[short]]
    constant = (index["vmax"] - index["vmin"]).abs().to_numpy() < 1e-9
    status[constant] = "baseline"
    reason[constant] = [f"constant at {v:.4g}: flat baseline" for v in index["vmin"].to_numpy()[constant]]
    empty = n_obs == 0
    status[empty] = "skip"
    reason[empty] = "all values missing: no forecast possible"
    out = index[[*SERIES_KEY, "n_obs", "first_ds", "last_ds"]].copy()
    out["status"] = status
    out["reason"] = reason
    return out.reset_index(drop=True)


# Adaptive design (see ``design``), in days: the fit a long series keeps before its oldest cutoff,
# the shortest fit any window may have, and the shortest scored lead.
LONG_FIT_DAYS = 56
FIT_FLOOR_DAYS = 14
MIN_LEAD_DAYS = 7


def design(index: pd.DataFrame, *, horizon: int, windows: int, step: int, freq: str) -> pd.DataFrame:
    """The backtest design of every series, from its own history length and the horizon.

    A series of ``L`` steps keeps its first ``fit = min(LONG_FIT, max(FIT_FLOOR, L // 2))`` steps for
    fitting; the rest (``spare = L - fit``) can be held out. Then:

    - scored lead ``h_b = min(horizon, max(MIN_LEAD, spare // 2))``: the full horizon when history
      allows, otherwise half of what can be held out, so that two months of daily data with
      h = 30 still score 15-day leads in several windows;
    - step between cutoffs: ``step`` when ``h_b`` is the full horizon, else ``max(1, h_b // 2)``;
    - windows ``min(windows, 1 + (spare - h_b) // step)``; none when ``spare < min(horizon, MIN_LEAD)``.

    For a 3-year daily series and h = 180 this is the fixed design (3 windows of 180 days, 90
    apart). Forecast steps beyond ``h_b`` were never validated: the stage marks them as
    extrapolation and widens their intervals.

    Args:
        index: ``series_index`` rows (``n_rows`` = steps from first to last row).
        horizon: forecast horizon in steps.
        windows: the most windows per series (``forecast.backtest_windows``).
        step: steps between cutoffs at the full horizon.
        freq: ``D`` or ``h``.

    Returns:
        ``server_id, metric, bt_horizon, bt_step, bt_windows, fit_steps`` aligned with ``index``
        (``bt_windows`` 0 where the series is too short to backtest).
    """
    per_day = STEPS_PER_DAY[freq]
    length = index["n_rows"].to_numpy(dtype=np.int64)
    fit = np.minimum(LONG_FIT_DAYS * per_day, np.maximum(FIT_FLOOR_DAYS * per_day, length // 2))
    spare = np.maximum(length - fit, 0)
    lead = np.minimum(horizon, np.maximum(MIN_LEAD_DAYS * per_day, spare // 2))
    stride = np.where(lead >= horizon, step, np.maximum(1, lead // 2))
    count = np.minimum(windows, 1 + np.maximum(spare - lead, 0) // stride)
    count = np.where(spare < np.minimum(horizon, MIN_LEAD_DAYS * per_day), 0, count)
    count = np.where(spare < lead, 0, count)
    return pd.DataFrame({SERVER_ID: index[SERVER_ID].to_numpy(), METRIC: index[METRIC].to_numpy(),
                         "bt_horizon": lead, "bt_step": stride, "bt_windows": count, "fit_steps": fit})


def plan_cutoffs(history: pd.DataFrame, index: pd.DataFrame, *, horizon: int, windows: int, step: int,
                 freq: str) -> pd.DataFrame:
    """The backtest cutoffs of every series in ``index``, per its adaptive ``design``.

    Window ``k`` of a series' ``n`` (0 = oldest) has cutoff ``last - (h_b + (n - 1 - k) * step_b)``
    and scores the ``h_b`` steps after it (``horizon`` column), so the newest window ends on the
    last observed day.

    Args:
        history: prepared history (see ``prepare_history``).
        index: rows of ``series_index`` for the series to backtest.
        horizon: forecast horizon in steps.
        windows: the most windows per series.
        step: steps between consecutive cutoffs at the full horizon.
        freq: ``D`` or ``h``.

    Returns:
        ``server_id, metric, window, cutoff, n_train`` (known values up to the cutoff), ``horizon``
        (steps scored after the cutoff), sorted by series and window.
    """
    empty = pd.DataFrame({SERVER_ID: pd.Series(dtype=object), METRIC: pd.Series(dtype=object),
                          "window": pd.Series(dtype="int64"), "cutoff": pd.Series(dtype="datetime64[ns]"),
                          "n_train": pd.Series(dtype="int64"), "horizon": pd.Series(dtype="int64")})
    if windows == 0 or index.empty:
        return empty
    plan = design(index, horizon=horizon, windows=windows, step=step, freq=freq)
    count = plan["bt_windows"].to_numpy()
    rows = np.repeat(np.arange(len(index)), count)
    if len(rows) == 0:
        return empty
    window = np.arange(len(rows)) - np.repeat(np.cumsum(count) - count, count)
    lead = plan["bt_horizon"].to_numpy()[rows]
    back = lead + (count[rows] - 1 - window) * plan["bt_step"].to_numpy()[rows]
    starts = index["start"].to_numpy()[rows]
    pos = index["stop"].to_numpy()[rows] - 1 - back
    ok = pos >= starts
    known = np.concatenate([[0], np.cumsum(history[VALUE].notna().to_numpy())])
    out = pd.DataFrame(
        {
            SERVER_ID: index[SERVER_ID].to_numpy()[rows][ok],
            METRIC: index[METRIC].to_numpy()[rows][ok],
            "window": window[ok],
            "cutoff": index["last_ds"].to_numpy()[rows][ok] - back[ok] * step_delta(freq).to_timedelta64(),
            "n_train": known[pos[ok] + 1] - known[starts[ok]],
            "horizon": lead[ok],
        }
    )
    # A fit that is mostly gaps is no test of a model: at least half its steps must be known.
    out = out[out["n_train"] >= plan["fit_steps"].to_numpy()[rows][ok] // 2]
    return out.sort_values([*SERIES_KEY, "window"], kind="mergesort").reset_index(drop=True)


def history_until(history: pd.DataFrame, index: pd.DataFrame, cutoff: pd.Timestamp | None,
                  freq: str) -> pd.DataFrame:
    """The history of the series in ``index`` up to and including ``cutoff``, nothing after it.

    Args:
        history: prepared history.
        index: ``series_index`` rows of the series wanted (their ``start``/``stop`` positions).
        cutoff: last timestamp a fit may see; None keeps each series' whole history.
        freq: ``D`` or ``h`` (the grid step of ``history``).

    Returns:
        ``server_id, metric, ds, value`` rows of those series with ``ds <= cutoff``.

    Raises:
        ForecastError: a row after the cutoff slipped through (a stale index); never expected.
    """
    starts = index["start"].to_numpy()
    stops = index["stop"].to_numpy()
    if cutoff is not None:
        inside = steps_between(np.datetime64(cutoff, "ns"), index["first_ds"].to_numpy(), freq)
        stops = np.minimum(stops, starts + np.maximum(inside + 1, 0))
    lengths = np.maximum(stops - starts, 0)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    part = history.iloc[np.repeat(starts, lengths) + offsets]
    if cutoff is not None and len(part) and part[DS].max() > cutoff:
        raise ForecastError(f"internal: history after cutoff {cutoff} reached a fit; the series index is stale")
    return part.reset_index(drop=True)


def attach_actuals(predictions: pd.DataFrame, history: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Add the actual ``y`` and the lead ``step`` (1 = first step after the cutoff) to predictions.

    Args:
        predictions: rows with ``server_id, metric, cutoff, ds`` and forecast columns.
        history: prepared history (actuals; NaN where unknown).
        freq: ``D`` or ``h``.

    Returns:
        ``predictions`` columns + ``y`` and ``step`` (int).
    """
    spans = series_spans(history, step_delta(freq).to_timedelta64())
    if spans is None:  # not a prepared history: the plain join
        out = predictions.merge(
            history.rename(columns={VALUE: "y"}), on=[*SERIES_KEY, DS], how="left", sort=False
        )
    else:
        # The same rows the left join pairs, found by position: series start + steps from its first day.
        row = lookup(predictions, spans, list(SERIES_KEY))
        known = row >= 0
        first = np.where(known, spans["first"].to_numpy()[np.maximum(row, 0)], 0)
        gap = predictions[DS].to_numpy(dtype="datetime64[ns]").view(np.int64) - first
        unit = int(step_delta(freq).value)
        at = gap // unit
        known &= (gap % unit == 0) & (at >= 0) & (at < spans["n"].to_numpy()[np.maximum(row, 0)])
        y = np.full(len(predictions), np.nan)
        y[known] = history[VALUE].to_numpy(dtype=float)[spans["start"].to_numpy()[row[known]] + at[known]]
        out = predictions.reset_index(drop=True).assign(y=y)
    out["step"] = steps_between(out[DS], out["cutoff"], freq)
    return out


def published_paths(points: pd.DataFrame, published: pd.DataFrame, windows: int | None = None) -> pd.DataFrame:
    """The backtest forecasts of each series' published model, with honest interval bounds.

    ``points`` must carry bounds calibrated on the *other* windows (``intervals.cross_window_bounds``),
    so a window's interval never saw that window's errors. With a single window in ``points`` the
    bounds were calibrated on the window itself; such paths would flatter any check made with them,
    so none are returned.

    Args:
        points: backtest points of every model: ``server_id, metric, model, window, cutoff, ds, y,
            yhat, yhat_lower, yhat_upper`` (``y`` NaN where the actual is unknown).
        published: ``server_id, metric, model``: the model whose forecast each series published.
        windows: backtest windows in the fleet when ``points`` is one chunk of it (default: in ``points``).

    Returns:
        ``BACKTEST_FORECAST_COLUMNS`` (server_id, metric, model, cutoff, ds, y, yhat, yhat_lower,
        yhat_upper), sorted by series, cutoff and ``ds``; empty with fewer than two windows.
    """
    columns = list(BACKTEST_FORECAST_COLUMNS)
    if (points["window"].nunique() if windows is None else windows) < 2:
        return points.iloc[0:0][columns].reset_index(drop=True)
    keys = [*SERIES_KEY, "model"]
    # The inner join with the (few) published keys, looked up per run of equal keys (``runs.lookup``).
    out = points.loc[lookup(points, published[keys].drop_duplicates(), keys) >= 0, columns]
    return out.sort_values([*SERIES_KEY, "cutoff", DS], kind="mergesort").reset_index(drop=True)
