"""Dashboard logic without a browser: preloaded state, what-if growth, drill-down, row selection."""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect

import pandas as pd
import pytest
from report_lake import RISKIEST

from capacity_forecaster.config import DashboardConfig, Settings
from capacity_forecaster.report.dashboard import create_app, select_series, serve
from capacity_forecaster.report.dashboard_drill import server_view
from capacity_forecaster.report.dashboard_layout import _scenario_tab
from capacity_forecaster.report.dashboard_state import TABLE_COLUMNS, _breach_cells
from capacity_forecaster.report.risks import ranked_risks, reported_breaches
from capacity_forecaster.storage import Lake


@pytest.fixture(scope="module")
def settings_module() -> Settings:
    # The slider as a step change (growth_ramp false), so +30 % moves the fixture's 90-day horizon clearly;
    # the default annual-rate ramp is checked in tests/risk/test_whatif.py.
    return Settings().model_copy(update={"risk": Settings().risk.model_copy(update={"growth_ramp": False})})


@pytest.fixture(scope="module")
def app(report_lake: Lake, settings_module: Settings):
    return create_app(report_lake, settings_module, warm=False)


def test_risk_rows_are_ranked_with_ids_for_row_selection(app) -> None:
    rows = app.state.risk_rows(0.0)
    assert len(rows) == 32
    assert rows[0]["id"] == f"{RISKIEST}|cpu" and rows[0]["rank"] == 1
    assert set(TABLE_COLUMNS) <= set(rows[0])
    assert rows[0]["risk_level"] == rows[0]["whatif_level"] == "critical"
    assert rows[0]["breach_ds"] == "2026-07-20" and rows[0]["breach_probability"] == 95


def test_whatif_growth_brings_breaches_forward(app) -> None:
    base = {r["id"]: r for r in app.state.risk_rows(0.0)}
    grown = {r["id"]: r for r in app.state.risk_rows(30.0)}
    memory = "srv-0002|memory"
    assert grown[memory]["whatif_breach_ds"] < base[memory]["breach_ds"]
    assert grown[memory]["risk_level"] == base[memory]["risk_level"]  # the base columns stay the lake's
    at_risk = sum(r["whatif_level"] in ("critical", "high", "medium") for r in grown.values())
    assert at_risk > sum(r["risk_level"] in ("critical", "high", "medium") for r in base.values())
    cards = dict((label.split(" (")[0], (value, note)) for label, value, note in app.state.kpi_values(30.0))
    assert int(cards["Servers at risk"][0]) >= 3 and cards["Servers at risk"][1].startswith("base 3")
    plain = dict((label, (value, note)) for label, value, note in app.state.kpi_values(0.0))
    value, note = plain["Servers at risk"]
    # No what-if: no "base" beside the number, and the split adds up to it (medium included).
    assert not note.startswith("base") and sum(int(part.split()[0]) for part in note.split(", ")) == int(value)
    shrunk = {r["id"]: r for r in app.state.risk_rows(-30.0)}
    assert shrunk[f"{RISKIEST}|cpu"]["whatif_breach_ds"] == "-"  # no breach, as the packs write it


def test_drill_down_shows_history_forecast_threshold_and_model(app) -> None:
    fig, facts = app.state.server_view("srv-0002", "memory", 0.0)
    assert fig.layout.title.text.startswith(
        "srv-0002 (nyc-prd-app02): Memory - model Seasonal decomposition, backtest MASE")
    names = [t.name for t in fig.data]
    assert {"observed", "imputed day", "anomaly", "forecast"} <= set(names)
    observed = next(t for t in fig.data if t.name == "observed")
    assert len(observed.x) == 240  # the fixture's whole history fits in dashboard.history_days
    assert any(s.y0 == 80 and s.y1 == 80 for s in fig.layout.shapes)
    assert facts["Risk level"] == "high" and facts["Chosen model"] == "Seasonal decomposition (mstl)"
    assert facts["Backtest error"].startswith("MAE") and facts["Recommendation"].startswith("upsize")
    assert "MAPE" not in facts["Backtest error"]  # helper-52: fastStorage's near-idle 626 read "MAPE 39900.0%"
    assert facts["Breach"].startswith("breach 20")  # as the packs word it
    grown, grown_facts = app.state.server_view("srv-0002", "memory", 20.0)
    assert any(t.name == "what-if +20 %" for t in grown.data) and "What-if" in grown_facts
    empty, nothing = app.state.server_view(None, None, 0.0)
    assert nothing == {} and empty.layout.annotations[0].text == "pick a server in the table"


