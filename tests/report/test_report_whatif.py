"""Base vs the stored what-if (risk_comparison from the real risk stage) in every output, and what shows without one."""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook
from report_lake import WHATIF_GROWTH, build_lake, report_file

from capacity_forecaster.config import Settings
from capacity_forecaster.report.comparison import CHANGE_ORDER, stored_scenario
from capacity_forecaster.report.dashboard import create_app
from capacity_forecaster.report.data import WHATIF_MISSING, ReportData, load_report_data
from capacity_forecaster.report.excel import SHEETS, WHATIF_COLUMNS
from capacity_forecaster.report.stage import HTML_FILE, PDF_FILE, XLSX_FILE
from capacity_forecaster.risk.stage import COMPARISON_COLUMNS
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import list_runs

PDFTOTEXT = shutil.which("pdftotext")
needs_pdftotext = pytest.mark.skipif(PDFTOTEXT is None, reason="poppler-utils (pdftotext) is not installed")
KEY = f"growth-{WHATIF_GROWTH:g}pct"
NAME = f"{KEY}: growth {WHATIF_GROWTH:+g} %/year"


def _pdf_text(path: Path) -> str:
    return subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def test_the_real_risk_stage_stored_a_comparison(whatif_report) -> None:
    lake, result = whatif_report
    comparison = lake.read_table("risk_comparison")
    assert list(comparison.columns)[1: len(COMPARISON_COLUMNS) + 1] == list(COMPARISON_COLUMNS)
    assert set(comparison["scenario"]) == {KEY}
    assert len(comparison) == 32 and (comparison["change"] == "worse").any()
    assert "risk_comparison" not in result.missing
    scenario = stored_scenario(load_report_data(lake, Settings()))
    assert scenario is not None and scenario.name == NAME
    assert sum(scenario.changes.values()) == len(comparison)


def test_workbook_what_if_sheet_matches_the_lake(whatif_report) -> None:
    lake, result = whatif_report
    comparison = lake.read_table("risk_comparison").drop(columns="scenario")
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    assert book.sheetnames == list(SHEETS) and "What-if" in SHEETS
    rows = list(book["What-if"].iter_rows(values_only=True))
    assert rows[0] == tuple(WHATIF_COLUMNS.values())
    assert len(rows) == len(comparison) + 1
    header = list(rows[0])
    changes = [r[header.index("Change")] for r in rows[1:]]
    assert changes == sorted(changes, key=CHANGE_ORDER.index)  # most affected first
    lake_rows = comparison.set_index(["server_id", "metric"])
    for row in rows[1:]:
        expected = lake_rows.loc[(row[0], row[header.index("Metric")])]
        assert row[header.index("Base risk")] == expected["base_risk_level"]
        assert row[header.index("Scenario risk")] == expected["scenario_risk_level"]
        for side in ("base", "scenario"):
            breach = row[header.index(f"{side.capitalize()} breach date")]
            want = expected[f"{side}_breach_ds"]
            assert (breach is None) if pd.isna(want) else pd.Timestamp(breach) == pd.Timestamp(want)
            probability = row[header.index(f"{side.capitalize()} breach probability")]
            assert probability == pytest.approx(expected[f"{side}_breach_probability"])
            savings = row[header.index(f"Server's {side} savings / month (USD)")]
            assert savings == pytest.approx(expected[f"{side}_monthly_savings"])
    summary = {r[0]: r[1:] for r in book["Summary"].iter_rows(values_only=True) if r and r[0]}
    assert summary["Scenario"][1] == NAME
    assert summary["Net savings per month"][1] == pytest.approx(
        comparison.groupby("server_id")["scenario_monthly_savings"].first().sum())
    formatting = load_workbook(report_file(result, XLSX_FILE))["What-if"].conditional_formatting
    assert len(next(iter(formatting)).rules) == 4  # rows coloured by the scenario's level


