"""Tiny seeded frames for the ETL transform tests: noisy daily series with a weekly cycle."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster import schema

START = pd.Timestamp("2024-01-01")  # a Monday


def series_values(n_days: int, level: float, seed: int, noise: float = 1.0) -> np.ndarray:
    """A business-day level with 40 % less load at weekends, plus seeded noise growing with the load.

    ``noise`` is the standard deviation on business days; values are rounded to 3 decimals.
    """
    rng = np.random.default_rng(seed)
    weekday = (START.dayofweek + np.arange(n_days)) % 7
    base = np.where(weekday >= 5, 0.6 * level, level)
    return np.round(base + rng.normal(0.0, noise, n_days) * base / level, 3)


def raw_frame(
    servers: tuple[str, ...] = ("srv-a",),
    metrics: tuple[str, ...] = ("cpu",),
    n_days: int = 120,
    level: float = 40.0,
    seed: int = 0,
) -> pd.DataFrame:
    """Clean raw_metrics rows (server_id, ds, metric, value) for every server x metric x day."""
    parts = []
    for i, server in enumerate(servers):
        for j, metric in enumerate(metrics):
            parts.append(pd.DataFrame({
                schema.SERVER_ID: server,
                schema.DS: START + pd.to_timedelta(np.arange(n_days), unit="D"),
                schema.METRIC: metric,
                schema.VALUE: series_values(n_days, level + 5 * j, seed + 10 * i + j),
            }))
    return pd.concat(parts, ignore_index=True)


def inventory(servers: tuple[str, ...] = ("srv-a",)) -> pd.DataFrame:
    """An inventory frame with the contract columns for the given servers."""
    n = len(servers)
    return pd.DataFrame({
        "server_id": list(servers), "hostname": [s + ".bank" for s in servers], "application": ["app"] * n,
        "business_unit": ["bu"] * n, "environment": ["prod"] * n, "datacenter": ["dc1"] * n,
        "server_type": ["vm"] * n, "cpu_cores": [8] * n, "memory_gb": [32.0] * n,
        "monthly_cost_usd": [500.0] * n,
    })


def day(offset: int) -> pd.Timestamp:
    """The date ``offset`` days after START."""
    return START + pd.Timedelta(days=offset)


def row(frame: pd.DataFrame, server: str, metric: str, offset: int) -> pd.Series:
    """The single row of a metrics frame for (server, metric, START + offset)."""
    hit = frame[(frame[schema.SERVER_ID] == server) & (frame[schema.METRIC] == metric)
                & (frame[schema.DS] == day(offset))]
    assert len(hit) == 1, f"expected one row for {server} {metric} {day(offset).date()}, found {len(hit)}"
    return hit.iloc[0]
