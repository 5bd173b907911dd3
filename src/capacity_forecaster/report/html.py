"""The HTML report: one self-contained, offline file (plotly.js inline, no network) with interactive charts."""

from __future__ import annotations

import html
import json
import logging
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from capacity_forecaster.report import figures, style
from capacity_forecaster.report.accuracy_history import BUCKET_HEADERS, RUN_HEADERS, display_rows, explanation
from capacity_forecaster.report.capacity import CAPACITY_HEADERS, capacity_rows
from capacity_forecaster.report.comparison import (
    SIDES,
    StoredScenario,
    change_text,
    headline,
    side_level,
    side_probability,
    side_savings,
    side_when,
    stale_run,
    stored_scenario,
    whatif_note,
)
from capacity_forecaster.report.data import ReportData, not_available, server_names
from capacity_forecaster.report.lineage import lineage
from capacity_forecaster.report.plotly_bundle import check_trace_types, plotly_js
from capacity_forecaster.report.risks import (
    ALREADY,
    AT_RISK_LEVELS,
    breach_phrase,
    breach_when,
    level_of,
    ordered_recommendations,
    report_risks,
    risk_row,
    table_level,
    table_probability,
    threshold_of,
)
from capacity_forecaster.report.summary import (
    CLUSTER_RING,
    assumptions,
    cluster_map,
    cluster_ringed,
    data_period_text,
    fleet_text,
    headlines,
    kpis,
)
from capacity_forecaster.report.text import (
    NO_PRICES,
    NOT_PRICED,
    money,
    plural,
    priced_servers,
    says_something,
    server_title,
    told_columns,
)

log = logging.getLogger(__name__)

_CSS = f"""
*{{box-sizing:border-box}} body{{margin:0;font-family:Inter,'Segoe UI',Helvetica,Arial,sans-serif;color:{style.INK};
background:#F4F6F9}} header{{background:{style.NAVY};color:#fff;padding:28px 40px}} header h1{{margin:0;font-size:28px}}
header p{{margin:6px 0 0;opacity:.85}} main{{max-width:1280px;margin:0 auto;padding:24px 32px}}
section{{background:#fff;border:1px solid {style.GRID};border-radius:8px;padding:18px 22px;margin-bottom:20px}}
h2{{margin:0 0 12px;font-size:18px;color:{style.NAVY}}} h3{{margin:16px 0 8px;font-size:15px;color:{style.NAVY}}}
.kpis{{display:grid;grid-template-columns:repeat(5,1fr);gap:12px;background:none;border:none;padding:0}}
.kpi{{background:#fff;border:1px solid {style.GRID};border-radius:8px;padding:14px}}
.kpi .label{{font-size:12px;font-weight:600;color:{style.MUTED};text-transform:uppercase;letter-spacing:.03em}}
.kpi .value{{font-size:26px;font-weight:700;color:{style.NAVY};margin:6px 0}} .kpi .note{{font-size:12px;
color:{style.MUTED}}} .grid2{{display:grid;grid-template-columns:1fr 1fr;gap:20px;background:none;border:none;
padding:0}} .grid2>div{{background:#fff;border:1px solid {style.GRID};border-radius:8px;padding:8px}}
table{{border-collapse:collapse;width:100%;font-size:13px}} th{{background:{style.NAVY};color:#fff;text-align:left;
padding:7px 8px;position:sticky;top:0}} td{{padding:6px 8px;border-bottom:1px solid {style.GRID}}}
tr:nth-child(even) td{{background:#F9FAFB}} td.num{{text-align:right;font-variant-numeric:tabular-nums}}
td.nw{{white-space:nowrap}}
.badge{{display:inline-block;padding:2px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}}
.na{{color:{style.MUTED};font-style:italic}}
.warning{{margin:16px 0;padding:12px 16px;border-left:4px solid #B91C1C;background:#FEF2F2;color:#B91C1C;
font-weight:600}} footer{{text-align:center;color:{style.MUTED};font-size:12px;
padding:10px 0 30px}} ul.messages li{{margin:6px 0;line-height:1.45}} label.pick{{display:block;margin:0 0 8px;
font-size:13px;font-weight:600;color:{style.MUTED}}} label.pick select{{font-size:13px;padding:3px 6px;margin-left:6px;
color:{style.INK}}}
"""
_CONFIG = {**style.PLOTLY_CONFIG, "responsive": True,
           "modeBarButtonsToRemove": [*style.PLOTLY_CONFIG["modeBarButtonsToRemove"], "lasso2d", "select2d"]}


