"""The report files read back as a user would: PNGs decode, the workbook re-opens, the PDF has text, HTML is offline."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from openpyxl import load_workbook
from report_lake import RISKIEST, report_file

from capacity_forecaster.config import Settings
from capacity_forecaster.report.charts import CHART_FILES
from capacity_forecaster.report.data import WHATIF_MISSING, load_report_data
from capacity_forecaster.report.excel import AT_RISK_COLUMNS, SHEETS, build_workbook
from capacity_forecaster.report.forecast_sheet import FORECAST_COLUMNS, WEEKLY_FORECAST_COLUMNS
from capacity_forecaster.report.plotly_bundle import plotly_js
from capacity_forecaster.report.stage import HTML_FILE, PDF_FILE, XLSX_FILE
from capacity_forecaster.storage.sql import query

PDFTOTEXT = shutil.which("pdftotext")
needs_pdftotext = pytest.mark.skipif(PDFTOTEXT is None, reason="poppler-utils (pdftotext) is not installed")


def _pdf_text(path: Path) -> str:
    return subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def test_stage_writes_every_format_with_sizes(full_report) -> None:
    _, result = full_report
    names = [f.name for f in result.files]
    assert names == [*CHART_FILES, HTML_FILE, XLSX_FILE, PDF_FILE]
    for item in result.files:
        assert item.path == f"reports/{item.name}"
        assert Path(item.uri).stat().st_size == item.size > 1000
    assert result.missing == {"risk_comparison": WHATIF_MISSING}  # the hand-built lake has no what-if
    assert "capacity_report.pdf" in result.render() and WHATIF_MISSING in result.render()


@pytest.mark.parametrize("which", ["full_report", "etl_only_report"])
def test_every_png_decodes_and_is_not_blank(request: pytest.FixtureRequest, which: str) -> None:
    _, result = request.getfixturevalue(which)
    for name in CHART_FILES:
        pixels = imread(report_file(result, name))
        assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 1000, name
        assert float(np.var(pixels[..., :3])) > 1e-3, f"{name} is blank"


def test_workbook_sheets_headers_and_rows_match_the_lake(full_report) -> None:
    lake, result = full_report
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    assert book.sheetnames == list(SHEETS)
    risk, recs = lake.read_table("server_risk"), lake.read_table("recommendations")
    rows = {name: list(book[name].iter_rows(values_only=True)) for name in SHEETS}
    assert rows["At-risk servers"][0] == tuple(AT_RISK_COLUMNS.values())
    # At-risk servers: medium or worse only; the full table on its own sheet, in the same order.
    assert len(rows["At-risk servers"]) == int(risk["risk_level"].isin(["critical", "high", "medium"]).sum()) + 1
    assert len(rows["All series"]) == len(risk) + 1
    assert rows["All series"][1: len(rows["At-risk servers"])] == rows["At-risk servers"][1:]
    levels = {r[5] for r in rows["At-risk servers"][1:]}
    assert levels <= {"critical", "high", "medium"}
    assert rows["At-risk servers"][1][:2] == (RISKIEST, "nyc-prd-app01")
    assert rows["At-risk servers"][1][5] == "critical"
    assert len(rows["Recommendations"]) == len(recs) + 1
    header = list(rows["Recommendations"][0])
    savings = [r[header.index("Savings / month (USD)")] for r in rows["Recommendations"][1:]]
    assert sum(savings) == pytest.approx(recs["monthly_savings"].sum())
    # Most urgent first (upsizes, then the rest by action), the largest savings first within an action.
    actions = [r[header.index("Action")] for r in rows["Recommendations"][1:]]
    order = ["upsize", "rightsize", "consolidate", "decommission", "keep"]
    assert [order.index(a) for a in actions] == sorted(order.index(a) for a in actions)
    for action in set(actions) - {"upsize"}:
        mine = [s for s, a in zip(savings, actions, strict=True) if a == action]
        assert mine == sorted(mine, reverse=True)
    assert len(rows["Clusters"]) == len(lake.read_table("clusters")) + 1
    assert rows["Forecast data"][0] == tuple(WEEKLY_FORECAST_COLUMNS.values())
    weeks = query(lake, "SELECT count(DISTINCT (server_id, metric, date_trunc('week', ds))) AS n FROM forecasts")
    assert len(rows["Forecast data"]) == int(weeks["n"].iloc[0]) + 1
    days = [r[-1] for r in rows["Forecast data"][1:]]
    assert sum(days) == len(lake.read_table("forecasts"))
    summary = {r[0]: r[1] for r in rows["Summary"] if len(r) > 1 and r[0]}
    # KPIs are numbers with number formats, not text.
    assert summary["Servers at risk"] == 3 and summary["Net savings per month"] == pytest.approx(675)
    assert isinstance(summary["Servers in the fleet"], int | float)
    cells = {r[0].value: r[1] for r in load_workbook(report_file(result, XLSX_FILE))["Summary"].iter_rows()
             if len(r) > 1 and r[0].value}
    assert cells["Net savings per month"].number_format.startswith('"$"')
    assert cells["Servers at risk"].number_format == "#,##0"
    assumptions = {r[0]: r[1] for r in rows["Assumptions"][1:]}
    assert assumptions["Breach threshold"] == "80 % of capacity" and "Data period" in assumptions
    formatting = load_workbook(report_file(result, XLSX_FILE))["At-risk servers"].conditional_formatting
    assert len(list(formatting)) == 1 and len(next(iter(formatting)).rules) == 4  # one rule per risk level


def test_workbook_without_risk_says_what_to_run(etl_only_report) -> None:
    _, result = etl_only_report
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    assert book.sheetnames == list(SHEETS)
    assert book["At-risk servers"]["A1"].value == "not available: run capfc risk"
    assert book["Forecast data"]["A1"].value == "not available: run capfc forecast"


@needs_pdftotext
def test_pdf_names_the_kpis_and_the_riskiest_server(full_report) -> None:
    _, result = full_report
    text = _pdf_text(report_file(result, PDF_FILE))
    for kpi in result.kpis:
        assert kpi.label in text, kpi.label
    values = {k.key: k.text for k in result.kpis}
    for key in ("servers", "at_risk", "critical", "earliest_breach", "net_savings", "fleet_cost"):
        assert values[key] in text, key
    assert RISKIEST in text and "nyc-prd-app01" in text
    assert re.search(rf"{RISKIEST}\s+nyc-prd-app01\s+payments\s+cpu\s+critical", text)
    assert "Appendix: assumptions" in text and "80 % of capacity" in text


@needs_pdftotext
def test_pdf_without_risk_still_renders(etl_only_report) -> None:
    _, result = etl_only_report
    text = _pdf_text(report_file(result, PDF_FILE))
    assert "not available: run capfc risk" in text and "Appendix: assumptions" in text
    assert "No series is at risk" not in text  # an absent risk table is not "no risk"


@pytest.mark.parametrize("which", ["full_report", "etl_only_report"])
def test_html_is_self_contained(request: pytest.FixtureRequest, which: str) -> None:
    _, result = request.getfixturevalue(which)
    page = report_file(result, HTML_FILE).read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src\s*=", page, re.I), "scripts must be inline"
    assert not re.search(r"<link[^>]+href\s*=\s*[\"']?https?://", page, re.I)
    assert 'id="plotly-js"' in page and "Plotly.newPlot" in page  # the engine is inline, started after load
    assert plotly_js() in page and len(page) < 2_500_000  # the 1.5 MB cartesian bundle, not the 4.8 MB one
    charts = page.count('<div class="chart"')
    if which == "full_report":
        assert charts == 6 and f"{RISKIEST} cpu" in page and "Top risks" in page
    else:
        assert charts == 2  # heatmap and cluster map: metrics exist
        assert "not available: run capfc forecast" in page


def test_daily_forecast_sheet_has_every_forecast_row(report_lake, settings) -> None:
    daily = settings.model_copy(update={"report": settings.report.model_copy(update={"forecast_sheet": "daily"})})
    book = load_workbook(io.BytesIO(build_workbook(load_report_data(report_lake, daily))), read_only=True)
    rows = list(book["Forecast data"].iter_rows(values_only=True))
    assert rows[0] == tuple(FORECAST_COLUMNS.values())
    assert len(rows) == len(report_lake.read_table("forecasts")) + 1


# Lake table names a reader must never see (the HTML's scripts and styles excepted).
TABLE_NAMES = re.compile(r"\b(risk_comparison|backtest_forecasts|server_risk|forecast_failures|forecast_triage|"
                         r"yhat_lower|yhat_upper)\b")


def _html_text(path: Path) -> str:
    page = path.read_text(encoding="utf-8")
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", page)


@needs_pdftotext
@pytest.mark.parametrize("which", ["full_report", "etl_only_report"])
def test_no_table_names_where_a_reader_sees_them(request: pytest.FixtureRequest, which: str) -> None:
    _, result = request.getfixturevalue(which)
    pdf = _pdf_text(report_file(result, PDF_FILE))
    assert not TABLE_NAMES.search(pdf), TABLE_NAMES.findall(pdf)
    html = _html_text(report_file(result, HTML_FILE))
    assert not TABLE_NAMES.search(html), TABLE_NAMES.findall(html)


@needs_pdftotext
def test_pdf_without_a_what_if_has_no_what_if_page(full_report) -> None:
    _, result = full_report
    text = _pdf_text(report_file(result, PDF_FILE))
    assert "What-if: base vs scenario" not in text  # neither a page nor an entry in the contents
    summary = text.split("\f")[1]  # page 2: the executive summary says it in one line, without a command
    assert "Executive summary" in summary and "What-if: no growth scenario was stored with these runs" in summary
    assert "capfc" not in summary.replace("\n", " ")


@pytest.mark.skipif(shutil.which("pdfinfo") is None, reason="poppler-utils (pdfinfo) is not installed")
@pytest.mark.parametrize(("page_size", "points"), [("a4", (842, 595)), ("letter", (792, 612))])
def test_pdf_page_size_follows_the_config(report_lake, tmp_path: Path, page_size: str, points: tuple) -> None:
    from capacity_forecaster.config import Settings
    from capacity_forecaster.report.charts import render_charts
    from capacity_forecaster.report.data import HISTORY_COLUMNS
    from capacity_forecaster.report.pdf import build_pdf

    settings = Settings.model_validate({"report": {"page_size": page_size}})
    data = load_report_data(report_lake, settings)
    path = tmp_path / "pack.pdf"
    path.write_bytes(build_pdf(data, render_charts(data, pd.DataFrame(columns=list(HISTORY_COLUMNS)))))
    info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True, timeout=60).stdout
    size = re.search(r"Page size:\s+([\d.]+) x ([\d.]+) pts", info)
    assert size is not None and (round(float(size[1])), round(float(size[2]))) == points


@needs_pdftotext
def test_assumptions_show_the_horizon_of_the_forecasts_used(full_report) -> None:
    """The fixture's forecasts run 90 days (as after capfc forecast --horizon 90) while forecast.horizon is 180."""
    lake, result = full_report
    assert Settings().forecast.horizon == 180
    assert next(k for k in result.kpis if k.key == "horizon").text == "90 days"
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    rows = {r[0]: r[1:] for r in book["Assumptions"].iter_rows(values_only=True)}
    assert rows["Forecast horizon"][0] == "90 days"
    assert "(the configured default is 180 days)" in rows["Forecast horizon"][1]
    text = " ".join(_pdf_text(report_file(result, PDF_FILE)).split())
    assert "Forecast horizon 90 days" in text and "Forecast horizon 180 days" not in text


