"""The forecast stage: processed/metrics -> forecasts/, backtests/, backtest_forecasts/, forecast_failures/, models/.

The stage logs one INFO summary line (``summary_line``); the record carries ``stage_summary=True``
so that a command printing the same line on stdout can keep it out of its stderr log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from capacity_forecaster.config import Settings
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, stage_run

log = logging.getLogger(__name__)

# Called with (phase, done, total) as forecast work finishes (``forecast.stage.PHASES``).
Progress = Callable[[str, int, int], None]

MODELS_DIR = "models"
METRIC_INPUT_COLUMNS = ["server_id", "ds", "metric", "value", "is_imputed", "is_anomaly"]


def _replace_models(lake: Lake, fitted: list[Any], run_id: str) -> dict[str, str]:
    """Store the fitted models as data (JSON + Parquet) under ``models/<run_id>/``; drop earlier runs' files.

    Returns:
        Lake-relative path -> sha256 of each JSON model manifest, for the run manifest (each manifest
        holds its data file's sha256; the loader checks both, ``forecast.artifacts``).
    """
    from capacity_forecaster.forecast.artifacts import save_models

    records = save_models(fitted, lake.write_bytes, prefix=f"{MODELS_DIR}/{run_id}")
    keep = {r.path for r in records} | {r.data_path for r in records}
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
        progress: called with (phase, done, total) as work finishes; ``done = 0`` starts a phase.

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
        outputs = {"forecasts": result.forecasts, "backtests": result.backtests,
                   "backtest_forecasts": result.backtest_forecasts, "forecast_failures": result.failures,
                   "forecast_triage": result.triage}
        written = 0
        tick = progress or (lambda phase, done, total: None)
        tick("writing", written, len(outputs) + 1)
        for name, frame in outputs.items():
            run.wrote(lake.write_table(name, frame))
            written += 1
            tick("writing", written, len(outputs) + 1)
        run.artifacts = _replace_models(lake, result.fitted, run.run_id)
        tick("writing", len(outputs) + 1, len(outputs) + 1)
        run.rows_in, run.rows_out = len(metrics), len(result.forecasts)
        run.counts = {**result.summary, "forecast_rows": len(result.forecasts), "artifacts": len(run.artifacts),
                      "seconds": round(time.perf_counter() - start, 3)}
        log.info("%s", summary_line(run.counts), extra={"stage_summary": True})
    return run


def _counted(mapping: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in mapping.items()) or "none"


def summary_line(counts: dict[str, Any]) -> str:
    """The stage's one-line, human-readable summary, from the stage run's ``counts``.

    Example: ``forecast: 400 series (model 400); chosen robust_combo 250, harmonic 150; 0 failed
    series; 72,000 forecast rows, 412 units on local x2; 58.2 s``.
    """
    failed = counts.get("failed_series", 0)
    failures = f"{failed:,} failed series ({counts.get('failures', 0):,} failure rows)" if failed else "0 failed series"
    return (f"forecast: {counts.get('series', 0):,} series ({_counted(counts.get('triage', {}))}); "
            f"chosen {_counted(counts.get('chosen', {}))}; {failures}; "
            f"{counts.get('forecast_rows', 0):,} forecast rows, {counts.get('units', 0):,} units on "
            f"{counts.get('engine')} x{counts.get('workers')}; {counts.get('seconds', 0.0):.1f} s")