# plotly.js is shipped as inert text and started after the page's load event, so the KPIs, messages and
# tables show at once. It runs from a blob: URL (still no network) rather than as an inline script: Chromium
# then compiles it on a background thread, and the compile-hints comment asks V8 to compile every function
# there up front instead of one by one on the main thread while the first charts draw. A page whose
# content security policy forbids blob: scripts falls back to the inline script. Charts draw one per task,
# top to bottom, so each shows as soon as it is ready; body.charts-ready marks the last. A drop-down
# (select.chart-pick) swaps its chart's figure with Plotly.react.
_LOADER = """
(function () {
  var config = %s;
  function figure(id) { return JSON.parse(document.getElementById(id).textContent); }
  function picks() {
    document.querySelectorAll("select.chart-pick").forEach(function (select) {
      select.disabled = false;
      select.addEventListener("change", function () {
        var fig = figure(select.value);
        Plotly.react(document.getElementById(select.dataset.chart), fig.data, fig.layout, config);
      });
    });
  }
  function draw(divs, i) {
    if (i >= divs.length) { picks(); document.body.classList.add("charts-ready"); return; }
    var div = divs[i], fig = figure(div.dataset.figure);
    div.textContent = "";
    Plotly.newPlot(div, fig.data, fig.layout, config).then(function () {
      setTimeout(function () { draw(divs, i + 1); }, 0);
    });
  }
  function start() { draw(Array.prototype.slice.call(document.querySelectorAll("div.chart[data-figure]")), 0); }
  window.addEventListener("load", function () {
    var source = document.getElementById("plotly-js").textContent;
    var url = URL.createObjectURL(new Blob(["//# allFunctionsCalledOnLoad\\n", source], {type: "text/javascript"}));
    var engine = document.createElement("script");
    engine.async = true;
    engine.onload = function () { URL.revokeObjectURL(url); start(); };
    engine.onerror = function () {
      URL.revokeObjectURL(url);
      var inline = document.createElement("script");
      inline.text = source;
      document.head.appendChild(inline);
      start();
    };
    engine.src = url;
    document.head.appendChild(engine);
  });
})();
"""


class _Charts:
    """Collects the figures of one page: a placeholder per chart, its JSON in an inert script block."""

    def __init__(self) -> None:
        self.blocks: list[str] = []

    def _block(self, fig: go.Figure) -> str:
        check_trace_types({str(trace.type) for trace in fig.data}, str(fig.layout.title.text))
        name = f"figure-{len(self.blocks) + 1}"
        payload = fig.to_json().replace("</", "<\\/")  # never end the script block early
        self.blocks.append(f'<script type="application/json" id="{name}">{payload}</script>')
        return name

    def add(self, fig: go.Figure) -> str:
        """A chart placeholder; the figure is drawn into it after the page has loaded."""
        name = self._block(fig)
        height = int(fig.layout.height or 400)
        return (f'<div class="chart" id="chart-{name}" data-figure="{name}" style="min-height:{height}px">'
                f'<p class="na">loading chart...</p></div>')

    def add_choice(self, label: str, choices: list[tuple[str, go.Figure]]) -> str:
        """A drop-down over several figures and one chart showing the chosen one (the first at start).

        Only the shown figure is drawn; the others wait, as JSON, until they are picked.
        """
        names = [(text, self._block(fig)) for text, fig in choices]
        first = names[0][1]
        height = int(choices[0][1].layout.height or 400)
        options = "".join(f'<option value="{name}">{html.escape(text)}</option>' for text, name in names)
        return (f'<label class="pick">{html.escape(label)} <select class="chart-pick" data-chart="chart-{first}" '
                f'disabled>{options}</select></label>'
                f'<div class="chart" id="chart-{first}" data-figure="{first}" style="min-height:{height}px">'
                f'<p class="na">loading chart...</p></div>')

    def scripts(self) -> str:
        return ("".join(self.blocks) + f'<script type="text/plain" id="plotly-js">{plotly_js()}</script>'
                + f"<script>{_LOADER % json.dumps(_CONFIG)}</script>")


