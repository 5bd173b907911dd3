"""The report stage: read the lake (the fleet's forecast rows a chunk of servers at a time), render the requested
formats, write them to ``reports/``."""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import time
from dataclasses import dataclass, field

import pandas as pd

from capacity_forecaster.config import Settings
from capacity_forecaster.errors import ConfigError, StorageError
from capacity_forecaster.report.data import (
    ReportData,
    load_backtest_forecasts,
    load_history,
    load_report_data,
    stored_scenario_names,
)
from capacity_forecaster.report.forecast_chart import top_series
from capacity_forecaster.report.lineage import Lineage, lineage
from capacity_forecaster.report.risks import report_risks
from capacity_forecaster.report.summary import Kpi, kpis
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)

REPORTS_DIR = "reports"
HTML_FILE = "capacity_report.html"
XLSX_FILE = "capacity_report.xlsx"
PDF_FILE = "capacity_report.pdf"


@dataclass(frozen=True)
class ReportFile:
    """One file written by the report stage.

    Attributes:
        name: file name (``capacity_report.pdf``, ``fleet_heatmap.png``, ...).
        path: lake-relative path (``reports/<name>``).
        uri: where a user finds it (folder path or ``s3://`` URI).
        size: bytes written.
    """

    name: str
    path: str
    uri: str
    size: int


@dataclass(frozen=True)
class ReportResult:
    """What ``run_report`` wrote.

    Attributes:
        files: the files, charts first, then HTML, Excel and PDF.
        seconds: wall time of the stage.
        missing: table -> "not available: run ..." for sections rendered without data.
        kpis: the headline numbers shown in every report.
        lineage: the forecast and risk runs the report read (``lineage.Lineage``); None when unknown.
    """

    files: tuple[ReportFile, ...]
    seconds: float
    missing: dict[str, str] = field(default_factory=dict)
    kpis: tuple[Kpi, ...] = ()
    lineage: Lineage | None = None

    @property
    def warnings(self) -> list[str]:
        """Lineage warnings: the tables come from different upstream runs (empty when they agree)."""
        return [] if self.lineage is None else self.lineage.warnings()

    def render(self) -> str:
        """A few lines for the terminal: lineage warnings first, the files with their sizes, missing sections."""
        lines = [f"!! {line}" for line in self.warnings]
        if self.lineage is not None:
            lines.append(f"Runs: {self.lineage.footer()}")
        lines.append(f"Reports ({self.seconds:.1f} s):")
        lines += [f"  {f.uri}  ({_size(f.size)})" for f in self.files]
        lines += [f"  {table}: {message}" for table, message in self.missing.items()]
        return "\n".join(lines)


def _size(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB" if size >= 1_048_576 else f"{size / 1024:.0f} kB"


def _history_since(data: ReportData) -> dt.date | None:
    forecasts = data.forecasts
    days = data.settings.report.history_days
    if forecasts is not None and len(forecasts.series):
        return (pd.Timestamp(forecasts.series["first"].min()) - pd.Timedelta(days=days)).date()
    if data.period is not None:
        return data.period[1] - dt.timedelta(days=days)
    return None


def check_scenario(lake: Lake, settings: Settings) -> None:
    """Refuse a ``report.scenario`` (``capfc report --scenario NAME``) the lake has not stored.

    Runs before the report stage records a run, so a typo leaves no failed report behind.

    Raises:
        ConfigError: the name is not a stored what-if; the message lists the stored names.
    """
    name = settings.report.scenario
    if name is None:
        return
    stored = stored_scenario_names(lake)
    if name in stored:
        return
    known = (f"stored scenarios: {', '.join(stored)}" if stored
             else "the lake has no stored what-if (run capfc risk --growth PCT or --scenario FILE)")
    raise ConfigError(f"unknown what-if scenario '{name}' (report.scenario, capfc report --scenario) in lake "
                      f"{lake.uri}; {known}")


def run_report(lake: Lake, settings: Settings) -> ReportResult:
    """Render the formats in ``settings.report.formats`` from the lake into ``reports/``.

    Missing stage tables do not stop the stage: each affected section says which command to run.
    The run manifest is the caller's (``stages.report.report_stage``).

    Args:
        lake: the lake to read and write.
        settings: effective settings (``report`` section, thresholds and assumptions).

    Returns:
        The ReportResult with every file written and its size.

    Raises:
        StorageError: the lake has neither an inventory nor processed metrics (nothing to report),
            or a table cannot be read, or a file cannot be written.
        ConfigError: ``report.scenario`` names no stored what-if.
    """
    started = time.perf_counter()
    if not lake.has_table("inventory") and not lake.has_table("metrics"):
        raise StorageError(f"lake {lake.uri} has no inventory and no processed metrics; run `capfc run` "
                           f"(or capfc generate / ingest, then capfc etl) before capfc report")
    formats = set(settings.report.formats)
    written: list[ReportFile] = []
    check_scenario(lake, settings)
    data = load_report_data(lake, settings)
    runs = lineage(data)
    for warning in runs.warnings():
        log.warning("report: %s", warning)
    ranked = report_risks(data)
    series = top_series(ranked, max(settings.report.top_risks, settings.report.chart_series))
    since = _history_since(data)
    history = load_history(lake, series, since)
    backtests = load_backtest_forecasts(lake, series, since) if formats & {"png", "pdf", "html"} else None

    def write(name: str, payload: bytes) -> None:
        path = posixpath.join(REPORTS_DIR, name)
        lake.write_bytes(path, payload)
        written.append(ReportFile(name, path, lake.display(path), len(payload)))
        log.debug("wrote %s (%d bytes)", path, len(payload))

    charts: dict[str, bytes] = {}
    if formats & {"png", "pdf"}:
        from capacity_forecaster.report.charts import render_charts

        chart_history = history[history.set_index(["server_id", "metric"]).index.isin(
            series[: settings.report.chart_series])] if len(history) else history
        charts = render_charts(data, chart_history, backtests)
    if "png" in formats:
        for name, payload in charts.items():
            write(name, payload)
    if "html" in formats:
        from capacity_forecaster.report.html import build_html

        write(HTML_FILE, build_html(data, history, series, backtests))
    if "xlsx" in formats:
        from capacity_forecaster.report.excel import build_workbook

        write(XLSX_FILE, build_workbook(data))
    if "pdf" in formats:
        from capacity_forecaster.report.pdf import build_pdf

        write(PDF_FILE, build_pdf(data, charts))
    result = ReportResult(tuple(written), time.perf_counter() - started, data.missing, tuple(kpis(data, ranked)),
                          runs)
    log.info("report: %d files (%s) in %s, %.1f s%s", len(written), ", ".join(sorted(formats)),
             lake.display(REPORTS_DIR), result.seconds,
             f"; without {', '.join(result.missing)}" if result.missing else "")
    return result