@needs_pdftotext
def test_pdf_title_page_keeps_every_key_message(report_lake, tmp_path: Path, monkeypatch) -> None:
    """fastStorage's eight key messages pushed one bullet alone onto page 2: the title page shrinks to fit."""
    from capacity_forecaster.report import pdf
    from capacity_forecaster.report.charts import render_charts
    from capacity_forecaster.report.data import HISTORY_COLUMNS

    lines = [f"Message {i}: " + "a long sentence about the fleet and its servers, " * 4 + f"end {i}." for i in range(9)]
    monkeypatch.setattr(pdf, "headlines", lambda data, ranked: lines)
    data = load_report_data(report_lake, Settings())
    path = tmp_path / "pack.pdf"
    path.write_bytes(pdf.build_pdf(data, render_charts(data, pd.DataFrame(columns=list(HISTORY_COLUMNS)))))
    pages = _pdf_text(path).split("\f")
    first, second = " ".join(pages[0].split()), " ".join(pages[1].split())
    assert "Message 0:" in first and "end 8." in first and "In this pack" in first
    assert "Message" not in second and "Executive summary" in second


def test_pdf_server_columns_fit_their_longest_id() -> None:
    """helper-45: at 5,000 fastStorage copies "bitbrains-fs-1900081" wrapped before its last digit."""
    from reportlab.lib.units import inch
    from reportlab.pdfbase.pdfmetrics import stringWidth

    from capacity_forecaster.report.pdf import CELL_WRAP, _id_width

    long_id = "bitbrains-fs-19000813"
    needed = stringWidth(long_id, CELL_WRAP.fontName, CELL_WRAP.fontSize) / inch
    assert needed < _id_width([long_id, "a", None], 0.8) <= 2.0
    assert _id_width(["srv-0001"], 0.8) == 0.8 and _id_width([], 1.0) == 1.0
    assert _id_width(["x" * 200], 0.8) == 2.0  # longer ids wrap rather than squeeze the rationale away


