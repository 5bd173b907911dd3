"""Amazon Forecast as a model: the imported P10/P50/P90 rows of a series, looked up instead of trained.

``capfc aws forecast-import`` stores an Amazon Forecast export as forecasts-table rows in
``<lake>/_amazon_forecast/imported/forecasts.parquet`` (``IMPORTED``). Named in ``forecast.models``,
this model answers from those rows: the forecast stage reads the file once
(``stages.forecast._inputs``) and hands each work unit the rows of its own series (the model's
``rows`` parameter, ``forecast.units``), so the model itself reads no file. A series or date the
import does not hold is "no answer" with a reason (a ``ForecastError``): the engine records it
and falls back to the baseline.

The import is one forecast from one training cutoff, so a backtest window is scored only where it
asks for dates the import holds (its cutoff is the import's); elsewhere the backtest unit fails with
the reason and the model has no complete backtest there (docs/forecast.md).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.backtest import step_delta
from capacity_forecaster.forecast.base import PREDICTION_COLUMNS
from capacity_forecaster.forecast.models.panel import check_freq
from capacity_forecaster.forecast.registry import register_model
from capacity_forecaster.schema import DS, METRIC, SERIES_KEY, SERVER_ID

NAME = "amazon_forecast"
# Where ``capfc aws forecast-import`` stores the rows (lake-relative).
IMPORTED = "_amazon_forecast/imported/forecasts.parquet"
# The stored interval: P10 to P90.
LEVEL = 80.0
_KEY = [*SERIES_KEY, DS]
_PRED = ["yhat", "yhat_lower", "yhat_upper"]


def _naive_utc(ds: pd.Series) -> pd.Series:
    """Timestamps as naive UTC (the import's form), whatever the history's time zone."""
    ds = pd.to_datetime(ds)
    return ds.dt.tz_convert("UTC").dt.tz_localize(None) if ds.dt.tz is not None else ds


@register_model(NAME)
class AmazonForecastImport:
    """The imported Amazon Forecast rows of each series; nothing is trained.

    Args:
        rows: imported rows (``server_id, metric, ds, yhat, yhat_lower, yhat_upper``; more columns
            ignored), at least those of the series this model will be fitted on.
    """

    name: ClassVar[str] = NAME
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 1
    freqs: ClassVar[tuple[str, ...]] = ("D", "h")
    # Not in ``auto``: only used when named in forecast.models.
    auto: ClassVar[bool] = False
    # The stage input (``stages.forecast._inputs``) whose rows of a unit's series become ``rows``; such a
    # model's final fit is not stored under models/ (the import is its state).
    external: ClassVar[str] = NAME
    # The interval the stored bounds are (P10-P90); another forecast.interval is "no answer".
    level: ClassVar[float] = LEVEL

    def __init__(self, rows: pd.DataFrame | None = None) -> None:
        self.rows = rows
        self._ends: pd.DataFrame | None = None
        self._freq = "D"

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> AmazonForecastImport:
        """Remember each series' last history step (the import is looked up from there)."""
        check_freq(self.name, freq, self.freqs)
        if self.rows is None:
            raise ForecastError(f"{NAME}: no imported rows were given; run 'capfc aws forecast-import' so that "
                                f"<lake>/{IMPORTED} exists (the forecast stage reads it)")
        if history.empty:
            raise ForecastError(f"{NAME}: empty history")
        self._ends = history.drop_duplicates(list(SERIES_KEY), keep="last")[[*SERIES_KEY, DS]].reset_index(drop=True)
        self._freq = freq
        return self

    def predict(self, horizon: int, *, level: float = LEVEL) -> pd.DataFrame:
        """The imported rows of the ``horizon`` steps after each series' history.

        Returns:
            ``PREDICTION_COLUMNS``: the stored P50 and P10-P90 of every series and step.

        Raises:
            ForecastError: ``level`` is not the stored 80 %, or a series or step is not in the import
                (naming the first such series and the dates the import holds for it).
        """
        if self._ends is None or self.rows is None:
            raise ForecastError(f"{NAME}: predict called before fit")
        if not np.isclose(level, LEVEL):
            raise ForecastError(f"{NAME}: the import holds P10-P90 intervals ({LEVEL:g} %), not {level:g} %; "
                                f"set forecast.interval to {LEVEL / 100:g} to use it")
        ends = self._ends
        steps = np.tile(np.arange(1, horizon + 1), len(ends))
        wanted = pd.DataFrame({SERVER_ID: np.repeat(ends[SERVER_ID].astype(str).to_numpy(), horizon),
                               METRIC: np.repeat(ends[METRIC].astype(str).to_numpy(), horizon),
                               DS: np.repeat(ends[DS].to_numpy(), horizon) + steps * step_delta(self._freq)})
        stored = self.rows[[*_KEY, *_PRED]].assign(**{SERVER_ID: self.rows[SERVER_ID].astype(str),
                                                      METRIC: self.rows[METRIC].astype(str),
                                                      DS: _naive_utc(self.rows[DS])})
        stored = stored.drop_duplicates(_KEY, keep="last")
        found = wanted.assign(_ds=_naive_utc(wanted[DS])).merge(
            stored.rename(columns={DS: "_ds"}), on=[*SERIES_KEY, "_ds"], how="left", sort=False)
        missing = found["yhat"].isna().to_numpy()
        if missing.any():
            first = found.loc[missing].iloc[0]
            held = stored[(stored[SERVER_ID] == first[SERVER_ID]) & (stored[METRIC] == first[METRIC])][DS]
            span = f"{held.min()} to {held.max()}" if len(held) else "no dates"
            n_series = found.loc[missing, list(SERIES_KEY)].drop_duplicates().shape[0]
            raise ForecastError(f"{NAME}: no imported forecast for {n_series} of {len(ends)} series "
                                f"({int(missing.sum())} of {len(found)} steps), e.g. {first[SERVER_ID]}/"
                                f"{first[METRIC]} at {first['_ds']} (the import holds {span} for it); "
                                "import an export that covers these series and dates")
        return found[list(PREDICTION_COLUMNS)]
