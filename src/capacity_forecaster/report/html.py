"""The HTML report: one self-contained, offline file (plotly.js inline, no network) with interactive charts."""

from __future__ import annotations

import html
import json
import logging
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from capacity_forecaster.report import figures, style
from capacity_forecaster.report.data import ReportData, not_available
from capacity_forecaster.report.summary import (
    AT_RISK_LEVELS,
    assumptions,
    cluster_map,
    data_period_text,
    day,
    headlines,
    kpis,
    level_of,
    money,
    ranked_risks,
    risk_row,
    threshold_of,
)

log = logging.getLogger(__name__)

_CSS = f"""
*{{box-sizing:border-box}} body{{margin:0;font-family:Inter,'Segoe UI',Helvetica,Arial,sans-serif;color:{style.INK};
background:#F4F6F9}} header{{background:{style.NAVY};color:#fff;padding:28px 40px}} header h1{{margin:0;font-size:28px}}
header p{{margin:6px 0 0;opacity:.85}} main{{max-width:1280px;margin:0 auto;padding:24px 32px}}
section{{background:#fff;border:1px solid {style.GRID};border-radius:8px;padding:18px 22px;margin-bottom:20px}}
h2{{margin:0 0 12px;font-size:18px;color:{style.NAVY}}} .kpis{{display:grid;
grid-template-columns:repeat(5,1fr);gap:12px;background:none;border:none;padding:0}}
.kpi{{background:#fff;border:1px solid {style.GRID};border-radius:8px;padding:14px}}
.kpi .label{{font-size:12px;font-weight:600;color:{style.MUTED};text-transform:uppercase;letter-spacing:.03em}}
.kpi .value{{font-size:26px;font-weight:700;color:{style.NAVY};margin:6px 0}} .kpi .note{{font-size:12px;
color:{style.MUTED}}} .grid2{{display:grid;grid-template-columns:1fr 1fr;gap:20px;background:none;border:none;
padding:0}} .grid2>div{{background:#fff;border:1px solid {style.GRID};border-radius:8px;padding:8px}}
table{{border-collapse:collapse;width:100%;font-size:13px}} th{{background:{style.NAVY};color:#fff;text-align:left;
padding:7px 8px;position:sticky;top:0}} td{{padding:6px 8px;border-bottom:1px solid {style.GRID}}}
tr:nth-child(even) td{{background:#F9FAFB}} td.num{{text-align:right;font-variant-numeric:tabular-nums}}
.badge{{display:inline-block;padding:2px 8px;border-radius:10px;color:#fff;font-weight:600;font-size:12px}}
.na{{color:{style.MUTED};font-style:italic}} footer{{text-align:center;color:{style.MUTED};font-size:12px;
padding:10px 0 30px}} ul.messages li{{margin:6px 0;line-height:1.45}}
"""
_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


# plotly.js (4.8 MB) takes seconds to evaluate on a cold browser, so it is shipped as inert text and
# started after the page has loaded: KPIs, messages and tables show at once, the charts a moment later.
_LOADER = """
window.addEventListener("load", function () {
  setTimeout(function () {
    var engine = document.createElement("script");
    engine.text = document.getElementById("plotly-js").textContent;
    document.head.appendChild(engine);
    var config = %s;
    document.querySelectorAll("div.chart[data-figure]").forEach(function (div) {
      var fig = JSON.parse(document.getElementById(div.dataset.figure).textContent);
      div.textContent = "";
      Plotly.newPlot(div, fig.data, fig.layout, config);
    });
    document.body.classList.add("charts-ready");
  }, 0);
});
"""


class _Charts:
    """Collects the figures of one page: a placeholder per chart, its JSON in an inert script block."""

    def __init__(self) -> None:
        self.blocks: list[str] = []

    def add(self, fig: go.Figure) -> str:
        name = f"figure-{len(self.blocks) + 1}"
        payload = fig.to_json().replace("</", "<\\/")  # never end the script block early
        self.blocks.append(f'<script type="application/json" id="{name}">{payload}</script>')
        height = int(fig.layout.height or 400)
        return (f'<div class="chart" data-figure="{name}" style="min-height:{height}px">'
                f'<p class="na">loading chart...</p></div>')

    def scripts(self) -> str:
        engine = get_plotlyjs()
        return ("".join(self.blocks) + f'<script type="text/plain" id="plotly-js">{engine}</script>'
                + f"<script>{_LOADER % json.dumps(_CONFIG)}</script>")


