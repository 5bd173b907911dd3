"""Robust per-series decomposition, statistical outliers and stuck-value glitches on (series x days) grids.

Each series is split into a local level (centred rolling median), a multiplicative day-type profile
(weekday, or weekday holiday: load that disappears at weekends scales with the load), additive
month-end effects (batch jobs on the last business days, separately for quarter months) and a
residual. Medians keep a few outage or spike days from bending the baseline they are judged against.

The noise scale is the median absolute deviation of the residual against the mean of the levels just
before and just after each day, so saw-tooth or trending series are not credited with a noise level
their shape alone creates. It grows with the expected load (noise is heteroscedastic). The event
z-score keeps a deviation only when it has the same sign against the centred level and against the
levels of the few days before and after: a 1-3 day excursion scores high, a level shift or restart
(which agrees with one side) scores 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from capacity_forecaster.etl.calendar import MONTH_END_RANKS, DayCalendar
from capacity_forecaster.etl.grid import run_lengths

# Three weeks: a whole number of weeks, so every window holds each weekday equally often, and short
# enough to follow level shifts and the year-end season.
LEVEL_WINDOW_DAYS = 21
LEVEL_MIN_OBS = 5
# The level is evaluated every LEVEL_STEP days and interpolated in between (a rolling median is the
# costliest step); the rough first pass that only feeds the day-type factors can be coarser.
LEVEL_STEP = 3
ROUGH_LEVEL_STEP = 7
# Days on each side that an event is compared with; longer than the 1-3 days an outage lasts.
SIDE_WINDOW_DAYS = 5
SIDE_MIN_OBS = 3
# A calendar effect needs this many observations of its day type in a series, else it is neutral.
EFFECT_MIN_OBS = 3
# Noise grows with the load: the scale of a day is proportional to (expected load + this offset).
SCALE_OFFSET = 3.0
# Floor for the residual scale (percentage points): a flat series would otherwise turn a rounding
# step into a huge z-score.
MIN_SCALE = 0.25
MAD_TO_SIGMA = 1.4826
# Series with fewer observed days get no outlier or anomaly flags: their scale is not known.
MIN_SERIES_OBS = 14
# A run of identical values is a glitch when fewer than this many such runs are expected by chance.
STUCK_CHANCE = 0.05
# A series where most neighbouring days are equal is flat by nature (a fixed allocation, a gauge
# that rarely moves): its runs are not glitches.
FLAT_SERIES_SHARE = 0.5
# A rise on one of the first or last days of a month that recurs at the same place in other months is a
# monthly batch, not an event: the days of a month's start or end window (calendar days, or business
# days by rank) that are compared, how far apart two days may lie and still be "the same place", and the
# event z-score a day of another month needs to count as the same rise.
PERIOD_WINDOW_DAYS = 7
PERIOD_WINDOW_RANKS = 5
PERIOD_TOLERANCE = 1
RECUR_Z = 3.0
# Work size (cells x window) of one rolling-median chunk: bounds the temporary sort buffers.
_ROLLING_CHUNK_CELLS = 1 << 22


@dataclass(frozen=True)
class Decomposition:
    """A robust split of each series into level, calendar effects and residual.

    Attributes:
        level: local deseasonalised level per cell (series x days).
        expected: the value a normal day would have: level x day-type factor + month-end effect.
        scale: noise standard deviation per cell (heteroscedastic).
        z: (value - expected) / scale, NaN where the cell has no value.
        z_event: signed event z-score (0 when the centred and one-sided deviations disagree in sign).
        n_obs: observed days per series.
    """

    level: np.ndarray
    expected: np.ndarray
    scale: np.ndarray
    z: np.ndarray
    z_event: np.ndarray
    n_obs: np.ndarray


def nanmedian_rows(block: np.ndarray, min_obs: int = 1) -> np.ndarray:
    """Median over the last axis skipping NaN; NaN where fewer than ``min_obs`` values.

    Sorting puts NaN last, so the median of the n known values sits at positions (n-1)//2 and n//2;
    this avoids ``np.nanmedian``'s slow per-row path on arrays with NaN.
    """
    if block.shape[-1] == 0:
        return np.full(block.shape[:-1], np.nan)
    ordered = np.sort(block, axis=-1)
    n = (~np.isnan(block)).sum(axis=-1)
    lo = np.take_along_axis(ordered, np.maximum((n - 1) // 2, 0)[..., None], axis=-1)[..., 0]
    hi = np.take_along_axis(ordered, np.maximum(n // 2, 0)[..., None], axis=-1)[..., 0]
    return np.where(n >= max(min_obs, 1), (lo + hi) / 2.0, np.nan)


def rolling_median(
    values: np.ndarray, window: int, min_obs: int, center: bool = True, step: int = 1
) -> np.ndarray:
    """Rolling median along days, skipping NaN, per series.

    Args:
        values: (series x days) matrix.
        window: window length in days.
        min_obs: fewer observations in the window give NaN.
        center: centred window; otherwise the window ends at the day itself.
        step: evaluate the median every ``step`` days (and on the last day) and interpolate linearly
            in between; 1 evaluates every day.

    Returns:
        Matrix of the same shape.
    """
    n_series, n_days = values.shape
    if values.size == 0:
        return values.copy()
    left = window // 2 if center else window - 1
    padded = np.pad(values, ((0, 0), (left, window - 1 - left)), constant_values=np.nan)
    anchors = np.unique(np.append(np.arange(0, n_days, step), n_days - 1))
    at_anchor = np.empty((n_series, len(anchors)))
    chunk = max(1, _ROLLING_CHUNK_CELLS // (len(anchors) * window))
    for start in range(0, n_series, chunk):
        windows = sliding_window_view(padded[start:start + chunk], window, axis=1)[:, anchors, :]
        at_anchor[start:start + chunk] = nanmedian_rows(windows, min_obs)
    if step == 1:
        return at_anchor
    day = np.arange(n_days)
    upper = np.clip(np.searchsorted(anchors, day), 1, max(len(anchors) - 1, 1))
    if len(anchors) == 1:
        return np.repeat(at_anchor, n_days, axis=1)
    lower = upper - 1
    frac = (day - anchors[lower]) / (anchors[upper] - anchors[lower])
    return at_anchor[:, lower] * (1.0 - frac) + at_anchor[:, upper] * frac



def _with_fallback(level: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Fill cells without a local level with the series' overall median."""
    missing = np.isnan(level)
    rows = np.flatnonzero(missing.any(axis=1))
    if len(rows) == 0:
        return level
    out = level.copy()
    with np.errstate(all="ignore"):
        overall = nanmedian_rows(values[rows], 1)
    out[rows] = np.where(missing[rows], overall[:, None], level[rows])
    return out