def _na(message: str) -> str:
    return f'<p class="na">{html.escape(message)}</p>'


def _badge(level: Any, text: str | None = None) -> str:
    """A level as a coloured badge (``text`` instead of the level's name, ``risks.table_level``)."""
    if not isinstance(level, str):
        return '<span class="na">unassessed</span>'
    return (f'<span class="badge" style="background:{style.RISK_COLOURS[level]}">'
            f'{html.escape(text if text is not None else level)}</span>')


# Columns of ids, host names and dates: never wrapped mid-token ("srv-" / "0018", "2026-" / "09-28").
NOWRAP_HEADERS = frozenset({
    "Server", "Hostname", "Target", "Breach date", "Base breach", "Scenario breach", "Forecast run", "Made (UTC)",
    "Last observed day", "Days ahead", "Group",
})


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    nowrap = {i for i, h in enumerate(headers) if h in NOWRAP_HEADERS}
    classes = {i: " ".join(c for c, on in (("num", i in numeric), ("nw", i in nowrap)) if on)
               for i in range(len(headers))}
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="{classes[i]}">{c}</td>' if classes.get(i) else f"<td>{c}</td>"
                                     for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else html.escape(str(value))


def forecast_figures(data: ReportData, ranked: pd.DataFrame, history: pd.DataFrame,
                     series: list[tuple[str, str]],
                     backtests: pd.DataFrame | None = None) -> list[tuple[str, go.Figure]]:
    """One forecast figure per series for the drop-down, riskiest first, with the drop-down's label.

    Each shows the last ``report.history_days`` observed days, the forecast and its interval, the
    threshold, the breach date and the stored backtest forecasts over those days (faint, one line per
    cutoff); only the chosen one is drawn in the browser.
    """
    if data.forecasts is None:
        return []
    forecasts = data.forecasts.of(series)
    interval = data.settings.forecast.interval
    keyed = forecasts.set_index(["server_id", "metric"]).sort_index()
    past_keyed = history.set_index(["server_id", "metric"]).sort_index()
    past_runs = (backtests.set_index(["server_id", "metric"]).sort_index()
                 if backtests is not None and len(backtests) else None)
    out = []
    for server, metric in series:
        row = risk_row(ranked, server, metric)
        key = (server, metric)
        future = (keyed.loc[[key]].reset_index().sort_values("ds") if key in keyed.index
                  else forecasts.iloc[:0])
        past = past_keyed.loc[[key]].reset_index() if key in past_keyed.index else history.iloc[:0]
        if len(future):
            past = past[past["ds"] > future["ds"].min() - pd.Timedelta(days=data.settings.report.history_days)]
        threshold, level, breach = threshold_of(row, data, metric), level_of(row), row.get("breach_ds")
        name = figures.METRIC_NAMES.get(metric, metric)
        when = breach_phrase(row)
        title = f"{html.escape(server_title(server, row.get('hostname')))} {name}: {level} risk, {when}"
        runs = (past_runs.loc[[key]].reset_index() if past_runs is not None and key in past_runs.index
                else None)
        fig = figures.server_figure(title, past, future, threshold, breach, level, interval, height=480,
                                    backtests=runs, breach_label="last over" if row.get("status") == ALREADY
                                    else "breach")
        fig.update_layout(legend={"orientation": "h", "y": -0.14, "yanchor": "top", "x": 0, "xanchor": "left",
                                  "traceorder": "normal"},
                          margin=figures.margin(left=76, bottom=90))
        out.append((f"{server} {metric}: {level}, {when}", fig))
    return out


