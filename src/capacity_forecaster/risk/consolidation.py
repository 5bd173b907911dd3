"""Safe consolidation: pack under-used servers onto fewer hosts on their daily forecast upper bounds.

Loads are absolute (cores, GB) per forecast day; a host takes guests only while the sum of the
daily upper bounds (its own included) stays at or under ``consolidation_target`` percent of its
capacity on every day and for both resources, and it holds at most ``max_servers_per_host``
workloads. Summing per day rather than summing peaks lets a month-end batch server share a host
with a year-end seasonal one; summing upper bounds is conservative (the quantile of a sum of
positively dependent loads is at most the sum of their quantiles). Packing only ever happens
inside one group: same datacenter and environment (or, when non-prod environments may mix,
same datacenter and prod / non-prod), so prod is never mixed with non-prod. An unknown datacenter or
environment is its own value ``unknown`` (``risk.inventory``): such servers may share hosts with each
other, never with servers whose value is known. Servers whose core count or memory size is unknown
cannot be packed (their absolute load is unknown) and stay out; a group in which some server has no
known cost minimises the number of kept hosts instead of their cost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_matrix

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.inventory import UNKNOWN, complete_inventory
from capacity_forecaster.schema import DS, METRIC, SERVER_ID, require_columns

logger = logging.getLogger(__name__)

RESOURCES = ("cpu", "memory")
_CAPACITY = {"cpu": "cpu_cores", "memory": "memory_gb"}
PLACEMENT_COLUMNS = (SERVER_ID, "host_server_id", "group", "method", "host_peak_cpu", "host_peak_memory")


@dataclass(frozen=True)
class Packing:
    """A packing of one group: ``host[i]`` is the index of the server that takes server i (i itself
    when it stays), ``method`` says how it was found (``ffd``, ``milp`` or ``milp->ffd`` when the
    solver did not prove a better answer in time)."""

    host: np.ndarray
    method: str


def fits(load: np.ndarray, capacity: np.ndarray, limit: float) -> np.ndarray:
    """Whether each host's summed load stays within ``limit`` of its capacity on every day.

    Args:
        load: (hosts, days, resources) absolute load.
        capacity: (hosts, resources).
        limit: allowed fraction of capacity (0.7 for 70 %).

    Returns:
        (hosts,) booleans.
    """
    return np.asarray((load <= limit * capacity[:, None, :] + 1e-9).all(axis=(1, 2)))


def pack_ffd(load: np.ndarray, capacity: np.ndarray, limit: float, max_per_host: int) -> Packing:
    """First-fit decreasing with hosts opened largest first.

    Hosts are opened in order of decreasing capacity (cores, then GB), so the fewest boxes take
    the load; each open host takes, first-fit, the remaining servers in order of decreasing
    peak load (largest share of the biggest capacity first) while they fit on every day.

    Args:
        load: (servers, days, resources) absolute daily upper-bound load.
        capacity: (servers, resources) capacity of each server as a host.
        limit: allowed fraction of a host's capacity.
        max_per_host: most workloads (the host's own included) per host.

    Returns:
        The Packing.
    """
    n = load.shape[0]
    host = np.full(n, -1, dtype=np.int64)
    size = (load.max(axis=1) / np.maximum(capacity.max(axis=0), 1e-9)).max(axis=1)
    items = np.lexsort((np.arange(n), -size))
    hosts = np.lexsort((np.arange(n), -capacity[:, 1], -capacity[:, 0]))
    for h in hosts:
        if host[h] >= 0:
            continue
        host[h] = h
        total = load[h].copy()
        members = 1
        for j in items:
            if members >= max_per_host:
                break
            if host[j] >= 0:
                continue
            candidate = total + load[j]
            if (candidate <= limit * capacity[h][None, :] + 1e-9).all():
                total = candidate
                host[j] = h
                members += 1
    return Packing(host, "ffd")


def _dominant_days(load: np.ndarray) -> np.ndarray:
    """Days whose load vector is not dominated by another day's (the only binding ones)."""
    per_day = load.transpose(1, 0, 2).reshape(load.shape[1], -1)
    unique, index = np.unique(per_day, axis=0, return_index=True)
    geq = np.asarray((unique[:, None, :] >= unique[None, :, :]).all(axis=2))  # geq[a, b]: a >= b everywhere
    np.fill_diagonal(geq, False)
    return np.sort(index[~geq.any(axis=0)])


def kept_cost(packing: Packing, cost: np.ndarray) -> float:
    """Monthly cost of the hosts a packing keeps."""
    return float(cost[np.unique(packing.host)].sum())


def _milp_problem(
    load: np.ndarray, capacity: np.ndarray, cost: np.ndarray, limit: float, max_per_host: int
) -> tuple[np.ndarray, LinearConstraint]:
    n, _, r = load.shape
    days = _dominant_days(load)
    var = np.arange(n * n).reshape(n, n)  # var[j, h]: server j runs on host h
    c = np.zeros(n * n)
    # Among equally cheap packings keep the bigger boxes (more headroom): a tie-break far below a cent.
    size = (capacity / np.maximum(capacity.max(axis=0), 1e-9)).sum(axis=1)
    c[np.diag(var)] = cost - 1e-6 * max(float(np.max(cost, initial=0.0)), 1.0) * size
    blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (row-local, col, value)
    lo: list[np.ndarray] = []
    hi: list[np.ndarray] = []
    # each server on exactly one host
    blocks.append((np.repeat(np.arange(n), n), var.ravel(), np.ones(n * n)))
    lo.append(np.ones(n))
    hi.append(np.ones(n))
    # only on kept hosts: x[j, h] - x[h, h] <= 0 for j != h
    j, h = np.nonzero(~np.eye(n, dtype=bool))
    k = np.arange(len(j))
    blocks.append((np.concatenate([k, k]), np.concatenate([var[j, h], var[h, h]]),
                   np.concatenate([np.ones(len(k)), -np.ones(len(k))])))
    lo.append(np.full(len(k), -np.inf))
    hi.append(np.zeros(len(k)))
    # at most max_per_host workloads per host
    blocks.append((np.repeat(np.arange(n), n), var.T.ravel(), np.ones(n * n)))
    lo.append(np.full(n, -np.inf))
    hi.append(np.full(n, float(max_per_host)))
    # capacity on every binding day and resource: row (h, t, k) sums load[j, t, k] x[j, h] over j
    n_rows = n * len(days) * r
    hh, tt, kk, jj = np.meshgrid(np.arange(n), np.arange(len(days)), np.arange(r), np.arange(n), indexing="ij")
    row_local = (hh * len(days) + tt) * r + kk
    blocks.append((row_local.ravel(), var[jj, hh].ravel(), load[jj, days[tt], kk].ravel()))
    lo.append(np.full(n_rows, -np.inf))
    hi.append((limit * capacity[:, None, :] * np.ones((1, len(days), 1))).ravel() + 1e-9)
    rows, cols, vals, offset = [], [], [], 0
    for (local, col, val), bound in zip(blocks, hi, strict=True):
        rows.append(local + offset)
        cols.append(col)
        vals.append(val)
        offset += len(bound)
    matrix = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                        shape=(offset, n * n)).tocsr()
    return c, LinearConstraint(matrix, np.concatenate(lo), np.concatenate(hi))