def day_factors(values: np.ndarray, level: np.ndarray, cal: DayCalendar) -> np.ndarray:
    """Multiplicative day-type factor per cell (weekday 0-6, weekday holiday 7), business days ~1."""
    day_class = cal.day_class()
    with np.errstate(all="ignore"):
        ratio = values / np.maximum(level, 0.5)
    factors = np.ones((values.shape[0], 8))
    for c in range(8):
        cols = np.flatnonzero(day_class == c)
        if len(cols) >= EFFECT_MIN_OBS:
            med = nanmedian_rows(ratio[:, cols], EFFECT_MIN_OBS)
            factors[:, c] = np.where(np.isnan(med) | (med <= 0), 1.0, med)
    factors /= np.median(factors[:, :5], axis=1, keepdims=True)
    return factors[:, day_class]


def month_end_effects(resid: np.ndarray, cal: DayCalendar) -> np.ndarray:
    """Additive effect per cell of the last MONTH_END_RANKS business days (quarter months apart)."""
    rank = cal.month_end_rank
    near_end = (rank >= 0) & (rank < MONTH_END_RANKS)
    month_class = np.where(near_end, rank + MONTH_END_RANKS * cal.is_quarter_month, -1)
    effects = np.zeros(resid.shape)
    for c in range(2 * MONTH_END_RANKS):
        cols = np.flatnonzero(month_class == c)
        if len(cols) >= EFFECT_MIN_OBS:
            med = nanmedian_rows(resid[:, cols], EFFECT_MIN_OBS)
            effects[:, cols] = np.nan_to_num(med)[:, None]
    return effects


def robust_scale(resid: np.ndarray) -> np.ndarray:
    """MAD-based standard deviation per series, floored at MIN_SCALE (NaN for a series with no values)."""
    scale = np.full(resid.shape[0], np.nan)
    if resid.size == 0:
        return scale
    with np.errstate(all="ignore"):
        centre = nanmedian_rows(resid, 1)
        mad = nanmedian_rows(np.abs(resid - centre[:, None]), 1)
    scale = MAD_TO_SIGMA * mad
    return np.where(np.isnan(scale), np.nan, np.maximum(scale, MIN_SCALE))


