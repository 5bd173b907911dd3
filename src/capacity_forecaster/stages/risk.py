"""The risk stage: forecasts + processed metrics + inventory (+ backtest forecasts) -> risk/ tables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from capacity_forecaster.config import Settings
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, stage_run, table_run_id

log = logging.getLogger(__name__)


def risk_stage(lake: Lake, settings: Settings, *, growth: float | None = None,
               scenario_file: Path | None = None, scenario_name: str | None = None) -> tuple[StageRun, Any]:
    """Breach risk per server and metric, workload clusters, and sizing/consolidation recommendations.

    The base tables (``server_risk``, ``clusters``, ``recommendations``, ``risk_calibration``) are
    always the base. A what-if is stored beside them under its name: its block of rows in
    ``risk_comparison``, ``scenario_risk`` and ``scenario_recommendations`` (each with a ``scenario``
    column) and one row in ``risk_scenarios``; other stored scenarios are kept. The manifest names
    the forecast run the risk run read (``inputs["forecast"]``).

    Args:
        lake: the lake (reads ``metrics``, ``forecasts``, ``inventory`` and, when present,
            ``backtest_forecasts``).
        settings: the configuration (``risk`` section).
        growth: what-if business growth in percent (overrides ``risk.growth``).
        scenario_file: a what-if scenario YAML (add, remove or move servers).
        scenario_name: the name to store the what-if under; None derives it (``growth-20pct``).

    Returns:
        The stage run and the RiskResult (for the CLI's summary).
    """
    from capacity_forecaster.risk.scenarios import index_row, tagged, upsert
    from capacity_forecaster.risk.stage import run_risk
    from capacity_forecaster.risk.whatif import load_scenario

    scenario = load_scenario(scenario_file) if scenario_file is not None else None
    with stage_run(lake, "risk", settings) as run:
        run.inputs = {"forecast": table_run_id(lake, "forecasts")}
        metrics = lake.read_table("metrics")
        forecasts = lake.read_table("forecasts")
        inventory = lake.read_table("inventory")
        backtests = lake.read_table("backtest_forecasts") if lake.has_table("backtest_forecasts") else None
        # The breach probability reads yhat_lower/yhat_upper as the forecast stage's interval.
        cfg = settings.risk.model_copy(update={"interval": settings.forecast.interval})
        result = run_risk(metrics, forecasts, inventory, cfg, growth=growth, scenario=scenario, backtests=backtests,
                          name=scenario_name)
        run.wrote(lake.write_table("server_risk", result.server_risk))
        run.wrote(lake.write_table("clusters", result.clusters))
        run.wrote(lake.write_table("recommendations", result.recommendations))
        run.wrote(lake.write_table("risk_calibration", result.calibration))
        run.wrote(lake.write_table("recommendation_options", result.options))
        run.wrote(lake.write_table("capacity_by_group", result.capacity))
        run.rows_in = len(forecasts)
        run.rows_out = len(result.server_risk)
        run.counts = {"summary": result.summary}
        outcome = result.scenario
        if outcome is not None:
            index = pd.DataFrame([index_row(outcome, result.summary, run.run_id, run.inputs["forecast"])])
            for table, rows in (("risk_comparison", outcome.comparison), ("scenario_risk", outcome.server_risk),
                                ("scenario_recommendations", outcome.recommendations), ("risk_scenarios", index)):
                stored = lake.read_table(table) if lake.has_table(table) else None
                new = rows if table == "risk_scenarios" else tagged(rows, outcome.name)
                run.wrote(lake.write_table(table, upsert(stored, new, outcome.name), validate=False))
            # What the stored scenario was, so reports and the dashboard can name and reproduce it.
            run.counts["scenario"] = {"name": outcome.name, "label": outcome.label, **outcome.parameters,
                                      "summary": outcome.summary}
    return run, result