def _na(message: str) -> str:
    return f'<p class="na">{html.escape(message)}</p>'


def _badge(level: Any) -> str:
    if not isinstance(level, str):
        return '<span class="na">unassessed</span>'
    return f'<span class="badge" style="background:{style.RISK_COLOURS[level]}">{html.escape(level)}</span>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                     for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else html.escape(str(value))


def forecast_selector(data: ReportData, ranked: pd.DataFrame, history: pd.DataFrame,
                      series: list[tuple[str, str]]) -> go.Figure:
    """One forecast figure with a drop-down to switch between the riskiest series."""
    forecasts = data.table("forecasts")
    if forecasts is None:
        return figures.empty_figure("Forecast vs actual", not_available("forecasts"))
    interval = data.settings.forecast.interval
    fig = go.Figure()
    buttons, per = [], 6
    for index, (server, metric) in enumerate(series):
        row = risk_row(ranked, server, metric)
        future = forecasts[(forecasts["server_id"] == server) & (forecasts["metric"] == metric)].sort_values("ds")
        past = history[(history["server_id"] == server) & (history["metric"] == metric)]
        if len(future):
            past = past[past["ds"] > future["ds"].min() - pd.Timedelta(days=data.settings.report.history_days)]
        for trace in figures.server_traces(past, future, interval):
            trace.visible = index == 0
            trace.showlegend = trace.showlegend is not False and index == 0
            fig.add_trace(trace)
        threshold, level, breach = threshold_of(row, data, metric), level_of(row), row.get("breach_ds")
        title = (f"{server} ({_text(row.get('hostname'))}) {figures.METRIC_NAMES.get(metric, metric)}: {level} risk, "
                 f"breach {day(breach)}")
        layout = {"shapes": figures.server_shapes(threshold, breach, level, future["ds"].min()),
                  "annotations": figures.server_annotations(threshold, breach, level),
                  "title.text": title}
        if index == 0:
            fig.update_layout(shapes=layout["shapes"], annotations=layout["annotations"], title_text=title)
        visible = [False] * (per * len(series))
        visible[per * index: per * (index + 1)] = [True] * per
        buttons.append({"label": f"{server} {metric}", "method": "update", "args": [{"visible": visible}, layout]})
    fig.update_yaxes(title_text="daily P95 (% of capacity)", range=[0, 105], ticksuffix=" %")
    title = fig.layout.title.text
    figures.styled(fig, title, 460)
    fig.update_layout(updatemenus=[{"buttons": buttons, "direction": "down", "x": 1.0, "xanchor": "right",
                                    "y": 1.22, "yanchor": "top", "showactive": True}],
                      margin={"t": 96}, legend={"y": -0.18, "yanchor": "top", "x": 0, "xanchor": "left"})
    return fig


def _top_risk_rows(ranked: pd.DataFrame, count: int) -> str:
    at_risk = ranked[ranked["risk_level"].isin(AT_RISK_LEVELS)].head(count)
    if at_risk.empty:
        return _na("No series is at risk of a breach within the forecast horizon.")
    rows = []
    for r in at_risk.to_dict("records"):
        days = r.get("days_to_breach")
        rows.append([_text(r["server_id"]), _text(r.get("hostname")), _text(r.get("application")), _text(r["metric"]),
                     _badge(r["risk_level"]), day(r.get("breach_ds")), "-" if pd.isna(days) else str(int(days)),
                     f"{r['breach_probability']:.0%}" if not pd.isna(r.get("breach_probability")) else "-",
                     f"{r['peak_yhat']:.0f} %", _text(r.get("action")), _text(r.get("reason"))])
    return _table(["Server", "Hostname", "Application", "Metric", "Risk", "Breach date", "Days", "P(breach)",
                   "Peak", "Action", "Reason"], rows, numeric={6, 7, 8})


