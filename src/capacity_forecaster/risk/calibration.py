"""Breach probabilities checked against backtests: outcomes, reliability, fitted correlation, recalibration.

At every backtest cutoff the forecast stage kept the published model's forecast and the interval it
would have had there (calibrated on the other windows only). The breach probability the risk stage
would have given at that cutoff is computed with the same code and threshold as the live one
(``probability``) and compared with what happened: did the actual exceed the threshold on at least
one day of the window. Only days the ETL trusts count, on both sides: observed (not imputed), not
an outlier, not an anomaly.

With enough breach windows the copula correlation ``rho`` is fitted (lowest Brier score on a grid)
and, with more, an isotonic map from raw to observed probability. A fitted piece replaces the
configured one only when it predicts *held-out servers* better: the windows are split into folds by
server (windows of one server overlap in time and share its errors), every fold is predicted by a
fit on the others, and the out-of-fold Brier score is compared with that of the configured
probability (which nothing was fitted to, so its own Brier score is already out-of-sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import log_ndtr

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.levels import thresholds
from capacity_forecaster.risk.probability import cumulative_probability, exceedance_scores, padded, reliability_table
from capacity_forecaster.schema import (
    BACKTEST_FORECAST_COLUMNS,
    DS,
    METRIC,
    RISK_CALIBRATION_COLUMNS,
    SERIES_KEY,
    SERVER_ID,
    UNTRUSTED_FLAGS,
    flag,
    flagged,
    require_columns,
)

WINDOW_KEY = (*SERIES_KEY, "cutoff")
# Correlations tried when fitting (the configured one is added); the Brier score is flat in rho
# near its minimum, so a finer grid only adds noise and, above 0.9, slow integration.
RHO_GRID = np.round(np.linspace(0.0, 1.0, 11), 1)
# Servers are split into this many folds for the out-of-fold Brier scores.
FOLDS = 5
# A window whose probability is below this even with independent days (the largest value any
# correlation gives) is below it for every correlation: it is not integrated per correlation.
_NEGLIGIBLE = 1e-6
METHOD_NONE, METHOD_RHO, METHOD_ISOTONIC, METHOD_BOTH = "none", "correlation", "isotonic", "correlation+isotonic"


def empty_table() -> pd.DataFrame:
    """A reliability table without rows (``RISK_CALIBRATION_COLUMNS``)."""
    return pd.DataFrame({c: pd.Series(dtype=object if c in ("probability", "bin") else float)
                         for c in RISK_CALIBRATION_COLUMNS}).astype({"windows": "int64", "breaches": "int64"})


@dataclass(frozen=True)
class BreachCalibration:
    """What the backtests say about breach probabilities, and the correction applied to live ones.

    Attributes:
        rho: copula correlation used for live probabilities (fitted, or ``risk.error_correlation``).
        knots: ``(raw, calibrated)`` points of the monotone map (``np.interp`` between them), or None.
        method: what is applied to live probabilities: ``none``, ``correlation`` (fitted rho),
            ``isotonic`` (monotone map) or ``correlation+isotonic``.
        reason: one sentence on why that method (what was tried, the numbers it was decided on).
        table: reliability rows (``RISK_CALIBRATION_COLUMNS``): ``probability`` = ``raw`` (the
            configured model) and, when a correction is applied, ``calibrated`` (out-of-fold); one
            row per non-empty bin and one ``all`` row with the overall Brier score.
        summary: JSON-serialisable counts and scores (windows, breaches, Brier raw / calibrated, rho).
    """

    rho: float
    knots: tuple[np.ndarray, np.ndarray] | None = None
    method: str = METHOD_NONE
    reason: str = ""
    table: pd.DataFrame = field(default_factory=empty_table)
    summary: dict[str, Any] = field(default_factory=dict)

    def apply(self, probability: np.ndarray) -> np.ndarray:
        """The monotone map applied to probabilities (any shape); unchanged without one."""
        if self.knots is None:
            return np.asarray(probability, dtype=float)
        return np.interp(probability, self.knots[0], self.knots[1])

    def settings(self, cfg: RiskConfig) -> RiskConfig:
        """``cfg`` with the correlation this calibration uses."""
        return cfg if self.rho == cfg.error_correlation else cfg.model_copy(update={"error_correlation": self.rho})


def from_summary(summary: dict[str, Any], cfg: RiskConfig) -> BreachCalibration:
    """The correction recorded in a risk run's summary (``summary["calibration"]``), to apply it again.

    A what-if computed later (the dashboard's growth slider) then uses the probabilities the risk
    stage published: ``assess_breaches(..., cal.settings(cfg), ..., recalibrate=cal.apply)``.
    """
    mapping = summary.get("map")
    knots = None if not mapping else (np.asarray(mapping["raw"], dtype=float),
                                      np.asarray(mapping["calibrated"], dtype=float))
    return BreachCalibration(float(summary.get("rho", cfg.error_correlation)), knots,
                             str(summary.get("method", METHOD_NONE)), str(summary.get("reason", "")),
                             summary=dict(summary))


def uncalibrated(cfg: RiskConfig, reason: str) -> BreachCalibration:
    """The configured probability model, with why nothing was checked or fitted."""
    return BreachCalibration(cfg.error_correlation, reason=reason,
                             summary={"method": METHOD_NONE, "reason": reason, "windows": 0, "breaches": 0,
                                      "rho": cfg.error_correlation, "rho_configured": cfg.error_correlation})


def window_outcomes(paths: pd.DataFrame, metrics: pd.DataFrame, cfg: RiskConfig
                    ) -> tuple[pd.DataFrame, np.ndarray]:
    """Per backtest window: did the actual breach, and the exceedance scores of its forecast.

    Args:
        paths: ``BACKTEST_FORECAST_COLUMNS`` (the forecast stage's ``backtest_forecasts``).
        metrics: processed metrics; the flags ``is_imputed``, ``is_outlier``, ``is_anomaly`` (where
            present) mark days that are not evidence of a breach either way.
        cfg: thresholds per metric and the interval of the bounds.

    Returns:
        ``(windows, scores)``: windows = ``server_id, metric, cutoff, days, days_above, breached``,
        one row per window with at least one trusted day, sorted; scores = (windows, days) matrix
        of ``probability.exceedance_scores`` over the trusted days, padded with ``+inf``.
    """
    require_columns(paths, BACKTEST_FORECAST_COLUMNS, "backtest_forecasts")
    frame = paths[list(BACKTEST_FORECAST_COLUMNS)]
    if any(c in metrics.columns for c in UNTRUSTED_FLAGS):
        marks = metrics[list(SERIES_KEY) + [DS]].assign(_bad=flagged(metrics, UNTRUSTED_FLAGS))
        frame = frame.merge(marks, on=[*SERIES_KEY, DS], how="left")
        frame = frame[~flag(frame.pop("_bad"))]
    frame = frame[frame["y"].notna()].sort_values([*WINDOW_KEY, DS], kind="mergesort").reset_index(drop=True)
    keys = list(WINDOW_KEY)
    threshold = thresholds(frame[METRIC], cfg).to_numpy(dtype=float)
    above = frame["y"].to_numpy(dtype=float) > threshold
    grouped = frame.assign(_above=above).groupby(keys, sort=True)
    windows = grouped.agg(days=(DS, "size"), days_above=("_above", "sum")).reset_index()
    windows["days_above"] = windows["days_above"].astype(np.int64)
    windows["breached"] = windows["days_above"] > 0
    scores = exceedance_scores(frame["yhat"].to_numpy(float), frame["yhat_lower"].to_numpy(float),
                               frame["yhat_upper"].to_numpy(float), threshold, cfg.interval)
    matrix = padded(scores, grouped.ngroup().to_numpy(), grouped.cumcount().to_numpy(), len(windows), np.inf)
    return windows, matrix


def horizon_probabilities(scores: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """P(at least one exceedance in the window) for every window and every correlation of ``grid``.

    Returns:
        (windows, len(grid)).
    """
    # A running sum, not .sum(): its pairwise blocks would depend on the padded width, i.e. on the
    # longest window among those computed together (a chunk of servers or the fleet).
    independent = (np.clip(-np.expm1(np.cumsum(log_ndtr(scores), axis=1)[:, -1]), 0.0, 1.0) if scores.size
                   else np.zeros(len(scores)))
    out = np.repeat(independent[:, None], len(grid), axis=1)
    live = independent >= _NEGLIGIBLE
    if live.any():
        for j, rho in enumerate(grid):
            out[live, j] = cumulative_probability(scores[live], float(rho))[:, -1]
    return out


def brier(probability: np.ndarray, outcome: np.ndarray) -> float:
    """Mean squared difference between probabilities and 0/1 outcomes (NaN without any)."""
    return float(np.mean((probability - outcome) ** 2)) if len(outcome) else float("nan")


def server_folds(servers: pd.Series, folds: int = FOLDS) -> np.ndarray:
    """Fold number of every row: servers in sorted order are dealt round-robin into ``folds`` folds."""
    codes, _ = pd.factorize(servers, sort=True)
    return codes % folds


def isotonic_knots(probability: np.ndarray, outcome: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points of the isotonic (non-decreasing) regression of outcomes on probabilities, on [0, 1]."""
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(probability, outcome)
    x, y = np.asarray(model.X_thresholds_, dtype=float), np.asarray(model.y_thresholds_, dtype=float)
    # Extend flat to the ends of [0, 1] so live probabilities outside the fitted range stay defined.
    return np.concatenate([[0.0], x, [1.0]]), np.concatenate([[y[0]], y, [y[-1]]])


def _best_rho(table: np.ndarray, outcome: np.ndarray, grid: np.ndarray) -> int:
    return int(np.argmin([brier(table[:, j], outcome) for j in range(len(grid))]))


def _out_of_fold(table: np.ndarray, outcome: np.ndarray, folds: np.ndarray, grid: np.ndarray,
                 rho_column: int | None, isotonic: bool) -> np.ndarray:
    """Each fold's probabilities from a correlation (None: fitted; else that column) and map fitted on the others."""
    out = np.empty(len(outcome))
    for k in np.unique(folds):
        test = folds == k
        j = _best_rho(table[~test], outcome[~test], grid) if rho_column is None else rho_column
        prob = table[test, j]
        if isotonic:
            x, y = isotonic_knots(table[~test, j], outcome[~test])
            prob = np.interp(prob, x, y)
        out[test] = prob
    return out


def calibration_table(probability: np.ndarray, outcome: np.ndarray, bins: int, label: str) -> pd.DataFrame:
    """Reliability rows of one set of probabilities (``RISK_CALIBRATION_COLUMNS``), then an ``all`` row."""
    table = reliability_table(pd.Series(probability), pd.Series(outcome.astype(bool)), bins=bins)
    table = table.rename(columns={"series": "windows"})
    total = pd.DataFrame({"bin_low": [0.0], "bin_high": [1.0], "windows": [len(outcome)],
                          "breaches": [int(outcome.sum())], "mean_probability": [float(np.mean(probability))],
                          "observed_frequency": [float(np.mean(outcome))], "brier": [brier(probability, outcome)]})
    out = pd.concat([table, total], ignore_index=True)
    out["bin"] = [f"{lo:.1f}-{hi:.1f}" for lo, hi in zip(out["bin_low"], out["bin_high"], strict=True)]
    out.loc[out.index[-1], "bin"] = "all"
    out["probability"] = label
    return out.astype({"windows": "int64", "breaches": "int64"})[list(RISK_CALIBRATION_COLUMNS)]


def calibrate_breaches(paths: pd.DataFrame | None, metrics: pd.DataFrame, cfg: RiskConfig) -> BreachCalibration:
    """Check breach probabilities against the backtests and fit the correction ``cfg`` allows.

    Args:
        paths: the forecast stage's ``backtest_forecasts`` (``BACKTEST_FORECAST_COLUMNS``), or None
            when the lake has none.
        metrics: processed metrics (for the ``is_imputed`` / ``is_outlier`` / ``is_anomaly`` flags).
        cfg: risk settings (``calibrate``, ``calibration_min_breaches``, ``isotonic_min_breaches``,
            ``calibration_bins``, thresholds, interval, ``error_correlation``).

    Returns:
        The BreachCalibration; its ``table`` has the columns of the ``risk_calibration`` table.
    """
    if paths is None or paths.empty:
        return calibrate_windows(None, cfg)
    return calibrate_windows(window_probabilities(paths, metrics, cfg), cfg)


def rho_grid(cfg: RiskConfig) -> np.ndarray:
    """The correlations a calibration tries: ``RHO_GRID`` and the configured one, sorted."""
    return np.unique(np.append(RHO_GRID, cfg.error_correlation))


def window_probabilities(paths: pd.DataFrame, metrics: pd.DataFrame, cfg: RiskConfig
                         ) -> tuple[pd.DataFrame, np.ndarray]:
    """What a calibration needs of the backtests: window outcomes and their probabilities per correlation.

    Per window, so the windows of a chunk of servers are those of the whole fleet: concatenating the
    chunks' results (servers in sorted order) gives the fleet's.

    Args:
        paths, metrics, cfg: as for ``window_outcomes``.

    Returns:
        ``(windows, table)``: windows as ``window_outcomes`` returns them; table = (windows,
        len(``rho_grid(cfg)``)) breach probabilities (``horizon_probabilities``).
    """
    windows, scores = window_outcomes(paths, metrics, cfg)
    return windows, horizon_probabilities(scores, rho_grid(cfg))


def calibrate_windows(found: tuple[pd.DataFrame, np.ndarray] | None, cfg: RiskConfig) -> BreachCalibration:
    """``calibrate_breaches`` from the windows and probabilities of ``window_probabilities``.

    Args:
        found: ``(windows, table)`` of every backtest window of the fleet, or None when there are no
            backtest forecasts.
        cfg: risk settings.

    Returns:
        The BreachCalibration.
    """
    if found is None:
        return uncalibrated(cfg, "no backtest forecasts to check against (capfc forecast writes them for series "
                                 "with the history a backtest window needs, when forecast.backtest_windows > 0)")
    windows, table = found
    if windows.empty:
        return uncalibrated(cfg, "no backtest window has a trusted actual to check against")
    outcome = windows["breached"].to_numpy(dtype=float)
    grid = rho_grid(cfg)
    configured = int(np.flatnonzero(grid == cfg.error_correlation)[0])
    raw = table[:, configured]
    n_hit, n_miss = int(outcome.sum()), int(len(outcome) - outcome.sum())
    summary: dict[str, Any] = {
        "windows": int(len(outcome)), "breaches": n_hit, "cutoffs": int(windows["cutoff"].nunique()),
        # Series end on different days, so distinct cutoff dates overstate the windows: count them per series.
        "windows_per_series": int(windows.groupby([SERVER_ID, METRIC]).size().max()),
        "breaches_by_metric": {str(k): int(v) for k, v in windows.groupby(METRIC)["breached"].sum().items()},
        "breach_servers": int(windows.loc[windows["breached"], SERVER_ID].nunique()),
        "brier_raw": round(brier(raw, outcome), 6), "rho_configured": cfg.error_correlation,
        # The score of always forecasting the base rate: a useful probability scores well below it.
        "brier_base_rate": round(brier(np.full(len(outcome), outcome.mean()), outcome), 6),
    }
    rho, knots, method, calibrated = cfg.error_correlation, None, METHOD_NONE, raw
    fewest = min(n_hit, n_miss)
    if not cfg.calibrate:
        reason = "risk.calibrate is false: configured probabilities kept"
    elif fewest < cfg.calibration_min_breaches:
        reason = (f"day-to-day error correlation: {n_hit} breach / {n_miss} non-breach windows, "
                  f"{cfg.calibration_min_breaches} of each needed to fit it (risk.calibration_min_breaches), so the "
                  f"configured {cfg.error_correlation:g} is kept; isotonic recalibration: not fitted")
    else:
        folds = server_folds(windows[SERVER_ID])
        best = _best_rho(table, outcome, grid)
        cv_rho = _out_of_fold(table, outcome, folds, grid, None, isotonic=False)
        b_raw, b_rho = brier(raw, outcome), brier(cv_rho, outcome)
        summary.update(rho_fitted=float(grid[best]), brier_cv_correlation=round(b_rho, 6))
        fitted = f"best fit {grid[best]:g}" + (" (the configured value)" if best == configured else "")
        if b_rho < b_raw and best != configured:
            rho, method, calibrated = float(grid[best]), METHOD_RHO, cv_rho
            reason = (f"day-to-day error correlation: {fitted}, held-out Brier {b_rho:.5f} below the configured "
                      f"value's {b_raw:.5f}: applied")
        else:
            verdict = "not below" if b_rho >= b_raw else "below"
            reason = (f"day-to-day error correlation: {fitted}, held-out Brier {b_rho:.5f} {verdict} the configured "
                      f"value's {b_raw:.5f}: the configured {cfg.error_correlation:g} is kept")
        # The map is fitted on top of the correlation chosen above, and cross-validated the same way.
        if fewest < cfg.isotonic_min_breaches:
            reason += (f"; isotonic recalibration: {n_hit} breach / {n_miss} non-breach windows, "
                       f"{cfg.isotonic_min_breaches} of each needed (risk.isotonic_min_breaches): not fitted")
        else:
            cv_iso = _out_of_fold(table, outcome, folds, grid, None if method == METHOD_RHO else configured,
                                  isotonic=True)
            b_iso, b_best = brier(cv_iso, outcome), brier(calibrated, outcome)
            summary["brier_cv_isotonic"] = round(b_iso, 6)
            if b_iso < b_best:
                j = int(np.flatnonzero(grid == rho)[0])
                method = METHOD_BOTH if method == METHOD_RHO else METHOD_ISOTONIC
                knots, calibrated = isotonic_knots(table[:, j], outcome), cv_iso
                reason += f"; isotonic recalibration: held-out Brier {b_iso:.5f} below {b_best:.5f}: applied"
            else:
                reason += f"; isotonic recalibration: held-out Brier {b_iso:.5f} not below {b_best:.5f}: not applied"
    parts = [calibration_table(raw, outcome, cfg.calibration_bins, "raw")]
    if method != METHOD_NONE:
        parts.append(calibration_table(calibrated, outcome, cfg.calibration_bins, "calibrated"))
    applied = parts[-1][parts[-1]["bin"] != "all"]
    summary.update(method=method, reason=reason, rho=rho, brier_calibrated=round(brier(calibrated, outcome), 6),
                   reliability=[{"bin": str(label), "windows": int(n), "breaches": int(k),
                                 "mean_probability": round(float(p), 4), "observed_frequency": round(float(o), 4)}
                                for label, n, k, p, o in zip(applied["bin"], applied["windows"].to_numpy(np.int64),
                                                             applied["breaches"].to_numpy(np.int64),
                                                             applied["mean_probability"].to_numpy(float),
                                                             applied["observed_frequency"].to_numpy(float),
                                                             strict=True)])
    if knots is not None:
        # Full precision: the map's steps sit at tiny raw probabilities, rounding would merge them.
        summary["map"] = {"raw": knots[0].tolist(), "calibrated": knots[1].tolist()}
    return BreachCalibration(rho, knots, method, reason, pd.concat(parts, ignore_index=True), summary)


__all__ = ["BreachCalibration", "calibrate_breaches", "calibrate_windows", "calibration_table", "from_summary",
           "horizon_probabilities", "isotonic_knots", "rho_grid", "server_folds", "uncalibrated", "window_outcomes",
           "window_probabilities"]
