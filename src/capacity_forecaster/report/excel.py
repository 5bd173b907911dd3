"""The Excel workbook (openpyxl): Summary, At-risk, Recommendations, What-if, Clusters, Forecast data, Forecast vs
actual, Assumptions."""

from __future__ import annotations

import io

import pandas as pd
from openpyxl.formatting.rule import FormulaRule
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from capacity_forecaster.report import style
from capacity_forecaster.report.accuracy_history import BUCKET_HEADERS, RUN_HEADERS, AccuracyHistory
from capacity_forecaster.report.comparison import (
    SIDES,
    StoredScenario,
    change_text,
    shown_levels,
    stored_scenario,
    whatif_note,
)
from capacity_forecaster.report.data import ReportData, not_available
from capacity_forecaster.report.forecast_sheet import (
    SHEET,
    forecast_layout,
    sheet_names,
    split_note,
    write_forecast_sheets,
)
from capacity_forecaster.report.lineage import lineage
from capacity_forecaster.report.risks import (
    level_counts,
    ordered_recommendations,
    report_risks,
    stale_levels,
    unlevelled_counts,
)
from capacity_forecaster.report.sheets import TextWorkbook, Worksheet, styled, unavailable, write_frame
from capacity_forecaster.report.summary import assumptions, data_age_text, data_period_text, fleet_text, kpis
from capacity_forecaster.report.text import NOT_PRICED, cents, label, savings_by_action
from capacity_forecaster.risk.levels import Status

SHEETS = ("Summary", "At-risk servers", "All series", "Recommendations", "What-if", "Clusters", SHEET,
          "Forecast vs actual", "Sizing options", "Capacity by group", "Assumptions")
