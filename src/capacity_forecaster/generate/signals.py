"""Daily P95 utilisation signals: cpu/memory load, network traffic and disk usage over (servers x days)."""

from __future__ import annotations

import numpy as np

from capacity_forecaster.generate.archetypes import FleetPlan
from capacity_forecaster.generate.calendar import Calendar
from capacity_forecaster.generate.draws import SignalSource

DAYS_PER_YEAR = 365.25
# Day-to-day persistence of the noise: a busy day tends to follow a busy day.
_NOISE_PHI = 0.6
# Noise standard deviation = floor + relative noise * load (heteroscedastic), per (cpu, memory).
_NOISE_FLOOR = np.array([0.3, 0.2])
# A migration cuts over within about a week.
_CUTOVER_DAYS = 7.0


def ar1_filter(z: np.ndarray, phi: float = _NOISE_PHI) -> np.ndarray:
    """Stationary AR(1) noise with unit variance along the last axis from standard normals ``z`` (consumed)."""
    shape = z.shape
    z[..., 0] /= np.sqrt(1.0 - phi**2)
    # y[t] = sqrt(1 - phi^2) z[t] + phi y[t-1]; a loop over days, vectorised over series (importing
    # scipy.signal for lfilter costs ~2.5 s, more than generating a 1,000-server fleet).
    out = np.sqrt(1.0 - phi**2) * z
    for t in range(1, shape[-1]):
        out[..., t] += phi * out[..., t - 1]
    return out


def leak_cycles(plan: FleetPlan, n_days: int) -> int:
    """Restart cycles drawn per leaking server; the fleet's shortest period sets it, so that a chunk
    of servers draws as many as the whole fleet (0 without leaking servers)."""
    if not np.isfinite(plan.leak_period_min):
        return 0
    return int(np.ceil(n_days / (0.75 * plan.leak_period_min))) + 2


def disk_events(plan: FleetPlan, n_days: int) -> int:
    """Clean-up events drawn per server (sized by the fleet's shortest clean-up interval)."""
    if not np.isfinite(plan.cleanup_days_min):
        return 0
    return int(np.ceil(n_days / (0.5 * plan.cleanup_days_min))) + 2


def _leak(plan: FleetPlan, n_days: int, source: SignalSource) -> np.ndarray:
    """Memory-leak saw-tooth in points, (servers, days): linear growth, reset at each restart."""
    out = np.zeros((len(plan), n_days))
    rows = np.flatnonzero(plan.leak_amp > 0)
    if len(rows) == 0:
        return out
    period = plan.leak_period[rows]
    cycles = source.uniform("leak_cycles", 0.75, 1.25, (len(rows), leak_cycles(plan, n_days))) * period[:, None]
    phase = source.uniform("leak_phase", 0.0, 1.0, len(rows)) * period
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
    plan: FleetPlan, cal: Calendar, source: SignalSource
) -> tuple[np.ndarray, np.ndarray]:
    """The expected cpu/memory load and its noise, both (servers, 2, days) with axis 1 = (cpu, memory).

    The expected load combines the level, a piecewise-linear trend with a changepoint, a migration
    level shift, the weekly/holiday business cycle, the year-end season, month/quarter-end batch
    uplifts and (memory) the leak saw-tooth. Noise is AR(1) and grows with the load.

    Args:
        plan: the fleet plan.
        cal: calendar over the whole timeline (history and holdout).
        source: the random draws (consumed).

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
    load[:, 1] += _leak(plan, len(cal), source)
    noise = ar1_filter(source.normal("load_noise", load.shape))
    noise *= _NOISE_FLOOR[None, :, None] + plan.noise[:, :, None] * load
    return load, noise


def network_load(cpu_expected: np.ndarray, plan: FleetPlan, source: SignalSource) -> np.ndarray:
    """Network utilisation, (servers, days): a share of the cpu load (same weekly cycle) plus noise."""
    expected = 0.3 + plan.net_ratio[:, None] * cpu_expected
    return expected + (0.15 + 0.08 * expected) * ar1_filter(source.normal("network_noise", expected.shape))


def disk_usage(plan: FleetPlan, n_days: int, source: SignalSource) -> np.ndarray:
    """Used disk space in %, (servers, days): steady growth with occasional clean-up drops.

    Each clean-up frees 60-95 % of what was written since the previous one, so usage creeps up slowly.
    """
    n = len(plan)
    every = plan.disk_cleanup_days
    gaps = source.uniform("disk_gaps", 0.5, 1.5, (n, disk_events(plan, n_days))) * every[:, None]
    phase = source.uniform("disk_phase", 0.0, 1.0, n)
    times = np.floor(np.cumsum(gaps, axis=1) - phase[:, None] * every[:, None])
    times = times.astype(np.int64)
    since_previous = np.diff(np.maximum(times, 0), axis=1, prepend=0)
    drops = source.uniform("disk_drops", 0.6, 0.95, times.shape) * plan.disk_rate[:, None] * since_previous
    inside = (times >= 0) & (times < n_days)
    freed = np.zeros((n, n_days + 1))
    rows = np.broadcast_to(np.arange(n)[:, None], times.shape)
    freed[rows[inside], times[inside]] = drops[inside]
    day = np.arange(n_days)
    level = plan.disk_start[:, None] + plan.disk_rate[:, None] * day - np.cumsum(freed[:, :n_days], axis=1)
    return level + 0.15 * ar1_filter(source.normal("disk_noise", level.shape), phi=0.8)
