"""Breach probabilities from forecast quantiles: per day, and over a horizon with correlated errors.

Per day, the predictive distribution is approximated by a two-piece normal pinned to the three
quantiles the forecast table carries: ``yhat`` is taken as the median, ``yhat_lower`` and
``yhat_upper`` as the ``(1 - interval) / 2`` and ``(1 + interval) / 2`` quantiles, so each side has
its own spread (skewed intervals, bounds clipped at 0 or 100, stay exact at the three quantiles).
Exceeding the threshold on day ``t`` is then ``Z_t > u_t`` for a standard normal ``Z_t``.

Across days, forecast errors are strongly dependent (a level error persists for the whole
horizon), so "at least one day above" is not one minus the product of daily non-exceedances.
The errors are tied by a one-factor Gaussian copula ``Z_t = sqrt(rho) F + sqrt(1 - rho) e_t``:
``rho = 1`` makes every day move together (the probability is the largest daily probability),
``rho = 0`` makes them independent. The cumulative probability of a breach by each day is
integrated over ``F``: with Gauss-Hermite quadrature up to ``rho = 0.9`` (error below 1e-5), and
above it, where the integrand turns into a step, with a midpoint rule on 400 equal-probability
values of ``F`` (error below 0.3 percentage points).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import log_ndtr, ndtr, ndtri

_NODES = 48
_GRID = 400
_SMOOTH_LIMIT = 0.9
# Above this correlation the copula is treated as comonotone (exact and avoids dividing by ~0).
_COMONOTONE = 0.9999
_CHUNK_CELLS = 4_000_000


def exceedance_scores(
    yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray, threshold: np.ndarray | float, interval: float
) -> np.ndarray:
    """Standard-normal scores ``u`` with ``P(value > threshold) = 1 - Phi(u)`` per forecast day.

    Args:
        yhat: forecast median.
        lower: lower interval bound (the ``(1 - interval) / 2`` quantile).
        upper: upper interval bound (the ``(1 + interval) / 2`` quantile).
        threshold: breach threshold(s), broadcastable to ``yhat``.
        interval: central interval width (0.8 for an 80 % interval).

    Returns:
        Scores; ``+inf`` where the distribution cannot reach the threshold (a zero-width side
        below it) or a quantile is missing, ``-inf`` where it is certainly above.
    """
    z = float(ndtri(0.5 + interval / 2.0))
    gap = np.asarray(threshold, dtype=float) - np.asarray(yhat, dtype=float)
    spread = np.where(gap >= 0.0, np.asarray(upper, dtype=float) - yhat, yhat - np.asarray(lower, dtype=float))
    spread = np.maximum(spread, 0.0) / z
    with np.errstate(divide="ignore", invalid="ignore"):
        u = gap / spread
    # A zero spread means a point forecast on that side: above the threshold (gap < 0) is certain,
    # at or below it is impossible.
    scores = np.where(spread > 0.0, u, np.where(gap < 0.0, -np.inf, np.inf))
    return np.where(np.isnan(scores), np.inf, scores)


def daily_probability(
    yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray, threshold: np.ndarray | float, interval: float
) -> np.ndarray:
    """P(value > threshold) per forecast day under the two-piece normal (see module docstring)."""
    return ndtr(-exceedance_scores(yhat, lower, upper, threshold, interval))


def cumulative_probability(scores: np.ndarray, rho: float) -> np.ndarray:
    """P(at least one exceedance by day t) for every day of every series.

    Args:
        scores: (series, days) exceedance scores from ``exceedance_scores``; pad a series that
            is shorter than the others with ``+inf`` (a day that cannot breach).
        rho: correlation of the latent daily errors, 0 (independent) to 1 (comonotone).

    Returns:
        (series, days) non-decreasing along days, in [0, 1].
    """
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        return np.zeros(scores.shape)
    if rho >= _COMONOTONE:
        return np.maximum.accumulate(ndtr(-scores), axis=1)
    if rho <= 0.0:
        return -np.expm1(np.cumsum(log_ndtr(scores), axis=1))
    nodes, weights = _factor_nodes(rho)
    a, b = np.sqrt(rho), np.sqrt(1.0 - rho)
    out = np.empty(scores.shape)
    rows = max(1, _CHUNK_CELLS // (scores.shape[1] * len(nodes)))
    for start in range(0, scores.shape[0], rows):
        block = scores[start:start + rows]
        # log P(no exceedance by t | F = f) for every node f: (series, nodes, days)
        log_none = np.cumsum(log_ndtr((block[:, None, :] - a * nodes[None, :, None]) / b), axis=2)
        out[start:start + rows] = 1.0 - np.einsum("snt,n->st", np.exp(log_none), weights)
    return np.clip(out, 0.0, 1.0)


def count_probability(scores: np.ndarray, rho: float, k: int) -> np.ndarray:
    """P(the threshold is exceeded on at least ``k`` days of the horizon), per series.

    The same one-factor copula as ``cumulative_probability``: given the common factor the days
    are independent, so the number of exceedances is Poisson-binomial; its tail is computed by a
    small recursion over days (counts 0..k-1, the rest absorbed in "k or more") and integrated
    over the factor. ``k = 1`` equals the last column of ``cumulative_probability``. At ``rho``
    of ``_COMONOTONE`` or more every day shares one error ``F``: a day is over exactly when
    ``F > u_t``, so at least ``k`` days are over when ``F`` passes the ``k``-th smallest score, and
    the probability is ``1 - Phi(u_(k))`` (exact, where the factor grid is off by up to 0.3 pp and
    costs a recursion over every day at 400 factor values).

    Args:
        scores: (series, days) exceedance scores, padded with ``+inf``.
        rho: correlation of the latent daily errors.
        k: days of exceedance required (>= 1).

    Returns:
        (series,) probabilities in [0, 1], non-increasing in k.
    """
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        return np.zeros(scores.shape[0])
    if rho >= _COMONOTONE:
        if k > scores.shape[1]:
            return np.zeros(scores.shape[0])
        kth = np.partition(scores, k - 1, axis=1)[:, k - 1]
        return np.clip(ndtr(-kth), 0.0, 1.0)
    rho = max(rho, 0.0)
    nodes, weights = (np.zeros(1), np.ones(1)) if rho <= 0.0 else _factor_nodes(rho)
    a, b = np.sqrt(rho), np.sqrt(1.0 - rho)
    out = np.empty(scores.shape[0])
    rows = max(1, _CHUNK_CELLS // (scores.shape[1] * len(nodes)))
    for start in range(0, scores.shape[0], rows):
        daily = ndtr((a * nodes[None, :, None] - scores[start:start + rows, None, :]) / b)  # (series, nodes, days)
        below = np.zeros(daily.shape[:2] + (k,))  # P(count == j | F) for j < k
        below[:, :, 0] = 1.0
        shifted = np.zeros_like(below)
        for t in range(daily.shape[2]):
            p = daily[:, :, t, None]
            shifted[:, :, 1:] = below[:, :, :-1]
            below = below * (1.0 - p) + shifted * p
        # einsum, not a BLAS product: a row's value must not depend on the rows beside it (chunked runs).
        out[start:start + rows] = 1.0 - np.einsum("sn,n->s", below.sum(axis=2), weights)
    return np.clip(out, 0.0, 1.0)


def _factor_nodes(rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Values of the common factor F and their weights (summing to 1) for integrating over F."""
    if rho <= _SMOOTH_LIMIT:
        nodes, weights = hermegauss(_NODES)
        return nodes, weights / weights.sum()
    return ndtri((np.arange(_GRID) + 0.5) / _GRID), np.full(_GRID, 1.0 / _GRID)


