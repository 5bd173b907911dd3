"""The forecast stage over a fleet in chunks of series: three passes, one chunk in memory at a time.

A chunk is a run of whole servers (every metric of a server together, servers in sorted order),
``forecast.chunk_series`` series at most (``default_chunk_series`` from the available memory when
unset). Per-series work (history, triage, backtests, final fits, intervals) only ever sees one
chunk; what needs the whole fleet reads small per-series or per-pool summaries:

1. *backtests*: per chunk, backtest every model at every cutoff; the chunk's backtest points go to
   the ``Spill`` (memory, or the stage's scratch folder) and into the pooled-error histogram
   (``pooled.PooledErrors``); its window scores (one row per series, model and window) are kept.
2. *scoring*: the per-series model choice over every window score (``selection``), the exact pooled
   quantiles (a second look at each chunk's points) and the pooled-or-not coverage counts
   (``pooled.PoolingCounts``).
3. *final fits*: per chunk, the honest backtest intervals and scores, the final fits of the chosen
   models, calibrated forecasts; every output table goes to the ``Sink`` chunk by chunk.

With a ``checkpoint.Checkpoint`` every finished chunk of passes 1 and 3 is kept in its folder and
skipped when a killed run is restarted; pass 3's tables and model files then reach the ``Sink`` from
that folder once every chunk is done, so a restart never depends on what the killed run wrote.

Per-series models give the same rows whatever the chunk size (numbers equal up to the ~1e-13
rounding of batched least squares over other batches). A global model (``kind = "global"``,
e.g. ``gbm_global``) is fitted per metric and cutoff on the chunk's series, topped up to
``reserve.MIN_SERIES`` series from a seeded fleet-wide sample loaded before the first chunk
(``reserve``): on fleets up to that many servers it gives the same rows whatever the chunk size.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.forecast import backtest as bt
from capacity_forecaster.forecast import stage as st
from capacity_forecaster.forecast import units
from capacity_forecaster.forecast.artifacts import ArtifactRecord, save_models
from capacity_forecaster.forecast.checkpoint import Checkpoint
from capacity_forecaster.forecast.engine import Executor, FittedModel, Progress, UnitResult
from capacity_forecaster.forecast.intervals import EMPTY_POOL, cross_window_bounds, cross_window_pooling
from capacity_forecaster.forecast.metrics import score
from capacity_forecaster.forecast.pooled import ALL, POOL, PooledErrors, PoolingCounts
from capacity_forecaster.forecast.reserve import Reserve, sample_servers
from capacity_forecaster.forecast.selection import ENSEMBLE
from capacity_forecaster.schema import BACKTEST_COLUMNS, DS, METRIC, SERIES_KEY, SERVER_ID

log = logging.getLogger(__name__)

# Peak memory per series of a chunk (bytes; measured 3.3-3.8 MB with chunks of 1,000 and 250 series),
# the share of the available memory a chunk may take, and the bounds of the derived chunk size.
MEMORY_PER_SERIES = 3_500_000
MEMORY_SHARE = 0.25
MIN_CHUNK, MAX_CHUNK = 250, 1_000
_SERIES = list(SERIES_KEY)
_PRED = ["yhat", "yhat_lower", "yhat_upper"]
# Server ids of a chunk -> its processed metrics (``server_id, ds, metric, value``, ...).
Load = Callable[[list[str]], pd.DataFrame]
OUTPUTS = ("forecasts", "backtests", "backtest_forecasts", "forecast_failures", "forecast_triage")
# Prefix of model files kept in a checkpoint (``Sink.model_files`` puts them under its own folder).
MODEL_FILES = "models"
_KEPT = ("index", "tri", "plan", "planned", "scores")


class Sink(Protocol):
    """Where each chunk's outputs go (``OUTPUTS`` tables and the fitted models)."""

    def write(self, table: str, frame: pd.DataFrame) -> None: ...

    def models(self, fitted: list[FittedModel]) -> None: ...

    def model_files(self, records: list[ArtifactRecord], read: Callable[[str], bytes]) -> None:
        """Models already saved as data (``artifacts.save_models`` with prefix ``MODEL_FILES``):
        their records and ``read(relpath)`` of each file."""
        ...


