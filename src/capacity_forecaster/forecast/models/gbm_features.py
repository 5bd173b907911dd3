"""Features of the global gradient-boosting model: what is known at a forecast origin, about a target day.

Everything is computed for all series and all origins at once from cumulative sums over the panel
matrix (missing points are skipped), then gathered for (series, origin, steps-ahead) triples. A
feature at origin ``o`` uses history up to and including ``o`` only; the year-ago seasonal deviation
of a target day is blanked when its centred window would reach past the origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capacity_forecaster.etl.calendar import MONTH_END_RANKS
from capacity_forecaster.forecast.calendar_features import CalendarFeatures

LEVEL_DAYS = 28
SHORT_DAYS = 7
SLOPE_DAYS = (91, 182)
PROFILE_WEEKS = 8
EVENT_DAYS = 182
YEAR = 364  # 52 weeks: the same weekday a year earlier
_SEASON_SMOOTH = 7
_SEASON_LEVEL = 91

FEATURE_NAMES = (
    "steps_ahead",
    "metric",
    "level",
    "level_short_minus_level",
    "spread",
    "slope_91",
    "slope_182",
    "trend_91",
    "trend_182",
    "weekday",
    "weekday_profile",
    "month_end_rank",
    "month_end_profile",
    "is_quarter_month",
    "is_holiday",
    "day_of_year",
    "year_ago_deviation",
    "two_years_ago_deviation",
    "year_ago_change",
    "two_years_ago_change",
)
CATEGORICAL = ("metric", "weekday")
# Features in points of utilisation (divided by the level when the model works in relative terms).
IN_POINTS = (
    "level_short_minus_level",
    "spread",
    "slope_91",
    "slope_182",
    "trend_91",
    "trend_182",
    "weekday_profile",
    "month_end_profile",
    "year_ago_deviation",
    "two_years_ago_deviation",
    "year_ago_change",
    "two_years_ago_change",
)


@dataclass(frozen=True)
class OriginStats:
    """Statistics per (series, origin), each (n, width); profiles carry a leading category axis."""

    level: np.ndarray
    level_short: np.ndarray
    spread: np.ndarray
    slopes: tuple[np.ndarray, ...]
    weekday_profile: np.ndarray  # (7, n, width): mean deviation from the level per weekday
    month_end_profile: np.ndarray  # (ranks, n, width): mean deviation on the last business days
    seasonal_deviation: np.ndarray  # centred week mean minus centred quarter mean, (n, width)
    week_mean: np.ndarray  # centred week mean, (n, width)

    def take(self, rows: np.ndarray) -> OriginStats:
        """The statistics of the given series rows only."""
        return OriginStats(self.level[rows], self.level_short[rows], self.spread[rows],
                           tuple(s[rows] for s in self.slopes), self.weekday_profile[:, rows],
                           self.month_end_profile[:, rows], self.seasonal_deviation[rows], self.week_mean[rows])


def _window_sums(values: np.ndarray, window: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Trailing-window (sum, count) of finite values (times optional 0/1 weights), (n, width) each."""
    finite = np.isfinite(values)
    if weights is not None:
        finite = finite & weights
    filled = np.where(finite, values, 0.0)
    pad = np.zeros((values.shape[0], 1))
    csum = np.concatenate([pad, np.cumsum(filled, axis=1)], axis=1)
    ccount = np.concatenate([pad, np.cumsum(finite, axis=1)], axis=1)
    end = np.arange(1, values.shape[1] + 1)
    start = np.maximum(end - window, 0)
    return csum[:, end] - csum[:, start], ccount[:, end] - ccount[:, start]


def _mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def _rolling_slope(values: np.ndarray, window: int) -> np.ndarray:
    """Least-squares slope (points per day) over the trailing window, NaN with fewer than 3 points."""
    t = np.broadcast_to(np.arange(values.shape[1], dtype=np.float64), values.shape)
    finite = np.isfinite(values)
    n = _window_sums(np.where(finite, 1.0, np.nan), window)[0]
    st = _window_sums(np.where(finite, t, np.nan), window)[0]
    stt = _window_sums(np.where(finite, t * t, np.nan), window)[0]
    sy = _window_sums(values, window)[0]
    sty = _window_sums(values * t, window)[0]
    denominator = n * stt - st * st
    ok = (n >= 3) & (denominator > 1e-9)
    return np.divide(n * sty - st * sy, denominator, out=np.full(values.shape, np.nan), where=ok)


def _centred_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving mean (NaN-skipping); the value at ``u`` uses ``u - window//2 .. u + window//2``."""
    total, count = _window_sums(values, window)
    mean = _mean(total, count)
    half = window // 2
    out = np.full(values.shape, np.nan)
    out[:, : values.shape[1] - half] = mean[:, half:]
    return out


