"""The PNG and plotly charts: legends match what is drawn, heatmap names and gaps, capped whiskers, backtests."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import Collection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from report_lake import SERVERS

from capacity_forecaster.config import Settings
from capacity_forecaster.report import charts, figures, style
from capacity_forecaster.report.data import (
    ReportData,
    load_backtest_forecasts,
    load_history,
    load_report_data,
    server_names,
)
from capacity_forecaster.report.forecast_chart import forecast_panels, top_series
from capacity_forecaster.report.risks import ranked_risks
from capacity_forecaster.report.summary import cluster_map, cluster_ringed, week_grid
from capacity_forecaster.report.text import model_label

Colour = tuple[float, float, float, float]


@pytest.fixture(scope="module")
def data(report_lake) -> ReportData:
    return load_report_data(report_lake, Settings())


@pytest.fixture(scope="module")
def shown(report_lake, data: ReportData) -> tuple[pd.DataFrame, pd.DataFrame]:
    """History and backtest forecasts of the series the forecast chart shows."""
    series = top_series(ranked_risks(data), data.settings.report.chart_series)
    return load_history(report_lake, series, None), load_backtest_forecasts(report_lake, series, None)


def _rgba(colour: Any, alpha: float | None = None) -> Colour:
    r, g, b, a = mcolors.to_rgba(colour)
    return round(r, 3), round(g, 3), round(b, 3), round(a if alpha is None else alpha, 3)


def _handle_colours(handle: Any) -> set[Colour]:
    """The colours a legend handle shows (line, marker face/edge, patch face)."""
    if isinstance(handle, Line2D):
        alpha = handle.get_alpha()
        colours = {_rgba(handle.get_color(), alpha)} if handle.get_linestyle() not in ("None", "", " ") else set()
        if handle.get_marker() not in ("None", "", " ", None):
            colours |= {_rgba(c, alpha) for c in (handle.get_markerfacecolor(), handle.get_markeredgecolor())
                        if not (isinstance(c, str) and c == "none")}
        return colours
    if isinstance(handle, Patch):
        return {_rgba(handle.get_facecolor())}
    if isinstance(handle, Collection):
        return {_rgba(c) for c in [*handle.get_facecolor(), *handle.get_edgecolor()]}
    raise AssertionError(f"unexpected legend handle {handle!r}")


def _drawn_colours(fig: Figure) -> set[Colour]:
    """Every colour the figure's axes draw with: lines, markers, collections (scatter, mesh, fills), patches."""
    out: set[Colour] = set()
    for ax in fig.axes:
        for line in ax.get_lines():
            alpha = line.get_alpha()
            out |= {_rgba(line.get_color(), alpha), _rgba(line.get_markerfacecolor(), alpha),
                    _rgba(line.get_markeredgecolor(), alpha)}
        for coll in ax.collections:
            alpha = coll.get_alpha()
            out |= {_rgba(c, alpha) for c in [*coll.get_facecolor(), *coll.get_edgecolor()]}
        for patch in ax.patches:
            out |= {_rgba(patch.get_facecolor()), _rgba(patch.get_edgecolor())}
        out.add(_rgba(ax.get_facecolor()))
    return out


def _legend_entries(fig: Figure) -> list[tuple[str, Any]]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend() is not None)]
    return [(text.get_text(), handle) for legend in legends
            for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True)]


