"""The report stage at its edges: an empty lake, a subset of formats, a lake on S3."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from openpyxl import load_workbook
from report_lake import build_lake

from capacity_forecaster.config import LakeConfig, Settings
from capacity_forecaster.errors import StorageError
from capacity_forecaster.report.excel import SHEETS
from capacity_forecaster.report.stage import XLSX_FILE, run_report
from capacity_forecaster.storage import Lake


def _only(formats: tuple[str, ...]) -> Settings:
    return Settings.model_validate({"report": {"formats": list(formats)}})


def test_a_lake_without_inventory_or_metrics_is_an_error(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "empty"), LakeConfig(), for_writing=True)
    with pytest.raises(StorageError, match="run `capfc run`"):
        run_report(lake, Settings())


def test_inventory_only_lake_still_reports(tmp_path: Path) -> None:
    result = run_report(build_lake(tmp_path / "lake", stages=()), _only(("xlsx",)))
    assert [f.name for f in result.files] == [XLSX_FILE]
    assert set(result.missing) >= {"metrics", "forecasts", "server_risk", "recommendations"}
    assert "not available: run capfc etl" in result.render()


def test_report_on_an_s3_lake(s3_bucket: str) -> None:
    lake = build_lake(f"s3://{s3_bucket}/capfc", stages=("etl", "forecast", "risk"))
    result = run_report(lake, _only(("xlsx",)))
    assert [(f.name, f.uri) for f in result.files] == [(XLSX_FILE, f"s3://{s3_bucket}/capfc/reports/{XLSX_FILE}")]
    payload = lake.read_bytes(f"reports/{XLSX_FILE}")
    assert payload is not None and len(payload) == result.files[0].size
    book = load_workbook(io.BytesIO(payload), read_only=True)
    assert book.sheetnames == list(SHEETS)
    assert len(list(book["All series"].iter_rows())) == len(lake.read_table("server_risk")) + 1
