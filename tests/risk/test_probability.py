"""Breach probabilities from three quantiles, and over a horizon with correlated errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtr, ndtri

from capacity_forecaster.risk.probability import (
    cumulative_probability,
    daily_probability,
    exceedance_scores,
    reliability_table,
)


def test_daily_probability_is_exact_at_the_three_quantiles() -> None:
    yhat, lower, upper = np.array([60.0]), np.array([50.0]), np.array([75.0])
    assert daily_probability(yhat, lower, upper, 75.0, 0.8)[0] == pytest.approx(0.1)
    assert daily_probability(yhat, lower, upper, 60.0, 0.8)[0] == pytest.approx(0.5)
    assert daily_probability(yhat, lower, upper, 50.0, 0.8)[0] == pytest.approx(0.9)


def test_zero_width_side_is_a_point_forecast() -> None:
    scores = exceedance_scores(np.array([85.0, 70.0]), np.array([85.0, 70.0]), np.array([85.0, 70.0]), 80.0, 0.8)
    assert scores.tolist() == [-np.inf, np.inf]


def test_correlation_one_is_the_running_maximum_and_zero_is_independence() -> None:
    p = np.array([[0.1, 0.3, 0.2, 0.05]])
    scores = -ndtri(p)
    assert cumulative_probability(scores, 1.0)[0] == pytest.approx([0.1, 0.3, 0.3, 0.3])
    independent = 1 - np.cumprod(1 - p[0])
    assert cumulative_probability(scores, 0.0)[0] == pytest.approx(independent)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=1, max_size=30), st.floats(0.05, 0.999))
def test_correlated_probability_lies_between_comonotone_and_independent(scores: list[float], rho: float) -> None:
    u = np.array([scores])
    mid = cumulative_probability(u, rho)[0]
    low = cumulative_probability(u, 1.0)[0]
    high = cumulative_probability(u, 0.0)[0]
    tolerance = 1e-5 if rho <= 0.9 else 3e-3  # quadrature error (see the module docstring)
    assert np.all(np.diff(mid) >= -1e-12)
    assert np.all(mid >= low - tolerance) and np.all(mid <= high + tolerance)


@settings(max_examples=40, deadline=None)
@given(st.floats(20, 95), st.floats(0.5, 10), st.floats(0.1, 15), st.floats(0, 1))
def test_probability_is_monotone_in_the_forecast_level(level: float, spread: float, shift: float, rho: float) -> None:
    days = np.arange(20.0)
    y = level + 0.2 * days

    def prob(y: np.ndarray) -> float:
        s = exceedance_scores(y, y - spread, y + spread, 80.0, 0.8)
        return float(cumulative_probability(s[None, :], rho)[0, -1])

    assert prob(y + shift) >= prob(y) - 1e-9


def test_reliability_table_and_brier() -> None:
    table = reliability_table(pd.Series([0.05, 0.15, 0.95, 0.9]), pd.Series([False, False, True, True]), bins=10)
    assert table["series"].sum() == 4
    assert table.attrs["brier"] == pytest.approx(np.mean([0.05**2, 0.15**2, 0.05**2, 0.1**2]))


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9, 0.97, 1.0])
def test_count_probability_is_the_horizon_probability_at_k1_and_falls_with_k(rho: float) -> None:
    from capacity_forecaster.risk.probability import count_probability

    scores = np.random.default_rng(3).normal(1.5, 1.0, (6, 40))
    scores[0, 30:] = np.inf  # a shorter series, padded
    one = count_probability(scores, rho, 1)
    assert one == pytest.approx(cumulative_probability(scores, rho)[:, -1], abs=1e-9)
    three, five = count_probability(scores, rho, 3), count_probability(scores, rho, 5)
    assert (three <= one + 1e-12).all() and (five <= three + 1e-12).all() and (five >= 0).all()


def test_count_probability_when_every_day_shares_one_error_is_the_kth_smallest_score() -> None:
    from capacity_forecaster.risk.probability import count_probability

    scores = np.array([[3.0, -1.0, 0.5, np.inf], [np.inf, np.inf, np.inf, np.inf], [2.0, 2.0, 2.0, 2.0]])
    # Comonotone: k days are over exactly when the shared error passes the k-th smallest score.
    assert count_probability(scores, 1.0, 2) == pytest.approx([ndtr(-0.5), 0.0, ndtr(-2.0)])
    assert count_probability(scores, 1.0, 5).tolist() == [0.0, 0.0, 0.0]  # more days than the horizon
    # ... and the limit of the copula: a Monte Carlo at rho just below it agrees.
    rng = np.random.default_rng(7)
    row = rng.normal(1.0, 0.6, 30)
    factor = rng.standard_normal((200_000, 1))
    latent = np.sqrt(0.9999) * factor + np.sqrt(1 - 0.9999) * rng.standard_normal((200_000, 30))
    simulated = ((latent > row[None, :]).sum(axis=1) >= 3).mean()
    assert count_probability(row[None, :], 1.0, 3)[0] == pytest.approx(simulated, abs=0.005)
