"""The forecast stage: processed/metrics -> forecasts/, backtests/, backtest_forecasts/, forecast_failures/, models/.

The stage logs one INFO summary line (``summary_line``); the record carries ``stage_summary=True``
so that a command printing the same line on stdout can keep it out of its stderr log.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from capacity_forecaster.config import Settings
from capacity_forecaster.errors import ForecastError, StorageError
from capacity_forecaster.stages.chunks import server_filter, text_ids
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun, stage_run, stale_input, table_run_id

log = logging.getLogger(__name__)

# Called with (phase, done, total) as forecast work finishes (``forecast.stage.PHASES``).
Progress = Callable[[str, int, int], None]

MODELS_DIR = "models"
METRIC_INPUT_COLUMNS = ["server_id", "ds", "metric", "value", "is_imputed", "is_anomaly"]


class _LakeSink:
    """Each output table is one lake writer, fed chunk by chunk and committed at the end; models as data."""

    def __init__(self, lake: Lake, run_id: str) -> None:
        self.lake, self.run_id = lake, run_id
        self.writers: dict[str, Any] = {}
        self.artifacts: dict[str, str] = {}
        self.keep: set[str] = set()
        self.rows = 0
        self._counters: dict[tuple[str, str], int] = {}

    def write(self, table: str, frame: Any) -> None:
        if table not in self.writers:
            self.writers[table] = self.lake.writer(table)
        self.writers[table].write(frame)
        if table == "forecasts":
            self.rows += len(frame)

    def models(self, fitted: list[Any]) -> None:
        from capacity_forecaster.forecast.artifacts import save_models

        records = save_models(fitted, self.lake.write_bytes, prefix=f"{MODELS_DIR}/{self.run_id}",
                              counters=self._counters)
        self._keep(records)

    def model_files(self, records: list[Any], read: Callable[[str], bytes]) -> None:
        """Copy models saved as data elsewhere (a checkpoint) to ``models/<run_id>/``."""
        prefix = f"{MODELS_DIR}/{self.run_id}"
        moved = []
        for record in records:
            path, data_path = f"{prefix}/{_below(record.path)}", f"{prefix}/{_below(record.data_path)}"
            self.lake.write_bytes(data_path, read(record.data_path))
            self.lake.write_bytes(path, read(record.path))
            moved.append(dataclasses.replace(record, path=path, data_path=data_path))
        self._keep(moved)

    def _keep(self, records: list[Any]) -> None:
        self.keep |= {r.path for r in records} | {r.data_path for r in records}
        self.artifacts.update({r.path: r.sha256 for r in records})

    def drop_old_models(self) -> None:
        """Remove earlier runs' model files (this run's are all written)."""
        for rel in self.lake.list_files(MODELS_DIR):
            if rel not in self.keep:
                self.lake.fs.delete_file(self.lake.path(rel))
        self.lake.prune_empty_dirs(MODELS_DIR)  # earlier runs' models/<run_id>/ folders


def _below(relpath: str) -> str:
    """A checkpointed model file's path below its ``chunked.MODEL_FILES`` prefix."""
    return relpath.split("/", 1)[1]


def _replace_models(lake: Lake, fitted: list[Any], run_id: str) -> dict[str, str]:
    """Store the fitted models as data (JSON + Parquet) under ``models/<run_id>/``; drop earlier runs' files.

    Returns:
        Lake-relative path -> sha256 of each JSON model manifest, for the run manifest (each manifest
        holds its data file's sha256; the loader checks both, ``forecast.artifacts``).
    """
    sink = _LakeSink(lake, run_id)
    sink.models(fitted)
    sink.drop_old_models()
    return sink.artifacts


