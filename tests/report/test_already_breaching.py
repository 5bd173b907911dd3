"""A series already over its threshold breaches "now" on every report surface, however far out its forecast crosses."""

from __future__ import annotations

import html
import shutil
import subprocess

import pandas as pd
import pytest
from matplotlib.text import Text
from openpyxl import load_workbook
from report_lake import BREACHING, END, report_file

from capacity_forecaster.config import Settings
from capacity_forecaster.report import style
from capacity_forecaster.report.comparison import EARLIEST, stored_scenario
from capacity_forecaster.report.data import load_report_data
from capacity_forecaster.report.forecast_chart import forecast_panels
from capacity_forecaster.report.risks import ranked_risks, reported_breaches
from capacity_forecaster.report.stage import HTML_FILE, PDF_FILE, XLSX_FILE

PDFTOTEXT = shutil.which("pdftotext")
needs_pdftotext = pytest.mark.skipif(PDFTOTEXT is None, reason="poppler-utils (pdftotext) is not installed")
SERVER, METRIC = BREACHING
LAST_OVER = END.date().isoformat()
NOW = f"now ({SERVER} {METRIC})"


def _forecast_crossing(lake) -> str:
    risk = lake.read_table("server_risk")
    row = risk[(risk["server_id"] == SERVER) & (risk["metric"] == METRIC)].iloc[0]
    assert row["status"] == "already_breaching" and pd.Timestamp(row["last_over_ds"]).date() == END.date()
    crossing = row["forecast_breach_ds"] if "forecast_breach_ds" in risk.columns else row["breach_ds"]
    assert pd.Timestamp(crossing) > END + pd.Timedelta(days=30)  # the forecast crosses late
    return pd.Timestamp(crossing).date().isoformat()


def test_summary_and_what_if_mean_the_same_earliest_breach(breaching_report) -> None:
    lake, result = breaching_report
    _forecast_crossing(lake)
    kpi = next(k for k in result.kpis if k.key == "earliest_breach")
    assert kpi.text == "now" and kpi.note.startswith(f"{SERVER} {METRIC}")
    scenario = stored_scenario(load_report_data(lake, Settings()))
    assert scenario is not None
    earliest = next(t for t in scenario.totals if t.measure == EARLIEST)
    assert (earliest.base, earliest.base_text, earliest.scenario_text) == (0.0, NOW, NOW)
    row = scenario.rows[(scenario.rows["server_id"] == SERVER) & (scenario.rows["metric"] == METRIC)].iloc[0]
    assert row["base_status"] == row["scenario_status"] == "already_breaching"
    assert row["base_days_to_breach"] == row["scenario_days_to_breach"] == 0


def test_forecast_chart_panel_says_already_breaching(breaching_report) -> None:
    lake, _result = breaching_report
    crossing = _forecast_crossing(lake)
    data = load_report_data(lake, Settings())
    from capacity_forecaster.report.data import load_history

    history = load_history(lake, [BREACHING], None)
    with style.report_style():
        texts = [t.get_text() for t in forecast_panels(data, history).findobj(Text)]
    assert any(t.startswith(f"High risk: already breaching (last over {LAST_OVER})")
               or f"already breaching (last over {LAST_OVER})" in t for t in texts)
    assert f"last over {LAST_OVER}" in texts
    assert not any(crossing in t for t in texts)


def test_html_drop_down_and_tables_say_now(breaching_report) -> None:
    lake, result = breaching_report
    crossing = _forecast_crossing(lake)
    page = html.unescape(report_file(result, HTML_FILE).read_text(encoding="utf-8"))
    body = page[: page.index('<script type="text/plain" id="plotly-js">')]
    assert f"<option value=\"figure-3\">{SERVER} {METRIC}: high, already breaching (last over {LAST_OVER})" in body \
        or f"{SERVER} {METRIC}: high, already breaching (last over {LAST_OVER})</option>" in body
    assert f"{SERVER} {METRIC}: high, breach {crossing}" not in page
    what_if = body[body.index('<section id="what-if">'):]
    assert f"{EARLIEST}</td><td class=\"num\">{NOW}</td><td class=\"num\">{NOW}</td>" in what_if


