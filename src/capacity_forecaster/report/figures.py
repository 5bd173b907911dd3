"""Interactive plotly figures shared by the HTML report and the dashboard, in the house style."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from capacity_forecaster.report import style
from capacity_forecaster.report.risks import level_counts
from capacity_forecaster.report.summary import cluster_range, model_accuracy, series_mase, week_grid
from capacity_forecaster.report.text import (
    NO_PRICES,
    NOT_PRICED,
    action_savings_text,
    day,
    model_label,
    plural,
    priced_servers,
    savings_by_action,
)

METRIC_NAMES = {"cpu": "CPU", "memory": "Memory", "disk": "Disk", "network": "Network"}
# ticklabeloverflow "allow": plotly's default ("hide past div") measures every tick label against the
# plot on every draw, a tenth of the HTML report's chart time; automargin keeps labels inside anyway.
_AXIS = {"gridcolor": style.GRID, "linecolor": "#9CA3AF", "zeroline": False, "ticks": "outside",
         "tickcolor": "#9CA3AF", "automargin": True, "title": {"standoff": 8}, "ticklabeloverflow": "allow"}
# A small house template that replaces plotly's default one: that is deep-copied into every new figure
# (milliseconds per dashboard interaction) and written into every figure's JSON (6 kB each, which the
# browser then applies too). "strict" keeps numeric-looking server ids as categories.
TEMPLATE = {"layout": {"paper_bgcolor": "white", "plot_bgcolor": "white", "xaxis": _AXIS, "yaxis": _AXIS,
                       "hovermode": "closest", "autotypenumbers": "strict"},
            "data": {"heatmap": [{"colorbar": {"outlinewidth": 0}}]}}
LAYOUT: dict[str, Any] = {
    "template": TEMPLATE,
    "font": {"family": "Inter, 'Segoe UI', Helvetica, Arial, sans-serif", "size": 12, "color": style.INK},
    "title": {"x": 0.0, "xanchor": "left", "font": {"size": 15, "color": style.INK}},
    "margin": {"l": 60, "r": 20, "t": 56, "b": 44},
    "colorway": list(style.CATEGORICAL),
    "hoverlabel": {"font": {"size": 12}},
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
}


def margin(left: int = 60, right: int = 20, top: int = 56, bottom: int = 44) -> dict[str, int]:
    """Plot margins in pixels. Axes keep ``automargin``, but a margin that already fits the labels, legend
    and colorbar spares plotly.js a second layout pass (a sixth of the HTML report's chart time)."""
    return {"l": left, "r": right, "t": top, "b": bottom}


def text_width(texts: Any, size: float = 12) -> int:
    """A generous width in pixels of the longest of ``texts`` in the house sans-serif at ``size`` px."""
    return int(0.62 * size * max((len(str(t)) for t in texts), default=0))


def new_figure(data: Any = None) -> go.Figure:
    """A figure on the house template (plotly's default template is neither copied nor written out)."""
    return go.Figure(data, layout={"template": TEMPLATE})


def styled(fig: go.Figure, title: str, height: int = 380, **layout: Any) -> go.Figure:
    """Apply the house layout, a title (which should name the unit) and any other layout keys, in one update."""
    fig.layout.template = TEMPLATE  # replaces a template (update_layout would merge into it)
    rest = {k: v for k, v in LAYOUT.items() if k != "template"}
    fig.update_layout({**rest, "height": height, "title": {**LAYOUT["title"], "text": title}, **layout})
    return fig


def dates(values: Any) -> Any:
    """Dates for a plotly axis: ``YYYY-MM-DD`` text when every value is a midnight (under half the JSON of
    plotly's ISO timestamps), the values unchanged otherwise (sub-daily data)."""
    stamps = pd.to_datetime(pd.Series(values))
    if len(stamps) and (stamps.dropna() == stamps.dropna().dt.normalize()).all():
        return stamps.dt.strftime("%Y-%m-%d").to_numpy(dtype=object)
    return values


def empty_figure(title: str, message: str, height: int = 300) -> go.Figure:
    """A blank panel that says why it is empty (e.g. "not available: run capfc risk")."""
    fig = new_figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": style.MUTED})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return styled(fig, title, height)


def server_traces(history: pd.DataFrame, forecast: pd.DataFrame, interval: float) -> list[go.Scatter]:
    """History (with imputed and anomalous days marked), forecast and interval of one series."""
    traces = [
        go.Scatter(x=dates(history["ds"]), y=history["value"], mode="lines", name="observed",
                   line={"color": style.ACTUAL, "width": 1.2}, hovertemplate="%{x|%Y-%m-%d}: %{y:.1f} %"),
    ]
    imputed = history[history["is_imputed"].astype(bool)]
    traces.append(go.Scatter(x=dates(imputed["ds"]), y=imputed["value"], mode="markers", name="imputed day",
                             marker={"color": "white", "size": 6, "line": {"color": style.IMPUTED, "width": 1.2}},
                             hovertemplate="imputed %{x|%Y-%m-%d}: %{y:.1f} %"))
    anomalies = history[history["is_anomaly"].astype(bool)]
    traces.append(go.Scatter(x=dates(anomalies["ds"]), y=anomalies["value"], mode="markers", name="anomaly",
                             marker={"color": style.ANOMALY, "size": 8, "symbol": "x"},
                             hovertemplate="anomaly %{x|%Y-%m-%d}: %{y:.1f} %"))
    # Demand above capacity, drawn at its clipped 100 %: without a mark a saturated run read as a plain line at
    # 100 % (and its forecast, pinned there, as the best in the fleet; helper-73).
    saturated = history[history["is_saturated"].astype(bool)] if "is_saturated" in history.columns else history[:0]
    if len(saturated):
        traces.append(go.Scatter(x=dates(saturated["ds"]), y=saturated["value"], mode="markers",
                                 name="saturated (demand above capacity)",
                                 marker={"color": style.THRESHOLD, "size": 7, "symbol": "triangle-up"},
                                 hovertemplate="saturated %{x|%Y-%m-%d}: demand above capacity"))
    days = dates(forecast["ds"])
    traces.append(go.Scatter(x=days, y=forecast["yhat_upper"], mode="lines", line={"width": 0},
                             showlegend=False, hoverinfo="skip", name="upper"))
    traces.append(go.Scatter(x=days, y=forecast["yhat_lower"], mode="lines", line={"width": 0},
                             fill="tonexty", fillcolor="rgba(156,192,230,0.5)", name=f"{interval:.0%} interval",
                             hoverinfo="skip"))
    traces.append(go.Scatter(x=days, y=forecast["yhat"], mode="lines", name="forecast",
                             line={"color": style.ACCENT, "width": 2},
                             hovertemplate="forecast %{x|%Y-%m-%d}: %{y:.1f} %"))
    return traces


def server_shapes(threshold: float, breach: Any, level: str, start: Any = None) -> list[dict[str, Any]]:
    """Threshold line, the breach date and the start of the forecast as layout shapes."""
    shapes = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": threshold, "y1": threshold,
               "line": {"color": style.THRESHOLD, "dash": "dash", "width": 1.5}}]
    if start is not None and not pd.isna(start):
        shapes.append({"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": start, "x1": start,
                       "line": {"color": style.MUTED, "dash": "dot", "width": 1}})
    if breach is not None and not pd.isna(breach):
        shapes.append({"type": "line", "yref": "paper", "y0": 0, "y1": 1, "x0": breach, "x1": breach,
                       "line": {"color": style.RISK_COLOURS.get(level, style.MUTED), "width": 2}})
    return shapes


