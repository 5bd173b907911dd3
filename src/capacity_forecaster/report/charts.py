"""Report charts as PNG (matplotlib): fleet heatmap, risk distribution, cluster map, savings, model accuracy."""

from __future__ import annotations

import logging
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from capacity_forecaster.report import style
from capacity_forecaster.report.data import (
    HEATMAP_MIN_DAYS,
    ReportData,
    backtest_windows,
    not_available,
    server_names,
)
from capacity_forecaster.report.forecast_chart import forecast_panels
from capacity_forecaster.report.risks import STALE, level_counts, report_risks, unlevelled_counts
from capacity_forecaster.report.summary import (
    CLUSTER_RING,
    cluster_map,
    cluster_range,
    cluster_ringed,
    model_accuracy,
    profile_text,
    published_models,
    series_mase,
    week_grid,
)
from capacity_forecaster.report.text import (
    NO_PRICES,
    NOT_PRICED,
    action_savings_text,
    fitted,
    model_label,
    money,
    plural,
    priced_servers,
    savings_by_action,
)

log = logging.getLogger(__name__)

CHART_FILES = (
    "fleet_heatmap.png", "forecast_top_risks.png", "risk_distribution.png", "cluster_map.png",
    "savings_by_action.png", "backtest_accuracy.png",
)
_METRIC_NAMES = {"cpu": "CPU", "memory": "Memory", "disk": "Disk", "network": "Network"}


# Characters of a server name the heatmap's row labels show (the rest is cut in the middle: ``text.fitted``).
HEATMAP_LABEL = 27


def fleet_heatmap(data: ReportData) -> Figure:
    """Servers x weeks heatmap of each week's peak (highest daily P95), busiest servers at the top.

    Rows name servers by hostname (``data.server_names``); weeks without enough data are grey and
    say so in the legend.
    """
    cfg = data.settings.report
    metric = _METRIC_NAMES.get(cfg.heatmap_metric, cfg.heatmap_metric)
    title = f"Fleet utilisation: weekly peak {metric} (% of capacity)"
    peaks = data.peaks
    if peaks is None or peaks.empty:
        return style.placeholder(11, 4, title, not_available("metrics"))
    grid = week_grid(peaks, cfg.heatmap_servers)
    total = int(peaks["server_id"].nunique())
    names = server_names(data)
    rows = len(grid)
    height = max(3.8, 0.17 * rows + 2.2)
    ranked_weeks = min(13, grid.shape[1])
    window = (f"last {plural(ranked_weeks, 'week')}" if ranked_weeks < grid.shape[1]
              else f"all {plural(ranked_weeks, 'week')}")
    subtitle = (f"{rows:,} of {plural(total, 'server')}, busiest ({window}) at the top; each cell is "
                "the week's highest daily P95, so month-end peaks stay visible")
    fig = style.new_figure(11, height, title, subtitle)
    top = style.top_margin(height) - 0.25 / height
    bottom = 0.75 / height
    ax = fig.add_axes((0.17, bottom, 0.74, top - bottom))
    cax = fig.add_axes((0.925, bottom, 0.012, top - bottom))
    weeks = pd.DatetimeIndex(grid.columns)
    edges = mdates.date2num(weeks.append(pd.DatetimeIndex([weeks[-1] + pd.Timedelta(days=7)])))
    # NaN cells are not drawn: the axes' grey face shows through, and the legend names it.
    ax.set_facecolor(style.MISSING)
    mesh = ax.pcolormesh(edges, np.arange(rows + 1), np.ma.masked_invalid(grid.to_numpy(float)), cmap="YlOrRd",
                         vmin=0, vmax=100, shading="flat")
    ax.set_ylim(rows, 0)
    ax.set_yticks(np.arange(rows) + 0.5)
    # At most HEATMAP_LABEL characters fit left of the axes (helper-69: NAB's ids lost their start).
    ax.set_yticklabels([fitted(str(names.get(s, s)), HEATMAP_LABEL) for s in grid.index],
                       fontsize=7 if rows > 30 else 8)
    ax.grid(False)
    locator = mdates.AutoDateLocator(minticks=6, maxticks=14)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.tick_params(axis="y", length=0)
    colorbar = fig.colorbar(mesh, cax=cax)
    colorbar.set_label(f"{metric} utilisation (%)", fontsize=8)
    colorbar.outline.set_visible(False)
    missing = Patch(facecolor=style.MISSING, edgecolor="none",
                    label=f"no data (fewer than {HEATMAP_MIN_DAYS} observed days in the week)")
    ax.legend(handles=[missing], loc="lower right", bbox_to_anchor=(1.0, 1.0), borderaxespad=0.2, fontsize=8)
    return fig


