"""Global gradient boosting: one HistGradientBoostingRegressor across all series given, direct multi-step.

Each training row is a (series, origin, steps-ahead) triple sampled from the history; the target is
the value ``steps`` days after the origin minus the series' 28-day level at the origin, relative to
that level, and the features are what is known at the origin (level, spread, recent slopes, weekday
and month-end profiles, what happened over the same span a year and two years earlier) plus the
target day's calendar (see ``gbm_features``). One model therefore covers every horizon up to
``max_horizon`` (the direct strategy, without one model per step and without the error build-up of a
recursive one), learns calendar and growth patterns shared across servers, and predicts every step in
one call.

Intervals: empirical quantiles of the training residuals per horizon bucket, in units of each row's
28-day spread, scaled back by each series' spread at the forecast origin.

Training and forecast series may differ: ``fit(history, extra=...)`` also learns from the ``extra``
series (the forecast stage tops small units up with a fleet-wide sample, see forecast/reserve.py)
and forecasts only those of ``history``; ``targets`` keeps which servers those are, so a model saved
as data and re-fitted on its whole training panel forecasts the same series.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.calendar_features import calendar_features
from capacity_forecaster.forecast.models.gbm_features import (
    CATEGORICAL,
    FEATURE_NAMES,
    IN_POINTS,
    LEVEL_DAYS,
    OriginStats,
    feature_matrix,
    origin_stats,
)
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

METRIC_CODES = {"cpu": 0, "memory": 1, "disk": 2, "network": 3}
# Residual quantiles are pooled over buckets of this many steps ahead.
_BUCKET_DAYS = 30
_AHEAD = FEATURE_NAMES.index("steps_ahead")
_IN_POINTS = [FEATURE_NAMES.index(name) for name in IN_POINTS]
_TREND_COLUMNS = tuple(
    (FEATURE_NAMES.index(f"trend_{days}"), FEATURE_NAMES.index(f"slope_{days}")) for days in (91, 182)
)
# A residual spread below this (points) is treated as this, so flat series do not divide by ~0.
_MIN_SPREAD = 0.25


@register_model("gbm_global")
class GBMGlobal:
    """Direct multi-step HistGradientBoosting across series (see module docstring).

    Args:
        max_horizon: longest horizon trained for; a longer forecast reuses the last trained step.
        origin_every: days between sampled forecast origins in the history.
        steps_per_origin: sampled steps-ahead per origin.
        max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization: booster settings.
        loss: ``absolute_error`` (median, robust to spikes) or ``squared_error``.
        random_state: seed of the row sampling and the booster.
        relative: model changes relative to the series' level (seasonal swings and growth scale with
            the load) rather than in points.
        max_rows: at most this many training rows (sampled) however many series the batch holds.
        max_bins: histogram bins per feature (fewer bins, faster splits).
        targets: server ids whose series are forecast (the others only train); None = every series.
    """

    name: ClassVar[str] = "gbm_global"
    kind: ClassVar[Literal["local", "global"]] = "global"
    min_history: ClassVar[int] = 91
    freqs: ClassVar[tuple[str, ...]] = ("D",)

    def __init__(
        self,
        *,
        max_horizon: int = 180,
        origin_every: int = 14,
        steps_per_origin: int = 6,
        max_iter: int = 60,
        learning_rate: float = 0.15,
        max_leaf_nodes: int = 31,
        min_samples_leaf: int = 40,
        l2_regularization: float = 1.0,
        loss: str = "absolute_error",
        random_state: int = 0,
        relative: bool = True,
        max_rows: int = 300_000,
        max_bins: int = 255,
        targets: list[str] | None = None,
    ) -> None:
        self.targets = None if targets is None else sorted(str(t) for t in targets)
        self.max_rows = max_rows
        self.max_bins = max_bins
        self.relative = relative
        self.max_horizon = max_horizon
        self.origin_every = origin_every
        self.steps_per_origin = steps_per_origin
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.loss = loss
        self.random_state = random_state
        self._panel: Panel | None = None
        self._stats: OriginStats | None = None
        self._rows: np.ndarray | None = None  # panel rows forecast (None: all)
        self._booster: Any = None
        self._residual_units: np.ndarray | None = None  # (rows,) residual / spread
        self._residual_bucket: np.ndarray | None = None  # (rows,) horizon bucket of each residual

    def fit(self, history: pd.DataFrame, *, freq: str = "D", extra: pd.DataFrame | None = None) -> GBMGlobal:
        """Sample training triples from every series and fit one booster.

        Args:
            history: the series to learn from and forecast.
            freq: ``D`` (the only frequency supported).
            extra: more series to learn from only (same columns); the forecast then covers the
                servers of ``history`` alone (``targets``).
        """
        from sklearn.ensemble import HistGradientBoostingRegressor

        check_freq(self.name, freq, self.freqs)
        if extra is not None and len(extra):
            self.targets = sorted(history["server_id"].astype(str).unique().tolist())
            history = pd.concat([history, extra[list(history.columns)]], ignore_index=True)
        panel = to_panel(history, freq)
        panel.require_observed(self.name, self.min_history)
        cal = calendar_features(panel.timestamps(np.arange(-panel.values.shape[1] + 1, 1)))
        stats = origin_stats(panel.values, cal)
        series, origin, ahead = self._training_triples(panel, stats)
        if len(series) == 0:
            raise ForecastError(
                f"gbm_global: no training rows could be formed from series {panel.names(np.arange(len(panel)))}"
            )
        x = feature_matrix(stats, cal, _metric_codes(panel), series, origin, ahead)
        scale = self._scale(stats.level[series, origin])
        x[:, _IN_POINTS] /= scale[:, None]
        target = (panel.values[series, origin + ahead] - stats.level[series, origin]) / scale
        # A feature never known in this history (no year-ago data yet) cannot be binned; make it constant.
        x[:, np.isnan(x).all(axis=0)] = 0.0
        booster = HistGradientBoostingRegressor(
            loss=self.loss,
            max_iter=self.max_iter,
            learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            max_bins=self.max_bins,
            categorical_features=[FEATURE_NAMES.index(name) for name in CATEGORICAL],
            early_stopping=False,
            random_state=self.random_state,
        )
        # One thread: OpenMP in a busy or already process-parallel engine is several times slower.
        with threadpool_limits(limits=1):
            booster.fit(x, target)
            fitted = booster.predict(x)
        spread = np.maximum(np.nan_to_num(stats.spread[series, origin], nan=_MIN_SPREAD), _MIN_SPREAD)
        self._residual_units = (target - fitted) * scale / spread
        self._residual_bucket = (ahead - 1) // _BUCKET_DAYS
        # Only the forecast series' statistics are kept (a training-only series' would be ~20 arrays of its
        # history's size); the whole panel stays, for saving the model as data.
        self._rows = None if self.targets is None else np.flatnonzero(np.isin(panel.server_id.astype(str),
                                                                               self.targets))
        self._panel, self._booster = panel, booster
        self._stats = stats if self._rows is None else stats.take(self._rows)
        logger.debug("gbm_global fitted %d series on %d rows", len(panel), len(series))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """Forecast ``horizon`` steps for every series from its last history step.

        Returns:
            Columns ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``.
        """
        units, buckets = self._residual_units, self._residual_bucket
        if self._panel is None or self._stats is None or units is None or buckets is None:
            raise ForecastError("gbm_global: predict called before fit")
        check_horizon(horizon, level)
        panel = self._panel if self._rows is None else self._panel.take(self._rows)
        stats = self._stats
        n, width = panel.values.shape
        cal = calendar_features(panel.timestamps(np.arange(-width + 1, horizon + 1)))
        steps = np.arange(1, horizon + 1)
        series = np.repeat(np.arange(n), horizon)
        origin = np.full(n * horizon, width - 1)
        x = feature_matrix(stats, cal, _metric_codes(panel), series, origin, np.tile(steps, n))
        # Past the longest trained horizon the booster sees the last trained step (with the true
        # target day's calendar).
        capped = np.minimum(x[:, _AHEAD], self.max_horizon)
        x[:, _AHEAD] = capped
        for trend, slope in _TREND_COLUMNS:
            x[:, trend] = capped * x[:, slope]
        base = _base_level(panel.values, stats)
        scale = self._scale(base)
        x[:, _IN_POINTS] /= np.repeat(scale, horizon)[:, None]
        with threadpool_limits(limits=1):
            delta = self._booster.predict(x).reshape(n, horizon)
        point = base[:, None] + delta * scale[:, None]
        spread = np.maximum(np.nan_to_num(stats.spread[:, -1], nan=_MIN_SPREAD), _MIN_SPREAD)
        low, high = _residual_quantiles(units, buckets, steps, level)
        return prediction_frame(panel, point, point + low * spread[:, None], point + high * spread[:, None])

    def _scale(self, level: np.ndarray) -> np.ndarray:
        """Divisor of point-valued features and targets: the level (relative model) or 1."""
        if not self.relative:
            return np.ones(len(level))
        return np.maximum(np.nan_to_num(level, nan=1.0), 1.0)

    def _training_triples(self, panel: Panel, stats: OriginStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(series, origin, steps-ahead) with a known level at the origin and a known target value."""
        n, width = panel.values.shape
        origins = np.arange(width - 2, LEVEL_DAYS - 2, -self.origin_every)[::-1]
        rng = np.random.default_rng(self.random_state)
        series = np.repeat(np.arange(n), len(origins) * self.steps_per_origin)
        origin = np.tile(np.repeat(origins, self.steps_per_origin), n)
        room = np.minimum(self.max_horizon, width - 1 - origin)
        ahead = 1 + np.floor(rng.random(len(origin)) * room).astype(np.int64)
        keep = np.isfinite(stats.level[series, origin]) & np.isfinite(panel.values[series, origin + ahead])
        if keep.sum() > self.max_rows:
            # Big batches: a random subset keeps the fit time bounded (boosting gains little beyond it).
            chosen = np.flatnonzero(keep)
            keep = np.zeros(len(keep), dtype=bool)
            keep[np.sort(rng.choice(chosen, self.max_rows, replace=False))] = True
        return series[keep], origin[keep], ahead[keep]


