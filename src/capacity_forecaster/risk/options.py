"""Findings and ranked sizing options per server, in the style of AWS Compute Optimizer."""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.inventory import complete_inventory
from capacity_forecaster.risk.levels import Action, RiskLevel, Status, level_codes
from capacity_forecaster.risk.recommendations import fully_assessed
from capacity_forecaster.risk.sizing import CostModel, seen_over, size_gb
from capacity_forecaster.schema import RECOMMENDATION_OPTION_COLUMNS, SERVER_ID

OPTION_EXTRA_COLUMNS = ("option", "current_cpu_cores", "current_memory_gb", "freed_cpu_cores", "freed_memory_gb",
                        "action", "target_server_id", "peak_is_minimum")
# Grades in the order of performance_risk_bands: below the first band very_low ... at or above the last very_high.
PERFORMANCE_RISKS = ("very_low", "low", "medium", "high", "very_high")


class Finding(StrEnum):
    """What a server's sizing says (Compute Optimizer's findings, plus the risk stage's current state)."""

    ALREADY_BREACHING = "already_breaching"
    UNDER_PROVISIONED = "under_provisioned"
    OVER_PROVISIONED = "over_provisioned"
    IDLE = "idle"
    INSUFFICIENT_DATA = "insufficient_data"
    OPTIMIZED = "optimized"


def findings(recs: pd.DataFrame, server_risk: pd.DataFrame, cfg: RiskConfig,
             needs: pd.DataFrame | None = None) -> pd.Series:
    """One finding per recommendation row.

    already_breaching (a series of the server has ``status`` already_breaching) > idle (decommission) >
    under_provisioned (upsize) > over_provisioned (rightsize or consolidate) > insufficient_data (kept,
    but not fully assessed: cpu and memory are not both forecast on a full history, the same test that
    keeps the server out of sizing and consolidation, ``recommendations.fully_assessed``) >
    under_provisioned (kept, but a series of it is at least medium: on watch; or its size's peak upper
    bound, ``needs``' ``*_peak_upper``, grades a ``high`` or ``very_high`` performance risk and is a peak
    it was seen at, recent or recurring: too unlikely a breach to upsize now, not "optimized"
    either; helper-41: Bitbrains VM 383 read optimized beside a high risk) > optimized (keep).

    Returns:
        The finding per row of ``recs`` (same index).
    """
    breaching = set(server_risk.loc[server_risk["status"] == Status.ALREADY_BREACHING.value, SERVER_ID])
    assessed = fully_assessed(server_risk, cfg)
    thin = ~recs[SERVER_ID].map(assessed).eq(True).to_numpy()
    action = recs["action"].to_numpy()
    tight = np.zeros(len(recs), dtype=bool)
    if needs is not None and len(needs):
        keyed = needs.set_index(SERVER_ID)
        band = cfg.performance_risk_bands[2]
        # A wide interval alone is no evidence: the upper bound must come with a level of medium or more (a
        # watch), or from days the server was seen at (its recent or recurring peak). helper-46: a vendor
        # export's low-risk database, forecast peak 18.5 %, upper bound 100 %, read "under_provisioned".
        watched = server_risk.assign(code=level_codes(server_risk["risk_level"])).groupby(SERVER_ID)["code"].max()
        watch = recs[SERVER_ID].map(watched).fillna(-1).to_numpy() >= RiskLevel.MEDIUM.value
        # A kept server at medium or above is on watch (its rationale says so) whatever its peak's grade.
        tight = (action == Action.KEEP.value) & (recs[SERVER_ID].map(seen_over(keyed, band)).eq(True).to_numpy()
                                                 | watch)
    return pd.Series(np.select(
        [recs[SERVER_ID].isin(breaching).to_numpy(), action == Action.DECOMMISSION.value,
         action == Action.UPSIZE.value, np.isin(action, [Action.RIGHTSIZE.value, Action.CONSOLIDATE.value]),
         thin, tight],
        [Finding.ALREADY_BREACHING.value, Finding.IDLE.value, Finding.UNDER_PROVISIONED.value,
         Finding.OVER_PROVISIONED.value, Finding.INSUFFICIENT_DATA.value, Finding.UNDER_PROVISIONED.value],
        default=Finding.OPTIMIZED.value), index=recs.index)


