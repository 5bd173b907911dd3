"""Report charts as PNG (matplotlib): fleet heatmap, risk distribution, cluster map, savings, model accuracy."""

from __future__ import annotations

import logging

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from capacity_forecaster.report import style
from capacity_forecaster.report.data import ReportData, not_available
from capacity_forecaster.report.forecast_chart import forecast_panels
from capacity_forecaster.report.summary import cluster_map, level_counts, model_accuracy, money, ranked_risks

log = logging.getLogger(__name__)

CHART_FILES = (
    "fleet_heatmap.png", "forecast_top_risks.png", "risk_distribution.png", "cluster_map.png",
    "savings_by_action.png", "backtest_accuracy.png",
)
_METRIC_NAMES = {"cpu": "CPU", "memory": "Memory", "disk": "Disk", "network": "Network"}


def fleet_heatmap(data: ReportData) -> Figure:
    """Servers x weeks heatmap of the weekly mean utilisation (busiest servers at the top)."""
    cfg = data.settings.report
    metric = "CPU" if cfg.heatmap_metric == "cpu" else cfg.heatmap_metric
    title = f"Fleet utilisation: weekly mean {metric} (% of capacity)"
    weekly = data.weekly
    if weekly is None or weekly.empty:
        return style.placeholder(11, 4, title, not_available("metrics"))
    grid = weekly.pivot(index="server_id", columns="week", values="value").sort_index(axis=1)
    recent = grid.iloc[:, -13:].mean(axis=1).sort_values(ascending=False)
    shown = recent.index[: cfg.heatmap_servers]
    grid = grid.loc[shown]
    rows = len(grid)
    height = max(3.5, 0.15 * rows + 1.9)
    subtitle = (f"{rows} of {len(recent)} servers, busiest (last 13 weeks) at the top; "
                f"weekly mean of the daily P95")
    fig = style.new_figure(11, height, title, subtitle)
    top = style.top_margin(height)
    ax = fig.add_axes((0.1, 0.7 / height, 0.8, top - 0.7 / height - 0.02))
    cax = fig.add_axes((0.915, 0.7 / height, 0.012, top - 0.7 / height - 0.02))
    weeks = pd.DatetimeIndex(grid.columns)
    edges = mdates.date2num(weeks.append(pd.DatetimeIndex([weeks[-1] + pd.Timedelta(days=7)])))
    mesh = ax.pcolormesh(edges, np.arange(rows + 1), grid.to_numpy(float), cmap="YlOrRd", vmin=0, vmax=100,
                         shading="flat")
    ax.set_ylim(rows, 0)
    ax.set_yticks(np.arange(rows) + 0.5)
    ax.set_yticklabels(grid.index, fontsize=6 if rows > 30 else 7.5)
    ax.grid(False)
    locator = mdates.AutoDateLocator(minticks=6, maxticks=14)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.tick_params(axis="y", length=0)
    colorbar = fig.colorbar(mesh, cax=cax)
    colorbar.set_label(f"{_METRIC_NAMES[cfg.heatmap_metric]} utilisation (%)", fontsize=8)
    colorbar.outline.set_visible(False)
    return fig


