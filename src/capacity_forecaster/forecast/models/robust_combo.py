"""Robust combination: per step, the median of seasonal naive, the recent level and the damped robust trend.

Each of the three is right on some real series and badly wrong on others: seasonal naive keeps a
weekly pattern but copies one noisy week; the recent level ignores noise but lags growth; the
trend follows growth but overshoots after a one-off jump. The median of the three is never the
worst of them, and it is close to the best whenever two agree (a level that is flat and weekly, or
growth that the last week confirms). Combining forecasts is the most reliable gain in forecasting
competitions (M3, M4); the median rather than the mean keeps one wild member from moving it.

Measured on the Bitbrains Rnd VMs (daily P95, cpu and memory) over three splits (mid-August 15-day
and 30-day leads, September 30-day), and on fastStorage (7-day): it had the lowest or second lowest
MAE of the three members and their pairwise means in every split, and beat seasonal naive by 5-33 %
(``benchmarks/bench_real.py`` prints the current numbers). Intervals: the spread of the recent-level
rule's in-sample lead errors, centred on the combination; the stage replaces them with conformal ones.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.models.panel import Panel, check_freq, check_horizon, prediction_frame, to_panel
from capacity_forecaster.forecast.models.recent import (
    centred,
    last_observed,
    level_lead_errors,
    recent_median,
    theil_sen,
)
from capacity_forecaster.forecast.models.recent_level import WINDOW
from capacity_forecaster.forecast.models.robust_trend import PHI, TREND_DAYS
from capacity_forecaster.forecast.models.seasonal_naive import SEASON, last_season
from capacity_forecaster.forecast.registry import register_model

logger = logging.getLogger(__name__)


@register_model("robust_combo")
class RobustCombo:
    """Median of seasonal naive, recent level and damped Theil-Sen trend, step by step (daily data)."""

    name: ClassVar[str] = "robust_combo"
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 14
    freqs: ClassVar[tuple[str, ...]] = ("D",)

    def __init__(self) -> None:
        self._panel: Panel | None = None
        self._season: np.ndarray | None = None
        self._level: np.ndarray | None = None
        self._slope: np.ndarray | None = None
        self._end: np.ndarray | None = None

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> RobustCombo:
        """Fit the three members on each series."""
        check_freq(self.name, freq, self.freqs)
        panel = to_panel(history, freq)
        panel.require_observed(self.name, self.min_history)
        self._panel = panel
        self._season = last_season(panel.values, SEASON[freq])
        self._level = recent_median(panel.values, WINDOW[freq])
        self._slope, self._end = theil_sen(last_observed(panel.values, TREND_DAYS))
        logger.debug("robust_combo fitted %d series", len(panel))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """The step-wise median of the members ``horizon`` steps ahead, with lead-error intervals.

        Returns:
            Columns ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``.
        """
        if self._panel is None or self._season is None or self._level is None or self._slope is None \
                or self._end is None:
            raise ForecastError("robust_combo: predict called before fit")
        check_horizon(horizon, level)
        steps = np.arange(horizon)
        naive = self._season[:, steps % self._season.shape[1]]
        flat = np.repeat(self._level[:, None], horizon, axis=1)
        trend = self._end[:, None] + self._slope[:, None] * np.cumsum(PHI ** (steps + 1))[None, :]
        yhat = np.median(np.stack([naive, flat, np.clip(trend, 0.0, 100.0)]), axis=0)
        lower, upper = centred(*level_lead_errors(self._panel.values, WINDOW[self._panel.freq], horizon, level))
        return prediction_frame(self._panel, yhat, yhat + lower, yhat + upper)