def _recommendation_rows(data: ReportData) -> str:
    recs = data.table("recommendations")
    if recs is None:
        return _na(not_available("recommendations"))
    shown = recs[recs["action"] != "keep"].sort_values(["monthly_savings", "server_id"], ascending=[False, True])
    if shown.empty:
        return _na("Every server keeps its current size.")
    rows = [[_text(r["server_id"]), _text(r["action"]), _text(r.get("target_server_id")),
             _text(r.get("recommended_cpu_cores")), _text(r.get("recommended_memory_gb")),
             money(r["current_monthly_cost"]), money(r["projected_monthly_cost"]),
             money(r["monthly_savings"], signed=True), _text(r.get("rationale"))] for r in shown.to_dict("records")]
    return _table(["Server", "Action", "Target", "Cores", "Memory (GB)", "Current / month", "Projected / month",
                   "Savings / month", "Rationale"], rows, numeric={3, 4, 5, 6, 7})


def build_html(data: ReportData, history: pd.DataFrame, series: list[tuple[str, str]]) -> bytes:
    """The report as one HTML document (UTF-8 bytes) that needs no network.

    Args:
        data: the report data.
        history: daily history of ``series`` (``data.load_history``).
        series: the (server_id, metric) pairs offered in the forecast drop-down, riskiest first.
    """
    cfg = data.settings.report
    ranked = ranked_risks(data)
    charts = _Charts()
    inventory = data.table("inventory")
    fleet = f"{len(inventory):,} servers" if inventory is not None else "fleet"
    parts = [f"<header><h1>{html.escape(cfg.title)}</h1><p>{fleet}; data {data_period_text(data)}; generated "
             f"{data.generated:%Y-%m-%d %H:%M} UTC from {html.escape(data.lake_uri)}</p></header><main>"]
    cards = "".join(f'<div class="kpi"><div class="label">{html.escape(k.label)}</div><div class="value">'
                    f'{html.escape(k.text)}</div><div class="note">{html.escape(k.note)}</div></div>'
                    for k in kpis(data, ranked))
    parts.append(f'<section class="kpis">{cards}</section>')
    items = "".join(f"<li>{html.escape(line)}</li>" for line in headlines(data, ranked))
    parts.append(f'<section><h2>Key messages</h2><ul class="messages">{items}</ul></section>')
    recs = data.table("recommendations")
    left = charts.add(figures.risk_bar(ranked)) if not ranked.empty else _na(not_available("server_risk"))
    right = charts.add(figures.savings_bar(recs)) if recs is not None else _na(not_available("recommendations"))
    parts.append(f'<section class="grid2"><div>{left}</div><div>{right}</div></section>')
    forecasts = data.table("forecasts")
    body = (charts.add(forecast_selector(data, ranked, history, series)) if series and forecasts is not None
            else _na(not_available("forecasts" if forecasts is None else "server_risk")))
    parts.append(f"<section><h2>Forecast vs actual: riskiest series</h2>{body}</section>")
    top = _top_risk_rows(ranked, cfg.top_risks) if not ranked.empty else _na(not_available("server_risk"))
    parts.append(f"<section><h2>Top risks</h2>{top}</section>")
    weekly = data.weekly
    body = (charts.add(figures.heatmap(weekly, cfg.heatmap_metric, cfg.heatmap_servers))
            if weekly is not None and len(weekly) else _na(not_available("metrics")))
    parts.append(f"<section><h2>Fleet utilisation</h2>{body}</section>")
    points = cluster_map(data)
    hot = set(ranked.loc[ranked["level_code"] >= 2, "server_id"]) if not ranked.empty else set()
    body = charts.add(figures.cluster_scatter(points, hot)) if len(points) else _na(not_available("metrics"))
    parts.append(f"<section><h2>Workload clusters</h2>{body}</section>")
    backtests = data.table("backtests")
    body = (charts.add(figures.accuracy_box(backtests)) if backtests is not None and len(backtests)
            else _na(not_available("backtests")))
    parts.append(f"<section><h2>Forecast accuracy</h2>{body}</section>")
    parts.append(f"<section><h2>Recommendations</h2>{_recommendation_rows(data)}</section>")
    rows = [[html.escape(a), html.escape(v), html.escape(n)] for a, v, n in assumptions(data)]
    parts.append(f"<section><h2>Assumptions</h2>{_table(['Assumption', 'Value', 'Note'], rows)}</section>")
    parts.append("</main><footer>AWS-CapacityForecaster: works offline; every chart is interactive "
                 "(hover, zoom, drop-down).</footer>")
    document = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
                f'content="width=device-width, initial-scale=1"><title>{html.escape(cfg.title)}</title>'
                f'<style>{_CSS}</style></head><body>' + "".join(parts) + charts.scripts() + "</body></html>")
    return document.encode("utf-8")
