"""Run manifests are written for succeeded and failed stage runs."""

from __future__ import annotations

import pytest

from capacity_forecaster import __version__
from capacity_forecaster.config import Settings
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import list_runs, stage_run


def test_manifest_records_counts_and_config_hash(lake: Lake) -> None:
    settings = Settings()
    with stage_run(lake, "etl", settings) as run:
        run.rows_in, run.rows_out, run.rows_quarantined = 10, 8, 2
    (manifest,) = list_runs(lake, "etl")
    assert manifest["status"] == "succeeded"
    assert (manifest["rows_in"], manifest["rows_out"], manifest["rows_quarantined"]) == (10, 8, 2)
    assert manifest["config_hash"] == settings.digest()
    assert manifest["package_version"] == __version__
    assert manifest["finished"] >= manifest["started"]


def test_failed_run_is_recorded(lake: Lake) -> None:
    with pytest.raises(ValueError), stage_run(lake, "forecast", Settings()):
        raise ValueError("boom")
    (manifest,) = list_runs(lake, "forecast")
    assert manifest["status"] == "failed"
    assert "boom" in manifest["error"]
