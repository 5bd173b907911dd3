"""The dashboard's Recommendations table (``dashboard_recs.Savings``)."""

from __future__ import annotations

import pandas as pd

from capacity_forecaster.report.dashboard_recs import SAVINGS_COLUMNS, Savings


def _recs() -> pd.DataFrame:
    return pd.DataFrame({
        "server_id": ["tiny", "big"], "action": ["keep", "rightsize"], "target_server_id": [None, None],
        "recommended_cpu_cores": [1.0, 4.0], "recommended_memory_gb": [0.2, 15.6],
        "current_monthly_cost": [100.4, 800.6], "projected_monthly_cost": [100.4, 400.3],
        "monthly_savings": [0.0, 400.3], "rationale": ["", ""],
    })


def test_sub_gb_memory_is_not_rounded_to_0() -> None:
    table = Savings.of(_recs()).table().set_index("server_id")
    assert list(table.reset_index().columns) == list(SAVINGS_COLUMNS)
    assert table.loc["tiny", "recommended_memory_gb"] == 0.2 and table.loc["big", "recommended_memory_gb"] == 15.6
    assert table.loc["big", "monthly_savings"] == 400.0 and table.loc["big", "recommended_cpu_cores"] == 4.0


def test_no_projected_cost_where_todays_cost_is_unknown() -> None:
    recs = _recs().assign(action=["decommission", "rightsize"], current_monthly_cost=[None, 800.6],
                          projected_monthly_cost=[0.0, 400.3], monthly_savings=[None, 400.3])
    table = Savings.of(recs).table().set_index("server_id")
    assert pd.isna(table.loc["tiny", "projected_monthly_cost"])  # not a $0 beside an unknown cost today
    assert table.loc["big", "projected_monthly_cost"] == 400.0
