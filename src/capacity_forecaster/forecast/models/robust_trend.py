"""Robust trend: a damped Theil-Sen line through the last six weeks; catches steady growth toward a limit.

Capacity planning is about growth: a VM climbing from 10 % to 40 % over a month keeps climbing more
often than it drops back. Least squares lets one saturated or idle day tilt the line; Theil-Sen (the
median of pairwise slopes) ignores up to ~29 % of such days. The slope is damped (``PHI`` per
step), so a forecast stops climbing after a few weeks instead of extrapolating a month's slope over
half a year. Intervals: the spread of the recent-level rule's in-sample lead errors, centred on this
line.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.models.panel import Panel, check_freq, check_horizon, prediction_frame, to_panel
from capacity_forecaster.forecast.models.recent import centred, last_observed, level_lead_errors, theil_sen
from capacity_forecaster.forecast.models.recent_level import WINDOW as LEVEL_WINDOW
from capacity_forecaster.forecast.registry import register_model

logger = logging.getLogger(__name__)

# Observed days the line is fitted on (six weeks: long enough to see growth, short enough to follow it).
TREND_DAYS = 42
# Damping of the slope per step: the trend adds at most PHI / (1 - PHI) = 19 steps of slope.
PHI = 0.95


@register_model("robust_trend")
class RobustTrend:
    """Damped Theil-Sen trend through the last ``TREND_DAYS`` observed days (daily data only)."""

    name: ClassVar[str] = "robust_trend"
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 14
    freqs: ClassVar[tuple[str, ...]] = ("D",)

    def __init__(self) -> None:
        self._panel: Panel | None = None
        self._slope: np.ndarray | None = None
        self._level: np.ndarray | None = None

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> RobustTrend:
        """Fit each series' line on its last ``TREND_DAYS`` observed points."""
        check_freq(self.name, freq, self.freqs)
        panel = to_panel(history, freq)
        panel.require_observed(self.name, self.min_history)
        self._panel = panel
        self._slope, self._level = theil_sen(last_observed(panel.values, TREND_DAYS))
        logger.debug("robust_trend fitted %d series", len(panel))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """The damped line ``horizon`` steps ahead with lead-error intervals around it.

        Returns:
            Columns ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``.
        """
        if self._panel is None or self._slope is None or self._level is None:
            raise ForecastError("robust_trend: predict called before fit")
        check_horizon(horizon, level)
        damped = np.cumsum(PHI ** np.arange(1, horizon + 1))
        yhat = self._level[:, None] + self._slope[:, None] * damped[None, :]
        window = LEVEL_WINDOW[self._panel.freq]
        lower, upper = centred(*level_lead_errors(self._panel.values, window, horizon, level))
        return prediction_frame(self._panel, yhat, yhat + lower, yhat + upper)
