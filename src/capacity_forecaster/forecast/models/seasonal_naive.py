"""Seasonal naive: repeat the last season (a week of days, a day of hours); the baseline every model must beat.

Intervals come from the model's own in-sample errors at the same lead: for a forecast ``k`` seasons
ahead, the empirical quantiles of ``y[t] - y[t - k * season]`` over the series' history. Where the
history is too short for lead ``k``, the widest measured lead is stretched by ``sqrt(k / k_measured)``;
a series too short to measure any seasonal error gets a wide interval from its spread.
"""

from __future__ import annotations

import logging
from statistics import NormalDist
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.models.panel import (
    Panel,
    check_freq,
    check_horizon,
    prediction_frame,
    row_quantiles,
    to_panel,
)
from capacity_forecaster.forecast.registry import register_model

logger = logging.getLogger(__name__)

SEASON = {"D": 7, "h": 24}
# Seasonal errors needed to trust the empirical quantiles of one lead.
_MIN_ERRORS = 14
# Seasons of history searched backwards for a phase that is missing in the last season.
_LOOKBACK_SEASONS = 8
# Interval half-width floor (percentage points) for a series with no measurable seasonal error.
_SHORT_SERIES_HALF_WIDTH = 10.0


@register_model("seasonal_naive")
class SeasonalNaive:
    """Weekly (daily data) or daily (hourly data) seasonal naive forecast.

    Works on any series with at least one non-missing point: a missing phase in the last season is
    taken from the most recent earlier season that has it, or else the mean of the last season's
    observed points.
    """

    name: ClassVar[str] = "seasonal_naive"
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 1
    freqs: ClassVar[tuple[str, ...]] = ("D", "h")

    def __init__(self) -> None:
        self._panel: Panel | None = None
        self._season_values: np.ndarray | None = None

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> SeasonalNaive:
        """Remember the last season of every series (see class docstring)."""
        check_freq(self.name, freq, self.freqs)
        panel = to_panel(history, freq)
        panel.require_observed(self.name, self.min_history)
        self._panel = panel
        self._season_values = last_season(panel.values, SEASON[freq])
        logger.debug("seasonal_naive fitted %d series", len(panel))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """Repeat the last season ``horizon`` steps ahead with empirical seasonal-error intervals.

        Returns:
            Columns ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``.
        """
        if self._panel is None or self._season_values is None:
            raise ForecastError("seasonal_naive: predict called before fit")
        check_horizon(horizon, level)
        panel = self._panel
        season = SEASON[panel.freq]
        steps = np.arange(horizon)
        yhat = self._season_values[:, steps % season]
        leads = steps // season + 1
        lo_q, hi_q = lead_error_quantiles(panel.values, season, int(leads.max()), level)
        return prediction_frame(panel, yhat, yhat + lo_q[:, leads - 1], yhat + hi_q[:, leads - 1])


def last_season(values: np.ndarray, season: int) -> np.ndarray:
    """The last ``season`` values per row; gaps filled from earlier seasons, then the row's recent mean.

    Args:
        values: (n, steps) right-aligned history.
        season: season length.

    Returns:
        (n, season) values, column ``j`` is the phase of step ``j + 1`` after the end.
    """
    n, width = values.shape
    seasons = min(_LOOKBACK_SEASONS, -(-width // season))
    pad = seasons * season - width
    recent = np.concatenate([np.full((n, max(pad, 0)), np.nan), values[:, max(-seasons * season, -width):]], axis=1)
    cube = recent.reshape(n, seasons, season)
    finite = np.isfinite(cube)
    # Index of the latest season with a value, per (row, phase); -1 if none.
    latest = np.where(finite, np.arange(seasons)[None, :, None], -1).max(axis=1)
    picked = np.take_along_axis(cube, np.maximum(latest, 0)[:, None, :], axis=1)[:, 0, :]
    picked[latest < 0] = np.nan
    fallback = _recent_mean(values, season)
    return np.where(np.isfinite(picked), picked, fallback[:, None])


def _recent_mean(values: np.ndarray, season: int) -> np.ndarray:
    """Mean of the last ``season`` observed points per row (any age)."""
    finite = np.isfinite(values)
    # Rank observed points from the end: 1 = the last one.
    rank_from_end = np.cumsum(finite[:, ::-1], axis=1)[:, ::-1]
    take = finite & (rank_from_end <= season)
    total = np.where(take, values, 0.0).sum(axis=1)
    count = take.sum(axis=1)
    return np.divide(total, count, out=np.full(len(values), np.nan), where=count > 0)


def lead_error_quantiles(
    values: np.ndarray, season: int, max_lead: int, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Empirical quantiles of the seasonal naive's in-sample errors for leads 1..max_lead seasons.

    Args:
        values: (n, steps) history.
        season: season length.
        max_lead: largest lead in seasons.
        level: central interval in percent.

    Returns:
        (lower, upper) offsets from the point forecast, each (n, max_lead); lower <= 0 <= upper.
    """
    n, width = values.shape
    alpha = (100.0 - level) / 200.0
    q = np.array([alpha, 1.0 - alpha])
    out = np.full((n, max_lead, 2), np.nan)
    measurable = min(max_lead, (width - _MIN_ERRORS) // season)
    for lead in range(1, measurable + 1):
        lag = lead * season
        errors = values[:, lag:] - values[:, :-lag]
        quant = row_quantiles(errors, q)
        quant[np.isfinite(errors).sum(axis=1) < _MIN_ERRORS] = np.nan
        out[:, lead - 1] = quant
    # Stretch the widest measured lead to longer ones (random-walk growth of seasonal errors).
    measured = np.isfinite(out[:, :, 0])
    last = np.maximum.accumulate(np.where(measured, np.arange(max_lead)[None, :], -1), axis=1)
    has = last >= 0
    rows = np.arange(n)[:, None]
    base = out[rows, np.maximum(last, 0)]
    growth = np.sqrt((np.arange(max_lead)[None, :] + 1.0) / (np.maximum(last, 0) + 1.0))
    stretched = base * growth[..., None]
    spread = _short_series_half_width(values, level)
    wide = np.stack([-spread, spread], axis=-1)[:, None, :] * np.sqrt(np.arange(1, max_lead + 1))[None, :, None]
    result = np.where(has[..., None], stretched, wide)
    return np.minimum(result[..., 0], 0.0), np.maximum(result[..., 1], 0.0)


def _short_series_half_width(values: np.ndarray, level: float) -> np.ndarray:
    """Half-width for series without seasonal errors: a normal interval on the spread, floored."""
    z = NormalDist().inv_cdf(0.5 + level / 200.0)
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    mean = np.divide(np.where(finite, values, 0.0).sum(axis=1), count, out=np.zeros(len(values)), where=count > 0)
    var = np.where(finite, (values - mean[:, None]) ** 2, 0.0).sum(axis=1)
    sd = np.sqrt(np.divide(var, count - 1, out=np.zeros(len(values)), where=count > 1))
    return np.maximum(z * sd, _SHORT_SERIES_HALF_WIDTH)
