"""The synthetic fleet: inventory, raw metrics with faults, and the ground truth they were made from.

The fleet-wide design (plan, event and fault placement, inventory) is small and made first; the
signals and the long frames are then made chunk by chunk of servers, so memory follows the chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from capacity_forecaster.config import GenerateConfig
from capacity_forecaster.generate.archetypes import FleetPlan, plan_fleet
from capacity_forecaster.generate.calendar import Calendar, build_calendar, observed_window
from capacity_forecaster.generate.draws import ChunkedDraws, SequentialSource, SignalSource
from capacity_forecaster.generate.events import ANOMALY_KINDS, EventPlan, Injected, apply_events, plan_events
from capacity_forecaster.generate.fates import capped_count, fate_scales
from capacity_forecaster.generate.faults import FaultPlan, apply_faults, plan_faults, raw_frame
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
from capacity_forecaster.generate.placement import Cells, Occupancy
from capacity_forecaster.generate.signals import (
    cpu_memory_load,
    disk_events,
    disk_usage,
    leak_cycles,
    network_load,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticFleet:
    """A generated fleet (or a chunk of its servers) and its ground truth; every metric frame is long
    and sorted by server_id, metric, ds.

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


def _series_grid(plan: FleetPlan, cal: Calendar, n_obs: int, source: SignalSource) -> np.ndarray:
    """All four metrics over the whole timeline, (servers, metrics, days), clipped to [0, 100]."""
    expected, noise = cpu_memory_load(plan, cal, source)
    scale = fate_scales(expected, noise, plan, n_obs, source)
    grid = np.empty((len(plan), len(METRIC_ORDER), len(cal)))
    grid[:, [CPU, MEMORY]] = scale[:, :, None] * (expected + noise)
    grid[:, NETWORK] = network_load(scale[:, 0, None] * expected[:, 0], plan, source)
    grid[:, DISK] = disk_usage(plan, len(cal), source)
    return np.clip(grid, 0.0, 100.0, out=grid)


@dataclass(frozen=True)
class FleetDesign:
    """The fleet-wide part of a fleet, made before any signal (small: no per-day arrays).

    Attributes:
        ids: server ids.
        plan: archetypes, fates and behaviour parameters.
        cal: calendar of the whole timeline (history and holdout); n_obs observed days.
        events, faults: where events and data faults go and what they write.
        anomalies: every injected cell, value = kind code (index into ``ANOMALY_KINDS``).
        inventory, truth_servers: the fleet's inventory and per-server ground truth frames.
        signal_rng: the generator of the signals (copied, never consumed by the design).
    """

    ids: np.ndarray
    plan: FleetPlan
    cal: Calendar
    n_obs: int
    events: EventPlan
    faults: FaultPlan
    anomalies: Cells
    inventory: pd.DataFrame
    truth_servers: pd.DataFrame
    signal_rng: np.random.Generator


def design_fleet(cfg: GenerateConfig) -> FleetDesign:
    """Draw the fleet-wide design: plan, event and fault placement, inventory. Pure: no I/O."""
    plan_rng, signal_rng, event_rng, fault_rng, inventory_rng = np.random.default_rng(cfg.seed).spawn(5)
    start, n_obs = observed_window(cfg.end_date, cfg.years)
    n_total = n_obs + cfg.holdout_days
    cal = build_calendar(start, n_total)
    ids = server_ids(cfg.servers)
    plan = plan_fleet(cfg.servers, n_obs, n_total, plan_rng)
    shape = (cfg.servers, len(METRIC_ORDER), n_obs)
    occupancy = Occupancy(*shape)
    events = plan_events(shape, occupancy, cfg.anomaly_rate, event_rng)
    faults = plan_faults(shape, occupancy, cfg.missing_rate, cfg.glitch_rate, cfg.duplicate_rate, fault_rng)
    del occupancy
    injected = Injected.concat([events.injected, faults.injected])
    none = Injected.concat([])
    return FleetDesign(
        ids=ids, plan=plan, cal=cal, n_obs=n_obs,
        events=replace(events, injected=none), faults=replace(faults, injected=none),
        anomalies=Cells.of(injected.server, injected.metric, injected.day, injected.kind),
        inventory=build_inventory(ids, plan, inventory_rng),
        truth_servers=_truth_servers(ids, plan, cal.dates),
        signal_rng=signal_rng,
    )


def chunk_bounds(n_servers: int, chunk_servers: int) -> list[int]:
    """Server positions where chunks start, then ``n_servers``: ``[0, c, 2c, ..., n_servers]``."""
    if chunk_servers < 1:
        raise ValueError(f"chunk_servers must be at least 1, got {chunk_servers}")
    return [*range(0, n_servers, chunk_servers), n_servers] if n_servers else [0, 0]