def test_clicks_pick_the_series() -> None:
    assert select_series("risk-table", {"row": 3, "row_id": "srv-0007|disk"}, "cpu") == ("srv-0007", "disk", "risk")
    click = {"points": [{"customdata": ["srv-0004"], "text": "srv-0004"}]}
    assert select_series("cluster-graph", click, "memory") == ("srv-0004", "memory", "risk")


def test_dashboard_without_risk_tables_still_builds(etl_only_lake: Lake, settings_module: Settings) -> None:
    app = create_app(etl_only_lake, settings_module, warm=False)
    assert app.state.risk_rows(10.0) == []
    cards = {label: note for label, _value, note in app.state.kpi_values(0.0)}
    assert cards["Servers at risk"] == "not available: run capfc risk"
    fig, _ = app.state.server_view("srv-0001", "cpu", 0.0)
    assert len(fig.data[0].x) > 0 and "no forecast" in fig.layout.title.text
    assert "not available: run capfc risk" in str(app.layout)


def test_binds_loopback_by_default() -> None:
    assert DashboardConfig().host == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"


def test_warm_up_assesses_every_slider_position(app) -> None:
    values = app.state.slider_values()
    assert values[:4] == [-5.0, 5.0, -10.0, 10.0] and len(values) == 16 and 0.0 not in values
    app.state.warm()
    assert app.state.positions is not None and set(values) <= set(app.state.positions.computed())
    assert {r["id"]: r for r in app.state.risk_rows(50.0)}[f"{RISKIEST}|cpu"]["whatif_level"] == "critical"


def test_slider_assesses_with_the_risk_runs_interval_and_calibration() -> None:
    from types import SimpleNamespace

    import numpy as np

    from capacity_forecaster.config import ForecastConfig
    from capacity_forecaster.report.dashboard_state import _risk_settings

    def risk_run(status: str, rho: float, top: float) -> dict:
        calibration = {"rho": rho, "method": "isotonic", "map": {"raw": [0.0, 1.0], "calibrated": [0.0, top]}}
        return {"stage": "risk", "status": status, "counts": {"summary": {"calibration": calibration}}}

    settings = Settings(forecast=ForecastConfig(interval=0.9))
    data = SimpleNamespace(runs=[risk_run("succeeded", 0.3, 0.2), risk_run("succeeded", 0.5, 0.5),
                                 risk_run("failed", 0.1, 0.1), {"stage": "forecast", "status": "succeeded"}])
    cfg, calibration = _risk_settings(data, settings)  # type: ignore[arg-type]
    assert cfg.interval == 0.9 and cfg.error_correlation == 0.5
    assert calibration.apply(np.array([1.0, 0.5])).tolist() == [0.5, 0.25]
    cfg, calibration = _risk_settings(SimpleNamespace(runs=[]), settings)  # type: ignore[arg-type]
    assert cfg.error_correlation == settings.risk.error_correlation
    assert calibration.apply(np.array([0.7])).tolist() == [0.7]


def test_drill_down_draws_the_stored_backtest_forecasts_and_the_heatmap_shows_weekly_peaks(app) -> None:
    server, metric = app.state.default_series()
    fig, _facts = app.state.server_view(server, metric, 0.0)
    backtest = [t for t in fig.data if getattr(t, "legendgroup", None) == "backtest"]
    assert len(backtest) >= 1  # the fixture stores two cutoffs of the chosen model
    assert "weekly peak" in str(app.layout)


