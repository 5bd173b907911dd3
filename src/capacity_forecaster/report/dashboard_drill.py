"""The dashboard's drill-down: one series' chart and the facts beside it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd
import plotly.graph_objects as go

from capacity_forecaster.report import comparison, figures, style
from capacity_forecaster.report.risks import (
    ALREADY,
    STALE,
    breach_phrase,
    level_of,
    risk_row,
    table_level,
    table_probability,
    threshold_of,
)
from capacity_forecaster.report.text import NOT_PRICED, model_label, money, server_title
from capacity_forecaster.risk.whatif import apply_growth

if TYPE_CHECKING:
    from capacity_forecaster.report.dashboard_state import DashboardState


def server_view(state: DashboardState, server: str | None, metric: str | None,
                growth: float) -> tuple[go.Figure, dict[str, Any]]:
    """Figure and facts for one series: history, imputed/anomalous days, forecast, interval, threshold,
    breach dates (base and what-if), the chosen model and its backtest error.

    Returns:
        (figure, facts) where facts maps a label to its text for the side panel.
    """
    if not server or not metric:
        return figures.empty_figure("Server drill-down", "pick a server in the table"), {}
    past, future = state.history(server, metric), state.forecast(server, metric)
    row = risk_row(state.ranked, server, metric)
    threshold, level = threshold_of(row, state.data, metric), level_of(row)
    model = risk_row(state.chosen, server, metric) or None
    model_text = (f"model {model_label(model['model'])}, backtest MASE {model['mase']:.2f}"
                  if model is not None and not pd.isna(model["mase"]) else
                  f"model {model_label(model['model'])}" if model is not None else "no forecast")
    title = (f"{server_title(server, row.get('hostname'))}: "
             f"{figures.METRIC_NAMES.get(metric, metric)} - {model_text}")
    # As the HTML report draws it: an already-breaching series' day is its last over ("last over"), a stale one
    # has no breach line (its forecast starts from old data; helper-73: "breach 2013-08-28" on a VM silent since).
    status = row.get("status")
    fig = figures.server_figure(title, past, future, threshold, None if status == STALE else row.get("breach_ds"),
                                level, state.settings.forecast.interval, height=440,
                                backtests=state.backtest_forecasts(server, metric),
                                breach_label="last over" if status == ALREADY else "breach")
    facts: dict[str, Any] = {"Risk level": table_level(row)[1] if isinstance(row.get("risk_level"), str) else level,
                             "Breach": breach_phrase(row) if row else "-",
                             "P(breach)": table_probability(row), "Reason": row.get("reason") or "-"}
    if state.scenario is not None:
        rows = state.scenario.rows
        hit = rows[(rows["server_id"] == server) & (rows["metric"] == metric)]
        if len(hit):
            base = hit.iloc[0].to_dict()
            told = comparison.side_level(base, "scenario")
            when = comparison.side_when(base, "scenario")
            facts[f"Stored what-if {state.scenario.name}"] = (
                f"{told[1] if told else '-'}, {when if base.get('scenario_status') == STALE else 'breach ' + when}, "
                f"P {comparison.side_probability(base, 'scenario')}; {base['change']}")
    if growth and len(future):
        scenario = state.whatif(growth)
        hit = scenario[(scenario["server_id"] == server) & (scenario["metric"] == metric)]
        grown = apply_growth(future, growth, ramp=state.settings.risk.growth_ramp)
        fig.add_trace(go.Scatter(x=grown["ds"], y=grown["yhat"], mode="lines", name=f"what-if {growth:+g} %",
                                 line={"color": style.RISK_COLOURS["high"], "dash": "dash", "width": 2}))
        if len(hit):
            grown_row = hit.iloc[0].to_dict()
            what_breach = None if grown_row.get("status") == STALE else grown_row["breach_ds"]
            # A stale series reads as in the base: its level as of old data, no line (helper-74).
            level_text = table_level(grown_row)[1] if isinstance(grown_row.get("risk_level"), str) else "unassessed"
            facts["What-if"] = f"{level_text}, {breach_phrase(grown_row)} at {growth:+g} % growth"
            if what_breach is not None and not pd.isna(what_breach):
                fig.add_vline(x=what_breach, line={"color": style.RISK_COLOURS["high"], "dash": "dash"})
    if model is not None:
        facts["Chosen model"] = f"{model_label(model['model'])} ({model['model']})"
        facts["Backtest error"] = ("-" if pd.isna(model["mase"]) else
                                   # No MAPE: a percentage of a near-idle series' few percent reads 39900 %.
                                   f"MAE {model['mae']:.2f} pts, MASE {model['mase']:.2f}, coverage "
                                   f"{model['coverage']:.0%}")
    recs = state.data.table("recommendations")
    if recs is not None:
        rec = recs[recs["server_id"] == server]
        if len(rec):
            r = {str(k): v for k, v in rec.iloc[0].items()}
            target = f" onto {r['target_server_id']}" if isinstance(r.get("target_server_id"), str) else ""
            saved = (f"savings {NOT_PRICED}" if pd.isna(r.get("current_monthly_cost"))
                     else f"{money(r['monthly_savings'], signed=True)}/month")
            facts["Recommendation"] = f"{r['action']}{target}: {saved}; {r.get('rationale') or ''}"
    facts["Imputed / anomalous days shown"] = (f"{int(past['is_imputed'].sum())} / {int(past['is_anomaly'].sum())}"
                                               if len(past) else "-")
    return fig, facts
