"""What the reports read from the lake: the stage tables, metric and forecast aggregates through DuckDB, run
manifests."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.config import Settings
from capacity_forecaster.report.accuracy_history import AccuracyHistory, accuracy_history
from capacity_forecaster.report.forecast_rows import Forecasts, chunk_size, load_forecasts, read_series
from capacity_forecaster.schema import TABLES
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import list_runs
from capacity_forecaster.storage.sql import connect

log = logging.getLogger(__name__)

# Said in place of a section whose table is absent, where "not available: run ..." would not fit.
WHATIF_MISSING = "no what-if scenario: run capfc risk --growth PCT or --scenario FILE"
_MESSAGES = {"risk_comparison": WHATIF_MISSING}
# What a reader sees for each table (never the lake's snake_case name).
TABLE_TITLES = {
    "inventory": "Server inventory", "metrics": "Utilisation history", "forecasts": "Forecasts",
    "backtests": "Forecast accuracy", "backtest_forecasts": "Backtest forecasts", "server_risk": "Breach risk",
    "clusters": "Workload clusters", "recommendations": "Recommendations", "risk_comparison": "What-if scenario",
    "risk_scenarios": "What-if scenarios", "recommendation_options": "Sizing options",
    "capacity_by_group": "Capacity by group",
}
# Read whole into memory, but forecasts: their daily rows grow with the fleet (``ReportData.forecasts``).
SMALL_TABLES = ("inventory", "server_risk", "clusters", "recommendations", "backtests", "forecasts", "risk_comparison")
# Read when present, never reported as missing (older lakes and runs without a what-if lack them).
OPTIONAL_TABLES = ("risk_scenarios", "recommendation_options", "capacity_by_group", "scenario_risk")
# The risk stage writes risk_comparison on every run, empty without a what-if: empty counts as absent.
_ABSENT_WHEN_EMPTY = frozenset({"risk_comparison"})
HISTORY_COLUMNS = ("server_id", "ds", "metric", "value", "is_imputed", "is_anomaly", "is_saturated")
BACKTEST_COLUMNS = ("server_id", "metric", "model", "cutoff", "ds", "y", "yhat", "yhat_lower", "yhat_upper")
# Weeks with fewer observed days are left out of the heatmap (partial first/last weeks, outages).
HEATMAP_MIN_DAYS = 4


def table_title(table: str) -> str:
    """A table's name as a reader sees it (``Breach risk`` for ``server_risk``)."""
    return TABLE_TITLES.get(table, table.replace("_", " ").capitalize())


def not_available(table: str) -> str:
    """The message a report section shows in place of a missing table."""
    if table in _MESSAGES:
        return _MESSAGES[table]
    spec = TABLES.get(table)
    return f"not available: run {spec.producer if spec else 'the stage that writes ' + table}"


@dataclass(frozen=True)
class ReportData:
    """Everything a report renders, read from the lake (forecast rows on demand); absent tables are None.

    Attributes:
        lake_uri: where the data came from.
        settings: the effective settings (thresholds and assumptions).
        generated: when the data was read (UTC).
        tables: table name -> frame for the stage tables in ``SMALL_TABLES`` that exist, but forecasts (an
            empty ``risk_comparison``, written by a risk run without a what-if, counts as absent).
        forecasts: the forecasts' per-series summary, their daily rows read on demand (None without them).
        weekly: server_id, week, value: weekly mean of the heatmap metric (None without metrics, or when
            ``load_report_data`` was not asked for it).
        peaks: server_id, week, value, days: weekly max of the heatmap metric's daily P95 (what the
            heatmap shows; None without metrics).
        profiles: server_id, cpu_mean, cpu_p99 for the cluster map (``profile_features``; None without metrics).
        period: first and last observed day of the processed metrics.
        runs: run manifests (oldest first).
        versions: table name -> the version read (``Lake.table_info``), to match tables with the runs
            that wrote them (``lineage.lineage``).
        accuracy: the current and up to ``report.accuracy_runs`` earlier forecast runs scored against
            the actuals observed since (``accuracy_history``); None without forecasts, or when
            ``load_report_data`` was not asked for it (the dashboard).
        coverage: (days with under ``ingest.min_coverage`` of their expected samples, days) over the raw
            daily rows (server x metric x day); None without ``raw_metrics`` or its ``low_coverage`` column.
    """

    lake_uri: str
    settings: Settings
    generated: dt.datetime
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    forecasts: Forecasts | None = None
    weekly: pd.DataFrame | None = None
    peaks: pd.DataFrame | None = None
    profiles: pd.DataFrame | None = None
    period: tuple[dt.date, dt.date] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    accuracy: AccuracyHistory | None = None
    coverage: tuple[int, int] | None = None

    def table(self, name: str) -> pd.DataFrame | None:
        """A stage table, or None when the lake does not have it."""
        return self.tables.get(name)

    @property
    def missing(self) -> dict[str, str]:
        """Table name -> "not available: run ..." for every table the reports would use."""
        absent = {n: not_available(n) for n in SMALL_TABLES
                  if n not in self.tables and not (n == "forecasts" and self.forecasts is not None)}
        if self.period is None:
            absent["metrics"] = not_available("metrics")
        return absent


