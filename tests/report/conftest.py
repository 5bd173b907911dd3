"""Fixtures of the report tests: hand-built lakes (see report_lake.py) and reports rendered from them once."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_lake import build_lake, build_whatif_lake

from capacity_forecaster.config import Settings
from capacity_forecaster.report.stage import ReportResult, run_report
from capacity_forecaster.storage import Lake


@pytest.fixture(scope="session")
def report_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """The full fixture lake (read-only for tests: they write reports to their own lakes or folders)."""
    return build_lake(tmp_path_factory.mktemp("report") / "lake")


@pytest.fixture(scope="session")
def etl_only_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    """A lake after ETL only: no forecasts, backtests, risk, clusters or recommendations."""
    return build_lake(tmp_path_factory.mktemp("report-etl") / "lake", stages=("etl",))


@pytest.fixture()
def settings() -> Settings:
    """Default settings."""
    return Settings()


def _report(root: Path, stages: tuple[str, ...]) -> tuple[Lake, ReportResult]:
    lake = build_lake(root, stages=stages)
    return lake, run_report(lake, Settings())


@pytest.fixture(scope="session")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, ReportResult]:
    """Every format rendered once from its own full fixture lake (tests only read the files)."""
    return _report(tmp_path_factory.mktemp("full-report") / "lake", ("etl", "forecast", "risk"))


@pytest.fixture(scope="session")
def etl_only_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, ReportResult]:
    """Every format rendered from a lake that has no forecasts, backtests or risk tables."""
    return _report(tmp_path_factory.mktemp("etl-report") / "lake", ("etl",))


@pytest.fixture(scope="session")
def whatif_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, ReportResult]:
    """Every format rendered from a lake whose risk tables the real risk stage wrote with a 20 % growth what-if."""
    lake = build_whatif_lake(tmp_path_factory.mktemp("whatif-report") / "lake")
    return lake, run_report(lake, Settings())


@pytest.fixture(scope="session")
def unpriced_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, ReportResult]:
    """Every format from a lake whose inventory has no monthly costs (the Bitbrains example), with a what-if run
    through the real risk stage."""
    lake = build_whatif_lake(tmp_path_factory.mktemp("unpriced-report") / "lake", priced=False)
    return lake, run_report(lake, Settings())


@pytest.fixture(scope="session")
def breaching_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, ReportResult]:
    """Every format from a lake where the real risk stage found srv-0003 cpu already breaching (its forecast
    crosses only late in the horizon), with a what-if."""
    lake = build_whatif_lake(tmp_path_factory.mktemp("breaching-report") / "lake", breaching=True)
    return lake, run_report(lake, Settings())
