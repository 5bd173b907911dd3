"""Harmonic regression: per-series ridge least squares on trend, weekly, yearly and bank-calendar terms, batched.

The value of each series is regressed on a piecewise-linear trend (a hinge and a level step every two
weeks over the first 80 % of the history), weekday dummies (hour-of-day dummies too for hourly data),
yearly Fourier terms when the history spans two years, and month-end / quarter-end / year-end /
NYSE-holiday indicators. Penalties are relative to each column's energy; the trend breaks then go
through an adaptive ridge (an L1 approximation, threshold in units of the series' noise), so a few
real breaks (a migration, a new growth phase) survive and noise does not bend the extrapolated slope.

Utilisation seasonality is mostly multiplicative: a server whose load doubles also doubles its weekend
dip. A second pass therefore adds the seasonal columns again, multiplied by the series' relative trend
level from the first pass, so each seasonal amplitude may scale with the level (or not, as the data say).

Series that share a grid (same last timestamp, length within four weeks) share one design; their Gram
matrices come from one product of per-series weights with the shared column products, so hundreds of
series with gaps and Huber weights (against outages and spikes) cost milliseconds each. The trend is
extrapolated from its last segment, optionally damped, its change over the horizon capped by the change
seen over the history; the interval adds the uncertainty of future breaks like the past ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from statistics import NormalDist
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.calendar_features import (
    DAYS_PER_YEAR,
    calendar_features,
    event_regressors,
    fourier_terms,
    hour_dummies,
    weekday_dummies,
)
from capacity_forecaster.forecast.models.batched_ridge import (
    NormalEquations,
    SharedDesign,
    huber_weights,
    normal_equations,
    ridge_solve,
    robust_scale,
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

_STEPS_PER_DAY = {"D": 1, "h": 24}
# Penalty on every coefficient, relative to the number of points: keeps never-seen calendar events
# (a year end in an 8-week history) and collinear columns solvable without moving real fits.
_TINY_RIDGE = 1e-6
# Series whose histories differ by less than this share one design (their oldest days are dropped).
_LENGTH_BUCKET_DAYS = 28
# Adaptive-ridge passes approximating the L1 penalty on trend breaks, and its smoothing constant in
# standardised units (a break whose effect is this share of the noise counts as none).
_SPARSE_PASSES = 3
_SPARSE_EPS = 0.01


@dataclass(frozen=True)
class _Design:
    """Columns over a run of steps: ``x`` (steps, p), its ridge ``penalty`` (p,), the trend columns
    (the first ``n_trend``) and the seasonal columns whose amplitude may scale with the level."""

    x: np.ndarray
    penalty: np.ndarray
    norm: np.ndarray
    n_trend: int
    seasonal: np.ndarray


@dataclass(frozen=True)
class _Group:
    """Series sharing one grid: their panel rows, the design recipe and the fitted state."""

    rows: np.ndarray
    length: int
    hinges: np.ndarray  # slope-change positions in steps from the series start
    shifts: np.ndarray  # level-shift positions in steps from the series start
    yearly: bool
    coef: np.ndarray  # (g, p + len(seasonal)): additive columns, then level-scaled seasonal columns
    trend_end: np.ndarray  # fitted trend at the last history step, (g,)
    slope_end: np.ndarray  # trend slope per step after the last changepoint, (g,)
    trend_range: np.ndarray  # max - min of the fitted trend over the history, (g,)
    base_end: np.ndarray  # first-pass trend at the last history step, (g,)
    base_slope: np.ndarray  # first-pass trend slope per step after the last changepoint, (g,)
    base_mean: np.ndarray  # mean first-pass trend: the level the seasonal scaling is relative to, (g,)
    seasonal_mean: np.ndarray  # history mean of the level-scaled seasonal columns (they are centred), (q,)
    residuals: np.ndarray  # (g, length) in-sample residuals, NaN where missing
    slope_volatility: np.ndarray  # RMS slope change per year seen in the history, (g,)
    shift_volatility: np.ndarray  # RMS level shift per year seen in the history, (g,)


@register_model("harmonic")
class Harmonic:
    """Batched ridge regression on trend + seasonal + calendar terms (see module docstring).

    Args:
        changepoint_every_days: spacing of candidate trend changepoints.
        changepoint_range: share of the history (from its start) that may hold slope changes; the
            slope after the last one is what gets extrapolated.
        shift_range: share of the history that may hold level shifts (later ones overfit in backtests).
        changepoint_ridge: first-pass ridge on slope changes (hinges), relative to column energy.
        step_ridge: first-pass ridge on level shifts (steps), relative to column energy.
        yearly_order: Fourier harmonics of the year (used with at least ``yearly_min_days`` of history).
        yearly_min_days: history needed for a yearly season.
        season_ridge: ridge on Fourier and calendar-event coefficients, relative to column energy.
        multiplicative: let seasonal amplitudes scale with the trend level (second pass).
        damping: per-day multiplier of the extrapolated slope (1 = straight line).
        trend_cap: the trend may move over the horizon by at most this multiple of its range over the
            history.
        robust: Huber-reweight the fit against outages and spikes.
        sparsity: L1-like penalty on trend breaks in units of the universal threshold (noise sd x
            sqrt(2 log breaks)); 0 keeps the plain ridge.
    """

    name: ClassVar[str] = "harmonic"
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 28
    freqs: ClassVar[tuple[str, ...]] = ("D", "h")

    def __init__(
        self,
        *,
        changepoint_every_days: float = 14.0,
        changepoint_range: float = 0.8,
        shift_range: float = 0.8,
        changepoint_ridge: float = 0.1,
        step_ridge: float = 0.1,
        yearly_order: int = 5,
        yearly_min_days: int = 730,
        season_ridge: float = 0.001,
        multiplicative: bool = True,
        damping: float = 1.0,
        trend_cap: float = 1.0,
        robust: bool = True,
        sparsity: float = 0.25,
    ) -> None:
        self.sparsity = sparsity
        self.changepoint_every_days = changepoint_every_days
        self.changepoint_range = changepoint_range
        self.shift_range = shift_range
        self.changepoint_ridge = changepoint_ridge
        self.step_ridge = step_ridge
        self.yearly_order = yearly_order
        self.yearly_min_days = yearly_min_days
        self.season_ridge = season_ridge
        self.multiplicative = multiplicative
        self.damping = damping
        self.trend_cap = trend_cap
        self.robust = robust
        self._panel: Panel | None = None
        self._groups: list[_Group] = []

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> Harmonic:
        """Fit every series of ``history`` (grouped by shared grid)."""
        check_freq(self.name, freq, self.freqs)
        panel = to_panel(history, freq)
        panel.require_observed(self.name, self.min_history)
        lengths = _fitted_lengths(panel.length, _LENGTH_BUCKET_DAYS * _STEPS_PER_DAY[freq])
        width = panel.values.shape[1]
        in_window = np.arange(width)[None, :] >= (width - lengths)[:, None]
        starved = np.flatnonzero((np.isfinite(panel.values) & in_window).sum(axis=1) < self.min_history)
        if len(starved):
            raise ForecastError(
                f"model 'harmonic' needs {self.min_history} non-missing points in the fitted history; "
                f"too few in {panel.names(starved)}; give these series to the baseline model"
            )
        grids = np.stack([panel.end.astype(np.int64), lengths], axis=1)
        _, codes = np.unique(grids, axis=0, return_inverse=True)
        codes = codes.ravel()
        self._panel = panel
        # Thousands of small solves: BLAS threads only add overhead (the engine parallelises by process).
        with threadpool_limits(limits=1, user_api="blas"):
            self._groups = [
                self._fit_group(panel, rows, int(lengths[rows[0]]))
                for rows in (np.flatnonzero(codes == c) for c in range(codes.max() + 1))
            ]
        logger.debug("harmonic fitted %d series in %d grid groups", len(panel), len(self._groups))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """Forecast ``horizon`` steps per series with residual-quantile intervals.

        The interval is the central ``level`` range of the series' in-sample residuals, widened with
        the distance from the data the last trend segment was fitted on and combined with the
        uncertainty of future trend breaks (see ``_predict_group``).

        Returns:
            Columns ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``.
        """
        if self._panel is None:
            raise ForecastError("harmonic: predict called before fit")
        check_horizon(horizon, level)
        panel = self._panel
        shape = (len(panel), horizon)
        yhat, lower, upper = np.empty(shape), np.empty(shape), np.empty(shape)
        alpha = (100.0 - level) / 200.0
        z = NormalDist().inv_cdf(1.0 - alpha)
        for group in self._groups:
            point, spread, trend_sd = self._predict_group(panel, group, horizon)
            quant = np.nan_to_num(row_quantiles(group.residuals, np.array([alpha, 1.0 - alpha])), nan=0.0)
            below = np.hypot(np.minimum(quant[:, :1], 0.0) * spread, z * trend_sd)
            above = np.hypot(np.maximum(quant[:, 1:], 0.0) * spread, z * trend_sd)
            yhat[group.rows] = point
            lower[group.rows] = point - below
            upper[group.rows] = point + above
        return prediction_frame(panel, yhat, lower, upper)

    # -- design ---------------------------------------------------------------------------------

    def _design(
        self, ts: np.ndarray, length: int, hinges: np.ndarray, shifts: np.ndarray, yearly: bool, freq: str
    ) -> _Design:
        """Design over timestamps ``ts``, the first of which is the series start."""
        steps_per_year = _STEPS_PER_DAY[freq] * DAYS_PER_YEAR
        pos = np.arange(len(ts), dtype=np.float64)
        hinge = np.maximum(0.0, pos[:, None] - hinges[None, :]) / steps_per_year
        step = (pos[:, None] >= shifts[None, :]).astype(np.float64)
        cal = calendar_features(ts)
        blocks = [
            (np.ones((len(ts), 1)), 0.0, False),
            ((pos / steps_per_year)[:, None], 0.0, False),
            (hinge, self.changepoint_ridge, False),
            (step, self.step_ridge, False),
            (weekday_dummies(cal), 0.0, True),
            (event_regressors(cal), self.season_ridge, False),
        ]
        if freq == "h":
            blocks.append((hour_dummies(cal), 0.0, True))
        if yearly:
            blocks.append((fourier_terms(ts, DAYS_PER_YEAR, self.yearly_order), self.season_ridge, False))
        x = np.concatenate([b for b, _, _ in blocks], axis=1)
        # Ridge penalties relative to each column's energy (standardised ridge): a late changepoint,
        # whose hinge is short, is shrunk no more than an early one.
        ridge = np.concatenate([np.full(b.shape[1], p) for b, p, _ in blocks])
        norm2 = np.sum(x[:length] ** 2, axis=0)
        penalty = ridge * norm2 + _TINY_RIDGE * length
        seasonal = np.concatenate([np.full(b.shape[1], s) for b, _, s in blocks])
        return _Design(x, penalty, np.sqrt(norm2), 2 + len(hinges) + len(shifts), np.flatnonzero(seasonal))

    def _breaks(self, length: int, share: float, freq: str) -> np.ndarray:
        """Candidate break positions, evenly spaced over the first ``share`` of the history."""
        span = share * length
        count = int(span // (self.changepoint_every_days * _STEPS_PER_DAY[freq]))
        if count < 1:
            return np.empty(0)
        return np.round(np.linspace(0.0, span, count + 1)[1:])

    # -- fitting ----------------------------------------------------------------------------------

    def _fit_group(self, panel: Panel, rows: np.ndarray, length: int) -> _Group:
        values = panel.values[rows, -length:]
        ts = panel.timestamps(np.arange(-length + 1, 1))[rows[0]]
        # Judged on the full histories: the trim to whole buckets must not drop a yearly season.
        yearly = panel.length[rows].max() >= self.yearly_min_days * _STEPS_PER_DAY[panel.freq]
        years = length / (_STEPS_PER_DAY[panel.freq] * DAYS_PER_YEAR)
        hinges = self._breaks(length, self.changepoint_range, panel.freq)
        shifts = self._breaks(length, self.shift_range, panel.freq)
        design = self._design(ts, length, hinges, shifts, yearly, panel.freq)
        x, k = design.x, design.n_trend
        mask = np.isfinite(values)
        y = np.where(mask, values, 0.0)
        shared = SharedDesign(x)
        coef, weights, penalty, equations = self._fit_additive(design, shared, y, mask)
        trend = coef[:, :k] @ x[:, :k].T
        base_end, base_slope = trend[:, -1], self._end_slope(coef, len(hinges), panel.freq)
        base_mean = np.maximum(np.sum(trend * mask, axis=1) / np.maximum(mask.sum(axis=1), 1), 1.0)
        seasonal_mean = x[:, design.seasonal].mean(axis=0)
        if self.multiplicative:
            relative = trend / base_mean[:, None] - 1.0
            seasonal = x[:, design.seasonal] - seasonal_mean
            full_penalty = np.concatenate([penalty, penalty[:, design.seasonal]], axis=1)
            scaled = normal_equations(shared, y, weights, extra=seasonal, scale=relative, base=equations)
            coef = ridge_solve(scaled, full_penalty)
            trend = coef[:, :k] @ x[:, :k].T
            fitted = coef[:, : x.shape[1]] @ x.T + (relative * (coef[:, x.shape[1] :] @ seasonal.T))
        else:
            fitted = coef @ x.T
        return _Group(
            rows=rows,
            length=length,
            hinges=hinges,
            shifts=shifts,
            yearly=yearly,
            coef=coef,
            trend_end=trend[:, -1],
            slope_end=self._end_slope(coef, len(hinges), panel.freq),
            trend_range=trend.max(axis=1) - trend.min(axis=1),
            base_end=base_end,
            base_slope=base_slope,
            base_mean=base_mean,
            seasonal_mean=seasonal_mean,
            residuals=np.where(mask, y - fitted, np.nan),
            slope_volatility=np.sqrt(np.sum(coef[:, 2 : 2 + len(hinges)] ** 2, axis=1) / years),
            shift_volatility=np.sqrt(np.sum(coef[:, 2 + len(hinges) : k] ** 2, axis=1) / years),
        )

    def _fit_additive(
        self, design: _Design, shared: SharedDesign, y: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, NormalEquations]:
        """Ridge fit, Huber reweighting, then adaptive ridge on the trend breaks.

        Returns:
            (coefficients (g, p), point weights (g, steps), penalties (g, p), the weighted equations).
        """
        x, k = design.x, design.n_trend
        weights = mask.astype(np.float64)
        coef = ridge_solve(normal_equations(shared, y, weights), design.penalty)
        if self.robust:
            weights = weights * huber_weights(np.where(mask, y - coef @ x.T, np.nan))
        equations = normal_equations(shared, y, weights)
        coef = ridge_solve(equations, design.penalty)
        penalty = np.broadcast_to(design.penalty, coef.shape).copy()
        if self.sparsity > 0.0 and k > 2:
            # Adaptive ridge approximating a standardised lasso on the trend breaks, threshold in units
            # of the series' noise: few large breaks survive, many small ones vanish.
            sigma = robust_scale(np.where(mask, y - coef @ x.T, np.nan))[:, None]
            norm = np.maximum(design.norm[2:k], 1e-12)
            lam = self.sparsity * sigma * np.sqrt(2.0 * np.log(k - 1.0)) * norm
            for _ in range(_SPARSE_PASSES):
                penalty[:, 2:k] = lam / (np.abs(coef[:, 2:k]) + _SPARSE_EPS * sigma / norm)
                coef = ridge_solve(equations, penalty)
        return coef, weights, penalty, equations

    @staticmethod
    def _end_slope(coef: np.ndarray, n_hinges: int, freq: str) -> np.ndarray:
        """Trend slope per step after the last changepoint."""
        per_year = coef[:, 1] + coef[:, 2 : 2 + n_hinges].sum(axis=1)
        return per_year / (_STEPS_PER_DAY[freq] * DAYS_PER_YEAR)

    def _predict_group(
        self, panel: Panel, group: _Group, horizon: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point forecast (g, horizon), residual-interval stretch (1, horizon) and trend-change sd (g, horizon).

        Future trend breaks are taken to come like the past ones: the slope and the level each follow
        a random walk whose yearly variance is the sum of squared breaks per year of history, so the
        level's standard deviation grows like ``h**1.5`` (slope) and ``h**0.5`` (shifts).
        """
        offsets = np.arange(-group.length + 1, horizon + 1)
        ts = panel.end[group.rows[0]] + offsets * panel.step.astype("timedelta64[ns]")
        design = self._design(ts, group.length, group.hinges, group.shifts, group.yearly, panel.freq)
        future = design.x[group.length :]
        p, k = future.shape[1], design.n_trend
        per_day = _STEPS_PER_DAY[panel.freq]
        days = np.arange(1, horizon + 1) / per_day
        travelled = (_damped_days(days, self.damping) * per_day)[None, :]
        cap = self.trend_cap * group.trend_range[:, None]
        trend = group.trend_end[:, None] + np.clip(group.slope_end[:, None] * travelled, -cap, cap)
        point = trend + group.coef[:, k:p] @ future[:, k:].T
        if group.coef.shape[1] > p:
            base = group.base_end[:, None] + np.clip(group.base_slope[:, None] * travelled, -cap, cap)
            relative = base / group.base_mean[:, None] - 1.0
            point += relative * (group.coef[:, p:] @ (future[:, design.seasonal] - group.seasonal_mean).T)
        # The last trend segment was fitted on the tail of the history; uncertainty grows with the
        # distance from it.
        tail_days = max(group.length / per_day * (1.0 - self.changepoint_range), 1.0)
        years = days / DAYS_PER_YEAR
        trend_var = (group.slope_volatility[:, None] ** 2) * years**3 / 3.0
        trend_var = trend_var + (group.shift_volatility[:, None] ** 2) * years
        return point, np.sqrt(1.0 + days / tail_days)[None, :], np.sqrt(trend_var)


def _fitted_lengths(lengths: np.ndarray, bucket: int) -> np.ndarray:
    """History steps each series is fitted on: long histories are cut to a whole number of buckets
    (dropping less than a bucket of the oldest data) so that series of similar length share a design."""
    return np.where(lengths >= 2 * bucket, lengths // bucket * bucket, lengths)


def _damped_days(days: np.ndarray, damping: float) -> np.ndarray:
    """Cumulative damped distance: sum of damping**i for i = 1..days (days itself when damping = 1)."""
    if damping >= 1.0:
        return days
    return damping * (1.0 - damping**days) / (1.0 - damping)
