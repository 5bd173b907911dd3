"""MSTL (statsforecast): multiple seasonal-trend decomposition (weekly + yearly) with an AutoETS trend."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from capacity_forecaster.forecast.models.panel import Panel
from capacity_forecaster.forecast.models.statsforecast_adapter import StatsForecastAdapter
from capacity_forecaster.forecast.registry import register_model

# (short season, long season, steps of history needed for the long one) per frequency: a yearly
# season needs two years of daily history; on hourly data the long season is the week.
SEASONS = {"D": (7, 365, 730), "h": (24, 168, 336)}


@register_model("mstl")
class MSTLModel(StatsForecastAdapter):
    """statsforecast ``MSTL``: seasons [7, 365] for series with at least two years of daily history,
    [7] otherwise ([24, 168] / [24] on hourly data); the deseasonalised trend is forecast by AutoETS."""

    name: ClassVar[str] = "mstl"
    min_history: ClassVar[int] = 28
    # Too slow for the default set (seconds per series); run it by name.
    auto: ClassVar[bool] = False

    def _configs(self, panel: Panel) -> tuple[np.ndarray, dict[Any, Any]]:
        from statsforecast.models import MSTL

        short, long, needed = SEASONS[panel.freq]
        finite = np.isfinite(panel.values)
        span = panel.values.shape[1] - np.argmax(finite, axis=1)
        config = (span >= needed).astype(np.int64)
        return config, {
            0: lambda: MSTL(season_length=[short]),
            1: lambda: MSTL(season_length=[short, long]),
        }