def decompose(values: np.ndarray, cal: DayCalendar) -> Decomposition:
    """Robustly decompose every series of a grid and score each observed day.

    Args:
        values: (series x days) matrix, NaN where no usable value.
        cal: calendar of the grid's days.

    Returns:
        The Decomposition.
    """
    n_obs = (~np.isnan(values)).sum(axis=1)
    rough = rolling_median(values, LEVEL_WINDOW_DAYS, LEVEL_MIN_OBS, step=ROUGH_LEVEL_STEP)
    factor = day_factors(values, _with_fallback(rough, values), cal)
    level = rolling_median(values / factor, LEVEL_WINDOW_DAYS, LEVEL_MIN_OBS, step=LEVEL_STEP)
    level = _with_fallback(level, values / factor)
    month_end = month_end_effects(values - level * factor, cal)
    expected = level * factor + month_end
    resid = values - expected
    deseasonalised = values - (expected - level)
    trailing = rolling_median(deseasonalised, SIDE_WINDOW_DAYS, SIDE_MIN_OBS, center=False)
    before = np.full(values.shape, np.nan)
    before[:, 1:] = trailing[:, :-1]
    after = np.full(values.shape, np.nan)
    after[:, :-SIDE_WINDOW_DAYS] = trailing[:, SIDE_WINDOW_DAYS:]
    with np.errstate(all="ignore"):
        weight = np.maximum(expected, 0.0) + SCALE_OFFSET
        weight /= nanmedian_rows(weight, 1)[:, None]
        sides = np.where(np.isnan(before), after, np.where(np.isnan(after), before, (before + after) / 2))
        scale = robust_scale((deseasonalised - sides) / weight)[:, None] * weight
        z = resid / scale
        z_before = np.where(np.isnan(before), z, (deseasonalised - before) / scale)
        z_after = np.where(np.isnan(after), z, (deseasonalised - after) / scale)
    stacked = np.stack([z, z_before, z_after])
    magnitude = np.abs(stacked).min(axis=0)
    z_event = np.where((stacked < 0).all(axis=0), -magnitude, 0.0)
    z_event = np.where((stacked > 0).all(axis=0), magnitude, z_event)
    z_event[np.isnan(z)] = np.nan
    # A batch at the start or end of every month is the series' pattern, not an event (the month-end
    # effects above need EFFECT_MIN_OBS months of each kind, and they follow business days only).
    z_event[recurring_in_month(z_event, cal) & (z_event > 0)] = 0.0
    return Decomposition(level=level, expected=expected, scale=scale, z=z, z_event=z_event, n_obs=n_obs)


def recurring_in_month(z_event: np.ndarray, cal: DayCalendar) -> np.ndarray:
    """Cells near a month's start or end whose rise recurs at the same place in other months.

    A day lies at a place of its month four ways: its calendar day from the month's start or end
    (within ``PERIOD_WINDOW_DAYS``), and its business-day rank from the start or end (within
    ``PERIOD_WINDOW_RANKS``). Another month shows the same rise when one of its days at a place
    within ``PERIOD_TOLERANCE`` of this day's (same anchor, start or end) has an event z-score above
    ``RECUR_Z``. The rise recurs when that holds for at least one other month and for at least half
    of the other months with an observed day at those places: a batch on the last three business
    days, or on calendar days 27-31, seen in two of three months, recurs; a one-off spike needs an
    equal rise at the same place in half the other months (chance, for a random spike, is small).
    Only the months in the grid are seen, so a series needs two months of data for anything to recur.

    Args:
        z_event: (series x days) signed event z-scores (NaN where no value).
        cal: calendar of the grid's days.

    Returns:
        Boolean matrix, True for the cells whose rise recurs (whatever their own sign or size).
    """
    out = np.zeros(z_event.shape, dtype=bool)
    if z_event.size == 0:
        return out
    days = cal.dates
    month = days.astype("datetime64[M]")
    if len(np.unique(month)) < 2:
        return out
    day_of_month = (days - month.astype("datetime64[D]")).astype(np.int64)
    days_left = ((month + 1).astype("datetime64[D]") - days).astype(np.int64) - 1
    with np.errstate(invalid="ignore"):
        elevated = z_event > RECUR_Z
    # Only series with a rise in at least two months can have one that recurs.
    rows = np.flatnonzero((_monthly_any(elevated, month) > 0).sum(axis=1) >= 2)
    if len(rows) == 0:
        return out
    elevated = elevated[rows]
    observed = ~np.isnan(z_event[rows])
    found = np.zeros(elevated.shape, dtype=bool)
    for places in (((day_of_month, PERIOD_WINDOW_DAYS), (cal.month_start_rank, PERIOD_WINDOW_RANKS)),
                   ((days_left, PERIOD_WINDOW_DAYS), (cal.month_end_rank, PERIOD_WINDOW_RANKS))):
        inside = np.zeros(len(days), dtype=bool)
        for place, window in places:
            inside |= (place >= 0) & (place < window)
        for d in np.flatnonzero(inside):
            near = np.zeros(len(days), dtype=bool)
            for place, window in places:
                if 0 <= place[d] < window:
                    near |= (place >= 0) & (np.abs(place - place[d]) <= PERIOD_TOLERANCE)
            near &= month != month[d]
            cols = np.flatnonzero(near)
            if len(cols) == 0:
                continue
            hits = _monthly_any(elevated[:, cols], month[cols]).sum(axis=1)
            seen = _monthly_any(observed[:, cols], month[cols]).sum(axis=1)
            found[:, d] = (hits >= 1) & (2 * hits >= seen)
    out[rows] = found
    return out


