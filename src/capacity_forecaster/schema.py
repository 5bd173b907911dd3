"""Column names, lake table layout and the validators used at stage boundaries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import pandas as pd
import pyarrow as pa

from capacity_forecaster.errors import SchemaError

SERVER_ID = "server_id"
DS = "ds"
METRIC = "metric"
VALUE = "value"
SERIES_KEY = (SERVER_ID, METRIC)
METRICS = ("cpu", "memory", "disk", "network")

InventoryColumn = Literal[
    "server_id",
    "hostname",
    "application",
    "business_unit",
    "environment",
    "datacenter",
    "server_type",
    "cpu_cores",
    "memory_gb",
    "monthly_cost_usd",
]
INVENTORY_COLUMNS: tuple[str, ...] = get_args(InventoryColumn)
RAW_METRIC_COLUMNS = (SERVER_ID, DS, METRIC, VALUE)
PROCESSED_METRIC_COLUMNS = (
    SERVER_ID,
    DS,
    METRIC,
    VALUE,
    "value_raw",
    "is_imputed",
    "is_outlier",
    "is_anomaly",
    "anomaly_score",
    "is_saturated",
)
# Every processed column but is_saturated (added by issue 10) is required of a written metrics
# table; lakes and tables written before it stay readable, and readers take a missing
# is_saturated as False.
_METRICS_REQUIRED = tuple(c for c in PROCESSED_METRIC_COLUMNS if c != "is_saturated")
# Samples of days an ingest delivered in part, kept until a later ingest completes them (etl.partial_days):
# ts is the sample's UTC time (a run-length row's first sample in the day), weight the samples it stands for.
PARTIAL_DAY_COLUMNS = (SERVER_ID, METRIC, DS, "ts", VALUE, "weight")
# The ETL's day flags: UNUSUAL days were observed but are not the series' usual load (an event, an outlier);
# UNTRUSTED days are those plus the ones the ETL filled in (not observed at all).
UNUSUAL_FLAGS = ("is_anomaly", "is_outlier")
UNTRUSTED_FLAGS = (*UNUSUAL_FLAGS, "is_imputed")
# A quarantined row keeps its original fields as text (whatever could be read),
# where it came from (file:line, or the lake table) and why it was rejected.
QUARANTINE_COLUMNS = (SERVER_ID, DS, METRIC, VALUE, "source", "reason", "stage")
FORECAST_COLUMNS = (SERVER_ID, METRIC, DS, "model", "yhat", "yhat_lower", "yhat_upper")
BACKTEST_COLUMNS = (
    SERVER_ID,
    METRIC,
    "model",
    "cutoff",
    "mae",
    "rmse",
    "mape",
    "mase",
    "coverage",
    "selected",
)
# The published model's backtest path: what it forecast at every cutoff, the interval it would have
# had there (calibrated on the other backtest windows only) and what really happened (``y``).
BACKTEST_FORECAST_COLUMNS = (SERVER_ID, METRIC, "model", "cutoff", DS, "y", "yhat", "yhat_lower", "yhat_upper")
SERVER_RISK_COLUMNS = (
    SERVER_ID,
    METRIC,
    "risk_level",
    "peak_yhat",
    "peak_ds",
    "breach_ds",
    "days_to_breach",
    "breach_probability",
)
CLUSTER_COLUMNS = (SERVER_ID, "cluster_id", "cluster_label")
# How well breach probabilities computed at backtest cutoffs predicted what happened after them.
RISK_CALIBRATION_COLUMNS = (
    "probability",
    "bin",
    "bin_low",
    "bin_high",
    "windows",
    "breaches",
    "mean_probability",
    "observed_frequency",
    "brier",
)
RECOMMENDATION_COLUMNS = (
    SERVER_ID,
    "action",
    "target_server_id",
    "recommended_cpu_cores",
    "recommended_memory_gb",
    "current_monthly_cost",
    "projected_monthly_cost",
    "monthly_savings",
    "rationale",
)

# Named what-if scenarios sit beside the base risk tables, one block of rows per scenario name.
SCENARIO_INDEX_COLUMNS = ("scenario", "label", "growth_pct", "growth_ramp", "risk_run_id", "forecast_run_id")
# Ranked sizing options per server (Compute Optimizer style), and capacity remaining per group.
RECOMMENDATION_OPTION_COLUMNS = (
    SERVER_ID, "finding", "rank", "cpu_cores", "memory_gb", "projected_peak_cpu", "projected_peak_memory",
    "monthly_cost", "monthly_cost_difference", "performance_risk",
)
CAPACITY_GROUP_COLUMNS = (
    "group_by", "group", "servers", "earliest_breach_ds", "days_remaining", "cpu_cores", "free_cpu_cores",
    "memory_gb", "free_memory_gb", "reclaimable_cpu_cores", "reclaimable_memory_gb",
)


@dataclass(frozen=True)
class TableSpec:
    """Where a lake table lives and how it is laid out.

    Attributes:
        name: SQL view name (``capfc sql``) and the key used by the storage layer.
        path: folder below the lake root.
        partitioned: hive-partitioned by ``year=YYYY/month=MM`` derived from ``ds``.
        required: columns every written frame must have.
        producer: the command that writes it, named when a reader finds it missing.
    """

    name: str
    path: str
    partitioned: bool
    required: tuple[str, ...]
    producer: str = "the stage that writes it"


_WHATIF = "capfc risk --growth PCT or --scenario FILE"
TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec("inventory", "raw/inventory", False, INVENTORY_COLUMNS, "capfc generate or capfc ingest"),
        TableSpec("raw_metrics", "raw/metrics", True, RAW_METRIC_COLUMNS, "capfc generate or capfc ingest"),
        TableSpec("metrics", "processed/metrics", True, _METRICS_REQUIRED, "capfc etl"),
        TableSpec("features", "processed/features", True, (SERVER_ID, DS, METRIC), "capfc etl"),
        TableSpec("series_diagnostics", "processed/diagnostics", False, SERIES_KEY, "capfc etl"),
        TableSpec("quarantine", "quarantine", False, QUARANTINE_COLUMNS, "capfc ingest or capfc etl"),
        TableSpec("partial_days", "raw/partial_days", False, PARTIAL_DAY_COLUMNS, "capfc ingest"),
        TableSpec("forecasts", "forecasts", True, FORECAST_COLUMNS, "capfc forecast"),
        TableSpec("backtests", "backtests", False, BACKTEST_COLUMNS, "capfc forecast"),
        TableSpec("backtest_forecasts", "backtest_forecasts", False, BACKTEST_FORECAST_COLUMNS, "capfc forecast"),
        TableSpec("forecast_failures", "forecast_failures", False, SERIES_KEY, "capfc forecast"),
        TableSpec("forecast_triage", "forecast_triage", False, SERIES_KEY, "capfc forecast"),
        TableSpec("server_risk", "risk/servers", False, SERVER_RISK_COLUMNS, "capfc risk"),
        TableSpec("clusters", "risk/clusters", False, CLUSTER_COLUMNS, "capfc risk"),
        TableSpec("recommendations", "risk/recommendations", False, RECOMMENDATION_COLUMNS, "capfc risk"),
        TableSpec("risk_comparison", "risk/whatif", False, ("scenario", *SERIES_KEY), "capfc risk"),
        TableSpec("scenario_risk", "risk/scenarios/servers", False, ("scenario", *SERVER_RISK_COLUMNS), _WHATIF),
        TableSpec("scenario_recommendations", "risk/scenarios/recommendations", False,
                  ("scenario", *RECOMMENDATION_COLUMNS), _WHATIF),
        TableSpec("risk_scenarios", "risk/scenarios/index", False, SCENARIO_INDEX_COLUMNS, _WHATIF),
        TableSpec("recommendation_options", "risk/options", False, RECOMMENDATION_OPTION_COLUMNS,
                  "capfc risk"),
        TableSpec("capacity_by_group", "risk/capacity", False, CAPACITY_GROUP_COLUMNS, "capfc risk"),
        TableSpec("risk_calibration", "risk/calibration", False, RISK_CALIBRATION_COLUMNS, "capfc risk"),
        TableSpec("truth_servers", "truth/servers", False, (SERVER_ID, "archetype"), "capfc generate"),
        TableSpec("truth_actual", "truth/actual", True, RAW_METRIC_COLUMNS, "capfc generate"),
        TableSpec("truth_future", "truth/future", True, RAW_METRIC_COLUMNS, "capfc generate"),
        TableSpec("truth_anomalies", "truth/anomalies", False, (SERVER_ID, DS, METRIC, "kind"), "capfc generate"),
    )
}

# Partition folders are year=YYYY/month=MM (zero-padded), typed explicitly as strings so that
# readers never see them as categoricals in surprising order and "01".."12" sort correctly.
PARTITION_SCHEMA = pa.schema([("year", pa.string()), ("month", pa.string())])


def table_spec(name: str) -> TableSpec:
    """Return the spec of a lake table, naming the valid tables on a typo."""
    try:
        return TABLES[name]
    except KeyError:
        valid = ", ".join(sorted(TABLES))
        raise SchemaError(f"unknown lake table '{name}'; valid tables: {valid}") from None


def flag(values: pd.Series) -> pd.Series:
    """A flag column (nullable boolean, or absent rows after a merge) as plain bool, missing as False."""
    return values.astype("boolean").fillna(False).astype(bool)


def flagged(frame: pd.DataFrame, flags: tuple[str, ...]) -> pd.Series:
    """Per row, whether any of ``flags`` that ``frame`` has is set (``UNUSUAL_FLAGS``, ``UNTRUSTED_FLAGS``)."""
    out = pd.Series(False, index=frame.index)
    for name in flags:
        if name in frame.columns:
            out |= flag(frame[name])
    return out


def require_columns(frame: pd.DataFrame | pa.Table, columns: tuple[str, ...] | list[str], where: str) -> None:
    """Raise SchemaError naming every missing column of ``frame``.

    Args:
        frame: the frame to check.
        columns: the columns that must be present.
        where: what the frame is (a table name or a file), used in the message.
    """
    present = frame.column_names if isinstance(frame, pa.Table) else list(frame.columns)
    missing = [c for c in columns if c not in present]
    if missing:
        have = ", ".join(map(str, present)) or "(none)"
        raise SchemaError(
            f"{where}: missing column(s) {', '.join(missing)}; found columns: {have}"
        )


def validate_table(name: str, frame: pd.DataFrame | pa.Table) -> None:
    """Check that ``frame`` has the contract columns of lake table ``name``."""
    require_columns(frame, table_spec(name).required, f"table '{name}'")
