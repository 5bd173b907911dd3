"""What the dashboard holds in memory, what it reads per click, and the pure functions behind its callbacks."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from capacity_forecaster.config import RiskConfig, Settings
from capacity_forecaster.report import dashboard_drill
from capacity_forecaster.report.comparison import StoredScenario
from capacity_forecaster.report.dashboard_recs import (
    SAVINGS_NUMERIC,
    GrowthPositions,
    Position,
    Savings,
    key,
    savings_cards,
)
from capacity_forecaster.report.dashboard_scenarios import SCENARIO_NUMERIC, ScenarioStore, records
from capacity_forecaster.report.dashboard_table import SORT_KEY, served_page
from capacity_forecaster.report.data import (
    HISTORY_COLUMNS,
    ReportData,
    load_backtest_forecasts,
    load_history,
    load_report_data,
    not_available,
)
from capacity_forecaster.report.lineage import lineage
from capacity_forecaster.report.risks import (
    AT_RISK_LEVELS,
    STALE,
    already_breaching,
    breach_sort_days,
    breach_when,
    chosen_models,
    live_risks,
    ranked_risks,
    reported_breaches,
    stale_levels,
)
from capacity_forecaster.report.summary import cluster_map, data_age, stale_text
from capacity_forecaster.report.text import day, label
from capacity_forecaster.risk.calibration import BreachCalibration, from_summary
from capacity_forecaster.risk.current import rule_text
from capacity_forecaster.risk.levels import level_codes
from capacity_forecaster.risk.streaming import GrowthAssessor
from capacity_forecaster.stages.chunks import servers_per_chunk
from capacity_forecaster.stages.risk import RISK_BYTES_PER_SERVER, RISK_CHUNK_BOUNDS, LakeSource
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)

GROWTH_STEP = 5.0  # percent per step of the what-if slider
TABLE_COLUMNS = {
    "rank": "#", "server_id": "Server", "hostname": "Hostname", "application": "Application",
    "environment": "Env", "metric": "Metric", "risk_level": "Risk", "status": "Status", "breach_ds": "Breach date",
    "days_to_breach": "Days", "breach_probability": "P(breach) %", "whatif_level": "What-if risk",
    "whatif_breach_ds": "What-if breach", "action": "Action", "whatif_action": "What-if action",
}
# How long the KPI cards wait for a what-if not computed yet before showing the base ("computing...").
KPI_WAIT_SECONDS = 3.0
# Numeric columns of the risk table (the filter row compares them as numbers).
NUMERIC_COLUMNS = frozenset({"rank", "days_to_breach", "breach_probability"})
# Growth values whose whole risk table is kept for paging, sorting and filtering.
RISK_TABLES_KEPT = 4
# Series whose daily rows (history, forecast, backtest forecasts) the drill-down keeps after reading them.
SERIES_CACHE = 32
_EMPTY_RISK = pd.DataFrame(columns=["server_id", "metric", "risk_level", "breach_ds"])


def _breach_cells(risk: pd.DataFrame) -> pd.DataFrame:
    """Per row of ``reported_breaches`` rows: the breach cell as the packs write it (``risks.breach_when``:
    ``now``, a date, ``likely by <day>``, a stale note), its days (0 now, blank where no median crossing), and
    the date it sorts by (the last day over for ``now``, the likely day, none for a stale series)."""
    cells = [breach_when(row) for row in risk.to_dict("records")]
    days = pd.to_numeric(pd.Series([d for _, d in cells], index=risk.index), errors="coerce")
    return pd.DataFrame({"text": [t for t, _ in cells], "days": days, "at": breach_sort_days(risk)}, index=risk.index)


def _risk_settings(data: ReportData, settings: Settings) -> tuple[RiskConfig, BreachCalibration]:
    """Risk settings and breach calibration as the latest risk run in the lake used them."""
    cfg = settings.risk.model_copy(update={"interval": settings.forecast.interval})
    runs = [r for r in data.runs if r.get("stage") == "risk" and r.get("status") == "succeeded"]
    summary = ((runs[-1].get("counts") or {}).get("summary") or {}) if runs else {}
    calibration = from_summary(summary.get("calibration") or {}, cfg)
    return calibration.settings(cfg), calibration


@dataclass(frozen=True)
class SeriesRows:
    """The daily rows of one series the drill-down draws, read from the lake on demand.

    Attributes:
        history: server_id, ds, metric, value, is_imputed, is_anomaly over the last ``dashboard.history_days``.
        forecast: ``schema.FORECAST_COLUMNS``.
        backtests: its stored backtest forecasts over the days shown (None when the lake has none).
    """

    history: pd.DataFrame
    forecast: pd.DataFrame
    backtests: pd.DataFrame | None


class DashboardState:
    """The lake as the dashboard needs it: per-series and small tables in memory, daily rows read per click.

    At start only the small tables (``server_risk``, recommendations, clusters, the forecasts' per-series
    summary, metric aggregates) are read. A drill-down reads its series' history, forecast and backtest
    forecasts with filtered reads (the last ``SERIES_CACHE`` series kept). The slider's positions come
    from ``risk.streaming.GrowthAssessor`` (``GrowthPositions``): the lake's history observed once chunk by
    chunk, then every growth assessed over the forecasts read chunk by chunk, as ``capfc risk --growth``.
    Every read sees the lake as it was at start (each table pinned at the version readers saw then):
    restart the dashboard to show a newer run.
    """

    def __init__(self, lake: Lake, settings: Settings) -> None:
        started = time.perf_counter()
        self.settings = settings
        # Its own reader of the lake, pinned to the tables as they are now: a capfc run while the
        # dashboard is up does not mix new forecasts into the slider over the risk table it started with.
        self.lake = Lake.open(lake.uri, lake.cfg)
        self.lake.pin_reads(self.lake.current_versions())
        self.data: ReportData = load_report_data(self.lake, settings, accuracy=False, weekly=False)
        self.settings = settings = self.data.settings  # the breach thresholds the stored risk run applied
        self.ranked = ranked_risks(self.data)
        self.points = cluster_map(self.data)
        self.chosen = chosen_models(self.data)
        # Stored what-ifs (capfc risk --growth/--scenario) sit beside the base risk tables, by name;
        # the What-if tab shows one at a time (the most recent first).
        self.stored_scenarios = ScenarioStore(self.data)
        self.scenario_names = self.stored_scenarios.names
        self.stored = self.stored_scenarios.stored
        self.scenario: StoredScenario | None = self.stored(None)
        self.lineage = lineage(self.data)
        # The slider re-assesses breaches as the risk stage did: with the forecast stage's interval and
        # the calibration the last risk run applied (rho, isotonic map), so 0 % matches the stored table.
        self.risk_cfg, self.calibration = _risk_settings(self.data, settings)
        # A metrics table without rows has no period; the drill-down then shows forecasts only.
        self.has_history = self.data.period is not None
        last = self.data.period[1] if self.data.period else dt.date.today()
        self.since = last - dt.timedelta(days=settings.dashboard.history_days)
        self._series = lru_cache(maxsize=SERIES_CACHE)(self._read_series)
        self._risk_tables = lru_cache(maxsize=RISK_TABLES_KEPT)(self._risk_table)
        self.positions: GrowthPositions | None = None
        clusters = self.data.table("clusters")
        # Risk tables from another forecast run than the lake's (the lineage banner) would make the slider grow
        # new forecasts against an old base: growth could lower the risk (helper-52). The slider is off then.
        if self.has_history and self.data.forecasts is not None and clusters is not None and \
                self.data.table("server_risk") is not None and self.data.table("recommendations") is not None \
                and self.lineage.consistent:
            self.positions = GrowthPositions(self._assessor, self.slider_values())
        inventory = self.data.table("inventory")
        log.info("dashboard: %d servers, %d series loaded in %.1f s", 0 if inventory is None else len(inventory),
                 len(self.ranked), time.perf_counter() - started)

    def _assessor(self) -> GrowthAssessor:
        """The streamed growth what-if over the lake (its history observed chunk by chunk, once)."""
        cfg = self.settings.risk.model_copy(update={"interval": self.settings.forecast.interval})
        size = servers_per_chunk(cfg.chunk_servers, RISK_BYTES_PER_SERVER, *RISK_CHUNK_BOUNDS, "risk.chunk_servers")
        clusters = self.data.table("clusters")
        assert clusters is not None  # positions exist only with clusters
        return GrowthAssessor(LakeSource(self.lake), self.lake.read_table("inventory"), cfg, self.calibration,
                              clusters, size)

    # -- one series' daily rows -----------------------------------------------------------------
    def _read_series(self, server: str, metric: str) -> SeriesRows:
        pair = [(server, metric)]
        history = load_history(self.lake, pair, self.since) if self.has_history else pd.DataFrame(
            columns=list(HISTORY_COLUMNS))
        forecasts = self.data.forecasts
        forecast = forecasts.of(pair) if forecasts is not None else pd.DataFrame(
            columns=["server_id", "metric", "ds", "model", "yhat", "yhat_lower", "yhat_upper"])
        # The drill-down draws the stored backtest forecasts of the days it shows.
        backtests = (load_backtest_forecasts(self.lake, pair, self.since)
                     if self.lake.has_table("backtest_forecasts") else None)
        return SeriesRows(history, forecast, backtests)

    def history(self, server: str, metric: str) -> pd.DataFrame:
        """Daily history of one series over the last ``dashboard.history_days`` (server_id, ds, metric, value,
        is_imputed, is_anomaly)."""
        return self._series(server, metric).history

    def forecast(self, server: str, metric: str) -> pd.DataFrame:
        """The forecast rows of one series."""
        return self._series(server, metric).forecast

    def backtest_forecasts(self, server: str | None, metric: str | None) -> pd.DataFrame | None:
        """The series' stored backtest forecasts over the history shown (None when the lake has none)."""
        if server is None or metric is None:
            return None
        return self._series(server, metric).backtests

    # -- what-if ------------------------------------------------------------------------------
    def base_risk(self) -> pd.DataFrame | None:
        """The base risk per series: the lake's server_risk (a stored what-if never replaces it).

        Returns:
            server_id, metric, risk_level, breach_ds, days_to_breach, breach_probability (at least);
            None without server_risk.
        """
        return self.data.table("server_risk")

    def whatif(self, growth: float) -> pd.DataFrame:
        """Risk per series with the base forecasts uplifted by ``growth`` percent (computed once per value).

        The slider always grows the base (the lake's forecasts and risk tables).

        Returns:
            server_id, metric, risk_level, breach_ds; at 0 % the base as stored (``base_risk``, every column).
        """
        stored = self.base_risk()
        if not growth and stored is not None:
            return stored
        if self.positions is None:
            return _EMPTY_RISK
        return self.positions.get(growth).risk

    def savings(self, growth: float) -> Savings | None:
        """Recommendations and net savings under ``growth`` percent (computed once per value); None without any.

        At 0 % (or when the lake lacks what a re-evaluation needs) the lake's ``recommendations`` as stored;
        else the ``scenario_recommendations`` ``capfc risk --growth`` would store (``GrowthPositions``).
        """
        recs = self.data.table("recommendations")
        if recs is None:
            return None
        if not growth or self.positions is None:
            return Savings.of(recs)
        return self.positions.get(growth).savings

    def ready(self, growth: float) -> bool:
        """Whether the what-if at ``growth`` needs no more computing (computed, failed, or nothing to compute)."""
        return (not growth or self.positions is None or self.positions.cached(growth) is not None
                or self.positions.failed(growth) is not None)

    def slider_values(self) -> list[float]:
        """The what-if growth values the slider can take, nearest to 0 % first (0 itself excluded)."""
        cfg = self.settings.dashboard
        steps = range(int(cfg.growth_min // GROWTH_STEP), int(cfg.growth_max // GROWTH_STEP) + 1)
        return sorted((s * GROWTH_STEP for s in steps if s), key=lambda v: (abs(v), v))

    def warm(self) -> None:
        """Compute every slider position now (nearest to 0 % first), so moving the slider is a cache hit.

        ``create_app`` runs the same in a background thread (``GrowthPositions.start``), which steps aside
        for interactions and takes a position the KPI cards asked for first.
        """
        if self.positions is not None:
            self.positions.warm()

    def risk_rows(self, growth: float) -> list[dict[str, Any]]:
        """Every row of the risk table: the lake's risk (base) beside the what-if level and breach date."""
        table = self.risk_table(growth)
        return records(table.drop(columns=[c for c in table.columns if c.startswith(SORT_KEY)]))

    def risk_page(self, growth: float, page: Any, sort_by: Any, filter_query: Any) -> tuple[list[dict[str, Any]], int]:
        """One page of the risk table, filtered and sorted on the server (the DataTable's custom actions).

        Args:
            growth: the slider's growth.
            page: ``page_current`` (from 0).
            sort_by: ``sort_by`` (``[{"column_id": ..., "direction": "asc"|"desc"}]``; empty: by rank).
            filter_query: ``filter_query`` (``{column} op value`` terms joined by ``&&``).

        Returns:
            (the page's rows as ``risk_rows`` gives them, the page count).

        Raises:
            BadInput: a malformed page, sort or filter (answered with 400).
        """
        rows, count = served_page(self.risk_table(growth), page, sort_by, filter_query, NUMERIC_COLUMNS,
                                  self.settings.dashboard.page_size, TABLE_COLUMNS)
        return records(rows), count

    def savings_page(self, growth: float, page: Any, sort_by: Any,
                     filter_query: Any) -> tuple[list[dict[str, Any]], int]:
        """One page of the Recommendations table under ``growth`` (``Savings.table``, most savings first),
        filtered and sorted on the server as ``risk_page``; no rows without recommendations."""
        savings = self.savings(growth)
        if savings is None:
            return [], 1
        rows, count = served_page(savings.table(), page, sort_by, filter_query, SAVINGS_NUMERIC,
                                  self.settings.dashboard.page_size)
        return records(rows), count

    def scenario_page(self, name: str | None, page: Any, sort_by: Any,
                      filter_query: Any) -> tuple[list[dict[str, Any]], int]:
        """One page of a stored what-if's rows (``ScenarioStore.frame``, most affected first), served as
        ``risk_page``; no rows without a stored what-if."""
        rows, count = served_page(self.stored_scenarios.frame(name), page, sort_by, filter_query,
                                  SCENARIO_NUMERIC, self.settings.dashboard.page_size)
        return records(rows), count

    def risk_table(self, growth: float) -> pd.DataFrame:
        """The risk table as a frame: id (``server|metric``) then ``TABLE_COLUMNS`` (the last few growths kept).

        Returns:
            One row per series in rank order; dates as ``YYYY-MM-DD`` text, P(breach) in whole percent.
        """
        return self._risk_tables(key(growth))

    def _risk_table(self, growth: float) -> pd.DataFrame:
        if self.ranked.empty:
            return pd.DataFrame(columns=["id", *TABLE_COLUMNS])
        table = reported_breaches(self.ranked).assign(rank=range(1, len(self.ranked) + 1))
        base = _breach_cells(table)
        table = table.assign(breach_ds=base["text"], days_to_breach=base["days"],
                             **{SORT_KEY + "breach_ds": base["at"]})
        scenario = self.whatif(growth)
        if len(scenario):
            what = reported_breaches(scenario)
            cells = _breach_cells(what)
            keyed = pd.DataFrame({"whatif_level": what["risk_level"].to_numpy(),
                                  "whatif_breach_ds": cells["text"].to_numpy(),
                                  SORT_KEY + "whatif_breach_ds": cells["at"].to_numpy()},
                                 index=pd.MultiIndex.from_frame(what[["server_id", "metric"]]))
            table = table.join(keyed, on=["server_id", "metric"])
        savings = self.savings(growth)
        if savings is not None:
            actions = savings.recommendations.set_index("server_id")["action"].rename("whatif_action")
            table = table.join(actions, on="server_id")
        out = pd.DataFrame({"id": table["server_id"].astype(str) + "|" + table["metric"].astype(str)})
        for column in TABLE_COLUMNS:
            values = table[column] if column in table.columns else pd.Series([None] * len(table), index=table.index)
            if column == "breach_probability":
                values = (values.astype(float) * 100).round(0)
            elif column == "days_to_breach":
                values = values.astype("Float64")
            elif column == "status":
                values = values.astype(object).map(label)
            out[column] = values.to_numpy(dtype=object) if column not in NUMERIC_COLUMNS else values.to_numpy()
        # Levels sort by severity and breach cells ("now", "likely by ...", a stale note) by their date.
        for column in ("risk_level", "whatif_level"):
            out[SORT_KEY + column] = level_codes(out[column])
        # A stale series' level (the what-if's too: its data are the same) reads "stale (critical)" in grey and it has
        # no probability, as in the packs (helper-73: a red "critical" and P 90 % for a VM silent for 15 days).
        stale = (table["status"] if "status" in table.columns else pd.Series(None, index=table.index)).eq(
            STALE).to_numpy(dtype=bool)
        for column in ("risk_level", "whatif_level"):
            out[column] = stale_levels(out[column], stale)
        out.loc[stale, "breach_probability"] = None
        for column in ("breach_ds", "whatif_breach_ds"):
            twin = SORT_KEY + column
            out[twin] = table[twin].to_numpy() if twin in table.columns else pd.NaT
        return out.reset_index(drop=True)

    def kpi_values(self, growth: float, wait: float = KPI_WAIT_SECONDS) -> list[tuple[str, str, str]]:
        """(label, value, note) of the headline cards, the risk and savings ones under the what-if growth.

        Never waits more than ``wait`` seconds for a what-if not computed yet: it is asked for in the
        background (ahead of the warm-up) and the cards show the base, noted "computing...", meanwhile.
        """
        inventory = self.data.table("inventory")
        servers = len(inventory) if inventory is not None else 0
        age = data_age(self.data)
        # Data ending long before today (an old export): "now" and "already breaching" are as of its last day.
        as_of = f"; \u201cnow\u201d is {self.data.period[1]}, {age} days ago" if age and self.data.period else ""
        cards = [("Servers", f"{servers:,}", f"data {self.data.period[0]} to {self.data.period[1]}{as_of}"
                  if self.data.period else "")]
        position, pending = self._position_now(growth, wait)
        if self.ranked.empty:
            cards.append(("Servers at risk", "-", not_available("server_risk")))
        else:
            # Stale series (data that ended long before the fleet's) are never "at risk" now.
            base = live_risks(self.whatif(0.0))
            scenario = live_risks(base if pending else position.risk if position is not None else self.whatif(growth))
            worst = scenario.assign(code=level_codes(scenario["risk_level"])).groupby("server_id")["code"].max()
            base_worst = pd.Series(level_codes(base["risk_level"]), index=base.index).groupby(base["server_id"]).max()
            label = "Servers at risk" + (f" (growth {growth:+g} %)" if growth else "")
            now = already_breaching(self.ranked)
            cfg = self.settings.risk
            cards.insert(1, ("Already breaching", f"{now['server_id'].nunique()}",
                             rule_text(cfg)))
            split = (f"{int((worst == 3).sum())} critical, {int((worst == 2).sum())} high, "
                     f"{int((worst == 1).sum())} medium")
            against = f"base {int((base_worst >= 1).sum())}; " if growth else ""
            cards.append((label, f"{int((worst >= 1).sum())}", pending or against + split + stale_text(self.ranked)))
            first = scenario.dropna(subset=["breach_ds"]).sort_values(["breach_ds", "server_id"]).head(1)
            when = "Earliest breach"
            if len(now):  # the first row of the risk table
                cards.append((when, "now", f"{now['server_id'].iloc[0]} {now['metric'].iloc[0]}: over on "
                              f"{int(now['days_over_recent'].iloc[0])} of the last {cfg.current_window_days} days"))
            else:
                cards.append((when, day(first["breach_ds"].iloc[0]) if len(first) else "none",
                              f"{first['server_id'].iloc[0]} {first['metric'].iloc[0]}" if len(first) else
                              "within the horizon"))
        base_savings = self.savings(0.0)
        now_savings = (base_savings if not growth or self.positions is None else
                       position.savings if position is not None else None)
        cards.extend(savings_cards(now_savings, base_savings, growth, pending))
        mase = self.chosen["mase"].median() if len(self.chosen) else None
        cards.append(("Forecast error", "-" if mase is None or pd.isna(mase) else f"{mase:.2f} MASE",
                      "median of chosen models" if mase is not None else not_available("backtests")))
        return cards

    def _position_now(self, growth: float, wait: float) -> tuple[Position | None, str | None]:
        """The what-if at ``growth`` if ready within ``wait`` seconds, else (None, the note the cards show)."""
        if not growth or self.positions is None:
            return None, None
        found = self.positions.cached(growth)
        if found is None and self.positions.failed(growth) is None:
            self.positions.request(growth)
            found = self.positions.wait(growth, wait)
        if found is not None:
            return found, None
        failed = self.positions.failed(growth)
        return None, (f"what-if failed: {failed[:120]}; base shown" if failed is not None else
                      f"computing {key(growth):+g} %\u2026 base shown")

    # -- drill-down ---------------------------------------------------------------------------
    def server_view(self, server: str | None, metric: str | None, growth: float) -> tuple[go.Figure, dict[str, Any]]:
        """Figure and facts for one series (``dashboard_drill.server_view``)."""
        return dashboard_drill.server_view(self, server, metric, growth)

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
