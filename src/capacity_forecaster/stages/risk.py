"""The risk stage: forecasts + processed metrics + inventory (+ backtest forecasts) -> risk/ tables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from capacity_forecaster.config import Settings
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, stage_run

log = logging.getLogger(__name__)


def risk_stage(lake: Lake, settings: Settings, *, growth: float | None = None,
               scenario_file: Path | None = None) -> tuple[StageRun, Any]:
    """Breach risk per server and metric, workload clusters, and sizing/consolidation recommendations.

    Args:
        lake: the lake (reads ``metrics``, ``forecasts``, ``inventory`` and, when present,
            ``backtest_forecasts``; writes ``server_risk``, ``clusters``, ``recommendations``,
            ``risk_comparison`` and ``risk_calibration``).
        settings: the configuration (``risk`` section).
        growth: what-if business growth in percent (overrides ``risk.growth``).
        scenario_file: a what-if scenario YAML (add, remove or move servers).

    Returns:
        The stage run and the RiskResult (for the CLI's summary).
    """
    from capacity_forecaster.risk.stage import run_risk
    from capacity_forecaster.risk.whatif import load_scenario

    scenario = load_scenario(scenario_file) if scenario_file is not None else None
    with stage_run(lake, "risk", settings) as run:
        metrics = lake.read_table("metrics")
        forecasts = lake.read_table("forecasts")
        inventory = lake.read_table("inventory")
        backtests = lake.read_table("backtest_forecasts") if lake.has_table("backtest_forecasts") else None
        # The breach probability reads yhat_lower/yhat_upper as the forecast stage's interval.
        cfg = settings.risk.model_copy(update={"interval": settings.forecast.interval})
        result = run_risk(metrics, forecasts, inventory, cfg, growth=growth, scenario=scenario, backtests=backtests)
        run.wrote(lake.write_table("server_risk", result.server_risk))
        run.wrote(lake.write_table("clusters", result.clusters))
        run.wrote(lake.write_table("recommendations", result.recommendations))
        run.wrote(lake.write_table("risk_comparison", result.comparison, validate=False))
        run.wrote(lake.write_table("risk_calibration", result.calibration))
        run.rows_in = len(forecasts)
        run.rows_out = len(result.server_risk)
        run.counts = {
            "summary": result.summary,
            "base_summary": result.base_summary,
            # What the stored scenario was, so reports and the dashboard can name and reproduce it.
            "whatif": {
                "growth": cfg.growth if growth is None else growth,
                "growth_ramp": cfg.growth_ramp,
                "scenario_file": None if scenario_file is None else str(scenario_file),
            },
        }
    return run, result