BUILDERS: dict[str, Callable[[ReportData, tuple[pd.DataFrame, pd.DataFrame]], Figure]] = {
    "fleet_heatmap": lambda d, _s: charts.fleet_heatmap(d),
    "forecast_top_risks": lambda d, s: forecast_panels(d, s[0], s[1]),
    "risk_distribution": lambda d, _s: charts.risk_distribution(d),
    "cluster_map": lambda d, _s: charts.cluster_chart(d),
    "savings_by_action": lambda d, _s: charts.savings_chart(d),
    "backtest_accuracy": lambda d, _s: charts.accuracy_chart(d),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_every_legend_entry_has_the_colour_of_something_drawn(name: str, data, shown) -> None:
    with style.report_style():
        fig = BUILDERS[name](data, shown)
        try:
            drawn = _drawn_colours(fig)
            for label, handle in _legend_entries(fig):
                colours = _handle_colours(handle) - {_rgba("white")}
                assert colours, f"{name}: legend entry {label!r} shows no colour"
                assert colours <= drawn, f"{name}: legend entry {label!r} shows {colours - drawn}, not drawn"
        finally:
            style.to_png(fig)  # renders and releases the figure


def test_forecast_legend_names_each_breach_level_drawn_and_each_backtest_cutoff(data, shown) -> None:
    with style.report_style():
        fig = forecast_panels(data, *shown)
        labels = [label for label, _ in _legend_entries(fig)]
        style.to_png(fig)
    levels = {row["risk_level"] for row in ranked_risks(data).head(3).to_dict("records")}
    assert {f"breach ({level} risk)" for level in levels} <= set(labels)
    assert "forecast breach" not in labels
    assert [x for x in labels if x.startswith("backtest")] == ["backtest from 2026-04-01", "backtest from 2026-05-16"]


def test_heatmap_shows_weekly_peaks_by_hostname_with_a_no_data_legend(data) -> None:
    names = server_names(data)
    assert names["srv-0001"] == "nyc-prd-app01" and len(names) == len(SERVERS)
    with style.report_style():
        fig = charts.fleet_heatmap(data)
        ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        labels = [label for label, _ in _legend_entries(fig)]
        texts = " ".join(t.get_text() for t in fig.texts)
        style.to_png(fig)
    assert set(ticks) == {names.get(s, s) for s in SERVERS}
    assert data.peaks["week"].nunique() > 13 and "busiest (last 13 weeks)" in texts
    # Five weeks of data (a short export): the subtitle never claims more weeks than the history has.
    recent = sorted(data.peaks["week"].unique())[-5:]
    short = dataclasses.replace(data, peaks=data.peaks[data.peaks["week"].isin(recent)])
    with style.report_style():
        fig = charts.fleet_heatmap(short)
        assert "busiest (all 5 weeks)" in " ".join(t.get_text() for t in fig.texts)
    assert labels == ["no data (fewer than 4 observed days in the week)"]
    plotly = figures.heatmap(data.peaks, "cpu", 50, names, statistic="weekly peak")
    assert set(plotly.data[0].y) == set(ticks) and "weekly peak" in plotly.layout.title.text
    # Cells span Monday to Sunday (centred mid-week; helper-52: centred on the Monday) and the hover names the Monday.
    first = sorted(data.peaks["week"].unique())[0]
    assert pd.Timestamp(plotly.data[0].x[0]) == first + pd.Timedelta(hours=84)
    assert plotly.data[0].text[0][0] == str(pd.Timestamp(first).date()) and "week of %{text}" in \
        plotly.data[0].hovertemplate
    assert plotly.data[1].name.startswith("no data") and plotly.layout.plot_bgcolor == style.MISSING
    assert plotly.layout.showlegend


def test_heatmap_weeks_are_calendar_weeks_so_a_server_that_stopped_is_not_painted_across_the_gap(data) -> None:
    """Four CloudWatch instances stopped in September 2013 while the fleet ran to July 2014: their last
    week must not stretch over the months no server of theirs reported (and 'last 13 weeks' means weeks)."""
    weeks = sorted(data.peaks["week"].unique())
    early, late = weeks[:3], weeks[-2:]
    gappy = data.peaks[data.peaks["week"].isin(early + late)]
    gappy = gappy[(gappy["server_id"] != "srv-0001") | gappy["week"].isin(early)]  # srv-0001 stopped early
    grid = week_grid(gappy)
    assert grid.shape[1] == len(weeks)  # every calendar week from the first to the last
    assert grid.loc["srv-0001"].iloc[3:].isna().all() and grid.iloc[:, 3:-2].isna().all().all()
    assert grid.index[-1] == "srv-0001"  # no data in the last 13 calendar weeks: listed last
    with style.report_style():
        fig = charts.fleet_heatmap(dataclasses.replace(data, peaks=gappy))
        mesh = fig.axes[0].collections[0]
        assert mesh.get_array().size == len(weeks) * grid.shape[0]
    plotly = figures.heatmap(gappy, "cpu", 50, server_names(data), statistic="weekly peak")
    assert len(plotly.data[0].x) == len(weeks)


def test_hostnames_fall_back_to_the_server_id(data) -> None:
    inventory = data.table("inventory").copy()
    inventory.loc[inventory["server_id"] == "srv-0002", "hostname"] = None
    inventory.loc[inventory["server_id"] == "srv-0004", "hostname"] = "shared"
    inventory.loc[inventory["server_id"] == "srv-0005", "hostname"] = "shared"
    names = server_names(ReportData(data.lake_uri, data.settings, data.generated, {"inventory": inventory}))
    assert "srv-0002" not in names
    assert names["srv-0004"] == "shared (srv-0004)" and names["srv-0005"] == "shared (srv-0005)"


def _with_outliers(backtests: pd.DataFrame) -> pd.DataFrame:
    """One series of the first row's model with every window at MASE 33 (others of its model under ~2)."""
    out = backtests.copy()
    model = out.loc[out.index[0], "model"]
    keys = out.loc[out["model"] == model, ["server_id", "metric"]].drop_duplicates().head(1)
    for value, (server, metric) in zip((33.0,), keys.itertuples(index=False), strict=True):
        out.loc[(out["model"] == model) & (out["server_id"] == server) & (out["metric"] == metric), "mase"] = value
    return out


def test_accuracy_box_whiskers_stop_at_the_documented_percentiles(data) -> None:
    backtests = _with_outliers(data.table("backtests"))
    fig = figures.accuracy_box(backtests)
    boxes = {t.name: t for t in fig.data if t.type == "box"}
    points = [t for t in fig.data if t.type == "scatter"]
    model = backtests.loc[backtests.index[0], "model"]
    # One value per series: the mean over its windows (the statistic of the labels and the model table).
    values = backtests[backtests["model"] == model].groupby(["server_id", "metric"])["mase"].mean().to_numpy(float)
    low, high = np.percentile(values, style.WHISKER_PERCENTILES)
    label = model_label(model)  # the models in words
    assert label != model and set(boxes) == {model_label(m) for m in backtests["model"].unique()}
    assert boxes[label].upperfence[0] == pytest.approx(high) and boxes[label].lowerfence[0] == pytest.approx(low)
    cap = fig.layout.xaxis.range[1]
    assert len(values) >= 10 and cap < 33 / 2  # the outlier does not stretch the axis
    mine = next(t for t in points if t.name == f"{label} outliers")
    assert max(mine.customdata) == pytest.approx(33.0) and max(mine.x) <= cap  # shown on the edge, value in hover
    assert "P5-P95" in fig.layout.xaxis.title.text and "up to 33.0" in fig.layout.xaxis.title.text
    with style.report_style():
        png = charts.accuracy_chart(ReportData(data.lake_uri, data.settings, data.generated,
                                               {"backtests": backtests}))
        ax = png.axes[0]
        assert ax.get_xlim()[1] < 5 and "P5-P95" in ax.get_xlabel() and "up to 33.0" in ax.get_xlabel()
        style.to_png(png)


def test_cluster_charts_plot_named_features(data) -> None:
    points = cluster_map(data)
    fig = figures.cluster_scatter(points, {"srv-0001"}, 80.0)
    assert fig.layout.xaxis.title.text.startswith("average CPU")
    assert fig.layout.yaxis.title.text.startswith("peak CPU")
    assert "principal" not in fig.to_json()
    with style.report_style():
        png = charts.cluster_chart(data)
        ax = png.axes[0]
        assert ax.get_xlabel().startswith("average CPU") and ax.get_ylabel().startswith("peak CPU")
        style.to_png(png)


def test_backtest_traces_are_faint_and_labelled_per_cutoff(shown) -> None:
    history, backtests = shown
    one = backtests[(backtests["server_id"] == "srv-0001") & (backtests["metric"] == "cpu")]
    traces = figures.backtest_traces(one)
    assert [t.name for t in traces] == ["backtest from 2026-04-01 (Exponential smoothing)",
                                        "backtest from 2026-05-16 (Exponential smoothing)"]
    assert all(t.opacity < 1 and t.legendgroup == "backtest" for t in traces)
    assert sum(len(t.x) for t in traces) == len(one)
    assert figures.backtest_traces(one, since="2026-05-20")[0].name.endswith("(Exponential smoothing)")
    assert figures.backtest_traces(None) == [] and figures.backtest_traces(one.iloc[:0]) == []
    past = history[(history["server_id"] == "srv-0001") & (history["metric"] == "cpu")]
    fig = figures.server_figure("t", past, past.iloc[:0].assign(yhat=[], yhat_lower=[], yhat_upper=[]), 80.0, None,
                                "low", 0.8, backtests=one)
    assert sum(1 for t in fig.data if (t.name or "").startswith("backtest from")) == 2


def test_cluster_caption_names_only_the_patterns_the_history_can_show(data) -> None:
    """A one-month history (fastStorage) covers one month-end: the month-end uplift is 0, so the caption must not
    promise month-end patterns; two month-ends (Rnd's July and August) can show them."""
    one, two = (dt.date(2013, 8, 12), dt.date(2013, 9, 3)), (dt.date(2013, 7, 1), dt.date(2013, 8, 31))
    for period, wanted in ((one, "levels, weekly patterns, trend"),
                           (two, "levels, weekly and month-end patterns, trend")):
        short = dataclasses.replace(data, period=period)
        with style.report_style():
            texts = [t.get_text() for t in charts.cluster_chart(short).findobj(Text)]
        caption = next(t for t in texts if t.startswith("Clusters come from"))
        assert f"({wanted})" in caption, caption


def test_cluster_map_draws_rings_at_the_edges_whole(data) -> None:
    """A server at 100 % (the busiest fastStorage VMs) had its risk ring cut in half by the right edge."""
    ringed = cluster_ringed(ranked_risks(data))
    assert ringed
    profiles = data.profiles.copy()
    edge = profiles["server_id"].isin(ringed)
    profiles.loc[edge, ["cpu_mean", "cpu_p99"]] = 100.0
    profiles.loc[~edge, ["cpu_mean", "cpu_p99"]] = 0.0
    edged = dataclasses.replace(data, profiles=profiles)
    with style.report_style():
        fig = charts.cluster_chart(edged)
        fig.canvas.draw()
        ax = fig.axes[0]
        box = ax.get_window_extent()
        for collection in ax.collections:
            radius = np.sqrt(collection.get_sizes().max()) / 2 * fig.dpi / 72 + 0.5 * fig.dpi / 72
            centres = ax.transData.transform(collection.get_offsets())
            assert (centres[:, 0] + radius <= box.x1).all() and (centres[:, 0] - radius >= box.x0).all()
            assert (centres[:, 1] + radius <= box.y1).all() and (centres[:, 1] - radius >= box.y0).all()
    points = cluster_map(edged)
    layout = figures.cluster_scatter(points, ringed, 80.0).layout
    assert layout.xaxis.range[0] < 0 < 100 < layout.xaxis.range[1]
    assert layout.yaxis.range[0] < 0 and layout.yaxis.range[1] > 100


def test_a_ring_name_never_covers_another_servers_ring(data) -> None:
    """helper-69: the demo's srv-0020 ring sat on the name "srv-0009" written to the right of its own ring."""
    risk = data.table("server_risk").copy()
    calm = risk.index[(risk["metric"] == "cpu") & (risk["risk_level"] == "low")][0]
    risk.loc[calm, "risk_level"] = "high"  # a second ringed server
    data = dataclasses.replace(data, tables={**data.tables, "server_risk": risk})
    ringed = sorted(cluster_ringed(ranked_risks(data)))
    assert len(ringed) >= 2
    profiles = data.profiles.copy()
    first, second = (profiles["server_id"] == ringed[0]), (profiles["server_id"] == ringed[1])
    profiles.loc[first, ["cpu_mean", "cpu_p99"]] = [32.5, 83.5]
    profiles.loc[second, ["cpu_mean", "cpu_p99"]] = [38.2, 83.7]  # just right of the first, where its name went
    profiles.loc[~(first | second) & profiles["server_id"].isin(ringed), ["cpu_mean", "cpu_p99"]] = [10.0, 20.0]
    with style.report_style():
        fig = charts.cluster_chart(dataclasses.replace(data, profiles=profiles))
        fig.canvas.draw()
        ax = fig.axes[0]
        renderer = fig.canvas.get_renderer()
        rings = ax.transData.transform([[38.2, 83.7], [32.5, 83.5]])
        radius = np.sqrt(110) / 2 * fig.dpi / 72
        for note in (t for t in ax.texts if t.get_text().split(" +")[0] in ringed[:2]):
            box = note.get_window_extent(renderer)
            other = rings[0] if note.get_text().startswith(ringed[0]) else rings[1]
            assert not (box.x0 - radius < other[0] < box.x1 + radius and box.y0 - radius < other[1] < box.y1 + radius)


def test_stale_servers_are_not_counted_at_risk_in_the_kpis(data) -> None:
    from capacity_forecaster.report.summary import kpis

    risk = data.table("server_risk").copy()
    before = {k.key: k for k in kpis(data)}
    code = risk["risk_level"].map({"critical": 3, "high": 2, "medium": 1}).fillna(0)
    hot = str(risk.loc[code.idxmax(), "server_id"])  # an at-risk server whose data ended long ago
    risk.loc[risk["server_id"] == hot, "status"] = "stale"
    tables = {**{name: data.table(name) for name in ("inventory", "recommendations")}, "server_risk": risk}
    after = {k.key: k for k in kpis(ReportData(data.lake_uri, data.settings, data.generated, tables))}
    assert after["at_risk"].value == before["at_risk"].value - 1
    assert "1 stale server not counted (no recent data)" in after["at_risk"].note


def test_a_breach_label_leaves_a_forecast_just_over_the_threshold_visible() -> None:
    """helper-50: Bitbrains VM 333's "last over" box covered its forecast at 85 %, the whole line."""
    import matplotlib.pyplot as plt
    from matplotlib.text import Annotation

    from capacity_forecaster.report.forecast_chart import _panel

    days = pd.date_range("2013-09-01", periods=60, freq="D")
    past = pd.DataFrame({"ds": days[:30], "value": 85.0, "is_imputed": False, "is_anomaly": False})

    def offset(level: float) -> float:
        future = pd.DataFrame({"ds": days[30:], "yhat": level, "yhat_lower": level - 10, "yhat_upper": level + 10})
        fig, ax = plt.subplots()
        _panel(ax, {"server_id": "vm-333", "metric": "cpu", "status": "already_breaching", "breach_ds": days[29],
                    "risk_level": "critical"}, past, future,
               80.0)
        label = next(t for t in ax.texts if isinstance(t, Annotation))
        plt.close(fig)
        return float(label.xyann[1])

    assert offset(85.0) < 0 < offset(40.0)  # below the threshold when the forecast runs just over it


def test_saturated_days_are_marked_in_both_forecast_charts(data, shown) -> None:
    """helper-73: a VM saturated on 14 of its last 14 days drew a plain line at 100 % (and its forecast, pinned
    there, read as the fleet's best); demand above capacity has its own mark in the PNG and the interactive chart."""
    history, backtests = shown
    assert "is_saturated" in history.columns  # load_history reads it
    first = history[["server_id", "metric"]].iloc[0]
    mine = (history["server_id"] == first["server_id"]) & (history["metric"] == first["metric"])
    last = mine & (history["ds"] > history.loc[mine, "ds"].max() - pd.Timedelta(days=5))
    marked = history.assign(is_saturated=last, value=history["value"].where(~last, 100.0))
    with style.report_style():
        fig = forecast_panels(data, marked, backtests)
        entries = dict(_legend_entries(fig))
        drawn = _drawn_colours(fig)
        style.to_png(fig)
    assert "saturated (demand above capacity)" in entries
    assert _handle_colours(entries["saturated (demand above capacity)"]) <= drawn
    with style.report_style():
        fig = forecast_panels(data, history, backtests)
        assert "saturated (demand above capacity)" not in dict(_legend_entries(fig))  # none shown, none said
        style.to_png(fig)
    series = marked[mine]
    plotly = figures.server_figure("t", series, pd.DataFrame(columns=["ds", "yhat", "yhat_lower", "yhat_upper"]),
                                   80.0, None, "high", 0.8)
    trace = next(t for t in plotly.data if t.name == "saturated (demand above capacity)")
    assert len(trace.x) == 5 and set(trace.y) == {100.0}


def test_the_workbook_reads_a_stale_series_level_as_the_packs_do(data) -> None:
    """helper-74: the At-risk and All series sheets showed a stale series as a red "critical" beside "stale
    (critical)" on the What-if sheet of the same workbook."""
    import io

    from openpyxl import load_workbook

    from capacity_forecaster.report.excel import build_workbook

    risk = data.table("server_risk").copy()
    code = risk["risk_level"].map({"critical": 3, "high": 2, "medium": 1}).fillna(0)
    hot = risk.loc[code.idxmax()]
    risk.loc[(risk["server_id"] == hot["server_id"]) & (risk["metric"] == hot["metric"]), "status"] = "stale"
    stale = dataclasses.replace(data, tables={**data.tables, "server_risk": risk})
    book = load_workbook(io.BytesIO(build_workbook(stale)), read_only=True)
    for sheet in ("At-risk servers", "All series"):
        rows = list(book[sheet].iter_rows(values_only=True))
        header = list(rows[0])
        mine = [r for r in rows[1:] if r[0] == hot["server_id"] and r[header.index("Metric")] == hot["metric"]]
        if sheet == "All series":
            assert len(mine) == 1
        assert all(r[header.index("Risk level")] == f"stale ({hot['risk_level']})" for r in mine)
        assert all(r[header.index("Breach probability")] is None for r in mine)
