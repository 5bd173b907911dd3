"""Per-server workload profile features from the observed history (the input of clustering)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.risk.seasonal import period_calendar, period_uplifts
from capacity_forecaster.schema import DS, METRIC, SERVER_ID, UNUSUAL_FLAGS, VALUE, flagged, require_columns

CPU_OBSERVED = "cpu_observed"
PROFILE_COLUMNS = (
    "cpu_level", "cpu_p95", "memory_level", "memory_p95", "network_level", "cpu_variability",
    "weekly_amplitude", "month_end_uplift", "quarter_end_uplift", "year_end_uplift", "trend",
    "trend_change", "step_change", "memory_cpu_ratio", "leak_signal",
)
_DAYS_PER_YEAR = 365.25
# The level-shift and slope-change searches leave this many weeks at either end, so that a split
# always has enough weeks on both sides to be a pattern rather than an edge effect.
_EDGE_WEEKS = 8
_LEVEL_FLOOR = 1.0


def _wide(metrics: pd.DataFrame, metric: str, servers: pd.Index, days: pd.DatetimeIndex) -> np.ndarray:
    """(servers, days) matrix of one metric, NaN where missing or flagged as an anomaly.

    Duplicate (server, day) rows, which the processed table does not have, are averaged.
    """
    rows = metrics[metrics[METRIC] == metric]
    usable = (rows[VALUE].notna() & ~flagged(rows, UNUSUAL_FLAGS)).to_numpy()
    row = servers.get_indexer(pd.Index(rows[SERVER_ID]))
    col = ((pd.to_datetime(rows[DS]) - days[0]) // pd.Timedelta(days=1)).to_numpy()
    keep = usable & (row >= 0) & (col >= 0) & (col < len(days))
    flat = row[keep] * len(days) + col[keep]
    total = np.bincount(flat, weights=rows[VALUE].to_numpy(dtype=float)[keep], minlength=len(servers) * len(days))
    count = np.bincount(flat, minlength=len(servers) * len(days))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan).reshape(len(servers), len(days))


def _nanmedian(values: np.ndarray, axis: int = 1) -> np.ndarray:
    with np.errstate(all="ignore"):
        if values.size == 0 or values.shape[axis] == 0:
            return np.full(values.shape[0], np.nan)
        all_nan = np.isnan(values).all(axis=axis)
        filled = np.where(all_nan[:, None], 0.0, values) if axis == 1 else values
        out = np.nanmedian(filled, axis=axis)
        return np.where(all_nan, np.nan, out)


def _weekly(values: np.ndarray, business: np.ndarray) -> np.ndarray:
    """Median of the business days of each whole week, gaps filled by linear interpolation."""
    n_weeks = values.shape[1] // 7
    if n_weeks == 0:
        return np.zeros((values.shape[0], 0))
    start = values.shape[1] - n_weeks * 7  # whole weeks ending on the last observed day
    block = np.where(business[None, start:], values[:, start:], np.nan).reshape(values.shape[0], n_weeks, 7)
    weeks = np.stack([_nanmedian(block[:, w, :]) for w in range(n_weeks)], axis=1)
    frame = pd.DataFrame(weeks.T).interpolate(limit_direction="both")
    return frame.to_numpy(dtype=float).T


def _row_dots(rows: np.ndarray, other: np.ndarray, block: int = 64) -> np.ndarray:
    """``rows @ other.T`` computed row by row: (n, w) x (m, w) -> (n, m).

    A BLAS product's value for one row depends on the rows beside it (its blocking), so the profile
    of a server would depend on the chunk of servers it is computed with; a sum along each row does not.
    """
    out = np.empty((rows.shape[0], other.shape[0]))
    for start in range(0, rows.shape[0], block):
        out[start:start + block] = (rows[start:start + block, None, :] * other[None, :, :]).sum(axis=2)
    return out


def _best_extra_regressor(
    base: np.ndarray, resid_y: np.ndarray, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each series, the candidate regressor that most reduces the residual sum of squares.

    Frisch-Waugh: with every candidate and the series residualised on ``base``, adding candidate
    ``z`` reduces the SSE by ``(r_z . r_y)^2 / (r_z . r_z)`` and gets the coefficient
    ``(r_z . r_y) / (r_z . r_z)``, for all candidates and series in two matrix products.

    Returns:
        (SSE reduction, coefficient, slope correction) of the best candidate per series; the
        line's slope in the model with the candidate is the plain slope minus the correction.
    """
    proj, *_ = np.linalg.lstsq(base, candidates.T, rcond=None)
    resid_z = candidates - (base @ proj).T
    norm = np.maximum((resid_z**2).sum(axis=1), 1e-12)
    dots = _row_dots(resid_y.T, resid_z).T
    gain = dots**2 / norm[:, None]
    best = gain.argmax(axis=0)
    cols = np.arange(resid_y.shape[1])
    coef = dots[best, cols] / norm[best]
    return gain[best, cols], coef, coef * proj[1, best]