def _top_risk_rows(ranked: pd.DataFrame, count: int) -> str:
    at_risk = ranked[ranked["risk_level"].isin(AT_RISK_LEVELS)].head(count)
    if at_risk.empty:
        return _na("No series is at risk of a breach within the forecast horizon.")
    # Name columns that tell nothing (an inventory of ids only) are left out.
    labels = {"hostname": "Hostname", "application": "Application"}
    names = [(key, labels[key]) for key in told_columns(at_risk, labels)]
    rows = []
    for r in at_risk.to_dict("records"):
        when, days = breach_when(r)
        rows.append([_text(r["server_id"]), *(_text(r.get(key)) for key, _ in names), _text(r["metric"]),
                     _badge(*table_level(r)), when, days,
                     table_probability(r),
                     f"{r['peak_yhat']:.0f} %" if not pd.isna(r.get("peak_yhat")) else "-", _text(r.get("action")),
                     _text(r.get("reason"))])
    first = 4 + len(names)  # the Days column
    return _table(["Server", *(label for _, label in names), "Metric", "Risk", "Breach date", "Days", "P(breach)",
                   "Peak", "Action", "Reason"], rows, numeric={first, first + 1, first + 2})


def _cost(value: Any, signed: bool = False) -> str:
    """Money, or ``not priced`` where the server has no monthly cost (unknown, not zero)."""
    return NOT_PRICED if value is None or pd.isna(value) else money(value, signed=signed)


def _recommendation_rows(data: ReportData) -> str:
    recs = data.table("recommendations")
    if recs is None:
        return _na(not_available("recommendations"))
    shown = ordered_recommendations(recs[recs["action"] != "keep"])
    if shown.empty:
        return _na("Every server keeps its current size.")
    # A decommissioned or consolidated server is removed: "-", not a size of 0 cores.
    removed = {"decommission", "consolidate"}
    # The Target column only where a row has one (a consolidation's host): blank on every real lake (helper-50).
    targets = says_something(shown["target_server_id"]) if "target_server_id" in shown.columns else False
    rows = [[_text(r["server_id"]), _text(r["action"]), *([_text(r.get("target_server_id"))] if targets else []),
             *(("-", "-") if r["action"] in removed else
               (_text(r.get("recommended_cpu_cores")), _text(r.get("recommended_memory_gb")))),
             _cost(r["current_monthly_cost"]),
             # Unknown today, so the projection is not a priced figure either (a decommission's $0 would read
             # as a claim).
             _cost(r["projected_monthly_cost"] if pd.notna(r["current_monthly_cost"]) else None),
             _cost(r["monthly_savings"], signed=True), _text(r.get("rationale"))] for r in shown.to_dict("records")]
    first = 3 if targets else 2
    return _table(["Server", "Action", *(["Target"] if targets else []), "Cores", "Memory (GB)", "Current / month",
                   "Projected / month", "Savings / month", "Rationale"], rows,
                  numeric=set(range(first, first + 5)))