def pack_milp(
    load: np.ndarray, capacity: np.ndarray, cost: np.ndarray, limit: float, max_per_host: int, time_limit: float
) -> Packing:
    """Exact cheapest packing with ``scipy.optimize.milp`` (HiGHS); FFD when no better proof comes.

    Variables ``x[j, h]`` = server j runs on host h; ``x[h, h]`` = h is kept. Minimise the cost of
    the kept hosts subject to: each server on exactly one host, only on kept hosts, every day and
    resource within ``limit`` of the host's capacity, at most ``max_per_host`` per host. Days
    dominated by another day are dropped (their constraints are implied). The FFD packing is the
    fallback, so the result is never worse than FFD.

    Args:
        load: (servers, days, resources) absolute daily upper-bound load.
        capacity: (servers, resources).
        cost: (servers,) monthly cost.
        limit: allowed fraction of a host's capacity.
        max_per_host: most workloads per host.
        time_limit: solver time limit in seconds.

    Returns:
        The Packing (method ``milp``, or ``milp->ffd`` when FFD is kept).
    """
    n = load.shape[0]
    fallback = pack_ffd(load, capacity, limit, max_per_host)
    c, constraint = _milp_problem(load, capacity, cost, limit, max_per_host)
    result = milp(c, constraints=constraint, integrality=np.ones(n * n), bounds=Bounds(0, 1),
                  options={"time_limit": time_limit, "disp": False})
    if result.x is None:
        logger.debug("milp found no solution (%s); keeping FFD", result.message)
        return Packing(fallback.host, "milp->ffd")
    packing = Packing(np.round(result.x).reshape(n, n).argmax(axis=1).astype(np.int64), "milp")
    host_load = np.zeros_like(load)
    np.add.at(host_load, packing.host, load)
    counts = np.bincount(packing.host, minlength=n)
    valid = (bool(fits(host_load, capacity, limit).all()) and int(counts.max()) <= max_per_host
             and bool((packing.host[packing.host] == packing.host).all()))
    if not valid or kept_cost(packing, cost) > kept_cost(fallback, cost) + 1e-9:
        return Packing(fallback.host, "milp->ffd")
    return packing


