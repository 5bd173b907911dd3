"""The dashboard's page: header, KPI cards, what-if slider and the six tabs, built from a ``DashboardState``.

``dashboard`` builds the app and wires the callbacks; the pieces the callbacks redraw (``kpi_cards``,
``facts``, ``totals_rows``, ``savings_view``) are public here.
"""

from __future__ import annotations

from typing import Any, cast

import pandas as pd
from dash import dash_table, dcc, html
from dash.dash_table import FormatTemplate

from capacity_forecaster.config import Settings
from capacity_forecaster.report import figures, style
from capacity_forecaster.report.capacity import CAPACITY_HEADERS, capacity_rows
from capacity_forecaster.report.comparison import EARLIEST, change_text
from capacity_forecaster.report.dashboard_recs import SAVINGS_COLUMNS, SAVINGS_NUMERIC, Savings
from capacity_forecaster.report.dashboard_scenarios import SCENARIO_COLUMNS, SCENARIO_NUMERIC, records
from capacity_forecaster.report.dashboard_state import GROWTH_STEP, NUMERIC_COLUMNS, TABLE_COLUMNS, DashboardState
from capacity_forecaster.report.data import not_available, server_names
from capacity_forecaster.report.sheets import NAME_COLUMNS
from capacity_forecaster.report.summary import CLUSTER_RING, cluster_ringed, fleet_text
from capacity_forecaster.report.text import NO_PRICES, NOT_PRICED, money, told_columns
from capacity_forecaster.storage.lake import Lake

_GRAPH_CONFIG = cast("dcc.Graph.Config", style.PLOTLY_CONFIG)  # (no upload button: style.PLOTLY_CONFIG)

_FONT = "Inter, 'Segoe UI', Helvetica, Arial, sans-serif"
_CARD = {"background": "white", "border": f"1px solid {style.GRID}", "borderRadius": "8px", "padding": "14px 16px"}
_PAGE = {"fontFamily": _FONT, "color": style.INK,
         "background": "#F4F6F9", "minHeight": "100vh", "margin": "0"}


def _level_styles(*columns: str) -> list[dict[str, Any]]:
    """Solid badges for the levels that need attention; "low" only as coloured text, so the eye goes to the risks."""
    return [
        # (A stale series reads "stale (critical)": its level as of old data.)
        {"if": {"filter_query": f'{{{column}}} {"contains" if level == "stale" else "="} "{level}"',
                "column_id": column},
         **({"color": colour, "fontWeight": "600"} if level in ("low", "unassessed") else
            {"backgroundColor": colour, "color": "white", "fontWeight": "600"})}
        for column in columns for level, colour in style.RISK_COLOURS.items()
    ]


_LEVEL_STYLES = _level_styles("risk_level", "whatif_level")
_WARNING = "#B91C1C"
KPI_POLL_MS = 1500  # how often the KPI cards look for a what-if they showed as "computing"


def kpi_cards(cards: list[tuple[str, str, str]]) -> list[html.Div]:
    return [html.Div([
        html.Div(label, style={"fontSize": "12px", "fontWeight": 600, "color": style.MUTED,
                               "textTransform": "uppercase", "letterSpacing": ".03em"}),
        html.Div(value, style={"fontSize": "26px", "fontWeight": 700, "color": style.NAVY, "margin": "4px 0"}),
        html.Div(note, style={"fontSize": "12px", "color": style.MUTED}),
    ], style=_CARD) for label, value, note in cards]


def facts(facts: dict[str, Any]) -> list[html.Div]:
    if not facts:
        return [html.Div("Pick a server in the table.", style={"color": style.MUTED})]
    return [html.Div([html.Div(k, style={"fontSize": "11px", "fontWeight": 600, "color": style.MUTED,
                                         "textTransform": "uppercase"}),
                      html.Div(str(v), style={"fontSize": "14px", "marginBottom": "10px"})]) for k, v in facts.items()]


# A tab is never narrower than its longest word (helper-73: at 800-1024 px "Recommendations" ran into the next tab).
_TAB_STYLE = {"padding": "10px 12px", "minWidth": "min-content"}
_TAB: dict[str, Any] = {"style": _TAB_STYLE, "selected_style": {**_TAB_STYLE, "fontWeight": 600}}
_WRAPPED = frozenset({"rationale", "reason"})  # long text columns, wrapped in their cells


