"""Forecast-vs-actual PNG panels for the riskiest series: history, forecast, interval, threshold, breach date."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.dates as mdates
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from capacity_forecaster.report import style
from capacity_forecaster.report.data import ReportData, not_available
from capacity_forecaster.report.risks import ALREADY, breach_phrase, level_of, report_risks, risk_row, threshold_of
from capacity_forecaster.report.text import day
from capacity_forecaster.risk.levels import percent

_METRIC_NAMES = {"cpu": "CPU", "memory": "Memory", "disk": "Disk", "network": "Network"}


def top_series(ranked: pd.DataFrame, count: int) -> list[tuple[str, str]]:
    """The (server_id, metric) pairs the forecast chart shows.

    The ``count`` riskiest series at medium level or worse; when none is at risk, the ``count``
    assessed series with the highest forecast peaks.
    """
    if ranked.empty:
        return []
    chosen = ranked[ranked["level_code"] >= 1]
    if chosen.empty:
        chosen = ranked[ranked["level_code"] >= 0].sort_values(["peak_yhat", "server_id"], ascending=[False, True])
    return [(str(s), str(m)) for s, m in chosen[["server_id", "metric"]].head(count).itertuples(index=False)]


# One line style per backtest cutoff (oldest first), all in the faint backtest colour.
BACKTEST_STYLES: tuple[Any, ...] = (":", "--", "-.", (0, (5, 1, 1, 1, 1, 1)))


def backtest_lines(backtests: pd.DataFrame) -> pd.DataFrame:
    """The backtest forecasts of one series with ``ordinal`` (0 = oldest cutoff), which picks the line style."""
    out = backtests.copy()
    out["ordinal"] = out.groupby(["server_id", "metric"])["cutoff"].rank(method="dense").astype(int) - 1
    return out


def _draw_backtests(ax: Axes, backtests: pd.DataFrame, since: Any) -> set[int]:
    """Faint dashed lines of the backtest forecasts from ``since`` on; returns the ordinals drawn."""
    drawn = set()
    shown = backtests[backtests["ds"] >= since] if since is not None else backtests
    for ordinal in sorted(shown["ordinal"].unique()):
        part = shown[shown["ordinal"] == ordinal].sort_values("ds")
        ax.plot(part["ds"], part["yhat"], color=style.BACKTEST, alpha=style.BACKTEST_ALPHA, linewidth=1.0,
                linestyle=BACKTEST_STYLES[int(ordinal) % len(BACKTEST_STYLES)])
        drawn.add(int(ordinal))
    return drawn


def _panel(ax: Axes, row: dict[str, Any], past: pd.DataFrame, future: pd.DataFrame, threshold: float) -> bool:
    """One series' panel; whether it marked saturated days."""
    level = level_of(row)
    saturated = past[past["is_saturated"].astype(bool)] if "is_saturated" in past.columns else past[:0]
    colour = style.RISK_COLOURS.get(level, style.MUTED)
    if len(past):
        ax.plot(past["ds"], past["value"], color=style.ACTUAL, linewidth=0.9)
        imputed = past[past["is_imputed"].astype(bool)]
        ax.scatter(imputed["ds"], imputed["value"], s=9, facecolor="white", edgecolor=style.IMPUTED, linewidth=0.8,
                   zorder=3)
        anomalies = past[past["is_anomaly"].astype(bool)]
        ax.scatter(anomalies["ds"], anomalies["value"], s=16, marker="x", color=style.ANOMALY, linewidth=1.1,
                   zorder=4)
        # Demand above capacity at its clipped 100 % (as figures.server_traces).
        ax.scatter(saturated["ds"], saturated["value"], s=14, marker="^", color=style.THRESHOLD, linewidth=0,
                   zorder=4)
    if len(future):
        ax.fill_between(future["ds"], future["yhat_lower"], future["yhat_upper"], color=style.BAND, alpha=0.55,
                        linewidth=0)
        ax.plot(future["ds"], future["yhat"], color=style.ACCENT, linewidth=1.4)
        ax.axvline(future["ds"].min(), color=style.MUTED, linestyle=":", linewidth=0.9)
    ax.axhline(threshold, color=style.THRESHOLD, linestyle="--", linewidth=1.0)
    breach = row.get("breach_ds")
    if breach is not None and not pd.isna(breach):
        ax.axvline(breach, color=colour, linewidth=1.3)
        ax.scatter([breach], [threshold], s=40, color=colour, zorder=5, edgecolor="white")
        # Label on the side of the line with more room in the panel, so it never runs off it (helper-69: a "last
        # over" day near the end of a 7-day forecast's panel was cut at its right edge).
        low, high = ax.get_xlim()
        late = (mdates.date2num(pd.Timestamp(breach)) - low) > 0.6 * (high - low)
        label = f"last over {day(breach)}" if row.get("status") == ALREADY else f"breach {day(breach)}"
        # Above the threshold unless the forecast runs just over it there: then below, where its box would not
        # hide the forecast line (helper-50: Bitbrains VMs 333 and 270, forecast at 85 %, no line to see).
        near = future[(future["ds"] - pd.Timestamp(breach)).abs() <= pd.Timedelta(days=7)] if len(future) else future
        over = bool(len(near)) and float(near["yhat"].max()) >= threshold - 2.0
        ax.annotate(label, (breach, threshold), xytext=(-5 if late else 5, -9 if over else 7),
                    textcoords="offset points", fontsize=7.5, color=colour, fontweight="bold",
                    ha="right" if late else "left", va="top" if over else "baseline",
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    style.percent_axis(ax, "y", 105)
    ax.set_yticks([0, 25, 50, 75, 100])
    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    host = row.get("hostname")
    name = f"{row['server_id']}" + (f" ({host})" if isinstance(host, str) else "")
    ax.set_title(f"{name}: {_METRIC_NAMES.get(row['metric'], row['metric'])}", fontsize=9.5, loc="left", pad=16)
    when = breach_phrase(row, with_day=True)
    prob = row.get("breach_probability")
    prob_text = f", P(breach) {percent(prob)}" if prob is not None and not pd.isna(prob) else ""
    ax.text(0.0, 1.02, f"{level.capitalize()} risk: {when}{prob_text}", transform=ax.transAxes, fontsize=8,
            color=colour, ha="left", va="bottom")
    return bool(len(past) and len(saturated))


def observed_span(history: pd.DataFrame, forecasts: pd.DataFrame, history_days: int) -> str:
    """What the panels show of the history: ``Last 180 days observed`` (``report.history_days``), or the actual
    span when the history is shorter (``All 92 observed days``)."""
    if history.empty:
        return "No observed history"
    start = pd.Timestamp(forecasts["ds"].min()) - pd.Timedelta(days=history_days) if len(forecasts) else None
    if start is not None and history["ds"].min() <= start:  # the history fills the window
        return f"Last {history_days} days observed"
    shown = history if start is None else history[history["ds"] > start]
    days = (shown["ds"].max() - shown["ds"].min()).days + 1 if len(shown) else 0
    return f"All {days} observed day{'s' if days != 1 else ''} ({day(shown['ds'].min())} to {day(shown['ds'].max())})"


def _legend(interval: float, levels: list[str], cutoffs: dict[int, list[Any]], saturated: bool = False) -> list[Any]:
    """Legend handles drawn exactly like the panels' artists: one breach entry per risk level shown."""
    handles: list[Any] = [
        Line2D([], [], color=style.ACTUAL, linewidth=0.9, label="observed"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor=style.IMPUTED,
               label="imputed day"),
        Line2D([], [], marker="x", linestyle="", color=style.ANOMALY, label="anomaly"),
        *([Line2D([], [], marker="^", linestyle="", color=style.THRESHOLD, label="saturated (demand above capacity)")]
          if saturated else []),
        Line2D([], [], color=style.ACCENT, linewidth=1.4, label="forecast"),
        Patch(color=style.BAND, alpha=0.55, label=f"{interval:.0%} interval"),
        Line2D([], [], color=style.THRESHOLD, linestyle="--", linewidth=1.0, label="threshold"),
    ]
    handles += [Line2D([], [], color=style.RISK_COLOURS[level], linewidth=1.3, label=f"breach ({level} risk)")
                for level in style.RISK_COLOURS if level in levels]
    for ordinal in sorted(cutoffs):
        days = sorted(cutoffs[ordinal])
        when = day(days[0]) if len(set(days)) == 1 else f"~{day(days[0])}"
        handles.append(Line2D([], [], color=style.BACKTEST, alpha=style.BACKTEST_ALPHA, linewidth=1.0,
                              linestyle=BACKTEST_STYLES[ordinal % len(BACKTEST_STYLES)],
                              label=f"backtest from {when}"))
    return handles


def forecast_panels(data: ReportData, history: pd.DataFrame, backtests: pd.DataFrame | None = None) -> Figure:
    """Small multiples of forecast vs actual for the riskiest series (``report.chart_series`` of them).

    Args:
        data: report data (forecasts, server_risk, inventory).
        history: daily history of those series (``data.load_history``).
        backtests: their stored backtest forecasts (``data.load_backtest_forecasts``), drawn faint over the
            history shown, one line style per cutoff; None or empty draws none.
    """
    cfg = data.settings.report
    title = "Forecast vs actual: riskiest series (daily P95, % of capacity)"
    if data.forecasts is None or data.forecasts.series.empty:
        return style.placeholder(11, 4, title, not_available("forecasts"))
    ranked = report_risks(data)
    if ranked.empty:
        return style.placeholder(11, 4, title, not_available("server_risk"))
    pairs = top_series(ranked, cfg.chart_series)
    if not pairs:
        return style.placeholder(11, 4, title, "no series could be assessed (see server_risk.reason)")
    forecasts = data.forecasts.of(pairs)
    cols = 1 if len(pairs) == 1 else 2
    rows = math.ceil(len(pairs) / cols)
    height = 2.7 * rows + 1.5
    interval = data.settings.forecast.interval
    subtitle = (f"{observed_span(history, forecasts, cfg.history_days)}, then the chosen model's forecast with its "
                f"{interval:.0%} interval; dashed red = threshold")
    lines = backtest_lines(backtests) if backtests is not None and len(backtests) else None
    if lines is not None:
        subtitle += "; faint purple = backtests from past cutoffs"
    fig = style.new_figure(11, height, title, subtitle)
    top = style.top_margin(height) - 0.35 / height
    grid = fig.add_gridspec(rows, cols, left=0.06, right=0.985, top=top, bottom=0.95 / height, hspace=0.75,
                            wspace=0.12)
    levels: list[str] = []
    cutoffs: dict[int, list[Any]] = {}
    saturated = False
    for index, (server, metric) in enumerate(pairs):
        ax = fig.add_subplot(grid[index // cols, index % cols])
        row = risk_row(ranked, server, metric)
        future = forecasts[(forecasts["server_id"] == server) & (forecasts["metric"] == metric)].sort_values("ds")
        past = history[(history["server_id"] == server) & (history["metric"] == metric)]
        if len(future):
            past = past[past["ds"] > future["ds"].min() - pd.Timedelta(days=cfg.history_days)]
        if lines is not None:
            mine = lines[(lines["server_id"] == server) & (lines["metric"] == metric)]
            for ordinal in _draw_backtests(ax, mine, past["ds"].min() if len(past) else None):
                cutoffs.setdefault(ordinal, []).extend(mine.loc[mine["ordinal"] == ordinal, "cutoff"].unique())
        saturated |= _panel(ax, row, past.sort_values("ds"), future, threshold_of(row, data, metric))
        breach = row.get("breach_ds")
        if breach is not None and not pd.isna(breach) and level_of(row) not in levels:
            levels.append(level_of(row))
        if index % cols:
            ax.set_yticklabels([])
    handles = _legend(interval, levels, cutoffs, saturated)
    fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 6), bbox_to_anchor=(0.5, 0.005))
    return fig
