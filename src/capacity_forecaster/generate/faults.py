"""Data-feed faults punched into the raw metrics: gaps, missing values, glitches, stuck values, duplicates."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from capacity_forecaster.generate.events import ANOMALY_KINDS, Injected, one_metric
from capacity_forecaster.generate.grid import METRIC_ORDER, long_frame
from capacity_forecaster.generate.placement import Cells, LengthDraw, Occupancy, Runs
from capacity_forecaster.schema import RAW_METRIC_COLUMNS, VALUE

# Share of missing cells that come as contiguous whole-server gaps (collector down), the rest is
# scattered over single cells; a gap loses its rows (75 %) or reports NaN for them.
_GAP_SHARE = 0.4
_GAP_DAYS = (2, 7)
_LONG_GAP_DAYS = (8, 10)
_GAP_ABSENT_PROB = 0.75
# Glitch mix (share of glitch cells) and stuck-run length.
_NEGATIVE_SHARE, _OVER_100_SHARE, _STUCK_SHARE = 0.3, 0.3, 0.4
_STUCK_DAYS = (3, 10)
# Over-100 glitches are values no monitoring system reports (a percent x10, a per-mille reading):
# above the ETL's saturation bound (etl.saturation_max, 200), so the ETL quarantines them. Values
# from 100 to 200 are real saturation and are kept (docs/etl.md).
_OVER_RANGE = (250.0, 1000.0)
_EXACT_DUPLICATE_SHARE = 0.6
_ANY_METRIC = one_metric({m: 1.0 for m in range(len(METRIC_ORDER))})


@dataclass(frozen=True)
class RawFaults:
    """The raw grid after fault injection.

    Attributes:
        values: raw values (servers, metrics, days): NaN for missing values, glitches and stuck runs.
        counts: rows per cell in grid order: 0 = row absent, 1 = normal, 2 = duplicated.
        conflict_cell: flat grid index of cells whose second row carries ``conflict_value``.
        conflict_value: the differing value of those second rows.
    """

    values: np.ndarray
    counts: np.ndarray
    conflict_cell: np.ndarray
    conflict_value: np.ndarray


def _lengths(lo: int, hi: int) -> LengthDraw:
    return lambda g, k: g.integers(lo, hi + 1, k)


def _single(g: np.random.Generator, k: int) -> np.ndarray:
    return np.ones(k, dtype=np.int64)


def _all_metrics(g: np.random.Generator, k: int) -> np.ndarray:
    return np.ones((k, len(METRIC_ORDER)), dtype=bool)


def _cells(runs: Runs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _, server, metric, day = runs.cells()
    return server, metric, day


@dataclass(frozen=True)
class FaultPlan:
    """Where the data faults go and what they write, for the whole fleet (sparse, by server).

    Attributes:
        absent: cells whose row is missing (``missing_day``).
        empty: cells reported with a NaN value (``missing_value``).
        negative: cells with a negative value, value = that value.
        over: cells with an impossible value above 100, value = that value.
        stuck: cells of stuck runs, value = the day whose actual value is repeated.
        duplicate: cells reported twice with the same value.
        conflict: cells reported twice, value = how far (points) the second row moves towards 50.
        injected: every faulty cell with its kind.
    """

    absent: Cells
    empty: Cells
    negative: Cells
    over: Cells
    stuck: Cells
    duplicate: Cells
    conflict: Cells
    injected: Injected

    def chunk(self, lo: int, hi: int) -> FaultPlan:
        """The faults of servers ``lo:hi`` (server numbers relative to ``lo``; ``injected`` left empty)."""
        parts = {name: getattr(self, name).chunk(lo, hi) for name in _CELL_FIELDS}
        return replace(self, **parts, injected=Injected.concat([]))


_CELL_FIELDS = ("absent", "empty", "negative", "over", "stuck", "duplicate", "conflict")


def _of(runs: Runs, value: np.ndarray | None = None) -> Cells:
    return Cells.of(*_cells(runs), value)


def plan_faults(
    shape: tuple[int, int, int],
    occupancy: Occupancy,
    missing_rate: float,
    glitch_rate: float,
    duplicate_rate: float,
    rng: np.random.Generator,
) -> FaultPlan:
    """Place the data faults on the observed grid and draw the values they write.

    Kinds: ``missing_day`` (row absent), ``missing_value`` (NaN), ``negative``, ``over_100``, ``stuck``
    (the first day's value repeated for 3-10 days; every day of the run is recorded), ``duplicate``
    (the row twice) and ``conflict`` (the key twice, the second with a different value). Faults never
    share a cell with each other or with the events already in ``occupancy``. Only the grid's shape
    is needed: ``apply_faults`` derives the raw feed from the actual values, chunk by chunk.

    Args:
        shape: observed grid shape (servers, metrics, days).
        occupancy: cells already taken by events; updated.
        missing_rate: share of cells missing (about 40 % in whole-server gaps of 2-7 days, the
            length a collector outage usually has, plus one gap of 8-10 days per fleet so that the
            "too long to impute" path is exercised).
        glitch_rate: share of cells with negative, over-100 or stuck values.
        duplicate_rate: share of cells reported twice.
        rng: random generator (consumed).

    Returns:
        The FaultPlan.
    """
    n_cells = int(np.prod(shape))
    parts: list[Injected] = []
    code = {k: i for i, k in enumerate(ANOMALY_KINDS)}

    n_gaps = round(missing_rate * n_cells * _GAP_SHARE / (np.mean(_GAP_DAYS) * len(METRIC_ORDER)))
    gaps = [occupancy.place(min(n_gaps, 1), _lengths(*_LONG_GAP_DAYS), _all_metrics, rng)]
    gaps.append(occupancy.place(n_gaps - len(gaps[0]), _lengths(*_GAP_DAYS), _all_metrics, rng))
    for runs in gaps:
        absent = rng.random(len(runs)) < _GAP_ABSENT_PROB
        parts.append(Injected.of(runs, np.where(absent, code["missing_day"], code["missing_value"])))

    n_scattered = round(missing_rate * n_cells * (1 - _GAP_SHARE))
    scattered = occupancy.place(n_scattered, _single, _ANY_METRIC, rng)
    absent = rng.random(len(scattered)) < 0.5
    parts.append(Injected.of(scattered, np.where(absent, code["missing_day"], code["missing_value"])))
    missing = Injected.concat(parts)
    is_absent = missing.kind == code["missing_day"]
    cells = (missing.server, missing.metric, missing.day)
    absent_cells = Cells.of(*(c[is_absent] for c in cells))
    empty_cells = Cells.of(*(c[~is_absent] for c in cells))

    n_glitch = glitch_rate * n_cells
    negative = occupancy.place(round(n_glitch * _NEGATIVE_SHARE), _single, _ANY_METRIC, rng)
    n_negative = len(negative.cells()[0])
    sentinel = rng.random(n_negative) < 0.5
    negative_cells = _of(negative, np.where(sentinel, -1.0, -rng.uniform(0.5, 50.0, n_negative)))
    over = occupancy.place(round(n_glitch * _OVER_100_SHARE), _single, _ANY_METRIC, rng)
    over_cells = _of(over, rng.uniform(*_OVER_RANGE, len(over.cells()[0])))
    stuck = occupancy.place(
        round(n_glitch * _STUCK_SHARE / np.mean(_STUCK_DAYS)), _lengths(*_STUCK_DAYS), _ANY_METRIC, rng
    )
    run, server, metric, day = stuck.cells()
    stuck_cells = Cells.of(server, metric, day, stuck.start[run])
    parts += [Injected.of(negative, "negative"), Injected.of(over, "over_100"), Injected.of(stuck, "stuck")]

    n_dup = duplicate_rate * n_cells
    exact = occupancy.place(round(n_dup * _EXACT_DUPLICATE_SHARE), _single, _ANY_METRIC, rng)
    conflict = occupancy.place(round(n_dup * (1 - _EXACT_DUPLICATE_SHARE)), _single, _ANY_METRIC, rng)
    conflict_cells = _of(conflict, rng.uniform(5.0, 30.0, len(conflict.cells()[0])))
    parts += [Injected.of(exact, "duplicate"), Injected.of(conflict, "conflict")]
    return FaultPlan(
        absent_cells, empty_cells, negative_cells, over_cells, stuck_cells, _of(exact), conflict_cells,
        Injected.concat(parts),
    )


def apply_faults(actual: np.ndarray, faults: FaultPlan) -> RawFaults:
    """Derive the raw feed from the observed actual grid (not modified) and the faults of its servers.

    Returns:
        The RawFaults.
    """
    values = actual.copy()
    counts = np.ones(actual.size, dtype=np.int8)
    counts[np.ravel_multi_index(faults.absent.index, actual.shape)] = 0
    values[faults.absent.index] = np.nan
    values[faults.empty.index] = np.nan
    values[faults.negative.index] = faults.negative.value
    values[faults.over.index] = faults.over.value
    stuck = faults.stuck
    values[stuck.index] = actual[stuck.server, stuck.metric, stuck.value]
    for cells in (faults.duplicate, faults.conflict):
        counts[np.ravel_multi_index(cells.index, actual.shape)] += 1
    conflict_cell = np.ravel_multi_index(faults.conflict.index, actual.shape)
    true_value = actual[faults.conflict.index]
    # Move away from the true value by 5-30 points, towards the middle so the result stays in [0, 100].
    step = faults.conflict.value * np.where(true_value > 50.0, -1.0, 1.0)
    return RawFaults(values, counts, conflict_cell, true_value + step)


def raw_frame(ids: np.ndarray, dates: np.ndarray, faults: RawFaults, *, categorical: bool = False) -> pd.DataFrame:
    """The raw_metrics frame: one row per present cell, duplicates adjacent, conflicts on the second row.

    Args:
        ids: server ids, one per grid row.
        dates: observed days (``datetime64[D]``).
        faults: the injected faults.
        categorical: server_id and metric as categoricals (see ``grid.long_frame``).

    Returns:
        Frame with columns server_id, ds, metric, value, sorted by server_id, metric, ds.
    """
    frame = long_frame(ids, dates, faults.values, faults.counts, categorical=categorical)
    if len(faults.conflict_cell) == 0:
        return frame
    # A conflicting cell has two adjacent rows; the second one is the last row of the cell.
    second = np.cumsum(faults.counts, dtype=np.int64)[faults.conflict_cell] - 1
    frame.iloc[second, RAW_METRIC_COLUMNS.index(VALUE)] = faults.conflict_value
    return frame
