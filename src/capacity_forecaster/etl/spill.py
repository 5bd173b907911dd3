"""The ingest's sample pool: accepted samples held as numpy arrays, spilled to disk by server beyond a budget.

``ingest`` adds each chunk's accepted samples to a ``SamplePool`` and rolls the samples up one
``SampleGroup`` of servers at a time (``SamplePool.groups``), so memory stays bounded whatever the
export's size. Everything a sample's quarantine record needs (the file and line of its row) travels
with it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.errors import StorageError
from capacity_forecaster.etl.guard import accepted_counts
from capacity_forecaster.etl.rollup import Samples
from capacity_forecaster.etl.units import ValueTally

# An export too large for memory is spilled filed by server into SPILL_BUCKETS buckets (server code modulo), and
# rolled up a run of consecutive buckets at a time holding about ``spill_rows / GROUP_SHARE`` samples (a bigger
# bucket alone): the roll-up's working memory stays the same whatever the export's size (64 fixed groups held
# 866,000 samples each at 10,000 fastStorage copies, 1/64 of everything: helper-45).
SPILL_BUCKETS = 4096
# A group holds about spill_rows / GROUP_SHARE samples: its roll-up needs several times the memory of what is held.
GROUP_SHARE = 4
# The arrays a spill writes, one raw binary file each per flush: per sample, then per row.
_SAMPLE_ARRAYS = ("server", "metric", "ts", "value", "row", "weight")
_ROW_ARRAYS = ("row_ids", "row_file", "row_line")
# The epoch-unit check reads the median day of every this-many-th sample time of the export.
TIME_STRIDE = 16
FILE_TIMES = 1_024


@dataclass(frozen=True)
class SampleGroup:
    """The accepted samples of a group of servers, with the file index and line (-1: Parquet) of their rows.

    ``row_file`` / ``row_line`` are per row: of the rows ``row_ids`` (sorted), or, when that is None, of the
    consecutive rows from ``row_first`` on.
    """

    samples: Samples
    row_file: np.ndarray
    row_line: np.ndarray
    row_ids: np.ndarray | None = None
    row_first: int = 0

    def _at(self, rows: np.ndarray) -> np.ndarray:
        """Where the given row ids' sources are."""
        return rows - self.row_first if self.row_ids is None else np.searchsorted(self.row_ids, rows)

    def rows_used(self, rows: np.ndarray) -> int:
        """How many distinct rows the given row ids (of this group's samples) are."""
        used = np.zeros(len(self.row_file), dtype=bool)
        used[self._at(rows)] = True
        return int(used.sum())

    def sources(self, labels: list[str], positions: np.ndarray) -> np.ndarray:
        """``path:line`` (or ``path`` for Parquet) of the samples at ``positions``."""
        if len(positions) == 0:
            return np.empty(0, dtype=object)
        at = self._at(self.samples.row[positions])
        lines = self.row_line[at]
        label = np.asarray(labels, dtype=object)[self.row_file[at]]
        with_line = label + ":" + pd.Series(lines).astype(str).to_numpy(dtype=object)
        return np.where(lines >= 0, with_line, label)


