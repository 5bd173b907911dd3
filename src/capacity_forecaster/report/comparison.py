"""The stored what-if scenario (``risk_comparison``) as the reports show it: base vs scenario, totals and series."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.report.data import ReportData, scenario_info, scenario_names, whatif_name
from capacity_forecaster.report.risks import stale_levels, table_level, table_probability
from capacity_forecaster.report.summary import forecast_horizon
from capacity_forecaster.report.text import NO_PRICES, NOT_PRICED, cents, day, money
from capacity_forecaster.risk.levels import Status, level_codes, likely_first, rank_risks, stale_words
from capacity_forecaster.risk.whatif import compounded


def whatif_note(document: str = "report", part: str = "section") -> str:
    """Where a stored what-if lives (docs/risk.md, "Named scenarios"): beside the base, never in the risk tables."""
    return (f"The risk stage stored it beside the base: the lake's risk tables, and every other {part} of this "
            f"{document}, stay the base (the same run without the what-if); this {part} compares the two.")


# The what-if total that means what the executive summary's "Earliest breach" means: now when a series is
# already breaching, else the first forecast crossing.
EARLIEST = "Earliest breach"
# Most affected first: new series, then worse, better, gone, unchanged.
CHANGE_ORDER = ("added", "worse", "better", "removed", "unchanged")
SIDES = ("base", "scenario")
ALREADY = Status.ALREADY_BREACHING.value
STALE = Status.STALE.value


@dataclass(frozen=True)
class Total:
    """One fleet-level measure of the base and of the scenario.

    Attributes:
        measure: what is counted, e.g. "Servers at risk".
        base: the base value (None when not defined, e.g. no breach).
        scenario: the scenario value.
        base_text: the base value as shown.
        scenario_text: the scenario value as shown.
    """

    measure: str
    base: float | None
    scenario: float | None
    base_text: str
    scenario_text: str


@dataclass(frozen=True)
class StoredScenario:
    """A what-if a ``capfc risk --growth/--scenario`` run stored beside the base.

    Attributes:
        name: the scenario's stored name and what it is (``growth-20pct: growth +20 %/year``).
        run: when that risk run finished (UTC, ISO text; empty when no manifest names it).
        rows: one row per series in the base or the scenario, most affected first (``ranked_rows``).
        totals: fleet-level measures, base vs scenario.
        changes: series per change (``CHANGE_ORDER``), zeros included.
    """

    name: str
    run: str
    rows: pd.DataFrame
    totals: tuple[Total, ...]
    changes: dict[str, int]
    note: str = ""  # what a ramped growth rate adds by the end of the forecast (``growth_note``)

    @property
    def changed(self) -> pd.DataFrame:
        """The rows whose level or breach date moved, or that the scenario added or removed."""
        return self.rows[self.rows["change"] != "unchanged"]


def ranked_rows(data: ReportData, name: str | None = None) -> pd.DataFrame:
    """The comparison table with the servers' names, most affected first.

    Returns:
        The ``risk_comparison`` columns (server_id, metric, base_/scenario_ risk_level, breach_ds,
        days_to_breach, breach_probability, action, monthly_savings, change) plus hostname and
        application where the inventory has them, and base_code / scenario_code (3 critical ... 0 low,
        -1 absent). Order: change (``CHANGE_ORDER``), scenario level (worst first), scenario days to
        breach (soonest first), server_id, metric. Only the rows of scenario ``name`` (default: the most
        recently stored). Empty without a stored scenario.
    """
    frame = data.table("risk_comparison")
    names = scenario_names(data)
    name = name or data.settings.report.scenario
    if frame is None or not names or (name is not None and name not in names):
        return pd.DataFrame(columns=["server_id", "metric", "change"])
    if "scenario" in frame.columns:
        frame = frame[frame["scenario"].astype(str) == (name or names[0])].drop(columns="scenario")
    out = frame.copy()
    for side in SIDES:
        out[f"{side}_breach_ds"] = pd.to_datetime(out[f"{side}_breach_ds"])
        out[f"{side}_code"] = level_codes(out[f"{side}_risk_level"])
    base_state = _states(data.table("server_risk"))
    stored = data.table("scenario_risk")
    if stored is not None and "scenario" in stored.columns:
        stored = stored[stored["scenario"].astype(str) == (name or names[0])]
    # Already breaching is a fact of the observed history, which a what-if does not change: without the
    # scenario's own risk rows, its series take the base's.
    scenario_state = _states(stored) if stored is not None and len(stored) else base_state
    for side, state in (("base", base_state), ("scenario", scenario_state)):
        out = _observed_breaches(out, side, state)
    inventory = data.table("inventory")
    if inventory is not None:
        out = out.merge(inventory[["server_id", "hostname", "application"]], on="server_id", how="left")
    rank = {change: i for i, change in enumerate(CHANGE_ORDER)}
    out["change_rank"] = out["change"].map(rank).fillna(len(rank))
    out = out.sort_values(["change_rank", "scenario_code", "scenario_days_to_breach", "server_id", "metric"],
                          ascending=[True, False, True, True, True], na_position="last", kind="stable")
    return out.drop(columns="change_rank").reset_index(drop=True)


_STATE_COLUMNS = ("status", "days_over_recent", "last_over_ds", "stale_since", "last_observed", "raw_last_observed",
                  "likely_breach_ds")
_STATE_DAYS = ("last_over_ds", "stale_since", "last_observed", "raw_last_observed", "likely_breach_ds")


def _states(risk: pd.DataFrame | None) -> pd.DataFrame:
    """server_id, metric and ``_STATE_COLUMNS`` of a server_risk-like table (empty without one)."""
    columns = ["server_id", "metric", *_STATE_COLUMNS]
    if risk is None or "status" not in risk.columns:
        return pd.DataFrame(columns=columns)
    out = risk.reindex(columns=columns).drop_duplicates(["server_id", "metric"])
    for column in _STATE_DAYS:
        out[column] = pd.to_datetime(out[column])
    return out


def _observed_breaches(rows: pd.DataFrame, side: str, state: pd.DataFrame) -> pd.DataFrame:
    """One side's breach columns as the reports show them (``risks.reported_breaches``): a series already
    breaching breaches now, on its last observed day over the threshold, 0 days out; a stale one has no breach
    date (its dates are about the past: helper-73 read "base breach 2013-08-28, day 1, P 90 %" for a VM silent
    since the 27th); adds the other ``_STATE_COLUMNS`` with the side's prefix."""
    named = state.rename(columns={c: f"{side}_{c}" for c in _STATE_COLUMNS})
    out = rows.merge(named, on=["server_id", "metric"], how="left")
    levelled = out[f"{side}_risk_level"].notna()
    now = out[f"{side}_status"].eq(ALREADY).fillna(False).astype(bool) & levelled
    stale = out[f"{side}_status"].eq(STALE).fillna(False).astype(bool) & levelled
    out[f"{side}_status"] = out[f"{side}_status"].where(levelled)
    out[f"{side}_breach_ds"] = out[f"{side}_breach_ds"].mask(now, out[f"{side}_last_over_ds"]).mask(stale)
    out[f"{side}_days_to_breach"] = pd.to_numeric(out[f"{side}_days_to_breach"], errors="coerce").mask(
        now, 0).mask(stale)
    return out.drop(columns=f"{side}_last_over_ds")


