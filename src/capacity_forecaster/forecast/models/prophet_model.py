"""Prophet adapter: weekly + yearly seasonality, NYSE holidays and month/quarter-end regressors, per series.

Prophet is imported only when this model is fitted. Its cap/floor bound only the trend, so forecasts and
intervals are clipped to [0, 100] afterwards. Uncertainty sampling is off by default (it dominates
Prophet's predict time); the interval is then the central range of the in-sample residuals, widened
with the distance from the history Prophet fitted its last trend segment on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import holidays
import numpy as np
import pandas as pd

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.calendar_features import EVENT_NAMES, calendar_features, event_regressors
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

# Calendar regressors given to Prophet; weekday holidays go in as Prophet holidays instead.
_REGRESSORS = tuple(name for name in EVENT_NAMES if name != "holiday")
_STEPS_PER_DAY = {"D": 1, "h": 24}
# Prophet's default share of the history that may hold trend changepoints.
_CHANGEPOINT_RANGE = 0.8


@register_model("prophet")
class ProphetModel:
    """One Prophet per series (see module docstring).

    Args:
        yearly_min_days: history needed before a yearly seasonality is fitted.
        uncertainty_samples: Prophet's own simulation draws for the interval; 0 uses the residual
            interval instead (about 8x faster predictions).
        changepoint_prior_scale: Prophet's trend flexibility.
    """

    name: ClassVar[str] = "prophet"
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 28
    # Too slow for the default set (a Stan fit per series); run it by name.
    auto: ClassVar[bool] = False
    freqs: ClassVar[tuple[str, ...]] = ("D", "h")

    def __init__(
        self, *, yearly_min_days: int = 730, uncertainty_samples: int = 0, changepoint_prior_scale: float = 0.05
    ) -> None:
        self.yearly_min_days = yearly_min_days
        self.uncertainty_samples = uncertainty_samples
        self.changepoint_prior_scale = changepoint_prior_scale
        self._panel: Panel | None = None
        self._models: list[Any] = []
        self._regressors: list[list[str]] = []

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> ProphetModel:
        """Fit one Prophet per series of ``history``."""
        check_freq(self.name, freq, self.freqs)
        panel = to_panel(history, freq)
        panel.require_observed(self.name, self.min_history)
        from prophet import Prophet

        width = panel.values.shape[1]
        ts = panel.timestamps(np.arange(-width + 1, 1))
        self._models, self._regressors = [], []
        for row in range(len(panel)):
            frame = _frame(ts[row], panel.values[row])
            span_days = (frame["ds"].iloc[-1] - frame["ds"].iloc[0]) / pd.Timedelta(days=1)
            model = Prophet(
                growth="linear",
                yearly_seasonality=bool(span_days >= self.yearly_min_days),
                weekly_seasonality=True,
                daily_seasonality=freq == "h",
                holidays=_nyse_holidays(frame["ds"].iloc[0], panel.end[row], freq),
                uncertainty_samples=self.uncertainty_samples,
                changepoint_prior_scale=self.changepoint_prior_scale,
                changepoint_range=_CHANGEPOINT_RANGE,
            )
            # A regressor that never varies in this history (no year end seen yet) cannot be fitted.
            used = [name for name in _REGRESSORS if frame[name].nunique() > 1]
            for name in used:
                model.add_regressor(name, standardize=False)
            try:
                with _quiet("cmdstanpy"):
                    model.fit(frame[["ds", "y", *used]])
            except (RuntimeError, ValueError) as err:
                raise ForecastError(f"prophet failed to fit series {panel.names(np.array([row]))}: {err}") from err
            self._models.append(model)
            self._regressors.append(used)
        self._panel = panel
        logger.debug("prophet fitted %d series", len(panel))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """Forecast ``horizon`` steps per series (see module docstring for the interval).

        Returns:
            Columns ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``.
        """
        if self._panel is None:
            raise ForecastError("prophet: predict called before fit")
        check_horizon(horizon, level)
        panel = self._panel
        width = panel.values.shape[1]
        ts = panel.timestamps(np.arange(-width + 1, horizon + 1))
        shape = (len(panel), horizon)
        yhat, lower, upper = np.empty(shape), np.empty(shape), np.empty(shape)
        alpha = (100.0 - level) / 200.0
        for row, (model, used) in enumerate(zip(self._models, self._regressors, strict=True)):
            model.interval_width = level / 100.0
            frame = _frame(ts[row], np.append(panel.values[row], np.full(horizon, np.nan)))
            out = model.predict(frame[["ds", *used]])
            fitted = out["yhat"].to_numpy()
            history, future = fitted[:-horizon], fitted[-horizon:]
            yhat[row] = future
            if self.uncertainty_samples > 0:
                lower[row] = out["yhat_lower"].to_numpy()[-horizon:]
                upper[row] = out["yhat_upper"].to_numpy()[-horizon:]
                continue
            observed = frame["y"].to_numpy()[:-horizon]
            quant = row_quantiles((observed - history)[None, :], np.array([alpha, 1.0 - alpha]))[0]
            days = np.arange(1, horizon + 1) / _STEPS_PER_DAY[panel.freq]
            tail_days = max(len(history) / _STEPS_PER_DAY[panel.freq] * (1.0 - _CHANGEPOINT_RANGE), 1.0)
            stretch = np.sqrt(1.0 + days / tail_days)
            lower[row] = future + min(np.nan_to_num(quant[0]), 0.0) * stretch
            upper[row] = future + max(np.nan_to_num(quant[1]), 0.0) * stretch
        return prediction_frame(panel, yhat, lower, upper)


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Logger ``name`` off for the block, then as it was: Prophet logs two INFO lines per fit through cmdstanpy,
    and a library must not switch a caller's logger off for good (a notebook's ``cf.forecast_series``)."""
    target = logging.getLogger(name)
    was, target.disabled = target.disabled, True
    try:
        yield
    finally:
        target.disabled = was


def _frame(ts: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """Prophet's ``ds, y`` plus calendar regressors, from the series' first observed step on."""
    start = int(np.argmax(np.isfinite(values)))
    ts, values = ts[start:], values[start:]
    frame = pd.DataFrame({"ds": ts, "y": values})
    events = event_regressors(calendar_features(ts))
    for index, name in enumerate(EVENT_NAMES):
        if name in _REGRESSORS:
            frame[name] = events[:, index]
    return frame


def _nyse_holidays(first: pd.Timestamp, end: np.datetime64, freq: str) -> pd.DataFrame:
    """NYSE holidays (one Prophet holiday per name) from the first history day to a year past the end."""
    years = range(pd.Timestamp(first).year, pd.Timestamp(end).year + 2)
    calendar = holidays.financial_holidays("NYSE", years=years)
    frame = pd.DataFrame({"holiday": list(calendar.values()), "ds": pd.to_datetime(list(calendar.keys()))})
    if freq == "h":
        # An exchange holiday lasts the whole day.
        frame["lower_window"], frame["upper_window"] = 0, 0
    return frame.sort_values("ds", ignore_index=True)