class SamplePool:
    """Accepted samples gathered chunk by chunk as compact numpy arrays, with their provenance.

    Up to ``spill_rows`` samples are held in memory; beyond that they are written, filed by server into
    ``SPILL_BUCKETS`` buckets, to a temporary folder (one raw file per array and flush, read back as byte
    ranges), and ``groups`` reads back runs of consecutive buckets of about ``spill_rows / GROUP_SHARE`` samples
    (a server's samples in the order they were read, so "the first sample read" stays the first). A
    server's samples all fall in one group, and so do all samples of a row; ``group_of`` says which. What
    the unit checks and the value counts need is tallied as the samples arrive.
    """

    def __init__(self, spill_rows: int = 0) -> None:
        self.parts: list[SampleGroup] = []
        self.weighted = False
        self.rows = 0
        self.held = 0
        self.held_from = 0  # the first row the held parts read (they read every row from it on)
        self.sampled = 0  # accepted samples so far (the time stride counts across chunks)
        self.spill_rows = spill_rows
        self.values = ValueTally()
        self.times = ValueTally()  # sample times (ns) as "values", for the median the epoch check needs
        # The first FILE_TIMES of those times per file: one file in seconds among files in milliseconds (helper-51).
        self.file_times: dict[int, np.ndarray] = {}
        self.accepted = np.zeros(0, dtype=np.int64)
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._flushes = 0
        self._counts = np.zeros(SPILL_BUCKETS, dtype=np.int64)  # spilled samples per bucket
        # Per flush: its buckets' sample and row offsets, and whether it has weights; each array's dtype.
        self._offsets: list[tuple[np.ndarray, np.ndarray, bool]] = []
        self._dtypes: dict[str, np.dtype[Any]] = {}
        self._starts = np.zeros(1, dtype=np.int64)  # first bucket of each group (finish)

    @property
    def spilled(self) -> bool:
        return self._folder is not None

    def add(self, file_index: int, lines: np.ndarray | None, n: int, samples: Samples) -> None:
        self.parts.append(SampleGroup(
            Samples(samples.server, samples.metric, samples.ts, samples.value, samples.row + self.rows,
                    samples.weight),
            np.full(n, file_index, dtype=np.int32),
            lines if lines is not None else np.full(n, -1, dtype=np.int64)))
        self.weighted = self.weighted or samples.weight is not None
        self.rows += n
        self.held += len(samples)
        self.values.add(samples.metric, samples.value)
        # Every TIME_STRIDE-th time of the whole export (counted across chunks, so a file of a few samples weighs
        # no more per sample than a long one), tallied as values of one "metric": the epoch check needs their median.
        times = samples.ts[(-self.sampled) % TIME_STRIDE::TIME_STRIDE].astype(np.float64)
        self.sampled += len(samples)
        self.times.add(np.zeros(len(times), dtype=np.int8), times)
        kept = self.file_times.get(file_index)
        if kept is None or len(kept) < FILE_TIMES:
            self.file_times[file_index] = (times if kept is None else np.concatenate([kept, times]))[:FILE_TIMES]
        counts = accepted_counts(samples.server, samples.metric, 0)
        if len(counts) > len(self.accepted):
            counts[:len(self.accepted)] += self.accepted
            self.accepted = counts
        else:
            self.accepted[:len(counts)] += counts
        if self.spill_rows and self.held > self.spill_rows:
            self._spill()

    def median_time(self) -> float:
        """The median sample time (ns) of every ``TIME_STRIDE``-th sample read (of a seeded sample of those for an
        export too large to hold), NaN without samples."""
        summary = self.times.summary()
        return next(iter(summary.values())).median if summary else float("nan")

    def _joined(self) -> SampleGroup:
        """The held parts as one group (they are released)."""
        parts, self.parts = self.parts, []
        if not parts:
            empty = np.empty(0)
            none = Samples(empty.astype(np.int32), empty.astype(np.int8), empty.astype(np.int64), empty,
                           empty.astype(np.int64), empty if self.weighted else None)
            return SampleGroup(none, empty.astype(np.int32), empty.astype(np.int64))

        def joined(name: str) -> np.ndarray:
            return np.concatenate([getattr(p.samples, name) for p in parts])

        weight = (np.concatenate([p.samples.weight if p.samples.weight is not None else np.ones(len(p.samples))
                                  for p in parts]) if self.weighted else None)
        ids = None if parts[0].row_ids is None else np.concatenate([p.row_ids for p in parts
                                                                    if p.row_ids is not None])
        samples = Samples(joined("server"), joined("metric"), joined("ts"), joined("value"), joined("row"), weight)
        return SampleGroup(samples, np.concatenate([p.row_file for p in parts]),
                           np.concatenate([p.row_line for p in parts]), ids, parts[0].row_first if ids is None else 0)

    def _spill(self) -> None:
        """Write the held samples to the temporary folder sorted by bucket, with their rows' sources (one raw
        binary file per array; its dtype and each bucket's offsets are kept in memory, so a group reads only
        the flushes and the byte ranges it needs)."""
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="capfc-ingest-")
        group = self._joined()
        bucket = group.samples.server % SPILL_BUCKETS
        order = np.argsort(bucket, kind="stable")  # read order kept within a bucket
        part = group.samples.take(order)
        buckets = bucket[order]
        rows, first = np.unique(part.row, return_index=True)  # every sample of a row is in one bucket
        by_bucket = np.lexsort((rows, buckets[first]))
        rows, row_buckets = rows[by_bucket], buckets[first][by_bucket]
        edges = np.arange(SPILL_BUCKETS + 1)
        arrays = {"server": part.server, "metric": part.metric, "ts": part.ts, "value": part.value, "row": part.row,
                  "row_ids": rows, "row_file": group.row_file[rows - self.held_from],
                  "row_line": group.row_line[rows - self.held_from]}
        if part.weight is not None:
            arrays["weight"] = part.weight
        for name, array in arrays.items():
            try:
                np.ascontiguousarray(array).tofile(os.path.join(self._folder.name, f"{self._flushes:06d}-{name}.bin"))
            except OSError as err:  # helper-51: a full temporary disk ended in a traceback
                raise StorageError(f"ingest: cannot spill samples to the temporary folder {self._folder.name} "
                                   f"({err.strerror or err}); free space there, point TMPDIR at a larger disk, or "
                                   "raise ingest.spill_rows to hold more in memory") from err
            self._dtypes[name] = array.dtype
        offsets = np.searchsorted(buckets, edges)
        self._offsets.append((offsets, np.searchsorted(row_buckets, edges), part.weight is not None))
        self._counts += np.diff(offsets)
        self._flushes += 1
        self.held = 0
        self.held_from = self.rows

    def finish(self) -> None:
        """Spill what is held (when anything was spilled) and settle the groups ``groups`` will read."""
        if self._folder is None:
            return
        self._spill()
        starts, total = [0], 0
        for b, count in enumerate(self._counts.tolist()):
            if total and total + count > max(self.spill_rows // GROUP_SHARE, 1):
                starts.append(b)
                total = 0
            total += count
        self._starts = np.asarray(starts, dtype=np.int64)

    def group_of(self, servers: np.ndarray) -> np.ndarray:
        """The group (``groups``' order) of each server code; 0 for every one when nothing was spilled."""
        codes = np.asarray(servers, dtype=np.int64)
        if self._folder is None:
            return np.zeros(len(codes), dtype=np.int64)
        return np.searchsorted(self._starts, codes % SPILL_BUCKETS, side="right").astype(np.int64) - 1

    def groups(self) -> Iterator[SampleGroup]:
        """The samples: all at once when they fit in memory (even none), else one group of servers at a time
        (``finish`` first)."""
        if self._folder is None:
            yield self._joined()
            return
        try:
            ends = [*self._starts[1:].tolist(), SPILL_BUCKETS]
            for first, end in zip(self._starts.tolist(), ends, strict=True):
                self.parts = [p for p in (self._load(f, first, end) for f in range(self._flushes)) if p is not None]
                if self.parts:
                    yield self._joined()
        finally:
            self.close()

    def _load(self, flush: int, first: int, end: int) -> SampleGroup | None:
        """The samples of buckets [first, end) of one flush, read as byte ranges (no file stays open); None when
        the flush has none (no file is touched)."""
        assert self._folder is not None
        offsets, row_offsets, weighted = self._offsets[flush]
        start, stop = int(offsets[first]), int(offsets[end])
        if stop == start:
            return None
        folder = self._folder.name

        def read(name: str, lo: int, hi: int) -> np.ndarray:
            dtype = self._dtypes[name]
            return np.fromfile(os.path.join(folder, f"{flush:06d}-{name}.bin"), dtype=dtype, count=hi - lo,
                               offset=lo * dtype.itemsize)

        at = {name: read(name, start, stop) for name in _SAMPLE_ARRAYS if name != "weight" or weighted}
        lo, hi = int(row_offsets[first]), int(row_offsets[end])
        rows = {name: read(name, lo, hi) for name in _ROW_ARRAYS}
        order = np.argsort(rows["row_ids"], kind="stable")  # sorted by bucket, then row: a group's rows by row id
        samples = Samples(at["server"], at["metric"], at["ts"], at["value"], at["row"], at.get("weight"))
        return SampleGroup(samples, rows["row_file"][order], rows["row_line"][order], rows["row_ids"][order])

    def close(self) -> None:
        """Remove the spill folder (if any) and drop the held samples; safe to call more than once."""
        self.parts = []
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


