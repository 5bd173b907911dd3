"""The risk stage over a fleet in chunks of servers: two passes, one chunk's daily points in memory at a time.

A chunk is a run of whole servers in sorted order (every metric of a server together). Everything
that reads daily points is per series or per server (``evidence``), so each chunk is reduced to
small tables and only those are kept for the whole fleet:

1. *history*: per chunk, its metrics, the days of its forecasts and its backtest forecasts give the
   server profiles, the history reductions (``evidence.observe``) and, per backtest window, the
   outcome and the breach probability at every correlation tried (``calibration.window_probabilities``:
   the calibration's sufficient statistic, one row per window).
2. The fleet: clusters over the profiles, the calibration fitted over every window.
3. *forecasts*: per chunk, its forecasts are assessed with that calibration (``evidence.assess``),
   for the base and for a growth what-if; then recommendations, consolidation, options, capacity and
   summaries run on the concatenated assessments (``stage.conclude``).

A scenario file (add, remove or move servers) touches a few servers (``touched``: the moved ones,
their hosts, the removed ones and the templates of added ones): every other server's what-if is its
base evidence with the scenario's forecasts (growth, if any), assessed chunk by chunk in pass 3;
the touched servers' metrics and forecasts are read on their own, the scenario applied to them and
their evidence observed afresh. The tables are those of one chunk holding the whole fleet, whatever
the chunk size (tested, and for a scenario against applying it to the whole fleet's frames).

Pass 1's evidence and pass 3's per-chunk assessment are ``ObservedFleet`` (``observe_fleet``), which
``GrowthAssessor`` shares: after a risk run it assesses any growth what-if again (the dashboard's
slider) from the evidence kept, reading one chunk's forecasts at a time, with the tables
``capfc risk --growth`` stores.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import pandas as pd

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.breach import LOST_COLUMNS, with_lost_series
from capacity_forecaster.risk.calibration import BreachCalibration, calibrate_windows, window_probabilities
from capacity_forecaster.risk.clustering import cluster_servers
from capacity_forecaster.risk.evidence import Assessment, SeriesEvidence, assess, combine, observe, stack
from capacity_forecaster.risk.inventory import complete_inventory
from capacity_forecaster.risk.profiles import server_profiles
from capacity_forecaster.risk.scenarios import scenario_label, scenario_name
from capacity_forecaster.risk.sizing import CostModel
from capacity_forecaster.risk.stage import RiskResult, carry_clusters, conclude, log_summary, with_what_if
from capacity_forecaster.risk.whatif import Scenario, apply_growth, apply_scenario, touched_servers
from capacity_forecaster.schema import (
    BACKTEST_FORECAST_COLUMNS,
    DS,
    FORECAST_COLUMNS,
    METRIC,
    SERVER_ID,
    VALUE,
    require_columns,
)

logger = logging.getLogger(__name__)

METRICS, FORECASTS, BACKTESTS = "metrics", "forecasts", "backtest_forecasts"
# What the risk stage reads of each table (the flags where present).
COLUMNS = {
    METRICS: (SERVER_ID, DS, METRIC, VALUE, "is_imputed", "is_anomaly", "is_outlier", "is_saturated"),
    FORECASTS: (*FORECAST_COLUMNS, "is_extrapolation"),
    BACKTESTS: BACKTEST_FORECAST_COLUMNS,
}
_HORIZON = [SERVER_ID, METRIC, DS]


class Source(Protocol):
    """Where the risk stage reads ``metrics``, ``forecasts`` and ``backtest_forecasts`` from."""

    def has(self, table: str) -> bool:
        """Whether ``table`` exists (``metrics`` and ``forecasts`` always do)."""
        ...

    def server_ids(self, table: str) -> set[str]:
        """The distinct server ids of ``table`` (empty without the table)."""
        ...

    def span(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The first and last ``ds`` of ``metrics`` (None without rows)."""
        ...

    def read(self, table: str, servers: list[str] | None, columns: Sequence[str]) -> pd.DataFrame:
        """The rows of ``servers`` (None: every row) with those of ``columns`` the table has (or more)."""
        ...

    def lost_series(self) -> pd.DataFrame:
        """The series the ETL quarantined whole or at their end (``breach.LOST_COLUMNS``; empty when none are known)."""
        ...


