"""One recommendation per server (upsize, decommission, consolidate, rightsize or keep) with its savings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.consolidation import consolidate
from capacity_forecaster.risk.current import stale_lead
from capacity_forecaster.risk.inventory import UNKNOWN, complete_inventory
from capacity_forecaster.risk.levels import Action, RiskLevel, Status, level_codes
from capacity_forecaster.risk.sizing import CostModel, seen_over
from capacity_forecaster.schema import (
    DS,
    METRIC,
    RECOMMENDATION_COLUMNS,
    SERVER_ID,
    UNTRUSTED_FLAGS,
    UNUSUAL_FLAGS,
    VALUE,
    flag,
    flagged,
    require_columns,
)

logger = logging.getLogger(__name__)

IDLE_COLUMNS = (SERVER_ID, "first_observed", "last_observed", "observed_days", "coverage", "cpu_max", "memory_max",
                "network_max", "set_aside_days", "set_aside_cpu_max", "set_aside_memory_max", "idle")
RECOMMENDATION_EXTRA_COLUMNS = ("needed_by", "current_cpu_cores", "current_memory_gb", "evidence")
_IDLE_LIMITS = {"cpu": "idle_cpu_max", "memory": "idle_memory_max", "network": "idle_network_max"}
NO_METRICS = "no metrics were delivered for this server (it is only in the inventory)"


def idle_evidence(metrics: pd.DataFrame, forecasts: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """Which servers were idle on every observed day, and the numbers that show it.

    Days flagged ``is_anomaly`` / ``is_outlier`` or imputed are not evidence either way. A
    server is idle when its history covers at least ``min_history_days`` with at least
    ``idle_min_coverage`` of the days observed, its cpu, memory (and network, where measured)
    never exceeded the idle limits, and its forecast (yhat) stays under them too.

    Args:
        metrics: processed metrics (server_id, ds, metric, value + optional flags).
        forecasts: server_id, metric, ds, yhat.
        cfg: risk settings (idle limits, coverage, min_history_days).

    Returns:
        One row per server with history: server_id, first_observed, last_observed,
        observed_days, coverage, cpu_max, memory_max, network_max, set_aside_days,
        set_aside_cpu_max, set_aside_memory_max (``idle_history``), idle.
    """
    return idle_verdict(idle_history(metrics), forecasts, cfg)


def idle_history(metrics: pd.DataFrame) -> pd.DataFrame:
    """The history half of ``idle_evidence``: per server, its usable days and the highest values seen.

    Returns:
        One row per server with usable cpu, memory or network rows, sorted: server_id,
        first_observed, last_observed, observed_days, cpu_max, memory_max, network_max, then what was set
        aside: set_aside_days (observed days with a value of one of these metrics flagged as anomaly or
        outlier), set_aside_cpu_max, set_aside_memory_max (the highest flagged values; NaN without any).
    """
    require_columns(metrics, (SERVER_ID, DS, METRIC, VALUE), "metrics")
    usable = metrics[VALUE].notna() & ~flagged(metrics, UNTRUSTED_FLAGS)
    set_aside = flagged(metrics, UNUSUAL_FLAGS) & ~flagged(metrics, ("is_imputed",))  # observed, but unusual
    rows = metrics.loc[usable & metrics[METRIC].isin(list(_IDLE_LIMITS))]
    aside = metrics.loc[metrics[VALUE].notna() & set_aside & metrics[METRIC].isin(list(_IDLE_LIMITS))]
    maxima = rows.groupby([SERVER_ID, METRIC])[VALUE].max().unstack(METRIC).reindex(columns=list(_IDLE_LIMITS))
    days = rows.groupby(SERVER_ID)[DS].agg(["min", "max", "nunique"])
    out = pd.DataFrame({
        SERVER_ID: days.index,
        "first_observed": days["min"].to_numpy(),
        "last_observed": days["max"].to_numpy(),
        "observed_days": days["nunique"].to_numpy(),
    })
    for metric in _IDLE_LIMITS:
        out[f"{metric}_max"] = maxima[metric].reindex(out[SERVER_ID]).to_numpy(dtype=float)
    # Anomaly days are not evidence either way, but the owner who confirms a decommission should see them.
    counts = aside.groupby(SERVER_ID)[DS].nunique()
    out["set_aside_days"] = counts.reindex(out[SERVER_ID]).fillna(0).to_numpy(dtype=np.int64)
    high = aside.groupby([SERVER_ID, METRIC])[VALUE].max().unstack(METRIC).reindex(columns=["cpu", "memory"])
    for metric in ("cpu", "memory"):
        out[f"set_aside_{metric}_max"] = high[metric].reindex(out[SERVER_ID]).to_numpy(dtype=float)
    return out


def idle_verdict(history: pd.DataFrame, forecasts: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """``idle_evidence`` from its history half (``idle_history``) and the forecasts (server_id, metric, yhat).

    Returns:
        The ``IDLE_COLUMNS`` of ``idle_evidence``, one row per server of ``history``.
    """
    out = history.copy()
    span = (out["last_observed"] - out["first_observed"]).dt.days + 1
    out["coverage"] = out["observed_days"] / span
    ahead = (forecasts[forecasts[METRIC].isin(list(_IDLE_LIMITS))]
             .groupby([SERVER_ID, METRIC])["yhat"].max().unstack(METRIC).reindex(columns=list(_IDLE_LIMITS)))
    idle = (span >= cfg.min_history_days) & (out["coverage"] >= cfg.idle_min_coverage)
    for metric, key in _IDLE_LIMITS.items():
        seen = out[f"{metric}_max"].to_numpy(dtype=float)
        limit = getattr(cfg, key)
        future = ahead[metric].reindex(out[SERVER_ID]).to_numpy(dtype=float)
        # cpu and memory must be measured; network counts only where it is.
        measured_ok = (seen <= limit) if metric != "network" else (np.isnan(seen) | (seen <= limit))
        idle &= measured_ok & (np.isnan(future) | (future <= limit))
    out["idle"] = idle.to_numpy(dtype=bool)
    return out[list(IDLE_COLUMNS)]



def _fmt(values: pd.Series, spec: str = "{:g}") -> pd.Series:
    return values.map(lambda v: "" if pd.isna(v) else spec.format(v))


def _size(values: pd.Series) -> pd.Series:
    """A size as people write it: whole numbers plain, others to one decimal (15.873 GB -> 15.9)."""
    return values.map(lambda v: "" if pd.isna(v) else f"{v:.1f}".removesuffix(".0"))


def _day(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.strftime("%Y-%m-%d").fillna("")


def _full_history(core: pd.DataFrame, cfg: RiskConfig) -> pd.Series:
    """Per series row: forecast on at least ``min_history_days`` of history, and not stale."""
    return ((core["horizon_days"] > 0) & (core["history_days"] >= cfg.min_history_days)
            & (core["status"] != Status.STALE.value))


def fully_assessed(server_risk: pd.DataFrame, cfg: RiskConfig) -> pd.Series:
    """Per server of ``server_risk``: sizing, consolidation and decommissioning can rest on it (both cpu and
    memory are forecast on a full history, ``min_history_days``, and neither is stale)."""
    core = server_risk[server_risk[METRIC].isin(["cpu", "memory"])]
    counted = core[_full_history(core, cfg)].groupby(SERVER_ID)[METRIC].nunique()
    servers = pd.Index(server_risk[SERVER_ID].unique(), name=SERVER_ID)
    return counted.reindex(servers, fill_value=0) >= 2


def _risk_by_server(server_risk: pd.DataFrame, cfg: RiskConfig) -> pd.DataFrame:
    """Per server: at-risk flag, the most urgent at-risk series, date needed, assessment gaps."""
    risk = server_risk.copy()
    risk["code"] = level_codes(risk["risk_level"])
    floor = RiskLevel.from_label(cfg.upsize_min_level).value
    breaching = risk["status"] == Status.ALREADY_BREACHING.value
    # An upsize costs money now: the level must be backed by a breach probability of at least
    # upsize_min_probability, unless the series already runs over its threshold.
    likely = risk["breach_probability"].astype(float).fillna(0.0) >= cfg.upsize_min_probability
    # A stale series (its data ended long before the fleet's) says what was true then: nothing to act on now.
    risk["at_risk"] = (risk["code"] >= floor) & (likely | breaching) & (risk["status"] != Status.STALE.value)
    analogue = risk["analogue_breach_ds"] if "analogue_breach_ds" in risk.columns else risk["breach_upper_ds"]
    risk["needed"] = (risk["breach_ds"].fillna(risk["likely_breach_ds"]).fillna(analogue)
                      .fillna(risk["breach_upper_ds"]))
    # Already over the threshold: the capacity was needed by the last observed day.
    risk["needed"] = pd.to_datetime(risk["needed"]).where(~breaching, pd.to_datetime(risk["last_observed"]))
    urgent = (risk[risk["at_risk"]].sort_values(["needed", "code"], ascending=[True, False], na_position="last")
              .groupby(SERVER_ID).head(1).set_index(SERVER_ID))
    at_risk_metrics = risk[risk["at_risk"]].groupby(SERVER_ID)[METRIC].agg(lambda m: ",".join(sorted(m)))
    core = risk[risk[METRIC].isin(["cpu", "memory"])]
    full = _full_history(core, cfg)
    # A stale series says why it is stale and the level its old data had, not what those data would need
    # (fastStorage VM 626: "any new size is a minimum" on a server that has sent nothing for two weeks).
    stale = core["status"] == Status.STALE.value
    said = core["reason"].where(~stale, stale_lead(core["reason"]) + "; its level as of that data: "
                                + core["risk_level"].astype(str) + ", nothing resized on it")
    unassessed = said[~full].groupby(core.loc[~full, SERVER_ID]).agg("; ".join)
    out = pd.DataFrame(index=pd.Index(risk[SERVER_ID].unique(), name=SERVER_ID))
    # A metric the data never had is a reason too, and the one more history will not cure (fastStorage: no
    # memory usage at all; its rationales named only the 31-day cpu history).
    reasons = unassessed.reindex(out.index)
    for metric in ("cpu", "memory"):
        lacking = ~out.index.isin(core.loc[core[METRIC] == metric, SERVER_ID])
        text = f"{metric}: no {metric} utilisation in the data (sizing needs cpu and memory)"
        reasons = reasons.where(~lacking, text + ("; " + reasons).fillna(""))
    out["at_risk"] = out.index.isin(urgent.index)
    out["at_risk_metrics"] = at_risk_metrics.reindex(out.index).fillna("")
    out["needed_by"] = urgent["needed"].reindex(out.index)
    # Needed already (the most urgent series runs over its threshold): the rationale says "now", not a past date.
    out["needed_now"] = (urgent["status"] == Status.ALREADY_BREACHING.value).reindex(out.index, fill_value=False)
    out["risk_reason"] = urgent["reason"].reindex(out.index).fillna("")
    out["unassessed_reason"] = reasons.fillna("")
    out["fully_assessed"] = fully_assessed(risk, cfg).reindex(out.index, fill_value=False).to_numpy()
    out["max_code"] = risk.groupby(SERVER_ID)["code"].max().reindex(out.index)
    return out


@dataclass(frozen=True)
class _ServerView:
    """The per-server inputs of a recommendation, aligned on the completed inventory, and the first decisions."""

    inv: pd.DataFrame
    risk: pd.DataFrame
    need: pd.DataFrame
    idl: pd.DataFrame
    upsize: np.ndarray
    decommission: np.ndarray
    candidates: pd.Index

    @classmethod
    def of(cls, server_risk: pd.DataFrame, needs: pd.DataFrame, idle: pd.DataFrame, inventory: pd.DataFrame,
           cfg: RiskConfig) -> _ServerView:
        inv = complete_inventory(inventory, pd.Index(server_risk[SERVER_ID].unique()))
        risk = _risk_by_server(server_risk, cfg).reindex(inv[SERVER_ID])
        risk["at_risk"] = flag(risk["at_risk"])
        risk["fully_assessed"] = flag(risk["fully_assessed"])
        risk["needed_now"] = flag(risk["needed_now"])
        for col in ("at_risk_metrics", "risk_reason", "unassessed_reason"):
            risk[col] = risk[col].fillna("")
        risk.loc[risk["unassessed_reason"].eq("") & ~risk["fully_assessed"], "unassessed_reason"] = \
            "no cpu and memory forecasts"
        # A server of the inventory that no series mentions had no metrics at all, not merely no forecast.
        risk.loc[~risk.index.isin(server_risk[SERVER_ID]), "unassessed_reason"] = NO_METRICS
        need = needs.set_index(SERVER_ID).reindex(inv[SERVER_ID])
        idl = idle.set_index(SERVER_ID).reindex(inv[SERVER_ID])
        upsize = risk["at_risk"].to_numpy()
        decommission = ~upsize & flag(idl["idle"]).to_numpy() & risk["fully_assessed"].to_numpy()
        underused = ((need["cpu_peak_upper"] <= cfg.consolidation_candidate_max)
                     & (need["memory_peak_upper"] <= cfg.consolidation_candidate_max)).to_numpy()
        calm = (risk["max_code"].fillna(0).to_numpy() <= RiskLevel.LOW.value) & risk["fully_assessed"].to_numpy()
        candidates = pd.Index(inv.loc[~upsize & ~decommission & underused & calm, SERVER_ID])
        return cls(inv, risk, need, idl, upsize, decommission, candidates)


def consolidation_candidates(server_risk: pd.DataFrame, needs: pd.DataFrame, idle: pd.DataFrame,
                             inventory: pd.DataFrame, cfg: RiskConfig) -> pd.Index:
    """The servers ``build_recommendations`` offers to the consolidation packing (per server: a chunk of
    servers gives the same ones as the whole fleet): not upsized, not decommissioned, forecast peaks under
    ``consolidation_candidate_max``, no series above low, cpu and memory fully assessed.

    Args:
        server_risk, needs, idle, inventory, cfg: as for ``build_recommendations``.

    Returns:
        Their server ids.
    """
    return _ServerView.of(server_risk, needs, idle, inventory, cfg).candidates


def build_recommendations(
    server_risk: pd.DataFrame,
    needs: pd.DataFrame,
    idle: pd.DataFrame,
    forecasts: pd.DataFrame,
    inventory: pd.DataFrame,
    cfg: RiskConfig,
    prices: CostModel | None = None,
    planned: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    """Decide one action per inventory server and price it.

    Precedence: upsize (a series at or above ``upsize_min_level`` whose breach probability is at
    least ``upsize_min_probability``, or that is already breaching) > decommission (idle
    throughout, see ``idle_evidence``) > consolidate (under-used servers packed onto hosts in
    their datacenter and environment, see ``consolidation``) > rightsize (a smaller standard size
    keeps the sizing peak (``sizing.capacity_needs``) plus headroom under the target and saves at least
    ``rightsize_min_savings``) > keep. Consolidation hosts keep their size. Servers whose cpu or
    memory could not be assessed (short history, no forecast, stale) are never right-sized, consolidated
    or decommissioned: kept, with the reason, unless a series of theirs is at risk (an already-breaching
    server with a short history is upsized).

    Every inventory column but server_id may be missing (``risk.inventory``). Without a monthly
    cost the action is still chosen (a right-size must then save ``rightsize_min_savings`` of the
    cost by the fitted price ratio, or by capacity) and the savings are null, the rationale saying
    why; without a core count or memory size that resource is sized in percent of its current
    capacity (recommended size null, the rationale gives the percent) and the server is not packed.

    Args:
        server_risk: ``breach.assess_breaches`` output.
        needs: ``sizing.capacity_needs`` output.
        idle: ``idle_evidence`` output.
        forecasts: daily forecasts (for the consolidation packing).
        inventory: the inventory: server_id, other ``schema.INVENTORY_COLUMNS`` where known.
        cfg: risk settings.
        prices: the cost model (default: ``sizing.CostModel.fit`` of ``inventory``). A what-if passes the
            base's, so a scenario's adds, removes and moves do not re-price the servers it leaves alone.
        planned: servers a what-if adds. Their history is their template's, so they are never decommissioned,
            consolidated or right-sized (a server that does not exist yet is no saving): kept at the planned
            size, or upsized when at risk.

    Returns:
        One row per server of the inventory or of ``server_risk``: the contract columns server_id,
        action, target_server_id, recommended_cpu_cores, recommended_memory_gb, current_monthly_cost,
        projected_monthly_cost, monthly_savings, rationale; then needed_by (date the capacity
        is needed, upsize only), current_cpu_cores, current_memory_gb, evidence (decommission).
    """
    view = _ServerView.of(server_risk, needs, idle, inventory, cfg)
    inv, risk, need, idl, upsize = view.inv, view.risk, view.need, view.idl, view.upsize
    # helper-53: two servers added like an idle one were decommissioned, +$5,977 a month of scenario savings.
    fixed = inv[SERVER_ID].isin(planned).to_numpy()
    decommission = view.decommission & ~fixed
    cores = inv["cpu_cores"].to_numpy(float)
    memory = inv["memory_gb"].to_numpy(float)
    candidates = view.candidates[~view.candidates.isin(list(planned))]  # in the view's order, as without planned
    placed = consolidate(candidates, forecasts, inv, cfg).set_index(SERVER_ID).reindex(inv[SERVER_ID])
    host_id = placed["host_server_id"]
    moved = (host_id.notna() & (host_id != inv[SERVER_ID].to_numpy())).to_numpy()
    guests = (placed[moved].reset_index().groupby("host_server_id")[SERVER_ID].agg(", ".join)
              .reindex(inv[SERVER_ID]))
    hosting = guests.notna().to_numpy()

    cpu_risk = risk["at_risk_metrics"].str.contains("cpu").to_numpy()
    memory_risk = risk["at_risk_metrics"].str.contains("memory").to_numpy()
    up_cores = np.where(cpu_risk, np.fmax(cores, need["sized_cpu_cores"].to_numpy(float)), cores)
    up_memory = np.where(memory_risk, np.fmax(memory, need["sized_memory_gb"].to_numpy(float)), memory)
    down_cores = np.fmin(cores, need["sized_cpu_cores"].to_numpy(float))
    down_memory = np.fmin(memory, need["sized_memory_gb"].to_numpy(float))
    # New size as a share of today's: from the standard sizes where the size is known, else the need in percent.
    cpu_pct = need["cpu_needed_pct"].to_numpy(float) / 100.0
    memory_pct = need["memory_needed_pct"].to_numpy(float) / 100.0
    with np.errstate(invalid="ignore", divide="ignore"):
        up_share = (np.where(np.isnan(cores), np.where(cpu_risk, np.fmax(cpu_pct, 1.0), 1.0), up_cores / cores),
                    np.where(np.isnan(memory), np.where(memory_risk, np.fmax(memory_pct, 1.0), 1.0),
                             up_memory / memory))
        down_share = (np.where(np.isnan(cores), np.fmin(cpu_pct, 1.0), down_cores / cores),
                      np.where(np.isnan(memory), np.fmin(memory_pct, 1.0), down_memory / memory))
    model = prices or CostModel.fit(inv)
    cost = inv["monthly_cost_usd"].to_numpy(float)
    down_ratio = model.ratio(inv, *down_share)
    with np.errstate(invalid="ignore"):
        smaller = (down_share[0] < 1.0 - 1e-9) | (down_share[1] < 1.0 - 1e-9)
        saves = 1.0 - down_ratio >= cfg.rightsize_min_savings - 1e-12
    shrink = (~upsize & ~decommission & ~moved & ~hosting & ~fixed & risk["fully_assessed"].to_numpy() & smaller & saves
              & (risk["max_code"].fillna(0).to_numpy() < RiskLevel.from_label(cfg.upsize_min_level).value))

    action = np.select([upsize, decommission, moved, shrink],
                       [Action.UPSIZE.value, Action.DECOMMISSION.value, Action.CONSOLIDATE.value,
                        Action.RIGHTSIZE.value], default=Action.KEEP.value)
    rec_cores = np.select([upsize, decommission | moved, shrink], [up_cores, 0.0, down_cores], default=cores)
    rec_memory = np.select([upsize, decommission | moved, shrink], [up_memory, 0.0, down_memory], default=memory)
    projected = np.select([upsize, decommission | moved, shrink],
                          [cost * model.ratio(inv, *up_share), 0.0, cost * down_ratio], default=cost)
    projected = np.round(projected, 2)
    # Keeping a server changes nothing, priced or not.
    savings = np.where(action == Action.KEEP.value, 0.0, np.round(cost - projected, 2))

    out = pd.DataFrame({
        SERVER_ID: inv[SERVER_ID].to_numpy(),
        "action": action,
        "target_server_id": host_id.astype(object).where(moved, None).to_numpy(dtype=object),
        "recommended_cpu_cores": rec_cores,
        "recommended_memory_gb": rec_memory,
        "current_monthly_cost": cost,
        "projected_monthly_cost": projected,
        "monthly_savings": savings,
    })
    shares = pd.DataFrame({"cpu": np.select([upsize, shrink], [up_share[0], down_share[0]], default=1.0),
                           "memory": np.select([upsize, shrink], [up_share[1], down_share[1]], default=1.0),
                           "cost_ratio": np.select([upsize, shrink], [model.ratio(inv, *up_share), down_ratio],
                                                   default=np.nan),
                           # CostModel.ratio is a price ratio only with a fit and both sizes known.
                           "priced": (not model.rates.empty) & np.isfinite(cores) & np.isfinite(memory)},
                          index=need.index)
    out["rationale"] = _rationales(out, inv, risk.assign(planned=fixed), need, idl, placed, guests, cfg,
                                   shares).to_numpy()
    out["needed_by"] = pd.to_datetime(np.where(upsize, risk["needed_by"].to_numpy(), np.datetime64("NaT")))
    out["current_cpu_cores"] = cores
    out["current_memory_gb"] = memory
    out["evidence"] = np.where(decommission, _idle_text(idl), "")
    logger.debug("recommendations: %s", out["action"].value_counts().to_dict())
    return out[[*RECOMMENDATION_COLUMNS, *RECOMMENDATION_EXTRA_COLUMNS]]


def _idle_text(idl: pd.DataFrame) -> np.ndarray:
    text = ("idle on all " + _fmt(idl["observed_days"], "{:,.0f}") + " observed days from "
            + _day(idl["first_observed"]) + " to " + _day(idl["last_observed"])
            + ": cpu max " + _fmt(idl["cpu_max"], "{:.1f} %") + ", memory max "
            + _fmt(idl["memory_max"], "{:.1f} %"))
    network = np.where(idl["network_max"].notna(), ", network max " + _fmt(idl["network_max"], "{:.1f} %"), "")
    aside = pd.Series("", index=idl.index, dtype=object)
    if "set_aside_days" in idl.columns:
        days = idl["set_aside_days"].fillna(0).astype(int)
        peaks = [(name + " up to " + _fmt(idl[f"set_aside_{name}_max"], "{:.1f} %")).where(
            idl[f"set_aside_{name}_max"].notna(), "") for name in ("cpu", "memory")]
        joined = (peaks[0] + ", " + peaks[1]).str.strip(", ")
        aside = ("; anomalies set aside on " + days.astype(str) + np.where(days == 1, " day", " days")
                 + (" (" + joined + ")").where(joined != "", "")).where(days > 0, "")
    return (text + network + aside).fillna("").to_numpy(dtype=object)


def _unit(values: pd.Series, unit: str) -> pd.Series:
    """`` cores`` after every size but 1 (`` core``); other units as they are."""
    if unit != " cores":
        return pd.Series(unit, index=values.index)
    return pd.Series(np.where(values.to_numpy(dtype=float) == 1.0, " core", unit), index=values.index)


def _sizes(out: pd.DataFrame, inv: pd.DataFrame, shares: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    """The new size, today's and whether both are known: ("4 cores / 16 GB", "2 cores / 16 GB", True).

    Where the inventory lacks a size the new one is a share of today's capacity ("cpu unchanged, memory
    to 130 % of today's (memory size unknown in the inventory)"), and today's is "" where neither is known.
    """
    index = shares.index
    cur = inv.set_index(SERVER_ID).reindex(index)
    news, olds, unknown = [], [], []
    for column, current, unit, name in (("recommended_cpu_cores", "cpu_cores", " cores", "cpu"),
                                        ("recommended_memory_gb", "memory_gb", " GB", "memory")):
        recommended = pd.Series(out[column].to_numpy(), index=index)
        known = cur[current].notna()
        pct = shares[name] * 100.0
        relative = (name + " to " + _fmt(pct, "{:.0f}") + " % of today's").where(
            (pct - 100.0).abs() >= 0.5, name + " unchanged")
        news.append((_size(recommended) + _unit(recommended, unit)).where(known, relative))
        olds.append((_size(cur[current]) + _unit(cur[current], unit)).where(known, "unknown" + unit))
        unknown.append(~known)
    cpu_unknown, memory_unknown = unknown
    both_known = ~(cpu_unknown | memory_unknown)
    which = pd.Series(np.select([cpu_unknown & memory_unknown, cpu_unknown], ["cpu and memory sizes", "cpu size"],
                                default="memory size"), index=index)
    new = (news[0] + " / " + news[1]).where(both_known, news[0] + ", " + news[1] + " (" + which
                                            + " unknown in the inventory)")
    today = (olds[0] + " / " + olds[1]).where(~(cpu_unknown & memory_unknown), "")
    return new, today, both_known


def _grown_alone(out: pd.DataFrame, inv: pd.DataFrame, known: pd.Series) -> pd.Series:
    """Where both sizes are known and an upsize changes only one: "cpu to 12 cores (from 8), memory stays 38.9 GB"
    (helper-69: "12 cores / 38.9 GB (from 8 cores / 38.9 GB)" on a fastStorage VM whose memory nobody measured
    read as if memory were sized too); "" elsewhere."""
    index = known.index
    cur = inv.set_index(SERVER_ID).reindex(out[SERVER_ID])
    parts = {}
    for name, column, current, unit in (("cpu", "recommended_cpu_cores", "cpu_cores", " cores"),
                                        ("memory", "recommended_memory_gb", "memory_gb", " GB")):
        new, old = pd.Series(out[column].to_numpy(float), index=index), cur[current].set_axis(index).astype(float)
        changed = (new - old).abs() > 1e-9
        parts[name] = (changed, name + " to " + _size(new) + _unit(new, unit) + " (from " + _size(old) + ")",
                       name + " stays " + _size(old) + _unit(old, unit))
    (cpu_changed, cpu_new, cpu_kept), (memory_changed, memory_new, memory_kept) = parts["cpu"], parts["memory"]
    text = pd.Series(np.select([cpu_changed & ~memory_changed, memory_changed & ~cpu_changed],
                               [cpu_new + ", " + memory_kept, memory_new + ", " + cpu_kept], ""),
                     index=index, dtype=object)
    return text.where(known, "")


def _target(cfg: RiskConfig) -> str:
    return f"{cfg.target_utilisation:g} % with {cfg.headroom * 100:g} % headroom"


def _resized(out: pd.DataFrame, inv: pd.DataFrame, need: pd.DataFrame) -> pd.Series:
    """Which resources a right-size shrinks ("cpu", "memory" or "both"): the claim of headroom is theirs."""
    index = need.index
    cur = inv.set_index(SERVER_ID).reindex(out[SERVER_ID])
    shrunk = {name: pd.Series((out[column].to_numpy(float) < cur[current].to_numpy(float) - 1e-9)
                              | (cur[current].isna().to_numpy() & (need[f"{name}_needed_pct"].to_numpy(float) < 100.0)),
                              index=index)
              for name, column, current in (("cpu", "recommended_cpu_cores", "cpu_cores"),
                                            ("memory", "recommended_memory_gb", "memory_gb"))}
    both = shrunk["cpu"] & shrunk["memory"]
    return pd.Series(np.select([both, shrunk["cpu"], shrunk["memory"]], ["both", "cpu", "memory"], default="it"),
                     index=index)


def _short_kept(out: pd.DataFrame, inv: pd.DataFrame, need: pd.DataFrame, cfg: RiskConfig) -> pd.Series:
    """A right-size keeps a resource's size; say so where that size lacks the headroom the target asks for."""
    index = need.index
    cur = inv.set_index(SERVER_ID).reindex(out[SERVER_ID])
    allowed = cfg.target_utilisation / (1.0 + cfg.headroom)
    target = _target(cfg)
    note = pd.Series("", index=index, dtype=object)
    for name, column, current, unit in (("cpu", "recommended_cpu_cores", "cpu_cores", " cores"),
                                        ("memory", "recommended_memory_gb", "memory_gb", " GB")):
        kept = out[column].to_numpy(float) >= cur[current].to_numpy(float) - 1e-9
        short = kept & (need[f"{name}_needed_pct"].to_numpy(float) > 100.0 + 1e-9)
        what = pd.Series(np.where(_peak_source(need, name) == "", ": its forecast peak upper bound ", ": its peak "),
                         index=index, dtype=object)
        text = ("; " + name + " stays at " + _size(cur[current].set_axis(index)) + unit
                + what + _fmt(need[f"{name}_peak_upper"], "{:.0f} %")
                + f" is over the {allowed:.0f} % that {target} allows (below the upsize level: watch it)")
        note = note + text.where(pd.Series(short, index=index), "")
    return note