def daily_loads(forecasts: pd.DataFrame, inventory: pd.DataFrame) -> tuple[pd.Index, pd.DatetimeIndex, np.ndarray]:
    """Absolute daily upper-bound load per server: (servers, days, resources) in cores and GB.

    A day missing from a server's forecast takes that server's peak upper bound (conservative).

    Args:
        forecasts: server_id, metric, ds, yhat_upper.
        inventory: server_id, cpu_cores, memory_gb.

    Returns:
        (server index, day index, load array). Servers without both cpu and memory forecasts,
        or without a known cpu_cores and memory_gb, are left out.
    """
    require_columns(forecasts, (SERVER_ID, METRIC, DS, "yhat_upper"), "forecasts")
    part = forecasts[forecasts[METRIC].isin(RESOURCES)]
    table = part.pivot_table(index=SERVER_ID, columns=[METRIC, DS], values="yhat_upper", aggfunc="max")
    have = [m for m in RESOURCES if m in table.columns.get_level_values(0)]
    if len(have) < len(RESOURCES):
        return pd.Index([], name=SERVER_ID), pd.DatetimeIndex([]), np.zeros((0, 0, len(RESOURCES)))
    days = pd.DatetimeIndex(sorted(part[DS].unique()))
    inv = complete_inventory(inventory).set_index(SERVER_ID)
    servers = table.index[table.index.isin(inv.index)]
    arrays = []
    for metric in RESOURCES:
        pct = pd.DataFrame(table[metric]).reindex(index=servers, columns=days).to_numpy(dtype=float)
        peak = np.nanmax(np.where(np.isnan(pct).all(axis=1)[:, None], np.nan, pct), axis=1, initial=-np.inf)
        pct = np.where(np.isnan(pct), peak[:, None], pct)
        arrays.append(pct / 100.0 * inv.loc[servers, _CAPACITY[metric]].to_numpy(dtype=float)[:, None])
    load = np.stack(arrays, axis=2)
    complete = np.isfinite(load).all(axis=(1, 2))
    return servers[complete], days, load[complete]


