"""Dense (series x days) matrices: the shape every cleansing, imputation and feature step works on.

Long frames are turned into one row per series (server_id, metric) and one column per calendar day
of the batch, so that per-series work is numpy over axis 1 instead of Python loops over groups.
Cells outside a series' span (its first to last day) are masked out and never become rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capacity_forecaster import schema
from capacity_forecaster.etl.validate import Validated

_EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class SeriesGrid:
    """Validated rows laid out as (series x days) matrices.

    Attributes:
        server_ids: server id per series (object array), sorted.
        metric_codes: index into ``schema.METRICS`` per series.
        server_index: per series, index of its server among ``np.unique(server_ids)`` (for per-server work).
        day0: first calendar day of column 0, as days since 1970-01-01.
        value: usable values (clipped), NaN where the day has no usable value.
        value_raw: the parsed source value of the row behind each cell (NaN where there was none).
        source_row: position in the input frame of the row behind each cell, -1 where none.
        saturated: the row behind the cell was at or above 100 (see ``validate``).
        in_span: True for cells between a series' first and last day (inclusive).
    """

    server_ids: np.ndarray
    metric_codes: np.ndarray
    server_index: np.ndarray
    day0: int
    value: np.ndarray
    value_raw: np.ndarray
    source_row: np.ndarray
    saturated: np.ndarray
    in_span: np.ndarray

    @property
    def n_series(self) -> int:
        """Number of series (rows)."""
        return int(self.value.shape[0])

    @property
    def n_days(self) -> int:
        """Number of calendar days (columns)."""
        return int(self.value.shape[1])

    def dates(self) -> np.ndarray:
        """The calendar date of every column, as datetime64[ns]."""
        return (_EPOCH + self.day0 + np.arange(self.n_days)).astype("datetime64[ns]")


def build_grid(valid: Validated) -> SeriesGrid:
    """Lay the kept rows of a validation out as (series x days) matrices.

    Args:
        valid: output of ``validate``; keys are unique per (server, metric, day) by construction.

    Returns:
        A SeriesGrid with one row per (server_id, metric) present, ordered by server_id then metric
        in ``schema.METRICS`` order, and one column per day from the earliest to the latest day.
    """
    n_metrics = len(schema.METRICS)
    key = valid.server_codes * n_metrics + valid.metric_codes
    series_keys, series_of_row = np.unique(key, return_inverse=True)
    n_series = len(series_keys)
    if n_series == 0:
        empty_f = np.empty((0, 0))
        return SeriesGrid(
            server_ids=np.empty(0, dtype=object), metric_codes=np.empty(0, dtype=np.int64),
            server_index=np.empty(0, dtype=np.int64), day0=0, value=empty_f, value_raw=empty_f.copy(),
            source_row=np.empty((0, 0), dtype=np.int64), saturated=np.empty((0, 0), dtype=bool),
            in_span=np.empty((0, 0), dtype=bool),
        )
    day0 = int(valid.days.min())
    n_days = int(valid.days.max()) - day0 + 1
    col = valid.days - day0
    value = np.full((n_series, n_days), np.nan)
    value_raw = np.full((n_series, n_days), np.nan)
    source_row = np.full((n_series, n_days), -1, dtype=np.int64)
    value[series_of_row, col] = valid.value
    value_raw[series_of_row, col] = valid.value_raw
    source_row[series_of_row, col] = valid.rows
    saturated = np.zeros((n_series, n_days), dtype=bool)
    saturated[series_of_row, col] = valid.saturated
    first = np.full(n_series, n_days, dtype=np.int64)
    last = np.full(n_series, -1, dtype=np.int64)
    np.minimum.at(first, series_of_row, col)
    np.maximum.at(last, series_of_row, col)
    cols = np.arange(n_days)
    in_span = (cols[None, :] >= first[:, None]) & (cols[None, :] <= last[:, None])
    server_code = series_keys // n_metrics
    _, server_index = np.unique(server_code, return_inverse=True)
    return SeriesGrid(
        server_ids=valid.server_ids[server_code],
        metric_codes=series_keys % n_metrics,
        server_index=server_index.astype(np.int64),
        day0=day0,
        value=value,
        value_raw=value_raw,
        source_row=source_row,
        saturated=saturated,
        in_span=in_span,
    )


def run_lengths(mask: np.ndarray) -> np.ndarray:
    """Length of the run of consecutive True cells each True cell belongs to (0 elsewhere), per row.

    Args:
        mask: boolean (series x days) matrix.

    Returns:
        int64 matrix of the same shape.
    """
    n_rows, n_cols = mask.shape
    if mask.size == 0:
        return np.zeros(mask.shape, dtype=np.int64)
    padded = np.zeros((n_rows, n_cols + 1), dtype=bool)
    padded[:, :n_cols] = mask
    flat = padded.ravel()
    starts = flat & ~np.concatenate(([False], flat[:-1]))
    run_id = np.cumsum(starts) * flat
    lengths = np.bincount(run_id)
    lengths[0] = 0
    return lengths[run_id].reshape(n_rows, n_cols + 1)[:, :n_cols]