def _callback(app, outputs: list[tuple[str, str]], growth: float) -> dict:
    """One growth callback over HTTP (Flask test client), answered as {component id: {property: value}}."""
    described = [{"id": i, "property": p} for i, p in outputs]
    output = described[0] if len(described) == 1 else described
    name = f"{outputs[0][0]}.{outputs[0][1]}" if len(outputs) == 1 else "..{}..".format(
        "...".join(f"{i}.{p}" for i, p in outputs))
    response = app.server.test_client().post("/_dash-update-component", json={
        "output": name, "outputs": output, "inputs": [{"id": "growth", "property": "value", "value": growth}],
        "changedPropIds": ["growth.value"]})
    assert response.status_code == 200, response.get_data()[:300]
    return response.get_json()["response"]


def _savings_rows(app, growth: float) -> list[dict]:
    """Every row of the Recommendations table at ``growth``, page after page over HTTP as the browser asks."""
    outputs = [{"id": "savings-table", "property": "data"}, {"id": "savings-table", "property": "page_count"}]
    rows, page, pages = [], 0, 1
    while page < pages:
        response = app.server.test_client().post("/_dash-update-component", json={
            "output": "..savings-table.data...savings-table.page_count..", "outputs": outputs,
            "inputs": [{"id": "growth", "property": "value", "value": growth},
                       {"id": "savings-table", "property": "page_current", "value": page},
                       {"id": "savings-table", "property": "sort_by", "value": []},
                       {"id": "savings-table", "property": "filter_query", "value": ""}],
            "changedPropIds": ["savings-table.page_current"]})
        assert response.status_code == 200, response.get_data()[:300]
        answer = response.get_json()["response"]["savings-table"]
        assert len(answer["data"]) <= app.state.settings.dashboard.page_size
        rows += answer["data"]
        page, pages = page + 1, answer["page_count"]
    return rows


def _cards(kpis: list) -> dict[str, tuple[str, str]]:
    """KPI cards of a ``kpis.children`` answer: label without the growth suffix -> (value, note)."""
    cards = [[part["props"]["children"] for part in card["props"]["children"]] for card in kpis]
    return {label.split(" (")[0]: (value, note) for label, value, note in cards}


