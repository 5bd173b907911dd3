"""Daily P95 utilisation signals: cpu/memory load, network traffic and disk usage over (servers x days)."""

from __future__ import annotations

import numpy as np

from capacity_forecaster.generate.archetypes import FleetPlan
from capacity_forecaster.generate.calendar import Calendar

DAYS_PER_YEAR = 365.25
# Day-to-day persistence of the noise: a busy day tends to follow a busy day.
_NOISE_PHI = 0.6
# Noise standard deviation = floor + relative noise * load (heteroscedastic), per (cpu, memory).
_NOISE_FLOOR = np.array([0.3, 0.2])
# A migration cuts over within about a week.
_CUTOVER_DAYS = 7.0


def ar1_noise(rng: np.random.Generator, shape: tuple[int, ...], phi: float = _NOISE_PHI) -> np.ndarray:
    """Stationary AR(1) noise with unit variance along the last axis."""
    z = rng.standard_normal(shape)
    z[..., 0] /= np.sqrt(1.0 - phi**2)
    # y[t] = sqrt(1 - phi^2) z[t] + phi y[t-1]; a loop over days, vectorised over series (importing
    # scipy.signal for lfilter costs ~2.5 s, more than generating a 1,000-server fleet).
    out = np.sqrt(1.0 - phi**2) * z
    for t in range(1, shape[-1]):
        out[..., t] += phi * out[..., t - 1]
    return out


def _leak(plan: FleetPlan, n_days: int, rng: np.random.Generator) -> np.ndarray:
    """Memory-leak saw-tooth in points, (servers, days): linear growth, reset at each restart."""
    out = np.zeros((len(plan), n_days))
    rows = np.flatnonzero(plan.leak_amp > 0)
    if len(rows) == 0:
        return out
    period = plan.leak_period[rows]
    n_cycles = int(np.ceil(n_days / (0.75 * period.min()))) + 2
    cycles = rng.uniform(0.75, 1.25, (len(rows), n_cycles)) * period[:, None]
    phase = rng.uniform(0.0, 1.0, len(rows)) * period
    restarts = np.floor(np.cumsum(cycles, axis=1) - phase[:, None]).astype(np.int64)
    day = np.arange(n_days)
    marks = np.full((len(rows), n_days + 1), np.iinfo(np.int64).min)
    inside = (restarts >= 0) & (restarts < n_days)
    row_idx = np.broadcast_to(np.arange(len(rows))[:, None], restarts.shape)
    marks[row_idx[inside], restarts[inside]] = restarts[inside]
    marks[:, 0] = np.maximum(marks[:, 0], np.floor(-phase).astype(np.int64))
    last_restart = np.maximum.accumulate(marks[:, :n_days], axis=1)
    out[rows] = (plan.leak_amp[rows] / period)[:, None] * (day[None, :] - last_restart)
    return out


def cpu_memory_load(
    plan: FleetPlan, cal: Calendar, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The expected cpu/memory load and its noise, both (servers, 2, days) with axis 1 = (cpu, memory).

    The expected load combines the level, a piecewise-linear trend with a changepoint, a migration
    level shift, the weekly/holiday business cycle, the year-end season, month/quarter-end batch
    uplifts and (memory) the leak saw-tooth. Noise is AR(1) and grows with the load.

    Args:
        plan: the fleet plan.
        cal: calendar over the whole timeline (history and holdout).
        rng: random generator (consumed).

    Returns:
        (expected load, noise); the observed process is their sum.
    """
    day = np.arange(len(cal), dtype=np.float64)
    after_cp = np.maximum(0.0, day[None, :] - plan.changepoint[:, None]) / DAYS_PER_YEAR
    cutover = np.clip((day[None, :] - plan.shift_day[:, None]) / _CUTOVER_DAYS, 0.0, 1.0)
    # Built in place on one (servers, 2, days) array: the fleet-sized temporaries dominate the cost.
    load = plan.slope[:, :, None] * (day / DAYS_PER_YEAR)
    load += plan.level[:, :, None]
    load += plan.slope_late[:, :, None] * after_cp[:, None, :]
    load += plan.shift[:, :, None] * cutover[:, None, :]
    np.maximum(load, 0.5, out=load)
    load *= 1.0 - plan.weekend[:, :, None] * (1.0 - cal.busy)
    load *= 1.0 + plan.year_end[:, :, None] * cal.year_end
    quarter = 1.0 + plan.quarter_boost[:, None] * cal.is_quarter_month
    load += plan.month_end[:, :, None] * (cal.month_end * quarter)[:, None, :]
    load[:, 1] += _leak(plan, len(cal), rng)
    noise = ar1_noise(rng, load.shape)
    noise *= _NOISE_FLOOR[None, :, None] + plan.noise[:, :, None] * load
    return load, noise


def network_load(cpu_expected: np.ndarray, plan: FleetPlan, rng: np.random.Generator) -> np.ndarray:
    """Network utilisation, (servers, days): a share of the cpu load (same weekly cycle) plus noise."""
    expected = 0.3 + plan.net_ratio[:, None] * cpu_expected
    return expected + (0.15 + 0.08 * expected) * ar1_noise(rng, expected.shape)


def disk_usage(plan: FleetPlan, n_days: int, rng: np.random.Generator) -> np.ndarray:
    """Used disk space in %, (servers, days): steady growth with occasional clean-up drops.

    Each clean-up frees 60-95 % of what was written since the previous one, so usage creeps up slowly.
    """
    n = len(plan)
    every = plan.disk_cleanup_days
    n_events = int(np.ceil(n_days / (0.5 * every.min()))) + 2
    gaps = rng.uniform(0.5, 1.5, (n, n_events)) * every[:, None]
    times = np.floor(np.cumsum(gaps, axis=1) - rng.uniform(0.0, 1.0, n)[:, None] * every[:, None])
    times = times.astype(np.int64)
    since_previous = np.diff(np.maximum(times, 0), axis=1, prepend=0)
    drops = rng.uniform(0.6, 0.95, times.shape) * plan.disk_rate[:, None] * since_previous
    inside = (times >= 0) & (times < n_days)
    freed = np.zeros((n, n_days + 1))
    rows = np.broadcast_to(np.arange(n)[:, None], times.shape)
    freed[rows[inside], times[inside]] = drops[inside]
    day = np.arange(n_days)
    level = plan.disk_start[:, None] + plan.disk_rate[:, None] * day - np.cumsum(freed[:, :n_days], axis=1)
    return level + 0.15 * ar1_noise(rng, level.shape, phi=0.8)