def _monthly_any(cells: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Per row, whether any cell of each month is set: (rows x months), ``month`` sorted by day."""
    starts = np.flatnonzero(np.r_[True, month[1:] != month[:-1]])
    return np.logical_or.reduceat(cells, starts, axis=1)


def stuck_cells(values: np.ndarray, min_run: int, varied: np.ndarray | None = None) -> np.ndarray:
    """Repeated cells of an implausible run of identical consecutive values (a stuck sensor).

    A run of ``min_run`` or more exactly equal values is a glitch unless it sits at the 0 or 100
    bound (idle or saturated servers, clipped values), the series is flat by nature (more than
    FLAT_SERIES_SHARE of its neighbouring days equal), or it repeats values so often that such a run
    is expected by chance: with ``p`` the series' rate of equal neighbours outside long runs, about
    ``pairs * p ** (length - 1)`` runs of that length occur by chance, and the run is flagged only
    when that is below STUCK_CHANCE. Short series therefore never qualify. The first value of a run
    is kept: a stuck sensor repeats its last good reading. A day whose samples were not all equal
    (``varied``) repeats nothing: a quantised daily P95 (Bitbrains Rnd VM 100 at 2.200 % seven days
    running, with samples up to 11 % each day) is not a stuck sensor.

    Args:
        values: (series x days) matrix, NaN where no value.
        min_run: shortest run (in values) that can be a glitch.
        varied: (series x days) matrix, True where the day's samples varied (a roll-up of sub-daily
            samples says so); None when unknown (daily sources): runs are judged on the values alone.

    Returns:
        Boolean matrix, True for the repeats (every cell of a glitch run but its first).
    """
    out = np.zeros(values.shape, dtype=bool)
    if values.shape[1] < 2:
        return out
    nxt, prev = values[:, 1:], values[:, :-1]
    with np.errstate(invalid="ignore"):
        equal = (nxt == prev) & (nxt > 0.0) & (nxt < 100.0)
    if varied is not None:
        equal &= ~varied[:, 1:]
    pairs = (~np.isnan(nxt) & ~np.isnan(prev)).sum(axis=1)
    run = run_lengths(equal)
    long_run = run >= min_run - 1
    ties = (equal & ~long_run).sum(axis=1)
    p = (ties + 1.0) / (pairs + 2.0)
    chance = pairs[:, None] * p[:, None] ** np.maximum(run, 1)
    flat = equal.sum(axis=1) > FLAT_SERIES_SHARE * pairs
    out[:, 1:] = equal & long_run & (chance < STUCK_CHANCE) & ~flat[:, None]
    return out


def outlier_cells(decomp: Decomposition, threshold: float) -> np.ndarray:
    """Observed cells whose event z-score exceeds ``threshold`` in absolute value (enough history only)."""
    with np.errstate(invalid="ignore"):
        return (np.abs(decomp.z_event) > threshold) & (decomp.n_obs >= MIN_SERIES_OBS)[:, None]