def test_slider_recomputes_recommendations_as_capfc_risk_growth(whatif_report, settings_module: Settings) -> None:
    from capacity_forecaster.report.text import money
    from capacity_forecaster.risk.stage import run_risk

    lake, _ = whatif_report  # base tables and calibration written by the real risk stage
    # A step change, so +50 % moves the fixture's 90-day horizon clearly; pages of 5 so the tables page.
    settings = settings_module.model_copy(update={"dashboard": DashboardConfig(page_size=5)})
    app = create_app(lake, settings, warm=False)
    cfg = settings.risk.model_copy(update={"interval": settings.forecast.interval})
    tables = {name: lake.read_table(name) for name in ("metrics", "forecasts", "inventory", "backtest_forecasts")}
    base = lake.read_table("recommendations")
    base_net, base_upsizes = base["monthly_savings"].sum(), int((base["action"] == "upsize").sum())
    before = _cards(_callback(app, [("kpis", "children")], 0.0)["kpis"]["children"])
    assert before["Net savings / month"][0] == money(base_net) and before["Upsizes"][0] == str(base_upsizes) == "3"
    # The page carries the table's first page only; the rest is asked for page by page.
    table = next(c for c in app.layout._traverse() if getattr(c, "id", None) == "savings-table")
    assert table.page_action == "custom" and len(table.data) == settings.dashboard.page_size < len(base)
    assert [r["server_id"] for r in _savings_rows(app, 0.0)] == \
        base.sort_values("monthly_savings", ascending=False, kind="stable")["server_id"].tolist()

    seen = {}
    for growth in (settings.dashboard.growth_max, settings.dashboard.growth_min):  # +50 %, -30 %
        expected = run_risk(tables["metrics"], tables["forecasts"], tables["inventory"], cfg, growth=growth,
                            backtests=tables["backtest_forecasts"]).scenario
        assert expected is not None
        # The cards wait a few seconds for a what-if, then show the base "computing...": on a loaded
        # machine that is not the answer under test, so the what-if is computed first.
        app.state.positions.request(growth)
        assert app.state.positions.wait(growth, 600) is not None
        cards = _cards(_callback(app, [("kpis", "children")], growth)["kpis"]["children"])
        net, upsizes = cards["Net savings / month"], cards["Upsizes"]
        assert net[0] == money(expected.summary["net_monthly_savings"]) and net[1].startswith(f"base {money(base_net)}")
        assert upsizes == (str(expected.summary["actions"].get("upsize", 0)), f"base {base_upsizes}")
        answer = _callback(app, [("savings-graph", "figure"), ("savings-heading", "children")], growth)
        rows = {r["server_id"]: r for r in _savings_rows(app, growth)}
        recs = expected.recommendations.set_index("server_id")
        assert {s: r["action"] for s, r in rows.items()} == recs["action"].to_dict()
        assert {s: r["target_server_id"] for s, r in rows.items()} == recs["target_server_id"].astype(object).where(
            recs["target_server_id"].notna(), None).to_dict()
        assert {s: r["monthly_savings"] for s, r in rows.items()} == recs["monthly_savings"].round(0).to_dict()
        assert f"{upsizes[0]} upsizes" in answer["savings-heading"]["children"]
        seen[growth] = (net[0], int(upsizes[0]), set(recs["action"]))
    # +50 %: every right-size but one turns to keep and srv-0001 needs a bigger upsize, so savings fall;
    # -30 %: no upsize is needed any more and a consolidation appears.
    assert seen[50.0][0] != money(base_net) and seen[50.0][1] == base_upsizes
    assert seen[-30.0][1] == 0 < base_upsizes and "consolidate" in seen[-30.0][2]
    # At 0 % the re-evaluation reproduces the lake's base: the slider uses the risk stage's one sizing path.
    assert app.state.positions is not None
    assert app.state.positions.at(0.0).savings.net == pytest.approx(base_net)


def test_reads_after_start_see_the_lake_as_it_was_at_start(report_lake: Lake, settings_module: Settings,
                                                           tmp_path) -> None:
    import shutil

    copy = tmp_path / "lake"
    shutil.copytree(report_lake.uri, copy, ignore=shutil.ignore_patterns("reports"))
    lake = Lake.open(str(copy))
    app = create_app(lake, settings_module, warm=False)
    before = lake.read_table("forecasts")
    # A newer forecast run lands while the dashboard is up.
    lake.write_table("forecasts", before.assign(yhat=before["yhat"] + 50.0))
    assert lake.read_table("forecasts")["yhat"].sum() == pytest.approx(before["yhat"].sum() + 50.0 * len(before))
    server, metric = "srv-0002", "memory"
    shown = app.state.forecast(server, metric)
    expected = before[(before["server_id"] == server) & (before["metric"] == metric)]
    assert len(shown) == len(expected) > 0
    assert shown["yhat"].sum() == pytest.approx(expected["yhat"].sum())
    # The slider's streamed reads go through the same pinned reader.
    assert app.state.lake.read_table("forecasts")["yhat"].sum() == pytest.approx(before["yhat"].sum())