def shown_inventory(inventory: pd.DataFrame) -> pd.DataFrame:
    """The inventory as reports show it: no hostname where the lake's is the server id (ingest fills it so for an
    inventory without hostnames; a Hostname column repeating the Server column tells a reader nothing)."""
    if "hostname" not in inventory.columns:
        return inventory
    same = inventory["hostname"].astype("string") == inventory["server_id"].astype("string")
    keep = ~same.fillna(False).to_numpy(dtype=bool)
    return inventory.assign(hostname=inventory["hostname"].astype(object).where(keep, None))


def server_names(data: ReportData) -> dict[str, str]:
    """server_id -> the name charts label a server with: its hostname, or its id when the inventory has
    none (a hostname two servers share gets the id added, so every label is unique)."""
    inventory = data.table("inventory")
    if inventory is None or "hostname" not in inventory.columns:
        return {}
    hosts = inventory.dropna(subset=["hostname"]).astype({"hostname": str})
    hosts = hosts[hosts["hostname"].str.strip() != ""]
    # A hostname that is the id in another case (a CMDB's "AMS-DB-01.BANK.LOCAL" for "AMS-DB-01.bank.local") says
    # nothing more: the charts keep the spelling every other output uses (helper-46).
    hosts = hosts[hosts["hostname"].str.casefold() != hosts["server_id"].astype(str).str.casefold()]
    shared = hosts["hostname"].duplicated(keep=False)
    labels = hosts["hostname"].where(~shared, hosts["hostname"] + " (" + hosts["server_id"].astype(str) + ")")
    return dict(zip(hosts["server_id"].astype(str), labels, strict=True))


def scenario_names(data: ReportData) -> list[str]:
    """The stored what-if scenarios' names, the most recently stored first (empty without one)."""
    return ordered_scenarios(data.table("risk_comparison"), data.table("risk_scenarios"))


def stored_scenario_names(lake: Lake) -> list[str]:
    """``scenario_names`` read straight from the lake (the two small columns, not the report data)."""
    info = lake.table_info("risk_comparison")
    if info is None or info.rows == 0:
        return []
    if "scenario" not in info.schema.names:  # as ordered_scenarios: a lake from before names
        return ["what-if"]
    comparison = lake.read_table("risk_comparison", columns=["scenario"])
    index = lake.read_table("risk_scenarios") if lake.has_table("risk_scenarios") else None
    return ordered_scenarios(comparison, index)


def ordered_scenarios(comparison: pd.DataFrame | None, index: pd.DataFrame | None) -> list[str]:
    """What-if names in ``risk_comparison``, most recently created (per ``risk_scenarios``) first."""
    if comparison is None:
        return []
    if "scenario" not in comparison.columns:  # a lake written before scenarios had names
        return ["what-if"]
    stored = list(dict.fromkeys(comparison["scenario"].astype(str)))
    if index is not None and "created" in index.columns:
        # Most recent first; two stored within one second (lakes before microsecond stamps) by their order
        # in the index, where a scenario stored again is appended last.
        ranked = index.assign(_position=np.arange(len(index)))
        order = list(ranked.sort_values(["created", "_position"], ascending=False, kind="stable")["scenario"]
                     .astype(str))
        stored = [n for n in order if n in stored] + [n for n in stored if n not in order]
    return stored


