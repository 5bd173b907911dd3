"""Presentation details a reader notices: numbers stored as numbers, even KPI rows, honest labels, no broken tokens."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.text import Text
from openpyxl import load_workbook
from report_lake import report_file

from capacity_forecaster.config import Settings
from capacity_forecaster.report import style
from capacity_forecaster.report.charts import cluster_chart
from capacity_forecaster.report.data import load_report_data
from capacity_forecaster.report.figures import accuracy_box
from capacity_forecaster.report.forecast_chart import observed_span
from capacity_forecaster.report.pdf import _savings_table, cards_per_row, keep_units
from capacity_forecaster.report.risks import ranked_risks
from capacity_forecaster.report.stage import HTML_FILE, PDF_FILE, XLSX_FILE
from capacity_forecaster.report.summary import CLUSTER_RING, cluster_ringed

PDFTOTEXT = shutil.which("pdftotext")
needs_pdftotext = pytest.mark.skipif(PDFTOTEXT is None, reason="poppler-utils (pdftotext) is not installed")


def _pdf_text(path: Path) -> str:
    return subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def test_workbook_what_if_counts_are_numbers_and_money_is_in_cents(whatif_report, full_report) -> None:
    _lake, result = whatif_report
    rows = [r for r in load_workbook(report_file(result, XLSX_FILE), read_only=True)["Summary"].iter_rows(
        values_only=True) if r and r[0]]
    # Dates as of the data's last day, said on the Summary sheet as in the packs (helper-69).
    assert any(str(r[0]).startswith("The data end on ") for r in rows[:5])
    block = rows[[r[0] for r in rows].index("What-if scenario"):]
    by = {r[0]: r[1:3] for r in block}
    for measure in ("Servers", "Servers at risk (medium or worse)", "Critical servers",
                    "Series at risk (medium or worse)"):
        assert all(isinstance(v, int) for v in by[measure]), (measure, by[measure])
    assert all(isinstance(v, float) and round(v, 2) == v for v in by["Net savings per month"])
    _lake, result = full_report
    kpis = {r[0]: r[1] for r in load_workbook(report_file(result, XLSX_FILE), read_only=True)["Summary"].iter_rows(
        values_only=True) if len(r) > 1}
    for label in ("Fleet cost per month", "Net savings per month", "Net savings per year"):
        assert isinstance(kpis[label], int | float) and round(kpis[label], 2) == kpis[label]


def test_workbook_sizes_are_numbers_with_a_size_format(whatif_report) -> None:
    _lake, result = whatif_report  # the real risk stage wrote every table
    book = load_workbook(report_file(result, XLSX_FILE))
    for sheet, wanted in (("Recommendations", {"Current memory (GB)": "#,##0.0", "Current cores": "#,##0",
                                              "Recommended memory (GB)": "#,##0.0"}),
                          ("Sizing options", {"Memory (GB)": "#,##0.0", "Cores": "#,##0"}),
                          ("Capacity by group", {"Free GB at peak": "#,##0.0", "Reclaimable cores": "#,##0"})):
        ws = book[sheet]
        headers = [c.value for c in ws[1]]
        for name, fmt in wanted.items():
            assert name in headers, (sheet, headers)
            cell = ws.cell(row=2, column=headers.index(name) + 1)
            assert cell.number_format == fmt and isinstance(cell.value, int | float), (sheet, name)


def test_kpi_cards_fill_even_rows() -> None:
    assert cards_per_row(11) == 6 and cards_per_row(5) == 5 and cards_per_row(12) == 6 and cards_per_row(7) == 4


@needs_pdftotext
def test_pdf_horizon_card_is_not_alone_on_a_row(full_report) -> None:
    _lake, result = full_report
    lines = _pdf_text(report_file(result, PDF_FILE)).splitlines()
    row = next(line for line in lines if "Forecast horizon" in line)
    assert "Data period" in row


def test_largest_savings_has_no_empty_target_column(report_lake) -> None:
    data = load_report_data(report_lake, Settings())
    with_targets = _savings_table(data, 700.0)[1]
    assert "Target" in with_targets._cellvalues[0]  # the fixture consolidates onto srv-0005
    # Names wrap in their cells: a long FQDN ran into the Action column as plain text (helper-40).
    from reportlab.platypus import Paragraph

    names = [row[i] for row in with_targets._cellvalues[1:] for i in (0, 1, 3)]
    assert names and all(isinstance(cell, Paragraph) for cell in names)
    recs = data.table("recommendations").assign(target_server_id=None)
    data = dataclasses.replace(data, tables={**data.tables, "recommendations": recs})
    header = _savings_table(data, 700.0)[1]._cellvalues[0]
    assert "Target" not in header and header[:3] == ["Server", "Hostname", "Action"]


def test_cluster_rings_mark_risk_in_the_plotted_metric(report_lake) -> None:
    """srv-0002 is at high risk in memory, not CPU: the CPU cluster map does not ring it."""
    data = load_report_data(report_lake, Settings())
    ranked = ranked_risks(data)
    high_memory = ranked[(ranked["server_id"] == "srv-0002") & (ranked["metric"] == "memory")]
    assert high_memory["risk_level"].iloc[0] == "high"
    assert cluster_ringed(ranked) == {"srv-0001"}
    with style.report_style():
        labels = [t.get_text() for t in cluster_chart(data).legends[0].get_texts()]
    assert CLUSTER_RING in labels and "critical or high risk" not in labels


def test_chart_subtitle_says_the_history_actually_shown() -> None:
    history = pd.DataFrame({"ds": pd.date_range("2013-06-30", "2013-09-29")})
    forecasts = pd.DataFrame({"ds": pd.date_range("2013-09-30", periods=30)})
    assert observed_span(history, forecasts, 180) == "All 92 observed days (2013-06-30 to 2013-09-29)"
    long = pd.DataFrame({"ds": pd.date_range("2025-01-01", "2026-06-30")})
    assert observed_span(long, pd.DataFrame({"ds": [pd.Timestamp("2026-07-01")]}), 180) == "Last 180 days observed"


def test_pdf_keeps_numbers_with_their_units() -> None:
    text = keep_units("cpu max 4.2 %, memory 15.873 GB, 12 cores, 1 day; 80 % of capacity")
    assert text == ("cpu max 4.2\u00a0%, memory 15.873\u00a0GB, 12\u00a0cores, 1\u00a0day; 80\u00a0% of capacity")


def test_html_keeps_ids_and_dates_on_one_line(full_report) -> None:
    _lake, result = full_report
    page = report_file(result, HTML_FILE).read_text(encoding="utf-8")
    assert "td.nw{white-space:nowrap}" in page
    top = page[page.index("<h2>Top risks</h2>"):]
    top = top[: top.index("</table>")]
    first = re.search(r"<tbody><tr>(.*?)</tr>", top).group(1)
    cells = re.findall(r"<td( class=\"[^\"]*\")?>", first)
    assert "nw" in cells[0] and "nw" in cells[1] and "nw" in cells[5]  # server, hostname, breach date


def test_html_accuracy_axis_caption_wraps(report_lake) -> None:
    fig = accuracy_box(load_report_data(report_lake, Settings()).table("backtests"))
    title = fig.layout.xaxis.title.text
    assert "<br>" in title and all(len(part) <= 100 for part in title.split("<br>"))
    assert json.loads(fig.to_json())["layout"]["margin"]["b"] >= 80


@needs_pdftotext
def test_one_server_is_singular(breaching_report) -> None:
    _lake, result = breaching_report
    text = " ".join(_pdf_text(report_file(result, PDF_FILE)).split())
    assert "1 server is already breaching" in text and "1 servers" not in text


def test_no_texts_with_two_dollars_become_mathtext(full_report) -> None:
    lake, _result = full_report
    data = load_report_data(lake, Settings())
    with style.report_style():
        texts = [t for t in cluster_chart(data).findobj(Text)]
    assert all(not t._preprocess_math(t.get_text())[1] for t in texts)


def test_workbook_shows_machine_words_as_words(breaching_report) -> None:
    """Statuses, findings and grades read "already breaching", "insufficient data", "very low" (not snake_case);
    the lake keeps its values."""
    lake, result = breaching_report
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    seen = set()
    for sheet in ("At-risk servers", "All series", "Recommendations", "What-if", "Sizing options",
                  "Capacity by group"):
        rows = list(book[sheet].iter_rows(values_only=True))
        for name in ("Status", "Base status", "Scenario status", "Finding", "Performance risk", "Kind", "Change",
                     "Grouped by"):
            if name in rows[0]:
                values = {r[rows[0].index(name)] for r in rows[1:]} - {None}
                assert values and not any("_" in str(v) for v in values), (sheet, name, values)
                seen |= values
    assert "already breaching" in seen
    assert "already_breaching" in set(lake.read_table("server_risk")["status"])


def test_no_hostname_shown_where_the_inventory_has_none(tmp_path: Path) -> None:
    """Ingest fills hostname = server_id for an inventory without hostnames (Bitbrains): the reports showed the id
    twice; they leave the Hostname blank now, and the lake keeps its value."""
    from report_lake import RISKIEST, build_lake

    from capacity_forecaster.report.stage import run_report

    lake = build_lake(tmp_path / "lake", stages=("etl", "forecast", "risk"))
    inventory = lake.read_table("inventory")
    inventory.loc[inventory["server_id"] == RISKIEST, "hostname"] = RISKIEST
    lake.write_table("inventory", inventory)
    assert load_report_data(lake, Settings()).table("inventory").set_index("server_id")["hostname"].isna().sum() == 1
    result = run_report(lake, Settings())
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    for sheet in ("At-risk servers", "Recommendations", "Clusters"):
        rows = list(book[sheet].iter_rows(values_only=True))
        hosts = {r[0]: r[rows[0].index("Hostname")] for r in rows[1:]}
        assert hosts[RISKIEST] is None and hosts["srv-0002"] == "nyc-prd-app02", (sheet, hosts)
    assert (lake.read_table("inventory").set_index("server_id").loc[RISKIEST, "hostname"]) == RISKIEST
    if PDFTOTEXT is not None:
        text = " ".join(_pdf_text(report_file(result, PDF_FILE)).split())
        assert f"{RISKIEST} {RISKIEST}" not in text and "None" not in text and "nan" not in text.split()


def test_the_cluster_map_names_its_ringed_servers(breaching_report) -> None:
    # helper-41: the red ring said "at risk" but not which server.
    from capacity_forecaster.report.charts import RING_LABELS
    from capacity_forecaster.report.risks import report_risks
    from capacity_forecaster.report.summary import cluster_ringed

    lake, _result = breaching_report
    data = load_report_data(lake, Settings())
    ringed = set(cluster_ringed(report_risks(data)))
    with style.report_style():
        figure = cluster_chart(data)
        names = [t.get_text() for t in figure.axes[0].texts]
        legend = [t.get_text() for t in figure.legends[0].get_texts()] if figure.legends else \
            [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
        boxes = [t.get_window_extent(figure.canvas.get_renderer()) for t in figure.axes[0].texts]
    # "bitbrains-fs-190 +5": rings on top of a named one are counted into its name; names never overlap
    # (fastStorage's six at 100 % piled up into an unreadable smear); the legend counts the rings left unnamed.
    assert ringed and {n.split(" +")[0] for n in names} <= ringed and len(names) <= RING_LABELS
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    counted = sum(1 + int(n.split(" +")[1]) if " +" in n else 1 for n in names)
    unnamed = len(ringed) - counted
    assert any(f"({unnamed} not named" in t for t in legend) if unnamed else not any("not named" in t for t in legend)
