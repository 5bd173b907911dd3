"""Server archetypes, their fates (breach / borderline / normal) and the per-server behaviour parameters."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

ARCHETYPES = ("idle", "steady", "growing", "batch", "memory_leak", "seasonal", "migrated")
FATES = ("breach", "borderline", "normal")

# Share of the fleet per archetype (sums to 1); counts use the largest remainder, so any fleet of at
# least len(ARCHETYPES) servers holds every archetype.
_SHARES = {
    "idle": 0.18,
    "steady": 0.16,
    "growing": 0.16,
    "batch": 0.14,
    "memory_leak": 0.12,
    "seasonal": 0.12,
    "migrated": 0.12,
}
# Fraction of each archetype that is made to breach 80 % in the holdout, or to come close (70-80 %).
# Breaches come from behaviour visible in history: a trend, quarter-end batches, the year-end season.
_BREACH_SHARE = {"growing": 0.45, "batch": 0.2, "seasonal": 0.25}
_BORDERLINE_SHARE = {"steady": 0.12, "growing": 0.12, "memory_leak": 0.15, "migrated": 0.12}
# Which metric carries the fate (probability of cpu; memory otherwise).
_FATE_CPU_PROB = {
    "growing": 0.65,
    "batch": 1.0,
    "seasonal": 1.0,
    "steady": 0.7,
    "migrated": 0.7,
    "memory_leak": 0.0,
}

# Uniform ranges of the behaviour parameters; parameters an archetype does not list are 0.
# Levels are business-day percentages, slopes percentage points per year, *_weekend the fraction of
# load that disappears on weekends and holidays, *_month_end the month-end batch uplift in points,
# *_year_end the relative year-end uplift, shift the migration level shift in points.
_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "idle": {
        "cpu_level": (2.0, 5.0),
        "mem_level": (8.0, 20.0),
        "cpu_weekend": (0.0, 0.15),
        "mem_weekend": (0.0, 0.03),
        "net_ratio": (0.15, 0.3),
        "disk_start": (8.0, 25.0),
        "disk_rate": (0.002, 0.008),
    },
    "steady": {
        "cpu_level": (25.0, 42.0),
        "mem_level": (35.0, 55.0),
        "cpu_weekend": (0.35, 0.55),
        "mem_weekend": (0.05, 0.15),
        "cpu_slope": (-1.0, 1.5),
        "mem_slope": (-0.5, 1.0),
        "cpu_month_end": (0.0, 1.5),
        "cpu_year_end": (0.0, 0.04),
    },
    "growing": {
        "cpu_level": (12.0, 22.0),
        "mem_level": (25.0, 35.0),
        "cpu_weekend": (0.25, 0.45),
        "mem_weekend": (0.05, 0.12),
        "cpu_slope": (3.0, 6.0),
        "mem_slope": (2.0, 4.0),
        "cpu_slope_late": (8.0, 14.0),
        "mem_slope_late": (5.0, 9.0),
        "changepoint_days": (250.0, 600.0),
    },
    "batch": {
        "cpu_level": (14.0, 24.0),
        "mem_level": (30.0, 45.0),
        "cpu_weekend": (0.2, 0.4),
        "mem_weekend": (0.03, 0.1),
        "cpu_slope": (0.0, 2.0),
        "cpu_month_end": (22.0, 30.0),
        "mem_month_end": (6.0, 12.0),
        "quarter_boost": (0.5, 0.75),
    },
    "memory_leak": {
        "cpu_level": (15.0, 28.0),
        "mem_level": (22.0, 32.0),
        "cpu_weekend": (0.25, 0.45),
        "mem_weekend": (0.0, 0.04),
        "mem_slope": (0.0, 1.0),
        "leak_amp": (30.0, 42.0),
        "leak_period": (14.0, 35.0),
    },
    "seasonal": {
        "cpu_level": (18.0, 28.0),
        "mem_level": (30.0, 42.0),
        "cpu_weekend": (0.25, 0.45),
        "mem_weekend": (0.03, 0.1),
        "cpu_slope": (0.0, 2.0),
        "cpu_year_end": (0.65, 0.95),
        "mem_year_end": (0.25, 0.4),
    },
    "migrated": {
        "cpu_level": (16.0, 26.0),
        "mem_level": (25.0, 35.0),
        "cpu_weekend": (0.3, 0.5),
        "mem_weekend": (0.05, 0.12),
        "cpu_shift": (16.0, 26.0),
        "mem_shift": (10.0, 18.0),
        "shift_at": (0.3, 0.75),
    },
}
# Parameter ranges that replace the above for servers with a given (archetype, fate).
_FATE_RANGES: dict[tuple[str, str], dict[str, tuple[float, float]]] = {
    ("growing", "breach"): {
        "cpu_slope_late": (26.0, 36.0),
        "mem_slope_late": (18.0, 26.0),
        "changepoint_days": (220.0, 420.0),
    },
    # A breaching batch server's regular month-ends reach the limit; its quarter-end boost is modest.
    ("batch", "breach"): {"cpu_slope": (5.0, 8.0), "quarter_boost": (0.15, 0.35)},
    ("seasonal", "breach"): {"cpu_slope": (5.0, 8.0)},
}
# Defaults for parameters every archetype needs but few vary.
_DEFAULTS = {
    "net_ratio": (0.15, 0.35),
    "disk_start": (20.0, 50.0),
    "disk_rate": (0.01, 0.035),
    "disk_cleanup_days": (150.0, 360.0),
    "cpu_noise": (0.03, 0.05),
    "mem_noise": (0.015, 0.03),
}


@dataclass(frozen=True)
class FleetPlan:
    """What each server is and does; arrays are indexed by server (axis 0), then (cpu, memory).

    Attributes:
        archetype: archetype name per server.
        fate: "breach", "borderline" or "normal".
        fate_metric: "cpu" or "memory" for breach/borderline servers, "" otherwise.
        level: business-day load at the start of the history, shape (servers, 2).
        slope: trend in points per year over the whole timeline, (servers, 2).
        slope_late: extra trend after the changepoint, (servers, 2).
        changepoint: day index (in the full timeline) where slope_late starts; past the end if none.
        shift: level shift in points when a workload is migrated onto the server, (servers, 2);
            shift_day its day index.
        weekend: fraction of load absent on non-business days, (servers, 2).
        month_end: month-end batch uplift in points, (servers, 2); quarter_boost its extra share
            at quarter ends.
        year_end: relative year-end uplift, (servers, 2).
        leak_amp: memory-leak growth in points per restart cycle; leak_period mean cycle in days.
        noise: relative noise (standard deviation per point of load), (servers, 2).
        net_ratio: network load as a share of the cpu load.
        disk_start, disk_rate, disk_cleanup_days: used disk at the start (%), growth (points/day),
            mean days between clean-ups.
        leak_period_min, cleanup_days_min: the fleet's shortest leak period (of leaking servers;
            inf if none) and clean-up interval: they size fleet-wide random draws.
    """

    archetype: np.ndarray
    fate: np.ndarray
    fate_metric: np.ndarray
    level: np.ndarray
    slope: np.ndarray
    slope_late: np.ndarray
    changepoint: np.ndarray
    shift: np.ndarray
    shift_day: np.ndarray
    weekend: np.ndarray
    month_end: np.ndarray
    quarter_boost: np.ndarray
    year_end: np.ndarray
    leak_amp: np.ndarray
    leak_period: np.ndarray
    noise: np.ndarray
    net_ratio: np.ndarray
    disk_start: np.ndarray
    disk_rate: np.ndarray
    disk_cleanup_days: np.ndarray
    leak_period_min: float
    cleanup_days_min: float

    def __len__(self) -> int:
        return len(self.archetype)

    def take(self, lo: int, hi: int) -> FleetPlan:
        """Servers ``lo:hi`` of the plan; the fleet-wide minima are kept (they size fleet-wide draws)."""
        parts: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        sliced: dict[str, Any] = {k: v[lo:hi] if isinstance(v, np.ndarray) else v for k, v in parts.items()}
        return FleetPlan(**sliced)


def archetype_counts(n_servers: int) -> dict[str, int]:
    """Servers per archetype for a fleet of ``n_servers`` (largest-remainder rounding of the shares)."""
    exact = np.array([_SHARES[a] for a in ARCHETYPES]) * n_servers
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n_servers - counts.sum()]] += 1
    return dict(zip(ARCHETYPES, counts.tolist(), strict=True))


def _assign_fates(archetype: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    fate = np.full(len(archetype), "normal", dtype=object)
    metric = np.full(len(archetype), "", dtype=object)
    for name in ARCHETYPES:
        members = np.flatnonzero(archetype == name)  # already in random order of server position
        n_breach = round(_BREACH_SHARE.get(name, 0.0) * len(members))
        n_border = round(_BORDERLINE_SHARE.get(name, 0.0) * len(members))
        fate[members[:n_breach]] = "breach"
        fate[members[n_breach : n_breach + n_border]] = "borderline"
        chosen = members[: n_breach + n_border]
        is_cpu = rng.random(len(chosen)) < _FATE_CPU_PROB.get(name, 1.0)
        metric[chosen] = np.where(is_cpu, "cpu", "memory")
    return fate, metric


def plan_fleet(n_servers: int, n_obs: int, n_total: int, rng: np.random.Generator) -> FleetPlan:
    """Draw archetypes, fates and behaviour parameters for a fleet.

    Args:
        n_servers: number of servers.
        n_obs: observed days; the timeline continues to ``n_total`` days (holdout included).
        n_total: observed plus holdout days.
        rng: random generator (consumed).

    Returns:
        The FleetPlan.
    """
    counts = archetype_counts(n_servers)
    archetype = rng.permutation(np.repeat(np.array(ARCHETYPES, dtype=object), list(counts.values())))
    fate, fate_metric = _assign_fates(archetype, rng)
    if n_total == n_obs:
        # Without a holdout there is no outcome to steer; every server is left to its archetype.
        fate[:] = "normal"
        fate_metric[:] = ""

    names = {key for ranges in _RANGES.values() for key in ranges} | set(_DEFAULTS)
    values = {key: np.zeros(n_servers) for key in names}
    for key, (lo, hi) in _DEFAULTS.items():
        values[key] = rng.uniform(lo, hi, n_servers)
    for name in ARCHETYPES:
        for fate_name in FATES:
            members = np.flatnonzero((archetype == name) & (fate == fate_name))
            if len(members) == 0:
                continue
            ranges = {**_RANGES[name], **_FATE_RANGES.get((name, fate_name), {})}
            for key, (lo, hi) in ranges.items():
                values[key][members] = rng.uniform(lo, hi, len(members))

    is_migrated = archetype == "migrated"
    shift_day = np.where(is_migrated, (values["shift_at"] * n_obs).astype(int), n_total)
    changepoint = np.where(
        values["changepoint_days"] > 0, n_obs - values["changepoint_days"].astype(int), n_total
    )

    leak_period = np.maximum(values["leak_period"], 1.0)
    leaking = values["leak_amp"] > 0

    def pair(cpu_key: str, mem_key: str) -> np.ndarray:
        return np.stack([values[cpu_key], values[mem_key]], axis=1)

    return FleetPlan(
        archetype=archetype,
        fate=fate,
        fate_metric=fate_metric,
        level=pair("cpu_level", "mem_level"),
        slope=pair("cpu_slope", "mem_slope"),
        slope_late=pair("cpu_slope_late", "mem_slope_late"),
        changepoint=np.clip(changepoint, 0, n_total),
        shift=pair("cpu_shift", "mem_shift"),
        shift_day=shift_day,
        weekend=pair("cpu_weekend", "mem_weekend"),
        month_end=pair("cpu_month_end", "mem_month_end"),
        quarter_boost=values["quarter_boost"],
        year_end=pair("cpu_year_end", "mem_year_end"),
        leak_amp=values["leak_amp"],
        leak_period=leak_period,
        noise=pair("cpu_noise", "mem_noise"),
        net_ratio=values["net_ratio"],
        disk_start=values["disk_start"],
        disk_rate=values["disk_rate"],
        disk_cleanup_days=values["disk_cleanup_days"],
        leak_period_min=float(leak_period[leaking].min()) if leaking.any() else float("inf"),
        cleanup_days_min=float(values["disk_cleanup_days"].min()) if n_servers else float("inf"),
    )