class FrameSource:
    """Frames in memory (``run_risk``): every column is passed on, rows are selected by server."""

    def __init__(self, metrics: pd.DataFrame, forecasts: pd.DataFrame, backtests: pd.DataFrame | None) -> None:
        self.metrics = metrics
        self.tables = {METRICS: metrics, FORECASTS: forecasts, BACKTESTS: backtests}

    def has(self, table: str) -> bool:
        return self.tables[table] is not None

    def server_ids(self, table: str) -> set[str]:
        frame = self.tables[table]
        return set() if frame is None else set(frame[SERVER_ID].dropna().unique())

    def span(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        ds = pd.to_datetime(self.metrics[DS])
        return None if ds.isna().all() else (ds.min(), ds.max())

    def read(self, table: str, servers: list[str] | None, columns: Sequence[str]) -> pd.DataFrame:
        frame = self.tables[table]
        if frame is None:
            return pd.DataFrame(columns=list(columns))
        return frame if servers is None else frame[frame[SERVER_ID].isin(servers)]

    def lost_series(self) -> pd.DataFrame:
        return pd.DataFrame(columns=list(LOST_COLUMNS))


def plan_chunks(servers: list[str], chunk_servers: int | None) -> list[list[str] | None]:
    """Sorted server ids in runs of ``chunk_servers``; ``[None]`` (the whole fleet at once) when one run holds them."""
    ids = sorted(servers)
    if chunk_servers is None or len(ids) <= chunk_servers:
        return [None]
    return [ids[i:i + chunk_servers] for i in range(0, len(ids), chunk_servers)]


@dataclass(frozen=True)
class ObservedFleet:
    """A fleet's history reduced chunk by chunk (pass 1): all that assessing its forecasts, grown or not, needs.

    Attributes:
        source: where each chunk's forecasts are read from.
        chunks: the runs of servers (``plan_chunks``).
        evidence: ``evidence.observe`` of each chunk (the only thing kept of its daily points).
        inventory: the fleet's inventory, completed (``inventory.complete_inventory``).
        cfg: risk settings.
        lost: the series the ETL quarantined whole or at their end (``breach.LOST_COLUMNS``): each assessment lists
            the first as ``no_data`` with the reason, and the last days of the others (``breach.with_lost_series``).
    """

    source: Source
    chunks: list[list[str] | None]
    evidence: list[SeriesEvidence]
    inventory: pd.DataFrame
    cfg: RiskConfig
    lost: pd.DataFrame

    def assess(self, calibration: BreachCalibration | None, growths: Sequence[float | None],
               touched: set[str] | None = None) -> list[Assessment]:
        """The fleet's assessment with its forecasts as they are (None) and grown by each of ``growths`` percent.

        Each chunk's forecasts are read once for all of ``growths`` (memory: one chunk's forecasts and
        the small assessments).

        Args:
            calibration: the correction of breach probabilities; None uses ``cfg`` as it is.
            growths: None for the forecasts as they are, else a growth in percent (``whatif.apply_growth``
                with ``cfg.growth_ramp``).
            touched: servers left out of the grown assessments (a scenario assesses them on their own).
                None: none.

        Returns:
            One ``evidence.Assessment`` per entry of ``growths``, in order.
        """
        touched = touched or set()
        parts: list[list[Assessment]] = [[] for _ in growths]
        for ids, seen in zip(self.chunks, self.evidence, strict=True):
            forecasts = self.source.read(FORECASTS, ids, COLUMNS[FORECASTS])
            require_columns(forecasts, FORECAST_COLUMNS, FORECASTS)
            servers = self.inventory if ids is None else self.inventory[self.inventory[SERVER_ID].isin(ids)]
            for out, pct in zip(parts, growths, strict=True):
                if pct is None:
                    out.append(assess(seen, forecasts, servers, self.cfg, calibration))
                    continue
                kept = forecasts[~forecasts[SERVER_ID].isin(touched)]
                grown = apply_growth(kept, pct, ramp=self.cfg.growth_ramp)
                out.append(assess(seen.without(touched) if touched else seen, grown,
                                  servers[~servers[SERVER_ID].isin(touched)], self.cfg, calibration, pct))
            del forecasts
        # Touched servers are left out of the grown assessments (the scenario assesses them), their lost series too.
        kept = self.lost[~self.lost[SERVER_ID].isin(touched)]
        return [replace(a, server_risk=with_lost_series(a.server_risk, self.lost if pct is None else kept, self.cfg))
                for a, pct in zip([combine(p) for p in parts], growths, strict=True)]


def observe_fleet(source: Source, inventory: pd.DataFrame, cfg: RiskConfig, chunk_servers: int | None,
                  each: Callable[[list[str] | None, pd.DataFrame], None] | None = None) -> ObservedFleet:
    """Pass 1: every chunk's metrics read once and reduced to ``evidence.SeriesEvidence``.

    Args:
        source: the metrics, forecasts and backtest forecasts.
        inventory: as for ``stage.run_risk`` (completed here with the servers that have metrics).
        cfg: risk settings.
        chunk_servers: servers per chunk; None reads the fleet as one chunk.
        each: called with each chunk's server ids (None: the whole fleet) and metrics, for the other
            reductions of the same read (``stream_risk``: profiles and calibration windows).

    Returns:
        ObservedFleet.
    """
    lost = source.lost_series()
    # A server whose every series was quarantined still had metrics: it keeps its place in the fleet.
    observed = source.server_ids(METRICS) | set(lost[SERVER_ID])
    inventory = complete_inventory(inventory, pd.Index(sorted(observed)))
    servers = observed | source.server_ids(FORECASTS) | source.server_ids(BACKTESTS) | set(inventory[SERVER_ID])
    chunks = plan_chunks(list(servers), chunk_servers)
    evidence = []
    for ids in chunks:
        metrics = source.read(METRICS, ids, COLUMNS[METRICS])
        require_columns(metrics, COLUMNS[METRICS][:4], METRICS)
        if each is not None:
            each(ids, metrics)
        evidence.append(observe(metrics, source.read(FORECASTS, ids, _HORIZON), cfg))
        del metrics
    logger.debug("risk: %d server(s) in %d chunk(s)", len(servers), len(chunks))
    return ObservedFleet(source, chunks, evidence, inventory, cfg, lost)


def stream_risk(
    source: Source,
    inventory: pd.DataFrame,
    cfg: RiskConfig,
    *,
    chunk_servers: int | None = None,
    growth: float | None = None,
    scenario: Scenario | None = None,
    name: str | None = None,
) -> RiskResult:
    """The whole risk stage, chunk by chunk of ``chunk_servers`` servers (None: one chunk).

    Args:
        source: the metrics, forecasts and backtest forecasts (``FrameSource``, or the lake's).
        inventory: as for ``stage.run_risk``.
        cfg: risk settings.
        chunk_servers: servers per chunk; None reads the fleet as one chunk.
        growth, scenario, name: as for ``stage.run_risk``.

    Returns:
        RiskResult, as ``stage.run_risk`` returns it.
    """
    started = time.perf_counter()
    pct = growth if growth is not None else (
        scenario.growth if scenario is not None and scenario.growth is not None else cfg.growth)

    span = source.span()
    profiles: list[pd.DataFrame] = []
    windows: list[tuple[pd.DataFrame, np.ndarray]] = []

    def reduce_history(ids: list[str] | None, metrics: pd.DataFrame) -> None:
        # The same read gives the server profiles and the calibration's windows.
        profiles.append(server_profiles(metrics, cfg.period_end_business_days, span))
        paths = source.read(BACKTESTS, ids, COLUMNS[BACKTESTS]) if source.has(BACKTESTS) else None
        if paths is not None and not paths.empty:
            windows.append(window_probabilities(paths, metrics, cfg))

    fleet = observe_fleet(source, inventory, cfg, chunk_servers, reduce_history)
    inventory = fleet.inventory
    clusters = cluster_servers(stack(profiles), cfg)
    calibration = calibrate_windows(
        (stack([w for w, _ in windows]), np.concatenate([t for _, t in windows])) if windows else None, cfg)

    what_if = pct != 0 or scenario is not None
    touched = touched_servers(scenario, clusters) if scenario is not None else set()
    assessed = fleet.assess(calibration, (None, pct) if what_if else (None,), touched)
    # A what-if is priced as the base: a scenario's adds, removes and moves do not re-fit the prices of the
    # servers it leaves alone (helper-53: 34 untouched servers' savings moved by $32 a month with a re-fit).
    prices = CostModel.fit(inventory)
    result = base = conclude(assessed[0], inventory, cfg, clusters, calibration=calibration, prices=prices)

    if what_if:
        file_name = scenario.name if scenario is not None else None
        name = scenario_name(pct, ramp=cfg.growth_ramp, file_name=file_name, given=name)
        label = scenario_label(pct, ramp=cfg.growth_ramp, file_name=file_name)
        after = inventory
        templates: dict[str, str] = {}
        grown_part = assessed[1]
        if scenario is not None:
            # Touched servers: the scenario applied to their rows, their history observed afresh.
            hit = sorted(touched)
            inputs = apply_scenario(source.read(METRICS, hit, COLUMNS[METRICS]),
                                    source.read(FORECASTS, hit, COLUMNS[FORECASTS]), inventory, scenario, clusters)
            after, templates = inputs.inventory, inputs.templates
            grown = apply_growth(inputs.forecasts, pct, ramp=cfg.growth_ramp)
            present = after[after[SERVER_ID].isin(touched | set(templates))]
            grown_part = combine([grown_part, assess(observe(inputs.metrics, grown[_HORIZON], cfg), grown, present,
                                                     cfg, calibration, pct)]).by_server()
            # A touched server the scenario keeps (moved, a host) keeps its lost series; a removed one does not.
            still = fleet.lost[fleet.lost[SERVER_ID].isin(touched & set(present[SERVER_ID]))]
            grown_part = replace(grown_part, server_risk=with_lost_series(grown_part.server_risk, still, cfg))
        what_clusters = carry_clusters(clusters, after, templates)
        what = conclude(grown_part, after, cfg, what_clusters, label, calibration, prices, frozenset(templates))
        result = with_what_if(base, what, name, what_clusters,
                              {"growth_pct": float(pct), "growth_ramp": bool(cfg.growth_ramp),
                               "scenario_file": file_name})
    log_summary(result.summary, started)
    return result


class GrowthAssessor:
    """Any growth what-if of a fleet the risk stage assessed, as ``capfc risk --growth G`` stores it, in bounded memory.

    Built once: the fleet's history is observed chunk by chunk and only the per-series evidence is kept
    (``observe_fleet``). Each ``at`` then reads the forecasts chunk by chunk, grows and assesses them
    (``ObservedFleet.assess``) and concludes once, with the risk run's settings, breach calibration and
    clusters: one pass gives the breach risk per series and the recommendations. At 0 % it gives the
    base tables.
    """

    def __init__(self, source: Source, inventory: pd.DataFrame, cfg: RiskConfig,
                 calibration: BreachCalibration | None, clusters: pd.DataFrame, chunk_servers: int | None) -> None:
        """Observe the fleet (pass 1 of ``stream_risk``).

        Args:
            source: the metrics and forecasts (the lake's ``stages.risk.LakeSource``).
            inventory: the inventory (completed as ``stream_risk`` completes it).
            cfg: the risk settings the run used (``risk`` with the forecast stage's ``interval``).
            calibration: the breach calibration the run applied (``calibration.from_summary`` of its summary).
            clusters: the run's ``clusters`` table.
            chunk_servers: servers per chunk (``risk.chunk_servers`` as the risk stage resolves it).
        """
        started = time.perf_counter()
        self.fleet = observe_fleet(source, inventory, cfg, chunk_servers)
        self.cfg = cfg
        self.calibration = calibration
        self.clusters = carry_clusters(clusters, self.fleet.inventory, {})
        logger.debug("risk: %d chunk(s) observed for growth what-ifs in %.1f s", len(self.fleet.chunks),
                     time.perf_counter() - started)

    def at(self, growth: float) -> RiskResult:
        """The what-if with every forecast grown by ``growth`` percent (``risk.growth_ramp`` applies).

        Returns:
            RiskResult of the what-if (no comparison): ``server_risk`` and ``recommendations`` as the risk
            stage stores them in ``scenario_risk`` and ``scenario_recommendations`` for ``--growth growth``.
        """
        [part] = self.fleet.assess(self.calibration, (growth,))
        label = scenario_label(growth, ramp=self.cfg.growth_ramp, file_name=None)
        return conclude(part, self.fleet.inventory, self.cfg, self.clusters, label, self.calibration)


__all__ = ["COLUMNS", "FrameSource", "GrowthAssessor", "ObservedFleet", "Source", "observe_fleet", "plan_chunks",
           "stream_risk"]