def risk_distribution(data: ReportData) -> Figure:
    """Servers by worst risk level, and series by metric and level."""
    title = "Breach risk: servers by worst risk level"
    ranked = report_risks(data)
    if ranked.empty:
        return style.placeholder(11, 4, title, not_available("server_risk"))
    counts = level_counts(ranked)
    worst = ranked.drop_duplicates("server_id")
    # Every server in one bar: stale ones (levels as of old data) and unassessed ones apart (helper-69: fastStorage
    # showed 48 bars under "50 servers", and its 2 stale series among the critical ones on the right).
    others = unlevelled_counts(ranked, len(worst))
    threshold = data.settings.risk.threshold
    subtitle = (f"{plural(len(worst), 'server')}, {len(ranked):,} series; breach = forecast daily P95 above its "
                f"threshold ({threshold:g} % unless overridden)")
    fig = style.new_figure(11, 4.2, title, subtitle)
    top = style.top_margin(4.2)
    left = fig.add_axes((0.09, 0.14, 0.36, top - 0.27))  # room above for the titles and the legend
    right = fig.add_axes((0.58, 0.14, 0.38, top - 0.27))
    extra = {"stale": others["stale"], "unassessed": others["not assessed"]}
    labels = list(counts) + [name for name, count in extra.items() if count]
    values = list(counts.values()) + [count for count in extra.values() if count]
    ypos = np.arange(len(labels))
    left.barh(ypos, values, color=[style.RISK_COLOURS[x] for x in labels], height=0.62)
    left.set_yticks(ypos, [x.capitalize() for x in labels])
    left.invert_yaxis()
    left.set_xlabel("servers")
    left.grid(axis="y", visible=False)
    left.set_title("Servers by worst level", fontsize=10, pad=28)
    span = max(values) if max(values) else 1
    for y, v in zip(ypos, values, strict=True):
        left.text(v + span * 0.02, float(y), f"{v}", va="center", fontsize=9, color=style.INK)
    left.set_xlim(0, span * 1.15)
    assessed = ranked.dropna(subset=["risk_level"])
    stale = (assessed["status"] == STALE) if "status" in assessed.columns else np.zeros(len(assessed), dtype=bool)
    shown = assessed["risk_level"].astype(object).where(~stale, "stale")
    columns = list(counts) + (["stale"] if (shown == "stale").any() else [])
    table = pd.crosstab(assessed["metric"], shown).reindex(columns=columns, fill_value=0)
    table = table.reindex([m for m in ("cpu", "memory", "disk", "network") if m in table.index]
                          + [m for m in table.index if m not in _METRIC_NAMES])
    start = np.zeros(len(table))
    for level in reversed(columns):
        widths = table[level].to_numpy(float)
        right.barh(np.arange(len(table)), widths, left=start, color=style.RISK_COLOURS[level], height=0.62,
                   label=level.capitalize())
        start += widths
    right.set_yticks(np.arange(len(table)), [_METRIC_NAMES.get(m, m) for m in table.index])
    right.invert_yaxis()
    right.set_xlabel("series (server x metric)")
    right.grid(axis="y", visible=False)
    right.set_title("Series by metric", fontsize=10, pad=28)  # above the legend
    handles, names = right.get_legend_handles_labels()
    right.legend(handles[::-1], names[::-1], ncols=len(columns), loc="lower right", bbox_to_anchor=(1.0, 1.0),
                 handlelength=1.2, columnspacing=1.0)
    return fig


