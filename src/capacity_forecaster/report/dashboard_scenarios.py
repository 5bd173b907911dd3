"""The stored what-if scenarios as the dashboard holds them: by name, built once, rows ready for a table."""

from __future__ import annotations

from typing import Any

import pandas as pd

from capacity_forecaster.report.comparison import StoredScenario, shown_levels, side_when, stored_scenario
from capacity_forecaster.report.dashboard_table import SORT_KEY
from capacity_forecaster.report.data import ReportData, scenario_names
from capacity_forecaster.report.risks import breach_sort_days
from capacity_forecaster.risk.levels import level_codes

SCENARIO_COLUMNS = {
    "server_id": "Server", "hostname": "Hostname", "metric": "Metric", "change": "Change",
    "base_risk_level": "Base risk", "scenario_risk_level": "Scenario risk", "base_breach_ds": "Base breach",
    "scenario_breach_ds": "Scenario breach", "base_days_to_breach": "Base days",
    "scenario_days_to_breach": "Scenario days", "base_breach_probability": "Base P %",
    "scenario_breach_probability": "Scenario P %", "base_action": "Base action", "scenario_action": "Scenario action",
    "base_monthly_savings": "Base savings / month", "scenario_monthly_savings": "Scenario savings / month",
}
# Its columns the filter row compares as numbers.
SCENARIO_NUMERIC = frozenset({"base_days_to_breach", "scenario_days_to_breach", "base_breach_probability",
                              "scenario_breach_probability", "base_monthly_savings", "scenario_monthly_savings"})


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts for a Dash table (missing values as None)."""
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return [{str(k): v for k, v in row.items()} for row in rows]


class ScenarioStore:
    """Every stored what-if of the lake, most recent first; each one is built when first asked for."""

    def __init__(self, data: ReportData) -> None:
        self.data = data
        self.names = scenario_names(data)
        self._built: dict[str, StoredScenario] = {}

    def stored(self, name: str | None) -> StoredScenario | None:
        """A stored what-if by name (None or unknown: the most recent); None when the lake has none."""
        key = name if name in self.names else (self.names[0] if self.names else None)
        if key is None:
            return None
        if key not in self._built:
            found = stored_scenario(self.data, key)
            if found is None:
                return None
            self._built[key] = found
        return self._built[key]

    def rows(self, name: str | None = None) -> list[dict[str, Any]]:
        """Rows of a stored what-if (``SCENARIO_COLUMNS``; None: the most recent), most affected first;
        empty without one."""
        frame = self.frame(name)
        return records(frame.drop(columns=[c for c in frame.columns if c.startswith(SORT_KEY)]))

    def frame(self, name: str | None = None) -> pd.DataFrame:
        """``rows`` as a frame (breaches as text, probabilities in percent, days and savings rounded; stale series as
        ``comparison.shown_levels``)."""
        scenario = self.stored(name)
        if scenario is None:
            return pd.DataFrame(columns=list(SCENARIO_COLUMNS))
        rows = shown_levels(scenario.rows)
        out = pd.DataFrame(index=rows.index)
        for column in SCENARIO_COLUMNS:
            values = rows[column] if column in rows.columns else pd.Series([None] * len(rows), index=rows.index)
            if column.endswith("_ds"):  # as the packs say it: now, no data since ..., or the day
                values = pd.Series([side_when(row, column.split("_", 1)[0]) for row in rows.to_dict("records")],
                                   index=rows.index, dtype=object)
            elif column.endswith("_probability"):
                values = (values.astype(float) * 100).round(0)
            elif column.endswith(("_days_to_breach", "_savings")):
                values = values.astype("Float64").round(0)
            out[column] = values
        # Breach cells are text ("now", "likely by ...", a stale note): they sort by their day, levels by severity
        # ("stale (critical)" as its level; helper-74: "-" rows came first and "now" last).
        for side in ("base", "scenario"):
            out[SORT_KEY + f"{side}_breach_ds"] = breach_sort_days(rows, f"{side}_")
            out[SORT_KEY + f"{side}_risk_level"] = level_codes(scenario.rows[f"{side}_risk_level"])
        return out.reset_index(drop=True)