def _side(row: Mapping[Any, Any], side: str) -> dict[str, Any]:
    """One side's columns of a comparison row without their prefix (a server_risk-like row)."""
    return {str(key).removeprefix(f"{side}_"): value for key, value in row.items() if str(key).startswith(f"{side}_")}


def side_when(row: Mapping[Any, Any], side: str) -> str:
    """One side's breach as the what-if tables show it, as ``risks.breach_when`` says it: ``now`` for a series already
    breaching, ``no data since <day>`` for a stale one, ``likely by <day>`` where that comes before the median's
    crossing (``levels.likely_first``), else its date."""
    status = row.get(f"{side}_status")
    if status == STALE:
        return stale_words(_side(row, side)).removeprefix("stale: ")
    if status == ALREADY:
        return "now"
    return f"likely by {day(row.get(f'{side}_likely_breach_ds'))}" if likely_first(_side(row, side)) else day(
        row.get(f"{side}_breach_ds"))


def side_level(row: Mapping[Any, Any], side: str) -> tuple[str, str] | None:
    """(colour key, text) of one side's level as the risk tables show it (``risks.table_level``: ``stale
    (critical)`` in grey); None where the series is absent on that side."""
    return table_level(_side(row, side)) if isinstance(row.get(f"{side}_risk_level"), str) else None


