"""The HTML report's parts: the vendored plotly.js, the figures it inlines, the forecast drop-down."""

from __future__ import annotations

import hashlib
import json
import re

import plotly.graph_objects as go
import pytest
from report_lake import RISKIEST

from capacity_forecaster.config import Settings
from capacity_forecaster.report import figures
from capacity_forecaster.report.data import load_history, load_report_data
from capacity_forecaster.report.forecast_chart import top_series
from capacity_forecaster.report.html import build_html
from capacity_forecaster.report.plotly_bundle import (
    PLOTLY_JS_SHA256,
    PLOTLY_JS_VERSION,
    TRACE_TYPES,
    check_trace_types,
    plotly_js,
)
from capacity_forecaster.report.risks import ranked_risks


def test_vendored_plotly_js_is_the_pinned_file() -> None:
    source = plotly_js()
    assert hashlib.sha256(source.encode("utf-8")).hexdigest() == PLOTLY_JS_SHA256
    assert f"plotly.js (cartesian - minified) v{PLOTLY_JS_VERSION}" in source[:200]
    assert "window.Plotly = Plotly" in source[-200:]


def test_a_trace_type_outside_the_bundle_is_refused() -> None:
    check_trace_types({"scatter", "heatmap", "box", "bar"}, "ok")
    with pytest.raises(ValueError, match="scatter3d"):
        check_trace_types({"scatter", "scatter3d"}, "3-D chart")


@pytest.fixture(scope="module")
def page(report_lake) -> str:
    data = load_report_data(report_lake, Settings())
    series = top_series(ranked_risks(data), 15)
    history = load_history(report_lake, series, None)
    return build_html(data, history, series).decode("utf-8")


def _figures(page: str) -> dict[str, dict]:
    blocks = re.findall(r'<script type="application/json" id="(figure-\d+)">(.*?)</script>', page, re.S)
    return {name: json.loads(body.replace("<\\/", "</")) for name, body in blocks}


def test_figures_use_the_small_house_template_and_bundled_trace_types(page: str) -> None:
    for name, fig in _figures(page).items():
        assert fig["layout"]["template"]["layout"] == json.loads(json.dumps(figures.TEMPLATE["layout"])), name
        assert {t["type"] for t in fig["data"]} <= TRACE_TYPES, name


def test_forecast_drop_down_has_one_figure_per_series_and_draws_only_the_first(page: str) -> None:
    select = re.search(r'<select class="chart-pick" data-chart="chart-(figure-\d+)" disabled>(.*?)</select>', page)
    assert select is not None
    options = re.findall(r'<option value="(figure-\d+)">(.*?)</option>', select.group(2))
    assert len(options) == 3 and options[0][0] == select.group(1)  # the series at risk (medium or worse)
    assert options[0][1].startswith(f"{RISKIEST} cpu: critical")
    assert page.count(f'data-figure="{select.group(1)}"') == 1
    drawn = set(re.findall(r'<div class="chart" id="chart-(figure-\d+)"', page))
    assert not drawn & {name for name, _ in options[1:]}  # the other series wait until picked
    figs = _figures(page)
    first = figs[options[0][0]]
    assert len(first["data"]) == 6 and first["layout"]["title"]["text"].startswith(f"{RISKIEST} (nyc-prd-app01) CPU")
    assert first["data"][0]["x"][0] == "2026-01-03"  # daily dates as plain dates, not ISO timestamps


def test_dates_keep_times_when_the_data_is_sub_daily() -> None:
    import pandas as pd

    days = pd.Series(pd.to_datetime(["2026-01-01", "2026-01-02"]))
    assert list(figures.dates(days)) == ["2026-01-01", "2026-01-02"]
    hours = pd.Series(pd.to_datetime(["2026-01-01 00:00", "2026-01-01 06:00"]))
    assert figures.dates(hours) is hours


def test_new_figures_do_not_carry_plotly_default_template() -> None:
    fig = figures.styled(figures.new_figure(go.Bar(x=[1], y=[2])), "t")
    assert len(fig.to_json()) < 1500


@pytest.mark.parametrize(("hostname", "application", "want"), [
    ("", "unknown", ["Server", "Metric"]),  # an inventory of ids only: no empty name columns
    ("web-01", "unknown", ["Server", "Hostname", "Metric"]),
    ("", "payments", ["Server", "Application", "Metric"]),
])
def test_top_risk_table_leaves_out_name_columns_that_tell_nothing(hostname, application, want) -> None:
    import pandas as pd

    from capacity_forecaster.report.html import _top_risk_rows

    ranked = pd.DataFrame({"server_id": ["s1", "s2"], "hostname": [hostname, None], "application": [application] * 2,
                           "metric": ["cpu", "memory"], "risk_level": ["critical", "high"],
                           "status": ["already_breaching", "assessed"],
                           "breach_ds": [pd.NaT, pd.Timestamp("2026-07-03")],
                           "days_to_breach": [0, 3], "breach_probability": [0.99, 0.7], "peak_yhat": [98.0, 85.0],
                           "action": ["upsize", "upsize"], "reason": ["over now", "forecast crosses"]})
    table = _top_risk_rows(ranked, 10)
    headers = re.findall(r"<th[^>]*>([^<]*)</th>", table)
    assert headers[: len(want) + 2] == [*want, "Risk", "Breach date"]
    assert ("Hostname" in headers) == bool(hostname) and ("Application" in headers) == (application != "unknown")
    # The numeric cells (days, probability, peak) stay right-aligned after the dropped columns.
    assert re.search(r'class="num">3<', table) and re.search(r'class="num">70%<', table)