class _FolderSpill:
    """Backtest points between the chunked passes: one Parquet file per chunk in a scratch folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def put(self, key: int, frame: pd.DataFrame) -> None:
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), self.folder / f"chunk-{key}.parquet",
                       compression="lz4")

    def get(self, key: int, columns: list[str] | None = None) -> pd.DataFrame:
        return pq.read_table(self.folder / f"chunk-{key}.parquet", columns=columns).to_pandas()


def _series(lake: Lake) -> pd.DataFrame:
    """The ``server_id, metric`` pairs of ``metrics``, scanned batch by batch (two columns, deduplicated)."""
    dataset = lake.dataset("metrics")
    if dataset is None:
        raise StorageError(f"table 'metrics' not found in lake {lake.uri}; run 'capfc etl' first")
    parts = [batch.to_pandas().drop_duplicates() for batch in dataset.to_batches(columns=["server_id", "metric"])]
    if not parts:
        return pd.DataFrame(columns=["server_id", "metric"])
    return pd.concat(parts, ignore_index=True).drop_duplicates()


def _inputs(lake: Lake, names: list[str]) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """External model inputs the model set needs (the imported Amazon Forecast rows), and their digests."""
    from capacity_forecaster.forecast.models.amazon_forecast import IMPORTED, NAME
    from capacity_forecaster.forecast.units import external_input

    if not any(external_input(n) == NAME for n in names if n != "ensemble"):
        return {}, {}
    data = lake.read_bytes(IMPORTED)
    if data is None:
        raise ForecastError(f"forecast.models names {NAME} but {lake.display(IMPORTED)} does not exist; run "
                            "'capfc aws forecast-import' first, or leave the model out")
    return {NAME: pd.read_parquet(io.BytesIO(data))}, {NAME: hashlib.sha256(data).hexdigest()}


def forecast_stage(lake: Lake, settings: Settings, progress: Progress | None = None) -> StageRun:
    """Forecast every series of ``metrics`` with backtests, per-series selection and calibrated intervals.

    The fleet is streamed in chunks of ``forecast.chunk_series`` series (``forecast.chunked``): one
    chunk's metrics are read at a time (a filter on ``server_id``), backtest points wait in a
    scratch folder between passes, and each output table is written chunk by chunk through one
    writer, committed when every chunk is done (readers see the tables change at once).

    With ``forecast.checkpoint_dir`` finished chunks are kept in that local folder
    (``forecast.checkpoint``): a killed run restarted with the same inputs skips them, and the
    tables are written from the folder after the last chunk. Named in ``forecast.models``,
    ``amazon_forecast`` reads ``_amazon_forecast/imported/forecasts.parquet``.

    Args:
        lake: the lake (reads ``metrics``; writes ``forecasts``, ``backtests``, ``backtest_forecasts``,
            ``forecast_failures``, ``forecast_triage`` and ``models/``).
        settings: the configuration (``forecast`` section).
        progress: called with (phase, done, total) as work finishes; ``done = 0`` starts a phase.

    Returns:
        The stage run; ``counts`` holds the engine's summary (models chosen, errors, coverage, seconds).
    """

    from capacity_forecaster.forecast.checkpoint import Checkpoint, fingerprint
    from capacity_forecaster.forecast.chunked import (
        OUTPUTS,
        default_chunk_series,
        plan_chunks,
        run_chunks,
    )
    from capacity_forecaster.forecast.stage import NO_ROWS, resolve_models

    cfg = settings.forecast
    # A model name that does not exist is a usage error, not a run: no manifest says "forecast failed".
    models = resolve_models(cfg.models, cfg.freq)
    with stage_run(lake, "forecast", settings) as run:
        run.inputs = {"etl": table_run_id(lake, "metrics")}
        stale = stale_input(lake, "metrics", "raw_metrics", "raw")
        if stale is not None:
            log.warning("forecast: raw_metrics changed after the processed metrics were made (now run %s; the ETL "
                        "read run %s): these forecasts miss the newest raw days; run capfc etl first", *stale)
        start = time.perf_counter()
        info = lake.table_info("metrics")
        wanted = [c for c in METRIC_INPUT_COLUMNS if info is None or c in info.schema.names]
        inputs, input_digests = _inputs(lake, models)
        series = _series(lake)
        if series.empty:
            raise ForecastError(NO_ROWS)
        chunks = plan_chunks(series, cfg.chunk_series or default_chunk_series())
        rows_in: dict[tuple[str, ...], int] = {}  # per chunk (read twice, or once when resumed)

        text = text_ids(lake, "metrics")

        def load(servers: list[str]) -> pd.DataFrame:
            # The id range lets the scan skip the files and row groups of other chunks (isin alone does not).
            frame = lake.read_table("metrics", columns=wanted, filter=server_filter(servers, False, text))
            rows_in[tuple(servers)] = len(frame)
            return frame

        sink = _LakeSink(lake, run.run_id)
        checkpoint = None
        if cfg.checkpoint_dir:
            checkpoint = Checkpoint(cfg.checkpoint_dir, fingerprint(
                None if info is None else info.version, cfg, [c.servers for c in chunks], input_digests))
        with tempfile.TemporaryDirectory(prefix="capfc-forecast-") as scratch:
            summary = run_chunks(chunks, load, cfg, sink, spill=_FolderSpill(Path(scratch)), progress=progress,
                                 inputs=inputs, checkpoint=checkpoint)
        tick = progress or (lambda phase, done, total: None)
        tick("writing", 0, len(OUTPUTS) + 1)
        for written, name in enumerate(OUTPUTS, start=1):
            run.wrote(sink.writers[name].commit())
            tick("writing", written, len(OUTPUTS) + 1)
        sink.drop_old_models()
        if checkpoint is not None:
            checkpoint.finish()
        run.artifacts = sink.artifacts
        tick("writing", len(OUTPUTS) + 1, len(OUTPUTS) + 1)
        run.rows_in, run.rows_out = sum(rows_in.values()), sink.rows
        run.counts = {**summary, "forecast_rows": sink.rows, "chunks": len(chunks), "artifacts": len(run.artifacts),
                      "seconds": round(time.perf_counter() - start, 3)}
        log.info("%s", summary_line(run.counts), extra={"stage_summary": True})
        # Most of the fleet past what its backtests checked: say so where warnings are read (helper-46: capfc run's
        # default 180 days on 91 days of history doubled the servers at risk without a warning).
        extrapolated, total = int(run.counts.get("extrapolated_series") or 0), int(run.counts.get("series") or 0)
        if total and extrapolated * 2 >= total:
            log.warning("forecast: %d of %d series reach beyond the lead their history let the backtests check "
                        "(horizon %d days): the later days are extrapolation with widened intervals, and breach "
                        "dates there are less certain; a shorter --horizon keeps the forecasts to what was checked",
                        extrapolated, total, cfg.horizon)
    return run


def _counted(mapping: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in mapping.items()) or "none"


# Triage statuses (``forecast_triage.status``) as the summary line says them.
_TRIAGED = {"model": "{n:,} for model selection", "baseline": "{n:,} on the baseline only (short or constant)",
            "skip": "{n:,} skipped (no observed value)"}


def _triaged(triage: dict[str, int]) -> str:
    return ", ".join(_TRIAGED.get(status, "{n:,} " + status).format(n=n) for status, n in triage.items()) or "none"


def summary_line(counts: dict[str, Any]) -> str:
    """The stage's one-line, human-readable summary, from the stage run's ``counts``.

    Example: ``forecast: 28 series (26 for model selection, 2 on the baseline only (short or constant));
    chosen robust_combo 24, seasonal_naive 4; 0 failed series; 28 extrapolated beyond the lead their
    backtests validated (is_extrapolation, wider intervals); 840 forecast rows; 194 model fits
    (backtests and final) on 2 local workers; 2.2 s``.
    """
    failed = counts.get("failed_series", 0)
    failures = f"{failed:,} failed series ({counts.get('failures', 0):,} failure rows)" if failed else "0 failed series"
    extrapolated = int(counts.get("extrapolated_series") or 0)
    if extrapolated:
        failures += (f"; {extrapolated:,} extrapolated beyond the lead their backtests validated (is_extrapolation, "
                     "wider intervals)")
    # A fit (a work unit) is one model on one batch of series at one backtest cutoff or the final fit.
    workers = int(counts.get("workers") or 0)
    return (f"forecast: {counts.get('series', 0):,} series ({_triaged(counts.get('triage', {}))}); "
            f"chosen {_counted(counts.get('chosen', {}))}; {failures}; "
            f"{counts.get('forecast_rows', 0):,} forecast rows; {counts.get('units', 0):,} model fits (backtests "
            f"and final) on {workers:,} {counts.get('engine')} {'worker' if workers == 1 else 'workers'}; "
            f"{counts.get('seconds', 0.0):.1f} s")