def server_annotations(threshold: float, breach: Any, level: str, breach_label: str = "breach") -> list[dict[str, Any]]:
    """Labels for the threshold and the breach date (``breach_label``: ``last over`` for a series already
    breaching, whose breach date is its last observed day over the threshold)."""
    notes = [{"xref": "paper", "x": 0.0, "y": threshold, "text": f"threshold {threshold:g} %", "showarrow": False,
              "yshift": 9, "xanchor": "left", "font": {"color": style.THRESHOLD, "size": 11}}]
    if breach is not None and not pd.isna(breach):
        notes.append({"x": breach, "y": threshold, "text": f"{breach_label} {day(breach)}", "showarrow": True,
                      "arrowhead": 0, "ax": 0, "ay": -34, "bgcolor": "white",
                      "font": {"color": style.RISK_COLOURS.get(level, style.MUTED), "size": 11}})
    return notes


BACKTEST_DASHES = ("dot", "dash", "dashdot", "longdash")


def backtest_label(cutoff: Any, model: Any) -> str:
    """The legend entry of one backtest cutoff's forecast (``backtest from 2026-01-01 (Trend + seasonality)``)."""
    return f"backtest from {day(cutoff)} ({model_label(model)})"


def backtest_traces(backtests: pd.DataFrame | None, since: Any = None) -> list[go.Scatter]:
    """The stored backtest forecasts of one series as faint lines, one per cutoff, each in the legend.

    Reusable by any figure of one series (the HTML report's forecast chart, the dashboard drill-down):
    pass the series' rows of ``data.load_backtest_forecasts``.

    Args:
        backtests: server_id, metric, model, cutoff, ds, yhat, ... of one series (None or empty: no traces).
        since: first day drawn (the start of the history shown), None draws every day.

    Returns:
        One dashed scatter trace per cutoff, oldest first, in ``style.BACKTEST`` at reduced opacity.
    """
    if backtests is None or backtests.empty:
        return []
    rows = backtests if since is None else backtests[pd.to_datetime(backtests["ds"]) >= pd.Timestamp(since)]
    traces = []
    for i, ((cutoff, model), part) in enumerate(rows.sort_values("ds").groupby(["cutoff", "model"], sort=True)):
        traces.append(go.Scatter(
            x=dates(part["ds"]), y=np.round(part["yhat"].to_numpy(float), 2), mode="lines",
            name=backtest_label(cutoff, model), opacity=style.BACKTEST_ALPHA, legendgroup="backtest",
            line={"color": style.BACKTEST, "width": 1.6, "dash": BACKTEST_DASHES[i % len(BACKTEST_DASHES)]},
            hovertemplate=f"{backtest_label(cutoff, model)}<br>" + "%{x|%Y-%m-%d}: %{y:.1f} %<extra></extra>"))
    return traces


