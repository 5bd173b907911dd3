"""What the dashboard holds in memory and the pure functions behind its callbacks (timed by the benchmark)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import duckdb
import pandas as pd
import plotly.graph_objects as go

from capacity_forecaster.config import RiskConfig, Settings
from capacity_forecaster.report import comparison, figures, style
from capacity_forecaster.report.comparison import StoredScenario
from capacity_forecaster.report.dashboard_recs import GrowthRecommendations, Savings, savings_cards
from capacity_forecaster.report.dashboard_scenarios import ScenarioStore, records
from capacity_forecaster.report.data import (
    BACKTEST_COLUMNS,
    ReportData,
    load_report_data,
    not_available,
)
from capacity_forecaster.report.lineage import lineage
from capacity_forecaster.report.summary import (
    AT_RISK_LEVELS,
    already_breaching,
    chosen_models,
    cluster_map,
    day,
    level_of,
    money,
    ranked_risks,
    risk_row,
    threshold_of,
)
from capacity_forecaster.risk.analogue import seasonal_analogue
from capacity_forecaster.risk.breach import assess_breaches, history_summary
from capacity_forecaster.risk.calibration import BreachCalibration, from_summary
from capacity_forecaster.risk.current import current_state, rule_text
from capacity_forecaster.risk.levels import level_codes, percent
from capacity_forecaster.risk.seasonal import period_uplifts
from capacity_forecaster.risk.whatif import apply_growth
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.sql import connect

log = logging.getLogger(__name__)

GROWTH_STEP = 5.0  # percent per step of the what-if slider
TABLE_COLUMNS = {
    "rank": "#", "server_id": "Server", "hostname": "Hostname", "application": "Application",
    "environment": "Env", "metric": "Metric", "risk_level": "Risk", "status": "Status", "breach_ds": "Breach date",
    "days_to_breach": "Days", "breach_probability": "P(breach) %", "whatif_level": "What-if risk",
    "whatif_breach_ds": "What-if breach", "action": "Action",
}




def _risk_settings(data: ReportData, settings: Settings) -> tuple[RiskConfig, BreachCalibration]:
    """Risk settings and breach calibration as the latest risk run in the lake used them."""
    cfg = settings.risk.model_copy(update={"interval": settings.forecast.interval})
    runs = [r for r in data.runs if r.get("stage") == "risk" and r.get("status") == "succeeded"]
    summary = ((runs[-1].get("counts") or {}).get("summary") or {}) if runs else {}
    calibration = from_summary(summary.get("calibration") or {}, cfg)
    return calibration.settings(cfg), calibration


@dataclass(frozen=True)
class WhatIfInputs:
    """History-derived inputs of the breach assessment, computed once per app.

    Attributes:
        history: ``breach.history_summary`` of the processed metrics.
        uplifts: ``seasonal.period_uplifts`` of the history.
        analogue: ``analogue.seasonal_analogue`` (depends on the history and forecast days only).
        current: ``current.current_state`` of the history (already breaching stays so under any growth).
    """

    history: pd.DataFrame
    uplifts: pd.DataFrame
    analogue: pd.DataFrame | None
    current: pd.DataFrame | None = None


class DashboardState:
    """The lake as the dashboard needs it: small tables in memory, history in an in-memory DuckDB table.

    Everything is read once when the app starts, so an interaction only filters in memory.
    """

    def __init__(self, lake: Lake, settings: Settings) -> None:
        started = time.perf_counter()
        self.settings = settings
        self.data: ReportData = load_report_data(lake, settings)
        self.ranked = ranked_risks(self.data)
        self.points = cluster_map(self.data)
        self.chosen = chosen_models(self.data)
        # Stored what-ifs (capfc risk --growth/--scenario) sit beside the base risk tables, by name;
        # the What-if tab shows one at a time (the most recent first).
        self.stored_scenarios = ScenarioStore(self.data)
        self.scenario_names = self.stored_scenarios.names
        self.stored, self.scenario_rows = self.stored_scenarios.stored, self.stored_scenarios.rows
        self.scenario: StoredScenario | None = self.stored(None)
        self.lineage = lineage(self.data)
        # The slider re-assesses breaches as the risk stage did: with the forecast stage's interval and
        # the calibration the last risk run applied (rho, isotonic map), so 0 % matches the stored table.
        self.risk_cfg, self.calibration = _risk_settings(self.data, settings)
        # Every forecast row: the slider re-assesses the whole fleet in memory (the report reads them per chunk).
        forecasts = lake.read_table("forecasts") if self.data.forecasts is not None else None
        self.forecasts = forecasts.sort_values(["server_id", "metric", "ds"]) if forecasts is not None else None
        # One assessment at a time (they share the cache; the recommendations have their own); interactions
        # waiting for one hold the warm-up thread back, so a user never queues behind more than one value.
        self._lock = threading.Lock()
        self._waiters = 0
        self._waiters_lock = threading.Lock()
        self._db = duckdb.connect(database=":memory:")
        self.whatif_inputs: WhatIfInputs | None = None
        self._backtests: pd.DataFrame | None = None
        # A metrics table without rows has no period; the drill-down then shows forecasts only.
        self.has_history = self.data.period is not None
        if self.has_history:
            self._load_history(lake)
        if self.forecasts is not None:
            self._db.register("forecast_rows", self.forecasts)
            self._db.execute("CREATE TABLE forecast AS SELECT * FROM forecast_rows")
            self._db.unregister("forecast_rows")
        self._assess = lru_cache(maxsize=64)(self._assess_uncached)
        # Upsizes, consolidation and savings under the slider's growth, as capfc risk --growth makes them.
        self.growth_recs: GrowthRecommendations | None = None
        clusters = self.data.table("clusters")
        if self.whatif_inputs is not None and self.forecasts is not None and clusters is not None and \
                self.data.table("recommendations") is not None:
            base_cfg = settings.risk.model_copy(update={"interval": settings.forecast.interval})
            self.growth_recs = GrowthRecommendations(lake, forecasts, clusters, base_cfg,
                                                     self.calibration)
        inventory = self.data.table("inventory")
        log.info("dashboard: %d servers, %d series loaded in %.1f s", 0 if inventory is None else len(inventory),
                 len(self.ranked), time.perf_counter() - started)

    def backtest_forecasts(self, server: str | None, metric: str | None) -> pd.DataFrame | None:
        """The series' stored backtest forecasts over the history shown (None when the lake has none)."""
        frame = self._backtests
        if frame is None or server is None or metric is None:
            return None
        return frame[(frame["server_id"] == server) & (frame["metric"] == metric)]

    def _load_history(self, lake: Lake) -> None:
        last = self.data.period[1] if self.data.period else dt.date.today()
        since = last - dt.timedelta(days=self.settings.dashboard.history_days)
        # The drill-down draws the stored backtest forecasts of the days it shows; read once, like the history.
        if lake.has_table("backtest_forecasts"):
            frame = lake.read_table("backtest_forecasts", columns=list(BACKTEST_COLUMNS))
            frame["ds"], frame["cutoff"] = pd.to_datetime(frame["ds"]), pd.to_datetime(frame["cutoff"])
            self._backtests = frame[frame["ds"] >= pd.Timestamp(since)].reset_index(drop=True)
        con = connect(lake)
        try:
            arrow = con.sql(
                "SELECT server_id, ds, metric, value, coalesce(is_imputed, false) AS is_imputed, "
                "coalesce(is_anomaly, false) AS is_anomaly FROM metrics"
            ).to_arrow_table()
        finally:
            con.close()
        self._db.register("all_rows", arrow)
        self._db.execute("CREATE TABLE history AS SELECT * FROM all_rows WHERE ds >= ? "
                         "ORDER BY server_id, metric, ds", [since])
        self._db.unregister("all_rows")
        if self.forecasts is not None:
            metrics = arrow.to_pandas()
            metrics["ds"] = pd.to_datetime(metrics["ds"])
            cfg = self.settings.risk
            uplifts = period_uplifts(metrics, cfg.period_end_business_days)
            analogue = seasonal_analogue(metrics, self.forecasts, uplifts, cfg) if cfg.analogue_min_days else None
            self.whatif_inputs = WhatIfInputs(history_summary(metrics), uplifts, analogue, current_state(metrics, cfg))

    # -- queries ------------------------------------------------------------------------------
    def _query(self, sql: str, params: list[Any]) -> pd.DataFrame:
        cursor = self._db.cursor()  # one cursor per call: DuckDB connections are not shared across threads
        try:
            frame = cursor.execute(sql, params).df()
        finally:
            cursor.close()
        if "ds" in frame.columns:
            frame["ds"] = pd.to_datetime(frame["ds"])
        return frame

    def history(self, server: str, metric: str) -> pd.DataFrame:
        """Daily history of one series (server_id, ds, metric, value, is_imputed, is_anomaly)."""
        if not self.has_history:
            return pd.DataFrame(columns=["server_id", "ds", "metric", "value", "is_imputed", "is_anomaly"])
        return self._query("SELECT * FROM history WHERE server_id = ? AND metric = ? ORDER BY ds", [server, metric])

    def forecast(self, server: str, metric: str) -> pd.DataFrame:
        """The forecast rows of one series."""
        if self.forecasts is None:
            return pd.DataFrame(columns=["server_id", "metric", "ds", "model", "yhat", "yhat_lower", "yhat_upper"])
        return self._query("SELECT * FROM forecast WHERE server_id = ? AND metric = ? ORDER BY ds", [server, metric])

    # -- what-if ------------------------------------------------------------------------------
    def _assess_uncached(self, growth: float) -> pd.DataFrame:
        if self.whatif_inputs is None or self.forecasts is None:
            return pd.DataFrame(columns=["server_id", "metric", "risk_level", "breach_ds"])
        inputs = self.whatif_inputs
        grown = apply_growth(self.forecasts, growth, ramp=self.settings.risk.growth_ramp)
        return assess_breaches(grown, inputs.history, self.risk_cfg, inputs.uplifts, inputs.analogue,
                               recalibrate=self.calibration.apply, current=inputs.current)

    def base_risk(self) -> pd.DataFrame | None:
        """The base risk per series: the lake's server_risk (a stored what-if never replaces it).

        Returns:
            server_id, metric, risk_level, breach_ds, days_to_breach, breach_probability (at least);
            None without server_risk.
        """
        return self.data.table("server_risk")

    def whatif(self, growth: float) -> pd.DataFrame:
        """Risk per series with the base forecasts uplifted by ``growth`` percent (cached per value).

        The slider always grows the base (the lake's forecasts and risk tables).

        Returns:
            The ``breach.assess_breaches`` columns; at 0 % the base as stored (``base_risk``).
        """
        stored = self.base_risk()
        if not growth and stored is not None:
            return stored
        with self._waiting(), self._lock:
            return self._assess(round(float(growth), 3))

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        """Count an interaction as waiting, so the warm-up thread steps aside until it is served."""
        with self._waiters_lock:
            self._waiters += 1
        try:
            yield
        finally:
            with self._waiters_lock:
                self._waiters -= 1

    def savings(self, growth: float) -> Savings | None:
        """Recommendations and net savings under ``growth`` percent (cached per value); None without any.

        At 0 % (or when the lake lacks what a re-evaluation needs) the lake's ``recommendations`` as stored;
        else ``GrowthRecommendations.at``, the risk stage's own evaluation with the forecasts grown.
        """
        recs = self.data.table("recommendations")
        if recs is None:
            return None
        if not growth or self.growth_recs is None:
            return Savings.of(recs)
        key = round(float(growth), 3)
        found = self.growth_recs.cached(key)
        if found is not None:
            return found
        with self._waiting():
            return self.growth_recs.get(key)

    def slider_values(self) -> list[float]:
        """The what-if growth values the slider can take, nearest to 0 % first (0 itself excluded)."""
        cfg = self.settings.dashboard
        steps = range(int(cfg.growth_min // GROWTH_STEP), int(cfg.growth_max // GROWTH_STEP) + 1)
        return sorted((s * GROWTH_STEP for s in steps if s), key=lambda v: (abs(v), v))

    def warm(self) -> None:
        """Assess every slider position once (run in a background thread), so moving the slider is instant.

        A breach assessment of the whole fleet takes a few tenths of a second, the recommendations about two
        seconds: every breach assessment is done first, then the recommendations, nearest to 0 % first.
        Done ahead, every slider interaction is a cache hit.
        """
        started = time.perf_counter()
        for stage in ("breaches", "recommendations") if self.growth_recs is not None else ("breaches",):
            for growth in self.slider_values():
                while self._waiters > 0:
                    time.sleep(0.02)
                if self.growth_recs is not None and stage == "recommendations":
                    self.growth_recs.get(round(float(growth), 3))
                    continue
                with self._lock:
                    self._assess(round(float(growth), 3))
            log.debug("what-if cache warm (%s): %d growth values in %.1f s", stage, len(self.slider_values()),
                      time.perf_counter() - started)

    def risk_rows(self, growth: float) -> list[dict[str, Any]]:
        """Rows of the risk table: the lake's risk (base) beside the what-if level and breach date."""
        if self.ranked.empty:
            return []
        scenario = self.whatif(growth)
        table = self.ranked.assign(rank=range(1, len(self.ranked) + 1))
        if len(scenario):
            keyed = scenario.set_index(["server_id", "metric"])[["risk_level", "breach_ds"]].rename(
                columns={"risk_level": "whatif_level", "breach_ds": "whatif_breach_ds"})
            table = table.join(keyed, on=["server_id", "metric"])
        out = pd.DataFrame({"id": table["server_id"].astype(str) + "|" + table["metric"].astype(str)})
        for column in TABLE_COLUMNS:
            values = table[column] if column in table.columns else pd.Series([None] * len(table), index=table.index)
            if column.endswith("_ds"):
                values = pd.to_datetime(values).dt.strftime("%Y-%m-%d")
            elif column == "breach_probability":
                values = (values.astype(float) * 100).round(0)
            elif column == "days_to_breach":
                values = values.astype("Float64")
            out[column] = values.to_numpy(dtype=object)
        return records(out)

    def kpi_values(self, growth: float) -> list[tuple[str, str, str]]:
        """(label, value, note) of the headline cards, the risk ones under the what-if growth."""
        inventory = self.data.table("inventory")
        servers = len(inventory) if inventory is not None else 0
        cards = [("Servers", f"{servers:,}", f"data {self.data.period[0]} to {self.data.period[1]}"
                  if self.data.period else "")]
        if self.ranked.empty:
            cards.append(("Servers at risk", "-", not_available("server_risk")))
        else:
            scenario = self.whatif(growth)
            worst = scenario.assign(code=level_codes(scenario["risk_level"])).groupby("server_id")["code"].max()
            base = self.whatif(0.0)
            base_worst = pd.Series(level_codes(base["risk_level"]), index=base.index).groupby(base["server_id"]).max()
            label = "Servers at risk" + (f" (growth {growth:+g} %)" if growth else "")
            now = already_breaching(self.ranked)
            cfg = self.settings.risk
            cards.insert(1, ("Already breaching", f"{now['server_id'].nunique()}",
                             rule_text(cfg)))
            cards.append((label, f"{int((worst >= 1).sum())}", f"base {int((base_worst >= 1).sum())}; "
                          f"{int((worst == 3).sum())} critical, {int((worst == 2).sum())} high"))
            first = scenario.dropna(subset=["breach_ds"]).sort_values(["breach_ds", "server_id"]).head(1)
            when = "Earliest breach"
            if len(now):  # the first row of the risk table
                cards.append((when, "now", f"{now['server_id'].iloc[0]} {now['metric'].iloc[0]}: over on "
                              f"{int(now['days_over_recent'].iloc[0])} of the last {cfg.current_window_days} days"))
            else:
                cards.append((when, day(first["breach_ds"].iloc[0]) if len(first) else "none",
                              f"{first['server_id'].iloc[0]} {first['metric'].iloc[0]}" if len(first) else
                              "within the horizon"))
        cards.extend(savings_cards(self.savings(growth), self.savings(0.0), growth))
        mase = self.chosen["mase"].median() if len(self.chosen) else None
        cards.append(("Forecast error", "-" if mase is None or pd.isna(mase) else f"{mase:.2f} MASE",
                      "median of chosen models" if mase is not None else not_available("backtests")))
        return cards

    # -- drill-down ---------------------------------------------------------------------------
    def server_view(self, server: str | None, metric: str | None, growth: float) -> tuple[go.Figure, dict[str, Any]]:
        """Figure and facts for one series: history, imputed/anomalous days, forecast, interval, threshold,
        breach dates (base and what-if), the chosen model and its backtest error.

        Returns:
            (figure, facts) where facts maps a label to its text for the side panel.
        """
        if not server or not metric:
            return figures.empty_figure("Server drill-down", "pick a server in the table"), {}
        past, future = self.history(server, metric), self.forecast(server, metric)
        row = risk_row(self.ranked, server, metric)
        threshold, level = threshold_of(row, self.data, metric), level_of(row)
        model = risk_row(self.chosen, server, metric) or None
        model_text = (f"model {model['model']}, backtest MASE {model['mase']:.2f}"
                      if model is not None and not pd.isna(model["mase"]) else
                      f"model {model['model']}" if model is not None else "no forecast")
        host = row.get("hostname")
        title = (f"{server}{f' ({host})' if isinstance(host, str) else ''}: "
                 f"{figures.METRIC_NAMES.get(metric, metric)} - {model_text}")
        fig = figures.server_figure(title, past, future, threshold, row.get("breach_ds"), level,
                                    self.settings.forecast.interval, height=440,
                                    backtests=self.backtest_forecasts(server, metric))
        probability = row.get("breach_probability")
        facts: dict[str, Any] = {"Risk level": level, "Breach date": day(row.get("breach_ds")),
                                 "P(breach)": percent(probability), "Reason": row.get("reason") or "-"}
        if self.scenario is not None:
            rows = self.scenario.rows
            hit = rows[(rows["server_id"] == server) & (rows["metric"] == metric)]
            if len(hit):
                base = hit.iloc[0]
                facts[f"Stored what-if {self.scenario.name}"] = (
                    f"{comparison.level(base['scenario_risk_level'])}, breach {day(base['scenario_breach_ds'])}, "
                    f"P {comparison.probability(base['scenario_breach_probability'])}; {base['change']}")
        if growth and len(future):
            scenario = self.whatif(growth)
            hit = scenario[(scenario["server_id"] == server) & (scenario["metric"] == metric)]
            grown = apply_growth(future, growth, ramp=self.settings.risk.growth_ramp)
            fig.add_trace(go.Scatter(x=grown["ds"], y=grown["yhat"], mode="lines", name=f"what-if {growth:+g} %",
                                     line={"color": style.RISK_COLOURS["high"], "dash": "dash", "width": 2}))
            if len(hit):
                what_breach = hit["breach_ds"].iloc[0]
                facts["What-if"] = (f"{hit['risk_level'].iloc[0] or 'unassessed'}, breach {day(what_breach)}"
                                    f" at {growth:+g} % growth")
                if not pd.isna(what_breach):
                    fig.add_vline(x=what_breach, line={"color": style.RISK_COLOURS["high"], "dash": "dash"})
        if model is not None:
            facts["Chosen model"] = str(model["model"])
            facts["Backtest error"] = ("-" if pd.isna(model["mase"]) else
                                       f"MAE {model['mae']:.2f} pts, MAPE {model['mape']:.1%}, MASE "
                                       f"{model['mase']:.2f}, coverage {model['coverage']:.0%}")
        recs = self.data.table("recommendations")
        if recs is not None:
            rec = recs[recs["server_id"] == server]
            if len(rec):
                r = {str(k): v for k, v in rec.iloc[0].items()}
                target = f" onto {r['target_server_id']}" if isinstance(r.get("target_server_id"), str) else ""
                facts["Recommendation"] = (f"{r['action']}{target}: {money(r['monthly_savings'], signed=True)}/month; "
                                           f"{r.get('rationale') or ''}")
        facts["Imputed / anomalous days shown"] = (f"{int(past['is_imputed'].sum())} / {int(past['is_anomaly'].sum())}"
                                                   if len(past) else "-")
        return fig, facts

    def servers(self) -> list[str]:
        """Server ids for the drill-down picker, riskiest first."""
        if not self.ranked.empty:
            return list(dict.fromkeys(self.ranked["server_id"].astype(str)))
        inventory = self.data.table("inventory")
        return sorted(inventory["server_id"].astype(str)) if inventory is not None else []

    def default_series(self) -> tuple[str | None, str | None]:
        """The riskiest series (shown first)."""
        if self.ranked.empty:
            return (self.servers()[0] if self.servers() else None), "cpu"
        top = self.ranked[self.ranked["risk_level"].isin(AT_RISK_LEVELS)]
        first = (top if len(top) else self.ranked).iloc[0]
        return str(first["server_id"]), str(first["metric"])