def group_keys(inventory: pd.DataFrame, cfg: RiskConfig) -> pd.Series:
    """Packing group of every server: ``datacenter/environment`` (or ``datacenter/non-prod``).

    A missing datacenter or environment (absent column or null) is ``unknown``, its own group value.
    """
    env = (inventory["environment"] if "environment" in inventory.columns
           else pd.Series(None, index=inventory.index, dtype=object)).fillna(UNKNOWN).astype(str)
    datacenter = (inventory["datacenter"] if "datacenter" in inventory.columns
                  else pd.Series(None, index=inventory.index, dtype=object)).fillna(UNKNOWN).astype(str)
    if cfg.mix_nonprod_environments:
        env = env.where(env.isin(["prod", UNKNOWN]), "non-prod")
    return pd.Series(datacenter + "/" + env, index=inventory.index)


def consolidate(
    candidates: pd.Index, forecasts: pd.DataFrame, inventory: pd.DataFrame, cfg: RiskConfig
) -> pd.DataFrame:
    """Pack candidate servers onto hosts, group by group (exact MILP for small groups, else FFD).

    Args:
        candidates: server ids allowed to move or to host (under-used, not at risk).
        forecasts: daily forecasts (yhat_upper of cpu and memory are used).
        inventory: server_id (+ datacenter, environment, cpu_cores, memory_gb, monthly_cost_usd;
            servers without a known cpu_cores and memory_gb are not placed).
        cfg: risk settings (consolidation_target, max_servers_per_host, milp limits, grouping).

    Returns:
        One row per candidate that could be placed: server_id, host_server_id (itself when it
        stays), group, method, host_peak_cpu, host_peak_memory (the host's combined daily
        upper-bound peak in % of its capacity, after packing).
    """
    inv = complete_inventory(inventory)
    inv = inv[inv[SERVER_ID].isin(candidates)].reset_index(drop=True)
    servers, _, load = daily_loads(forecasts[forecasts[SERVER_ID].isin(inv[SERVER_ID])], inv)
    inv = inv.set_index(SERVER_ID).loc[servers].reset_index()
    inv["group"] = group_keys(inv, cfg).to_numpy()
    limit = cfg.consolidation_target / 100.0
    parts = []
    for group, members in inv.groupby("group", sort=True):
        idx = members.index.to_numpy()
        capacity = members[["cpu_cores", "memory_gb"]].to_numpy(dtype=float)
        if len(idx) == 1:
            packing = Packing(np.zeros(1, dtype=np.int64), "single")
        elif len(idx) <= cfg.milp_max_servers:
            cost = members["monthly_cost_usd"].to_numpy(float)
            # Without every price the cheapest packing is unknowable: keep the fewest hosts instead.
            cost = cost if np.isfinite(cost).all() else np.ones(len(idx))
            packing = pack_milp(load[idx], capacity, cost, limit, cfg.max_servers_per_host, cfg.milp_time_limit)
        else:
            packing = pack_ffd(load[idx], capacity, limit, cfg.max_servers_per_host)
        host_load = np.zeros((len(idx),) + load.shape[1:])
        np.add.at(host_load, packing.host, load[idx])
        peak = host_load.max(axis=1) / np.maximum(capacity, 1e-9) * 100.0
        parts.append(pd.DataFrame({
            SERVER_ID: members[SERVER_ID].to_numpy(),
            "host_server_id": members[SERVER_ID].to_numpy()[packing.host],
            "group": group,
            "method": packing.method,
            "host_peak_cpu": peak[packing.host, 0],
            "host_peak_memory": peak[packing.host, 1],
        }))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object if c in (SERVER_ID, "host_server_id", "group", "method")
                                          else float) for c in PLACEMENT_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    moved = int((out[SERVER_ID] != out["host_server_id"]).sum())
    logger.debug("consolidation: %d candidates in %d groups, %d moved", len(out), out["group"].nunique(), moved)
    return out