# Ringed (at-risk) servers named on the cluster map, highest peak first, as long as a name overlaps no other;
# more would crowd it (the legend counts the rest). Rings within RING_APART points (both axes) of a named one
# are counted into its name ("+5").
RING_LABELS = 10
RING_APART = 4.0


def cluster_chart(data: ReportData) -> Figure:
    """Servers by average CPU against peak CPU (``summary.cluster_map``), coloured by workload cluster."""
    title = "Workload clusters: usual CPU load vs peak CPU load"
    points = cluster_map(data)
    if points.empty:
        return style.placeholder(11, 5, title, not_available("metrics"))
    axes = points.attrs["axes"]
    ranked = report_risks(data)
    hot = cluster_ringed(ranked)
    threshold = data.settings.risk.threshold
    subtitle = (f"Clusters come from the whole workload profile ({profile_text(data)}); "
                "far above the diagonal = peaks well beyond the usual load"
                + ("" if data.table("clusters") is not None else f"; clusters {not_available('clusters')}"))
    fig = style.new_figure(11, 5.8, title, subtitle)
    top = style.top_margin(5.8)
    ax = fig.add_axes((0.07, 0.1, 0.58, top - 0.14))
    handles = []
    for i, label in enumerate(sorted(points["cluster_label"].unique())):
        sel = points[points["cluster_label"] == label]
        colour = style.CATEGORICAL[i % len(style.CATEGORICAL)]
        ax.scatter(sel["level"], sel["peak"], s=34, color=colour, alpha=0.85, edgecolor="white", linewidth=0.6)
        handles.append(Line2D([], [], marker="o", linestyle="", color=colour, markersize=7, alpha=0.85,
                              markeredgecolor="white", label=f"{label} ({len(sel)})"))
    flagged = points[points["server_id"].isin(hot)]
    if len(flagged):
        ax.scatter(flagged["level"], flagged["peak"], s=110, facecolor="none",
                   edgecolor=style.RISK_COLOURS["critical"], linewidth=1.3)
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markersize=10,
                              markeredgecolor=style.RISK_COLOURS["critical"], label=CLUSTER_RING))
        # The ringed servers are named (helper-41: the ring said "at risk" but not which server).
        right = 0.7 * cluster_range(points.attrs["level_max"])[1]
        ranked_ring = flagged.sort_values(["peak", "server_id"], ascending=[False, True])
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        ring_points = flagged[["level", "peak"]].to_numpy(float)
        rings = ax.transData.transform(ring_points)  # display coordinates, as the names' boxes
        radius = np.sqrt(110) / 2 * fig.dpi / 72  # the ring marker's (s=110 points squared) radius in pixels
        named: list[list[Any]] = []  # [box, note, level, peak, rings counted into it]
        unnamed = 0
        for server, level, peak in zip(ranked_ring["server_id"].astype(str), ranked_ring["level"].to_numpy(float),
                                       ranked_ring["peak"].to_numpy(float), strict=True):
            clump = next((n for n in named if abs(n[2] - level) < RING_APART and abs(n[3] - peak) < RING_APART), None)
            if clump is not None:  # a ring on top of a named one: "bitbrains-fs-190 +5"
                clump[4] += 1
                clump[1].set_text(f"{clump[1].get_text().split(' +')[0]} +{clump[4]}")
                if level < clump[2] and clump[1].get_horizontalalignment() == "right":
                    clump[1].xy, clump[2] = (level, clump[1].xy[1]), level  # left of the clump's leftmost ring
                clump[0] = clump[1].get_window_extent(renderer)
                continue
            left = level > right  # near the right edge the name goes left of its point, inside the axes
            note = ax.annotate(server, (level, peak), xytext=(-8 if left else 8, -3), textcoords="offset points",
                               ha="right" if left else "left", fontsize=7, color=style.RISK_COLOURS["critical"])
            box = note.get_window_extent(renderer)
            if _covers_ring(box, rings, ring_points, (level, peak), radius):
                # Another server's ring under the name (helper-69: the demo's srv-0020 ring on "srv-0009"): the
                # other side of its point, else not named.
                note.set_horizontalalignment("left" if left else "right")
                note.xyann = (8 if left else -8, -3)
                box = note.get_window_extent(renderer)
            if (len(named) >= RING_LABELS or any(box.overlaps(n[0]) for n in named)
                    or _covers_ring(box, rings, ring_points, (level, peak), radius)):
                note.remove()  # a name written over another reads as neither: counted in the legend instead
                unnamed += 1
            else:
                named.append([box, note, level, peak, 0])
        if unnamed:
            handles[-1].set_label(f"{CLUSTER_RING} ({unnamed} not named: crowded)")
    ax.plot([0, 100], [0, 100], color=style.MUTED, linestyle=":", linewidth=0.9)
    ax.axhline(threshold, color=style.THRESHOLD, linestyle="--", linewidth=1.0)
    handles.append(Line2D([], [], color=style.MUTED, linestyle=":", linewidth=0.9, label="peak = average"))
    handles.append(Line2D([], [], color=style.THRESHOLD, linestyle="--", linewidth=1.0,
                          label=f"breach threshold ({threshold:g} %)"))
    style.percent_axis(ax, "x", points.attrs["level_max"])
    style.percent_axis(ax, "y", 105)
    # A margin outside 0 % and the top, so a server at 100 % (or idle at 0 %) keeps its whole marker and risk ring.
    ax.set_xlim(*cluster_range(points.attrs["level_max"]))
    ax.set_ylim(*cluster_range(105.0))
    ax.set_xlabel(axes["level"])
    ax.set_ylabel(axes["peak"])
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.67, top - 0.02), title="cluster (servers)",
               alignment="left", fontsize=8, title_fontsize=9)
    return fig


