"""Shared adapter for statsforecast models: panel -> StatsForecast frame, vectorised fit, long predictions.

statsforecast needs gap-free series, so interior gaps are filled by linear interpolation and leading
missing rows are dropped (the forecast still starts one step after each series' last history row).
One ``StatsForecast`` object (``n_jobs=1``; the engine parallelises across batches) is fitted per group
of series that share a model configuration (e.g. MSTL with or without a yearly season). statsforecast
is imported only when a model is fitted.
"""

from __future__ import annotations

import logging
import warnings
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.models.panel import (
    Panel,
    check_freq,
    check_horizon,
    fill_gaps,
    prediction_frame,
    to_panel,
)

logger = logging.getLogger(__name__)

# Library failures on numerically awkward series that are translated into ForecastError.
_NUMERIC_ERRORS = (ValueError, ZeroDivisionError, FloatingPointError, np.linalg.LinAlgError)


class StatsForecastAdapter(ABC):
    """Base class: subclasses set the ClassVars and build the statsforecast model(s) per series.

    A subclass implements ``_configs(panel) -> (config per series, {config: model factory})``; series
    with the same config are fitted by one StatsForecast object.
    """

    name: ClassVar[str]
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 28
    freqs: ClassVar[tuple[str, ...]] = ("D", "h")

    def __init__(self) -> None:
        self._panel: Panel | None = None
        self._fitted: list[tuple[np.ndarray, Any]] = []

    @abstractmethod
    def _configs(self, panel: Panel) -> tuple[np.ndarray, dict[Any, Any]]:
        """(config key per series, {config key: factory of a fresh statsforecast model})."""

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> StatsForecastAdapter:
        """Fit every series of ``history`` with the statsforecast model(s) of this adapter."""
        from statsforecast import StatsForecast

        check_freq(self.name, freq, self.freqs)
        panel = to_panel(history, freq)
        panel.require_observed(self.name, self.min_history)
        config, factories = self._configs(panel)
        self._fitted = []
        for key, factory in factories.items():
            rows = np.flatnonzero(config == key)
            if len(rows) == 0:
                continue
            frame = _statsforecast_frame(panel, rows)
            sf = StatsForecast(models=[factory()], freq=_SF_FREQ[freq], n_jobs=1)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sf.fit(frame)
            except _NUMERIC_ERRORS as err:
                raise ForecastError(
                    f"model '{self.name}' failed to fit series {panel.names(rows)}: {err}"
                ) from err
            self._fitted.append((rows, sf))
        self._panel = panel
        logger.debug("%s fitted %d series in %d groups", self.name, len(panel), len(self._fitted))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """Forecast ``horizon`` steps with the models' own prediction intervals.

        Returns:
            Columns ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``.
        """
        if self._panel is None:
            raise ForecastError(f"{self.name}: predict called before fit")
        check_horizon(horizon, level)
        panel = self._panel
        shape = (len(panel), horizon)
        yhat, lower, upper = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
        for rows, sf in self._fitted:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = sf.predict(h=horizon, level=[level])
            except _NUMERIC_ERRORS as err:
                raise ForecastError(
                    f"model '{self.name}' failed to predict series {panel.names(rows)}: {err}"
                ) from err
            alias = str(sf.models[0])
            # Rows come back in blocks of ``horizon`` per unique_id (the panel row), in ds order.
            target = out["unique_id"].astype(np.int64).to_numpy().reshape(len(rows), horizon)[:, 0]
            yhat[target] = out[alias].to_numpy().reshape(len(rows), horizon)
            lower[target] = _column(out, alias, "lo", level).reshape(len(rows), horizon)
            upper[target] = _column(out, alias, "hi", level).reshape(len(rows), horizon)
        return prediction_frame(panel, yhat, lower, upper)


_SF_FREQ = {"D": "D", "h": "h"}


def _column(out: pd.DataFrame, alias: str, side: str, level: float) -> np.ndarray:
    """The ``alias-lo-<level>`` / ``alias-hi-<level>`` column, whatever number format statsforecast used."""
    prefix = f"{alias}-{side}-"
    for column in out.columns:
        if column.startswith(prefix) and float(column[len(prefix) :]) == float(level):
            return out[column].to_numpy()
    raise ForecastError(f"statsforecast returned no {side} interval column for level {level} ({alias})")


def _statsforecast_frame(panel: Panel, rows: np.ndarray) -> pd.DataFrame:
    """``unique_id, ds, y`` for the given panel rows: unique_id is the panel row, gaps interpolated,
    leading missing steps dropped."""
    values = fill_gaps(panel.values[rows])
    width = values.shape[1]
    # First finite step per row, in the original (unfilled) values.
    finite = np.isfinite(panel.values[rows])
    start = np.argmax(finite, axis=1)
    keep = np.arange(width)[None, :] >= start[:, None]
    offsets = np.arange(-width + 1, 1)
    ds = panel.timestamps(offsets)[rows]
    unique_id = np.broadcast_to(rows[:, None], values.shape)
    return pd.DataFrame({"unique_id": unique_id[keep], "ds": ds[keep], "y": values[keep]})
