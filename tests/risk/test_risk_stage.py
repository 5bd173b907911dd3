"""The whole risk stage on a tiny fleet: contract tables, summary, what-if comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from risk_frames import make_forecast, make_history, make_inventory

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.errors import SchemaError
from capacity_forecaster.risk.stage import COMPARISON_COLUMNS, render_summary, run_risk
from capacity_forecaster.risk.whatif import parse_scenario
from capacity_forecaster.schema import CLUSTER_COLUMNS, RECOMMENDATION_COLUMNS, SERVER_RISK_COLUMNS

LEVELS = {"s1": 75.0, "s2": 40.0, "s3": 20.0, "s4": 3.0, "s5": 35.0, "s6": 50.0}


@pytest.fixture(scope="module")
def fleet() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    metrics, forecasts = [], []
    for sid, level in LEVELS.items():
        for metric in ("cpu", "memory", "disk", "network"):
            values = level + rng.normal(0, 1.0, 200)
            metrics.append(make_history([sid], days=200, metrics=(metric,), values=np.clip(values, 0, 100)))
            forecasts.append(make_forecast(sid, metric, np.linspace(level, level * 1.1, 90), spread=4.0))
    inv = make_inventory([{"server_id": sid, "monthly_cost_usd": 300.0 + 10 * i} for i, sid in enumerate(LEVELS)])
    return pd.concat(metrics, ignore_index=True), pd.concat(forecasts, ignore_index=True), inv


def test_tables_follow_the_contract(fleet: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    metrics, forecasts, inv = fleet
    result = run_risk(metrics, forecasts, inv, RiskConfig(cluster_k_min=2, cluster_k_max=4))
    assert list(result.server_risk.columns[:8]) == list(SERVER_RISK_COLUMNS)
    assert list(result.clusters.columns[:3]) == list(CLUSTER_COLUMNS)
    assert list(result.recommendations.columns[:9]) == list(RECOMMENDATION_COLUMNS)
    assert len(result.server_risk) == 4 * len(LEVELS) and result.comparison.empty
    assert set(result.server_risk["risk_level"]) <= {"critical", "high", "medium", "low"}
    assert set(result.recommendations["action"]) <= {"keep", "upsize", "rightsize", "consolidate", "decommission"}
    risk = result.server_risk.set_index(["server_id", "metric"])
    assert risk.loc[("s1", "cpu"), "risk_level"] == "high" and risk.loc[("s1", "cpu"), "days_to_breach"] == 61
    assert (risk.drop(index="s1", level=0)["risk_level"] == "low").all()
    assert result.base_summary is None
    text = render_summary(result)
    assert "At risk: 1 servers" in text and "s1 cpu" in text and "Savings:" in text


def test_growth_what_if_compares_with_the_base(fleet: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    metrics, forecasts, inv = fleet
    result = run_risk(metrics, forecasts, inv, RiskConfig(cluster_k_min=2, cluster_k_max=4), growth=25.0)
    assert list(result.comparison.columns) == list(COMPARISON_COLUMNS)
    change = result.comparison.set_index(["server_id", "metric"])["change"]
    assert change[("s1", "cpu")] == "worse"  # 75 % x 1.25 crosses from the first day
    assert change[("s4", "cpu")] == "unchanged"
    row = result.comparison.set_index(["server_id", "metric"]).loc[("s1", "cpu")]
    assert row["base_days_to_breach"] == 61 and row["scenario_days_to_breach"] == 1
    assert result.base_summary is not None and result.summary["scenario"] == "growth +25 %"
    assert result.summary["series_by_level"]["critical"] > result.base_summary["series_by_level"]["critical"]


def test_scenario_adds_and_removes_servers(fleet: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    metrics, forecasts, inv = fleet
    scenario = parse_scenario({"name": "onboarding", "add": [{"like": "s1", "count": 2}], "remove": ["s3"]})
    result = run_risk(metrics, forecasts, inv, RiskConfig(cluster_k_min=2, cluster_k_max=4), scenario=scenario)
    changes = result.comparison.groupby("server_id")["change"].first()
    assert changes["new-001"] == "added" and changes["s3"] == "removed"
    assert {"new-001", "new-002"} <= set(result.clusters["server_id"])
    assert "s3" not in set(result.recommendations["server_id"])
    assert result.summary["scenario"] == "onboarding"


def test_missing_columns_are_schema_errors(fleet: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]) -> None:
    metrics, forecasts, inv = fleet
    with pytest.raises(SchemaError, match="forecasts: missing column"):
        run_risk(metrics, forecasts.drop(columns="yhat_upper"), inv, RiskConfig())