def performance_risk(peak: np.ndarray, cfg: RiskConfig) -> np.ndarray:
    """The grade of a projected peak (% of the new size; NaN: unknown -> None) by ``performance_risk_bands``."""
    grades = np.array(PERFORMANCE_RISKS, dtype=object)[np.searchsorted(cfg.performance_risk_bands,
                                                                         np.nan_to_num(peak), side="right")]
    out: np.ndarray = np.where(np.isnan(peak), np.array(None, dtype=object), grades)
    return out


def _step(current: np.ndarray, sizes: tuple[int, ...], k: int) -> np.ndarray:
    """The standard size ``k`` steps above ``current`` (``current`` itself at k = 0, the largest at most)."""
    table = np.asarray(sizes, dtype=float)
    idx = np.searchsorted(table, np.nan_to_num(current) - 1e-9, side="left")
    stepped = table[np.minimum(idx + k, len(table) - 1)]
    return np.where(np.isnan(current), np.nan, np.where(k == 0, current, stepped))


def saturated_metrics(server_risk: pd.DataFrame) -> pd.DataFrame:
    """Per server, whether its cpu and its memory were saturated on recent days (``days_saturated_recent``).

    Returns:
        Boolean columns ``cpu`` and ``memory`` indexed by server_id (False for a metric not assessed).
    """
    if "days_saturated_recent" not in server_risk.columns:
        return pd.DataFrame(columns=["cpu", "memory"], dtype=bool)
    days = pd.to_numeric(server_risk["days_saturated_recent"], errors="coerce").fillna(0.0)
    hit = server_risk.assign(hit=days.to_numpy() > 0).pivot_table(index=SERVER_ID, columns="metric", values="hit",
                                                                  aggfunc="max", fill_value=False)
    return hit.reindex(columns=["cpu", "memory"], fill_value=False).astype(bool)


