"""Per-chunk reductions of the risk stage: a chunk of servers' daily points -> small per-series tables.

Everything here is per series or per server, so the tables of a chunk of servers are the rows the
whole fleet gives those servers; concatenated over chunks (servers in sorted order) they are the
fleet's. ``observe`` reads the history (and only the days of the forecast horizon), ``assess`` the
forecast values; what needs the whole fleet (clusters, the calibration fit, consolidation, prices,
summaries) runs afterwards on the concatenated tables (``stage.conclude``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.analogue import analogue_days, summarise_analogue
from capacity_forecaster.risk.breach import assess_breaches, history_summary
from capacity_forecaster.risk.calibration import BreachCalibration
from capacity_forecaster.risk.consolidation import RESOURCES
from capacity_forecaster.risk.current import current_state
from capacity_forecaster.risk.recommendations import consolidation_candidates, idle_history, idle_verdict
from capacity_forecaster.risk.seasonal import period_uplifts
from capacity_forecaster.risk.sizing import capacity_needs
from capacity_forecaster.risk.whatif import growth_factor
from capacity_forecaster.schema import DS, METRIC, SERVER_ID

PACKING_COLUMNS = (SERVER_ID, METRIC, DS, "yhat_upper")


@dataclass(frozen=True)
class SeriesEvidence:
    """What the risk stage keeps of the history of some servers (no daily point survives).

    Attributes:
        history: ``breach.history_summary``.
        current: ``current.current_state``.
        uplifts: ``seasonal.period_uplifts`` of the history.
        analogue: ``analogue.analogue_days`` over the forecast horizon (summarised, grown for a what-if,
            by ``assess``); None when ``risk.analogue_min_days`` is 0.
        idle: ``recommendations.idle_history``.
    """

    history: pd.DataFrame
    current: pd.DataFrame
    uplifts: pd.DataFrame
    analogue: pd.DataFrame | None
    idle: pd.DataFrame

    def without(self, servers: set[str]) -> SeriesEvidence:
        """The evidence of every server but ``servers``."""

        def keep(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[~frame[SERVER_ID].isin(servers)]

        return SeriesEvidence(keep(self.history), keep(self.current), keep(self.uplifts),
                              None if self.analogue is None else keep(self.analogue), keep(self.idle))


@dataclass(frozen=True)
class Assessment:
    """Breach assessment and sizing inputs of some servers, small enough to hold for the whole fleet.

    Attributes:
        server_risk: ``breach.assess_breaches``, one row per series, sorted.
        needs: ``sizing.capacity_needs`` of the servers' inventory rows.
        idle: ``recommendations.idle_evidence``.
        packing: the daily cpu and memory ``yhat_upper`` (``PACKING_COLUMNS``) of the servers offered
            to consolidation (``recommendations.consolidation_candidates``): the only forecast points
            the fleet-wide recommendations need.
    """

    server_risk: pd.DataFrame
    needs: pd.DataFrame
    idle: pd.DataFrame
    packing: pd.DataFrame

    def by_server(self) -> Assessment:
        """Every table in server order (then metric and day), as one assessment of the whole fleet gives it."""

        def ordered(frame: pd.DataFrame) -> pd.DataFrame:
            keys = [c for c in (SERVER_ID, METRIC, DS) if c in frame.columns]
            return frame.sort_values(keys, kind="mergesort").reset_index(drop=True)

        return Assessment(ordered(self.server_risk), ordered(self.needs), ordered(self.idle), ordered(self.packing))


def observe(metrics: pd.DataFrame, horizon: pd.DataFrame, cfg: RiskConfig) -> SeriesEvidence:
    """The history reductions of some servers.

    Args:
        metrics: their processed metrics (server_id, ds, metric, value + optional flags).
        horizon: server_id, metric, ds of their forecasts (values are not read: the analogue only
            needs the days, so one ``observe`` serves the base and a growth what-if).
        cfg: risk settings.

    Returns:
        SeriesEvidence.
    """
    uplifts = period_uplifts(metrics, cfg.period_end_business_days)
    return SeriesEvidence(
        history=history_summary(metrics),
        current=current_state(metrics, cfg),
        uplifts=uplifts,
        analogue=analogue_days(metrics, horizon, uplifts, cfg) if cfg.analogue_min_days else None,
        idle=idle_history(metrics),
    )


def _grown_current(current: pd.DataFrame, cfg: RiskConfig, growth: float | None) -> pd.DataFrame:
    """The current state with its recent peaks as a what-if's growth has them on its first forecast day (the
    floor sizing keeps): a step change moves them at once (-30 % from day one lowers last week's peak by 30 %),
    an annual ramp has barely started."""
    if not growth or len(current) == 0:
        return current
    first = pd.Series([pd.Timestamp(0)])
    uplift = float(growth_factor(first, first, growth, ramp=cfg.growth_ramp)[0])
    peaks = [c for c in ("recent_peak", "recent_usual_peak") if c in current.columns]
    return current.assign(**{c: (current[c] * (1.0 + uplift)).clip(0.0, 100.0) for c in peaks})


def assess(evidence: SeriesEvidence, forecasts: pd.DataFrame, inventory: pd.DataFrame, cfg: RiskConfig,
           calibration: BreachCalibration | None = None, growth: float | None = None) -> Assessment:
    """Breaches, needs, idle evidence and consolidation loads of some servers.

    Args:
        evidence: ``observe`` of their history.
        forecasts: their forecasts (``schema.FORECAST_COLUMNS``; grown for a what-if).
        inventory: their inventory rows (``inventory.complete_inventory``).
        cfg: risk settings.
        calibration: the correction of breach probabilities; None uses ``cfg`` as it is.
        growth: the what-if growth ``forecasts`` were grown by (percent; None: as forecast): the period-end
            analogue grows the same way.

    Returns:
        Assessment.
    """
    analogue = None if evidence.analogue is None else summarise_analogue(evidence.analogue, cfg, growth)
    if calibration is None:
        server_risk = assess_breaches(forecasts, evidence.history, cfg, evidence.uplifts, analogue,
                                      current=evidence.current)
    else:
        server_risk = assess_breaches(forecasts, evidence.history, calibration.settings(cfg), evidence.uplifts,
                                      analogue, calibration.apply if calibration.knots is not None else None,
                                      current=evidence.current, untested_correlation=cfg.error_correlation)
    needs = capacity_needs(forecasts, inventory, cfg, _grown_current(evidence.current, cfg, growth), analogue)
    idle = idle_verdict(evidence.idle, forecasts, cfg)
    candidates = consolidation_candidates(server_risk, needs, idle, inventory, cfg)
    packing = forecasts.loc[forecasts[SERVER_ID].isin(candidates) & forecasts[METRIC].isin(RESOURCES),
                            list(PACKING_COLUMNS)]
    return Assessment(server_risk, needs, idle, packing)


def stack(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Chunks' tables one after the other (empty ones left out, so they cannot change a column's type)."""
    kept = [f for f in frames if len(f)] or frames[:1]
    return kept[0].reset_index(drop=True) if len(kept) == 1 else pd.concat(kept, ignore_index=True)


def combine(parts: list[Assessment]) -> Assessment:
    """The chunks' assessments as one (servers in the chunks' order)."""
    return Assessment(*(stack([getattr(p, name) for p in parts])
                        for name in ("server_risk", "needs", "idle", "packing")))


__all__ = ["PACKING_COLUMNS", "Assessment", "SeriesEvidence", "assess", "combine", "observe", "stack"]
