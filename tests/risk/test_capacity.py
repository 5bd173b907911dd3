"""Capacity remaining by group: every group is the sum of its servers; unknown values form their own group."""

from __future__ import annotations

import numpy as np
import pandas as pd
from risk_frames import make_forecast, make_history, make_inventory

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.capacity import GROUP_BY, server_capacity
from capacity_forecaster.risk.inventory import UNKNOWN
from capacity_forecaster.risk.stage import run_risk
from capacity_forecaster.schema import CAPACITY_GROUP_COLUMNS

LEVELS = {"a": 75.0, "b": 40.0, "c": 20.0, "d": 3.0, "e": 55.0}


def _result():
    metrics = pd.concat([make_history([s], days=200, metrics=("cpu", "memory"), values=np.full(200, level))
                         for s, level in LEVELS.items()], ignore_index=True)
    forecasts = pd.concat([make_forecast(s, m, np.linspace(level, level * 1.15, 90), spread=3.0)
                           for s, level in LEVELS.items() for m in ("cpu", "memory")], ignore_index=True)
    rows = [{"server_id": "a", "datacenter": "NY1", "environment": "prod", "application": "pay"},
            {"server_id": "b", "datacenter": "NY1", "environment": "prod", "application": "pay"},
            {"server_id": "c", "datacenter": "NJ2", "environment": "dev", "application": "crm"},
            {"server_id": "d", "datacenter": "NJ2", "environment": "prod", "application": None},
            {"server_id": "e", "datacenter": None, "environment": None, "application": ""}]  # unknowns
    inventory = make_inventory(rows)
    return run_risk(metrics, forecasts, inventory, RiskConfig(cluster_k_min=2, cluster_k_max=3)), inventory


def test_each_group_is_the_sum_of_its_servers() -> None:
    result, inventory = _result()
    table = result.capacity
    assert list(table.columns[: len(CAPACITY_GROUP_COLUMNS)]) == list(CAPACITY_GROUP_COLUMNS)
    per = server_capacity(result.server_risk, result.recommendations, inventory)
    for key in GROUP_BY:
        rows = table[table["group_by"] == key].set_index("group")
        assert rows["servers"].sum() == len(per)  # every server in exactly one group per dimension
        for group, members in per.groupby(key):
            row = rows.loc[group]
            assert row["servers"] == len(members)
            for column in ("cpu_cores", "free_cpu_cores", "memory_gb", "free_memory_gb", "reclaimable_cpu_cores",
                           "reclaimable_memory_gb"):
                assert row[column] == np.round(members[column].sum(), 1), (key, group, column)
            soonest = members["days_remaining"].min()
            assert (pd.isna(row["days_remaining"]) and pd.isna(soonest)) or row["days_remaining"] == soonest
    app = table[table["group_by"] == "application"].set_index("group")
    assert app.loc[UNKNOWN, "servers"] == 2  # d and e: unknown is a group of its own
    assert table[table["group_by"] == "datacenter"].set_index("group").loc[UNKNOWN, "servers"] == 1
    pay = app.loc["pay"]
    assert pay["earliest_breach"] == "a cpu" and pay["days_remaining"] >= 0 and pay["servers_at_risk"] >= 1
    # d is idle: its whole size is reclaimable (decommission frees it, not zeros).
    d = per.set_index("server_id").loc["d"]
    if result.recommendations.set_index("server_id").loc["d", "action"] == "decommission":
        assert d["reclaimable_cpu_cores"] == d["cpu_cores"]


def test_a_group_of_breaching_servers_names_the_one_the_reports_rank_first() -> None:
    """Two servers already over: 'now' for the group, and the same series the executive summary names
    (the most days over recently), not the one whose last day over is oldest."""
    hot = np.full(200, 40.0)
    hot[-14:] = 95.0  # over on all of the last 14 days
    warm = np.full(200, 40.0)
    warm[-20:-15] = 95.0  # over on 5 days, before the last 14
    warm[-3:] = 90.0  # ... and on the last 3
    metrics = pd.concat([make_history(["a-warm"], days=200, metrics=("cpu",), values=warm),
                         make_history(["b-hot"], days=200, metrics=("cpu",), values=hot)], ignore_index=True)
    forecasts = pd.concat([make_forecast(s, "cpu", np.full(30, 60.0)) for s in ("a-warm", "b-hot")], ignore_index=True)
    inventory = make_inventory([{"server_id": s, "datacenter": "NY1"} for s in ("a-warm", "b-hot")])
    result = run_risk(metrics, forecasts, inventory, RiskConfig(cluster_k_min=2, cluster_k_max=2))
    risk = result.server_risk.set_index("server_id")
    assert (risk["status"] == "already_breaching").all() and (risk["days_to_breach"] == 0).all()
    row = result.capacity[result.capacity["group_by"] == "datacenter"].iloc[0]
    assert row["days_remaining"] == 0 and row["earliest_breach"] == "b-hot cpu"


