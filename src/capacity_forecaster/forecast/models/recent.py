"""Shared kernels of the recent-window models: robust levels, Theil-Sen slopes and lead-error intervals.

Real daily P95 utilisation switches regimes (idle <-> saturated) and is heavy-tailed, so these
kernels use medians, never means: one glitch day cannot move a level, and after a regime switch the
median of the last ``window`` points follows the new regime once more than half of them are in it.
All functions work on a right-aligned panel matrix (see ``panel.to_panel``) and are vectorised over
series.
"""

from __future__ import annotations

import numpy as np

from capacity_forecaster.forecast.models.panel import rolling_median, row_quantiles

# Origins an interval quantile needs before it is trusted; fewer fall back to the spread rule.
MIN_ERRORS = 10
# Leads at which in-sample errors are measured (steps); others are interpolated between them.
_LEADS = (1, 2, 4, 7, 14, 28, 56, 112, 224)
# Half-width floor (points) of a series too short to measure any lead error.
SHORT_HALF_WIDTH = 10.0
# Seasons behind a seasonal profile, and the observations a phase needs before it gets an offset.
PROFILE_SEASONS = 6
PROFILE_MIN_COUNT = 4


def last_observed(values: np.ndarray, count: int) -> np.ndarray:
    """The last ``count`` observed points per row, right-aligned, NaN-padded on the left.

    Args:
        values: (n, m) right-aligned history, NaN where missing.
        count: points wanted per row.

    Returns:
        (n, count) array; row ``i`` holds row ``i``'s last ``count`` finite values in time order.
    """
    n, m = values.shape
    finite = np.isfinite(values)
    rank_from_end = np.cumsum(finite[:, ::-1], axis=1)[:, ::-1]  # 1 = the last observed point
    take = finite & (rank_from_end <= count)
    out = np.full((n, count), np.nan)
    rows, cols = np.nonzero(take)
    out[rows, count - rank_from_end[rows, cols]] = values[rows, cols]
    return out


def recent_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of the last ``window`` observed points per row (NaN for a row with none)."""
    return row_quantiles(last_observed(values, window), np.array([0.5]))[:, 0]


def seasonal_profile(values: np.ndarray, season: int) -> np.ndarray:
    """Robust seasonal offsets per phase, shrunk by the strength of the seasonal pattern.

    Over the last ``PROFILE_SEASONS`` seasons, each point's deviation from a centred running median
    of one season is taken; a phase's offset is the median of its deviations (0 with fewer than
    ``PROFILE_MIN_COUNT`` of them), and the offsets are centred on their median. The profile is then
    multiplied by the pattern's strength, ``1 - spread(residual)^2 / spread(deviation)^2`` clipped
    to [0, 1] (spreads are mean absolute deviations from the median): the share of the deviations the
    profile explains, after the seasonal strength of Wang, Smith and Hyndman (2006). A weekday
    pattern that repeats gets its full offsets; noise that happens to differ by weekday gets little.

    Args:
        values: (n, m) right-aligned history, NaN where missing.
        season: season length in steps.

    Returns:
        (n, season) offsets; column ``p`` belongs to the steps ``j`` with ``j % season == p``, where
        ``j`` counts the panel's columns (history ``0 .. m - 1``, the forecast ``m, m + 1, ...``).
    """
    n, m = values.shape
    width = min(m, PROFILE_SEASONS * season)
    tail = values[:, m - width:]
    half = season // 2
    # A centred median = a trailing one ending ``half`` steps later; the edges take partial windows.
    padded = np.concatenate([tail, np.full((n, half), np.nan)], axis=1)
    centre = rolling_median(padded, season, min_periods=season - 2)[:, half:]
    deviation = tail - centre
    phase = np.arange(m - width, m) % season
    profile = np.zeros((n, season))
    for p in range(season):
        column = deviation[:, phase == p]
        enough = np.isfinite(column).sum(axis=1) >= PROFILE_MIN_COUNT
        profile[enough, p] = row_quantiles(column[enough], np.array([0.5]))[:, 0]
    profile -= np.median(profile, axis=1, keepdims=True)
    residual = deviation - profile[:, phase]
    with np.errstate(invalid="ignore", divide="ignore"):  # a series without deviations: 0 / 0
        strength = 1.0 - (_mad(residual) / _mad(deviation)) ** 2
    strength = np.clip(np.nan_to_num(strength, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    return profile * strength[:, None]


def _mad(values: np.ndarray) -> np.ndarray:
    """Mean absolute deviation from the median per row, NaN ignored (NaN for an empty row)."""
    centre = row_quantiles(values, np.array([0.5]))[:, 0]
    count = np.isfinite(values).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(np.abs(values - centre[:, None]), axis=1) / count


def theil_sen(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Theil-Sen line through each row of equally spaced points (NaN ignored).

    The slope is the median of all pairwise slopes, the intercept the median of ``y - slope * x``:
    a breakdown point of ~29 %, so a few saturated or idle days do not tilt the line.

    Args:
        points: (n, w) values at x = 0..w-1, NaN where missing.

    Returns:
        ``(slope, level_at_end)`` per row: slope per step, and the line's value at x = w - 1
        (NaN where a row has fewer than two points).
    """
    n, w = points.shape
    i, j = np.triu_indices(w, 1)
    slopes = (points[:, j] - points[:, i]) / (j - i)[None, :]
    slope = row_quantiles(slopes, np.array([0.5]))[:, 0]
    x = np.arange(w, dtype=float)
    intercept = row_quantiles(points - np.nan_to_num(slope)[:, None] * x[None, :], np.array([0.5]))[:, 0]
    return slope, intercept + np.nan_to_num(slope) * (w - 1)