def side_probability(row: Mapping[Any, Any], side: str) -> str:
    """One side's breach probability as the risk tables show it (``-`` for a stale series or none)."""
    return table_probability(_side(row, side))


def side_savings(row: Mapping[Any, Any], side: str) -> str:
    """One side's monthly savings: ``not priced`` for a server without a monthly cost (keep included: helper-73 read
    "$0" beside "not priced" everywhere else), ``-`` where the server is absent on that side."""
    if not isinstance(row.get(f"{side}_action"), str):
        return "-"
    value = row.get(f"{side}_monthly_savings")
    return NOT_PRICED if value is None or pd.isna(value) else money(value, signed=True)


def _servers(rows: pd.DataFrame, side: str) -> pd.DataFrame:
    """Per server on one side: worst level code of its series that are not stale (a stale series' level is as of
    old data: never counted at risk, as in the risk summary), and monthly savings (the comparison repeats them per
    metric)."""
    present = rows[rows[f"{side}_action"].notna() | (rows[f"{side}_code"] >= 0)] if len(rows) else rows
    return present.assign(_live=_live_codes(present, side)).groupby("server_id").agg(
        code=("_live", "max"), savings=(f"{side}_monthly_savings", "first"), action=(f"{side}_action", "first"))


def _live_codes(rows: pd.DataFrame, side: str) -> pd.Series:
    """One side's level codes with stale series' as -1 (no level)."""
    if f"{side}_status" not in rows.columns:
        return rows[f"{side}_code"]
    return rows[f"{side}_code"].where(~rows[f"{side}_status"].eq(STALE).fillna(False).astype(bool), -1)


def _earliest(rows: pd.DataFrame, side: str) -> tuple[float | None, str]:
    """The side's earliest breach as the executive summary says it: ``now (srv cpu)``, naming the first
    already-breaching series in the one risk ranking, else the first forecast crossing."""
    status = rows[f"{side}_status"] if f"{side}_status" in rows.columns else pd.Series(None, index=rows.index)
    now = rows[status.eq(ALREADY).fillna(False).astype(bool)]
    if len(now):
        ranked = rank_risks(pd.DataFrame({
            "server_id": now["server_id"], "metric": now["metric"], "risk_level": now[f"{side}_risk_level"],
            "status": ALREADY, "days_over_recent": now[f"{side}_days_over_recent"],
            "days_to_breach": now[f"{side}_days_to_breach"],
            "breach_probability": now[f"{side}_breach_probability"]}))
        return 0.0, f"now ({ranked['server_id'].iloc[0]} {ranked['metric'].iloc[0]})"
    # (A stale series has no breach date: _observed_breaches.)
    hits = rows.dropna(subset=[f"{side}_breach_ds"]).sort_values([f"{side}_breach_ds", "server_id", "metric"])
    if hits.empty:
        return None, "none"
    first = hits.iloc[0]
    days = first[f"{side}_days_to_breach"]
    return (None if pd.isna(days) else float(days),
            f"{day(first[f'{side}_breach_ds'])} ({first['server_id']} {first['metric']})")


def totals(rows: pd.DataFrame) -> tuple[Total, ...]:
    """Fleet-level measures of both sides: servers, servers at risk, critical servers, series at risk,
    the earliest breach and net savings per month (upsizing counted as a cost)."""
    out = []
    per = {side: _servers(rows, side) for side in SIDES}
    counts = {side: {
        "Servers": float(len(per[side])),
        "Servers at risk (medium or worse)": float((per[side]["code"] >= 1).sum()),
        "Critical servers": float((per[side]["code"] == 3).sum()),
        "Series at risk (medium or worse)": float((_live_codes(rows, side) >= 1).sum()) if len(rows) else 0.0,
    } for side in SIDES}
    for measure in counts["base"]:
        base, scenario = counts["base"][measure], counts["scenario"][measure]
        out.append(Total(measure, base, scenario, f"{base:,.0f}", f"{scenario:,.0f}"))
    (base_days, base_text), (scen_days, scen_text) = (_earliest(rows, side) for side in SIDES)
    out.append(Total(EARLIEST, base_days, scen_days, base_text, scen_text))
    # Servers without a monthly cost have unknown savings: a side whose actions are all unpriced says so
    # (never $0). A kept server saves $0 priced or not, so it does not make a side priced.
    savings = {side: _net_savings(per[side]) for side in SIDES}
    out.append(Total("Net savings per month", savings["base"], savings["scenario"],
                     *(NOT_PRICED if savings[side] is None else money(savings[side]) for side in SIDES)))
    return tuple(out)