@needs_pdftotext
def test_pdf_what_if_table_says_now(breaching_report) -> None:
    lake, result = breaching_report
    crossing = _forecast_crossing(lake)
    text = subprocess.run([PDFTOTEXT, "-layout", str(report_file(result, PDF_FILE)), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout
    flat = " ".join(text.split())
    assert f"{EARLIEST} {NOW} {NOW}" in flat
    assert "earliest breach now" in flat
    assert crossing not in flat  # neither the what-if tables nor the top risks name the forecast crossing


def test_workbook_sheets_say_now(breaching_report) -> None:
    lake, result = breaching_report
    crossing = _forecast_crossing(lake)
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    for sheet in ("At-risk servers", "All series"):
        rows = list(book[sheet].iter_rows(values_only=True))
        head = rows[0]
        row = next(dict(zip(head, r, strict=True)) for r in rows[1:] if r[0] == SERVER and METRIC in r)
        assert row["Status"] == "already breaching"  # the lake's already_breaching, as people read it
        assert row["Breach date (already breaching: last day over)"].date().isoformat() == LAST_OVER
        assert row["Days to breach"] == 0
        assert row["Forecast breach date"].date().isoformat() == crossing
    summary = {r[0]: r[1:] for r in book["Summary"].iter_rows(values_only=True) if r and r[0]}
    assert summary[EARLIEST][:2] == (NOW, NOW)
    # The servers by level (and the stale or unassessed rest) add up to the fleet.
    rows = ("Critical", "High", "Medium", "Low", "Stale", "Not assessed")
    assert sum(summary[name][0] for name in rows if name in summary) == len(lake.read_table("inventory"))
    what_if = list(book["What-if"].iter_rows(values_only=True))
    row = next(dict(zip(what_if[0], r, strict=True)) for r in what_if[1:] if r[0] == SERVER and METRIC in r)
    assert row["Base status"] == row["Scenario status"] == "already breaching"
    assert row["Base days to breach"] == row["Scenario days to breach"] == 0


def test_reported_breaches_accepts_the_risk_stage_convention_to_come(breaching_report) -> None:
    """Once the risk stage writes breach_ds = last_over_ds, days 0 and forecast_breach_ds itself, nothing changes."""
    lake, _result = breaching_report
    ranked = ranked_risks(load_report_data(lake, Settings()))
    today = reported_breaches(ranked)
    future = reported_breaches(today)  # the new layout: forecast_breach_ds present, breach_ds already moved
    columns = ["breach_ds", "days_to_breach", "forecast_breach_ds"]
    pd.testing.assert_frame_equal(today[columns], future[columns])
    now = today[today["status"] == "already_breaching"]
    assert len(now) == 1 and (now["breach_ds"] == pd.Timestamp(LAST_OVER)).all()


def test_a_stale_series_reads_no_data_since_its_last_day_never_a_past_breach_date() -> None:
    from capacity_forecaster.report.risks import breach_phrase, breach_when

    row = {"status": "stale", "last_observed": pd.Timestamp("2013-09-29"), "breach_ds": pd.Timestamp("2013-09-29"),
           "days_to_breach": 0}
    assert breach_when(row) == ("no data since 2013-09-29", "-")
    assert breach_phrase(row) == "stale: no data since 2013-09-29"
    assert breach_when({**row, "status": "assessed"}) == ("2013-09-29", "0")


def test_servers_left_out_of_the_level_counts_are_counted_apart() -> None:
    """fastStorage's Summary sheet read Critical 6, Low 42 for 50 servers: two stale servers were nowhere."""
    from capacity_forecaster.report.risks import level_counts, unlevelled_counts

    ranked = pd.DataFrame({"server_id": ["a", "b", "b", "c"], "metric": ["cpu", "cpu", "memory", "cpu"],
                           "risk_level": ["critical", "high", "low", "critical"],
                           "status": ["assessed", "stale", "assessed", "stale"]})
    levels = level_counts(ranked)
    assert levels["critical"] == 1 and levels["low"] == 1  # b counts by its live memory series
    assert unlevelled_counts(ranked, fleet=5) == {"stale": 1, "not assessed": 2}  # c; d and e have no level
    assert sum(levels.values()) + sum(unlevelled_counts(ranked, fleet=5).values()) == 5


def test_a_likely_breach_without_a_median_crossing_is_said_not_denied() -> None:
    """helper-46: "RTM-PAY-02 cpu: critical, no breach forecast in the horizon" at P 59 %: the median stays under,
    the intervals make the breach likely by a day, and the level rests on that day."""
    from capacity_forecaster.report.risks import breach_phrase

    row = {"status": "assessed", "breach_ds": None, "likely_breach_ds": pd.Timestamp("2024-12-17")}
    assert breach_phrase(row) == "breach likely by 2024-12-17 (median stays under)"
    assert breach_phrase({**row, "likely_breach_ds": pd.NaT}) == "no breach forecast in the horizon"
    from capacity_forecaster.report.risks import breach_when

    assert breach_when(row) == ("likely by 2024-12-17", "-")  # the tables say it too
    assert breach_phrase({**row, "breach_ds": pd.Timestamp("2024-12-07"), "days_to_breach": 7},
                         with_day=True) == "breach 2024-12-07, day 7"
    # helper-73: a what-if at +50 % read "critical, 2014-03-05" (its median's crossing) beside the base's "high,
    # likely by 2013-10-31", as if growth put the breach off; the likely day came first (2013-10-28).
    later = {**row, "breach_ds": pd.Timestamp("2025-03-05"), "days_to_breach": 85}
    assert breach_when(later) == ("likely by 2024-12-17", "-")
    assert breach_phrase(later) == "breach likely by 2024-12-17 (median crosses 2025-03-05)"


def test_a_stale_series_reads_stale_in_the_risk_tables_and_its_probability_is_not_shown() -> None:
    """helper-69: fastStorage's stale VMs read "critical, P(breach) 88 %, keep" in the PDF and HTML top risks."""
    from capacity_forecaster.report.risks import table_level, table_probability

    row = {"status": "stale", "risk_level": "critical", "breach_probability": 0.88}
    assert table_level(row) == ("stale", "stale (critical)") and table_probability(row) == "-"
    live = {**row, "status": "assessed"}
    assert table_level(live) == ("critical", "critical") and table_probability(live) == "88%"


def test_the_risk_chart_counts_every_server_stale_ones_apart() -> None:
    """helper-69: fastStorage's chart had 48 bars under "50 servers" and its 2 stale series among the critical."""
    import datetime as dt

    from matplotlib.patches import Rectangle

    from capacity_forecaster.report.charts import risk_distribution
    from capacity_forecaster.report.data import ReportData

    risk = pd.DataFrame({"server_id": ["a", "b", "c"], "metric": "cpu", "risk_level": ["critical", "critical", "low"],
                         "status": ["assessed", "stale", "assessed"], "breach_ds": pd.NaT, "days_to_breach": None,
                         "breach_probability": [0.9, 0.9, 0.0], "peak_yhat": 50.0})
    fig = risk_distribution(ReportData("lake", Settings(), dt.datetime.now(dt.UTC), tables={"server_risk": risk}))
    left, right = fig.axes[:2]
    bars = {t.get_text(): p.get_width() for t, p in zip(left.get_yticklabels(),
                                                        [p for p in left.patches if isinstance(p, Rectangle)],
                                                        strict=True)}
    assert bars == {"Critical": 1, "High": 0, "Medium": 0, "Low": 1, "Stale": 1}
    assert "Stale" in [t.get_text() for t in right.get_legend().get_texts()]