@needs_pdftotext
def test_the_pdf_has_capacity_remaining_by_group(breaching_report) -> None:
    """helper-50: the HTML report and the workbook had it, the management pack did not."""
    _lake, result = breaching_report
    text = " ".join(_pdf_text(report_file(result, PDF_FILE)).split())
    contents = text[text.index("In this pack"):][:400]
    assert "Capacity remaining by group" in contents
    page = text[text.index("Capacity remaining by group Per group of servers"):][:800]
    assert "Grouped by Group Servers At risk Time remaining Free cores Free GB Freed cores Freed GB" in page
    header = page.index("Freed GB")
    assert page.index("datacenter", header) < page.index("environment", header)  # datacenters first


@needs_pdftotext
def test_server_ids_are_text_in_the_pdf_and_the_workbook(report_lake, tmp_path: Path) -> None:
    """helper-51: an id such as 'x<font color=red>y' stopped capfc report (reportlab markup), 'R&D-01' printed as
    'R&D-01;', and '=HYPERLINK(...)' became a live formula in five workbook sheets."""
    import dataclasses

    from capacity_forecaster.report import pdf
    from capacity_forecaster.report.charts import render_charts
    from capacity_forecaster.report.data import HISTORY_COLUMNS

    data = load_report_data(report_lake, Settings())
    names = {RISKIEST: 'R&D-01<font color=red>x</font>', "srv-0002": '=HYPERLINK("http://example.invalid","c")'}
    tables = {name: frame.assign(server_id=frame["server_id"].replace(names)) if "server_id" in frame.columns
              else frame for name, frame in data.tables.items() if frame is not None}
    data = dataclasses.replace(data, tables=tables)
    path = tmp_path / "pack.pdf"
    path.write_bytes(pdf.build_pdf(data, render_charts(data, pd.DataFrame(columns=list(HISTORY_COLUMNS)))))
    text = _pdf_text(path)
    assert names[RISKIEST] in text and "R&D-01;" not in text
    book = load_workbook(io.BytesIO(build_workbook(data)))
    formulas = [(ws.title, cell.coordinate) for ws in book.worksheets for row in ws.iter_rows() for cell in row
                if cell.data_type == "f"]
    cells = [cell.value for ws in book.worksheets for row in ws.iter_rows() for cell in row]
    assert formulas == [] and names["srv-0002"] in cells