def server_figure(title: str, history: pd.DataFrame, forecast: pd.DataFrame, threshold: float, breach: Any,
                  level: str, interval: float, height: int = 420,
                  backtests: pd.DataFrame | None = None, breach_label: str = "breach") -> go.Figure:
    """One series: history, imputed and anomalous days, forecast with interval, threshold and breach date,
    and (when given) the stored backtest forecasts over the history shown (``backtest_traces``)."""
    start = forecast["ds"].min() if len(forecast) else None
    since = history["ds"].min() if len(history) else None
    fig = new_figure(server_traces(history, forecast, interval) + backtest_traces(backtests, since))
    # The legend goes under the plot: above it, its entries (several backtest cutoffs) ran into a long title.
    return styled(fig, title, height + 40, shapes=server_shapes(threshold, breach, level, start),
                  annotations=server_annotations(threshold, breach, level, breach_label),
                  margin=margin(left=76, bottom=96),
                  legend={"orientation": "h", "yanchor": "top", "y": -0.16, "xanchor": "left", "x": 0.0,
                          "traceorder": "normal"},
                  yaxis={"title": {"text": "daily P95 (% of capacity)"}, "range": [0, 105], "ticksuffix": " %"})


def risk_bar(ranked: pd.DataFrame) -> go.Figure:
    """Servers by worst risk level."""
    title = "Servers by worst risk level"
    counts = level_counts(ranked)
    fig = new_figure(go.Bar(x=[k.capitalize() for k in counts], y=list(counts.values()), text=list(counts.values()),
                           textposition="outside", marker_color=[style.RISK_COLOURS[k] for k in counts],
                           hovertemplate="%{x}: %{y} servers<extra></extra>"))
    fig.update_yaxes(title_text="servers", rangemode="tozero")
    fig.update_layout(showlegend=False)
    return styled(fig, title, 340)


def heatmap(frame: pd.DataFrame, metric: str, servers: int, names: dict[str, str] | None = None,
            statistic: str = "weekly mean") -> go.Figure:
    """Servers x weeks heatmap, busiest servers (last 13 weeks) at the top; weeks without data in grey.

    Args:
        frame: server_id, week, value (``data.peaks`` for the weekly peak, ``data.weekly`` for the mean).
        metric: the metric shown.
        servers: how many of the busiest servers to show.
        names: server_id -> row label (``data.server_names``); the server_id where absent.
        statistic: what ``value`` is, for the title (``weekly peak``, ``weekly mean``).
    """
    name = METRIC_NAMES.get(metric, metric)
    grid = week_grid(frame, servers)
    labels = [(names or {}).get(s, s) for s in grid.index]
    # A cell is centred on its x: the middle of its week, so it spans Monday to Sunday (centred on the Monday,
    # every week looked as if it began 3-4 days early; helper-52). The hover says the Monday.
    mondays = pd.DatetimeIndex(grid.columns)
    fig = new_figure([
        go.Heatmap(z=np.round(grid.to_numpy(float), 1), x=dates(mondays + pd.Timedelta(hours=84)), y=labels,
                   zmin=0, zmax=100, colorscale="YlOrRd", colorbar={"title": {"text": f"{name} %"}, "ticksuffix": " %"},
                   customdata=np.array(grid.index, dtype=object)[:, None].repeat(grid.shape[1], axis=1),
                   text=np.array(mondays.strftime("%Y-%m-%d"), dtype=object)[None, :].repeat(grid.shape[0], axis=0),
                   hovertemplate="%{y} (%{customdata}), week of %{text}: %{z:.1f} %<extra></extra>"),
        # Gaps show the plot background: one legend entry says what grey means (showlegend: plotly hides a
        # legend with a single entry).
        go.Scatter(x=[None], y=[None], mode="markers", name="no data (fewer than 4 observed days in the week)",
                   marker={"symbol": "square", "size": 12, "color": style.MISSING}, hoverinfo="skip"),
    ])
    fig.update_yaxes(autorange="reversed", tickfont={"size": 10})
    return styled(fig, f"Fleet utilisation: {statistic} of the daily {name} P95 (% of capacity), busiest "
                  f"{len(grid)} servers", max(380, 15 * len(grid) + 130), plot_bgcolor=style.MISSING, showlegend=True,
                  margin=margin(left=max(60, text_width(labels, 10) + 16), right=120, top=76))