class Spill(Protocol):
    """Keeps each chunk's backtest points (key: chunk number) and their bounds (key: -1 - chunk) between passes."""

    def put(self, key: int, frame: pd.DataFrame) -> None: ...

    def get(self, key: int, columns: list[str] | None = None) -> pd.DataFrame: ...


@dataclass
class MemorySpill:
    """Backtest points kept in memory (small fleets, tests)."""

    frames: dict[int, pd.DataFrame] = field(default_factory=dict)

    def put(self, key: int, frame: pd.DataFrame) -> None:
        self.frames[key] = frame

    def get(self, key: int, columns: list[str] | None = None) -> pd.DataFrame:
        return self.frames[key] if columns is None else self.frames[key][columns]


def default_chunk_series(available: int | None = None) -> int:
    """Series per chunk: ``MEMORY_SHARE`` of the available memory at ``MEMORY_PER_SERIES`` bytes each,
    within ``[MIN_CHUNK, MAX_CHUNK]``.

    Args:
        available: bytes of memory available (default: ``MemAvailable`` of /proc/meminfo, or the
            free pages where that cannot be read).
    """
    if available is None:
        available = _available_memory()
    return int(min(MAX_CHUNK, max(MIN_CHUNK, available * MEMORY_SHARE // MEMORY_PER_SERIES)))


def _available_memory() -> int:
    from capacity_forecaster.stages.chunks import available_memory  # one reading for every streaming stage

    return available_memory()


@dataclass(frozen=True)
class Chunk:
    """Whole servers forecast together: their ids (as strings) and how many series they hold."""

    servers: list[str]
    n_series: int


def plan_chunks(series: pd.DataFrame, chunk_series: int) -> list[Chunk]:
    """Whole servers, in sorted order, grouped into chunks of at most ``chunk_series`` series.

    Chunks are balanced: as few as ``chunk_series`` allows, of about equal size. A server with more
    series than that is a chunk of its own.

    Args:
        series: ``server_id, metric`` pairs (duplicates ignored).
        chunk_series: most series per chunk.

    Returns:
        The chunks, in server order.
    """
    keys = series[[SERVER_ID, METRIC]].astype(str).drop_duplicates()
    counts = keys.groupby(SERVER_ID, sort=True).size()
    pairs = list(zip(counts.index.tolist(), counts.to_numpy().tolist(), strict=True))
    fewest = _greedy(pairs, chunk_series)
    # The same number of chunks with the series spread evenly, when whole servers allow it.
    even = _greedy(pairs, math.ceil(len(keys) / max(1, len(fewest))))
    return even if len(even) == len(fewest) else fewest


def _greedy(pairs: list[tuple[str, int]], bound: int) -> list[Chunk]:
    """Servers in order into chunks of at most ``bound`` series (a bigger server alone)."""
    chunks: list[Chunk] = []
    servers: list[str] = []
    size = 0
    for server, n in pairs:
        if servers and size + n > bound:
            chunks.append(Chunk(servers, size))
            servers, size = [], 0
        servers.append(str(server))
        size += n
    if servers:
        chunks.append(Chunk(servers, size))
    return chunks


@dataclass
class _Kept:
    """What pass 1 keeps of a chunk: per-series summaries only."""

    chunk: Chunk
    index: pd.DataFrame
    tri: pd.DataFrame
    plan: pd.DataFrame
    planned: pd.DataFrame
    scores: pd.DataFrame
    failed: list[UnitResult]
    units: int = 0


class _SeriesTicker:
    """Progress in series over a phase, advanced by the share of a chunk's units done; logs per chunk."""

    def __init__(self, progress: Progress | None, phase: str, total: int, chunks: int) -> None:
        self.progress, self.phase, self.total, self.chunks = progress, phase, total, chunks
        self.done, self.base, self.finished, self.started = 0, 0, 0, time.perf_counter()
        if progress is not None:
            progress(phase, 0, total)

    def _to(self, value: int) -> None:
        while self.done < min(value, self.total):
            self.done += 1
            if self.progress is not None:
                self.progress(self.phase, self.done, self.total)

    def units(self, n_series: int, n_units: int) -> Callable[[], None]:
        count = [0]

        def tick() -> None:
            count[0] += 1
            self._to(self.base + n_series * count[0] // max(1, n_units))

        return tick

    def chunk_done(self, n_series: int) -> None:
        self.base += n_series
        self.finished += 1
        self._to(self.base)
        seconds = time.perf_counter() - self.started
        rate = self.base / seconds if seconds > 0 else 0.0
        left = (self.total - self.base) / rate if rate > 0 else 0.0
        if self.chunks > 1:
            log.info("forecast %s: chunk %d/%d, %s/%s series, %.1f series/s, ~%.0f s left", self.phase,
                     self.finished, self.chunks, f"{self.base:,}", f"{self.total:,}", rate, left)


def run_chunks(chunks: list[Chunk], load: Load, cfg: ForecastConfig, sink: Sink, *,
               spill: Spill | None = None, progress: Progress | None = None, inputs: units.Inputs | None = None,
               checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """Backtest, select and forecast every series of ``chunks``, writing each chunk's outputs to ``sink``.

    Args:
        chunks: the chunks of servers (``plan_chunks``).
        load: reads the processed metrics of a chunk's servers (called twice per chunk).
        cfg: the forecast configuration.
        sink: receives the ``OUTPUTS`` tables and fitted models of every chunk, in chunk order.
        spill: keeps backtest points between passes (default: in memory; the checkpoint when given).
        progress: ``callback(phase, done, total)`` over ``stage.PHASES`` (bar the last, writing).
        inputs: frames external models read instead of training (``units.Inputs``).
        checkpoint: keeps finished chunks and skips those a killed run finished (the sink then gets
            every chunk's outputs after the last one); it must fingerprint these chunks and ``cfg``.

    Returns:
        The stage summary (see ``stage.ForecastResult.summary``).
    """
    started = time.perf_counter()
    spill = checkpoint if checkpoint is not None else spill if spill is not None else MemorySpill()
    names = st.resolve_models(cfg.models, cfg.freq)
    order = [st.BASELINE, *[n for n in names if n != st.BASELINE and n != ENSEMBLE], ENSEMBLE]
    total = sum(c.n_series for c in chunks)
    kept: list[_Kept] = []
    pooled = PooledErrors(cfg.interval)
    raw = PooledErrors(cfg.interval, raw=True)
    pools = (pooled, raw)
    tally = _Tally(names)
    reserve = _reserve(chunks, load, names, cfg)
    with Executor(cfg) as executor:
        ticker = _SeriesTicker(progress, "backtests", total, len(chunks))
        for i, chunk in enumerate(chunks):
            if checkpoint is not None and checkpoint.backtest_done(i):
                kept.append(_resumed_backtest(i, chunk, checkpoint, pools, ticker, tally))
                continue
            kept.append(_backtest_chunk(i, chunk, load, cfg, names, order, executor, spill, pools, ticker, tally,
                                        inputs, reserve))
            if checkpoint is not None:
                checkpoint.save_backtest(i, {name: getattr(kept[i], name) for name in _KEPT}, kept[i].failed,
                                         kept[i].units)
        scoring = _SeriesTicker(progress, "scoring", 2 * len(chunks), 1)
        index = pd.concat([k.index for k in kept], ignore_index=True)
        chosen, members, unbacktested = st.choose_models(
            pd.concat([k.scores for k in kept], ignore_index=True), pd.concat([k.planned for k in kept]),
            names, order, index, cfg)
        chosen, members = _tag(chosen, index), _tag(members, index)
        baseline_only = _tag(chosen.loc[unbacktested.to_numpy(), _SERIES], index)
        pooled.plan()
        raw.plan()
        for i in range(len(chunks)):
            points = spill.get(i, [*POOL, "window", "abs_error", "scale"])
            pooled.collect(points)
            raw.collect(points)
            scoring.chunk_done(1)
        tables = pooled.tables()
        windows = pooled.windows()
        single = len(windows) <= 1
        counts = PoolingCounts()
        for i in range(len(chunks)):
            rows = spill.get(i, [*_SERIES, *POOL[:1], "bucket", "window", "abs_error", "scale", "y", *_PRED])
            bounds = cross_window_bounds(rows, cfg.interval, pooled=tables, single=single)
            counts.add(rows, bounds)
            # Kept for pass 3 beside the points (key -1 - i), so they are computed once.
            spill.put(-1 - i, pd.DataFrame({f"{name}_{side}": bounds[name][k] for name in ("series", "pooled")
                                            for k, side in enumerate(("lower", "upper"))}))
            scoring.chunk_done(1)
        calibration = _Calibration(tables, {int(w): counts.table(int(w), cfg.interval, single) for w in windows},
                                   counts.table(ALL, cfg.interval, single), single, len(windows),
                                   raw.tables().get(ALL, EMPTY_POOL))
        ticker = _SeriesTicker(progress, "final fits", total, len(chunks))
        for i in range(len(chunks)):
            if checkpoint is not None and checkpoint.final_done(i):
                frames, _, units = checkpoint.load_final(i)
                tally.record(frames, units)
                ticker.chunk_done(kept[i].chunk.n_series)
                continue
            part = [frame[frame["_chunk"] == i].drop(columns="_chunk") for frame in (chosen, members, baseline_only)]
            frames, fitted, units = _final_chunk(i, kept[i], load, cfg, part, calibration, executor, spill, ticker,
                                                 inputs, reserve)
            tally.record(frames, units)
            if checkpoint is None:
                for name in OUTPUTS:
                    sink.write(name, frames[name])
                sink.models(fitted)
            else:
                counters = checkpoint.counters()
                records = save_models(fitted, checkpoint.model_writer(i), prefix=MODEL_FILES, counters=counters)
                checkpoint.save_final(i, frames, [r.to_dict() for r in records], units, counters)
        tally.workers = executor.workers
    if checkpoint is not None:
        _replay(len(chunks), checkpoint, sink)
    return tally.summary(cfg, time.perf_counter() - started)


def _reserve(chunks: list[Chunk], load: Load, names: list[str], cfg: ForecastConfig) -> Reserve | None:
    """The fleet-wide sample that tops up global models' units (None without a global model)."""
    if not any(units.is_global(name) for name in names):
        return None
    order = sample_servers([server for chunk in chunks for server in chunk.servers])
    history = bt.prepare_history(load(sorted(order)), cfg.freq) if order else pd.DataFrame()
    if history.empty:
        return None
    return Reserve.build(history, order, cfg.min_history_days * bt.STEPS_PER_DAY[cfg.freq], cfg.freq)


def _replay(n_chunks: int, checkpoint: Checkpoint, sink: Sink) -> None:
    """Every chunk's pass-3 outputs, from the checkpoint to the sink, in chunk order."""
    for i in range(n_chunks):
        frames, records, _ = checkpoint.load_final(i)
        for name in OUTPUTS:
            sink.write(name, frames[name])
        sink.model_files([ArtifactRecord(**r) for r in records], functools.partial(checkpoint.model_bytes, i))


def _resumed_backtest(i: int, chunk: Chunk, checkpoint: Checkpoint, pooled: tuple[PooledErrors, ...],
                      ticker: _SeriesTicker, tally: _Tally) -> _Kept:
    """Pass 1 of a chunk a killed run finished: its summaries from the checkpoint, its points re-counted."""
    frames, failed, units = checkpoint.load_backtest(i)
    points = checkpoint.get(i)
    for pool in pooled:
        pool.add(points)
    ticker.chunk_done(chunk.n_series)
    tally.units += units
    tally.backtest_units += units
    return _Kept(chunk, frames["index"], frames["tri"], frames["plan"], frames["planned"], frames["scores"], failed,
                 units)


def _tag(frame: pd.DataFrame, index: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the chunk of each row's series (``_chunk``), row order kept."""
    return frame.merge(index[[*_SERIES, "_chunk"]], on=_SERIES, how="left", sort=False)


@dataclass(frozen=True)
class _Calibration:
    """The fleet-wide calibration pieces: pooled quantiles and pooling choices by held-out window, and the
    pooled quantiles of raw errors over every window (``PooledErrors(raw=True)``)."""

    pooled: dict[int, pd.DataFrame]
    pooling_by_window: dict[int, pd.DataFrame]
    pooling: pd.DataFrame
    single: bool
    n_windows: int
    raw: pd.DataFrame


def _backtest_chunk(i: int, chunk: Chunk, load: Load, cfg: ForecastConfig, names: list[str], order: list[str],
                    executor: Executor, spill: Spill, pooled: tuple[PooledErrors, ...], ticker: _SeriesTicker,
                    tally: _Tally, inputs: units.Inputs | None, reserve: Reserve | None) -> _Kept:
    """Pass 1 on one chunk: backtest points to the spill and the pooled histogram; summaries kept."""
    history = bt.prepare_history(load(chunk.servers), cfg.freq)
    index, tri, plan = st.prepare(history, cfg)
    planned = plan.groupby(_SERIES).size().rename("n_windows").reset_index()
    tasks = units.backtest_tasks(plan, index, history, names, cfg, executor.workers, inputs, reserve)
    results = executor.run(tasks, ticker.units(chunk.n_series, len(tasks)))
    rows = st.backtest_points(results, history, plan, planned, names, order, cfg)
    spill.put(i, rows)
    for pool in pooled:
        pool.add(rows)
    scores = score(rows.assign(yhat_lower=np.nan, yhat_upper=np.nan), [*_SERIES, "model", "window", "cutoff"])
    ticker.chunk_done(chunk.n_series)
    tally.units += len(tasks)
    tally.backtest_units += len(tasks)
    failed = [dataclasses.replace(r, predictions=None) for r in results if r.errors]
    return _Kept(chunk, index.assign(_chunk=i), tri, plan, planned, scores, failed, len(tasks))


def _final_chunk(i: int, kept: _Kept, load: Load, cfg: ForecastConfig, part: list[pd.DataFrame],
                 calibration: _Calibration, executor: Executor, spill: Spill, ticker: _SeriesTicker,
                 inputs: units.Inputs | None, reserve: Reserve | None
                 ) -> tuple[dict[str, pd.DataFrame], list[FittedModel], int]:
    """Pass 3 on one chunk: honest backtest intervals, final fits, calibrated forecasts.

    Returns:
        The ``OUTPUTS`` tables of the chunk, its fitted models to store, and its work-unit count.
    """
    chosen, members, unbacktested = part
    history = bt.prepare_history(load(kept.chunk.servers), cfg.freq)
    index = kept.index.drop(columns="_chunk")
    rows = spill.get(i)
    kept_bounds = spill.get(-1 - i)
    bounds = {name: (kept_bounds[f"{name}_lower"].to_numpy(), kept_bounds[f"{name}_upper"].to_numpy())
              for name in ("series", "pooled")}
    use_pool = cross_window_pooling(rows, bounds, cfg.interval, calibration.pooling_by_window)
    rows["yhat_lower"] = np.where(use_pool, bounds["pooled"][0], bounds["series"][0])
    rows["yhat_upper"] = np.where(use_pool, bounds["pooled"][1], bounds["series"][1])
    backtests = score(rows, [*_SERIES, "model", "window", "cutoff"])
    tasks = units.final_tasks(chosen, members, index, history, cfg, executor.workers, inputs, reserve)
    results = executor.run(tasks, ticker.units(kept.chunk.n_series, len(tasks)))
    forecasts = st.assemble(st.predictions(results), chosen, members)
    forecasts = st.calibrate_forecasts(forecasts, rows, calibration.pooling, history, index, kept.tri, kept.plan,
                                       cfg, calibration.pooled.get(ALL, EMPTY_POOL), calibration.raw)
    used = forecasts[[*_SERIES, "model"]].drop_duplicates(_SERIES)
    failures = st.failures(kept.failed + results, used)
    paths = bt.published_paths(rows, used, windows=calibration.n_windows)
    backtests = backtests.merge(used.assign(selected=True), on=[*_SERIES, "model"], how="left")
    backtests["selected"] = backtests["selected"].notna()
    backtests = backtests[[*BACKTEST_COLUMNS, *st.BACKTEST_EXTRA]].sort_values(
        [*_SERIES, "model", "cutoff"], kind="mergesort").reset_index(drop=True)
    tri = st.note_triage(kept.tri, unbacktested)
    # An external model's answers are its input's rows: nothing to refit, so nothing is stored.
    fitted = [FittedModel(str(r.used), str(r.series[0][1]), r.series,
                          r.predictions[DS].max() - cfg.horizon * bt.step_delta(cfg.freq), r.fitted)
              for r in results if r.fitted is not None and r.predictions is not None
              and getattr(r.fitted, "external", None) is None]
    ticker.chunk_done(kept.chunk.n_series)
    return dict(zip(OUTPUTS, (forecasts, backtests, paths, failures, tri), strict=True)), fitted, len(tasks)


@dataclass
class _Tally:
    """The stage summary, summed chunk by chunk (see ``summary``)."""

    names: list[str]
    units: int = 0
    backtest_units: int = 0
    workers: int = 1
    series: int = 0
    rows: dict[str, pd.Series] = field(default_factory=dict)
    paths: int = 0

    def record(self, frames: dict[str, pd.DataFrame], units: int) -> None:
        """Count one chunk's pass-3 tables (``OUTPUTS``) and work units."""
        self.add(frames["forecast_triage"], frames["backtests"], frames["forecasts"], frames["forecast_failures"],
                 len(frames["backtest_forecasts"]))
        self.units += units

    def _sum(self, key: str, counts: pd.Series) -> None:
        self.rows[key] = counts if key not in self.rows else self.rows[key].add(counts, fill_value=0)

    def add(self, tri: pd.DataFrame, backtests: pd.DataFrame, forecasts: pd.DataFrame, failures: pd.DataFrame,
            paths: int) -> None:
        self.series += len(tri)
        self.paths += paths
        self._sum("triage", tri["status"].value_counts())
        self._sum("chosen", forecasts.drop_duplicates(_SERIES)["model"].value_counts())
        self._sum("failures", pd.Series({"rows": len(failures),
                                         "series": failures[_SERIES].drop_duplicates().shape[0],
                                         "extrapolated": forecasts.loc[forecasts[st.EXTRAPOLATION], _SERIES]
                                         .drop_duplicates().shape[0]}))
        self._sum("reasons", failures.groupby(["model", "stage", "error"]).size())
        sel = backtests[backtests["selected"]]
        for col in ("mae", "coverage"):
            self._sum(f"{col}_sum", sel.groupby(METRIC)[col].sum())
            self._sum(f"{col}_n", sel.groupby(METRIC)[col].count())

    def summary(self, cfg: ForecastConfig, seconds: float) -> dict[str, Any]:
        """Counts, models chosen, backtest error and coverage per metric (as the whole-fleet summary)."""
        get = self.rows.get
        empty = pd.Series(dtype="int64")
        counts = get("failures", pd.Series({"rows": 0, "series": 0, "extrapolated": 0}))
        reasons = get("reasons", empty).sort_index().sort_values(ascending=False, kind="mergesort").head(5)
        per_metric = {col: (get(f"{col}_sum", empty) / get(f"{col}_n", empty)).round(4) for col in ("mae", "coverage")}
        return {
            "series": int(self.series),
            "triage": {str(k): int(v) for k, v in get("triage", empty).sort_index().items()},
            "models": self.names,
            "chosen": {str(k): int(v) for k, v in get("chosen", empty).sort_index().items()},
            "failures": int(counts["rows"]),
            "failed_series": int(counts["series"]),
            "failure_reasons": {f"{k[0]} ({k[1]}): {k[2]}": int(v)  # type: ignore[index]
                                for k, v in reasons.items()},
            "backtest_mae": {str(k): float(v) for k, v in per_metric["mae"].items()},
            "backtest_coverage": {str(k): float(v) for k, v in per_metric["coverage"].items()},
            "extrapolated_series": int(counts["extrapolated"]),
            "units": self.units,
            "engine": cfg.engine,
            "workers": self.workers,
            "seconds": round(seconds, 3),
            "backtest_forecast_rows": int(self.paths),
            "backtest_units": self.backtest_units,
            "final_units": self.units - self.backtest_units,
        }
