"""AutoARIMA (statsforecast, stepwise approximation): seasonal ARIMA with a weekly season."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from capacity_forecaster.forecast.models.panel import Panel
from capacity_forecaster.forecast.models.statsforecast_adapter import StatsForecastAdapter
from capacity_forecaster.forecast.registry import register_model

SEASON = {"D": 7, "h": 24}


@register_model("autoarima")
class AutoARIMAModel(StatsForecastAdapter):
    """statsforecast ``AutoARIMA(approximation=True)`` with a weekly season on daily data."""

    name: ClassVar[str] = "autoarima"
    min_history: ClassVar[int] = 28
    # Too slow for the default set (seconds per series); run it by name.
    auto: ClassVar[bool] = False

    def _configs(self, panel: Panel) -> tuple[np.ndarray, dict[Any, Any]]:
        from statsforecast.models import AutoARIMA

        season = SEASON[panel.freq]
        return np.zeros(len(panel), dtype=np.int64), {
            0: lambda: AutoARIMA(season_length=season, approximation=True)
        }