def _covers_ring(box: Any, rings: np.ndarray, points: np.ndarray, own: tuple[float, float], radius: float) -> bool:
    """Whether a name's box (display pixels) lies over the ring of a server that is not its own or within
    ``RING_APART`` of it (those are counted into the name: "+5")."""
    apart = (np.abs(points[:, 0] - own[0]) >= RING_APART) | (np.abs(points[:, 1] - own[1]) >= RING_APART)
    inside = ((rings[:, 0] > box.x0 - radius) & (rings[:, 0] < box.x1 + radius)
              & (rings[:, 1] > box.y0 - radius) & (rings[:, 1] < box.y1 + radius))
    return bool((apart & inside).any())


def savings_chart(data: ReportData) -> Figure:
    """Net monthly savings by recommended action (upsizing shows as a cost)."""
    title = "Savings by recommended action (USD per month)"
    recs = data.table("recommendations")
    if recs is None or recs.empty:
        return style.placeholder(11, 4, title, not_available("recommendations"))
    priced = priced_servers(recs)
    if not priced:
        return style.placeholder(11, 4, title, f"Savings {NOT_PRICED}: {NO_PRICES} "
                                                f"({plural(len(recs), 'server')}; actions are still recommended)")
    order = [a for a in style.ACTION_COLOURS if a in set(recs["action"])]
    order += sorted(set(recs["action"]) - set(order))
    grouped = savings_by_action(recs).reindex(order)
    cost = float(np.nansum(recs["current_monthly_cost"].to_numpy(float)))
    net = float(np.nansum(recs["monthly_savings"].to_numpy(float)))
    share = f" ({100 * net / cost:.1f} % of the fleet's {money(cost)})" if cost > 0 else ""
    scope = "" if priced == len(recs) else f"; {priced:,} of {plural(len(recs), 'server')} priced"
    subtitle = f"Net {money(net)} per month{share}, {money(12 * net)} per year{scope}"
    fig = style.new_figure(11, 4.2, title, subtitle)
    top = style.top_margin(4.2)
    ax = fig.add_axes((0.14, 0.14, 0.7, top - 0.2))
    ypos = np.arange(len(grouped))
    values = np.nan_to_num(grouped["savings"].to_numpy(float))
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
        text = action_savings_text(int(row["servers"]), int(row["priced"]), row["savings"])
        x = max(np.nan_to_num(row["savings"]), 0) + pad
        ax.text(x, float(y), text, va="center", fontsize=8.5, color=style.INK)
        log.debug("savings %s: %s", action, text)
    return fig


