"""The interactive dashboard (Dash) app and its callbacks: KPIs, risk table, drill-down, clusters, savings, what-if.

The page itself is built in ``dashboard_layout``; the data behind it lives in ``dashboard_state``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from typing import Any

import dash
from dash import Input, Output, State, html
from werkzeug.serving import BaseWSGIServer, make_server

from capacity_forecaster.config import Settings
from capacity_forecaster.report import dashboard_guard as guard
from capacity_forecaster.report import dashboard_layout as layout
from capacity_forecaster.report import figures
from capacity_forecaster.report.dashboard_state import GROWTH_STEP, DashboardState
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)


def create_app(lake: Lake, settings: Settings, *, warm: bool = True) -> dash.Dash:
    """Build the dashboard over a lake: the small and per-series tables are read here, a series' daily rows
    when it is drilled into, the forecasts chunk by chunk for each what-if growth (``DashboardState``).

    Args:
        lake: the lake to read (tables through DuckDB; absent tables show "not available: run ...").
        settings: effective settings (``dashboard`` and ``report`` sections, thresholds).
        warm: compute every what-if slider position in a background thread right away.

    Returns:
        The Dash app (``app.server`` is the Flask WSGI app; see ``serve``).
    """
    state = DashboardState(lake, settings)
    cfg = settings.dashboard
    app = dash.Dash(__name__, title=settings.report.title, serve_locally=True, update_title="")
    app.state = state  # type: ignore[attr-defined]  # kept for tests and benchmarks
    marks = {int(v): f"{v:+.0f} %" for v in range(int(cfg.growth_min), int(cfg.growth_max) + 1, 10)}
    with warnings.catch_warnings():
        # Dash 4 flags DataTable for removal in a later major version; it is the pinned, tested table here.
        warnings.filterwarnings("ignore", message=r"(?s).*DataTable will be removed", category=DeprecationWarning)
        app.layout = layout.layout(state, settings, lake, marks)
    _register_callbacks(app, state, settings)
    guard.install(app.server, cfg.max_request_bytes, set(app.callback_map))
    if warm and state.positions is not None:
        state.positions.start(warm=True)
    return app


def _register_callbacks(app: dash.Dash, state: DashboardState, settings: Settings) -> None:
    has_table = not state.ranked.empty
    cfg = settings.dashboard

    def growth_of(value: Any) -> float:
        return guard.growth_value(value, cfg.growth_min, cfg.growth_max, GROWTH_STEP)

    @app.callback(Output("kpis", "children"), Input("growth", "value"))
    def update_kpis(growth: Any) -> list[html.Div]:
        return layout.kpi_cards(state.kpi_values(growth_of(growth)))

    @app.callback(Output("kpi-poll", "disabled"), Input("growth", "value"))
    def arm_poll(growth: Any) -> bool:
        # Armed on every move, so a value that turns ready between the cards' answer and this one is still drawn.
        return not growth_of(growth) or state.positions is None

    @app.callback(Output("kpis", "children", allow_duplicate=True),
                  Output("kpi-poll", "disabled", allow_duplicate=True),
                  Input("kpi-poll", "n_intervals"), State("growth", "value"), prevent_initial_call=True)
    def poll_kpis(_ticks: Any, growth: Any) -> tuple[Any, bool]:
        value = growth_of(growth)
        if not state.ready(value):
            return dash.no_update, False
        return layout.kpi_cards(state.kpi_values(value)), True

    if has_table:
        # One page per answer (40,000 series at 10,000 servers would be ~13 MB per slider move).
        @app.callback(Output("risk-table", "data"), Output("risk-table", "page_count"), Input("growth", "value"),
                      Input("risk-table", "page_current"), Input("risk-table", "sort_by"),
                      Input("risk-table", "filter_query"))
        def update_table(growth: Any, page: Any, sort_by: Any, query: Any) -> tuple[list[dict[str, Any]], int]:
            return state.risk_page(growth_of(growth), page, sort_by, query)

    if state.data.table("recommendations") is not None:
        @app.callback(Output("savings-graph", "figure"), Output("savings-heading", "children"),
                      Input("growth", "value"), prevent_initial_call=True)
        def update_savings(growth: Any) -> tuple[Any, str]:
            return layout.savings_view(state, growth_of(growth))

        # Paged on the server as the risk table (10,000 servers would ship ~3 MB of rows with the page).
        @app.callback(Output("savings-table", "data"), Output("savings-table", "page_count"),
                      Input("growth", "value"), Input("savings-table", "page_current"),
                      Input("savings-table", "sort_by"), Input("savings-table", "filter_query"),
                      prevent_initial_call=True)
        def update_savings_table(growth: Any, page: Any, sort_by: Any, query: Any) -> tuple[list[dict[str, Any]], int]:
            return state.savings_page(growth_of(growth), page, sort_by, query)

    if state.scenario is not None:
        @app.callback(Output("scenario-totals", "data"), Input("scenario-pick", "value"), prevent_initial_call=True)
        def pick_scenario(name: Any) -> list[dict[str, Any]]:
            return layout.totals_rows(state, guard.text_value("scenario", name, state.scenario_names))

        @app.callback(Output("scenario-table", "data"), Output("scenario-table", "page_count"),
                      Input("scenario-pick", "value"), Input("scenario-table", "page_current"),
                      Input("scenario-table", "sort_by"), Input("scenario-table", "filter_query"),
                      prevent_initial_call=True)
        def scenario_table(name: Any, page: Any, sort_by: Any, query: Any) -> tuple[list[dict[str, Any]], int]:
            chosen = guard.text_value("scenario", name, state.scenario_names)
            return state.scenario_page(chosen, page, sort_by, query)

    inputs = [Input("risk-table", "active_cell")] if has_table else []
    if not state.points.empty:
        inputs.append(Input("cluster-graph", "clickData"))
    if inputs:
        @app.callback(Output("server-pick", "value"), Output("metric-pick", "value"), Output("tabs", "value"),
                      *inputs, State("metric-pick", "value"), prevent_initial_call=True)
        def pick(*args: Any) -> tuple[Any, Any, Any]:
            metric = guard.text_value("metric", args[-1], figures.METRIC_NAMES)
            return select_series(dash.ctx.triggered_id, dash.ctx.triggered[0]["value"] if dash.ctx.triggered
                                 else None, metric)

    @app.callback(Output("server-graph", "figure"), Output("server-facts", "children"),
                  Input("server-pick", "value"), Input("metric-pick", "value"), Input("growth", "value"))
    def drill(server: Any, metric: Any, growth: Any) -> tuple[Any, list[html.Div]]:
        fig, facts = state.server_view(guard.text_value("server", server),
                                       guard.text_value("metric", metric, figures.METRIC_NAMES), growth_of(growth))
        return fig, layout.facts(facts)


def select_series(trigger: Any, value: Any, metric: str | None) -> tuple[Any, Any, Any]:
    """Server, metric and tab to show after a click in the risk table or on the cluster map.

    Args:
        trigger: id of the component clicked (``risk-table`` or ``cluster-graph``).
        value: its ``active_cell`` (with ``row_id`` = ``server|metric``) or ``clickData``.
        metric: the metric currently shown (kept for cluster clicks).

    Raises:
        BadInput: the click value is malformed (answered with 400).
    """
    if trigger == "risk-table" and (series := guard.active_cell_series(value)) is not None:
        return series[0], series[1], "risk"
    if trigger == "cluster-graph" and (server := guard.clicked_server(value)) is not None:
        return server, metric or "cpu", "risk"
    return dash.no_update, dash.no_update, dash.no_update


def server_for(app: dash.Dash, host: str, port: int) -> BaseWSGIServer:
    """A threaded werkzeug server for the app (``serve_forever()`` to run, ``shutdown()`` to stop)."""
    return make_server(host, port, app.server, threaded=True)


def serve(app: dash.Dash, host: str = "127.0.0.1", port: int = 8050,
          announce: Callable[[str], object] | None = None) -> None:
    """Serve the dashboard until interrupted (binds loopback by default; use a proxy to share it). Its address
    (the bound port) goes to ``announce`` once bound, else to the log (helper-73: the CLI said it twice)."""
    server = server_for(app, host, port)
    (announce or log.info)(f"dashboard: http://{host}:{server.server_port}/ (Ctrl+C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("dashboard stopped")
    finally:
        server.server_close()