def _accuracy_history_section(data: ReportData) -> str:
    """Forecast vs actual over time: earlier forecast runs against the actuals since, or one line why not."""
    history = data.accuracy
    if history is None:
        return _na(not_available("forecasts"))
    if history.scored.empty:
        return _na(history.message or "No forecast run has actuals yet.")
    note = _na(history.message) if history.message else ""
    runs = _table(list(RUN_HEADERS.values()), [[html.escape(c) for c in row]
                                               for row in display_rows(history.runs, RUN_HEADERS)],
                  numeric={0, 5, 6, 7, 8, 9, 10})
    buckets = _table(list(BUCKET_HEADERS.values()), [[html.escape(c) for c in row]
                                                     for row in display_rows(history.buckets, BUCKET_HEADERS)],
                     numeric={0, 3, 4, 5, 6})
    return (f"<p>{html.escape(explanation(data.settings.forecast.interval))}</p>{note}{runs}"
            f"<h3>By days ahead</h3>{buckets}")


WHATIF_ROWS = 50  # changed series listed in the HTML (every series is in the workbook's What-if sheet)


def _whatif_section(scenario: StoredScenario | None) -> str:
    if scenario is None:
        return _na(not_available("risk_comparison"))
    ran = f", run {html.escape(scenario.run)} UTC" if scenario.run else ""
    intro = (f"<p>Scenario <b>{html.escape(scenario.name)}</b> (capfc risk --growth / --scenario{ran}). "
             f"{html.escape(whatif_note())}</p>")
    totals = _table(["Measure", "Base", "Scenario"],
                    [[html.escape(t.measure), html.escape(t.base_text), html.escape(t.scenario_text)]
                     for t in scenario.totals], numeric={1, 2})
    changed = scenario.changed
    if changed.empty:
        rows_html = _na(f"No series changes level or breach date ({change_text(scenario.changes)}).")
    else:
        rows = [[_text(r["server_id"]), _text(r.get("hostname")), _text(r["metric"]), _text(r["change"]),
                 *(_badge(*shown) if (shown := side_level(r, side)) else _badge(None) for side in SIDES),
                 side_when(r, "base"), side_when(r, "scenario"), side_probability(r, "base"),
                 side_probability(r, "scenario"), _text(r["base_action"]), _text(r["scenario_action"]),
                 side_savings(r, "base"), side_savings(r, "scenario")]
                for r in changed.head(WHATIF_ROWS).to_dict("records")]
        more = len(changed) - len(rows)
        note = (f'<p class="na">{more} more changed series in the workbook\'s What-if sheet.</p>' if more > 0
                else "")
        rows_html = (f"<p>Series {html.escape(change_text(scenario.changes))}; the changed ones, most affected "
                     f"first:</p>" + _table(
                         ["Server", "Hostname", "Metric", "Change", "Base risk", "Scenario risk", "Base breach",
                          "Scenario breach", "Base P(breach)", "Scenario P(breach)", "Base action",
                          "Scenario action", "Base savings / month", "Scenario savings / month"],
                         rows, numeric={8, 9, 12, 13}) + note)
    return intro + totals + rows_html


