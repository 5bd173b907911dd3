"""AutoETS (statsforecast): exponential smoothing with automatic error/trend/season selection, weekly season."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from capacity_forecaster.forecast.models.panel import Panel
from capacity_forecaster.forecast.models.statsforecast_adapter import StatsForecastAdapter
from capacity_forecaster.forecast.registry import register_model

SEASON = {"D": 7, "h": 24}


@register_model("autoets")
class AutoETSModel(StatsForecastAdapter):
    """statsforecast ``AutoETS`` with a weekly season on daily data (daily season on hourly data).

    ETS selects error, trend (possibly damped) and season components by AICc per series; it knows no
    yearly season and no business calendar.
    """

    name: ClassVar[str] = "autoets"
    min_history: ClassVar[int] = 28
    # Too slow for the default set (seconds per series); run it by name.
    auto: ClassVar[bool] = False

    def _configs(self, panel: Panel) -> tuple[np.ndarray, dict[Any, Any]]:
        from statsforecast.models import AutoETS

        season = SEASON[panel.freq]
        return np.zeros(len(panel), dtype=np.int64), {0: lambda: AutoETS(season_length=season)}