# Lake column -> header, in sheet order; "hostname"/"application" come from the inventory.
AT_RISK_COLUMNS = {
    "server_id": "Server", "hostname": "Hostname", "application": "Application", "environment": "Environment",
    "metric": "Metric", "risk_level": "Risk level", "status": "Status", "days_over_recent": "Recent days over",
    "breach_ds": "Breach date (already breaching: last day over)", "days_to_breach": "Days to breach",
    "forecast_breach_ds": "Forecast breach date", "breach_probability": "Breach probability",
    "peak_yhat": "Peak forecast (%)", "peak_ds": "Peak date",
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
    "base_status": "Base status", "scenario_status": "Scenario status",
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
_LEVEL_FILLS = {"critical": "F8D7DA", "high": "FDE2C8", "medium": "FFF3C4", "low": "E3F1E4"}
_MONEY = '"$"#,##0;[Red]-"$"#,##0'
# Sizes as numbers with a fixed format: whole cores, GB to one decimal (an inventory's 7.970703125 GB reads 8.0).
_SIZES = {column: ("#,##0.0" if column.endswith("_gb") else "#,##0")
          for column in ("cpu_cores", "recommended_cpu_cores", "freed_cpu_cores", "free_cpu_cores",
                         "reclaimable_cpu_cores", "memory_gb", "recommended_memory_gb", "freed_memory_gb",
                         "free_memory_gb", "reclaimable_memory_gb")}
# Number formats of the numeric Summary KPIs (the others are text, e.g. the data period).
_KPI_FORMATS = {
    "servers": "#,##0", "already_breaching": "#,##0", "at_risk": "#,##0", "critical": "#,##0",
    "earliest_breach": '0" days"', "fleet_cost": _MONEY, "net_savings": _MONEY, "annual_savings": _MONEY,
    "accuracy": "0.00", "horizon": '0" days"',
}


def _scenario_summary(ws: Worksheet, scenario: StoredScenario | None) -> None:
    ws.append([])
    ws.append([styled(ws, h, header=True) for h in ("What-if scenario", "Base", "Scenario")])
    if scenario is None:
        ws.append([styled(ws, not_available("risk_comparison"), font=Font(italic=True, color="6B7280"))])
        return
    ws.append(["Scenario", "", scenario.name])
    ws.append(["Stored", "", whatif_note("workbook", "part")])
    right = Alignment(horizontal="right")
    for total in scenario.totals:
        # Counts and money stay numbers (sortable, usable in formulas); a date or "not priced" stays text.
        fmt = (_MONEY if total.measure.startswith("Net savings") else None
               if total.measure.startswith("Earliest") else "#,##0")
        cells = []
        for value, text in ((total.base, total.base_text), (total.scenario, total.scenario_text)):
            numeric = fmt is not None and value is not None
            cell = styled(ws, value if numeric else text, fmt=fmt if numeric else None)
            cell.alignment = right
            cells.append(cell)
        ws.append([total.measure, *cells])
    ws.append(["Series changed", "", change_text(scenario.changes)])


def _summary_sheet(ws: Worksheet, data: ReportData, ranked: pd.DataFrame, forecast_sheets: list[str]) -> None:
    for letter, width in (("A", 34), ("B", 26), ("C", 62)):
        ws.column_dimensions[letter].width = width
    ws.append([styled(ws, data.settings.report.title, font=Font(bold=True, size=16, color=style.NAVY.lstrip("#")))])
    runs = lineage(data)
    ws.append([styled(ws, f"{fleet_text(data)}; data {data_period_text(data)}; lake {data.lake_uri}; generated "
                          f"{data.generated:%Y-%m-%d %H:%M} UTC; {runs.footer()}", font=Font(color="6B7280"))])
    # Old data: every date in the workbook is as of its last day, as the packs say (helper-69).
    age = data_age_text(data)
    for warning in [*runs.warnings(), *([age] if age else [])]:
        ws.append([styled(ws, warning, font=Font(bold=True, color="B91C1C"))])
    if len(forecast_sheets) > 1:
        ws.append([styled(ws, split_note(forecast_sheets), font=Font(bold=True, color="B91C1C"))])
    ws.append([])
    ws.append([styled(ws, h, header=True) for h in ("Indicator", "Value", "Note")])
    right = Alignment(horizontal="right")
    for kpi in kpis(data, ranked):
        # A number stays a number (sortable, usable in formulas) with its format; text only where none exists.
        fmt = _KPI_FORMATS.get(kpi.key)
        numeric = fmt is not None and kpi.value is not None and not (kpi.key == "earliest_breach" and kpi.text == "now")
        value = styled(ws, kpi.value if numeric else kpi.text, fmt=fmt if numeric else None)
        value.alignment = right
        note = kpi.note if not numeric or kpi.key != "earliest_breach" else f"{kpi.text}; {kpi.note}"
        ws.append([kpi.label, value, note])
    if not ranked.empty:
        ws.append([])
        ws.append([styled(ws, h, header=True) for h in ("Servers by worst risk level", "Servers", "")])
        for level, count in level_counts(ranked).items():
            ws.append([styled(ws, level.capitalize(), fill=_LEVEL_FILLS[level]), count])
        # The rest of the fleet, so that the rows add up to it (fastStorage's read 48 of 50 servers).
        inventory = data.table("inventory")
        fleet = len(inventory) if inventory is not None else int(ranked["server_id"].nunique())
        notes = {"stale": "levels as of their last data; nothing recommended (check their monitoring)",
                 "not assessed": "no metric with an observed value"}
        for name, count in unlevelled_counts(ranked, fleet).items():
            if count:
                ws.append([name.capitalize(), count, notes[name]])
    recs = data.table("recommendations")
    if recs is not None and len(recs):
        ws.append([])
        ws.append([styled(ws, h, header=True) for h in ("Savings by action", "Servers", "Savings / month (USD)")])
        grouped = savings_by_action(recs)
        for action, row in grouped.sort_values("savings", ascending=False).iterrows():
            saved = (styled(ws, NOT_PRICED) if pd.isna(row["savings"]) else
                     styled(ws, cents(row["savings"]), fmt=_MONEY))
            # The savings of the priced servers only: say so where some of the action's servers have no cost.
            scope = [f"{int(row['priced']):,} of {int(row['servers']):,} priced"] if \
                0 < row["priced"] < row["servers"] else []
            ws.append([str(action).capitalize(), int(row["servers"]), saved, *scope])
    _scenario_summary(ws, stored_scenario(data))


def _not_priced(frame: pd.DataFrame, unknown: pd.Series, columns: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` with ``columns`` reading ``not priced`` where the server's cost is ``unknown``: a decommission's
    projected $0 or an option's $0 next to an unknown cost today would read as a priced figure."""
    present = [c for c in columns if c in frame.columns]
    return frame.assign(**{c: frame[c].astype(object).where(~unknown.to_numpy(), NOT_PRICED) for c in present})


def _minimum_risks(options: pd.DataFrame) -> pd.DataFrame:
    """Options whose peaks rest on a saturated metric (``peak_is_minimum``) read their risk as a floor:
    ``low or higher (saturated: demand unknown)``, not a plain ``low`` the clipped forecast cannot promise."""
    if "peak_is_minimum" not in options.columns:
        return options
    floor = options["peak_is_minimum"].fillna(False).astype(bool) & options["performance_risk"].notna()
    graded = options["performance_risk"].astype(object)
    return options.assign(performance_risk=graded.where(
        ~floor, graded.map(label) + " or higher (saturated: demand unknown)"))


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


def _accuracy_history_sheet(ws: Worksheet, history: AccuracyHistory | None) -> None:
    """Forecast vs actual over time: one row per forecast run, then the scored runs per horizon bucket."""
    if history is None:
        unavailable(ws, "forecasts")
        return
    if history.scored.empty:
        ws.column_dimensions["A"].width = 60
        ws.append([styled(ws, history.message or "No forecast run has actuals yet.",
                          font=Font(italic=True, color="6B7280"))])
        return
    scores = {"mae": "0.00", "bias": "+0.00;-0.00;0.00", "coverage": "0%"}
    # The run's time as a datetime cell (a Timestamp would be written as its date only).
    made = pd.Series(history.runs["made"].to_numpy("datetime64[us]").astype(object), index=history.runs.index,
                     dtype=object)
    write_frame(ws, history.runs.assign(made=made), RUN_HEADERS, "ForecastVsActual",
                {**scores, "made": "yyyy-mm-dd hh:mm", "origin": "yyyy-mm-dd"}, {"run_id": 16, "note": 60})
    ws.append([])
    ws.append([styled(ws, h, header=True) for h in BUCKET_HEADERS.values()])
    formats = [scores.get(c) for c in BUCKET_HEADERS]
    for row in history.buckets[list(BUCKET_HEADERS)].itertuples(index=False, name=None):
        ws.append([styled(ws, v, fmt=f) for v, f in zip(row, formats, strict=True)])


def build_workbook(data: ReportData) -> bytes:
    """The workbook as .xlsx bytes.

    Sheets (``SHEETS``): Summary (KPIs as numbers with number formats, servers by level, savings by action,
    base vs the stored what-if); At-risk servers (medium or worse, riskiest first, rows coloured by level);
    All series (every server_risk row, same order); Recommendations (every server,
    ``risks.ordered_recommendations``: by action, upsize first, then soonest need, then biggest saving);
    What-if (every risk_comparison row, most affected first, rows coloured by scenario level); Clusters;
    Forecast data (weekly per series, or every daily row; streamed a chunk of servers at a time, continued
    on ``Forecast data (2)``, ... beyond Excel's row limit); Forecast vs
    actual (earlier forecast runs scored against the actuals since, per run and per horizon bucket);
    Sizing options (recommendation_options); Capacity by group (capacity_by_group); Assumptions. A sheet
    whose table is absent says which stage to run.
    """
    # Write-only mode streams rows to a temporary file (memory stays flat) and is ~5x faster for the forecast sheet.
    workbook = TextWorkbook()
    summary = workbook.create_sheet(SHEETS[0])
    ranked = report_risks(data)
    daily, rows = forecast_layout(data)
    _summary_sheet(summary, data, ranked, sheet_names(rows))

    # At-risk servers: medium or worse only (riskiest first); All series: every server_risk row.
    if not ranked.empty and "status" in ranked.columns and "days_to_breach" in ranked.columns:
        # A stale series' days to breach, breach date and probability come from data that ended long ago
        # (helper-41: "0" beside a series the CLI calls "stale: no data since 2013-08-27"; helper-69: a breach date
        # the day after its last data, under "already breaching: last day over"): left blank, its Status says stale.
        live = ranked["status"] != Status.STALE.value
        # Its level as of that data reads "stale (critical)", uncoloured, as in the packs' tables (helper-74: red
        # "critical" here beside "stale (critical)" on the What-if sheet).
        ranked = ranked.assign(risk_level=stale_levels(ranked["risk_level"], ~live),
                               days_to_breach=ranked["days_to_breach"].astype("Float64").where(live),
                               breach_ds=ranked["breach_ds"].where(live),
                               breach_probability=ranked["breach_probability"].where(live))
    at_risk = ranked[ranked["level_code"] >= 1] if not ranked.empty else ranked
    for name, frame, table in ((SHEETS[1], at_risk, "AtRisk"), (SHEETS[2], ranked, "AllSeries")):
        ws = workbook.create_sheet(name)
        if ranked.empty:
            unavailable(ws, "server_risk")
        elif frame.empty:
            ws.append(["No series at risk (medium or worse); every series is on the All series sheet."])
        else:
            shown = write_frame(ws, frame, AT_RISK_COLUMNS, table,
                                {"breach_probability": "0%", "peak_yhat": "0.0", "threshold": "0"},
                                {"reason": 70, "application": 16, "hostname": 18})
            _level_formatting(ws, len(frame), len(shown), shown.index("risk_level") + 1)

    ws = workbook.create_sheet(SHEETS[3])
    recs = data.table("recommendations")
    if recs is None:
        unavailable(ws, "recommendations")
    else:
        frame = ordered_recommendations(_names(data, recs, ("cpu_cores", "memory_gb")))
        # Unknown cost today: the projection and the saving are unknown too (a kept server's $0 beside "not
        # priced" costs read as a priced figure).
        unpriced = frame["current_monthly_cost"].isna()
        frame = _not_priced(frame, unpriced, ("current_monthly_cost", "projected_monthly_cost", "monthly_savings"))
        write_frame(ws, frame, RECOMMENDATION_COLUMNS, "Recommendations",
                    {**_SIZES, **{c: _MONEY for c in ("current_monthly_cost", "projected_monthly_cost",
                                                       "monthly_savings")}},
                    {"rationale": 80, "hostname": 18})

    ws = workbook.create_sheet(SHEETS[4])
    scenario = stored_scenario(data)
    if scenario is None:
        unavailable(ws, "risk_comparison")
    else:
        compared = shown_levels(scenario.rows)
        for side in SIDES:  # unknown where the server has no monthly cost (keep included), never $0 (helper-73)
            compared = _not_priced(compared, compared[f"{side}_action"].notna()
                                   & compared[f"{side}_monthly_savings"].isna(), (f"{side}_monthly_savings",))
        shown = write_frame(ws, compared, WHATIF_COLUMNS, "WhatIf",
                            {**dict.fromkeys(("base_breach_probability", "scenario_breach_probability"), "0%"),
                             **dict.fromkeys(("base_monthly_savings", "scenario_monthly_savings"), _MONEY)},
                            {"hostname": 18, "application": 16})
        _level_formatting(ws, len(scenario.rows), len(shown), shown.index("scenario_risk_level") + 1)

    ws = workbook.create_sheet(SHEETS[5])
    clusters = data.table("clusters")
    if clusters is None:
        unavailable(ws, "clusters")
    else:
        write_frame(ws, _names(data, clusters).sort_values(["cluster_id", "server_id"]), CLUSTER_COLUMNS,
                    "Clusters", widths={"cluster_label": 30, "hostname": 18})

    write_forecast_sheets(workbook, data, daily)

    _accuracy_history_sheet(workbook.create_sheet(SHEETS[7]), data.accuracy)

    ws = workbook.create_sheet(SHEETS[8])
    options = data.table("recommendation_options")
    if options is None:
        unavailable(ws, "recommendation_options")
    else:
        # The cost difference is unknown exactly where today's cost (or the option's) is.
        ranked_options = _names(data, options).sort_values(["server_id", "rank"])
        ranked_options = _not_priced(ranked_options, ranked_options["monthly_cost_difference"].isna(),
                                     ("monthly_cost", "monthly_cost_difference"))
        ranked_options = _minimum_risks(ranked_options)
        write_frame(ws, ranked_options, OPTION_COLUMNS, "Options",
                    {**_SIZES, "monthly_cost": _MONEY, "monthly_cost_difference": _MONEY,
                     "projected_peak_cpu": "0.0", "projected_peak_memory": "0.0"}, {"hostname": 18})

    ws = workbook.create_sheet(SHEETS[9])
    capacity = data.table("capacity_by_group")
    if capacity is None:
        unavailable(ws, "capacity_by_group")
    else:
        write_frame(ws, capacity, CAPACITY_COLUMNS, "CapacityByGroup", _SIZES,
                    widths={"group": 20, "earliest_breach": 20})

    ws = workbook.create_sheet(SHEETS[10])
    write_frame(ws, pd.DataFrame(assumptions(data), columns=["assumption", "value", "note"]),
                {"assumption": "Assumption", "value": "Value", "note": "Note"}, "Assumptions",
                widths={"assumption": 26, "value": 44, "note": 80})
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()
