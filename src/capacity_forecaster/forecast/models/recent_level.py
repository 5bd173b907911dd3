"""Recent level: the median of the last week of observations, held flat; a robust baseline for real data.

Real daily P95 switches between regimes (idle, busy, saturated) more than it follows seasons, and
one glitch day is common. The median of the last ``window`` observed points (a week of days, a
week of hours) ignores single spikes, spans every weekday, and follows a regime switch once most
of the window is in the new regime. Intervals come from the rule's own in-sample errors at each
lead (``recent.level_lead_errors``); the forecast stage replaces them with conformal ones where
backtests allow.
"""

from __future__ import annotations

import logging
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.models.panel import Panel, check_freq, check_horizon, prediction_frame, to_panel
from capacity_forecaster.forecast.models.recent import level_lead_errors, recent_median
from capacity_forecaster.forecast.registry import register_model

logger = logging.getLogger(__name__)

# One week of grid steps.
WINDOW = {"D": 7, "h": 168}


@register_model("recent_level")
class RecentLevel:
    """Median of the last week of observed values, flat over the horizon."""

    name: ClassVar[str] = "recent_level"
    kind: ClassVar[Literal["local", "global"]] = "local"
    # Any known point gives a level: it is the short-history baseline (forecast/stage.py SHORT_BASELINE).
    min_history: ClassVar[int] = 1
    freqs: ClassVar[tuple[str, ...]] = ("D", "h")

    def __init__(self) -> None:
        self._panel: Panel | None = None
        self._level: np.ndarray | None = None

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> RecentLevel:
        """Take each series' median of its last ``WINDOW[freq]`` observed points."""
        check_freq(self.name, freq, self.freqs)
        panel = to_panel(history, freq)
        panel.require_observed(self.name, self.min_history)
        self._panel = panel
        self._level = recent_median(panel.values, WINDOW[freq])
        logger.debug("recent_level fitted %d series", len(panel))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """The level repeated ``horizon`` steps with in-sample lead-error intervals.

        Returns:
            Columns ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``.
        """
        if self._panel is None or self._level is None:
            raise ForecastError("recent_level: predict called before fit")
        check_horizon(horizon, level)
        yhat = np.repeat(self._level[:, None], horizon, axis=1)
        lower, upper = level_lead_errors(self._panel.values, WINDOW[self._panel.freq], horizon, level)
        return prediction_frame(self._panel, yhat, yhat + lower, yhat + upper)
