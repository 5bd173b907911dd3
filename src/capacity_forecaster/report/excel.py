"""The Excel workbook (openpyxl): Summary, At-risk, Recommendations, What-if, Clusters, Forecast data, Forecast vs
actual, Assumptions."""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.formatting.rule import FormulaRule
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.table import Table, TableStyleInfo

from capacity_forecaster.report import style
from capacity_forecaster.report.accuracy_history import BUCKET_HEADERS, RUN_HEADERS, AccuracyHistory
from capacity_forecaster.report.comparison import StoredScenario, change_text, stored_scenario
from capacity_forecaster.report.data import ReportData, not_available
from capacity_forecaster.report.lineage import lineage
from capacity_forecaster.report.summary import assumptions, kpis, level_counts, ranked_risks

log = logging.getLogger(__name__)

# A write-only worksheet (openpyxl does not export its class publicly).
Worksheet = Any

SHEETS = ("Summary", "At-risk servers", "All series", "Recommendations", "What-if", "Clusters", "Forecast data",
          "Forecast vs actual", "Sizing options", "Capacity by group", "Assumptions")
# Lake column -> header, in sheet order; "hostname"/"application" come from the inventory.
AT_RISK_COLUMNS = {
    "server_id": "Server", "hostname": "Hostname", "application": "Application", "environment": "Environment",
    "metric": "Metric", "risk_level": "Risk level", "status": "Status", "days_over_recent": "Recent days over",
    "breach_ds": "Breach date", "days_to_breach": "Days to breach",
    "breach_probability": "Breach probability", "peak_yhat": "Peak forecast (%)", "peak_ds": "Peak date",
    "threshold": "Threshold (%)", "action": "Recommended action", "reason": "Reason",
}
RECOMMENDATION_COLUMNS = {
    "server_id": "Server", "hostname": "Hostname", "application": "Application", "environment": "Environment",
    "finding": "Finding", "action": "Action", "needed_by": "Needed by", "target_server_id": "Target server",
    "cpu_cores": "Current cores", "recommended_cpu_cores": "Recommended cores",
    "memory_gb": "Current memory (GB)", "recommended_memory_gb": "Recommended memory (GB)",
    "current_monthly_cost": "Current cost / month (USD)", "projected_monthly_cost": "Projected cost / month (USD)",
    "monthly_savings": "Savings / month (USD)", "freed_cpu_cores": "Cores freed",
    "freed_memory_gb": "Memory freed (GB)", "rationale": "Rationale",
}
# Ranked sizing options per server (recommendation_options), and capacity remaining per group.
OPTION_COLUMNS = {
    "server_id": "Server", "hostname": "Hostname", "application": "Application", "finding": "Finding",
    "rank": "Option", "option": "Kind", "cpu_cores": "Cores", "memory_gb": "Memory (GB)",
    "projected_peak_cpu": "Projected peak CPU (%)", "projected_peak_memory": "Projected peak memory (%)",
    "monthly_cost": "Cost / month (USD)", "monthly_cost_difference": "Cost difference / month (USD)",
    "performance_risk": "Performance risk", "freed_cpu_cores": "Cores freed", "freed_memory_gb": "Memory freed (GB)",
}
CAPACITY_COLUMNS = {
    "group_by": "Grouped by", "group": "Group", "servers": "Servers", "servers_at_risk": "Servers at risk",
    "earliest_breach_ds": "Time remaining: earliest breach", "days_remaining": "Days remaining",
    "earliest_breach": "First to breach", "cpu_cores": "Cores", "free_cpu_cores": "Free cores at peak",
    "memory_gb": "Memory (GB)", "free_memory_gb": "Free GB at peak", "reclaimable_cpu_cores": "Reclaimable cores",
    "reclaimable_memory_gb": "Reclaimable GB",
}
# Base vs the stored what-if scenario, one row per series; savings are the server's (repeated per metric).
WHATIF_COLUMNS = {
    "server_id": "Server", "hostname": "Hostname", "application": "Application", "metric": "Metric",
    "change": "Change", "base_risk_level": "Base risk", "scenario_risk_level": "Scenario risk",
    "base_breach_ds": "Base breach date", "scenario_breach_ds": "Scenario breach date",
    "base_days_to_breach": "Base days to breach", "scenario_days_to_breach": "Scenario days to breach",
    "base_breach_probability": "Base breach probability", "scenario_breach_probability": "Scenario breach probability",
    "base_action": "Base action", "scenario_action": "Scenario action",
    "base_monthly_savings": "Server's base savings / month (USD)",
    "scenario_monthly_savings": "Server's scenario savings / month (USD)",
}
CLUSTER_COLUMNS = {
    "server_id": "Server", "hostname": "Hostname", "application": "Application", "environment": "Environment",
    "cluster_id": "Cluster id", "cluster_label": "Cluster",
}
FORECAST_COLUMNS = {
    "server_id": "Server", "metric": "Metric", "ds": "Date", "model": "Model", "yhat": "Forecast (%)",
    "yhat_lower": "Lower bound (%)", "yhat_upper": "Upper bound (%)",
}
WEEKLY_FORECAST_COLUMNS = {
    "server_id": "Server", "metric": "Metric", "week": "Week starting", "model": "Model",
    "yhat_mean": "Mean forecast (%)", "yhat_peak": "Peak forecast (%)", "upper_peak": "Peak upper bound (%)",
    "days_above": "Days forecast above threshold", "days": "Days in week",
}
EXCEL_MAX_ROWS = 1_048_575  # Excel's sheet limit minus the header row
_HEADER_FILL = PatternFill("solid", fgColor=style.NAVY.lstrip("#"))
_HEADER_FONT = Font(bold=True, color="FFFFFF")
_LEVEL_FILLS = {"critical": "F8D7DA", "high": "FDE2C8", "medium": "FFF3C4", "low": "E3F1E4"}
_MONEY = '"$"#,##0;[Red]-"$"#,##0'
# Number formats of the numeric Summary KPIs (the others are text, e.g. the data period).
_KPI_FORMATS = {
    "servers": "#,##0", "already_breaching": "#,##0", "at_risk": "#,##0", "critical": "#,##0",
    "earliest_breach": '0" days"', "fleet_cost": _MONEY, "net_savings": _MONEY, "annual_savings": _MONEY,
    "accuracy": "0.00", "horizon": '0" days"',
}