def _table(table_id: str, columns: dict[str, str], rows: list[dict[str, Any]], page_size: int,
           numeric: set[str], extra_styles: list[dict[str, Any]] | None = None, dollars: frozenset[str] = frozenset(),
           pages: int | None = None) -> Any:
    """A sortable, filterable, paged DataTable; with ``pages`` (the page count) ``rows`` is the first page and
    a callback answers every page, sort and filter (the risk table: one row per series)."""
    def column(key: str, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"name": name, "id": key, "type": "numeric" if key in numeric | dollars else "text"}
        if key in dollars:
            spec["format"] = FormatTemplate.money(0)
        return spec

    served: dict[str, Any] = ({"page_action": "custom", "page_current": 0, "page_count": pages, "sort_action": "custom",
                               "sort_mode": "single", "sort_by": [], "filter_action": "custom", "filter_query": ""}
                              if pages is not None else {"sort_action": "native", "filter_action": "native"})
    return dash_table.DataTable(  # type: ignore[attr-defined]  # dash's stubs omit the table
        id=table_id, data=rows, page_size=page_size, **served,
        columns=[column(key, name) for key, name in columns.items()],
        style_table={"overflowX": "auto"}, cell_selectable=True,
        style_cell={"fontFamily": _FONT, "fontSize": "13px", "padding": "6px 8px", "textAlign": "left",
                    "border": f"1px solid {style.GRID}", "maxWidth": "360px", "overflow": "hidden",
                    "textOverflow": "ellipsis"},
        # A rationale is the point of its row: wrapped whole, never cut at 360 px with an ellipsis nobody can open
        # (helper-73).
        style_cell_conditional=[{"if": {"column_id": key}, "whiteSpace": "normal", "height": "auto",
                                 "minWidth": "420px", "maxWidth": "640px", "textOverflow": "clip"}
                                for key in columns if key in _WRAPPED],
        style_header={"backgroundColor": style.NAVY, "color": "white", "fontWeight": 600},
        style_data_conditional=[{"if": {"row_index": "odd"}, "backgroundColor": "#F9FAFB"},
                                {"if": {"state": "active"}, "backgroundColor": "#DCE8F7",
                                 "border": f"1px solid {style.ACCENT}"}, *(extra_styles or [])],
    )


def _risk_tab(state: DashboardState, settings: Settings) -> html.Div:
    server, metric = state.default_series()
    # Metrics the lake has no series of are shown, but cannot be picked (helper-41: Disk on a cpu/memory export
    # drew an empty plot with a numeric axis and "unassessed").
    present = (set(state.ranked["metric"].astype(str)) if "metric" in state.ranked.columns else set()) or set(
        figures.METRIC_NAMES)
    metric_options = [{"label": name if m in present else f"{name} (no data)", "value": m, "disabled": m not in present}
                      for m, name in figures.METRIC_NAMES.items()]
    if not state.ranked.empty:
        rows, pages = state.risk_page(0.0, 0, [], "")
        # Name columns that tell nothing (an inventory of ids only) are left out, as in the packs.
        silent = _silent_names(state.risk_table(0.0))
        shown = {key: name for key, name in TABLE_COLUMNS.items() if key not in silent}
        table: Any = _table("risk-table", shown, rows, settings.dashboard.page_size, set(NUMERIC_COLUMNS),
                            _LEVEL_STYLES, pages=pages)
    else:
        table = html.P(not_available("server_risk"), style={"color": style.MUTED})
    return html.Div([
        html.Div([html.H3("Breach risk by series", style={"margin": "0 0 8px"}),
                  html.P("Sort or filter any column (e.g. type critical under Risk, >50 under Days); click a row "
                         "to drill down.",
                         style={"color": style.MUTED, "margin": "0 0 10px", "fontSize": "13px"}), table],
                 style={**_CARD, "marginBottom": "16px"}),
        html.Div([
            html.Div([
                html.Div([dcc.Dropdown(id="server-pick", options=state.servers(), value=server, clearable=False,
                                       style={"width": "220px"}),
                          dcc.Dropdown(id="metric-pick", options=metric_options, value=metric, clearable=False,
                                       style={"width": "160px"})], style={"display": "flex", "gap": "10px"}),
                dcc.Loading(dcc.Graph(id="server-graph", config=_GRAPH_CONFIG), delay_show=300),
            ], style={**_CARD, "flex": "3", "minWidth": "0"}),
            html.Div(id="server-facts", style={**_CARD, "flex": "1", "minWidth": "260px"}),
        ], style={"display": "flex", "gap": "16px"}),
    ])