def test_free_memory_is_unknown_not_zero_without_a_memory_forecast() -> None:
    """fastStorage has no memory metric: its groups read 'Free GB at peak 0' of 583.7 GB, as if memory were full."""
    metrics = make_history(["a", "b"], days=200, metrics=("cpu",), values=np.full(200, 30.0))
    forecasts = pd.concat([make_forecast(s, "cpu", np.full(30, 30.0)) for s in ("a", "b")], ignore_index=True)
    inventory = make_inventory([{"server_id": s, "datacenter": "NY1", "cpu_cores": 10} for s in ("a", "b")])
    result = run_risk(metrics, forecasts, inventory, RiskConfig(cluster_k_min=2, cluster_k_max=2))
    row = result.capacity[result.capacity["group_by"] == "datacenter"].iloc[0]
    assert row["memory_gb"] == 64 and pd.isna(row["free_memory_gb"])
    assert row["free_cpu_cores"] == 14.0  # 70 % of 2 x 10 cores


def test_free_cores_are_counted_at_a_recurring_month_end_peak_above_the_forecast() -> None:
    """helper-40: a month-end run at 80 % read 'Free cores at peak 24.5 of 32' (its flat forecast's 23 %)."""
    from risk_frames import make_forecast as forecast
    from test_analogue import JUNE_20, _month_end_history

    metrics = _month_end_history(70.0)
    forecasts = forecast("batch", "cpu", np.full(30, 22.0), start=JUNE_20 + pd.Timedelta(days=1))
    inventory = make_inventory([{"server_id": "batch", "datacenter": "NY1", "cpu_cores": 10}])
    result = run_risk(metrics, forecasts, inventory, RiskConfig())
    row = result.capacity[result.capacity["group_by"] == "datacenter"].iloc[0]
    assert row["free_cpu_cores"] == 3.0  # 30 % of 10 cores at the month-end peak, not the forecast's 78 %


def test_sizes_unknown_for_a_whole_group_are_null_not_zero() -> None:
    """NAB (no inventory sizes): its groups read 'Cores 0, Memory (GB) 0, Reclaimable 0'; a group that knows
    one server's size sums that one."""
    from capacity_forecaster.report.capacity import capacity_rows
    from capacity_forecaster.report.data import ReportData

    metrics = make_history(["a", "b", "c"], days=200, metrics=("cpu", "memory"), values=np.full(200, 30.0))
    forecasts = pd.concat([make_forecast(s, m, np.full(30, 30.0)) for s in ("a", "b", "c") for m in ("cpu", "memory")],
                          ignore_index=True)
    inventory = make_inventory([{"server_id": "a", "datacenter": "NY1"}, {"server_id": "b", "datacenter": "NY1"},
                                {"server_id": "c", "datacenter": "NJ2"}])
    inventory.loc[inventory["server_id"].isin(["a", "b"]), ["cpu_cores", "memory_gb"]] = np.nan
    result = run_risk(metrics, forecasts, inventory, RiskConfig(cluster_k_min=2, cluster_k_max=2))
    rows = result.capacity[result.capacity["group_by"] == "datacenter"].set_index("group")
    for column in ("cpu_cores", "memory_gb", "free_cpu_cores", "free_memory_gb", "reclaimable_cpu_cores",
                   "reclaimable_memory_gb"):
        assert pd.isna(rows.loc["NY1", column]), column
        assert not pd.isna(rows.loc["NJ2", column]), column
    assert rows.loc["NJ2", "cpu_cores"] == 8
    data = ReportData(lake_uri="x", settings=None, tables={"capacity_by_group": result.capacity},  # type: ignore[arg-type]
                      generated=pd.Timestamp("2026-01-01"))
    shown = capacity_rows(data).set_index(["group_by", "group"]).loc[("datacenter", "NY1")]
    assert shown["reclaimable_cpu_cores"] == "unknown" and shown["free_memory_gb"] == "unknown"