@needs_pdftotext
def test_pdf_has_a_what_if_page(whatif_report) -> None:
    lake, result = whatif_report
    text = _pdf_text(report_file(result, PDF_FILE))
    assert "What-if: base vs scenario" in text and f"Scenario {NAME}" in text
    assert f"This report shows the base; beside it, the what-if scenario \u201c{NAME}\u201d" in " ".join(text.split())
    worse = lake.read_table("risk_comparison").query("change == 'worse'").sort_values(
        "scenario_days_to_breach").iloc[0]
    assert f"{worse['server_id']} " in text and "Net savings per month" in text
    assert text.count("worse") >= 2  # the change column and the series summary


def test_html_has_a_what_if_section(whatif_report) -> None:
    _, result = whatif_report
    page = report_file(result, HTML_FILE).read_text(encoding="utf-8")
    section = page[page.index('<section id="what-if">'):]
    section = section[: section.index("</section>")]
    assert f"<b>{NAME}</b>" in section and "Base P(breach)" in section and "worse" in section
    assert f"This report shows the base; beside it, the what-if scenario \u201c{NAME}\u201d" in page


def test_dashboard_shows_the_stored_scenario_and_grows_the_base(whatif_report) -> None:
    lake, _ = whatif_report
    app = create_app(lake, Settings(), warm=False)
    state = app.state
    layout = str(app.layout)
    assert f"Stored what-if scenario: {NAME}" in layout and "What-if scenario" in layout
    rows = state.stored_scenarios.rows()
    assert len(rows) == len(lake.read_table("risk_comparison")) and rows[0]["change"] in ("added", "worse")
    # The table is served a page at a time, most affected first, filtered and sorted on the server.
    page, pages = state.scenario_page(None, 0, [], "")
    assert page == rows[:len(page)] and pages == -(-len(rows) // len(page))
    worse, _ = state.scenario_page(None, 0, [], "{change} = worse")
    assert worse and {r["change"] for r in worse} == {"worse"}
    # The risk table is the base (the lake's server_risk); at 0 % the slider equals it and the stored
    # scenario's base side.
    base = {(r["server_id"], r["metric"]): r for r in rows}
    table = {r["id"]: r for r in state.risk_rows(0.0)}
    for (server, metric), row in base.items():
        assert table[f"{server}|{metric}"]["whatif_level"] == row["base_risk_level"]
        assert table[f"{server}|{metric}"]["risk_level"] == row["base_risk_level"]
    labels = [label for label, _value, _note in state.kpi_values(WHATIF_GROWTH)]
    assert f"Servers at risk (growth {WHATIF_GROWTH:+g} %)" in labels
    _, facts = state.server_view(rows[0]["server_id"], rows[0]["metric"], 0.0)
    assert facts[f"Stored what-if {NAME}"].startswith(rows[0]["scenario_risk_level"])


def test_without_a_what_if_every_output_says_what_to_run(full_report) -> None:
    lake, result = full_report
    assert result.missing == {"risk_comparison": WHATIF_MISSING}
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    assert book["What-if"]["A1"].value == WHATIF_MISSING
    assert WHATIF_MISSING in report_file(result, HTML_FILE).read_text(encoding="utf-8")
    if PDFTOTEXT is not None:
        pdf = _pdf_text(report_file(result, PDF_FILE)).replace("\n", " ")
        # The executive page in plain words; the command in the appendix, for whoever runs the tool.
        assert "What-if: no growth scenario was stored with these runs" in pdf
        assert pdf.count(WHATIF_MISSING) == 1 and pdf.index(WHATIF_MISSING) > pdf.index("Appendix: assumptions")
    app = create_app(lake, Settings(), warm=False)
    assert WHATIF_MISSING in str(app.layout) and "Stored what-if scenario" not in str(app.layout)


def test_an_empty_comparison_counts_as_no_what_if(tmp_path: Path) -> None:
    lake = build_lake(tmp_path / "lake", stages=())
    lake.write_table("risk_comparison", pd.DataFrame({c: pd.Series(dtype=object) for c in COMPARISON_COLUMNS}),
                     validate=False)
    data = load_report_data(lake, Settings())
    assert data.table("risk_comparison") is None and data.missing["risk_comparison"] == WHATIF_MISSING
    assert stored_scenario(data) is None


FALSE_CLAIM = "show the scenario"


@needs_pdftotext
def test_every_output_says_the_risk_tables_stay_the_base(whatif_report) -> None:
    """The what-if is stored beside the base (docs/risk.md); no output may say the other pages show it."""
    _lake, result = whatif_report
    pdf = " ".join(_pdf_text(report_file(result, PDF_FILE)).split())
    page = html.unescape(report_file(result, HTML_FILE).read_text(encoding="utf-8"))
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    cells = " ".join(str(v) for ws in (book["Summary"], book["Assumptions"])
                     for row in ws.iter_rows(values_only=True) for v in row if v is not None)
    for text in (pdf, page, cells):
        assert FALSE_CLAIM not in text and "stored it as the lake's risk tables" not in text
        assert "stored it beside the base: the lake's risk tables" in text
    assert "every other page of this pack, stay the base" in pdf
    assert "every other section of this report, stay the base" in page


def test_report_of_an_unknown_scenario_exits_2_naming_the_stored_ones(
        whatif_report, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from capacity_forecaster.cli import main

    lake, _result = whatif_report
    copy = tmp_path / "lake"
    shutil.copytree(lake.uri, copy, ignore=shutil.ignore_patterns("reports"))
    reports_before = len(list_runs(Lake.open(str(copy)), "report"))
    code = main(["report", "--scenario", "nosuch", "--formats", "png", "--lake", str(copy), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "unknown what-if scenario 'nosuch'" in err and f"stored scenarios: {KEY}" in err
    assert not (copy / "reports").exists()
    # A usage error, not a failed report: no run recorded for the later reports to cite.
    assert len(list_runs(Lake.open(str(copy)), "report")) == reports_before
    # A stored name still works.
    assert main(["report", "--scenario", KEY, "--formats", "png", "--lake", str(copy), "--quiet"]) == 0


def test_report_of_a_scenario_on_a_lake_without_any_says_what_to_run(full_report, tmp_path: Path) -> None:
    from capacity_forecaster.errors import ConfigError
    from capacity_forecaster.report.stage import run_report

    lake, _result = full_report
    with pytest.raises(ConfigError, match="unknown what-if scenario 'nosuch'.*no stored what-if.*capfc risk --growth"):
        run_report(lake, Settings.model_validate({"report": {"scenario": "nosuch"}}))


def test_a_ramped_growth_rate_says_what_it_adds_by_the_end_of_the_forecast() -> None:
    """helper-50: +20 %/year changed nothing on a 30-day horizon, and the pack did not say why."""
    from capacity_forecaster.report.comparison import growth_note

    assert growth_note({"growth_pct": 20.0, "growth_ramp": True}, 30) == (
        " (about +1.5 % by the end of the 30-day forecast)")
    assert growth_note({"growth_pct": 20.0, "growth_ramp": False}, 30) == ""  # a step: the label says it all
    assert growth_note({"growth_pct": None}, 30) == "" and growth_note({"growth_pct": 20.0}, None) == ""


def _stale_unpriced_comparison() -> ReportData:
    """A stored what-if of three unpriced servers: s1 critical now and worse under growth, s2 stale (critical as of
    its last data, 15 days silent), s3 kept."""
    import datetime as dt

    def side(levels: list[str], days: list[float], p: list[float], actions: list[str]) -> dict[str, list]:
        return {"risk_level": levels, "breach_ds": pd.to_datetime(["2013-09-20", "2013-08-28", None]),
                "days_to_breach": days, "breach_probability": p, "action": actions,
                "monthly_savings": [None, None, None]}

    base = side(["high", "critical", "low"], [10, 1, None], [0.6, 0.9, 0.01], ["upsize", "keep", "keep"])
    grown = side(["critical", "critical", "low"], [5, 1, None], [0.9, 0.9, 0.02], ["upsize", "keep", "keep"])
    comparison = pd.DataFrame({"scenario": "growth-50pct", "server_id": ["s1", "s2", "s3"], "metric": "cpu",
                               **{f"base_{k}": v for k, v in base.items()},
                               **{f"scenario_{k}": v for k, v in grown.items()},
                               "change": ["worse", "unchanged", "unchanged"]})
    risk = pd.DataFrame({"server_id": ["s1", "s2", "s3"], "metric": "cpu", "risk_level": ["high", "critical", "low"],
                         "status": ["assessed", "stale", "assessed"], "days_over_recent": 0,
                         "last_over_ds": pd.NaT, "stale_since": pd.to_datetime([None, "2013-08-27", None]),
                         "last_observed": pd.to_datetime(["2013-09-11", "2013-08-27", "2013-09-11"]),
                         "breach_probability": [0.6, 0.9, 0.01],
                         "likely_breach_ds": pd.to_datetime(["2013-09-15", None, None])})
    inventory = pd.DataFrame({"server_id": ["s1", "s2", "s3"], "hostname": None, "application": None})
    return ReportData("lake", Settings(), dt.datetime.now(dt.UTC),
                      tables={"risk_comparison": comparison, "server_risk": risk, "inventory": inventory})


def test_a_what_if_counts_no_stale_series_at_risk_and_no_unpriced_dollar() -> None:
    """helper-73 (fastStorage +50 %): the what-if totals read 10 servers at risk beside the headline's 8 (2 stale
    not counted), a stale VM's row "breach 2013-08-28, P 90 %", and kept servers "$0" in a fleet without prices."""
    from capacity_forecaster.report.comparison import (
        shown_levels,
        side_level,
        side_probability,
        side_savings,
        side_when,
    )
    from capacity_forecaster.report.dashboard_scenarios import ScenarioStore

    scenario = stored_scenario(_stale_unpriced_comparison())
    assert scenario is not None
    totals = {t.measure: (t.base_text, t.scenario_text) for t in scenario.totals}
    assert totals["Servers at risk (medium or worse)"] == ("1", "1")
    assert totals["Critical servers"] == ("0", "1")
    assert totals["Series at risk (medium or worse)"] == ("1", "1")
    assert totals["Earliest breach"] == ("2013-09-20 (s1 cpu)", "2013-09-20 (s1 cpu)")
    assert totals["Net savings per month"] == ("not priced", "not priced")
    # s1's breach is likely before its median crosses: the what-if rows say so, as the risk tables (helper-74).
    assert side_when(scenario.rows.set_index("server_id").loc["s1"].to_dict(), "base") == "likely by 2013-09-15"
    stale = scenario.rows.set_index("server_id").loc["s2"].to_dict()
    assert side_level(stale, "base") == ("stale", "stale (critical)")
    assert side_when(stale, "scenario") == "no data since 2013-08-27" and side_probability(stale, "base") == "-"
    assert side_savings(stale, "base") == "not priced"
    shown = shown_levels(scenario.rows).set_index("server_id")
    assert shown.loc["s2", "scenario_risk_level"] == "stale (critical)"
    assert pd.isna(shown.loc["s2", "scenario_breach_probability"])
    frame = ScenarioStore(_stale_unpriced_comparison()).frame().set_index("server_id")
    assert frame.loc["s2", "base_breach_ds"] == "no data since 2013-08-27"
    assert frame.loc["s2", "base_risk_level"] == "stale (critical)"
    assert pd.isna(frame.loc["s3", "base_monthly_savings"])
    # The text cells sort by their day (a stale one last) and levels by severity (helper-74).
    from capacity_forecaster.report.dashboard_table import apply_sort

    ordered = apply_sort(frame.reset_index(), [{"column_id": "base_breach_ds", "direction": "asc"}], frame.columns)
    assert ordered["server_id"].tolist()[:1] == ["s1"] and ordered["server_id"].tolist()[-1] in ("s2", "s3")
    worst = apply_sort(frame.reset_index(), [{"column_id": "base_risk_level", "direction": "desc"}], frame.columns)
    assert worst["server_id"].tolist() == ["s2", "s1", "s3"]  # stale (critical), high, low
    assert not [k for k in ScenarioStore(_stale_unpriced_comparison()).rows()[0] if k.startswith("_sort_")]
