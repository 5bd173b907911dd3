"""``run``: every stage in order on one lake, plus the end-of-run summary of what was written where."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from capacity_forecaster.config import Settings
from capacity_forecaster.errors import InputError
from capacity_forecaster.forecast.stage import resolve_models
from capacity_forecaster.schema import TABLES
from capacity_forecaster.stages.etl import etl_stage
from capacity_forecaster.stages.forecast import Progress, forecast_stage
from capacity_forecaster.stages.raw import generate_stage, ingest_stage
from capacity_forecaster.stages.report import report_stage
from capacity_forecaster.stages.risk import risk_stage
from capacity_forecaster.storage.consistency import incomplete
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun

log = logging.getLogger(__name__)

__all__ = ["etl_stage", "forecast_stage", "generate_stage", "ingest_stage", "open_lake", "report_stage", "risk_stage",
           "run",
           "summarize"]


@dataclass(frozen=True)
class TableSummary:
    """One line of the end-of-run summary: a table and where it lives.

    Attributes:
        name: table (SQL view) name.
        location: URI of the table folder.
        rows: current row count.
        written_at: when the current version was written.
    """

    name: str
    location: str
    rows: int
    written_at: str


def open_lake(settings: Settings, *, for_writing: bool = True, existing: bool = False) -> Lake:
    """Open the lake named by ``settings.lake``; ``existing``: its local folder must exist (stages that only read
    an earlier stage's tables: a mistyped ``--lake`` is not created)."""
    return Lake.open(settings.lake.uri, settings.lake, for_writing=for_writing, existing=existing)


def summarize(lake: Lake) -> list[TableSummary]:
    """The tables present in the lake with their row counts, in pipeline order."""
    out = []
    for name, spec in TABLES.items():
        info = lake.table_info(name)
        if info is not None:
            out.append(TableSummary(name, lake.display(spec.path), info.rows, info.written_at))
    return out


def run(settings: Settings, progress: Progress | None = None, sources: list[str] | None = None,
        mapping_file: str | None = None) -> list[StageRun]:
    """Run every stage in order; with ``sources``, ingest them first (as ``capfc ingest``, merged into raw/);
    else, on an empty lake, first generate the default synthetic fleet.

    A generate run that did not complete (killed after some of its tables were committed) is run
    again, so the raw and truth tables come from one complete run; raw data from an ingest is
    never replaced.

    Returns:
        The stage runs, in order.
    """
    # A bad forecast.models stops before any stage writes (helper-51: ingest and ETL ran, then the forecast refused).
    resolve_models(settings.forecast.models, settings.forecast.freq)
    lake = open_lake(settings)
    runs: list[StageRun] = []
    crashed = incomplete(lake, "raw_metrics")
    if sources:
        runs.append(ingest_stage(lake, settings, sources, mapping_file))
        raw = lake.table_info("raw_metrics")
        if runs[-1].rows_in == 0 and (raw is None or raw.rows == 0):
            # helper-51: an empty export folder went on to "metrics: no rows to forecast; run 'capfc etl' first".
            raise InputError(f"capfc run: {', '.join(sources)}: no data rows to ingest (no files, or empty or "
                             "header-only ones), and the lake holds none from earlier runs; nothing to assess")
    elif crashed is not None and crashed[0] == "ingest" and not lake.has_table("raw_metrics"):
        # helper-57: a first ingest that died reads as no raw data; generating would put the synthetic fleet
        # where the user's exports go.
        raise InputError(f"capfc run: the first ingest into {lake.uri} (run {crashed[1]}) did not complete, so the "
                         "lake holds no raw data yet: run capfc ingest again (or capfc run EXPORT... --mapping FILE)")
    elif not lake.has_table("raw_metrics"):
        log.info("lake %s has no raw metrics: generating the synthetic fleet first", lake.uri)
        runs.append(generate_stage(lake, settings))
    elif crashed is not None and crashed[0] == "generate":
        log.info("lake %s: generate run %s did not complete: generating the synthetic fleet again",
                 lake.uri, crashed[1])
        runs.append(generate_stage(lake, settings))
    runs.append(etl_stage(lake, settings))
    runs.append(forecast_stage(lake, settings, progress))
    runs.append(risk_stage(lake, settings)[0])
    runs.append(report_stage(lake, settings)[0])
    return runs
