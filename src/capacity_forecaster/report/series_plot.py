"""One series, one chart: history, forecast, interval, threshold, breach and backtest forecasts.

The notebook view of a series (``capacity_forecaster.plot_series``): matplotlib by default, plotly on
request. Inputs are plain frames, so it works on a lake's tables and on ``forecast(...)`` results.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from capacity_forecaster.errors import SchemaError
from capacity_forecaster.report import style
from capacity_forecaster.schema import DS, METRIC, SERVER_ID, VALUE


def series_frames(key: tuple[str, str], history: pd.DataFrame, forecasts: pd.DataFrame,
                  backtests: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The rows of one series from each frame, ``ds`` as timestamps, sorted.

    Raises:
        SchemaError: the series has neither history nor forecasts (naming it).
    """

    def pick(frame: pd.DataFrame | None) -> pd.DataFrame:
        if frame is None or frame.empty:
            return pd.DataFrame(columns=[DS])
        part = frame[(frame[SERVER_ID].astype(str) == key[0]) & (frame[METRIC].astype(str) == key[1])].copy()
        part[DS] = pd.to_datetime(part[DS])
        return part.sort_values(DS).reset_index(drop=True)

    past, future, paths = pick(history), pick(forecasts), pick(backtests)
    if past.empty and future.empty:
        raise SchemaError(f"plot_series: no history and no forecast for series ({key[0]}, {key[1]})")
    return past, future, paths


def breach_day(future: pd.DataFrame, threshold: float) -> pd.Timestamp | None:
    """The first forecast day whose point forecast is over ``threshold`` (None if none)."""
    over = future[future["yhat"] > threshold] if len(future) else future
    return None if over.empty else pd.Timestamp(over[DS].iloc[0])


def matplotlib_figure(key: tuple[str, str], past: pd.DataFrame, future: pd.DataFrame, paths: pd.DataFrame,
                      threshold: float) -> Any:
    """A matplotlib Figure of the series (legend entries match the drawn colours)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.6), dpi=100)
    ax = figure.add_subplot()
    if len(past):
        ax.plot(past[DS], past[VALUE], color=style.ACTUAL, linewidth=1.0, label="observed (daily P95)")
    for number, (_, path) in enumerate(paths.groupby("cutoff", sort=True) if len(paths) else []):
        ax.plot(path[DS], path["yhat"], color=style.MUTED, linewidth=0.8, alpha=0.8,
                label="backtest forecasts" if number == 0 else None)
    if len(future):
        ax.fill_between(future[DS], future["yhat_lower"], future["yhat_upper"], color=style.BAND, alpha=0.55,
                        linewidth=0, label="forecast interval")
        ax.plot(future[DS], future["yhat"], color=style.ACCENT, linewidth=1.5, label="forecast")
    ax.axhline(threshold, color=style.THRESHOLD, linestyle="--", linewidth=1.0, label=f"threshold {threshold:g} %")
    breach = breach_day(future, threshold)
    if breach is not None:
        ax.axvline(breach.to_pydatetime(), color=style.THRESHOLD, linewidth=1.2,  # type: ignore[arg-type]
                   label=f"forecast breach {breach:%Y-%m-%d}")
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of capacity")
    ax.set_title(f"{key[0]} {key[1]}", loc="left")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    figure.autofmt_xdate()
    return figure


def plotly_figure(key: tuple[str, str], past: pd.DataFrame, future: pd.DataFrame, paths: pd.DataFrame,
                  threshold: float) -> Any:
    """A plotly Figure of the series (same content as the matplotlib one)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if len(past):
        fig.add_scatter(x=past[DS], y=past[VALUE], name="observed (daily P95)", line={"color": style.ACTUAL})
    for number, (_, path) in enumerate(paths.groupby("cutoff", sort=True) if len(paths) else []):
        fig.add_scatter(x=path[DS], y=path["yhat"], name="backtest forecasts", legendgroup="backtests",
                        showlegend=number == 0, line={"color": style.MUTED, "width": 1})
    if len(future):
        fig.add_scatter(x=future[DS], y=future["yhat_upper"], line={"width": 0}, showlegend=False, hoverinfo="skip")
        fig.add_scatter(x=future[DS], y=future["yhat_lower"], fill="tonexty", name="forecast interval",
                        line={"width": 0}, fillcolor=style.BAND)
        fig.add_scatter(x=future[DS], y=future["yhat"], name="forecast", line={"color": style.ACCENT})
    fig.add_hline(y=threshold, line={"dash": "dash", "color": style.THRESHOLD},
                  annotation_text=f"threshold {threshold:g} %")
    breach = breach_day(future, threshold)
    if breach is not None:
        fig.add_vline(x=breach, line={"color": style.THRESHOLD})
    fig.update_layout(title=f"{key[0]} {key[1]}", yaxis={"range": [0, 105], "title": "% of capacity"},
                      template="plotly_white", height=380)
    return fig