def _residual_quantiles(
    units: np.ndarray, bucket: np.ndarray, steps: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Training-residual quantiles (in spread units) per step, from the step's horizon bucket.

    Returns:
        (lower, upper) offsets per step, lower <= 0 <= upper; a bucket without residuals borrows the
        nearest shorter one.
    """
    alpha = (100.0 - level) / 200.0
    n_buckets = int(bucket.max()) + 1
    table = np.full((n_buckets, 2), np.nan)
    for b in range(n_buckets):  # a handful of horizon buckets, each vectorised
        chosen = units[bucket == b]
        if len(chosen):
            table[b] = row_quantiles(chosen[None, :], np.array([alpha, 1.0 - alpha]))[0]
    table = pd.DataFrame(table).ffill().bfill().fillna(0.0).to_numpy()
    index = np.minimum((steps - 1) // _BUCKET_DAYS, n_buckets - 1)
    return np.minimum(table[index, 0], 0.0), np.maximum(table[index, 1], 0.0)


def _metric_codes(panel: Panel) -> np.ndarray:
    """Integer code of each series' metric (unknown metrics share one extra code)."""
    return np.array([METRIC_CODES.get(m, len(METRIC_CODES)) for m in panel.metric], dtype=np.int64)


def _base_level(values: np.ndarray, stats: OriginStats) -> np.ndarray:
    """The level at the last history step (the model's base), or the last observed value without one."""
    finite = np.isfinite(values)
    last = np.where(
        finite.any(axis=1),
        values[np.arange(len(values)), values.shape[1] - 1 - np.argmax(finite[:, ::-1], axis=1)],
        np.nan,
    )
    return np.where(np.isfinite(stats.level[:, -1]), stats.level[:, -1], last)