def risk_distribution(data: ReportData) -> Figure:
    """Servers by worst risk level, and series by metric and level."""
    title = "Breach risk: servers by worst risk level"
    ranked = ranked_risks(data)
    if ranked.empty:
        return style.placeholder(11, 4, title, not_available("server_risk"))
    counts = level_counts(ranked)
    worst = ranked.drop_duplicates("server_id")
    unassessed = int(worst["risk_level"].isna().sum())
    threshold = data.settings.risk.threshold
    subtitle = (f"{len(worst)} servers, {len(ranked)} series; breach = forecast daily P95 above its threshold "
                f"({threshold:g} % unless overridden)")
    fig = style.new_figure(11, 4.2, title, subtitle)
    top = style.top_margin(4.2)
    left = fig.add_axes((0.09, 0.14, 0.36, top - 0.2))
    right = fig.add_axes((0.58, 0.14, 0.38, top - 0.2))
    labels = list(counts) + (["unassessed"] if unassessed else [])
    values = list(counts.values()) + ([unassessed] if unassessed else [])
    ypos = np.arange(len(labels))
    left.barh(ypos, values, color=[style.RISK_COLOURS[x] for x in labels], height=0.62)
    left.set_yticks(ypos, [x.capitalize() for x in labels])
    left.invert_yaxis()
    left.set_xlabel("servers")
    left.grid(axis="y", visible=False)
    left.set_title("Servers by worst level", fontsize=10)
    span = max(values) if max(values) else 1
    for y, v in zip(ypos, values, strict=True):
        left.text(v + span * 0.02, float(y), f"{v}", va="center", fontsize=9, color=style.INK)
    left.set_xlim(0, span * 1.15)
    assessed = ranked.dropna(subset=["risk_level"])
    table = pd.crosstab(assessed["metric"], assessed["risk_level"]).reindex(columns=list(counts), fill_value=0)
    table = table.reindex([m for m in ("cpu", "memory", "disk", "network") if m in table.index]
                          + [m for m in table.index if m not in _METRIC_NAMES])
    start = np.zeros(len(table))
    for level in reversed(list(counts)):
        widths = table[level].to_numpy(float)
        right.barh(np.arange(len(table)), widths, left=start, color=style.RISK_COLOURS[level], height=0.62,
                   label=level.capitalize())
        start += widths
    right.set_yticks(np.arange(len(table)), [_METRIC_NAMES.get(m, m) for m in table.index])
    right.invert_yaxis()
    right.set_xlabel("series (server x metric)")
    right.grid(axis="y", visible=False)
    right.set_title("Series by metric", fontsize=10)
    handles, names = right.get_legend_handles_labels()
    right.legend(handles[::-1], names[::-1], ncols=4, loc="lower right", bbox_to_anchor=(1.0, 1.0),
                 handlelength=1.2, columnspacing=1.0)
    return fig


def cluster_chart(data: ReportData) -> Figure:
    """Servers on the first two principal components of their workload profile, coloured by cluster."""
    title = "Workload clusters: servers by profile (PCA)"
    points = cluster_map(data)
    if points.empty:
        return style.placeholder(11, 5, title, not_available("metrics"))
    explained = points.attrs.get("explained", (0.0, 0.0))
    ranked = ranked_risks(data)
    hot = set(ranked.loc[ranked["level_code"] >= 2, "server_id"]) if not ranked.empty else set()
    subtitle = ("Standardised features per server: mean, P95, variability and trend of each metric, weekend/"
                "weekday CPU ratio" + ("" if data.table("clusters") is not None else
                                       f"; clusters {not_available('clusters')}"))
    fig = style.new_figure(11, 5.6, title, subtitle)
    top = style.top_margin(5.6)
    ax = fig.add_axes((0.07, 0.1, 0.6, top - 0.14))
    labels = sorted(points["cluster_label"].unique())
    handles = []
    for i, label in enumerate(labels):
        sel = points[points["cluster_label"] == label]
        colour = style.CATEGORICAL[i % len(style.CATEGORICAL)]
        ax.scatter(sel["pc1"], sel["pc2"], s=34, color=colour, alpha=0.85, edgecolor="white", linewidth=0.6)
        handles.append(Line2D([], [], marker="o", linestyle="", color=colour, markersize=7,
                              label=f"{label} ({len(sel)})"))
    flagged = points[points["server_id"].isin(hot)]
    if len(flagged):
        ax.scatter(flagged["pc1"], flagged["pc2"], s=110, facecolor="none", edgecolor=style.RISK_COLOURS["critical"],
                   linewidth=1.3)
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markersize=10,
                              markeredgecolor=style.RISK_COLOURS["critical"], label="critical or high risk"))
    ax.set_xlabel(f"principal component 1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"principal component 2 ({explained[1]:.0%} of variance)")
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.69, top - 0.02), title="cluster (servers)",
               alignment="left", fontsize=8, title_fontsize=9)
    return fig


