"""The dashboard's Recommendations table (``dashboard_recs.Savings``)."""

from __future__ import annotations

import pandas as pd

from capacity_forecaster.report.dashboard_recs import SAVINGS_COLUMNS, Savings, savings_cards


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
    # A decommissioned server has no new size (helper-52: the dashboard said 0 cores, 0 GB; the PDF "-").
    assert table.loc["tiny", ["recommended_cpu_cores", "recommended_memory_gb"]].isna().all()
    assert table.loc["big", "projected_monthly_cost"] == 400.0


def test_without_any_price_savings_are_not_priced_not_zero_and_upsizes_lead() -> None:
    # helper-41: the dashboard said "$0" net savings on a lake the packs called "not priced".
    recs = _recs().assign(action=["keep", "upsize"], current_monthly_cost=[None, None],
                          projected_monthly_cost=[None, None], monthly_savings=[0.0, None])
    savings = Savings.of(recs)
    assert savings.priced == 0 and savings.net_text() == "not priced"
    table = savings.table()
    assert table["server_id"].tolist() == ["big", "tiny"]  # the upsize first, as the packs list actions
    assert table["monthly_savings"].isna().all()  # unknown, not $0 on the keep row
    [(label, value, note), _] = savings_cards(savings, savings, 0.0)
    assert (label, value, note) == ("Net savings / month", "not priced", "no monthly cost in the inventory")
    assert savings_cards(savings, savings, 20.0)[0][1:] == ("not priced", "base not priced; no monthly cost in the "
                                                                          "inventory")
    priced = Savings.of(_recs())
    assert priced.net_text() == "$400" and savings_cards(priced, priced, 0.0)[0][1] == "$400"


def test_the_slider_says_its_percent_is_per_year_or_a_step() -> None:
    from capacity_forecaster.config import Settings
    from capacity_forecaster.report.dashboard_layout import _slider_title

    ramped = Settings()
    assert _slider_title(ramped).endswith("(% per year, compounded daily over the forecast horizon)")
    step = ramped.model_copy(update={"risk": ramped.risk.model_copy(update={"growth_ramp": False})})
    assert _slider_title(step).endswith("(%, a step change from the first forecast day)")
