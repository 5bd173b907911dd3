"""An inventory without monthly costs (the Bitbrains example): every output says "not priced", never $0."""

from __future__ import annotations

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
from capacity_forecaster.report.charts import savings_chart
from capacity_forecaster.report.comparison import stored_scenario, totals
from capacity_forecaster.report.data import load_report_data
from capacity_forecaster.report.figures import savings_bar
from capacity_forecaster.report.stage import HTML_FILE, PDF_FILE, XLSX_FILE

PDFTOTEXT = shutil.which("pdftotext")
needs_pdftotext = pytest.mark.skipif(PDFTOTEXT is None, reason="poppler-utils (pdftotext) is not installed")
# "$0" as a whole amount ("$0", "-$0", "+$0"), not the start of "$0.50" or "$05".
ZERO_DOLLARS = re.compile(r"\$0(?![\d.,])")


def _pdf_text(path: Path) -> str:
    return subprocess.run([PDFTOTEXT, "-layout", str(path), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def test_the_fixture_has_no_prices(unpriced_report) -> None:
    lake, _result = unpriced_report
    recs = lake.read_table("recommendations")
    assert recs["current_monthly_cost"].isna().all() and recs["monthly_savings"].isna().all()


def test_kpis_say_not_priced_and_count_the_priced_servers(unpriced_report) -> None:
    _lake, result = unpriced_report
    by = {k.key: k for k in result.kpis}
    for key in ("fleet_cost", "net_savings", "annual_savings"):
        assert by[key].value is None and by[key].text == "not priced"
    assert by["fleet_cost"].note.startswith("0 of 8 servers priced")


@needs_pdftotext
def test_pdf_has_no_zero_dollar_claims(unpriced_report) -> None:
    _lake, result = unpriced_report
    text = " ".join(_pdf_text(report_file(result, PDF_FILE)).split())
    assert not ZERO_DOLLARS.search(text), ZERO_DOLLARS.findall(text)
    assert "0 of 8 servers priced" in text and not re.search(r"(?<!of )\d+ servers priced", text)
    assert "Savings are not priced (no monthly cost in the inventory)" in text
    assert "upsizes add" not in text and "No recommendation saves money" not in text
    assert "savings not priced (no monthly cost in the inventory)" in text  # the what-if headline


def test_html_has_no_zero_dollar_claims(unpriced_report) -> None:
    _lake, result = unpriced_report
    page = report_file(result, HTML_FILE).read_text(encoding="utf-8")
    body = page[: page.index('<script type="text/plain" id="plotly-js">')]
    assert not ZERO_DOLLARS.search(body), ZERO_DOLLARS.findall(body)
    assert "Savings not priced: no monthly cost in the inventory" in body  # the savings chart's panel
    assert "<td>not priced</td>" in body or 'class="num">not priced' in body  # the recommendations table


def test_workbook_stores_no_zero_savings(unpriced_report) -> None:
    _lake, result = unpriced_report
    rows = list(load_workbook(report_file(result, XLSX_FILE), read_only=True)["Summary"].iter_rows(values_only=True))
    rows = [r for r in rows if r and r[0] is not None]
    kpis = {r[0]: r[1] for r in rows if len(r) > 1}
    for label in ("Fleet cost per month", "Net savings per year"):
        assert kpis[label] == "not priced"
    first = [r[0] for r in rows].index("Savings by action")
    actions = rows[first + 1: [r[0] for r in rows].index("What-if scenario")]
    assert actions and all(r[2] == "not priced" for r in actions)
    net = [r[1:3] for r in rows if r[0] == "Net savings per month"]
    assert net[0][0] == "not priced"  # the KPI
    assert net[-1] == ("not priced", "not priced")  # base and scenario totals of the what-if


def test_savings_charts_say_not_priced(unpriced_report) -> None:
    lake, _result = unpriced_report
    data = load_report_data(lake, Settings())
    with style.report_style():
        texts = _texts(savings_chart(data))
    assert any("not priced" in t for t in texts) and not any(ZERO_DOLLARS.search(t) for t in texts)
    fig = savings_bar(data.table("recommendations"))
    assert not fig.data and "not priced" in fig.layout.annotations[0].text


def test_what_if_totals_say_not_priced(unpriced_report) -> None:
    lake, _result = unpriced_report
    scenario = stored_scenario(load_report_data(lake, Settings()))
    assert scenario is not None
    savings = next(t for t in scenario.totals if t.measure == "Net savings per month")
    assert (savings.base, savings.scenario, savings.base_text, savings.scenario_text) == (
        None, None, "not priced", "not priced")


def test_money_in_chart_text_is_never_mathtext(full_report) -> None:
    """Two "$" in one matplotlib text used to become mathtext ("Net 0*permonth*, 0 per year")."""
    lake, _result = full_report
    data = load_report_data(lake, Settings())
    with style.report_style():
        two = style.new_figure(4, 2, "Savings", "Net $0 per month, $0 per year")
        money = [t for fig in (two, savings_chart(data)) for t in fig.findobj(Text) if "$" in t.get_text()]
        assert any(t.get_text().count("$") == 2 for t in money)
        assert all(not t._preprocess_math(t.get_text())[1] for t in money)


def test_workbook_tables_say_not_priced_never_0(unpriced_report) -> None:
    """Decommission rows showed "Projected cost $0" and the Sizing options "Cost / month $0" beside an unknown
    cost today."""
    _lake, result = unpriced_report
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    for sheet, columns in (("Recommendations", ("Current cost / month (USD)", "Projected cost / month (USD)",
                                                "Savings / month (USD)")),
                           ("Sizing options", ("Cost / month (USD)", "Cost difference / month (USD)"))):
        rows = list(book[sheet].iter_rows(values_only=True))
        kinds = {r[rows[0].index("Action" if sheet == "Recommendations" else "Kind")] for r in rows[1:]}
        assert kinds & {"decommission", "consolidate"}, (sheet, kinds)  # the rows that showed $0
        for name in columns:
            values = [r[rows[0].index(name)] for r in rows[1:]]
            assert values and all(v == "not priced" for v in values), (sheet, name, values)


def _side_rows(actions: list[str], savings: list[float]) -> pd.DataFrame:
    n = len(actions)
    side = {"risk_level": ["low"] * n, "code": [0] * n, "action": actions, "monthly_savings": savings,
            "status": ["assessed"] * n, "days_over_recent": [0] * n, "days_to_breach": [None] * n,
            "breach_probability": [0.0] * n, "breach_ds": [pd.NaT] * n}
    return pd.DataFrame({"server_id": [f"s{i}" for i in range(n)], "metric": ["cpu"] * n,
                         **{f"{s}_{k}": v for s in ("base", "scenario") for k, v in side.items()}})


@pytest.mark.parametrize(("actions", "savings", "want"), [
    (["keep", "keep", "upsize"], [0.0, 0.0, float("nan")], (None, "not priced")),  # kept servers save $0 anyway
    (["keep", "keep"], [0.0, 0.0], (0.0, "$0")),  # nothing to do: nothing saved, priced or not
    (["keep", "rightsize", "upsize"], [0.0, 120.0, float("nan")], (120.0, "$120")),  # the priced part
])
def test_what_if_net_savings_are_not_priced_when_no_action_is(actions, savings, want) -> None:
    net = next(t for t in totals(_side_rows(actions, savings)) if t.measure == "Net savings per month")
    assert (net.base, net.base_text) == want and (net.scenario, net.scenario_text) == want


@needs_pdftotext
def test_pdf_lists_the_actions_instead_of_an_empty_savings_chart(unpriced_report) -> None:
    lake, result = unpriced_report
    recs = lake.read_table("recommendations")
    acting = recs[recs["action"] != "keep"]
    assert len(acting)
    text = " ".join(_pdf_text(report_file(result, PDF_FILE)).split())
    assert "Recommended actions" in text
    assert f"{len(acting)} servers with a recommended action" in text or "1 server with a recommended action" in text
    first = acting.iloc[0]
    assert f"{first['server_id']} {first['action']}" in text
    # No consolidation here: no blank Target column (helper-50: blank on every real lake).
    assert ("Server Action Cores Memory (GB) Rationale" in text) == (not acting["target_server_id"].notna().any())


def test_unpriced_savings_sentence_names_only_the_actions_taken() -> None:
    from capacity_forecaster.report.summary import savings_sentence

    recs = pd.DataFrame({"server_id": [f"s{i}" for i in range(10)], "action": ["upsize"] * 8 + ["keep"] * 2,
                         "current_monthly_cost": float("nan"), "monthly_savings": [float("nan")] * 8 + [0.0] * 2})
    assert savings_sentence(recs) == ("Recommended actions (servers): 8 upsize, 2 keep. Savings are not priced "
                                      "(no monthly cost in the inventory).")
    # Priced, with upsizing outweighing the savings: "cost $493 more", not "save -$493" (helper-46).
    priced = recs.assign(current_monthly_cost=100.0, monthly_savings=[-61.675] * 8 + [0.0] * 2)
    assert savings_sentence(priced).startswith("Recommended actions cost $493 more per month net (49.3 % of fleet "
                                               "cost)")


@pytest.mark.parametrize(("hostnames", "want"), [(["", None], ["Server", "Action"]),
                                                  (["web-01", ""], ["Server", "Hostname", "Action"])])
def test_workbook_leaves_out_name_columns_that_tell_nothing(tmp_path, hostnames, want) -> None:
    from openpyxl import Workbook

    from capacity_forecaster.report.sheets import write_frame

    frame = pd.DataFrame({"server_id": ["a", "b"], "hostname": hostnames, "application": "unknown",
                          "action": ["keep", "upsize"]})
    workbook = Workbook(write_only=True)
    ws = workbook.create_sheet("Recommendations")
    columns = {"server_id": "Server", "hostname": "Hostname", "application": "Application", "action": "Action"}
    assert write_frame(ws, frame, columns, "Recs") == [{"Server": "server_id", "Hostname": "hostname",
                                                        "Action": "action"}[h] for h in want]
    workbook.save(tmp_path / "x.xlsx")
    rows = list(load_workbook(tmp_path / "x.xlsx", read_only=True)["Recommendations"].iter_rows(values_only=True))
    assert list(rows[0]) == want and len(rows) == 3


@needs_pdftotext
def test_pdf_contents_name_the_actions_page_when_nothing_is_priced(unpriced_report) -> None:
    _lake, result = unpriced_report
    text = " ".join(_pdf_text(report_file(result, PDF_FILE)).split())
    contents = text[text.index("In this pack"):][:300]
    assert "Recommended actions" in contents and "Savings" not in contents


def test_capacity_by_group_leaves_out_dimensions_the_inventory_does_not_know() -> None:
    import datetime as dt

    from capacity_forecaster.report.capacity import capacity_rows
    from capacity_forecaster.report.data import ReportData

    def table(groups: dict[str, str]) -> pd.DataFrame:
        return pd.DataFrame({"group_by": list(groups), "group": list(groups.values()), "servers": 14,
                             "servers_at_risk": 2, "days_remaining": 0.0,
                             "earliest_breach_ds": pd.Timestamp("2013-08-30"),
                             "earliest_breach": "bitbrains-407 cpu", "free_cpu_cores": 3.0, "free_memory_gb": 10.0,
                             "reclaimable_cpu_cores": 7.0, "reclaimable_memory_gb": 24.6})

    def rows(groups: dict[str, str]) -> list[str]:
        data = ReportData("lake", Settings(), dt.datetime.now(dt.UTC), tables={"capacity_by_group": table(groups)})
        return capacity_rows(data)["group_by"].tolist()

    # Bitbrains: one datacenter, environment and application unknown: one row, not three equal ones.
    assert rows({"datacenter": "bitbrains", "environment": "unknown", "application": "unknown"}) == ["datacenter"]
    # Every dimension unknown: one row says what the fleet has, not the same fleet per dimension (helper-50).
    assert rows({"datacenter": "unknown", "environment": "unknown"}) == ["datacenter"]
    # Servers at risk without a forecast crossing are said, not "none" (helper-69: the demo's advisor-portal).
    quiet = table({"datacenter": "ams"}).assign(days_remaining=None, earliest_breach_ds=pd.NaT, earliest_breach=None)
    said = capacity_rows(ReportData("lake", Settings(), dt.datetime.now(dt.UTC), tables={"capacity_by_group": quiet}))
    assert said["time_remaining"].tolist() == ["no crossing forecast (2 at risk: see their reasons)"]
    # Datacenters, environments, then applications in every output (helper-69: the HTML put applications first).
    assert rows({"application": "shop", "environment": "prod", "datacenter": "ams"}) == [
        "datacenter", "environment", "application"]


def test_the_dashboard_says_not_priced_too(unpriced_report) -> None:
    # helper-41: the dashboard's KPI card and Recommendations heading said "$0" where the packs said "not priced".
    from capacity_forecaster.report.dashboard_layout import savings_view
    from capacity_forecaster.report.dashboard_state import DashboardState

    lake, _result = unpriced_report
    state = DashboardState(lake, Settings())
    cards = {label: (value, note) for label, value, note in state.kpi_values(0.0)}
    assert cards["Net savings / month"] == ("not priced", "no monthly cost in the inventory")
    _figure, heading = savings_view(state, 0.0)
    assert heading.endswith("net savings not priced (no monthly cost in the inventory)")
    rows, _pages = state.savings_page(0.0, 0, [], "")
    assert all(row["monthly_savings"] is None for row in rows)
    assert not any(ZERO_DOLLARS.search(f"{value}") for value, _note in cards.values())


def test_workbook_text_columns_are_as_wide_as_their_values(tmp_path) -> None:
    # helper-41: the Server column was 11 characters wide for ids of 13-17.
    from openpyxl import Workbook

    from capacity_forecaster.report.sheets import FIT_MAX_WIDTH, write_frame

    frame = pd.DataFrame({"server_id": ["bitbrains-fs-1001", "a"], "action": ["keep", "upsize"],
                          "rationale": ["x" * 300, "y"]})
    workbook = Workbook()
    ws = workbook.active
    write_frame(ws, frame, {"server_id": "Server", "action": "Action", "rationale": "Rationale"}, "Recs",
                widths={"rationale": 80})
    assert ws.column_dimensions["A"].width == len("bitbrains-fs-1001") + 2
    assert ws.column_dimensions["B"].width == 11  # short values: the header's width
    assert ws.column_dimensions["C"].width == 80 > FIT_MAX_WIDTH  # a given width wins
    # ... where it is wider: a given 20 no longer cuts a 44-character "first to breach" (helper-69).
    ws = workbook.create_sheet("Narrow")
    write_frame(ws, frame, {"server_id": "Server"}, "Narrow", widths={"server_id": 5})
    assert ws.column_dimensions["A"].width == len("bitbrains-fs-1001") + 2


def test_the_forecast_sheet_fits_its_ids() -> None:
    """helper-69: NAB's 40-character ids and 'seasonal_naive' sat in 11-character columns of Forecast data."""
    from openpyxl import Workbook

    from capacity_forecaster.report.sheets import FIT_MAX_WIDTH, fitted_widths, header

    frame = pd.DataFrame({"server_id": ["nab-cpu_utilization_asg_misconfiguration"], "model": ["seasonal_naive"],
                          "yhat": [1.0]})
    ws = Workbook().active
    header(ws, frame.columns, {"server_id": "Server", "model": "Model", "yhat": "Forecast"}, fitted_widths(frame))
    assert ws.column_dimensions["A"].width == FIT_MAX_WIDTH
    assert ws.column_dimensions["B"].width == len("seasonal_naive") + 2


def test_partly_priced_upsizes_say_how_many_are_priced_everywhere(report_lake) -> None:
    """helper-52 (Rnd with 8 of 14 servers priced): '6 servers, -$120' and 'upsizing (6 upsizes) adds $120' while
    only 2 upsizes had a cost, in the charts, the PDF sentence, the workbook and the dashboard card."""
    import dataclasses
    import io

    from capacity_forecaster.config import Settings
    from capacity_forecaster.report.dashboard_recs import Savings, savings_cards
    from capacity_forecaster.report.data import load_report_data
    from capacity_forecaster.report.excel import build_workbook
    from capacity_forecaster.report.summary import savings_sentence
    from capacity_forecaster.report.text import action_savings_text, savings_by_action

    recs = pd.DataFrame({"server_id": [f"s{i}" for i in range(8)], "action": ["upsize"] * 6 + ["rightsize"] * 2,
                         "current_monthly_cost": [100.0, 100.0, None, None, None, None, 200.0, None],
                         "monthly_savings": [-60.0, -60.0, None, None, None, None, 100.0, None]})
    grouped = savings_by_action(recs)
    assert grouped.loc["upsize"].tolist() == [6, 2, -120.0] and grouped.loc["rightsize"].tolist() == [2, 1, 100.0]
    assert action_savings_text(6, 2, -120.0) == "6 servers, -$120 (2 priced)"
    assert action_savings_text(2, 2, 100.0) == "2 servers, +$100"
    assert "upsizing (6 upsizes, 2 priced) adds $120 per month" in savings_sentence(recs)
    assert savings_cards(Savings.of(recs), Savings.of(recs), 0.0)[0][2].endswith("priced servers only (3 of 8)")
    data = load_report_data(report_lake, Settings())
    stored = data.table("recommendations")
    assert stored is not None
    mixed = stored.head(8).assign(**{c: recs[c].to_numpy() for c in recs.columns if c != "server_id"})
    data = dataclasses.replace(data, tables={**data.tables, "recommendations": mixed})
    rows = list(load_workbook(io.BytesIO(build_workbook(data)), read_only=True)["Summary"].iter_rows(values_only=True))
    upsize = next(r for r in rows if r and r[0] == "Upsize")
    assert list(upsize[:4]) == ["Upsize", 6, -120.0, "2 of 6 priced"]


def test_prices_say_which_sizes_are_unknown_not_nan() -> None:
    """helper-66: an inventory with costs and cores but no memory read "$nan per GB of memory" (and two numpy
    warnings)."""
    import datetime as dt
    import warnings

    from capacity_forecaster.report.data import ReportData
    from capacity_forecaster.report.summary import assumptions

    inventory = pd.DataFrame({"server_id": ["a", "b", "c"], "cpu_cores": [4.0, 8.0, None],
                              "memory_gb": [None, None, None], "monthly_cost_usd": [100.0, 300.0, None]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows = {a: (v, n) for a, v, n in assumptions(ReportData("lake", Settings(), dt.datetime.now(dt.UTC),
                                                                tables={"inventory": inventory}))}
    assert rows["Prices"] == ("$400 per month for the priced servers", "from the inventory; median $31 per core, "
                              "no memory sizes; 1 of 3 servers has no cost")


def test_long_names_are_cut_in_the_middle_to_fit_an_axis() -> None:
    """helper-69: NAB's heatmap rows lost the start of their ids at the figure's left edge."""
    from capacity_forecaster.report.text import fitted

    name = "nab-cpu_utilization_asg_misconfiguration"
    assert fitted(name, 27) == "nab-cpu_utili\u2026configuration" and len(fitted(name, 27)) == 27
    assert fitted("srv-0001", 27) == "srv-0001"


def test_unpriced_actions_say_what_they_free() -> None:
    """helper-69: Bitbrains (no prices) read only "not priced" on page 1; its 7 cores and 24.6 GB came on page 5."""
    from capacity_forecaster.report.summary import savings_sentence

    recs = pd.DataFrame({"server_id": ["a", "b", "c"], "action": ["decommission", "rightsize", "upsize"],
                         "current_monthly_cost": None, "monthly_savings": None, "freed_cpu_cores": [4.0, 2.0, 0.0],
                         "freed_memory_gb": [16.0, 8.6, 0.0]})
    assert savings_sentence(recs).endswith(
        "Savings are not priced (no monthly cost in the inventory); the rightsizes, consolidations and "
        "decommissions free 6 cores and 24.6 GB of memory (before any upsize).")
    assert savings_sentence(recs.drop(columns=["freed_cpu_cores", "freed_memory_gb"])).endswith(
        "Savings are not priced (no monthly cost in the inventory).")


def test_a_long_id_in_a_pdf_card_breaks_after_a_separator_not_mid_word() -> None:
    """helper-69: NAB's card read 'nab-cpu_utilization_asg_misconfigurati' / 'on cpu: over on 12 ...'."""
    from reportlab.platypus import Paragraph

    from capacity_forecaster.report.pdf import SMALL, breakable

    note = "nab-cpu_utilization_asg_misconfiguration cpu: over on 12 of the last 14 observed days & <more>"
    paragraph = Paragraph(breakable(note, 110.0, SMALL), SMALL)
    paragraph.wrap(110.0, 1000.0)
    lines = ["".join(fragment.text for fragment in line.words) for line in paragraph.blPara.lines]
    assert lines[0] == "nab-cpu_utilization_asg_" and lines[1].startswith("misconfiguration cpu: over")
    assert "&amp; &lt;more&gt;" in breakable(note, 110.0, SMALL)  # still escaped for reportlab's markup
    assert breakable("srv-0001 cpu", 110.0, SMALL) == "srv-0001 cpu"