def cluster_scatter(points: pd.DataFrame, hot: set[str], threshold: float | None = None,
                    ring: str = "critical or high risk") -> go.Figure:
    """Servers by average CPU against peak CPU (``summary.cluster_map``), coloured by cluster.

    Args:
        points: ``summary.cluster_map`` output.
        hot: server ids ringed in red (critical or high risk).
        threshold: a horizontal line at the breach threshold (None: no line).
        ring: what the red ring means, for the title (``summary.CLUSTER_RING``: risk in the plotted metric).
    """
    axes = points.attrs.get("axes") or {"level": "average CPU (%)", "peak": "peak CPU (%)"}
    fig = new_figure()
    for i, (label, group) in enumerate(points.groupby("cluster_label", sort=True)):
        fig.add_trace(go.Scatter(
            x=np.round(group["level"].to_numpy(float), 2), y=np.round(group["peak"].to_numpy(float), 2),
            mode="markers", name=f"{label} ({len(group)})",
            customdata=group[["server_id"]].to_numpy(), text=group["server_id"],
            marker={"size": 10, "color": style.CATEGORICAL[i % len(style.CATEGORICAL)],
                    "line": {"color": [style.RISK_COLOURS["critical"] if s in hot else "white"
                                       for s in group["server_id"]],
                             "width": [2.5 if s in hot else 0.8 for s in group["server_id"]]}},
            hovertemplate="%{text}: average %{x:.0f} %, peak %{y:.0f} %<extra>" + str(label) + "</extra>"))
    shapes = [{"type": "line", "x0": 0, "y0": 0, "x1": 100, "y1": 100, "layer": "below",
               "line": {"color": style.MUTED, "dash": "dot", "width": 1}}]
    edge = 0.95 * points.attrs.get("level_max", 100.0)
    notes = [{"x": edge, "y": edge, "text": "peak = average", "showarrow": False, "xanchor": "right", "yshift": 10,
              "font": {"color": style.MUTED, "size": 11}}]
    if threshold is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": threshold, "y1": threshold,
                       "line": {"color": style.THRESHOLD, "dash": "dash", "width": 1.2}})
        notes.append({"xref": "paper", "x": 0.0, "y": threshold, "text": f"threshold {threshold:g} %",
                      "showarrow": False, "yshift": 9, "xanchor": "left", "font": {"color": style.THRESHOLD}})
    fig.update_xaxes(title_text=axes["level"], range=list(cluster_range(points.attrs.get("level_max", 100.0))),
                     ticksuffix=" %")
    fig.update_yaxes(title_text=axes["peak"], range=list(cluster_range(105.0)), ticksuffix=" %")
    names = [trace.name for trace in fig.data]
    return styled(fig, f"Workload clusters: usual load vs peak load (red ring = {ring})", 480,
                  shapes=shapes, annotations=notes,
                  legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"},
                  margin=margin(right=text_width(names) + 44, bottom=56))


