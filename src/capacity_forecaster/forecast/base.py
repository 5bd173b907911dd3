"""The forecasting model protocol and the long-frame conventions every model follows.

History frames are long: ``server_id, metric, ds, value`` sorted by series key then ``ds``, one
row per step of a regular grid (daily by default, hourly where configured). ``value`` may be NaN
where the ETL stage left a gap too long to impute; a model must tolerate that. Predictions are
long frames ``server_id, metric, ds, yhat, yhat_lower, yhat_upper`` with ``horizon`` rows per
series, starting one step after that series' last history row.

A *local* model fits each series on its own (Prophet, ETS, seasonal naive); a *global* model
fits one model across all series it is given (gradient boosting on lag and calendar features), and
its ``fit`` also takes ``extra=``: series it learns from without forecasting them (the stage's
fleet-wide reserve, forecast/reserve.py).
The engine decides how series are grouped into batches; a model only sees what it is given and
must not look at anything else (no globals, no files), so that a backtest at a cutoff cannot
leak information from after it.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Protocol, runtime_checkable

import pandas as pd

PREDICTION_COLUMNS = ("server_id", "metric", "ds", "yhat", "yhat_lower", "yhat_upper")
FREQUENCIES = ("D", "h")


@runtime_checkable
class Model(Protocol):
    """What every forecaster implements.

    Attributes:
        name: the registry name (``seasonal_naive``, ``autoets``, ``prophet`` ...).
        kind: ``local`` (one fit per series) or ``global`` (one fit across the series given).
        min_history: the fewest non-missing history points per series the model needs; the
            engine gives shorter series to the baseline with a recorded reason.
    """

    name: ClassVar[str]
    kind: ClassVar[Literal["local", "global"]]
    min_history: ClassVar[int]

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> Model:
        """Fit on a long history frame and return the fitted model (a new object or self).

        Args:
            history: ``server_id, metric, ds, value`` for one or more series.
            freq: ``D`` (daily) or ``h`` (hourly).
        """
        ...

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """Forecast every fitted series ``horizon`` steps ahead.

        Args:
            horizon: steps to forecast.
            level: central interval in percent (80 -> 10th to 90th percentile).

        Returns:
            Columns ``PREDICTION_COLUMNS``; values clipped to [0, 100].
        """
        ...
