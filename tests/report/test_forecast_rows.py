"""Forecast rows read a chunk of servers at a time: the same report whatever the chunk, and Excel's row limit."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from openpyxl import load_workbook

from capacity_forecaster.config import Settings
from capacity_forecaster.report import forecast_sheet
from capacity_forecaster.report.data import load_report_data
from capacity_forecaster.report.excel import SHEETS, build_workbook
from capacity_forecaster.report.forecast_sheet import WEEKLY_FORECAST_COLUMNS, split_note
from capacity_forecaster.storage import Lake


def _settings(settings: Settings, **report: object) -> Settings:
    return settings.model_copy(update={"report": settings.report.model_copy(update=report)})


def _sheets(lake: Lake, settings: Settings) -> dict[str, list[tuple]]:
    book = load_workbook(io.BytesIO(build_workbook(load_report_data(lake, settings))), read_only=True)
    return {name: list(book[name].iter_rows(values_only=True)) for name in book.sheetnames}


@pytest.mark.parametrize("sheet", ["weekly", "daily"])
def test_forecast_sheet_is_the_same_whatever_the_chunk_of_servers(report_lake, settings, sheet) -> None:
    whole = _sheets(report_lake, _settings(settings, forecast_sheet=sheet))
    one_by_one = _sheets(report_lake, _settings(settings, forecast_sheet=sheet, chunk_servers=1))
    assert len(whole["Forecast data"]) > 100
    assert one_by_one["Forecast data"] == whole["Forecast data"]
    assert one_by_one["Forecast vs actual"] == whole["Forecast vs actual"]


def test_forecast_rows_beyond_one_sheet_continue_on_numbered_sheets(report_lake, settings, monkeypatch) -> None:
    whole = _sheets(report_lake, _settings(settings, chunk_servers=3))["Forecast data"]
    monkeypatch.setattr(forecast_sheet, "EXCEL_MAX_ROWS", 100)
    payload = build_workbook(load_report_data(report_lake, _settings(settings, chunk_servers=3)))
    book = load_workbook(io.BytesIO(payload), read_only=True)
    count = -(-(len(whole) - 1) // 100)
    continued = [f"Forecast data ({n})" for n in range(2, count + 1)]
    assert count > 2 and book.sheetnames == [*SHEETS[:7], *continued, *SHEETS[7:]]
    parts = [list(book[name].iter_rows(values_only=True)) for name in ("Forecast data", *continued)]
    assert all(part[0] == tuple(WEEKLY_FORECAST_COLUMNS.values()) for part in parts)
    assert all(len(part) == 101 for part in parts[:-1]) and 1 < len(parts[-1]) <= 101
    assert [row for part in parts for row in part[1:]] == whole[1:]  # nothing lost, nothing repeated
    summary = [row[0] for row in book["Summary"].iter_rows(values_only=True) if row]
    assert split_note(["Forecast data", *continued]) in summary and f"to {continued[-1]}" in split_note(
        ["Forecast data", *continued])
    tables = {name: load_workbook(io.BytesIO(payload))[name].tables for name in ("Forecast data", continued[-1])}
    assert tables["Forecast data"]["Forecasts"].ref == "A1:I101"
    assert tables[continued[-1]][f"Forecasts{count}"].ref == f"A1:I{len(parts[-1])}"


def test_a_forecast_sheet_within_the_limit_has_no_note(report_lake, settings) -> None:
    sheets = _sheets(report_lake, settings)
    assert not any(row and str(row[0]).startswith("The forecast data has more rows") for row in sheets["Summary"])


def test_forecast_rows_of_a_few_series_match_the_table(report_lake, settings) -> None:
    forecasts = load_report_data(report_lake, settings).forecasts
    assert forecasts is not None
    pairs = [("srv-0003", "cpu"), ("srv-0001", "memory")]
    rows = forecasts.of(pairs)
    table = report_lake.read_table("forecasts")
    expected = table.merge(pd.DataFrame(pairs, columns=["server_id", "metric"])).sort_values(
        ["server_id", "metric", "ds"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rows[list(expected.columns)], expected, check_dtype=False)
    assert forecasts.of([]).empty
    chunks = list(forecasts.chunks())
    assert sum(len(c) for c in chunks) == len(table) == forecasts.rows