def savings_bar(recs: pd.DataFrame) -> go.Figure:
    """Net monthly savings by recommended action (upsizing shows as a cost); a panel saying ``not priced``
    when no server has a monthly cost (never bars of $0)."""
    title = "Savings by recommended action (USD per month)"
    if not priced_servers(recs):
        return empty_figure(title, f"Savings {NOT_PRICED}: {NO_PRICES} ({plural(len(recs), 'server')})", 340)
    grouped = savings_by_action(recs)
    order = [a for a in style.ACTION_COLOURS if a in grouped.index] + sorted(set(grouped.index) - set(
        style.ACTION_COLOURS))
    grouped = grouped.reindex(order)
    labels = [action_savings_text(int(n), int(p), float(v)) for n, p, v in
              zip(grouped["servers"], grouped["priced"], grouped["savings"], strict=True)]
    values = np.nan_to_num(grouped["savings"].to_numpy(float))
    # Labels sit beside the bars, to the right of zero for every bar, so they never cover the axis labels.
    low, high = min(0.0, float(values.min())), max(0.0, float(values.max()))
    span = (high - low) or 1.0
    fig = new_figure([
        go.Bar(y=[a.capitalize() for a in grouped.index], x=values, orientation="h",
               marker_color=[style.ACTION_COLOURS.get(a, style.ACCENT) for a in grouped.index],
               hovertemplate="%{y}: %{x:$,.0f} per month<extra></extra>"),
        go.Scatter(y=[a.capitalize() for a in grouped.index], x=np.maximum(values, 0) + span * 0.02, mode="text",
                   text=labels, textposition="middle right", hoverinfo="skip"),
    ])
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="net savings (USD per month; negative = extra cost)", tickformat="$,.0f",
                     range=[low - span * 0.05, high + span * 0.45])
    fig.update_layout(showlegend=False)
    return styled(fig, title, 340, margin=margin(left=max(60, text_width(grouped.index) + 12), bottom=56))


def accuracy_box(backtests: pd.DataFrame) -> go.Figure:
    """Backtest MASE by model (lower is better; 1 = the in-sample error of a weekly seasonal naive forecast).

    Boxes span P25-P75, whiskers ``style.WHISKER_PERCENTILES`` (P5-P95); every value beyond them is a
    point. The axis stops a little past the longest whisker: points beyond it sit on the edge as
    triangles, their real values in the hover and in the axis title.
    """
    summary = model_accuracy(backtests)
    per_series = series_mase(backtests)
    low, high = style.WHISKER_PERCENTILES
    traces, stats = [], {}
    for row in summary.itertuples():
        values = per_series.loc[per_series["model"] == row.model, "mase"].dropna().to_numpy(float)
        stats[str(row.model)] = (values, style.box_stats(values))
    cap = style.axis_cap([s["upperfence"] for _, s in stats.values()])
    beyond_total, worst = 0, 0.0
    for row in summary.itertuples():
        values, s = stats[str(row.model)]
        label = model_label(row.model)
        traces.append(go.Box(y=[label], q1=[s["q1"]], median=[s["median"]], q3=[s["q3"]],
                             lowerfence=[s["lowerfence"]], upperfence=[s["upperfence"]], name=label,
                             orientation="h", fillcolor=style.ACCENT if row.selected else style.BAND,
                             line={"color": style.NAVY, "width": 1.2}, hoverinfo="skip"))
        outside = values[(values < s["lowerfence"]) | (values > s["upperfence"])]
        if len(outside):
            clipped = outside > cap
            beyond_total += int(clipped.sum())
            worst = max(worst, float(outside.max()))
            traces.append(go.Scatter(
                x=np.round(np.minimum(outside, cap), 3), y=[label] * len(outside), mode="markers",
                name=f"{label} outliers", customdata=np.round(outside, 2),
                marker={"color": style.NAVY, "size": np.where(clipped, 9, 5), "opacity": 0.45,
                        "symbol": np.where(clipped, "triangle-right", "circle")},
                hovertemplate=f"{label}: MASE " + "%{customdata}<extra></extra>"))
    fig = new_figure(traces)
    fig.add_vline(x=1.0, line_dash="dash", line_color=style.THRESHOLD)
    fig.update_yaxes(autorange="reversed", type="category")
    cut = f"; {beyond_total} values beyond {cap:.1f} drawn on the edge (up to {worst:.1f})" if beyond_total else ""
    # Two lines: plotly never wraps an axis title, and one line ran past the right edge of the chart.
    fig.update_xaxes(title_text="MASE per series, mean over its windows (1 = in-sample weekly seasonal-naive error)"
                     f"<br>box P25-P75, whiskers P{low:g}-P{high:g}, points beyond{cut}", range=[0, cap * 1.02])
    fig.update_layout(showlegend=False)
    return styled(fig, "Forecast accuracy by model (backtest MASE, lower is better)", max(300, 40 * len(summary) + 140),
                  margin=margin(left=max(60, text_width(summary["model"].map(model_label)) + 12), bottom=84))