def _silent_names(frame: pd.DataFrame) -> set[str]:
    """Name columns of ``frame`` that tell nothing (an inventory of ids only: empty, ``unknown``, or hostnames that
    repeat the ids), left out of a table as the packs leave them out."""
    named = [c for c in NAME_COLUMNS if c in frame.columns]
    told = set(told_columns(frame, named))
    if "hostname" in told and frame["hostname"].astype(str).eq(frame["server_id"].astype(str)).all():
        told.remove("hostname")
    return set(named) - told


def _lineage_banner(state: DashboardState) -> html.Div | None:
    """A warning naming both run ids when the tables come from different upstream runs; None when they agree."""
    warnings = state.lineage.warnings()
    if not warnings:
        return None
    return html.Div([html.Div(line, style={"fontWeight": 600, "color": _WARNING}) for line in warnings],
                    id="lineage-banner", role="alert",
                    style={**_CARD, "margin": "16px 0 0", "borderLeft": f"4px solid {_WARNING}"})


def _scenario_banner(state: DashboardState) -> html.Div | None:
    """The stored what-ifs beside the base and the most recent one's base -> scenario totals; None without one."""
    scenario = state.scenario
    if scenario is None:
        return None
    ran = f" (capfc risk, run {scenario.run} UTC)" if scenario.run else " (capfc risk)"
    shown = ("Servers at risk (medium or worse)", EARLIEST, "Net savings per month")
    totals = "; ".join(f"{t.measure.lower()} {t.base_text} \u2192 {t.scenario_text}" for t in scenario.totals
                       if t.measure in shown)
    others = len(state.scenario_names) - 1
    return html.Div([
        html.Div(f"Stored what-if scenario: {scenario.name}{ran}" + (f", and {others} more" if others else ""),
                 style={"fontWeight": 600, "marginBottom": 4}),
        html.Div(f"The dashboard shows the base; the what-if is stored beside it. Base \u2192 scenario: {totals}; "
                 f"series {change_text(scenario.changes)}. Pick any stored scenario in the What-if scenario tab.",
                 style={"fontSize": "13px"}),
    ], id="scenario-banner", style={**_CARD, "margin": "16px 0 0", "borderLeft": f"4px solid {style.ACCENT}"})


def totals_rows(state: DashboardState, name: str | None) -> list[dict[str, Any]]:
    scenario = state.stored(name)
    if scenario is None:
        return []
    return records(pd.DataFrame([(t.measure, t.base_text, t.scenario_text) for t in scenario.totals],
                                columns=["measure", "base", "scenario"]))


_SCENARIO_DOLLARS = frozenset({"base_monthly_savings", "scenario_monthly_savings"})


def _scenario_tab(state: DashboardState, settings: Settings) -> html.Div:
    scenario = state.scenario
    if scenario is None:
        return html.Div(html.P(not_available("risk_comparison"), style={"color": style.MUTED}), style=_CARD)
    options = [{"label": getattr(state.stored(n), "name", n), "value": n} for n in state.scenario_names]
    rows, pages = state.scenario_page(None, 0, [], "")
    return html.Div([
        html.Div([html.H3("Base vs a stored what-if", style={"margin": "0 0 8px"}),
                  dcc.Dropdown(id="scenario-pick", options=options, value=state.scenario_names[0], clearable=False,
                               style={"width": "420px", "marginBottom": "10px"}),
                  _table("scenario-totals", {"measure": "Measure", "base": "Base", "scenario": "Scenario"},
                         totals_rows(state, None), 20, set())], style={**_CARD, "marginBottom": "16px"}),
        html.Div([html.P("Series most affected first. Savings are the server's, repeated on each of its metrics.",
                         style={"color": style.MUTED}),
                  # helper-52: an empty Hostname column on an inventory of ids only.
                  _table("scenario-table", {k: v for k, v in SCENARIO_COLUMNS.items()
                                            if k not in _silent_names(state.stored_scenarios.frame(None))},
                         rows, settings.dashboard.page_size,
                         set(SCENARIO_NUMERIC) - _SCENARIO_DOLLARS,
                         _level_styles("base_risk_level", "scenario_risk_level"), dollars=_SCENARIO_DOLLARS,
                         pages=pages)], style=_CARD),
    ])