def padded(values: np.ndarray, group: np.ndarray, position: np.ndarray, n_groups: int, fill: float) -> np.ndarray:
    """Scatter a long column into a (groups, max position + 1) matrix, ``fill`` elsewhere."""
    width = int(position.max()) + 1 if len(position) else 0
    out = np.full((n_groups, width), fill, dtype=float)
    out[group, position] = values
    return out


def reliability_table(probability: pd.Series, outcome: pd.Series, bins: int = 10) -> pd.DataFrame:
    """Calibration of breach probabilities against what happened (backtests or a holdout).

    Bins are equal-width, closed on the left (``[0.1, 0.2)``), the last one closed on both sides.
    A calibrated predictor has ``observed_frequency`` close to ``mean_probability`` in every bin
    (within the binomial noise of ``series`` draws).

    Args:
        probability: predicted probabilities, one per series (or backtest window).
        outcome: whether the series really breached (bool), aligned with ``probability``.
        bins: equal-width probability bins.

    Returns:
        One row per non-empty bin: bin_low, bin_high, series, breaches, mean_probability,
        observed_frequency, brier (the bin's mean squared error); ``attrs["brier"]`` holds the
        overall Brier score.
    """
    p = probability.to_numpy(dtype=float)
    y = outcome.to_numpy(dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    frame = pd.DataFrame({"bin": idx, "p": p, "y": y, "sq": (p - y) ** 2})
    table = frame.groupby("bin").agg(series=("p", "size"), breaches=("y", "sum"), mean_probability=("p", "mean"),
                                     observed_frequency=("y", "mean"), brier=("sq", "mean")).reset_index()
    table["breaches"] = table["breaches"].astype(np.int64)
    table.insert(1, "bin_low", edges[table["bin"]])
    table.insert(2, "bin_high", edges[table["bin"] + 1])
    table = table.drop(columns="bin")
    table.attrs["brier"] = float(np.mean((p - y) ** 2)) if len(p) else float("nan")
    return table
