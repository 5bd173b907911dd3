"""Named what-if scenarios: their names, their rows beside the base tables, and base -> scenario lines."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.errors import ConfigError
from capacity_forecaster.risk.levels import money

SCENARIO = "scenario"
# The base tables (server_risk, clusters, recommendations) never hold a scenario; these do, one
# block of rows per scenario name, so several scenarios sit side by side and a new run of one
# replaces only its own rows.
SCENARIO_TABLES = ("risk_comparison", "scenario_risk", "scenario_recommendations", "risk_scenarios")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._+-]{0,63}$")


@dataclass(frozen=True)
class ScenarioOutcome:
    """One what-if evaluated beside the base.

    Attributes:
        name: the stored name (``growth-20pct``; ``scenario_name``).
        label: what people read (``growth +20 %/year``, the scenario file's name).
        server_risk: the scenario's breach risk (``server_risk`` columns).
        clusters: the scenario's clusters (base clusters; added servers join their template's).
        recommendations: the scenario's recommendations (``recommendations`` columns).
        summary: the scenario's summary (same keys as the base summary).
        comparison: base vs scenario per series (``stage.COMPARISON_COLUMNS``).
        parameters: growth_pct, growth_ramp, scenario_file (what reproduces it).
    """

    name: str
    label: str
    server_risk: pd.DataFrame
    clusters: pd.DataFrame
    recommendations: pd.DataFrame
    summary: dict[str, Any]
    comparison: pd.DataFrame
    parameters: dict[str, Any]


def _pct_text(pct: float) -> str:
    text = f"{abs(pct):g}".replace(".", "p")
    return f"{text}pct" if pct >= 0 else f"minus{text}pct"


def scenario_name(growth: float, *, ramp: bool, file_name: str | None = None, given: str | None = None) -> str:
    """The name a what-if is stored under: ``given`` when set, else derived from its parameters.

    ``growth-20pct`` (an annual rate ramped over the horizon), ``growth-20pct-step`` (a step change),
    ``growth-minus10pct``; a scenario file gives its own name, plus the growth when there is one
    (``onboarding-growth-20pct``).

    Raises:
        ConfigError: ``given`` is not 1-64 lower-case letters, digits, ``.``, ``_``, ``+`` or ``-``.
    """
    if given is not None:
        if not _NAME.match(given):
            raise ConfigError(f"scenario name {given!r}: use 1-64 lower-case letters, digits, '.', '_', '+' or "
                              "'-', starting with a letter or digit (e.g. growth-20pct)")
        return given
    parts = []
    if file_name:
        parts.append(re.sub(r"[^a-z0-9._+-]+", "-", file_name.lower()).strip("-") or "scenario")
    if growth or not parts:
        parts.append(f"growth-{_pct_text(growth)}" + ("" if ramp else "-step"))
    return "-".join(parts)[:64]


def scenario_label(growth: float, *, ramp: bool, file_name: str | None = None) -> str:
    """What people read: ``growth +20 %/year`` (ramped), ``growth +20 % at once`` (step), ``onboarding (...)``."""
    text = f"growth {growth:+g} %" + ("/year" if ramp else " at once")
    if not file_name:
        return text
    return f"{file_name} ({text})" if growth else file_name


def tagged(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """A copy of ``frame`` with the scenario name as its first column."""
    out = frame.copy()
    out.insert(0, SCENARIO, name)
    return out


def upsert(existing: pd.DataFrame | None, rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """The stored scenario rows with ``name``'s block replaced by ``rows`` (other scenarios kept).

    Returns:
        ``existing`` without the rows of ``name``, then ``rows`` (both carry the ``scenario`` column).
    """
    if existing is None or existing.empty or SCENARIO not in existing.columns:
        return rows.reset_index(drop=True)
    kept = existing[existing[SCENARIO] != name]
    if kept.empty:
        return rows.reset_index(drop=True)
    return pd.concat([kept.astype(rows.dtypes.to_dict(), errors="ignore"), rows], ignore_index=True)


def _earliest(summary: dict[str, Any]) -> str:
    first = summary.get("earliest_breach") or {}
    if not first:
        return "none"
    return f"{first['ds']} ({first['server_id']} {first['metric']})"


def index_row(outcome: ScenarioOutcome, base: dict[str, Any], run_id: str | None,
              forecast_run_id: str | None) -> dict[str, Any]:
    """One row of ``risk_scenarios``: the scenario's parameters, lineage and base -> scenario totals.

    Returns:
        scenario, label, growth_pct, growth_ramp, scenario_file, risk_run_id, forecast_run_id, created,
        base_/scenario_ servers_at_risk, earliest_breach, net_monthly_savings (NaN when not priced).
    """
    s = outcome.summary
    return {
        SCENARIO: outcome.name, "label": outcome.label, **outcome.parameters,
        "risk_run_id": run_id, "forecast_run_id": forecast_run_id,
        "created": pd.Timestamp.now(tz="UTC").isoformat(timespec="microseconds"),
        "base_servers_at_risk": int(base["servers_at_risk"]), "scenario_servers_at_risk": int(s["servers_at_risk"]),
        "base_earliest_breach": _earliest(base), "scenario_earliest_breach": _earliest(s),
        "base_net_monthly_savings": _net(base), "scenario_net_monthly_savings": _net(s),
    }


def _priced(summary: dict[str, Any]) -> bool:
    """A server of the side has a monthly cost (else its savings are unknown, not $0)."""
    return float(summary.get("fleet_monthly_cost") or 0.0) > 0


def _net(summary: dict[str, Any]) -> float:
    """Net monthly savings, NaN when not ``_priced``."""
    return float(summary["net_monthly_savings"]) if _priced(summary) else np.nan


def comparison_lines(base: dict[str, Any], scenario: dict[str, Any], name: str, label: str) -> list[str]:
    """Base -> scenario for the terminal: servers at risk, critical series, earliest breach, net savings."""
    crit = ("series_by_level", "critical")
    return [
        f"Scenario {name} ({label}), stored beside the base (server_risk and recommendations stay the base):",
        f"  servers at risk   {base['servers_at_risk']} -> {scenario['servers_at_risk']}",
        f"  critical series   {base[crit[0]].get(crit[1], 0)} -> {scenario[crit[0]].get(crit[1], 0)}",
        f"  earliest breach   {_earliest(base)} -> {_earliest(scenario)}",
        f"  net savings/month {_money(base)} -> {_money(scenario)}",
    ]


def _money(summary: dict[str, Any]) -> str:
    if not _priced(summary):
        return "not priced"
    return money(float(summary["net_monthly_savings"]))


__all__ = ["SCENARIO", "SCENARIO_TABLES", "ScenarioOutcome", "comparison_lines", "index_row", "scenario_label",
           "scenario_name", "tagged", "upsert"]