def scenario_info(data: ReportData, name: str | None = None) -> dict[str, Any]:
    """The ``risk_scenarios`` row of a stored what-if (default: the most recent), plus ``finished``: when its
    risk run ended (from that run's manifest). Empty without a stored scenario."""
    names = scenario_names(data)
    if not names:
        return {}
    name = names[0] if name is None else name
    index = data.table("risk_scenarios")
    row: dict[str, Any] = {"scenario": name}
    if index is not None:
        hits = index[index["scenario"].astype(str) == name].to_dict("records")
        row.update({str(k): v for k, v in (hits[-1] if hits else {}).items()})
    runs = [r for r in data.runs if r.get("stage") == "risk" and r.get("run_id") == row.get("risk_run_id")]
    row["finished"] = runs[-1].get("finished", "") if runs else ""
    return row


def whatif_name(data: ReportData, name: str | None = None) -> str | None:
    """A stored what-if's name and what it is (``growth-20pct: growth +20 %/year``); None without one."""
    info = scenario_info(data, name)
    if not info:
        return None
    label = info.get("label")
    return f"{info['scenario']}: {label}" if isinstance(label, str) and label else str(info["scenario"])


def backtest_windows(backtests: pd.DataFrame) -> int:
    """How many backtest windows a series has (the most of any series and model): windows, not distinct cutoff
    dates, which series ending on different days multiply."""
    if backtests.empty:
        return 0
    if "window" in backtests.columns:
        return int(backtests["window"].nunique())
    keys = [c for c in ("server_id", "metric", "model") if c in backtests.columns]
    return int(backtests.groupby(keys)["cutoff"].nunique().max()) if keys else int(backtests["cutoff"].nunique())


