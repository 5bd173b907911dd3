"""The workbook's Forecast data sheet: weekly or daily forecast rows, streamed a chunk of servers at a time and
continued on numbered sheets beyond Excel's row limit."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pandas as pd
from openpyxl import Workbook

from capacity_forecaster.report.data import ReportData
from capacity_forecaster.report.sheets import add_table, append_rows, fitted_widths, header, unavailable
from capacity_forecaster.risk.levels import thresholds

log = logging.getLogger(__name__)

SHEET = "Forecast data"
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


def split_note(sheets: list[str]) -> str:
    """What the Summary sheet says when the forecast rows are split over several sheets."""
    return (f"The forecast data has more rows than one Excel sheet holds ({EXCEL_MAX_ROWS:,} under the header): "
            f"it continues over {len(sheets)} sheets, {sheets[0]} to {sheets[-1]}.")


def weekly_forecasts(forecasts: pd.DataFrame, data: ReportData) -> pd.DataFrame:
    """The forecasts summarised per series and week (Monday start).

    Returns:
        server_id, metric, week, model, yhat_mean, yhat_peak, upper_peak, days_above (days whose
        forecast exceeds the metric's breach threshold), days; sorted by series and week.
    """
    threshold = thresholds(forecasts["metric"], data.settings.risk)
    frame = forecasts.assign(week=forecasts["ds"].dt.to_period("W-SUN").dt.start_time,
                             above=(forecasts["yhat"] > threshold).astype(int))
    out = frame.groupby(["server_id", "metric", "week"], sort=True).agg(
        model=("model", "first"), yhat_mean=("yhat", "mean"), yhat_peak=("yhat", "max"),
        upper_peak=("yhat_upper", "max"), days_above=("above", "sum"), days=("ds", "size"))
    return out.reset_index().round({"yhat_mean": 2, "yhat_peak": 2, "upper_peak": 2})


def forecast_layout(data: ReportData) -> tuple[bool, int]:
    """Whether the Forecast data sheet has daily rows (``report.forecast_sheet``), and how many rows it has.

    Daily rows that would not fit in one Excel sheet fall back to weekly, with a warning.
    """
    forecasts = data.forecasts
    if forecasts is None:
        return False, 0
    if data.settings.report.forecast_sheet == "daily":
        if forecasts.rows <= EXCEL_MAX_ROWS:
            return True, forecasts.rows
        log.warning("report: %d daily forecast rows exceed one Excel sheet (%d); writing weekly rows instead",
                    forecasts.rows, EXCEL_MAX_ROWS)
    return False, forecasts.weekly_rows


def sheet_names(rows: int) -> list[str]:
    """The Forecast data sheet, and ``Forecast data (2)``, ... when its rows exceed one sheet (``EXCEL_MAX_ROWS``)."""
    return [_sheet_name(n) for n in range(1, max(1, -(-rows // EXCEL_MAX_ROWS)) + 1)]


def _sheet_name(number: int) -> str:
    return SHEET if number == 1 else f"{SHEET} ({number})"


def forecast_chunks(data: ReportData, daily: bool) -> Iterator[pd.DataFrame]:
    """The Forecast data sheet's rows, a chunk of servers at a time in sheet order (series, then day or week)."""
    for chunk in data.forecasts.chunks() if data.forecasts is not None else ():
        if daily:
            yield chunk.sort_values(["server_id", "metric", "ds"]).round({"yhat": 2, "yhat_lower": 2, "yhat_upper": 2})
        else:
            yield weekly_forecasts(chunk, data)


def write_forecast_sheets(workbook: Workbook, data: ReportData, daily: bool) -> None:
    """The Forecast data sheet, streamed a chunk of servers at a time; rows beyond one sheet go on to
    ``Forecast data (2)`` and so on (``sheet_names``), each a table under its own header row."""
    if data.forecasts is None:
        unavailable(workbook.create_sheet(SHEET), "forecasts")
        return
    columns = FORECAST_COLUMNS if daily else WEEKLY_FORECAST_COLUMNS
    ws, present, written, sheet = None, list(columns), 0, 0
    for frame in forecast_chunks(data, daily):
        start = 0
        while start < len(frame):
            if ws is None or written == EXCEL_MAX_ROWS:
                if ws is not None:
                    add_table(ws, _table_name(sheet), present, columns, written)
                sheet += 1
                ws, written = workbook.create_sheet(_sheet_name(sheet)), 0
                # Ids and model names as wide as they are (helper-69: NAB's 40-character ids in 11 characters).
                present = header(ws, frame.columns, columns, fitted_widths(frame))
            part = frame.iloc[start: start + EXCEL_MAX_ROWS - written]
            append_rows(ws, part, present)
            written, start = written + len(part), start + len(part)
    if ws is None:
        header(workbook.create_sheet(SHEET), columns, columns)
    else:
        add_table(ws, _table_name(sheet), present, columns, written)


def _table_name(number: int) -> str:
    return "Forecasts" if number == 1 else f"Forecasts{number}"