def build_html(data: ReportData, history: pd.DataFrame, series: list[tuple[str, str]],
               backtests: pd.DataFrame | None = None) -> bytes:
    """The report as one HTML document (UTF-8 bytes) that needs no network.

    Args:
        data: the report data.
        history: daily history of ``series`` (``data.load_history``).
        series: the (server_id, metric) pairs offered in the forecast drop-down, riskiest first.
        backtests: their stored backtest forecasts (``data.load_backtest_forecasts``); None draws none.
    """
    cfg = data.settings.report
    ranked = report_risks(data)
    charts = _Charts()
    fleet = fleet_text(data)
    parts = [f"<header><h1>{html.escape(cfg.title)}</h1><p>{fleet}; data {data_period_text(data)}; generated "
             f"{data.generated:%Y-%m-%d %H:%M} UTC from {html.escape(data.lake_uri)}</p></header><main>"]
    cards = "".join(f'<div class="kpi"><div class="label">{html.escape(k.label)}</div><div class="value">'
                    f'{html.escape(k.text)}</div><div class="note">{html.escape(k.note)}</div></div>'
                    for k in kpis(data, ranked))
    runs = lineage(data)
    parts.extend(f'<div class="warning" role="alert">{html.escape(line)}</div>' for line in runs.warnings())
    parts.append(f'<section class="kpis">{cards}</section>')
    scenario = stored_scenario(data)
    whatif = [headline(scenario, stale_run(data, scenario))] if scenario is not None else []
    lines = headlines(data, ranked) + whatif
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    parts.append(f'<section><h2>Key messages</h2><ul class="messages">{items}</ul></section>')
    recs = data.table("recommendations")
    left = charts.add(figures.risk_bar(ranked)) if not ranked.empty else _na(not_available("server_risk"))
    # Nothing priced: one line instead of an empty chart.
    right = (_na(not_available("recommendations")) if recs is None else
             charts.add(figures.savings_bar(recs)) if priced_servers(recs) else
             _na(f"Savings {NOT_PRICED}: {NO_PRICES} ({plural(len(recs), 'server')}); the recommended actions are "
                 "listed below."))
    parts.append(f'<section class="grid2"><div>{left}</div><div>{right}</div></section>')
    choices = forecast_figures(data, ranked, history, series, backtests) if series else []
    body = (charts.add_choice("Series:", choices) if choices
            else _na(not_available("forecasts" if data.forecasts is None else "server_risk")))
    parts.append(f"<section><h2>Forecast vs actual: riskiest series</h2>{body}</section>")
    top = _top_risk_rows(ranked, cfg.top_risks) if not ranked.empty else _na(not_available("server_risk"))
    parts.append(f"<section><h2>Top risks</h2>{top}</section>")
    peaks = data.peaks
    body = (charts.add(figures.heatmap(peaks, cfg.heatmap_metric, cfg.heatmap_servers, server_names(data),
                                       statistic="weekly peak"))
            if peaks is not None and len(peaks) else _na(not_available("metrics")))
    parts.append(f"<section><h2>Fleet utilisation</h2>{body}</section>")
    points = cluster_map(data)
    body = (charts.add(figures.cluster_scatter(points, cluster_ringed(ranked), data.settings.risk.threshold,
                                               ring=CLUSTER_RING)) if len(points)
            else _na(not_available("metrics")))
    parts.append(f"<section><h2>Workload clusters</h2>{body}</section>")
    backtests = data.table("backtests")
    body = (charts.add(figures.accuracy_box(backtests)) if backtests is not None and len(backtests)
            else _na(not_available("backtests")))
    parts.append(f"<section><h2>Forecast accuracy</h2>{body}</section>")
    parts.append(f'<section id="accuracy-history"><h2>Forecast vs actual over time</h2>'
                 f"{_accuracy_history_section(data)}</section>")
    parts.append(f"<section><h2>Recommendations</h2>{_recommendation_rows(data)}</section>")
    groups = capacity_rows(data)
    body = (_table(list(CAPACITY_HEADERS.values()), [[html.escape(str(v)) for v in row] for row in
                                                      groups.itertuples(index=False)], set(range(2, 9)) - {4})
            if len(groups) else _na(not_available("capacity_by_group")))
    parts.append(f'<section id="capacity"><h2>Capacity remaining by group</h2>{body}</section>')
    parts.append(f'<section id="what-if"><h2>What-if: base vs scenario</h2>{_whatif_section(scenario)}</section>')
    rows = [[html.escape(a), html.escape(v), html.escape(n)] for a, v, n in assumptions(data)]
    parts.append(f"<section><h2>Assumptions</h2>{_table(['Assumption', 'Value', 'Note'], rows)}</section>")
    parts.append("</main><footer>AWS-CapacityForecaster: works offline; every chart is interactive "
                 f"(hover, zoom, drop-down). Built from {html.escape(runs.footer())}.</footer>")
    document = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                f'content="width=device-width, initial-scale=1"><title>{html.escape(cfg.title)}</title>'
                f'<style>{_CSS}</style></head><body>' + "".join(parts) + charts.scripts() + "</body></html>")
    return document.encode("utf-8")
