"""The forecast stage: processed/metrics -> forecasts/, backtests/, backtest_forecasts/, forecast_failures/, models/."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from capacity_forecaster.config import Settings
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, stage_run

log = logging.getLogger(__name__)

# Called with (units done, units total) as forecast work finishes.
Progress = Callable[[int, int], None]

MODELS_DIR = "models"
METRIC_INPUT_COLUMNS = ["server_id", "ds", "metric", "value", "is_imputed", "is_anomaly"]


def _replace_models(lake: Lake, fitted: list[Any], run_id: str) -> dict[str, str]:
    """Pickle the fitted models under ``models/<run_id>/`` and drop earlier runs' artefacts and folders.

    Returns:
        Lake-relative path -> sha256, for the run manifest (the loader verifies it before unpickling).
    """
    from capacity_forecaster.forecast.artifacts import save_models

    records = save_models(fitted, lake.write_bytes, prefix=f"{MODELS_DIR}/{run_id}")
    keep = {r.path for r in records}
    for rel in lake.list_files(MODELS_DIR):
        if rel not in keep:
            lake.fs.delete_file(lake.path(rel))
    lake.prune_empty_dirs(MODELS_DIR)  # earlier runs' models/<run_id>/ folders
    return {r.path: r.sha256 for r in records}


def forecast_stage(lake: Lake, settings: Settings, progress: Progress | None = None) -> StageRun:
    """Forecast every series of ``metrics`` with backtests, per-series selection and calibrated intervals.

    Args:
        lake: the lake (reads ``metrics``; writes ``forecasts``, ``backtests``, ``backtest_forecasts``,
            ``forecast_failures``, ``forecast_triage`` and ``models/``).
        settings: the configuration (``forecast`` section).
        progress: called with (units done, units total) as work finishes.

    Returns:
        The stage run; ``counts`` holds the engine's summary (models chosen, errors, coverage, seconds).
    """
    from capacity_forecaster.forecast.stage import run_forecast

    cfg = settings.forecast
    with stage_run(lake, "forecast", settings) as run:
        start = time.perf_counter()
        info = lake.table_info("metrics")
        wanted = [c for c in METRIC_INPUT_COLUMNS if info is None or c in info.schema.names]
        metrics = lake.read_table("metrics", columns=wanted)
        result = run_forecast(metrics, cfg, progress=progress)
        run.wrote(lake.write_table("forecasts", result.forecasts))
        run.wrote(lake.write_table("backtests", result.backtests))
        run.wrote(lake.write_table("backtest_forecasts", result.backtest_forecasts))
        run.wrote(lake.write_table("forecast_failures", result.failures))
        run.wrote(lake.write_table("forecast_triage", result.triage))
        run.artifacts = _replace_models(lake, result.fitted, run.run_id)
        run.rows_in, run.rows_out = len(metrics), len(result.forecasts)
        run.counts = dict(result.summary)
        log.info("forecast: %d series, %d forecast rows, %d failures, %d model artefacts, %.1f s",
                 result.triage.shape[0], len(result.forecasts), len(result.failures), len(run.artifacts),
                 time.perf_counter() - start)
    return run