def _shape_changes(weekly: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trend, slope change and level shift from weekly levels: (trend, trend_change, step_change).

    Two models compete with a straight line: a line plus one level shift (a step: a migrated
    workload) and a line plus one slope change (a hinge: growth that accelerates), each at its
    best week. step_change is the share of the line's residual variance the step explains beyond
    what the hinge explains, times the shift relative to the level; trend_change is the same for
    the hinge with its slope change per year. trend is the line's slope per year in the step
    model (so a migration does not pass for growth), relative to the level.
    """
    n, w = weekly.shape
    zeros = np.zeros(n)
    if w < 2 * _EDGE_WEEKS + 4 or n == 0:
        return zeros, zeros, zeros
    t = np.arange(w, dtype=float) / (_DAYS_PER_YEAR / 7.0)
    y = weekly.T
    base = np.column_stack([np.ones(w), t])
    coef = _row_dots(weekly, np.linalg.pinv(base)).T
    resid_y = y - (base[:, :1] * coef[0] + base[:, 1:] * coef[1])
    sse_line = np.maximum((resid_y**2).sum(axis=0), 1e-9)
    splits = np.arange(_EDGE_WEEKS, w - _EDGE_WEEKS)
    steps = (np.arange(w)[None, :] >= splits[:, None]).astype(float)
    hinges = np.maximum(0.0, t[None, :] - t[splits][:, None])
    step_gain, step_size, step_slope_fix = _best_extra_regressor(base, resid_y, steps)
    hinge_gain, hinge_size, _ = _best_extra_regressor(base, resid_y, hinges)
    step_share = np.clip(step_gain / sse_line, 0.0, 1.0)
    hinge_share = np.clip(hinge_gain / sse_line, 0.0, 1.0)
    scale = np.maximum(level, _LEVEL_FLOOR)
    trend = (coef[1] - step_slope_fix) / scale
    step_change = np.clip(step_share - hinge_share, 0.0, 1.0) * np.abs(step_size) / scale
    trend_change = np.clip(hinge_share - step_share, 0.0, 1.0) * hinge_size / scale
    return trend, trend_change, step_change


def _no_empty_rows(values: np.ndarray) -> np.ndarray:
    """Rows that are all NaN become zeros, so that nan-percentiles stay quiet and finite."""
    empty = np.asarray(np.isnan(values).all(axis=1))
    return np.where(empty[:, None], 0.0, values)


def _leak_signal(memory: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Saw-tooth score of memory: steady daily rises (median day-to-day change) with rare deep drops.

    Measured as the median daily change relative to the memory level, times the share of the
    range that the deepest drops (5th percentile of changes) give back, times how consistently it
    rises: 0 where it rises on at most half its days (noise rises on about half: Bitbrains Rnd VM 270's
    memory swings between 4 and 24 % and scored as a leak), 1 from 70 % of its days up. A leak rises
    most days and falls back at each restart, ordinary noise does neither.
    """
    diff = np.diff(memory, axis=1)
    if diff.shape[1] == 0:
        return np.zeros(memory.shape[0])
    with np.errstate(all="ignore"):
        rise = _nanmedian(diff)
        drop = -np.nanpercentile(_no_empty_rows(diff), 1, axis=1)
        high, low = np.nanpercentile(_no_empty_rows(memory), [95, 5], axis=1)
        span = high - low
    scale = np.maximum(level, _LEVEL_FLOOR)
    score = np.maximum(rise, 0.0) / scale * np.clip(drop / np.maximum(span, _LEVEL_FLOOR), 0.0, 1.0) * 100.0
    known = ~np.isnan(diff)
    with np.errstate(invalid="ignore", divide="ignore"):
        up = (diff > 0).sum(axis=1) / known.sum(axis=1)
    consistency = np.clip((np.nan_to_num(up) - 0.5) / 0.2, 0.0, 1.0)
    return np.nan_to_num(score * consistency)


def server_profiles(metrics: pd.DataFrame, business_days: int = 3,
                    span: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> pd.DataFrame:
    """Workload profile features per server from its observed daily history.

    Days flagged ``is_anomaly`` or ``is_outlier`` are left out. Levels are medians of business
    days, so weekends and holidays do not drag a busy server down.

    Args:
        metrics: long processed metrics (server_id, ds, metric, value, optional is_anomaly /
            is_outlier); cpu and memory are required for a meaningful profile, network optional.
        business_days: length of a period-end window in business days.
        span: first and last day of the fleet's history; None takes them from ``metrics``. Weekly
            features are cut into whole weeks ending on the last day, so a chunk of servers gets the
            profiles the whole fleet gives them only when it is cut the same way.

    Returns:
        One row per server: server_id, cpu_level, cpu_p95, memory_level, memory_p95,
        network_level, cpu_variability (interquartile range over level), weekly_amplitude
        (share of business-day load absent at weekends), month_end_uplift, quarter_end_uplift,
        year_end_uplift (cpu, relative), trend (cpu slope over the last year, relative, per year),
        trend_change (slope change), step_change (level shift), memory_cpu_ratio (log),
        leak_signal (memory saw-tooth), all 0 where the server has no value of their metric, and
        cpu_observed (whether it has cpu values).
    """
    require_columns(metrics, (SERVER_ID, DS, METRIC, VALUE), "metrics")
    servers = pd.Index(sorted(metrics[SERVER_ID].unique()), name=SERVER_ID)
    if len(servers) == 0:
        return pd.DataFrame(columns=[SERVER_ID, *PROFILE_COLUMNS])
    ds = pd.to_datetime(metrics[DS]).dt.normalize()
    first, last = (ds.min(), ds.max()) if span is None else (pd.Timestamp(span[0]).normalize(),
                                                              pd.Timestamp(span[1]).normalize())
    days = pd.date_range(first, last, freq="D")
    frame = metrics.assign(**{DS: ds})
    cpu = _wide(frame, "cpu", servers, days)
    memory = _wide(frame, "memory", servers, days)
    network = _wide(frame, "network", servers, days)
    business = period_calendar(days, business_days)["is_business"].reindex(days).to_numpy(dtype=bool)

    def level_of(values: np.ndarray) -> np.ndarray:
        return _nanmedian(np.where(business[None, :], values, np.nan))

    cpu_level, memory_level = level_of(cpu), level_of(memory)
    with np.errstate(all="ignore"):
        cpu_p95 = np.nanpercentile(_no_empty_rows(cpu), 95, axis=1)
        memory_p95 = np.nanpercentile(_no_empty_rows(memory), 95, axis=1)
        business_cpu = _no_empty_rows(np.where(business[None, :], cpu, np.nan))  # a server seen at weekends only
        q75, q25 = (np.nanpercentile(business_cpu, q, axis=1) for q in (75, 25))
    weekend = _nanmedian(np.where(~business[None, :], cpu, np.nan))
    scale = np.maximum(cpu_level, _LEVEL_FLOOR)
    trend, trend_change, step_change = _shape_changes(_weekly(cpu, business), cpu_level)
    long_cpu = pd.DataFrame({SERVER_ID: np.repeat(servers.to_numpy(), len(days)), METRIC: "cpu",
                             DS: np.tile(days.to_numpy(), len(servers)), VALUE: cpu.ravel()})
    uplifts = period_uplifts(long_cpu, business_days).set_index(SERVER_ID).reindex(servers).fillna(0.0)
    out = pd.DataFrame({
        SERVER_ID: servers.to_numpy(),
        "cpu_level": cpu_level,
        "cpu_p95": cpu_p95,
        "memory_level": memory_level,
        "memory_p95": memory_p95,
        "network_level": level_of(network),
        "cpu_variability": (q75 - q25) / scale,
        "weekly_amplitude": np.clip(1.0 - weekend / scale, -1.0, 1.0),
        "month_end_uplift": uplifts["month_end_uplift"].to_numpy(),
        "quarter_end_uplift": uplifts["quarter_end_uplift"].to_numpy(),
        "year_end_uplift": uplifts["year_end_uplift"].to_numpy(),
        "trend": trend,
        "trend_change": trend_change,
        "step_change": step_change,
        "memory_cpu_ratio": np.log(np.maximum(memory_level, _LEVEL_FLOOR) / scale),
        "leak_signal": _leak_signal(memory, memory_level),
    })
    numeric = list(PROFILE_COLUMNS)
    # Before the fill: a server without cpu is not idle (helper-60), whichever days its values fall on (helper-61).
    out[CPU_OBSERVED] = np.isfinite(cpu).any(axis=1)
    out[numeric] = out[numeric].astype(float).fillna(0.0)
    return out