def test_cluster_map_rings_cpu_risk_as_the_reports_do(app) -> None:
    from capacity_forecaster.report.summary import cluster_ringed

    graph = next(c for c in app.layout._traverse() if getattr(c, "id", None) == "cluster-graph")
    ringed = {server for trace in graph.figure.data
              for server, width in zip(trace.text, trace.marker.line.width, strict=True) if width > 2}
    ranked = app.state.ranked
    any_metric = set(ranked.loc[ranked["level_code"] >= 2, "server_id"])
    assert ringed == cluster_ringed(ranked) and ringed < any_metric  # a memory-only risk is not ringed
    assert "CPU risk" in graph.figure.layout.title.text


def test_risk_table_shows_statuses_as_words(breaching_report, settings_module: Settings) -> None:
    lake, _result = breaching_report
    rows = create_app(lake, settings_module, warm=False).state.risk_rows(0.0)
    statuses = {r["status"] for r in rows}
    assert "already breaching" in statuses and not any("_" in s for s in statuses)
    now = [r for r in rows if r["status"] == "already breaching"]
    # As the packs say it (helper-52: the dashboard showed the last day over, which read as a future date).
    assert now and all(r["breach_ds"] == "now" and r["days_to_breach"] == 0 for r in now)
    state = create_app(lake, settings_module, warm=False).state
    _fig, facts = state.server_view(now[0]["server_id"], now[0]["metric"], 0.0)
    assert facts["Breach"].startswith("already breaching (last over 20")


def test_risk_table_says_when_a_likely_or_stale_breach_is_as_the_packs_do() -> None:
    """helper-52 (Bitbrains Rnd, fastStorage): high series whose median never crosses had no date at all, and stale
    ones showed their old crossing with 'Days 0'."""
    risk = pd.DataFrame({
        "server_id": ["a", "b", "c", "d"], "metric": "cpu", "risk_level": ["high", "critical", "critical", "low"],
        "status": ["assessed", "stale", "already_breaching", "assessed"],
        "breach_ds": pd.to_datetime([None, "2013-08-25", "2013-09-30", None]),
        "days_to_breach": [None, 0, 1, None], "likely_breach_ds": pd.to_datetime(["2013-10-31", None, None, None]),
        "stale_since": pd.to_datetime([None, "2013-08-27", None, None]),
        "last_observed": pd.to_datetime([None, "2013-09-11", None, None]),
        "last_over_ds": pd.to_datetime([None, None, "2013-09-28", None])})
    cells = _breach_cells(reported_breaches(risk))
    assert cells["text"].tolist() == ["likely by 2013-10-31", "data stopped after 2013-08-27 (last seen 2013-09-11)",
                                      "now", "-"]
    assert cells["days"].isna().tolist() == [True, True, False, True] and cells["days"].iloc[2] == 0
    # The date each sorts by: the likely day, none for stale, the last day over for now.
    assert cells["at"].tolist()[0] == pd.Timestamp("2013-10-31") and pd.isna(cells["at"].iloc[1])
    assert cells["at"].iloc[2] == pd.Timestamp("2013-09-28")


def test_risk_table_sorts_levels_by_severity_and_breaches_by_date(breaching_report, settings_module: Settings) -> None:
    lake, _result = breaching_report
    state = create_app(lake, settings_module, warm=False).state
    rows, _ = state.risk_page(0.0, 0, [{"column_id": "risk_level", "direction": "desc"}], "")
    levels = [r["risk_level"] for r in rows]
    order = {"critical": 3, "high": 2, "medium": 1, "low": 0}
    assert levels == sorted(levels, key=lambda v: -order[v]) and "_sort_risk_level" not in rows[0]
    rows, _ = state.risk_page(0.0, 0, [{"column_id": "breach_ds", "direction": "asc"}], "")
    cells = [r["breach_ds"] for r in rows]
    assert cells[0] == "now" and cells.index("now") < min((i for i, c in enumerate(cells) if c[:2] == "20"),
                                                           default=len(cells))
    # helper-52: the Action column kept the base action while the slider changed the recommendations.
    grown = state.savings(30.0)
    assert grown is not None
    wanted = grown.recommendations.set_index("server_id")["action"]
    rows = state.risk_rows(30.0)
    assert all(r["whatif_action"] == wanted[r["server_id"]] for r in rows)
    assert any(r["whatif_action"] != r["action"] for r in rows)


