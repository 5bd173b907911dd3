"""A stage run on inputs older than their upstream's newest version says so (helper-55: silent)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from capacity_forecaster.config import EtlConfig, ForecastConfig, GenerateConfig, LakeConfig, Settings
from capacity_forecaster.stages.etl import etl_stage
from capacity_forecaster.stages.forecast import forecast_stage
from capacity_forecaster.stages.raw import generate_stage
from capacity_forecaster.stages.risk import risk_stage
from capacity_forecaster.storage import Lake

# Retention 0: every stage vacuums what it replaced, so a table's newest commits are a vacuum's (helper-57: the
# warnings matched runs by the newest version and never fired after a vacuum).
SETTINGS = Settings(lake=LakeConfig(retention_hours=0),
                    generate=GenerateConfig(servers=3, years=0.3, holdout_days=10, seed=2),
                    etl=EtlConfig(imputation="seasonal"),
                    forecast=ForecastConfig(models="seasonal_naive", horizon=14, n_jobs=1))


def test_forecast_after_an_ingest_without_etl_and_risk_after_etl_without_forecast_warn(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    with caplog.at_level(logging.WARNING):
        for stage in (generate_stage, etl_stage, forecast_stage):
            stage(lake, SETTINGS)
        risk_stage(lake, SETTINGS)
    assert "changed after" not in caplog.text  # in order: nothing to say
    generate_stage(lake, SETTINGS)  # new raw days, no etl
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        forecast_stage(lake, SETTINGS)
    assert "forecast: raw_metrics changed after the processed metrics were made" in caplog.text
    assert "run capfc etl first" in caplog.text
    etl_stage(lake, SETTINGS)  # new processed metrics, no forecast
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        risk_stage(lake, SETTINGS)
    assert "risk: the processed metrics changed after the forecasts were made" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        forecast_stage(lake, SETTINGS)
        risk_stage(lake, SETTINGS)
    assert "changed after" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        etl_stage(lake, SETTINGS)  # the same raw rows and configuration again: the same processed metrics
        risk_stage(lake, SETTINGS)
    assert "changed after" not in caplog.text  # helper-57: it said they had changed
    with caplog.at_level(logging.WARNING):
        etl_stage(lake, SETTINGS.model_copy(update={"etl": EtlConfig(imputation="knn")}))
        risk_stage(lake, SETTINGS)
    assert "risk: the processed metrics changed after the forecasts were made" in caplog.text