def _capacity_tab(state: DashboardState, settings: Settings) -> html.Div:
    """Capacity remaining per datacenter, environment and application (``capacity_by_group``)."""
    rows = capacity_rows(state.data)
    if rows.empty:
        return html.Div(html.P(not_available("capacity_by_group"), style={"color": style.MUTED}), style=_CARD)
    numeric = {"servers", "servers_at_risk", "free_cpu_cores", "free_memory_gb", "reclaimable_cpu_cores",
               "reclaimable_memory_gb"}
    return html.Div([
        html.H3("Capacity remaining by group", style={"margin": "0 0 8px"}),
        html.P("Time remaining = the group's earliest breach; free = cores and GB left at the forecast peak; "
               "reclaimable = what right-sizing, consolidation and decommissioning free. Filter Grouped by "
               "(datacenter, environment, application).", style={"color": style.MUTED, "fontSize": "13px"}),
        _table("capacity-table", CAPACITY_HEADERS, records(rows), settings.dashboard.page_size, numeric),
    ], style=_CARD)


def _clusters_tab(state: DashboardState) -> html.Div:
    points = state.points
    if points.empty:
        return html.Div(html.P(not_available("metrics")), style=_CARD)
    # Ringed as in the reports: critical or high risk in the plotted metric (CPU).
    hot = cluster_ringed(state.ranked)
    summary = points.groupby("cluster_label").size().rename("servers").reset_index()
    rows = records(summary)
    return html.Div([
        html.Div(dcc.Graph(id="cluster-graph", figure=figures.cluster_scatter(
                               points, hot, state.settings.risk.threshold, ring=CLUSTER_RING),
                           config=_GRAPH_CONFIG), style={**_CARD, "marginBottom": "16px"}),
        html.Div([html.P("Click a server to open it in the risk tab.", style={"color": style.MUTED}),
                  _table("cluster-table", {"cluster_label": "Cluster", "servers": "Servers"}, rows, 20,
                         {"servers"})], style=_CARD),
    ])


def _per_month(savings: Savings) -> str:
    return f"{money(savings.net)}/month" if savings.priced else f"savings {NOT_PRICED} ({NO_PRICES})"


def savings_view(state: DashboardState, growth: float) -> tuple[Any, str]:
    """The Recommendations tab's figure and heading under the what-if growth (its table: ``savings_page``).

    Returns:
        (figure, heading); at 0 % the lake's recommendations, else those ``capfc risk --growth`` would make
        (``DashboardState.savings``).
    """
    savings = state.savings(growth)
    if savings is None:
        return figures.empty_figure("Savings", not_available("recommendations")), ""
    heading = (f"Recommendations with {growth:+g} % growth (as capfc risk --growth {growth:g}): "
               f"{savings.upsizes} upsizes, net {_per_month(savings)}" if growth else
               f"Recommendations (base): {savings.upsizes} upsizes, net {_per_month(savings)}")
    return figures.savings_bar(savings.recommendations), heading


def _savings_tab(state: DashboardState, settings: Settings) -> html.Div:
    if state.data.table("recommendations") is None:
        return html.Div(html.P(not_available("recommendations")), style=_CARD)
    figure, heading = savings_view(state, 0.0)
    rows, pages = state.savings_page(0.0, 0, [], "")
    dollars = frozenset({"current_monthly_cost", "projected_monthly_cost", "monthly_savings"})
    return html.Div([
        html.Div([html.H3(heading, id="savings-heading", style={"margin": "0 0 8px"}),
                  dcc.Graph(id="savings-graph", figure=figure, config=_GRAPH_CONFIG)],
                 style={**_CARD, "marginBottom": "16px"}),
        html.Div(_table("savings-table", SAVINGS_COLUMNS, rows, settings.dashboard.page_size,
                        set(SAVINGS_NUMERIC) - dollars, dollars=dollars, pages=pages), style=_CARD),
    ])


def _fleet_tab(state: DashboardState, settings: Settings) -> html.Div:
    peaks, backtests = state.data.peaks, state.data.table("backtests")
    # The weekly peak (not the mean) keeps month-end and quarter-end peaks visible, as in the reports.
    parts = [dcc.Graph(figure=figures.heatmap(peaks, settings.report.heatmap_metric, settings.report.heatmap_servers,
                                              server_names(state.data), statistic="weekly peak"),
                       config=_GRAPH_CONFIG)
             if peaks is not None and len(peaks) else html.P(not_available("metrics")),
             dcc.Graph(figure=figures.accuracy_box(backtests), config=_GRAPH_CONFIG)
             if backtests is not None and len(backtests) else html.P(not_available("backtests"))]
    return html.Div([html.Div(p, style={**_CARD, "marginBottom": "16px"}) for p in parts])