def _net_savings(servers: pd.DataFrame) -> float | None:
    """Net monthly savings of one side's servers (``_servers``); None when a server has an action other than
    keep and none of those is priced, or when no server is priced."""
    values = servers["savings"].to_numpy(float)
    acting = (servers["action"].notna() & (servers["action"] != "keep")).to_numpy()
    if (acting.any() and not np.isfinite(values[acting]).any()) or (len(values) and not np.isfinite(values).any()):
        return None
    return cents(np.nansum(values))


def stored_scenario(data: ReportData, name: str | None = None) -> StoredScenario | None:
    """A stored what-if (default: the most recently stored), or None when the lake has none
    (``data.WHATIF_MISSING`` says what to run)."""
    name = name or data.settings.report.scenario
    rows = ranked_rows(data, name)
    if rows.empty:
        return None
    counts = rows["change"].value_counts()
    return StoredScenario(
        name=whatif_name(data, name) or "what-if",
        run=str(scenario_info(data, name).get("finished", ""))[:19].replace("T", " "),
        rows=rows, totals=totals(rows),
        changes={change: int(counts.get(change, 0)) for change in CHANGE_ORDER},
        note=growth_note(scenario_info(data, name), forecast_horizon(data)),
    )


def growth_note(info: Mapping[str, Any], horizon: int | None) -> str:
    """`` (about +1.5 % by the end of the 30-day forecast)`` for a ramped annual growth rate: +20 %/year changed
    nothing on a 30-day horizon, and the pack did not say why (helper-50); empty otherwise."""
    pct = info.get("growth_pct")
    if pct is None or pd.isna(pct) or not horizon or not bool(info.get("growth_ramp", True)):
        return ""
    reached = float(compounded(float(pct), horizon)) * 100.0  # the forecast's last day, as apply_growth ramps it
    return f" (about {reached:+.1f} % by the end of the {horizon}-day forecast)"


def change_text(changes: dict[str, int]) -> str:
    """``3 worse, 1 better, 28 unchanged`` (categories without series left out)."""
    return ", ".join(f"{n} {change}" for change, n in changes.items() if n) or "no series"


def stale_run(data: ReportData, scenario: StoredScenario) -> str | None:
    """The forecast run a stored scenario was computed on when that is not the lake's current one, else None."""
    from capacity_forecaster.report.lineage import lineage

    for key, run in lineage(data).stale_scenarios.items():
        if scenario.name == key or scenario.name.startswith(key + ":"):
            return run
    return None


def headline(scenario: StoredScenario, stale: str | None = None) -> str:
    """One sentence for the key messages: the report shows the base; how the stored scenario differs from it
    (``stale``: the earlier forecast run it was computed on, said in the same sentence)."""
    by = {t.measure: t for t in scenario.totals}
    risk, savings = by["Servers at risk (medium or worse)"], by["Net savings per month"]
    first = by[EARLIEST]
    money_text = (f"savings {NOT_PRICED} ({NO_PRICES})" if savings.base is None and savings.scenario is None
                  else f"net savings {savings.base_text} \u2192 {savings.scenario_text} per month")
    return (f"This report shows the base; beside it, the what-if scenario \u201c{scenario.name}\u201d{scenario.note}: "
            f"servers at risk {risk.base_text} \u2192 {risk.scenario_text}, earliest breach "
            f"{first.base_text} \u2192 {first.scenario_text}, {money_text}; series {change_text(scenario.changes)}"
            + (f" (computed on an earlier forecast run, {stale}: re-run capfc risk with it to compare like with "
               "like)." if stale else "."))


def shown_levels(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (``ranked_rows``) as the tables that show raw cells (the workbook, the dashboard) show them: a stale
    series' level reads ``stale (critical)`` and it has no breach probability, on either side (``side_level``)."""
    out = rows.copy()
    for side in SIDES:
        status = out[f"{side}_status"] if f"{side}_status" in out.columns else pd.Series(None, index=out.index)
        stale = status.eq(STALE).fillna(False).astype(bool) & out[f"{side}_risk_level"].notna()
        out[f"{side}_risk_level"] = stale_levels(out[f"{side}_risk_level"], stale)
        out[f"{side}_breach_probability"] = out[f"{side}_breach_probability"].mask(stale)
    return out
