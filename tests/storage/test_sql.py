"""DuckDB over a real lake (local and S3): views, joins with inventory, window functions, SQLAlchemy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.sql import SqlError, query, sqlalchemy_engine


@pytest.fixture()
def filled_lake(lake: Lake) -> Lake:
    days = pd.date_range("2025-01-01", periods=60, freq="D")
    ids = ["srv-1", "srv-2", "srv-3"]
    raw = pd.DataFrame(
        {
            "server_id": np.repeat(ids, len(days)),
            "ds": np.tile(days.values, len(ids)),
            "metric": "cpu",
            "value": np.concatenate([np.full(60, 10.0), np.arange(60, dtype=float), np.full(60, 50.0)]),
        }
    )
    inventory = pd.DataFrame(
        {
            "server_id": ids, "hostname": ["a", "b", "c"], "application": ["pay", "pay", "risk"],
            "business_unit": ["Payments", "Payments", "Risk"], "environment": ["prod", "prod", "dev"],
            "datacenter": ["NYC1"] * 3, "server_type": ["virtual"] * 3, "cpu_cores": [4, 8, 16],
            "memory_gb": [16, 32, 64], "monthly_cost_usd": [100.0, 200.0, 400.0],
        }
    )
    lake.write_table("raw_metrics", raw)
    lake.write_table("inventory", inventory)
    return lake


def test_join_with_inventory(filled_lake: Lake) -> None:
    result = query(
        filled_lake,
        "SELECT i.business_unit, avg(m.value) AS mean_cpu FROM raw_metrics m "
        "JOIN inventory i USING (server_id) GROUP BY 1 ORDER BY 1",
    )
    assert result["business_unit"].tolist() == ["Payments", "Risk"]
    assert result["mean_cpu"].tolist() == pytest.approx([(10.0 + 29.5) / 2, 50.0])


def test_window_function_over_ds(filled_lake: Lake) -> None:
    result = query(
        filled_lake,
        "SELECT server_id, ds, avg(value) OVER (PARTITION BY server_id ORDER BY ds "
        "ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS ma7 FROM raw_metrics "
        "WHERE server_id = ? QUALIFY row_number() OVER (PARTITION BY server_id ORDER BY ds DESC) = 1",
        ["srv-2"],
    )
    assert result["ma7"].iloc[0] == pytest.approx(np.mean(np.arange(53, 60)))
    assert pd.Timestamp(result["ds"].iloc[0]) == pd.Timestamp("2025-03-01")


def test_partition_columns_are_queryable(filled_lake: Lake) -> None:
    result = query(filled_lake, "SELECT DISTINCT year, month FROM raw_metrics ORDER BY 1, 2")
    assert result.values.tolist() == [["2025", "01"], ["2025", "02"], ["2025", "03"]]


def test_bad_sql_names_available_views(filled_lake: Lake) -> None:
    with pytest.raises(SqlError, match="views in lake .*inventory.*raw_metrics"):
        query(filled_lake, "SELECT * FROM nonexistent_table")


def test_sqlalchemy_engine_sees_views(filled_lake: Lake) -> None:
    engine = sqlalchemy_engine(filled_lake)
    frame = pd.read_sql("SELECT count(*) AS n FROM raw_metrics WHERE value > 40", engine)
    assert int(frame["n"].iloc[0]) == 60 + 19


def test_timestamp_columns_filter_with_plain_literals(tmp_path) -> None:
    """helper-51: last_observed < '2025-04-01' failed ('Cannot compare timestamp with timezone to timestamp without
    timezone'): the files store UTC instants, the views showed naive times, and the filter reached the files."""
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    seen = pd.to_datetime(["2025-03-01", "2025-05-01", "2025-06-01"])
    lake.write_table("server_risk", pd.DataFrame({
        "server_id": ["a", "b", "c"], "metric": "cpu", "risk_level": "low", "peak_yhat": 1.0, "peak_ds": seen,
        "breach_ds": pd.NaT, "days_to_breach": np.nan, "breach_probability": 0.1, "last_observed": seen}))
    out = query(lake, "SELECT server_id, last_observed FROM server_risk WHERE last_observed < '2025-05-15' "
                      "AND last_observed > TIMESTAMP '2025-02-01' ORDER BY 1")
    assert out["server_id"].tolist() == ["a", "b"] and out["last_observed"].dt.tz is None
    assert out["last_observed"].tolist() == list(seen[:2])
    engine = sqlalchemy_engine(lake)
    assert pd.read_sql("SELECT count(*) AS n FROM server_risk WHERE peak_ds >= '2025-05-01'", engine)["n"][0] == 2
