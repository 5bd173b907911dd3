"""Sparse inventories: every column but server_id optional in every risk module; missing cost, cores, memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from risk_frames import make_forecast, make_history, make_inventory

from capacity_forecaster.config import RiskConfig, Settings
from capacity_forecaster.errors import SchemaError
from capacity_forecaster.risk.clustering import cluster_servers
from capacity_forecaster.risk.consolidation import consolidate, group_keys
from capacity_forecaster.risk.inventory import complete_inventory
from capacity_forecaster.risk.profiles import server_profiles
from capacity_forecaster.risk.sizing import CostModel, capacity_needs
from capacity_forecaster.risk.stage import render_summary, run_risk
from capacity_forecaster.schema import INVENTORY_COLUMNS, RECOMMENDATION_COLUMNS
from capacity_forecaster.stages.risk import risk_stage
from capacity_forecaster.storage.lake import Lake

LEVELS = {"hot": 92.0, "busy": 60.0, "calm1": 15.0, "calm2": 12.0, "calm3": 18.0, "idle": 2.0}
CFG = RiskConfig(cluster_k_min=2, cluster_k_max=3)


@pytest.fixture(scope="module")
def fleet() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    metrics, forecasts = [], []
    for sid, level in LEVELS.items():
        for metric in ("cpu", "memory"):
            values = np.clip(level + rng.normal(0, 1.0, 120), 0, 100)
            metrics.append(make_history([sid], days=120, metrics=(metric,), values=values))
            forecasts.append(make_forecast(sid, metric, np.full(30, level), spread=3.0))
    return pd.concat(metrics, ignore_index=True), pd.concat(forecasts, ignore_index=True)


def _nan_inventory(**nan: bool) -> pd.DataFrame:
    inv = make_inventory([{"server_id": sid} for sid in LEVELS]).astype({"cpu_cores": float, "memory_gb": float})
    for column in nan:
        inv[column] = np.nan
    return inv


def test_complete_inventory_fills_absent_and_unusable_values() -> None:
    raw = pd.DataFrame({"server_id": ["a", "b", "b", None], "cpu_cores": ["4", "x", "8", "2"],
                        "environment": ["prod", " ", "dev", "dev"], "monthly_cost_usd": [-1.0, 10.0, 20.0, 5.0]})
    out = complete_inventory(raw, pd.Index(["c"])).set_index("server_id")
    assert list(out.columns) == list(INVENTORY_COLUMNS)[1:] and list(out.index) == ["a", "b", "c"]
    assert out.loc["a", "cpu_cores"] == 4.0 and np.isnan(out.loc["b", "cpu_cores"])  # "x" is not a number
    assert np.isnan(out.loc["a", "monthly_cost_usd"]) and out.loc["b", "monthly_cost_usd"] == 10.0
    assert out.loc["b", "environment"] == "unknown" and out.loc["c", "datacenter"] == "unknown"
    assert out.loc["c", "hostname"] == "c"
    with pytest.raises(SchemaError, match="missing column server_id"):
        complete_inventory(pd.DataFrame({"host": ["a"]}))


def test_sizing_without_cores_or_memory_is_in_percent_only(fleet: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, forecasts = fleet
    needs = capacity_needs(forecasts, pd.DataFrame({"server_id": list(LEVELS)}), CFG).set_index("server_id")
    assert needs["cpu_needed"].isna().all() and needs["sized_cpu_cores"].isna().all()
    assert needs.loc["calm1", "cpu_needed_pct"] == pytest.approx((15.0 + 3.0) * 1.2 / 0.8)
    assert not needs["exceeds_largest_size"].any()


def test_cost_model_skips_unknown_prices_and_prices_relatively() -> None:
    inv = complete_inventory(make_inventory([{"server_id": f"s{i}", "cpu_cores": 2 * (i + 1),
                                              "monthly_cost_usd": np.nan if i % 2 else 100.0 * (i + 1)}
                                             for i in range(10)]))
    model = CostModel.fit(inv)
    assert np.isfinite(model.rates.to_numpy()).all()
    projected = model.project(inv, inv["cpu_cores"].to_numpy() / 2, inv["memory_gb"].to_numpy())
    assert np.isnan(projected[1]) and np.isfinite(projected[0])
    ratio = model.ratio(inv.assign(cpu_cores=np.nan), np.full(10, 0.5), np.full(10, 1.0))
    assert ratio == pytest.approx(np.full(10, 0.75))  # capacity-proportional without a known size
    assert CostModel.fit(pd.DataFrame({"server_id": ["a"]})).rates.empty


def test_consolidation_with_unknown_costs_and_groups(fleet: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    _, forecasts = fleet
    calm = pd.Index(["calm1", "calm2", "calm3"])
    inv = _nan_inventory(monthly_cost_usd=True).drop(columns=["environment", "datacenter"])
    placed = consolidate(calm, forecasts, inv, CFG)
    assert set(placed["server_id"]) == set(calm) and (placed["group"] == "unknown/unknown").all()
    assert placed["host_server_id"].nunique() < len(calm)  # fewest hosts when prices are unknown
    no_cores = consolidate(calm, forecasts, _nan_inventory(cpu_cores=True), CFG)
    assert no_cores.empty  # absolute loads unknown: nobody is packed
    mixed = complete_inventory(pd.DataFrame({"server_id": ["a", "b", "c"], "environment": ["prod", None, "dev"]}))
    groups = group_keys(mixed, CFG.model_copy(update={"mix_nonprod_environments": True}))
    assert list(groups) == ["unknown/prod", "unknown/unknown", "unknown/non-prod"]


def test_clustering_with_a_missing_metric_and_nan_features(fleet: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    metrics, _ = fleet
    cpu_only = metrics[metrics["metric"] == "cpu"]
    profiles = server_profiles(cpu_only, CFG.period_end_business_days)
    clusters = cluster_servers(profiles, CFG)
    assert set(clusters["server_id"]) == set(LEVELS) and clusters["cluster_label"].notna().all()


@pytest.mark.parametrize("case", ["server_id only", "no cost", "no cores or memory", "everything nan"])
def test_the_whole_stage_runs_on_a_sparse_inventory(fleet: tuple[pd.DataFrame, pd.DataFrame], case: str) -> None:
    metrics, forecasts = fleet
    inv = {"server_id only": pd.DataFrame({"server_id": list(LEVELS)}),
           "no cost": _nan_inventory(monthly_cost_usd=True),
           "no cores or memory": _nan_inventory(cpu_cores=True, memory_gb=True),
           "everything nan": _nan_inventory(**{c: True for c in INVENTORY_COLUMNS[1:]})}[case]
    result = run_risk(metrics, forecasts, inv, CFG)
    recs = result.recommendations.set_index("server_id")
    assert list(result.recommendations.columns[:9]) == list(RECOMMENDATION_COLUMNS) and len(recs) == len(LEVELS)
    assert recs.loc["hot", "action"] == "upsize" and recs.loc["idle", "action"] == "decommission"
    if case == "no cores or memory":
        assert recs.loc["idle", "monthly_savings"] == 400.0  # the cost is known, the sizes are not
    else:
        assert recs.loc[recs["action"] != "keep", "monthly_savings"].isna().all()
        assert "savings not priced (no monthly cost in the inventory)" in recs.loc["hot", "rationale"]
        assert "Savings: unknown for" in render_summary(result)
    if case != "no cost":
        assert pd.isna(recs.loc["hot", "recommended_cpu_cores"])
        # "upsize now: cpu to 142 % of today's, memory ... (cpu and memory sizes unknown in the inventory)"
        assert "; upsize now: cpu to 1" in recs.loc["hot", "rationale"]
        assert "% of today's (cpu and memory sizes unknown in the inventory)" in recs.loc["hot", "rationale"]
        assert "upsize to cpu" not in recs.loc["hot", "rationale"]
        assert "(from unknown" not in recs.loc["hot", "rationale"]  # nothing known to grow from
    risk = result.server_risk.set_index(["server_id", "metric"])
    assert risk.loc[("hot", "cpu"), "status"] == "already_breaching"


def test_the_risk_stage_on_a_lake_whose_inventory_has_no_prices(tmp_path, fleet) -> None:  # type: ignore[no-untyped-def]
    metrics, forecasts = fleet
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    lake.write_table("inventory", _nan_inventory(monthly_cost_usd=True, environment=True))
    lake.write_table("metrics", metrics)
    lake.write_table("forecasts", forecasts)
    run, result = risk_stage(lake, Settings(risk=CFG))
    assert run.rows_out == len(result.server_risk) and result.summary["servers_without_cost"] == len(LEVELS)
    assert lake.read_table("recommendations")["monthly_savings"].isna().any()


def test_a_one_core_server_is_said_in_the_singular(fleet: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    metrics, forecasts = fleet
    inv = make_inventory([{"server_id": sid, "cpu_cores": 1, "memory_gb": 2} for sid in LEVELS])
    recs = run_risk(metrics, forecasts, inv, CFG).recommendations.set_index("server_id")
    assert recs.loc["hot", "action"] == "upsize"
    assert "(from 1 core / 2 GB)" in recs.loc["hot", "rationale"] and "1 cores" not in recs.loc["hot", "rationale"]


@pytest.mark.parametrize("case", ["no prices, no sizes", "prices fitted, one cost unknown"])
def test_an_unpriced_rightsize_says_what_its_percentage_is(fleet: tuple[pd.DataFrame, pd.DataFrame],
                                                           case: str) -> None:
    metrics, forecasts = fleet
    if case == "no prices, no sizes":
        inv = pd.DataFrame({"server_id": list(LEVELS)})
    else:
        inv = make_inventory([{"server_id": sid, "cpu_cores": 16, "memory_gb": 64, "monthly_cost_usd": 800.0}
                              for sid in LEVELS])
        inv.loc[inv["server_id"] == "calm1", "monthly_cost_usd"] = np.nan
    cfg = CFG.model_copy(update={"consolidation_candidate_max": 1.0})  # no packing: calm1 is right-sized
    recs = run_risk(metrics, forecasts, inv, cfg).recommendations.set_index("server_id")
    rec = recs.loc["calm1"]
    assert rec["action"] == "rightsize" and pd.isna(rec["monthly_savings"])
    text = rec["rationale"]
    assert "savings not priced" in text and "of the server's cost" not in text
    if case == "no prices, no sizes":
        # No cost is known anywhere: the percentage is the new size against today's, not a cost.
        assert "; the new size is about " in text and " % of its current capacity (cpu and memory averaged)" in text
        assert "fitted" not in text
    else:
        assert "; at the prices fitted on the fleet's priced servers the new size costs about " in text
        assert text.endswith(" % less")