def _cell(value: Any) -> Any:
    """A value openpyxl can store: dates as dates, NaN/NaT as empty, numpy scalars as Python."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _styled(ws: Worksheet, value: Any, *, header: bool = False, fmt: str | None = None,
            fill: str | None = None, font: Font | None = None) -> WriteOnlyCell:
    cell = WriteOnlyCell(ws, _cell(value))
    if header:
        cell.fill, cell.font = _HEADER_FILL, _HEADER_FONT
        cell.alignment = Alignment(vertical="center", wrap_text=True)
    if fmt:
        cell.number_format = fmt
    if fill:
        cell.fill = PatternFill("solid", fgColor=fill)
    if font is not None:
        cell.font = font
    return cell


def _write_frame(ws: Worksheet, frame: pd.DataFrame, columns: dict[str, str], name: str,
                 formats: dict[str, str] | None = None, widths: dict[str, int] | None = None) -> list[str]:
    """Write ``frame`` as an Excel table with friendly headers (write-only: streams the rows).

    Returns:
        The lake columns written, in sheet order.
    """
    present = [c for c in columns if c in frame.columns]
    formats, widths = formats or {}, widths or {}
    for index, column in enumerate(present, start=1):
        header = columns[column]
        ws.column_dimensions[get_column_letter(index)].width = widths.get(column, max(11, min(len(header) + 3, 28)))
    ws.freeze_panes = "B2"
    ws.append([_styled(ws, columns[c], header=True) for c in present])
    styled = [(i, formats[c]) for i, c in enumerate(present) if c in formats]
    for row in frame[present].itertuples(index=False, name=None):
        values = [_cell(v) for v in row]
        for i, fmt in styled:
            values[i] = _styled(ws, values[i], fmt=fmt)
        ws.append(values)
    if len(frame):
        table = Table(displayName=name, ref=f"A1:{get_column_letter(len(present))}{len(frame) + 1}")
        table.tableStyleInfo = TableStyleInfo(name="TableStyleLight9", showRowStripes=True)
        table._initialise_columns()
        for column, key in zip(table.tableColumns, present, strict=True):
            column.name = columns[key]
        with warnings.catch_warnings():
            # openpyxl warns that write-only tables need their columns set by hand, which is done above.
            warnings.simplefilter("ignore", UserWarning)
            ws.add_table(table)
    return present


def _unavailable(ws: Worksheet, table: str) -> None:
    ws.column_dimensions["A"].width = 60
    ws.append([_styled(ws, not_available(table), font=Font(italic=True, color="6B7280"))])


def _scenario_summary(ws: Worksheet, scenario: StoredScenario | None) -> None:
    ws.append([])
    ws.append([_styled(ws, h, header=True) for h in ("What-if scenario", "Base", "Scenario")])
    if scenario is None:
        ws.append([_styled(ws, not_available("risk_comparison"), font=Font(italic=True, color="6B7280"))])
        return
    ws.append(["Scenario", "", scenario.name])
    right = Alignment(horizontal="right")
    for total in scenario.totals:
        money_total = total.measure.startswith("Net savings")
        cells = []
        for value, text in ((total.base, total.base_text), (total.scenario, total.scenario_text)):
            cell = _styled(ws, value if money_total else text, fmt=_MONEY if money_total else None)
            cell.alignment = right
            cells.append(cell)
        ws.append([total.measure, *cells])
    ws.append(["Series changed", "", change_text(scenario.changes)])


def _summary_sheet(ws: Worksheet, data: ReportData, ranked: pd.DataFrame) -> None:
    for letter, width in (("A", 34), ("B", 26), ("C", 62)):
        ws.column_dimensions[letter].width = width
    ws.append([_styled(ws, data.settings.report.title, font=Font(bold=True, size=16, color=style.NAVY.lstrip("#")))])
    runs = lineage(data)
    ws.append([_styled(ws, f"Lake {data.lake_uri}; generated {data.generated:%Y-%m-%d %H:%M} UTC; {runs.footer()}",
                       font=Font(color="6B7280"))])
    for warning in runs.warnings():
        ws.append([_styled(ws, warning, font=Font(bold=True, color="B91C1C"))])
    ws.append([])
    ws.append([_styled(ws, h, header=True) for h in ("Indicator", "Value", "Note")])
    right = Alignment(horizontal="right")
    for kpi in kpis(data, ranked):
        # A number stays a number (sortable, usable in formulas) with its format; text only where none exists.
        fmt = _KPI_FORMATS.get(kpi.key)
        numeric = fmt is not None and kpi.value is not None and not (kpi.key == "earliest_breach" and kpi.text == "now")
        value = _styled(ws, kpi.value if numeric else kpi.text, fmt=fmt if numeric else None)
        value.alignment = right
        note = kpi.note if not numeric or kpi.key != "earliest_breach" else f"{kpi.text}; {kpi.note}"
        ws.append([kpi.label, value, note])
    if not ranked.empty:
        ws.append([])
        ws.append([_styled(ws, h, header=True) for h in ("Servers by worst risk level", "Servers", "")])
        for level, count in level_counts(ranked).items():
            ws.append([_styled(ws, level.capitalize(), fill=_LEVEL_FILLS[level]), count])
    recs = data.table("recommendations")
    if recs is not None and len(recs):
        ws.append([])
        ws.append([_styled(ws, h, header=True) for h in ("Savings by action", "Servers", "Savings / month (USD)")])
        grouped = recs.groupby("action").agg(n=("server_id", "size"), s=("monthly_savings", "sum"))
        for action, row in grouped.sort_values("s", ascending=False).iterrows():
            ws.append([str(action).capitalize(), int(row["n"]), _styled(ws, float(row["s"]), fmt=_MONEY)])
    _scenario_summary(ws, stored_scenario(data))


def _level_formatting(ws: Worksheet, rows: int, columns: int, level_col: int) -> None:
    """Colour each row by its risk level (a formula rule per level, so filtering and sorting keep it)."""
    letter = get_column_letter(level_col)
    ref = f"A2:{get_column_letter(columns)}{rows + 1}"
    for level, colour in _LEVEL_FILLS.items():
        fill = PatternFill("solid", fgColor=colour, bgColor=colour)
        font = Font(bold=level in ("critical", "high"))
        ws.conditional_formatting.add(ref, FormulaRule(formula=[f'${letter}2="{level}"'], fill=fill, font=font))


def _names(data: ReportData, frame: pd.DataFrame, extra: tuple[str, ...] = ()) -> pd.DataFrame:
    inventory = data.table("inventory")
    wanted = [c for c in ("hostname", "application", "environment", *extra) if c not in frame.columns]
    if inventory is None or not wanted:
        return frame
    return frame.merge(inventory[["server_id", *wanted]], on="server_id", how="left")


def weekly_forecasts(forecasts: pd.DataFrame, data: ReportData) -> pd.DataFrame:
    """The forecasts summarised per series and week (Monday start).

    Returns:
        server_id, metric, week, model, yhat_mean, yhat_peak, upper_peak, days_above (days whose
        forecast exceeds the metric's breach threshold), days; sorted by series and week.
    """
    threshold = forecasts["metric"].map({m: data.settings.risk.threshold_for(str(m))
                                         for m in forecasts["metric"].unique()})
    frame = forecasts.assign(week=forecasts["ds"].dt.to_period("W-SUN").dt.start_time,
                             above=(forecasts["yhat"] > threshold).astype(int))
    out = frame.groupby(["server_id", "metric", "week"], sort=True).agg(
        model=("model", "first"), yhat_mean=("yhat", "mean"), yhat_peak=("yhat", "max"),
        upper_peak=("yhat_upper", "max"), days_above=("above", "sum"), days=("ds", "size"))
    return out.reset_index().round({"yhat_mean": 2, "yhat_peak": 2, "upper_peak": 2})


def forecast_sheet(data: ReportData) -> tuple[pd.DataFrame, dict[str, str]]:
    """Rows and headers of the Forecast data sheet: weekly (default) or daily (``report.forecast_sheet``).

    Daily rows that would not fit in one Excel sheet fall back to weekly, with a warning.
    """
    forecasts = data.table("forecasts")
    if forecasts is None:
        return pd.DataFrame(), {}
    if data.settings.report.forecast_sheet == "daily":
        if len(forecasts) <= EXCEL_MAX_ROWS:
            daily = forecasts.sort_values(["server_id", "metric", "ds"]).round(
                {"yhat": 2, "yhat_lower": 2, "yhat_upper": 2})
            return daily, FORECAST_COLUMNS
        log.warning("report: %d daily forecast rows exceed one Excel sheet (%d); writing weekly rows instead",
                    len(forecasts), EXCEL_MAX_ROWS)
    return weekly_forecasts(forecasts, data), WEEKLY_FORECAST_COLUMNS


def _accuracy_history_sheet(ws: Worksheet, history: AccuracyHistory | None) -> None:
    """Forecast vs actual over time: one row per forecast run, then the scored runs per horizon bucket."""
    if history is None:
        _unavailable(ws, "forecasts")
        return
    if history.scored.empty:
        ws.column_dimensions["A"].width = 60
        ws.append([_styled(ws, history.message or "No forecast run has actuals yet.",
                           font=Font(italic=True, color="6B7280"))])
        return
    scores = {"mae": "0.00", "bias": "+0.00;-0.00;0.00", "coverage": "0%"}
    # The run's time as a datetime cell (a Timestamp would be written as its date only).
    made = pd.Series(history.runs["made"].to_numpy("datetime64[us]").astype(object), index=history.runs.index,
                     dtype=object)
    _write_frame(ws, history.runs.assign(made=made), RUN_HEADERS, "ForecastVsActual",
                 {**scores, "made": "yyyy-mm-dd hh:mm", "origin": "yyyy-mm-dd"}, {"run_id": 16, "note": 60})
    ws.append([])
    ws.append([_styled(ws, h, header=True) for h in BUCKET_HEADERS.values()])
    formats = [scores.get(c) for c in BUCKET_HEADERS]
    for row in history.buckets[list(BUCKET_HEADERS)].itertuples(index=False, name=None):
        ws.append([_styled(ws, v, fmt=f) for v, f in zip(row, formats, strict=True)])


def build_workbook(data: ReportData) -> bytes:
    """The workbook as .xlsx bytes.

    Sheets (``SHEETS``): Summary (KPIs as numbers with number formats, servers by level, savings by action,
    base vs the stored what-if); At-risk servers (medium or worse, riskiest first, rows coloured by level);
    All series (every server_risk row, same order); Recommendations
    (every server, biggest saving first); What-if (every risk_comparison row, most affected first, rows
    coloured by scenario level); Clusters; Forecast data (weekly per series, or every daily row); Forecast vs
    actual (earlier forecast runs scored against the actuals since, per run and per horizon bucket);
    Sizing options (recommendation_options); Capacity by group (capacity_by_group); Assumptions. A sheet
    whose table is absent says which stage to run.
    """
    # Write-only mode streams rows to the file: ~5x faster than a normal workbook for the forecast sheet.
    workbook = Workbook(write_only=True)
    summary = workbook.create_sheet(SHEETS[0])
    ranked = ranked_risks(data)
    _summary_sheet(summary, data, ranked)

    # At-risk servers: medium or worse only (riskiest first); All series: every server_risk row.
    at_risk = ranked[ranked["level_code"] >= 1] if not ranked.empty else ranked
    for name, frame, table in ((SHEETS[1], at_risk, "AtRisk"), (SHEETS[2], ranked, "AllSeries")):
        ws = workbook.create_sheet(name)
        if ranked.empty:
            _unavailable(ws, "server_risk")
        elif frame.empty:
            ws.append(["No series at risk (medium or worse); every series is on the All series sheet."])
        else:
            shown = _write_frame(ws, frame, AT_RISK_COLUMNS, table,
                                 {"breach_probability": "0%", "peak_yhat": "0.0", "threshold": "0"},
                                 {"reason": 70, "application": 16, "hostname": 18})
            _level_formatting(ws, len(frame), len(shown), shown.index("risk_level") + 1)

    ws = workbook.create_sheet(SHEETS[3])
    recs = data.table("recommendations")
    if recs is None:
        _unavailable(ws, "recommendations")
    else:
        frame = _names(data, recs, ("cpu_cores", "memory_gb")).sort_values(
            ["monthly_savings", "server_id"], ascending=[False, True])
        _write_frame(ws, frame, RECOMMENDATION_COLUMNS, "Recommendations",
                     {c: _MONEY for c in ("current_monthly_cost", "projected_monthly_cost", "monthly_savings")},
                     {"rationale": 80, "hostname": 18})

    ws = workbook.create_sheet(SHEETS[4])
    scenario = stored_scenario(data)
    if scenario is None:
        _unavailable(ws, "risk_comparison")
    else:
        shown = _write_frame(ws, scenario.rows, WHATIF_COLUMNS, "WhatIf",
                             {**dict.fromkeys(("base_breach_probability", "scenario_breach_probability"), "0%"),
                              **dict.fromkeys(("base_monthly_savings", "scenario_monthly_savings"), _MONEY)},
                             {"hostname": 18, "application": 16})
        _level_formatting(ws, len(scenario.rows), len(shown), shown.index("scenario_risk_level") + 1)

    ws = workbook.create_sheet(SHEETS[5])
    clusters = data.table("clusters")
    if clusters is None:
        _unavailable(ws, "clusters")
    else:
        _write_frame(ws, _names(data, clusters).sort_values(["cluster_id", "server_id"]), CLUSTER_COLUMNS,
                     "Clusters", widths={"cluster_label": 30, "hostname": 18})

    ws = workbook.create_sheet(SHEETS[6])
    forecasts = data.table("forecasts")
    if forecasts is None:
        _unavailable(ws, "forecasts")
    else:
        frame, columns = forecast_sheet(data)
        _write_frame(ws, frame, columns, "Forecasts")

    _accuracy_history_sheet(workbook.create_sheet(SHEETS[7]), data.accuracy)

    ws = workbook.create_sheet(SHEETS[8])
    options = data.table("recommendation_options")
    if options is None:
        _unavailable(ws, "recommendation_options")
    else:
        _write_frame(ws, _names(data, options).sort_values(["server_id", "rank"]), OPTION_COLUMNS, "Options",
                     {"monthly_cost": _MONEY, "monthly_cost_difference": _MONEY,
                      "projected_peak_cpu": "0.0", "projected_peak_memory": "0.0"}, {"hostname": 18})

    ws = workbook.create_sheet(SHEETS[9])
    capacity = data.table("capacity_by_group")
    if capacity is None:
        _unavailable(ws, "capacity_by_group")
    else:
        _write_frame(ws, capacity, CAPACITY_COLUMNS, "CapacityByGroup", widths={"group": 20, "earliest_breach": 20})

    ws = workbook.create_sheet(SHEETS[10])
    _write_frame(ws, pd.DataFrame(assumptions(data), columns=["assumption", "value", "note"]),
                 {"assumption": "Assumption", "value": "Value", "note": "Note"}, "Assumptions",
                 widths={"assumption": 26, "value": 44, "note": 80})
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