def origin_stats(values: np.ndarray, cal: CalendarFeatures) -> OriginStats:
    """Origin statistics of every (series, step) of the history.

    Args:
        values: (n, width) history, NaN where missing.
        cal: calendar of the history steps, arrays (n, width).

    Returns:
        OriginStats.
    """
    level = _mean(*_window_sums(values, LEVEL_DAYS))
    level_short = _mean(*_window_sums(values, SHORT_DAYS))
    total_sq, count = _window_sums(values * values, LEVEL_DAYS)
    spread = np.sqrt(np.maximum(_mean(total_sq, count) - level * level, 0.0))
    deviation = values - level
    weekday = np.stack(
        [_mean(*_window_sums(deviation, 7 * PROFILE_WEEKS, cal.weekday == day)) for day in range(7)]
    )
    month_end = np.stack(
        [_mean(*_window_sums(deviation, EVENT_DAYS, cal.month_end_rank == rank)) for rank in range(MONTH_END_RANKS)]
    )
    seasonal = _centred_mean(values, _SEASON_SMOOTH) - _centred_mean(values, _SEASON_LEVEL)
    return OriginStats(
        level=level,
        level_short=level_short,
        spread=spread,
        slopes=tuple(_rolling_slope(values, days) for days in SLOPE_DAYS),
        weekday_profile=weekday,
        month_end_profile=month_end,
        seasonal_deviation=seasonal,
        week_mean=_centred_mean(values, _SEASON_SMOOTH),
    )


def feature_matrix(
    stats: OriginStats,
    cal: CalendarFeatures,
    metric_code: np.ndarray,
    series: np.ndarray,
    origin: np.ndarray,
    ahead: np.ndarray,
) -> np.ndarray:
    """Feature rows for (series, origin, steps-ahead) triples.

    Args:
        stats: origin statistics over the history, (n, width).
        cal: calendar over history and future steps, arrays (n, width + horizon).
        metric_code: integer code of each series' metric, (n,).
        series, origin, ahead: equal-length integer arrays; the target step is ``origin + ahead``.

    Returns:
        float64 array (rows, len(FEATURE_NAMES)); NaN where a feature is unknown.
    """
    target = origin + ahead
    weekday = cal.weekday[series, target]
    rank = cal.month_end_rank[series, target]
    month_end = np.where(
        rank >= 0,
        stats.month_end_profile[np.clip(rank, 0, MONTH_END_RANKS - 1), series, origin],
        0.0,
    )
    month_end = np.where(rank >= MONTH_END_RANKS, 0.0, month_end)
    slope_a, slope_b = stats.slopes[0][series, origin], stats.slopes[1][series, origin]
    columns = [
        ahead.astype(np.float64),
        metric_code[series].astype(np.float64),
        stats.level[series, origin],
        stats.level_short[series, origin] - stats.level[series, origin],
        stats.spread[series, origin],
        slope_a,
        slope_b,
        slope_a * ahead,
        slope_b * ahead,
        weekday.astype(np.float64),
        stats.weekday_profile[weekday, series, origin],
        rank.astype(np.float64),
        month_end,
        cal.is_quarter_month[series, target].astype(np.float64),
        cal.is_holiday[series, target].astype(np.float64),
        cal.day_of_year[series, target].astype(np.float64),
        _seasonal_lag(stats, series, origin, target, YEAR),
        _seasonal_lag(stats, series, origin, target, 2 * YEAR),
        _change_lag(stats, series, origin, target, YEAR),
        _change_lag(stats, series, origin, target, 2 * YEAR),
    ]
    return np.stack(columns, axis=1)


def _change_lag(
    stats: OriginStats, series: np.ndarray, origin: np.ndarray, target: np.ndarray, lag: int
) -> np.ndarray:
    """What happened ``lag`` steps earlier over the same span: the week mean around ``target - lag``
    minus the level at ``origin - lag`` (the yearly analogue of the target), if known by the origin."""
    source, start = target - lag, origin - lag
    known = (start >= 0) & (source + _SEASON_SMOOTH // 2 <= origin)
    out = np.full(len(series), np.nan)
    s = series[known]
    out[known] = stats.week_mean[s, source[known]] - stats.level[s, start[known]]
    return out


def _seasonal_lag(
    stats: OriginStats, series: np.ndarray, origin: np.ndarray, target: np.ndarray, lag: int
) -> np.ndarray:
    """The seasonal deviation ``lag`` steps before the target, if its centred window ends by the origin."""
    source = target - lag
    known = (source >= 0) & (source + _SEASON_LEVEL // 2 <= origin)
    out = np.full(len(series), np.nan)
    out[known] = stats.seasonal_deviation[series[known], source[known]]
    return out