def _peak_source(need: pd.DataFrame, metric: str) -> pd.Series:
    """What set a metric's sizing peak (``sizing.capacity_needs``): ``recurring`` (a period-end peak),
    ``recent`` (the recent observed days) or ``""`` (the forecast's upper bound)."""
    def marked(column: str) -> np.ndarray:
        return flag(need[column]).to_numpy() if column in need else np.zeros(len(need), dtype=bool)

    return pd.Series(np.select([marked(f"{metric}_recurring"), marked(f"{metric}_recent")], ["recurring", "recent"],
                               ""),
                     index=need.index, dtype=object)


def _cost_note(out: pd.DataFrame, shares: pd.DataFrame) -> pd.Series:
    """Why the savings are null where the cost is unknown, with the relative change where it is known.

    The change is a price ratio only where ``CostModel`` fitted prices and both sizes are known
    (``shares["priced"]``); otherwise it is the new size as a share of the current capacity, which
    says nothing about a cost nobody knows.
    """
    ratio = shares["cost_ratio"]
    change = ("; at the prices fitted on the fleet's priced servers the new size costs about "
              + _fmt((1.0 - ratio) * 100.0, "{:.0f}") + " % less").where(
        shares["priced"], "; the new size is about " + _fmt(ratio * 100.0, "{:.0f}")
        + " % of its current capacity (cpu and memory averaged)")
    note = ("; savings not priced (no monthly cost in the inventory)"
            + change.where(ratio.notna() & (ratio < 1.0), ""))
    unknown = pd.Series(out["current_monthly_cost"].isna().to_numpy() & (out["action"] != Action.KEEP.value).to_numpy(),
                        index=shares.index)
    return note.where(unknown, "")