def savings_chart(data: ReportData) -> Figure:
    """Net monthly savings by recommended action (upsizing shows as a cost)."""
    title = "Savings by recommended action (USD per month)"
    recs = data.table("recommendations")
    if recs is None or recs.empty:
        return style.placeholder(11, 4, title, not_available("recommendations"))
    order = [a for a in style.ACTION_COLOURS if a in set(recs["action"])]
    order += sorted(set(recs["action"]) - set(order))
    grouped = recs.groupby("action").agg(servers=("server_id", "size"), savings=("monthly_savings", "sum"))
    grouped = grouped.reindex(order)
    cost = float(recs["current_monthly_cost"].sum())
    net = float(recs["monthly_savings"].sum())
    share = f" ({100 * net / cost:.1f} % of the fleet's {money(cost)})" if cost > 0 else ""
    subtitle = f"Net {money(net)} per month{share}, {money(12 * net)} per year"
    fig = style.new_figure(11, 4.2, title, subtitle)
    top = style.top_margin(4.2)
    ax = fig.add_axes((0.14, 0.14, 0.7, top - 0.2))
    ypos = np.arange(len(grouped))
    values = grouped["savings"].to_numpy(float)
    ax.barh(ypos, values, color=[style.ACTION_COLOURS.get(a, style.ACCENT) for a in grouped.index], height=0.6)
    ax.axvline(0, color=style.MUTED, linewidth=0.8)
    ax.set_yticks(ypos, [a.capitalize() for a in grouped.index])
    ax.invert_yaxis()
    ax.grid(axis="y", visible=False)
    style.money_axis(ax, "x")
    ax.set_xlabel("net monthly savings (negative = extra cost)")
    low, high = min(0.0, values.min()), max(0.0, values.max())
    pad = (high - low) * 0.03 or 1.0
    ax.set_xlim(low - (pad if low < 0 else 0), high + pad * 12)
    for y, (action, row) in zip(ypos, grouped.iterrows(), strict=True):
        count = int(row["servers"])
        text = f"{count} server{'s' if count != 1 else ''}, {money(row['savings'], signed=True)}"
        x = max(row["savings"], 0) + pad
        ax.text(x, float(y), text, va="center", fontsize=8.5, color=style.INK)
        log.debug("savings %s: %s", action, text)
    return fig


def accuracy_chart(data: ReportData) -> Figure:
    """Backtest MASE by model across series and cutoffs (boxes), with how many series chose each model."""
    title = "Forecast accuracy by model (backtest MASE, lower is better)"
    backtests = data.table("backtests")
    if backtests is None or backtests.empty:
        return style.placeholder(11, 4, title, not_available("backtests"))
    summary = model_accuracy(backtests)
    models = list(summary["model"])
    height = max(3.6, 0.42 * len(models) + 1.6)
    subtitle = ("MASE = mean absolute error / in-sample error of a weekly seasonal-naive forecast (1.0, dashed); "
                f"{backtests['cutoff'].nunique()} cutoffs")
    fig = style.new_figure(11, height, title, subtitle)
    top = style.top_margin(height)
    ax = fig.add_axes((0.16, 0.55 / height, 0.62, top - 0.55 / height - 0.03))
    series = [backtests.loc[backtests["model"] == m, "mase"].dropna().to_numpy(float) for m in models]
    upper = float(np.nanpercentile(np.concatenate(series), 97)) if any(len(s) for s in series) else 2.0
    box = ax.boxplot([s if len(s) else np.array([np.nan]) for s in series], orientation="horizontal",
                     widths=0.55, patch_artist=True, showfliers=False, medianprops={"color": style.INK})
    for patch, selected in zip(box["boxes"], summary["selected"], strict=True):
        patch.set_facecolor(style.ACCENT if selected else style.BAND)
        patch.set_edgecolor(style.NAVY)
    ax.set_yticks(np.arange(1, len(models) + 1), models)
    ax.invert_yaxis()
    ax.axvline(1.0, color=style.THRESHOLD, linestyle="--", linewidth=1)
    ax.set_xlim(0, max(1.3, upper * 1.05))
    ax.set_xlabel("MASE per series and cutoff")
    ax.grid(axis="y", visible=False)
    for y, row in enumerate(summary.itertuples(), start=1):
        ax.annotate(f"median {row.median_mase:.2f} | chosen for {row.selected} series", (1.01, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize=8, color=style.INK)
    return fig


def render_charts(data: ReportData, history: pd.DataFrame) -> dict[str, bytes]:
    """Every report chart as PNG bytes, keyed by file name (``CHART_FILES``).

    Args:
        data: the report data.
        history: daily history of the series the forecast chart shows (``data.load_history``).

    Returns:
        File name -> PNG bytes; a chart whose table is absent is a panel saying what to run.
    """
    builders = {
        "fleet_heatmap.png": lambda: fleet_heatmap(data),
        "forecast_top_risks.png": lambda: forecast_panels(data, history),
        "risk_distribution.png": lambda: risk_distribution(data),
        "cluster_map.png": lambda: cluster_chart(data),
        "savings_by_action.png": lambda: savings_chart(data),
        "backtest_accuracy.png": lambda: accuracy_chart(data),
    }
    out = {}
    with style.report_style():
        for name, build in builders.items():
            out[name] = style.to_png(build())
    return out
