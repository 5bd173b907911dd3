"""The report stage: every lake table -> reports/ (PNG charts, HTML, Excel, PDF)."""

from __future__ import annotations

import logging
from typing import Any

from capacity_forecaster.config import Settings
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, stage_run

log = logging.getLogger(__name__)


def report_stage(lake: Lake, settings: Settings) -> tuple[StageRun, Any]:
    """Render the configured report formats into ``reports/``.

    The manifest names the forecast and risk runs the report read (``inputs``) and any lineage warning.

    Returns:
        The stage run (files and sizes in ``counts``) and the ReportResult (for the CLI).
    """
    from capacity_forecaster.report.stage import check_scenario, run_report

    check_scenario(lake, settings)
    with stage_run(lake, "report", settings) as run:
        result = run_report(lake, settings)
        run.rows_out = len(result.files)
        run.counts = {"files": {f.path: f.size for f in result.files}, "missing": dict(result.missing),
                      "lineage_warnings": result.warnings}
        if result.lineage is not None:
            run.inputs = {"forecast": result.lineage.forecast_run, "risk": result.lineage.risk_run}
    return run, result