def sizing_options(recs: pd.DataFrame, needs: pd.DataFrame, inventory: pd.DataFrame, cfg: RiskConfig,
                   saturated: pd.DataFrame | None = None, prices: CostModel | None = None) -> pd.DataFrame:
    """Up to ``cfg.max_options`` ranked options per server: the recommended size first.

    Upsize and right-size options are the recommended size, then one and two standard sizes up on
    each resource the recommendation changes (a right-size never reaches the current size; a
    server kept as it is has one option, its current size). Decommission and consolidate have one
    option that frees the server's whole size (``freed_*``; cpu_cores and memory_gb are null: no
    server of its own is left). Sizes are whole cores and GB.

    A metric saturated on recent days (demand above today's size, values clipped at 100 %) has a
    forecast peak that is only a floor of its demand: an option's projected peak on it, and the
    performance risk graded from it, are minimums (``peak_is_minimum``); the real peak on a bigger
    size is unknown until the server runs on one.

    Args:
        recs: ``recommendations.build_recommendations`` output with a ``finding`` column.
        needs: ``sizing.capacity_needs`` output (sizing peaks in % of today's size: the largest of the forecast
            peak upper bound, the recurring period-end peak and the recent usual peak).
        inventory: the inventory (prices, for the cost model).
        cfg: risk settings (standard sizes, performance_risk_bands, max_options).
        saturated: ``saturated_metrics`` of the fleet (default: none saturated).
        prices: the cost model (default: ``CostModel.fit`` of ``inventory``; a what-if passes the base's).

    Returns:
        ``schema.RECOMMENDATION_OPTION_COLUMNS``: server_id, finding, rank (1 = recommended),
        cpu_cores, memory_gb, projected_peak_cpu, projected_peak_memory (the sizing peak in % of
        the option's size), monthly_cost, monthly_cost_difference (option minus
        today; negative saves), performance_risk (``PERFORMANCE_RISKS``; null where the peak is
        unknown); then option (resize, current, decommission, consolidate), current_cpu_cores,
        current_memory_gb, freed_cpu_cores, freed_memory_gb, action, target_server_id, peak_is_minimum
        (the option's peaks rest on a saturated metric: they and the performance risk are lower bounds).
    """
    inv = complete_inventory(inventory, pd.Index(recs[SERVER_ID].unique()))
    frame = inv.set_index(SERVER_ID).reindex(recs[SERVER_ID]).reset_index()
    need = needs.set_index(SERVER_ID).reindex(recs[SERVER_ID])
    cores, memory = recs["current_cpu_cores"].to_numpy(float), recs["current_memory_gb"].to_numpy(float)
    rec_cores, rec_memory = recs["recommended_cpu_cores"].to_numpy(float), recs["recommended_memory_gb"].to_numpy(float)
    action = recs["action"].to_numpy()
    cost = recs["current_monthly_cost"].to_numpy(float)
    model = prices or CostModel.fit(inv)
    resize = np.isin(action, [Action.UPSIZE.value, Action.RIGHTSIZE.value])
    gone = np.isin(action, [Action.DECOMMISSION.value, Action.CONSOLIDATE.value])
    floor = np.zeros(len(recs), dtype=bool)
    if saturated is not None:
        floor = saturated.reindex(recs[SERVER_ID], fill_value=False).any(axis=1).to_numpy(bool) & ~gone
    frames = []
    for k in range(cfg.max_options):
        cpu = np.where(rec_cores != cores, _step(rec_cores, cfg.cpu_sizes, k), cores)
        mem = np.where(rec_memory != memory, _step(rec_memory, cfg.memory_sizes, k), memory)
        shrink = action == Action.RIGHTSIZE.value
        cpu, mem = np.where(shrink, np.fmin(cpu, cores), cpu), np.where(shrink, np.fmin(mem, memory), mem)
        keep = (k == 0) & ~resize & ~gone
        valid = (resize & ~(shrink & (cpu == cores) & (mem == memory))) | keep | (gone & (k == 0))
        with np.errstate(invalid="ignore", divide="ignore"):
            peak_cpu = need["cpu_peak_upper"].to_numpy(float) * cores / cpu
            peak_memory = need["memory_peak_upper"].to_numpy(float) * memory / mem
        priced = np.round(np.where(gone, 0.0, model.project(frame, cpu, mem)), 2)
        worst = np.fmax(peak_cpu, peak_memory)
        frames.append(pd.DataFrame({
            SERVER_ID: recs[SERVER_ID].to_numpy(), "finding": recs["finding"].to_numpy(), "k": k,
            "cpu_cores": np.where(gone, np.nan, cpu), "memory_gb": np.where(gone, np.nan, mem),
            "projected_peak_cpu": np.where(gone, np.nan, np.round(peak_cpu, 1)),
            "projected_peak_memory": np.where(gone, np.nan, np.round(peak_memory, 1)),
            "monthly_cost": priced, "monthly_cost_difference": np.round(priced - cost, 2),
            "performance_risk": performance_risk(np.where(gone, np.nan, worst), cfg),
            "option": np.select([gone, keep], [action, "current"], default="resize"),
            "current_cpu_cores": cores, "current_memory_gb": memory,
            "freed_cpu_cores": np.where(gone, cores, np.fmax(cores - cpu, 0.0)),
            "freed_memory_gb": np.where(gone, memory, np.fmax(memory - mem, 0.0)),
            "action": action, "target_server_id": recs["target_server_id"].to_numpy(dtype=object),
            "peak_is_minimum": floor,
        })[valid])
    out = pd.concat(frames, ignore_index=True).sort_values([SERVER_ID, "k"], kind="stable")
    # Steps capped at the largest size (or at today's size) repeat an option: keep its first, best-ranked copy.
    out = out.drop_duplicates([SERVER_ID, "cpu_cores", "memory_gb", "option"])
    out["rank"] = out.groupby(SERVER_ID).cumcount() + 1
    # Whole cores; GB to one decimal, so a sub-GB VM's option is not 0 GB.
    for column in ("cpu_cores", "current_cpu_cores", "freed_cpu_cores"):
        out[column] = pd.array(np.round(out[column].to_numpy(float)), dtype="Int64")
    for column in ("memory_gb", "current_memory_gb", "freed_memory_gb"):
        out[column] = size_gb(out[column].to_numpy(float))
    return out[[*RECOMMENDATION_OPTION_COLUMNS, *OPTION_EXTRA_COLUMNS]].reset_index(drop=True)


__all__ = ["OPTION_EXTRA_COLUMNS", "PERFORMANCE_RISKS", "Finding", "findings", "performance_risk", "saturated_metrics",
           "sizing_options"]
