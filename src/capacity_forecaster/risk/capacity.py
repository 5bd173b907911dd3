"""Capacity remaining per datacenter, environment and application (Aria Operations style)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.risk.inventory import complete_inventory
from capacity_forecaster.risk.levels import level_codes, rank_risks, without_stale
from capacity_forecaster.schema import CAPACITY_GROUP_COLUMNS, METRIC, SERVER_ID

GROUP_BY = ("datacenter", "environment", "application")
CAPACITY_EXTRA_COLUMNS = ("earliest_breach", "servers_at_risk")
_SUMMED = ("cpu_cores", "free_cpu_cores", "memory_gb", "free_memory_gb", "reclaimable_cpu_cores",
           "reclaimable_memory_gb")


def server_capacity(server_risk: pd.DataFrame, recs: pd.DataFrame, inventory: pd.DataFrame) -> pd.DataFrame:
    """Per server: size, free capacity at the forecast peak, reclaimable capacity, time remaining.

    Free cores / GB = size x (100 - forecast peak of cpu / memory) / 100 (the median forecast's
    peak, ``peak_yhat``, or the recurring period-end peak, ``analogue_peak``, where higher); NaN where that
    metric has no forecast (a fleet without a memory metric
    has unknown free memory, not none). Reclaimable = what the recommendation frees (``freed_cpu_cores``
    / ``freed_memory_gb``: right-size, consolidate, decommission). Time remaining: an already-breaching
    series has 0 days (its breach day is its last observed day over the threshold), otherwise the
    soonest forecast breach.

    Returns:
        server_id, datacenter, environment, application, cpu_cores, free_cpu_cores, memory_gb,
        free_memory_gb, reclaimable_cpu_cores, reclaimable_memory_gb (NaN where the size is unknown),
        breach_ds, days_remaining, breach_series (``server metric``), rank (its place in ``rank_risks``), at_risk
        (medium or worse).
    """
    inv = complete_inventory(inventory, pd.Index(recs[SERVER_ID].unique()))
    out = inv[[SERVER_ID, *GROUP_BY, "cpu_cores", "memory_gb"]].copy()
    core = server_risk[server_risk[METRIC].isin(["cpu", "memory"])]
    # A recurring period-end peak above the forecast's (the analogue) uses the capacity at its peak too.
    peak_values = core["peak_yhat"].to_numpy(float)
    if "analogue_peak" in core.columns:
        peak_values = np.fmax(peak_values, core["analogue_peak"].to_numpy(float))
    peaks = core.assign(_peak=peak_values).pivot_table(
        index=SERVER_ID, columns=METRIC, values="_peak", aggfunc="max").reindex(columns=["cpu", "memory"])
    peak = peaks.reindex(out[SERVER_ID])
    for resource, size in (("cpu", "cpu_cores"), ("memory", "memory_gb")):
        used = np.clip(peak[resource].to_numpy(float), 0.0, 100.0)
        out[f"free_{size}"] = out[size].to_numpy(float) * (100.0 - used) / 100.0
    freed = recs.set_index(SERVER_ID).reindex(out[SERVER_ID])
    # Nothing freed counts 0 where the size is known; where it is not, what an action would free is unknown too.
    for resource, size in (("cpu_cores", "cpu_cores"), ("memory_gb", "memory_gb")):
        reclaim = freed[f"freed_{resource}"].astype("Float64").fillna(0).to_numpy(float)
        out[f"reclaimable_{resource}"] = np.where(np.isnan(out[size].to_numpy(float)), np.nan, reclaim)
    # An already-breaching series has breach_ds = its last day over and days_to_breach = 0 (breach.py);
    # among equal days the series the reports rank first (rank_risks) is the group's earliest breach, so
    # the capacity table and the executive summary name the same one.
    # A stale series (data that ended long before the fleet's) is neither at risk now nor a time remaining.
    ranked = rank_risks(without_stale(server_risk))
    risk = ranked.assign(code=level_codes(ranked["risk_level"]), when=pd.to_datetime(ranked["breach_ds"]),
                         days=ranked["days_to_breach"].astype("Float64"), rank=np.arange(len(ranked)))
    first = (risk.dropna(subset=["when"]).sort_values(["days", "rank"], kind="stable")
             .groupby(SERVER_ID).head(1).set_index(SERVER_ID).reindex(out[SERVER_ID]))
    out["breach_ds"] = first["when"].to_numpy()
    out["days_remaining"] = first["days"].astype("Float64").to_numpy()
    out["breach_series"] = (first.index.to_series() + " " + first[METRIC].fillna("")).where(
        first["when"].notna()).to_numpy(dtype=object)
    out["rank"] = first["rank"].to_numpy(dtype=float)
    out["at_risk"] = out[SERVER_ID].map(risk.groupby(SERVER_ID)["code"].max()).fillna(-1).to_numpy() >= 1
    return out.reset_index(drop=True)


def capacity_by_group(server_risk: pd.DataFrame, recs: pd.DataFrame, inventory: pd.DataFrame) -> pd.DataFrame:
    """Capacity remaining per datacenter, environment and application: the sums of its servers.

    Unknown group values (``inventory.UNKNOWN``) form their own group.

    Returns:
        ``schema.CAPACITY_GROUP_COLUMNS``: group_by (datacenter, environment, application), group,
        servers, earliest_breach_ds (time remaining: the soonest breach of its servers; an already
        breaching one counts from its last observed day), days_remaining (0 when one already
        breaches), cpu_cores, free_cpu_cores, memory_gb, free_memory_gb, reclaimable_cpu_cores,
        reclaimable_memory_gb (sums over the group's servers whose size is known, and whose peak is known
        for free capacity: null only when no server of the group has it); then
        earliest_breach (the server and metric) and servers_at_risk.
    """
    per = server_capacity(server_risk, recs, inventory)
    frames = []
    for key in GROUP_BY:
        ordered = per.sort_values(["days_remaining", "rank", SERVER_ID], na_position="last", kind="stable")
        grouped = ordered.groupby(key, sort=True)
        # A size unknown for the whole group is null, not 0 (helper-46: NAB's "Cores 0, Memory (GB) 0").
        sums = grouped[list(_SUMMED)].sum(min_count=1).round(1)
        first = grouped.head(1).set_index(key)
        table = sums.assign(
            servers=grouped.size(), earliest_breach_ds=first["breach_ds"], days_remaining=first["days_remaining"],
            earliest_breach=first["breach_series"], servers_at_risk=grouped["at_risk"].sum().astype(int))
        frames.append(table.rename_axis("group").reset_index().assign(group_by=key))
    out = pd.concat(frames, ignore_index=True)
    out["earliest_breach_ds"] = pd.to_datetime(out["earliest_breach_ds"])
    return out[[*CAPACITY_GROUP_COLUMNS, *CAPACITY_EXTRA_COLUMNS]]


__all__ = ["CAPACITY_EXTRA_COLUMNS", "GROUP_BY", "capacity_by_group", "server_capacity"]