def accuracy_chart(data: ReportData) -> Figure:
    """Backtest MASE by model across series and cutoffs, with how many series chose each model.

    Boxes span P25-P75, whiskers ``style.WHISKER_PERCENTILES`` (P5-P95), values beyond them are
    points; the axis stops past the longest whisker (``style.axis_cap``) and points beyond it sit
    on the edge as triangles.
    """
    title = "Forecast accuracy by model (backtest MASE, lower is better)"
    backtests = data.table("backtests")
    if backtests is None or backtests.empty:
        return style.placeholder(11, 4, title, not_available("backtests"))
    summary = model_accuracy(backtests, published_models(data))
    models = list(summary["model"])
    height = max(3.8, 0.42 * len(models) + 1.8)
    low, high = style.WHISKER_PERCENTILES
    per_series = series_mase(backtests)
    series = [per_series.loc[per_series["model"] == m, "mase"].dropna().to_numpy(float) for m in models]
    cap = style.axis_cap([style.box_stats(s)["upperfence"] for s in series])
    beyond = np.concatenate([s[s > cap] for s in series]) if series else np.array([])
    subtitle = ("MASE = mean absolute error / in-sample error of a weekly seasonal-naive forecast (1.0, dashed); "
                f"{backtest_windows(backtests)} backtest windows per series")
    xlabel = (f"MASE per series (mean over its backtest windows): box P25-P75, whiskers P{low:g}-P{high:g}, "
              "dots beyond"
              + (f"; {len(beyond)} values above {cap:.1f} drawn as \u25b6 on the edge (up to {beyond.max():.1f})"
                 if len(beyond) else ""))
    fig = style.new_figure(11, height, title, subtitle)
    top = style.top_margin(height)
    ax = fig.add_axes((0.16, 0.6 / height, 0.62, top - 0.6 / height - 0.03))
    box = ax.boxplot([s if len(s) else np.array([np.nan]) for s in series],
                     orientation="horizontal", widths=0.55, patch_artist=True, whis=(low, high),
                     showfliers=True, medianprops={"color": style.INK},
                     flierprops={"marker": "o", "markersize": 3, "markerfacecolor": style.NAVY,
                                 "markeredgecolor": "none", "alpha": 0.45})
    for patch, selected in zip(box["boxes"], summary["selected"], strict=True):
        patch.set_facecolor(style.ACCENT if selected else style.BAND)
        patch.set_edgecolor(style.NAVY)
    for y, values in enumerate(series, start=1):
        count = int((values > cap).sum())
        if count:
            ax.scatter([cap] * count, [y] * count, marker=">", s=28, color=style.NAVY, alpha=0.6, clip_on=False)
    ax.set_yticks(np.arange(1, len(models) + 1), [model_label(m) for m in models])
    ax.invert_yaxis()
    ax.axvline(1.0, color=style.THRESHOLD, linestyle="--", linewidth=1)
    ax.set_xlim(0, cap * 1.02)
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    for y, row in enumerate(summary.itertuples(), start=1):
        ax.annotate(f"median {row.median_mase:.2f} | chosen for {row.selected} series", (1.01, y),
                    xycoords=("axes fraction", "data"), va="center", fontsize=8, color=style.INK)
    return fig


def render_charts(data: ReportData, history: pd.DataFrame,
                  backtests: pd.DataFrame | None = None) -> dict[str, bytes]:
    """Every report chart as PNG bytes, keyed by file name (``CHART_FILES``).

    Args:
        data: the report data.
        history: daily history of the series the forecast chart shows (``data.load_history``).
        backtests: their stored backtest forecasts (``data.load_backtest_forecasts``); None draws none.

    Returns:
        File name -> PNG bytes; a chart whose table is absent is a panel saying what to run.
    """
    builders = {
        "fleet_heatmap.png": lambda: fleet_heatmap(data),
        "forecast_top_risks.png": lambda: forecast_panels(data, history, backtests),
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