def test_kpi_cards_count_stale_servers_apart_and_say_how_old_the_data_are(report_lake: Lake,
                                                                          settings_module: Settings) -> None:
    """helper-52 (fastStorage, a 2013 export): the card read '6 critical' with two stale servers nowhere, and
    'Earliest breach now' with no word that 'now' was 13 years ago; the packs said both."""
    state = create_app(report_lake, settings_module, warm=False).state
    risk = state.data.table("server_risk").copy()
    risk.loc[risk["server_id"] == RISKIEST, "status"] = "stale"
    assert state.data.period is not None
    state.data = dataclasses.replace(state.data, tables={**state.data.tables, "server_risk": risk},
                                     generated=dt.datetime.combine(state.data.period[1] + dt.timedelta(days=400),
                                                                   dt.time(), dt.UTC))
    state.ranked = ranked_risks(state.data)
    cards = {label: note for label, _value, note in state.kpi_values(0.0)}
    assert cards["Servers at risk"].endswith("; 1 stale server not counted (no recent data)")
    assert cards["Servers"].endswith(f"\u201cnow\u201d is {state.data.period[1]}, 400 days ago")
    # helper-73: the risk table and the drill-down showed a stale series as a red "critical" with P(breach) 90 % and
    # a breach line the day after its data stopped; as the packs: "stale (critical)", no probability, no line.
    state._risk_tables.cache_clear()
    rows = [r for r in state.risk_rows(0.0) if r["server_id"] == RISKIEST]
    assert rows and all(r["risk_level"].startswith("stale (") and r["breach_probability"] is None for r in rows)
    figure, facts = server_view(state, RISKIEST, rows[0]["metric"], 0.0)
    assert facts["Risk level"].startswith("stale (") and facts["P(breach)"] == "-"
    assert [note.text for note in figure.layout.annotations if note.text.startswith(("breach", "last over"))] == []


def test_tables_leave_out_hostnames_that_repeat_the_ids(whatif_report, settings_module: Settings) -> None:
    """helper-52: the What-if tab showed an empty Hostname column the risk table already left out."""
    lake, _result = whatif_report
    state = create_app(lake, settings_module, warm=False).state
    frame = state.stored_scenarios.frame(None)
    assert "hostname" in frame.columns
    # Built outside create_app, which hides dash's DataTable deprecation warning for the app's own layout.
    with pytest.warns(DeprecationWarning, match="DataTable"):
        assert "'name': 'Hostname'" in str(_scenario_tab(state, settings_module))
    state.stored_scenarios._built = {name: dataclasses.replace(built, rows=built.rows.assign(
        hostname=built.rows["server_id"])) for name, built in state.stored_scenarios._built.items()}
    with pytest.warns(DeprecationWarning, match="DataTable"):
        assert "'name': 'Hostname'" not in str(_scenario_tab(state, settings_module))


def test_serve_says_the_bound_address_once(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """helper-73: capfc dashboard printed its URL and then logged it again; the port said is the one bound (0 asks the
    system for one)."""
    from capacity_forecaster.report import dashboard

    class Bound:
        server_port = 43_210

        def serve_forever(self) -> None:
            raise KeyboardInterrupt

        def server_close(self) -> None:
            pass

    monkeypatch.setattr(dashboard, "server_for", lambda *_args: Bound())
    said: list[str] = []
    with caplog.at_level("INFO", logger="capacity_forecaster.report.dashboard"):
        serve(None, "127.0.0.1", 0, announce=said.append)  # type: ignore[arg-type]
    assert said == ["dashboard: http://127.0.0.1:43210/ (Ctrl+C to stop)"]
    assert not [r for r in caplog.records if "http://" in r.getMessage()]