def _slider_title(settings: Settings) -> str:
    """What the slider's percent is: an annual rate ramped over the horizon, or a step from the first day."""
    unit = ("% per year, compounded daily over the forecast horizon" if settings.risk.growth_ramp else
            "%, a step change from the first forecast day")
    return f"What-if growth of the forecast load ({unit})"


def _slider_help(state: DashboardState, settings: Settings) -> str:
    # helper-41: "+50 %" read as 50 % more load; on a 30-day horizon an annual rate adds about 3 %.
    ramp = (" An annual rate: over a 30-day horizon +50 % ends about 3 % higher, over 180 days about 22 % (for a "
            "step change, set risk.growth_ramp: false or run capfc risk --growth N --step)."
            if settings.risk.growth_ramp else "")
    if state.positions is None:
        return ("The slider is off: the risk tables come from another forecast run than the forecasts shown (see "
                "the warning above); run capfc risk to bring them in line." if not state.lineage.consistent else
                "The slider is off: it needs the history, forecasts, risk tables and clusters (run capfc run).")
    if state.scenario is None:
        return ("Base = the lake's risk table; what-if columns re-assess breaches with every forecast (and its "
                "interval) scaled by this growth." + ramp)
    return (f"The slider grows the base forecasts and re-assesses breaches (a quick look; the stored what-if "
            f"\u201c{state.scenario.name}\u201d and any other stored one are in the What-if scenario tab)." + ramp)


def layout(state: DashboardState, settings: Settings, lake: Lake, marks: dict[int, str]) -> html.Div:
    cfg, period = settings.dashboard, state.data.period
    return html.Div([
        html.Div([html.H1(settings.report.title, style={"margin": 0, "fontSize": "26px"}),
                  html.Div(f"{fleet_text(state.data)}; lake {lake.uri}"
                           + (f"; data {period[0]} to {period[1]}" if period else ""),
                           style={"opacity": 0.85, "marginTop": "4px"})],
                 style={"background": style.NAVY, "color": "white", "padding": "20px 32px"}),
        html.Div([
            html.Div(id="kpis", children=kpi_cards(state.kpi_values(0.0)),
                     style={"display": "grid", "gridTemplateColumns": "repeat(auto-fit, minmax(170px, 1fr))",
                            "gap": "12px"}),
            # Redraws the cards once a what-if they showed as "computing" is ready (then stops).
            dcc.Interval(id="kpi-poll", interval=KPI_POLL_MS, disabled=True),
            *([warn] if (warn := _lineage_banner(state)) is not None else []),
            *([banner] if (banner := _scenario_banner(state)) is not None else []),
            html.Div([html.Div(_slider_title(settings), style={"fontWeight": 600, "marginBottom": 6}),
                      # No number box: it applied a value only on leaving it and took "abc" as 0 (helper-52).
                      dcc.Slider(id="growth", min=cfg.growth_min, max=cfg.growth_max, step=GROWTH_STEP, value=0,
                                 marks=marks, updatemode="mouseup", allow_direct_input=False,
                                 disabled=state.positions is None),
                      html.Div(_slider_help(state, settings), style={"color": style.MUTED, "fontSize": "12px",
                                                          "marginTop": "14px"})],
                     style={**_CARD, "margin": "16px 0"}),
            dcc.Tabs(id="tabs", value="risk", children=[
                dcc.Tab(label="Risk and drill-down", value="risk", children=_risk_tab(state, settings), **_TAB),
                dcc.Tab(label="Clusters", value="clusters", children=_clusters_tab(state), **_TAB),
                dcc.Tab(label="Recommendations", value="savings", children=_savings_tab(state, settings), **_TAB),
                dcc.Tab(label="What-if scenario", value="whatif", children=_scenario_tab(state, settings), **_TAB),
                dcc.Tab(label="Capacity by group", value="capacity", children=_capacity_tab(state, settings), **_TAB),
                dcc.Tab(label="Fleet and accuracy", value="fleet", children=_fleet_tab(state, settings), **_TAB),
            ], style={"marginBottom": "12px"}),
        ], style={"padding": "18px 32px", "maxWidth": "1440px", "margin": "0 auto"}),
    ], style=_PAGE)
