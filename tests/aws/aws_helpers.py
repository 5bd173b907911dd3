"""Test helpers: a tiny lake (every column type, two partition years), fake AWS identities, a fixed session."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.storage import Lake

ACCOUNT = "123456789012"  # moto's account id
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/capfc-sagemaker"
IMAGE_URI = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/capfc:1.0"


def write_small_lake(lake: Lake) -> None:
    """Two partitioned tables spanning two years and three unpartitioned ones, with every column type."""
    days = pd.date_range("2025-11-25", "2026-01-05", freq="D")
    raw = pd.DataFrame({"server_id": "srv-001", "ds": days, "metric": "cpu", "value": np.linspace(10, 60, len(days))})
    lake.write_table("raw_metrics", raw)
    future = pd.date_range("2026-01-06", periods=40, freq="D")
    lake.write_table("forecasts", pd.DataFrame({
        "server_id": "srv-001", "metric": "cpu", "ds": future, "model": "seasonal_naive",
        "yhat": 50.0, "yhat_lower": 40.0, "yhat_upper": 60.0,
    }))
    lake.write_table("inventory", pd.DataFrame({
        "server_id": ["srv-001"], "hostname": ["h1"], "application": ["app"], "business_unit": ["bu"],
        "environment": ["prod"], "datacenter": ["dc1"], "server_type": ["vm"], "cpu_cores": [8],
        "memory_gb": [32], "monthly_cost_usd": [410.5],
    }))
    lake.write_table("server_risk", pd.DataFrame({
        "server_id": ["srv-001"], "metric": ["cpu"], "risk_level": ["high"], "peak_yhat": [85.0],
        "peak_ds": [pd.Timestamp("2026-02-01")], "breach_ds": [pd.Timestamp("2026-01-20")],
        "days_to_breach": pd.array([14], dtype="Int64"), "breach_probability": [0.7],
        "written_at": [pd.Timestamp("2026-01-05 03:00", tz="UTC")], "urgent": [True],
    }))
    lake.write_table("clusters", pd.DataFrame({"server_id": ["srv-001"], "cluster_id": np.array([2], dtype="int32"),
                                               "cluster_label": ["steady"]}))


class FixedSession:
    """A stand-in boto3 session that hands out one pre-built (e.g. botocore-stubbed) client."""

    region_name = "us-east-1"

    def __init__(self, client: object) -> None:
        self._client = client

    def client(self, service: str, **_kwargs: object) -> object:
        return self._client