def _rationales(out: pd.DataFrame, inv: pd.DataFrame, risk: pd.DataFrame, need: pd.DataFrame, idl: pd.DataFrame,
                placed: pd.DataFrame, guests: pd.Series, cfg: RiskConfig, shares: pd.DataFrame) -> pd.Series:
    """One sentence per server saying why its action was chosen (vectorised string building)."""
    action = pd.Series(out["action"].to_numpy(), index=need.index)
    sizes, today, known = _sizes(out, inv, shares)
    was = (" (from " + today + ")").where(today != "", "")
    said = {"recurring": " (its recurring period-end peak)",
            "recent": f" (the peak of its last {cfg.current_window_days} observed days, above the forecast's upper "
                      "bound)", "": ""}
    source = {m: _peak_source(need, m).map(said) for m in ("cpu", "memory")}
    # "forecast peak upper bound" only where the forecast set both numbers; else the peaks sized for, each saying
    # where it comes from.
    own = (source["cpu"] == "") & (source["memory"] == "")
    prefix = pd.Series(np.where(own, "forecast peak upper bound ", "peaks sized for: "), index=need.index,
                       dtype=object)
    peaks = (prefix + _fmt(need["cpu_peak_upper"], "{:.0f} %") + " cpu" + source["cpu"]
             + " / " + _fmt(need["memory_peak_upper"], "{:.0f} %") + " memory" + source["memory"])
    target = _target(cfg)
    too_big = np.where(flag(need["exceeds_largest_size"]),
                       "; more than the largest standard size is needed: split the workload", "")
    when = (" by " + _day(risk["needed_by"])).where(~risk["needed_now"], " now")
    joint = pd.Series(np.where(known, " to ", ": "), index=need.index, dtype=object)  # "upsize: cpu to 142 % ..."
    # "upsize now: cpu to 150 % of today's, memory unchanged (...)", not "... (...) now" (helper-69).
    alone = _grown_alone(out, inv, known)
    upsize = risk["risk_reason"] + "; upsize" + when + (joint + sizes + was).where(alone == "", ": " + alone) + too_big
    other = ~risk["at_risk_metrics"].str.contains("cpu|memory", regex=True)
    upsize = upsize.where(~other, risk["risk_reason"] + "; add " + risk["at_risk_metrics"] + " capacity" + when)
    # Idle by design is common in a bank (standby and disaster-recovery servers): the owner confirms first.
    decommission = (pd.Series(_idle_text(idl), index=need.index) + "; forecast stays idle: decommission once its "
                    "owner confirms it is not a standby or disaster-recovery server")
    # The packing group "datacenter/environment" in words; an unknown part says nothing and is left out.
    parts = placed["group"].fillna("/").astype(str).str.rsplit("/", n=1, expand=True).reindex(columns=[0, 1])
    named = [(word + " " + parts[i].fillna("")).where(~parts[i].fillna("").isin(["", UNKNOWN]), "")
             for i, word in enumerate(("datacenter", "environment"))]
    group = (named[0] + ", " + named[1]).str.strip(", ")
    group = (" (" + group + ")").where(group != "", "")
    consolidate = ("under-used (" + peaks + "); move onto " + placed["host_server_id"].fillna("")
                   + group + ": combined daily upper bound peaks at "
                   + _fmt(placed["host_peak_cpu"], "{:.0f} %") + " cpu / "
                   + _fmt(placed["host_peak_memory"], "{:.0f} %")
                   + f" memory of the host (limit {cfg.consolidation_target:g} %)")
    rightsize = (peaks + (" of " + today).where(today != "", "") + "; " + sizes + " keep " + _resized(out, inv, need)
                 + f" under {target}" + _short_kept(out, inv, need, cfg))
    host = ("consolidation host for " + guests.fillna("") + ": combined daily upper bound peaks at "
            + _fmt(placed["host_peak_cpu"], "{:.0f} %") + " cpu / " + _fmt(placed["host_peak_memory"], "{:.0f} %")
            + f" memory (limit {cfg.consolidation_target:g} %)")
    keep = peaks + f"; no smaller standard size would save {cfg.rightsize_min_savings:.0%} and stay under {target}"
    if "planned" in risk.columns:
        keep = keep.where(~risk["planned"], peaks + "; kept at its planned size: a server this scenario adds, its "
                          "history its template's")
    # An upper bound over the threshold at a low level: not likely enough to act on, but not "optimized" either.
    above = ((need["cpu_peak_upper"].astype(float) > cfg.threshold_for("cpu"))
             | (need["memory_peak_upper"].astype(float) > cfg.threshold_for("memory")))
    # Not smaller is beside the point there (Bitbrains VM 488: "no smaller standard size would save 10%" opened
    # the rationale of a server whose upper bound reached 91 %).
    # "watch" only where the finding will say under_provisioned (``sizing.seen_over``), never beside "optimized"
    # (helper-48: Bitbrains VMs 488 and 89).
    seen = seen_over(need, cfg.performance_risk_bands[2]).map({True: ": watch", False: ""})
    keep = keep.where(~above, peaks + "; the upper bound is over the threshold, but a breach is not likely" + seen)
    watch = risk["max_code"].fillna(-1) > RiskLevel.LOW.value
    keep = keep.where(~watch, peaks + "; at risk below the upsize level (" + cfg.upsize_min_level
                      + f", with a breach probability of at least {cfg.upsize_min_probability:.0%}): watch")
    keep = keep.where(guests.isna(), host)
    keep = keep.where(risk["fully_assessed"], "not assessed: " + risk["unassessed_reason"])
    text = np.select(
        [action == Action.UPSIZE.value, action == Action.DECOMMISSION.value, action == Action.CONSOLIDATE.value,
         action == Action.RIGHTSIZE.value],
        [upsize, decommission, consolidate, rightsize], default=keep)
    return pd.Series(text, index=need.index, dtype=object) + _cost_note(out, shares)
