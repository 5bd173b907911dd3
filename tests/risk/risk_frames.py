"""Tiny hand-built frames for the risk tests: histories, forecasts and inventories with known answers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

LAST_DAY = pd.Timestamp("2026-06-30")
FIRST_FORECAST_DAY = LAST_DAY + pd.Timedelta(days=1)


def make_history(servers: Sequence[str], *, days: int = 120, level: float = 30.0, metrics: Sequence[str] = (
        "cpu", "memory"), end: pd.Timestamp = LAST_DAY, values: np.ndarray | None = None) -> pd.DataFrame:
    """Processed-metrics rows: a flat ``level`` (or ``values``) for every server and metric."""
    ds = pd.date_range(end=end, periods=days, freq="D")
    frames = []
    for server in servers:
        for metric in metrics:
            v = np.full(days, level, dtype=float) if values is None else np.asarray(values, dtype=float)
            frames.append(pd.DataFrame({"server_id": server, "ds": ds, "metric": metric, "value": v,
                                        "value_raw": v, "is_imputed": False, "is_outlier": False,
                                        "is_anomaly": False, "anomaly_score": 0.0}))
    return pd.concat(frames, ignore_index=True)


def make_forecast(server: str, metric: str, yhat: Sequence[float] | np.ndarray, *, spread: float = 5.0,
                  start: pd.Timestamp = FIRST_FORECAST_DAY) -> pd.DataFrame:
    """Forecast rows from ``start``: the given medians with a symmetric interval of +- ``spread``."""
    y = np.asarray(yhat, dtype=float)
    return pd.DataFrame({"server_id": server, "metric": metric,
                         "ds": pd.date_range(start, periods=len(y), freq="D"), "model": "test", "yhat": y,
                         "yhat_lower": np.clip(y - spread, 0, 100), "yhat_upper": np.clip(y + spread, 0, 100)})


def make_inventory(rows: Sequence[dict]) -> pd.DataFrame:
    """Inventory rows; unspecified fields get plain defaults (NYC1, prod, virtual, 8 cores, 32 GB)."""
    defaults = {"hostname": "", "application": "app", "business_unit": "IT", "environment": "prod",
                "datacenter": "NYC1", "server_type": "virtual", "cpu_cores": 8, "memory_gb": 32,
                "monthly_cost_usd": 400.0}
    frame = pd.DataFrame([{**defaults, **row} for row in rows])
    frame["hostname"] = frame["server_id"]
    return frame[["server_id", "hostname", "application", "business_unit", "environment", "datacenter",
                  "server_type", "cpu_cores", "memory_gb", "monthly_cost_usd"]]
