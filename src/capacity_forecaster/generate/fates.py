"""Make each server's holdout outcome (breach / borderline / normal) hold exactly by rescaling its load."""

from __future__ import annotations

import numpy as np

from capacity_forecaster.generate.archetypes import FleetPlan
from capacity_forecaster.generate.draws import SignalSource

BREACH_DAYS = 3
# A breaching metric's third-highest holdout day (expected load) is placed in this band, and its
# third-highest actual day at least at _BREACH_FLOOR; the breach therefore lasts several days.
_BREACH_TARGET = (83.0, 88.0)
_BREACH_FLOOR = 81.0
# A borderline metric peaks in this band; a normal metric whose holdout peak would exceed
# _NORMAL_CAP is scaled down to peak in _NORMAL_TARGET.
_BORDERLINE_TARGET = (72.5, 78.0)
_NORMAL_CAP = 68.0
_NORMAL_TARGET = (56.0, 66.0)


def _nth_highest(values: np.ndarray, n: int) -> np.ndarray:
    """The n-th highest value along the last axis."""
    size = values.shape[-1]
    return np.partition(values, size - n, axis=-1)[..., size - n]


def capped_count(expected: np.ndarray, noise: np.ndarray, n_obs: int) -> int:
    """How many (server, metric) pairs ``fate_scales`` scales down (one random target each)."""
    if expected.shape[2] <= n_obs:
        return 0
    peak = (expected[:, :, n_obs:] + noise[:, :, n_obs:]).max(axis=2)
    return int((peak > _NORMAL_CAP).sum())


def fate_scales(
    expected: np.ndarray, noise: np.ndarray, plan: FleetPlan, n_obs: int, source: SignalSource
) -> np.ndarray:
    """Per-server, per-metric factors that make the fates hold on the holdout.

    The whole series (history and holdout) of a metric is multiplied by its factor, so the shape
    that causes a breach (trend, quarter-end batch, year-end season) is visible in history.

    - breach: the fate metric is above 80 on at least ``min(3, holdout)`` holdout days;
    - borderline: the fate metric peaks in [72.5, 78) in the holdout;
    - every other (server, metric) peaks below 70 in the holdout.

    Args:
        expected: expected cpu/memory load, (servers, 2, days).
        noise: its noise, same shape.
        plan: the fleet plan (fate and fate_metric are read).
        n_obs: observed days; the holdout is the rest of the timeline.
        source: the random draws (consumed).

    Returns:
        Factors, (servers, 2); 1 where nothing needs to change, all 1 without a holdout.
    """
    n_servers = expected.shape[0]
    scale = np.ones((n_servers, 2))
    holdout = expected.shape[2] - n_obs
    if holdout <= 0:
        return scale
    series = expected[:, :, n_obs:] + noise[:, :, n_obs:]
    peak = series.max(axis=2)

    capped = peak > _NORMAL_CAP
    scale[capped] = source.uniform("capped", *_NORMAL_TARGET, int(capped.sum())) / peak[capped]

    metric = np.where(plan.fate_metric == "memory", 1, 0)
    breach = np.flatnonzero(plan.fate == "breach")
    if len(breach):
        n_top = min(BREACH_DAYS, holdout)
        m = metric[breach]
        top_expected = _nth_highest(expected[breach, m, n_obs:], n_top)
        top_actual = _nth_highest(series[breach, m], n_top)
        target = source.uniform("breach", *_BREACH_TARGET, len(breach))
        scale[breach, m] = np.maximum(target / top_expected, _BREACH_FLOOR / top_actual)
    border = np.flatnonzero(plan.fate == "borderline")
    if len(border):
        m = metric[border]
        scale[border, m] = source.uniform("border", *_BORDERLINE_TARGET, len(border)) / peak[border, m]
    return scale
