"""Run manifests: one JSON object per stage run in ``_runs/``; a completed run also writes its stage record."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from capacity_forecaster import __version__
from capacity_forecaster.config import Settings
from capacity_forecaster.errors import StorageError
from capacity_forecaster.storage.consistency import RUNS_DIR, list_runs, write_record
from capacity_forecaster.storage.lake import Lake, TableInfo
from capacity_forecaster.storage.lease import Lease, sweep

log = logging.getLogger(__name__)


@dataclass
class StageRun:
    """What one stage run did; filled in by the stage, written when the stage ends.

    Attributes:
        stage: stage name (generate, ingest, etl, ...).
        run_id: unique id of this run.
        rows_in: rows the stage read.
        rows_out: rows the stage wrote to its main output table.
        rows_quarantined: input rows rejected with a reason (``rows_in`` counts the same rows).
        quarantine_records: records written to the quarantine (ingest writes one per rejected
            (row, metric), so a wide row with four bad metrics gives four); None where the stage
            keeps no such count.
        counts: any further counts worth keeping (rows imputed, series, failures).
        tables: table name -> version and rows, for every table the stage wrote.
        artifacts: lake-relative path -> sha256 of files such as fitted models.
        inputs: upstream stage -> run_id of the run that wrote the tables this run read (its
            lineage: a risk run names the forecast run, a report the risk and forecast runs);
            None where no manifest names the table's current version.
    """

    stage: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    rows_in: int = 0
    rows_out: int = 0
    rows_quarantined: int = 0
    quarantine_records: int | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, str | None] = field(default_factory=dict)

    def wrote(self, info: TableInfo) -> None:
        """Record a table written by this run."""
        self.tables[info.name] = {"version": info.version, "rows": info.rows, "files": len(info.files)}


@contextmanager
def stage_run(lake: Lake, stage: str, settings: Settings) -> Iterator[StageRun]:
    """Time a stage, write its manifest to ``_runs/`` when it ends (also when it fails), and its stage record.

    While the stage runs, it keeps a lease (``storage.lease``: other writers do not build on its
    commits as on a crashed run's), its table commits carry its run id (``Lake.run``), it reads its own new
    versions, and it reads every other table at the version its first read of it saw (``Lake.pin_reads``:
    a stage reading an input chunk by chunk never mixes two runs of it). When it succeeds, the stage
    record (``storage.consistency``) makes every table it wrote visible to other readers at once, then
    table versions older than ``lake.retention_hours`` and files no commit names are vacuumed.

    Yields:
        The StageRun to fill in.
    """
    run = StageRun(stage=stage)
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    status, error = "succeeded", None
    outer, lake.run = lake.run, (run.run_id, stage)
    outer_pins = lake.pin_reads()
    lease = Lease(lake, run.run_id, stage)
    try:
        lease.start()
        yield run
    except BaseException as err:
        status, error = "failed", f"{type(err).__name__}: {err}"
        raise
    finally:
        lake.run = outer
        lake.pin_reads(outer_pins)
        finished = dt.datetime.now(dt.UTC)
        manifest = {
            "run_id": run.run_id,
            "stage": stage,
            "status": status,
            "error": error,
            "started": started.isoformat(),
            "finished": finished.isoformat(),
            "seconds": round(time.perf_counter() - clock, 3),
            "rows_in": run.rows_in,
            "rows_out": run.rows_out,
            "rows_quarantined": run.rows_quarantined,
            "quarantine_records": run.quarantine_records,
            "counts": run.counts,
            "tables": run.tables,
            "artifacts": run.artifacts,
            "inputs": run.inputs,
            "config_hash": settings.digest(),
            "package_version": __version__,
            "lake": lake.uri,
        }
        name = f"{RUNS_DIR}/{started.strftime('%Y%m%dT%H%M%S%f')}-{stage}-{run.run_id}.json"
        try:
            lake.write_json(name, manifest)
            log.debug("wrote run manifest %s", name)
            if status == "succeeded":
                _complete(lake, run, settings)
        finally:
            lease.stop()


def _complete(lake: Lake, run: StageRun, settings: Settings) -> None:
    """Write the stage record of a run that succeeded, then vacuum the tables it wrote and sweep killed runs' leases."""
    versions = {name: int(t["version"]) for name, t in run.tables.items() if str(t.get("version", "")).isdigit()}
    write_record(lake, run.stage, run.run_id, versions)
    for name in versions:
        try:
            # Earlier forecasts stay for forecast-vs-actual tracking (report.accuracy_runs), whatever their age.
            keep = settings.report.accuracy_runs + 1 if name == "forecasts" else 0
            removed = lake.vacuum(name, settings.lake.retention_hours, keep_latest=keep)
        except StorageError as err:  # the run's data is committed; old files only take space
            log.warning("could not vacuum table %s: %s", name, err)
            continue
        if removed:
            log.debug("vacuumed %d old or uncommitted file(s) of %s", len(removed), name)
    try:
        sweep(lake)
    except StorageError as err:  # leftovers only take space
        log.debug("could not delete expired leases: %s", err)


def producing_run(runs: list[dict[str, Any]], table: str, version: str | None) -> dict[str, Any] | None:
    """The manifest of the succeeded run that wrote ``version`` of ``table`` (None when none names it).

    Args:
        runs: run manifests (``list_runs``), oldest first.
        table: table name (``forecasts``, ``server_risk``, ...).
        version: the version that wrote the table's rows (``Lake.table_info(table).written_version``: a
            vacuum's later commits are not a run's write).
    """
    if version is None:
        return None
    for payload in reversed(runs):
        written = (payload.get("tables") or {}).get(table) or {}
        if payload.get("status", "succeeded") == "succeeded" and str(written.get("version")) == version:
            return payload
    return None


def stale_input(lake: Lake, table: str, upstream: str, key: str) -> tuple[str, str] | None:
    """``(run that wrote upstream now, run the maker of table read)`` when ``table`` was made from an older
    ``upstream`` table (its producing run's ``inputs[key]`` names another run); None when current or unknown.

    ``capfc forecast`` after an ingest without ``capfc etl`` forecast from the day before the newest raw day,
    silently (helper-55); the stages say so with this. A run that remade ``upstream`` from the same inputs with
    the same configuration and package version as the one read made the same rows (stages are deterministic):
    ``capfc etl`` run twice is no news to ``capfc risk`` (helper-57). Runs that record no inputs (an ingest
    reads files) are never taken as the same.
    """
    runs = list_runs(lake)
    info, source = lake.table_info(table), lake.table_info(upstream)
    if info is None or source is None:
        return None
    made = producing_run(runs, table, info.written_version)
    read = ((made or {}).get("inputs") or {}).get(key)
    now = producing_run(runs, upstream, source.written_version)
    return behind(runs, now, read)


def behind(runs: list[dict[str, Any]], now: dict[str, Any] | None, read: Any) -> tuple[str, str] | None:
    """``(now's run_id, read)`` when a table was made from run ``read`` of its upstream and ``now`` (the run that
    wrote the upstream since) made other rows; None when they are one run, made the same rows (same stage, inputs,
    configuration and package version: stages are deterministic), or either is unknown."""
    if read is None or now is None or str(now["run_id"]) == str(read):
        return None
    before = next((run for run in runs if str(run.get("run_id")) == str(read)), None)
    same = ("stage", "inputs", "config_hash", "package_version")
    if before is not None and now.get("inputs") and all(before.get(k) == now.get(k) for k in same):
        return None
    return str(now["run_id"]), str(read)


def table_run_id(lake: Lake, table: str, runs: list[dict[str, Any]] | None = None) -> str | None:
    """The run_id of the run that wrote the current version of ``table`` (None: absent or unnamed)."""
    info = lake.table_info(table)
    if info is None:
        return None
    run = producing_run(list_runs(lake) if runs is None else runs, table, info.written_version)
    return None if run is None else str(run["run_id"])
