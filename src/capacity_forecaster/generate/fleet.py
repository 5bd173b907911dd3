"""The synthetic fleet: inventory, raw metrics with faults, and the ground truth they were made from."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster.config import GenerateConfig
from capacity_forecaster.generate.archetypes import FleetPlan, plan_fleet
from capacity_forecaster.generate.calendar import Calendar, build_calendar, observed_window
from capacity_forecaster.generate.events import ANOMALY_KINDS, Injected, inject_events
from capacity_forecaster.generate.fates import fate_scales
from capacity_forecaster.generate.faults import inject_faults, raw_frame
from capacity_forecaster.generate.grid import (
    CPU,
    DISK,
    MEMORY,
    METRIC_ORDER,
    NETWORK,
    cell_frame,
    long_frame,
    server_ids,
)
from capacity_forecaster.generate.inventory import build_inventory
from capacity_forecaster.generate.placement import Occupancy
from capacity_forecaster.generate.signals import cpu_memory_load, disk_usage, network_load

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticFleet:
    """A generated fleet and its ground truth; every metric frame is long and sorted by
    server_id, metric, ds.

    Attributes:
        inventory: one row per server, the columns of ``schema.INVENTORY_COLUMNS``.
        raw_metrics: server_id, ds, metric, value: the monitoring feed with faults (rows missing,
            NaN values, negative / over-100 / stuck values, duplicates and conflicting duplicates).
        truth_servers: server_id, archetype, fate ("breach", "borderline", "normal"), fate_metric
            ("cpu", "memory" or "" for normal), changepoint_ds (start of the late trend, NaT if none),
            shift_ds (migration level shift, NaT if none).
        truth_actual: server_id, ds, metric, value: the complete observed series, real events
            (outages, spikes) included, data faults not.
        truth_future: server_id, ds, metric, value: the holdout days after the end date, the same
            process continued without random outages or spikes.
        truth_anomalies: server_id, ds, metric, kind: every injected event and fault, one row per
            affected cell (see ``ANOMALY_KINDS``).
    """

    inventory: pd.DataFrame
    raw_metrics: pd.DataFrame
    truth_servers: pd.DataFrame
    truth_actual: pd.DataFrame
    truth_future: pd.DataFrame
    truth_anomalies: pd.DataFrame


def _truth_servers(ids: np.ndarray, plan: FleetPlan, dates: np.ndarray) -> pd.DataFrame:
    def day_or_nat(day: np.ndarray) -> np.ndarray:
        inside = day < len(dates)
        out = np.full(len(day), np.datetime64("NaT"), dtype="datetime64[ns]")
        out[inside] = dates[day[inside]].astype("datetime64[ns]")
        return out

    return pd.DataFrame(
        {
            "server_id": ids,
            "archetype": plan.archetype,
            "fate": plan.fate,
            "fate_metric": plan.fate_metric,
            "changepoint_ds": day_or_nat(plan.changepoint),
            "shift_ds": day_or_nat(plan.shift_day),
        }
    )


def _series_grid(plan: FleetPlan, cal: Calendar, n_obs: int, rng: np.random.Generator) -> np.ndarray:
    """All four metrics over the whole timeline, (servers, metrics, days), clipped to [0, 100]."""
    expected, noise = cpu_memory_load(plan, cal, rng)
    scale = fate_scales(expected, noise, plan, n_obs, rng)
    grid = np.empty((len(plan), len(METRIC_ORDER), len(cal)))
    grid[:, [CPU, MEMORY]] = scale[:, :, None] * (expected + noise)
    grid[:, NETWORK] = network_load(scale[:, 0, None] * expected[:, 0], plan, rng)
    grid[:, DISK] = disk_usage(plan, len(cal), rng)
    return np.clip(grid, 0.0, 100.0, out=grid)


def generate_fleet(cfg: GenerateConfig, *, categorical: bool = False) -> SyntheticFleet:
    """Generate a synthetic bank server fleet with daily P95 utilisation and its ground truth.

    The observed history is the ``round(years * 365.25)`` days ending at ``cfg.end_date``; the
    holdout is the ``cfg.holdout_days`` days after it. Everything is drawn from
    ``np.random.default_rng(cfg.seed)``, so the same config gives identical frames. Pure: no I/O.

    Args:
        cfg: generator settings (servers, years, end_date, holdout_days, seed and fault rates).
        categorical: server_id and metric of the three big frames as pandas categoricals (cheap to
            write to Parquet); the values are the same strings either way.

    Returns:
        SyntheticFleet with
        inventory (server_id, hostname, application, business_unit, environment, datacenter,
        server_type, cpu_cores, memory_gb, monthly_cost_usd),
        raw_metrics (server_id, ds, metric, value),
        truth_servers (server_id, archetype, fate, fate_metric, changepoint_ds, shift_ds),
        truth_actual and truth_future (server_id, ds, metric, value) and
        truth_anomalies (server_id, ds, metric, kind).
    """
    started = time.perf_counter()
    plan_rng, signal_rng, event_rng, fault_rng, inventory_rng = np.random.default_rng(cfg.seed).spawn(5)
    start, n_obs = observed_window(cfg.end_date, cfg.years)
    n_total = n_obs + cfg.holdout_days
    cal = build_calendar(start, n_total)
    ids = server_ids(cfg.servers)

    plan = plan_fleet(cfg.servers, n_obs, n_total, plan_rng)
    grid = _series_grid(plan, cal, n_obs, signal_rng)
    observed = np.ascontiguousarray(grid[:, :, :n_obs])
    future = grid[:, :, n_obs:]
    del grid

    occupancy = Occupancy(*observed.shape)
    events = inject_events(observed, occupancy, cfg.anomaly_rate, event_rng)
    faults = inject_faults(
        observed, occupancy, cfg.missing_rate, cfg.glitch_rate, cfg.duplicate_rate, fault_rng
    )
    injected = Injected.concat([events, faults.injected])
    obs_dates = cal.dates[:n_obs]

    fleet = SyntheticFleet(
        inventory=build_inventory(ids, plan, inventory_rng),
        raw_metrics=raw_frame(ids, obs_dates, faults, categorical=categorical),
        truth_servers=_truth_servers(ids, plan, cal.dates),
        truth_actual=long_frame(ids, obs_dates, observed, categorical=categorical),
        truth_future=long_frame(ids, cal.dates[n_obs:], future, categorical=categorical),
        truth_anomalies=cell_frame(
            ids,
            obs_dates,
            (injected.server, injected.metric, injected.day),
            "kind",
            injected.kind,
            ANOMALY_KINDS,
        ),
    )
    logger.info(
        "generated %d servers x %d observed days (+%d holdout): %d raw rows, %d injected anomaly cells "
        "in %.2f s",
        cfg.servers,
        n_obs,
        cfg.holdout_days,
        len(fleet.raw_metrics),
        len(fleet.truth_anomalies),
        time.perf_counter() - started,
    )
    return fleet
