"""ETL transform: raw daily metrics -> validated, cleansed, imputed, anomaly-flagged, feature-enriched frames.

Pure: takes and returns frames, never mutates its inputs, does no I/O. Servers are processed in
batches of ``EtlConfig.batch_servers`` (default 500; all rows of a server land in one batch), so memory follows
the batch, not the fleet: ``transform`` concatenates the batches, ``transform_batches`` yields them
one by one for callers that write partition by partition.

Nothing is lost: every input row is either in ``metrics`` (possibly clipped or replaced, with the
source value in ``value_raw``; a saturated value above 100 is clipped and flagged ``is_saturated``)
or in ``quarantine``; every missing day inside a series' span (its first to last day) gets a row,
filled when its gap is at most ``max_gap_days`` long and left empty (value NaN, is_imputed False)
otherwise. So ``rows_in == rows_out + rows_quarantined - rows_created``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster import schema
from capacity_forecaster.config import EtlConfig
from capacity_forecaster.etl.anomalies import Anomalies, detect_anomalies
from capacity_forecaster.etl.calendar import DayCalendar, day_calendar
from capacity_forecaster.etl.diagnostics import series_diagnostics
from capacity_forecaster.etl.features import calendar_features, series_features
from capacity_forecaster.etl.grid import SeriesGrid, build_grid
from capacity_forecaster.etl.impute import (
    ImputationChoice,
    choose_method,
    fillable_cells,
    holdout_servers,
    knn_fill,
    seasonal_fill,
)
from capacity_forecaster.etl.outliers import (
    Decomposition,
    decompose,
    nanmedian_rows,
    outlier_cells,
    stuck_cells,
)
from capacity_forecaster.etl.validate import empty_quarantine, lookup, text_keys, validate

logger = logging.getLogger(__name__)

COUNT_KEYS = (
    "rows_in", "rows_out", "rows_quarantined", "rows_created", "rows_imputed_created",
    "rows_unfilled_created", "rows_imputed", "rows_unfilled", "rows_clipped", "rows_saturated",
    "rows_glitches", "rows_outliers", "rows_anomalies", "series",
)
_KEYS = (schema.SERVER_ID, schema.DS, schema.METRIC)
# Servers per batch when ``etl.batch_servers`` is None (the stage derives its own from memory).
DEFAULT_BATCH_SERVERS = 500
_METRIC_NAMES = np.array(schema.METRICS, dtype=object)


@dataclass(frozen=True)
class EtlResult:
    """Everything one transform (or one batch of it) produced.

    Attributes:
        metrics: ``schema.PROCESSED_METRIC_COLUMNS`` then any extra input columns carried through
            (null on created rows); one row per (server_id, metric, ds) in each series' span, sorted.
        quarantine: ``schema.QUARANTINE_COLUMNS``, original fields as text, reason "code: detail".
        features: server_id, ds, metric, lag/rolling columns (``features.feature_names``) and the
            calendar columns (``features.CALENDAR_COLUMNS``), aligned row by row with ``metrics``.
        diagnostics: one row per series (see ``diagnostics.series_diagnostics``).
        counts: ``COUNT_KEYS`` -> int; rows_in == rows_out + rows_quarantined - rows_created.
        imputation: the imputation method used and, for "auto", the held-out comparison.
    """

    metrics: pd.DataFrame
    quarantine: pd.DataFrame
    features: pd.DataFrame
    diagnostics: pd.DataFrame
    counts: dict[str, int]
    imputation: ImputationChoice


def _extra_columns(raw: pd.DataFrame) -> list[str]:
    return [c for c in raw.columns if c not in schema.PROCESSED_METRIC_COLUMNS]


def _carry(column: pd.Series, source_row: np.ndarray) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """Values of ``column`` at ``source_row`` (null where -1), in a dtype that can hold the null."""
    plain_numpy = not isinstance(column.dtype, pd.api.extensions.ExtensionDtype)
    if plain_numpy and pd.api.types.is_bool_dtype(column.dtype):
        column = column.astype("boolean")
    elif plain_numpy and pd.api.types.is_integer_dtype(column.dtype):
        column = column.astype("Int64")
    return column.array.take(source_row, allow_fill=True)


_DIAG_COUNTS = ("n_obs", "n_rows", "n_missing", "n_imputed", "n_unfilled", "n_glitches", "n_clipped",
                "n_saturated", "n_outliers", "n_anomalies")


def _features_frame(
    metrics: pd.DataFrame, cal: DayCalendar, final: np.ndarray, rows: np.ndarray, cols: np.ndarray,
    cfg: EtlConfig,
) -> pd.DataFrame:
    data: dict[str, object] = {k: metrics[k].to_numpy() for k in _KEYS}
    data.update(series_features(final, rows, cols, cfg.lags, cfg.rolling_windows))
    data.update(calendar_features(cal, cols))
    return pd.DataFrame(data)


def _empty_result(
    raw: pd.DataFrame, quarantine: pd.DataFrame, cfg: EtlConfig, choice: ImputationChoice
) -> EtlResult:
    metrics = pd.DataFrame({
        schema.SERVER_ID: pd.Series([], dtype=object), schema.DS: pd.Series([], dtype="datetime64[ns]"),
        schema.METRIC: pd.Series([], dtype=object), schema.VALUE: pd.Series([], dtype=np.float64),
        "value_raw": pd.Series([], dtype=np.float64), "is_imputed": pd.Series([], dtype=bool),
        "is_outlier": pd.Series([], dtype=bool), "is_anomaly": pd.Series([], dtype=bool),
        "anomaly_score": pd.Series([], dtype=np.float64), "is_saturated": pd.Series([], dtype=bool),
    })
    for col in _extra_columns(raw):
        metrics[col] = _carry(raw[col], np.zeros(0, dtype=np.int64))
    none = np.zeros(0, dtype=np.int64)
    features = _features_frame(metrics, day_calendar(0, 0), np.zeros((0, 0)), none, none, cfg)
    no_days = np.empty(0, "datetime64[D]")
    diagnostics = series_diagnostics(
        np.empty(0, dtype=object), np.empty(0, dtype=object), no_days, no_days,
        {k: none for k in _DIAG_COUNTS}, np.zeros((0, 0), bool), np.zeros((0, 0), bool), np.zeros((0, 0)),
        np.zeros(0), choice.method, cfg.adf_maxlag,
    )
    counts = dict.fromkeys(COUNT_KEYS, 0)
    counts.update(rows_in=len(raw), rows_quarantined=len(quarantine))
    return EtlResult(metrics, quarantine, features, diagnostics, counts, choice)


@dataclass(frozen=True)
class _Processed:
    """The (series x days) matrices of one batch after cleansing, anomaly detection and imputation."""

    glitch: np.ndarray
    decomp: Decomposition
    anomalies: Anomalies
    outlier: np.ndarray
    missing: np.ndarray
    filled: np.ndarray
    final: np.ndarray
    choice: ImputationChoice


def varied_days(raw: pd.DataFrame, grid: SeriesGrid) -> np.ndarray | None:
    """Cells whose constant reading is explained: the day's samples of this metric, or of another metric of
    the same server, were not all equal (the roll-up's ``value_max`` above its ``value_mean``: the server's
    monitoring was alive), or the server's CPU read 0 all day (every sample; an idle or powered-off VM,
    whose gauges have nothing to move them; a network or disk gauge on 0 says nothing of the agent).

    A stuck agent repeats every reading of its server, mid-range (Bitbrains Rnd VM 407: CPU 96.00 % and
    memory 13.79 % on every sample of two days). Bitbrains Rnd VM 250's memory read 2.00 % on every sample
    for 16 days while its CPU read 0 on every sample: an idle VM, whose days the stuck rule turned into an
    unfillable gap (and so took it out of the idle and decommission assessment).

    None when ``raw`` lacks those columns (a daily source, the synthetic fleet): nothing is known.
    """
    if "value_mean" not in raw.columns or "value_max" not in raw.columns or grid.source_row.size == 0:
        return None
    mean = pd.to_numeric(raw["value_mean"], errors="coerce").to_numpy(dtype=float)
    top = pd.to_numeric(raw["value_max"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        row_varied = (top - mean) > 1e-9 * np.maximum(1.0, np.abs(top))
        row_zero = top <= 0.0
    out = np.zeros(grid.source_row.shape, dtype=bool)
    zero = np.zeros(grid.source_row.shape, dtype=bool)
    behind = grid.source_row >= 0
    out[behind] = row_varied[grid.source_row[behind]]
    zero[behind] = row_zero[grid.source_row[behind]]
    # Only a CPU on 0 says the VM is idle or off; a quiet NIC or disk reads 0 on a live, even stuck, agent.
    cpu = (grid.metric_codes == schema.METRICS.index("cpu"))[:, None]
    explains = out | (zero & cpu)
    if grid.n_series == 0:
        return out
    # Series are grouped by server (grid order): one reduceat gives each server's days any metric explains.
    starts = np.flatnonzero(np.diff(grid.server_index, prepend=-1))
    server = np.logical_or.reduceat(explains, starts, axis=0)
    return out | server[np.searchsorted(grid.server_index[starts], grid.server_index)]


def _process(
    grid: SeriesGrid, cal: DayCalendar, cfg: EtlConfig, choice: ImputationChoice | None,
    varied: np.ndarray | None = None,
) -> _Processed:
    """Replace glitches, decompose, flag outliers and anomalies, and fill the short gaps."""
    glitch = stuck_cells(grid.value, cfg.stuck_min_run, varied) & grid.in_span
    values = np.where(glitch, np.nan, grid.value)
    decomp = decompose(values, cal)
    anomalies = detect_anomalies(decomp, grid.metric_codes, grid.server_index, cfg.anomaly_threshold)
    outlier = (outlier_cells(decomp, cfg.outlier_threshold) & grid.in_span) | glitch
    missing = np.isnan(values) & grid.in_span
    fillable = fillable_cells(missing, cfg.max_gap_days, ~np.isnan(values) & grid.in_span, anomalies.is_anomaly)
    if choice is None:
        usable = ~np.isnan(values) & grid.in_span & ~anomalies.is_anomaly
        choice = choose_method(values, cal, grid.server_index, usable, cfg.knn_neighbors)
    if choice.method == "knn":
        estimate = knn_fill(values, decomp, grid.server_index, cfg.knn_neighbors, wanted=fillable)
    else:
        estimate = seasonal_fill(values, decomp)
    filled = fillable & np.isfinite(estimate)
    final = np.where(filled, np.clip(estimate, 0.0, 100.0), values)
    final[~grid.in_span] = np.nan
    return _Processed(glitch, decomp, anomalies, outlier, missing, filled, final, choice)


def _diagnostics(grid: SeriesGrid, done: _Processed, cfg: EtlConfig) -> pd.DataFrame:
    with np.errstate(invalid="ignore"):
        clipped = grid.in_span & ((grid.value_raw < 0.0) | (grid.value_raw > 100.0))
    unfilled = done.missing & ~done.filled
    dates = grid.dates()
    first = np.argmax(grid.in_span, axis=1)
    last = grid.n_days - 1 - np.argmax(grid.in_span[:, ::-1], axis=1)
    per_series = {
        "n_obs": (~np.isnan(grid.value) & grid.in_span).sum(axis=1),
        "n_rows": grid.in_span.sum(axis=1),
        "n_missing": done.missing.sum(axis=1),
        "n_imputed": done.filled.sum(axis=1),
        "n_unfilled": unfilled.sum(axis=1),
        "n_glitches": done.glitch.sum(axis=1),
        "n_clipped": clipped.sum(axis=1),
        "n_saturated": (grid.saturated & grid.in_span).sum(axis=1),
        "n_outliers": done.outlier.sum(axis=1),
        "n_anomalies": done.anomalies.is_anomaly.sum(axis=1),
    }
    noise = nanmedian_rows(np.where(grid.in_span, done.decomp.scale, np.nan))
    return series_diagnostics(
        grid.server_ids, _METRIC_NAMES[grid.metric_codes], dates[first], dates[last], per_series,
        done.missing, unfilled, done.final, noise, done.choice.method, cfg.adf_maxlag,
    )


def _transform_batch(
    raw: pd.DataFrame, inventory: pd.DataFrame, cfg: EtlConfig, choice: ImputationChoice | None
) -> EtlResult:
    valid = validate(raw, inventory, cfg)
    grid = build_grid(valid)
    if choice is None and cfg.imputation != "auto":
        choice = ImputationChoice(method=cfg.imputation, requested=cfg.imputation)
    if grid.n_series == 0:
        fallback = ImputationChoice("seasonal", cfg.imputation)
        return _empty_result(raw, valid.quarantine, cfg, choice or fallback)
    cal = day_calendar(grid.day0, grid.n_days)
    done = _process(grid, cal, cfg, choice, varied_days(raw, grid))

    rows, cols = np.nonzero(grid.in_span)
    source = grid.source_row[rows, cols]
    filled = done.filled[rows, cols]
    metrics = pd.DataFrame({
        schema.SERVER_ID: grid.server_ids[rows],
        schema.DS: grid.dates()[cols],
        schema.METRIC: _METRIC_NAMES[grid.metric_codes[rows]],
        schema.VALUE: done.final[rows, cols],
        "value_raw": grid.value_raw[rows, cols],
        "is_imputed": filled,
        "is_outlier": done.outlier[rows, cols],
        "is_anomaly": done.anomalies.is_anomaly[rows, cols],
        "anomaly_score": done.anomalies.score[rows, cols],
        "is_saturated": grid.saturated[rows, cols],
    })
    for col in _extra_columns(raw):
        metrics[col] = _carry(raw[col], source)
    features = _features_frame(metrics, cal, done.final, rows, cols, cfg)
    diagnostics = _diagnostics(grid, done, cfg)
    created = source < 0
    counts = {
        "rows_in": len(raw),
        "rows_out": len(metrics),
        "rows_quarantined": len(valid.quarantine),
        "rows_created": int(created.sum()),
        "rows_imputed_created": int((created & filled).sum()),
        "rows_unfilled_created": int((created & ~filled).sum()),
        "rows_imputed": int(done.filled.sum()),
        "rows_unfilled": int((done.missing & ~done.filled).sum()),
        "rows_clipped": int(diagnostics["n_clipped"].sum()),
        "rows_saturated": int(diagnostics["n_saturated"].sum()),
        "rows_glitches": int(done.glitch.sum()),
        "rows_outliers": int(done.outlier.sum()),
        "rows_anomalies": int(done.anomalies.is_anomaly.sum()),
        "series": grid.n_series,
    }
    return EtlResult(metrics, valid.quarantine, features, diagnostics, counts, done.choice)


def _server_batches(raw: pd.DataFrame, batch_servers: int) -> list[np.ndarray]:
    """Row positions per batch of ``batch_servers`` servers (sorted by id); unusable ids go to the first."""
    if schema.SERVER_ID not in raw.columns:
        return [np.arange(len(raw))]
    codes, text = text_keys(raw[schema.SERVER_ID])
    rank = np.empty(len(text), dtype=np.int64)
    rank[np.argsort(text.astype(str), kind="stable")] = np.arange(len(text))
    batch = lookup(rank, codes, 0) // batch_servers
    n_batches = int(batch.max()) + 1 if len(batch) else 1
    if n_batches == 1:
        return [np.arange(len(raw))]
    order = np.argsort(batch, kind="stable")
    return np.split(order, np.searchsorted(batch[order], np.arange(1, n_batches)))


def choose_imputation(sample: pd.DataFrame, inventory: pd.DataFrame, cfg: EtlConfig) -> ImputationChoice:
    """The ``imputation = auto`` choice, made on the raw rows of the ``holdout_servers`` sample.

    The sample goes through validation and cleansing like any batch, then ``choose_method`` compares
    the methods on its held-out known values; a sample with no usable series gets seasonal.
    """
    valid = validate(sample, inventory, cfg)
    grid = build_grid(valid)
    if grid.n_series == 0:
        return ImputationChoice("seasonal", "auto")
    return _process(grid, day_calendar(grid.day0, grid.n_days), cfg, None, varied_days(sample, grid)).choice


def transform_batches(
    raw_metrics: pd.DataFrame, inventory: pd.DataFrame, cfg: EtlConfig
) -> Iterator[EtlResult]:
    """Run the ETL transform server batch by server batch.

    Each yielded EtlResult covers the servers of one batch completely (their metrics, quarantined rows,
    features and diagnostics), so the caller can write and drop it before the next one is computed.
    With ``imputation="auto"`` the method is chosen first, on a seeded sample of the fleet's servers
    (``choose_imputation``), and used for every batch.
    One INFO summary is logged when the last batch has been produced.

    Args:
        raw_metrics: server_id, ds, metric, value (+ optional ingest columns, carried through).
        inventory: the inventory; rows of servers not in it are quarantined.
        cfg: ETL settings.

    Yields:
        EtlResult per batch (see ``transform`` for the frames and their columns).

    Raises:
        SchemaError: when raw_metrics or inventory lack a required column.
    """
    schema.require_columns(raw_metrics, schema.RAW_METRIC_COLUMNS, "raw_metrics")
    schema.require_columns(inventory, (schema.SERVER_ID,), "inventory")
    started = time.perf_counter()
    totals = dict.fromkeys(COUNT_KEYS, 0)
    choice: ImputationChoice | None = None
    if cfg.imputation == "auto":
        ids = raw_metrics[schema.SERVER_ID]
        sample = holdout_servers(list(ids.dropna().astype(str).unique()))
        choice = choose_imputation(raw_metrics[(ids.notna() & ids.astype(str).isin(sample)).to_numpy()],
                                   inventory, cfg)
    for positions in _server_batches(raw_metrics, cfg.batch_servers or DEFAULT_BATCH_SERVERS):
        part = raw_metrics if len(positions) == len(raw_metrics) else raw_metrics.iloc[positions]
        result = _transform_batch(part, inventory, cfg, choice)
        if result.counts["series"]:
            choice = result.imputation
        for key, value in result.counts.items():
            totals[key] += value
        logger.debug("etl batch: %s", result.counts)
        yield result
    logger.info(
        "etl transform: %d rows in, %d out, %d quarantined, %d imputed (%d created), %d left empty, "
        "%d saturated, %d series, %d anomalies, imputation %s, %.2f s",
        totals["rows_in"], totals["rows_out"], totals["rows_quarantined"], totals["rows_imputed"],
        totals["rows_imputed_created"], totals["rows_unfilled"], totals["rows_saturated"], totals["series"],
        totals["rows_anomalies"],
        choice.method if choice else cfg.imputation, time.perf_counter() - started,
    )


def transform(raw_metrics: pd.DataFrame, inventory: pd.DataFrame, cfg: EtlConfig) -> EtlResult:
    """Validate, cleanse, impute, flag anomalies and build features for raw daily metrics.

    Args:
        raw_metrics: long frame with server_id (str), ds (dates), metric (str), value (float, or text
            from CSV sources) and optionally extra ingest columns (samples, coverage, ...).
        inventory: frame with ``schema.INVENTORY_COLUMNS`` (only server_id is used).
        cfg: ETL settings.

    Returns:
        EtlResult with
        metrics (server_id, ds, metric, value, value_raw, is_imputed, is_outlier, is_anomaly,
        anomaly_score, is_saturated, then the carried extra columns),
        quarantine (server_id, ds, metric, value, source, reason, stage),
        features (server_id, ds, metric, lag_<k>, roll_mean_<w>, roll_std_<w>, roll_max_<w>, weekday,
        month_of_year, is_weekend, is_month_end, is_quarter_end, is_year_end, is_us_bank_holiday),
        diagnostics (server_id, metric, n_obs, first_ds, last_ds, n_rows, n_missing, n_imputed,
        n_unfilled, n_glitches, n_clipped, n_saturated, n_outliers, n_anomalies, longest_gap_days,
        unfilled_gap_days,
        noise_scale, adf_stat, adf_pvalue, is_stationary, imputation_method) and counts.

    Raises:
        SchemaError: when raw_metrics or inventory lack a required column.
    """
    parts = list(transform_batches(raw_metrics, inventory, cfg))
    if len(parts) == 1:
        return parts[0]
    counts = dict.fromkeys(COUNT_KEYS, 0)
    for part in parts:
        for key, value in part.counts.items():
            counts[key] += value
    with_data = [p for p in parts if p.counts["series"]] or parts

    def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
        return pd.concat(frames, ignore_index=True)

    quarantine = concat([p.quarantine for p in parts if len(p.quarantine)] or [empty_quarantine()])
    return EtlResult(
        metrics=concat([p.metrics for p in with_data]),
        quarantine=quarantine,
        features=concat([p.features for p in with_data]),
        diagnostics=concat([p.diagnostics for p in with_data]),
        counts=counts,
        imputation=with_data[0].imputation,
    )