def _dates(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    out = frame.copy()
    for column in columns:
        if column in out.columns:
            out[column] = pd.to_datetime(out[column])
    return out


def _rows(con: Any, sql: str, params: list[Any]) -> pd.DataFrame:
    """A query's result in pandas through Arrow, which keeps one Python string per distinct value (``df()``
    makes one per row: ~60 MB per million rows of server ids)."""
    return con.sql(sql, params=params).to_arrow_table().to_pandas()


def weekly_utilisation(con: Any, metric: str) -> pd.DataFrame:
    """Weekly mean of one metric per server, computed by DuckDB over the processed metrics.

    Returns:
        server_id, week (Monday, datetime64), value (mean of the week's daily P95, percent); weeks with
        fewer than 4 observed days (the partial first and last weeks, outages) are left out.
    """
    frame = _rows(
        con, "SELECT server_id, CAST(date_trunc('week', ds) AS DATE) AS week, avg(value) AS value "
        "FROM metrics WHERE metric = ? AND value IS NOT NULL GROUP BY ALL "
        "HAVING count(*) >= 4 ORDER BY server_id, week",
        [metric],
    )
    return _dates(frame, ("week",))


def weekly_peaks(con: Any, metric: str) -> pd.DataFrame:
    """Weekly maximum of one metric's daily P95 per server (DuckDB), so month-end peaks stay visible.

    Returns:
        server_id, week (Monday, datetime64), value (highest daily P95 of the week, percent), days
        (observed days); weeks with fewer than ``HEATMAP_MIN_DAYS`` observed days are left out, but for the
        data's last week (in part: the days that make a server "already breaching" now; helper-52 found them
        off the heatmap).
    """
    frame = _rows(
        con, "SELECT server_id, CAST(date_trunc('week', ds) AS DATE) AS week, max(value) AS value, count(*) AS days "
        "FROM metrics WHERE metric = ? AND value IS NOT NULL GROUP BY ALL "
        "HAVING count(*) >= ? OR week = (SELECT CAST(date_trunc('week', max(ds)) AS DATE) FROM metrics "
        "WHERE metric = ? AND value IS NOT NULL) ORDER BY server_id, week",
        [metric, HEATMAP_MIN_DAYS, metric],
    )
    return _dates(frame, ("week",))


def profile_features(con: Any, chunk_servers: int | None = None) -> pd.DataFrame:
    """CPU level and peak per server for the cluster map (DuckDB over the processed metrics).

    The clusters themselves come from the risk stage's richer workload profile (``risk.profiles``); the map
    places each server by the two numbers a planner reads (``summary.cluster_map``).

    Args:
        con: a DuckDB connection with the lake's views.
        chunk_servers: servers aggregated per query (the quantile holds every value of the servers a query
            reads); None: all at once.

    Returns:
        server_id, cpu_mean (mean of the daily P95), cpu_p99 (the level the busiest 1 % of days reach);
        anomalous days left out. A server without cpu values is absent.
    """
    ids = [row[0] for row in con.execute(
        "SELECT DISTINCT server_id FROM metrics WHERE server_id IS NOT NULL AND metric = 'cpu' "
        "ORDER BY server_id").fetchall()]
    size = chunk_servers or max(len(ids), 1)
    query = ("SELECT server_id, avg(value) AS cpu_mean, quantile_cont(value, 0.99) AS cpu_p99 FROM metrics "
             "WHERE server_id BETWEEN ? AND ? AND metric = 'cpu' AND value IS NOT NULL "
             "AND NOT coalesce(is_anomaly, false) GROUP BY ALL ORDER BY server_id")
    chunks = [con.execute(query, [ids[i], ids[min(i + size, len(ids)) - 1]]).df() for i in range(0, len(ids), size)]
    if not chunks:
        return pd.DataFrame(columns=["server_id", "cpu_mean", "cpu_p99"])
    out = pd.concat(chunks, ignore_index=True)
    return out.astype({"cpu_mean": float, "cpu_p99": float})


def _period(con: Any) -> tuple[dt.date, dt.date] | None:
    ((first, last),) = con.execute("SELECT min(ds), max(ds) FROM metrics").fetchall()
    if first is None or last is None:
        return None
    return pd.Timestamp(first).date(), pd.Timestamp(last).date()


def _coverage(lake: Lake, con: Any) -> tuple[int, int] | None:
    """(low-coverage days, days) of ``raw_metrics``; None without the table or its ``low_coverage`` column."""
    info = lake.table_info("raw_metrics")
    if info is None or "low_coverage" not in info.schema.names:
        return None
    ((low, total),) = con.execute(
        "SELECT count(*) FILTER (WHERE low_coverage), count(*) FROM raw_metrics").fetchall()
    return int(low or 0), int(total or 0)


def applied_thresholds(settings: Settings, server_risk: pd.DataFrame | None) -> Settings:
    """``settings`` with the breach thresholds the stored risk run applied (``server_risk.threshold``).

    ``capfc risk --threshold 70`` (or a config the report is not run with) stores its thresholds per row;
    the packs and the dashboard must say and use those, not the report's own configuration (helper-53: the
    Assumptions read 80 % and the Forecast data sheet counted days over 80 for a risk run at 70). The threshold
    most metrics share is the general one, the others are per-metric overrides; without the column, as given.
    """
    if server_risk is None or "threshold" not in server_risk.columns:
        return settings
    stored = pd.to_numeric(server_risk["threshold"], errors="coerce")
    per_metric = stored.groupby(server_risk["metric"].astype(str)).agg(
        lambda v: v.mode().iloc[0] if v.notna().any() else np.nan).dropna()
    if per_metric.empty or all(settings.risk.threshold_for(str(m)) == v for m, v in per_metric.items()):
        return settings
    if settings.risk.threshold in set(per_metric.to_numpy(dtype=float)):
        general = float(settings.risk.threshold)  # the configured one, where the run applied it to some metric
    else:
        shared = per_metric.value_counts().sort_index()
        general = float(shared.index[int(np.argmax(shared.to_numpy()))])  # ties: the lower threshold
    # Metrics the risk run did not assess keep their configured overrides.
    overrides: dict[str, float] = {str(m): float(v) for m, v in settings.risk.metric_thresholds.items()
                                   if m not in per_metric.index}
    overrides.update({str(m): float(v) for m, v in per_metric.items() if float(v) != general})
    log.info("report: breach thresholds as the risk run applied them: %g %%%s", general,
             "".join(f", {m} {v:g} %" for m, v in sorted(overrides.items())))
    risk = settings.risk.model_copy(update={"threshold": general, "metric_thresholds": overrides})
    return settings.model_copy(update={"risk": risk})


def load_report_data(lake: Lake, settings: Settings, *, accuracy: bool = True, weekly: bool = True) -> ReportData:
    """Read the stage tables and metric aggregates the reports need; absent tables stay None.

    Args:
        lake: the lake to read.
        settings: effective settings (the heatmap metric, the assumptions); the breach thresholds are
            the stored risk run's (``applied_thresholds``).
        accuracy: score earlier forecast runs (``ReportData.accuracy``; the dashboard does not show it).
        weekly: the weekly means (``ReportData.weekly``; the dashboard shows the weekly peaks only).

    Returns:
        The ReportData.

    Raises:
        StorageError: a table exists but cannot be read.
    """
    tables, versions = {}, {}
    for name in (*SMALL_TABLES, *OPTIONAL_TABLES):
        info = lake.table_info(name)
        if info is not None:
            versions[name] = info.written_version  # what the run manifests name (a vacuum adds commits)
        if name == "forecasts" and info is not None:
            continue
        frame = lake.read_table(name) if info is not None else None
        if frame is not None and name == "inventory":
            frame = shown_inventory(frame)
        if frame is not None and not (frame.empty and name in _ABSENT_WHEN_EMPTY):
            tables[name] = frame
        elif name in SMALL_TABLES:
            log.info("report: table %s is absent (%s)", name, not_available(name))
    metrics = lake.table_info("metrics")
    if metrics is not None:  # (read in parts below; its version says which ETL run the forecasts should be on)
        versions["metrics"] = metrics.written_version
    settings = applied_thresholds(settings, tables.get("server_risk"))
    means = peaks = profiles = period = coverage = None
    runs = list_runs(lake)
    size = chunk_size(settings.report.chunk_servers)
    con = connect(lake)
    try:
        forecasts = load_forecasts(lake, con, size)
        if lake.has_table("metrics"):
            period = _period(con)
            means = weekly_utilisation(con, settings.report.heatmap_metric) if weekly else None
            peaks = weekly_peaks(con, settings.report.heatmap_metric)
            profiles = profile_features(con, size)
        coverage = _coverage(lake, con)
    finally:
        con.close()
    scored = (accuracy_history(lake, settings.report.accuracy_runs, runs, size)
              if accuracy and forecasts is not None else None)
    return ReportData(
        lake_uri=lake.uri, settings=settings, generated=dt.datetime.now(dt.UTC), tables=tables,
        forecasts=forecasts, weekly=means, peaks=peaks, profiles=profiles, period=period, runs=runs,
        versions=versions, accuracy=scored, coverage=coverage,
    )


def load_history(lake: Lake, series: list[tuple[str, str]], since: dt.date | None) -> pd.DataFrame:
    """Daily history of a few series (the ones a chart shows).

    Args:
        lake: the lake.
        series: (server_id, metric) pairs.
        since: first day to read; None reads all.

    Returns:
        server_id, ds, metric, value, is_imputed, is_anomaly, is_saturated (false in a lake from before saturation
        was kept; empty when metrics are absent).
    """
    info = lake.table_info("metrics")
    columns = tuple(c for c in HISTORY_COLUMNS if info is None or c in info.schema.names or c != "is_saturated")
    frame = read_series(lake, "metrics", series, since, columns).reindex(columns=list(HISTORY_COLUMNS))
    for flag in ("is_imputed", "is_anomaly", "is_saturated"):
        frame[flag] = frame[flag].eq(True).to_numpy(dtype=bool)  # (missing: false)
    return frame.sort_values(["server_id", "metric", "ds"], kind="stable").reset_index(drop=True)


def load_backtest_forecasts(lake: Lake, series: list[tuple[str, str]], since: dt.date | None) -> pd.DataFrame:
    """The stored backtest forecasts of a few series (the ones a chart shows).

    Args:
        lake: the lake.
        series: (server_id, metric) pairs.
        since: first forecast day to read; None reads all.

    Returns:
        server_id, metric, model, cutoff, ds, y, yhat, yhat_lower, yhat_upper (cutoff and ds as
        datetime64); empty when the forecast stage has not written ``backtest_forecasts``.
    """
    frame = read_series(lake, "backtest_forecasts", series, since, BACKTEST_COLUMNS)
    return frame.sort_values(["server_id", "metric", "cutoff", "ds"], kind="stable").reset_index(drop=True)