def _chunked_draws(design: FleetDesign, bounds: list[int]) -> ChunkedDraws:
    """Lay out the signal draws for these chunks (see ``generate.draws``); costs one extra pass over
    the cpu/memory load, whose holdout peaks decide how many fate targets each chunk draws."""
    plan, n_days, n_obs = design.plan, len(design.cal), design.n_obs
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))

    def per_chunk(mask: np.ndarray) -> list[int]:
        return [int(mask[lo:hi].sum()) for lo, hi in spans]

    everyone = np.ones(len(plan), dtype=bool)
    leaking = plan.leak_amp > 0
    draws = ChunkedDraws(design.signal_rng, bounds)
    draws.add_uniform("leak_cycles", per_chunk(leaking), leak_cycles(plan, n_days))
    draws.add_uniform("leak_phase", per_chunk(leaking))
    draws.add_normal("load_noise", lambda c: (c, 2, n_days))
    capped = []
    for index, (lo, hi) in enumerate(spans):
        expected, noise = cpu_memory_load(plan.take(lo, hi), design.cal, draws.source(index))
        capped.append(capped_count(expected, noise, n_obs))
        del expected, noise
    draws.add_uniform("capped", capped)
    draws.add_uniform("breach", per_chunk(plan.fate == "breach"))
    draws.add_uniform("border", per_chunk(plan.fate == "borderline"))
    draws.add_normal("network_noise", lambda c: (c, n_days))
    events = disk_events(plan, n_days)
    draws.add_uniform("disk_gaps", per_chunk(everyone), events)
    draws.add_uniform("disk_phase", per_chunk(everyone))
    draws.add_uniform("disk_drops", per_chunk(everyone), events)
    draws.add_normal("disk_noise", lambda c: (c, n_days))
    return draws


def _chunk(design: FleetDesign, lo: int, hi: int, source: SignalSource, categorical: bool) -> SyntheticFleet:
    n_obs, cal = design.n_obs, design.cal
    grid = _series_grid(design.plan.take(lo, hi), cal, n_obs, source)
    observed = np.ascontiguousarray(grid[:, :, :n_obs])
    future = grid[:, :, n_obs:]
    del grid
    apply_events(observed, design.events.chunk(lo, hi))
    faults = apply_faults(observed, design.faults.chunk(lo, hi))
    anomalies = design.anomalies.chunk(lo, hi)
    ids, obs_dates = design.ids[lo:hi], cal.dates[:n_obs]
    whole = lo == 0 and hi == len(design.ids)

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        return frame if whole else frame.iloc[lo:hi].reset_index(drop=True)

    return SyntheticFleet(
        inventory=rows(design.inventory),
        raw_metrics=raw_frame(ids, obs_dates, faults, categorical=categorical),
        truth_servers=rows(design.truth_servers),
        truth_actual=long_frame(ids, obs_dates, observed, categorical=categorical),
        truth_future=long_frame(ids, cal.dates[n_obs:], future, categorical=categorical),
        truth_anomalies=cell_frame(ids, obs_dates, anomalies.index, "kind", anomalies.value, ANOMALY_KINDS),
    )


def fleet_chunks(
    cfg: GenerateConfig, chunk_servers: int | None = None, *, categorical: bool = False
) -> Iterator[SyntheticFleet]:
    """Generate the fleet chunk by chunk of ``chunk_servers`` servers (all at once if None).

    Every chunk holds all rows of its servers in every frame (``SyntheticFleet``); the chunks in order
    are the fleet ``generate_fleet`` returns, row for row, whatever the chunk size. Pure: no I/O.

    Args:
        cfg: generator settings.
        chunk_servers: servers per chunk (>= 1); memory follows it.
        categorical: server_id and metric of the three big frames as categoricals (categories: the
            chunk's servers).

    Yields:
        SyntheticFleet per chunk, in server order.
    """
    design = design_fleet(cfg)
    bounds = chunk_bounds(cfg.servers, chunk_servers or max(cfg.servers, 1))
    draws = _chunked_draws(design, bounds) if len(bounds) > 2 else None
    for index, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        # One chunk draws in the whole-fleet order; several read their slices of the same draws.
        source = SequentialSource(design.signal_rng) if draws is None else draws.source(index)
        started = time.perf_counter()
        part = _chunk(design, lo, hi, source, categorical)
        logger.debug("generated servers %d-%d: %d raw rows in %.2f s", lo + 1, hi, len(part.raw_metrics),
                     time.perf_counter() - started)
        yield part


def generate_fleet(cfg: GenerateConfig, *, categorical: bool = False) -> SyntheticFleet:
    """Generate a synthetic bank server fleet with daily P95 utilisation and its ground truth.

    The observed history is the ``round(years * 365.25)`` days ending at ``cfg.end_date``; the
    holdout is the ``cfg.holdout_days`` days after it. Everything is drawn from
    ``np.random.default_rng(cfg.seed)``, so the same config gives identical frames. Pure: no I/O.
    The whole fleet is held in memory; ``fleet_chunks`` yields the same rows chunk by chunk.

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
    fleet = next(fleet_chunks(cfg, None, categorical=categorical))
    _, n_obs = observed_window(cfg.end_date, cfg.years)
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
