"""One visual identity for every report: colours per risk level and action, matplotlib style, PNG export."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import matplotlib

matplotlib.use("Agg")  # reports render off-screen; never pick an interactive backend

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

NAVY = "#1F3A5F"
INK = "#1E2430"
MUTED = "#6B7280"
GRID = "#E5E7EB"
ACCENT = "#2F6DB5"
BAND = "#9CC0E6"
THRESHOLD = "#C62828"
ACTUAL = "#374151"
IMPUTED = "#9CA3AF"
ANOMALY = "#D81B60"
MISSING = "#D1D5DB"  # heatmap cells without data: grey, outside the colour scale
BACKTEST = "#7C3AED"  # past forecasts from the backtest cutoffs, drawn faint
BACKTEST_ALPHA = 0.45
# plotly.js config of every interactive chart (dashboard and HTML report). plotly.js 3 shows a "Share chart..."
# button by default that uploads the chart's data (server ids, utilisation) to Plotly Cloud after one confirm
# (helper-73): no upload button and no upload address.
PLOTLY_CONFIG: dict[str, Any] = {
    "displaylogo": False, "showSendToCloud": False, "showEditInChartStudio": False, "plotlyServerURL": "",
    "modeBarButtonsToRemove": ["sendChartToCloud", "sendDataToCloud", "editInChartStudio"],
}
FONT = "DejaVu Sans"
# Box plots (forecast accuracy): the box spans P25-P75, the whiskers P5-P95, every value outside
# them is a point. 1.5 x IQR whiskers let a handful of MASE 30 series flatten the boxes.
WHISKER_PERCENTILES = (5.0, 95.0)

RISK_COLOURS = {
    "critical": "#B71C1C",
    "high": "#E65100",
    "medium": "#F9A825",
    "low": "#2E7D32",
    "stale": "#78909C",
    "unassessed": "#9E9E9E",
}
ACTION_COLOURS = {
    "decommission": "#1B5E20",
    "consolidate": "#2E7D32",
    "rightsize": "#66BB6A",
    "keep": "#90A4AE",
    "upsize": "#C62828",
}
# Cluster colours: distinct, print-safe and colour-blind-friendly (Okabe-Ito plus two).
CATEGORICAL = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
               "#999999", "#7B3294")

RC: dict[str, Any] = {
    "font.family": FONT,
    "font.size": 9,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.titlecolor": INK,
    "axes.labelsize": 9,
    "axes.labelcolor": INK,
    "axes.edgecolor": "#9CA3AF",
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": GRID,
    "grid.linewidth": 0.7,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.titlesize": 13,
    "figure.titleweight": "bold",
    # Text is text: money ("Net $34,080 per month, $408,964 per year") would otherwise turn into mathtext
    # between two "$" signs.
    "text.parse_math": False,
}
DPI = 150


@contextmanager
def report_style() -> Iterator[None]:
    """Apply the house matplotlib style inside the block (global rcParams are restored afterwards)."""
    with plt.rc_context(cast(Any, RC)):  # the stubs type rc keys as literals
        yield


def new_figure(width: float, height: float, title: str, subtitle: str = "") -> Figure:
    """A figure with the house title (bold, left) and an optional grey subtitle line.

    Args:
        width: inches.
        height: inches.
        title: the chart title; should name the unit.
        subtitle: one line of context under the title.
    """
    fig = plt.figure(figsize=(width, height), dpi=DPI)
    fig.text(0.01, 0.985, title, ha="left", va="top", fontsize=13, fontweight="bold", color=INK)
    if subtitle:
        # One line: a long subtitle gets a smaller font rather than running off the figure's edge
        # (about 0.55 em per character of the sans face).
        fits = 0.98 * width * 72 / (0.55 * 9)
        size = 9.0 if len(subtitle) <= fits else max(6.5, 9.0 * fits / len(subtitle))
        fig.text(0.01, 0.985 - 0.32 / height, subtitle, ha="left", va="top", fontsize=size, color=MUTED)
    return fig


def top_margin(height: float, subtitle: bool = True) -> float:
    """The figure fraction left free above the axes for the title (and subtitle)."""
    return 1.0 - (0.75 if subtitle else 0.5) / height


def placeholder(width: float, height: float, title: str, message: str) -> Figure:
    """A chart-sized panel that says why the chart is missing (e.g. "not available: run capfc risk")."""
    fig = new_figure(width, height, title)
    ax = fig.add_axes((0.02, 0.05, 0.96, top_margin(height, subtitle=False) - 0.08))
    ax.set_axis_off()
    ax.add_patch(plt.Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor="#F3F4F6", edgecolor=GRID))
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=12, color=MUTED, transform=ax.transAxes)
    return fig


def to_png(fig: Figure) -> bytes:
    """Render a figure to PNG bytes and release it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def percent_axis(ax: plt.Axes, axis: str = "y", top: float = 100.0) -> None:
    """Format an axis as 0-``top`` percent with a % suffix on the ticks."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda v, _pos: f"{v:.0f} %")
    if axis == "y":
        ax.set_ylim(0, top)
        ax.yaxis.set_major_formatter(formatter)
    else:
        ax.set_xlim(0, top)
        ax.xaxis.set_major_formatter(formatter)


def money_axis(ax: plt.Axes, axis: str = "x") -> None:
    """Format an axis in US dollars with thousands separators (``$12k`` beyond ten thousand)."""
    from matplotlib.ticker import FuncFormatter

    def fmt(value: float, _pos: int) -> str:
        sign = "-" if value < 0 else ""
        value = abs(value)
        return f"{sign}${value / 1000:,.0f}k" if value >= 10_000 else f"{sign}${value:,.0f}"

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_formatter(FuncFormatter(fmt))


def box_stats(values: Any) -> dict[str, float]:
    """Quartiles and whiskers of one box: q1, median, q3, and the ``WHISKER_PERCENTILES`` fences."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if not len(x):
        return {k: float("nan") for k in ("lowerfence", "q1", "median", "q3", "upperfence")}
    low, q1, median, q3, high = np.percentile(x, [WHISKER_PERCENTILES[0], 25, 50, 75,
                                                  WHISKER_PERCENTILES[1]])
    return {"lowerfence": float(low), "q1": float(q1), "median": float(median), "q3": float(q3),
            "upperfence": float(high)}


def axis_cap(fences: list[float]) -> float:
    """The right end of an accuracy axis: past every upper whisker (and MASE 1), so outliers beyond it
    do not flatten the boxes."""
    finite = [f for f in fences if np.isfinite(f)]
    return max(1.3, 1.15 * max(finite, default=1.0))