def level_lead_errors(values: np.ndarray, window: int, horizon: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    """In-sample interval offsets of the recent-median rule for leads 1..horizon.

    For each measured lead ``l`` the errors are ``y[t + l] - median(y[t - window + 1 .. t])`` over
    every origin ``t`` of the history; their central ``level`` quantiles are the offsets. Leads
    between measured ones are interpolated; leads beyond the longest measurable one grow with
    ``sqrt(lead)`` (random-walk drift of a level); a series with too few origins gets a normal
    interval on its spread, floored at ``SHORT_HALF_WIDTH`` and growing the same way.

    Args:
        values: (n, m) right-aligned history.
        window: points in the rolling median.
        horizon: steps forecast.
        level: central interval in percent.

    Returns:
        ``(lower, upper)`` offsets from the point forecast, each (n, horizon); lower <= 0 <= upper.
    """
    n, m = values.shape
    alpha = (100.0 - level) / 200.0
    q = np.array([alpha, 1.0 - alpha])
    rolling = rolling_median(values, window, max(1, window // 2))
    leads = [lead for lead in _LEADS if lead < m - window]
    measured = np.full((n, len(leads), 2), np.nan)
    for k, lead in enumerate(leads):
        errors = values[:, lead:] - rolling[:, :-lead]
        quant = row_quantiles(errors, q)
        quant[np.isfinite(errors).sum(axis=1) < MIN_ERRORS] = np.nan
        measured[:, k] = quant
    steps = np.arange(1, horizon + 1, dtype=float)
    out = _interpolate_leads(measured, np.asarray(leads, dtype=float), steps)
    spread = _spread_half_width(values, level)
    wide = spread[:, None] * np.sqrt(steps)[None, :]
    lower = np.where(np.isnan(out[..., 0]), -wide, out[..., 0])
    upper = np.where(np.isnan(out[..., 1]), wide, out[..., 1])
    return np.minimum(lower, 0.0), np.maximum(upper, 0.0)


def centred(lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same interval width, centred on the forecast: ``-/+ (upper - lower) / 2``.

    The recent-level rule's lead errors are biased on a trending series (the median lags growth,
    so its errors are mostly positive); a model that follows the trend keeps their spread, not
    their bias.
    """
    half = (upper - lower) / 2.0
    return -half, half


def _spread_half_width(values: np.ndarray, level: float) -> np.ndarray:
    """A normal half-width on each row's standard deviation, floored at ``SHORT_HALF_WIDTH``."""
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + level / 200.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        finite = np.isfinite(values)
        count = finite.sum(axis=1)
        mean = np.where(count > 0, np.nansum(values, axis=1) / np.maximum(count, 1), 0.0)
        var = np.nansum((values - mean[:, None]) ** 2, axis=1) / np.maximum(count - 1, 1)
    return np.maximum(z * np.sqrt(var), SHORT_HALF_WIDTH)


def _interpolate_leads(measured: np.ndarray, leads: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Offsets at every step from offsets at the measured leads: linear between, ``sqrt`` growth after.

    Fewer origins reach longer leads, so a row's NaNs sit at its longest leads; they are filled from
    the row's longest measured lead with ``sqrt(lead)`` growth first.

    Args:
        measured: (n, k, 2) offsets at ``leads`` (NaN where not measurable).
        leads: (k,) increasing leads.
        steps: (h,) steps wanted.

    Returns:
        (n, h, 2) offsets; NaN for rows with no measured lead at all.
    """
    n = measured.shape[0]
    if len(leads) == 0:
        return np.full((n, len(steps), 2), np.nan)
    ok = np.isfinite(measured[..., 0])
    last = np.maximum.accumulate(np.where(ok, np.arange(len(leads))[None, :], -1), axis=1)
    base = np.take_along_axis(measured, np.maximum(last, 0)[..., None].repeat(2, axis=2), axis=1)
    growth = np.sqrt(leads[None, :] / leads[np.maximum(last, 0)])
    filled = np.where(ok[..., None], measured, base * growth[..., None])
    filled[last < 0] = np.nan
    right = np.clip(np.searchsorted(leads, steps), 1, len(leads) - 1) if len(leads) > 1 else np.zeros(
        len(steps), dtype=np.int64)
    left = np.maximum(right - 1, 0)
    span = np.maximum(leads[right] - leads[left], 1e-9)
    weight = np.clip((steps - leads[left]) / span, 0.0, 1.0) if len(leads) > 1 else np.zeros(len(steps))
    out = filled[:, left] + weight[None, :, None] * (filled[:, right] - filled[:, left])
    beyond = steps > leads[-1]
    out[:, beyond] = filled[:, -1][:, None, :] * np.sqrt(steps[beyond] / leads[-1])[None, :, None]
    return out
