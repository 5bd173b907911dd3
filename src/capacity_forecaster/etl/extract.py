"""Apply a mapping to a raw chunk: server ids, UTC times and metric values, plus quarantine records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from capacity_forecaster.etl import parse
from capacity_forecaster.etl.mapping import Mapping
from capacity_forecaster.etl.readers import BadRow, RawChunk
from capacity_forecaster.etl.servers import REPLACEMENT_CHAR, ServerIds
from capacity_forecaster.etl.specs import MetricName
from capacity_forecaster.schema import METRICS, QUARANTINE_COLUMNS

STAGE = "ingest"
_DETAIL_CHARS = 120
# Checks beyond parsing, numbered after the parse statuses.
_ZERO = 20
_NEGATIVE = 21
_TOO_LARGE = 22
_NEGATIVE_USAGE = 23
_LONG_RUN = 24
_FRACTIONAL = 25
# The longest run one row may stand for: a year of samples (helper-51: a 1e30 ms duration crashed the roll-up, and
# a 100-year one made 36,501 daily rows up to 2123).
MAX_RUN_DAYS = 366


@dataclass(frozen=True)
class ChunkSamples:
    """What one chunk yields.

    Attributes:
        row_server: int32 server code per row (-1 where missing).
        row_ts: int64 UTC ns per row (meaningful where ``row_ok``).
        row_ok: rows with a server and a usable time.
        server, metric, ts, value, row: one entry per accepted value (metric codes index
            schema.METRICS; ``row`` is the row's index within the chunk).
        weight: samples each accepted value stands for (mapping ``weight``), or None.
        quarantine: one record per rejected (row, metric) but the excluded ones, or None when none.
        runs_cut: run-length rows cut at their server's last sample (``weight.until``) and the samples
            that cut dropped; the reader sums them over a file for one warning.
        beyond: the numbers of an epoch time column too large for ``timestamp.unit`` (after 2262),
            with the server code of each row: the reader checks whether another unit fits them.
        excluded: server code and column text of the rows ``exclude_rows`` names as no sample (no record
            each: the reader writes one per file, server and value, ``excluded_quarantine``).
    """

    row_server: np.ndarray
    row_ts: np.ndarray
    row_ok: np.ndarray
    server: np.ndarray
    metric: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    row: np.ndarray
    weight: np.ndarray | None
    quarantine: pd.DataFrame | None
    runs_cut: tuple[int, float] = (0, 0.0)
    beyond: tuple[np.ndarray, np.ndarray] | None = None
    excluded: tuple[np.ndarray, np.ndarray] | None = None


def quarantine_frame(server: object, ds: object, metric: object, value: object,
                     source: object, reason: object) -> pd.DataFrame:
    """A quarantine frame (schema.QUARANTINE_COLUMNS, all text) from arrays or scalars."""
    frame = pd.DataFrame({"server_id": server, "ds": ds, "metric": metric, "value": value,
                          "source": source, "reason": reason, "stage": STAGE},
                         columns=list(QUARANTINE_COLUMNS))
    return frame.astype(object)


def empty_quarantine() -> pd.DataFrame:
    """A quarantine frame without rows."""
    return quarantine_frame([], [], [], [], [], [])


def _quoted(texts: np.ndarray) -> pd.Series:
    if len(texts) == 0:
        return pd.Series([], dtype=object)
    shown = pd.Series(texts, dtype=object).fillna("").astype(str).str.slice(0, _DETAIL_CHARS)
    return "'" + shown + "'"


def _reasons(status: np.ndarray, texts: np.ndarray, templates: dict[int, str]) -> pd.Series:
    """Reason per rejected value: ``templates[status]`` with ``{text}`` replaced by the quoted original."""
    if len(status) == 0:
        return pd.Series([], dtype=object)
    quoted = _quoted(texts)
    out = pd.Series(None, index=quoted.index, dtype=object)
    for code, template in templates.items():
        hit = status == code
        if hit.any():
            head, marker, tail = template.partition("{text}")
            out[hit] = head + quoted[hit] + tail if marker else template
    return out


def _number_templates(column: str, what: str) -> dict[int, str]:
    # A capacity joined from the inventory file is missing too where the server has no row there.
    joined = " or the server has no row in the inventory file" if column.startswith("inventory.") else ""
    return {
        parse.MISSING: f"missing_{what}: column '{column}' is empty{joined}",
        parse.UNPARSEABLE: f"unparseable_{what}: {{text}} in column '{column}'",
        parse.NON_FINITE: f"non_finite_{what}: {{text}} in column '{column}'",
        _ZERO: f"zero_capacity: column '{column}' is {{text}}",
        _NEGATIVE: f"invalid_capacity: {{text}} in column '{column}' (must be > 0)",
    }


# The next finer epoch unit: what a value too large for its unit most likely is.
_FINER = {"s": ("ms", "milliseconds"), "ms": ("us", "microseconds"), "us": ("ns", "nanoseconds")}


def _time_templates(mapping: Mapping) -> dict[int, str]:
    spec = mapping.timestamp
    expected = (f"epoch {spec.unit}" if spec.kind == "epoch"
                else f"format {spec.format!r}" if spec.format else "ISO 8601 text")
    return {
        parse.MISSING: f"missing_timestamp: column '{spec.column}' is empty",
        parse.UNPARSEABLE: f"unparseable_timestamp: {{text}} (expected {expected}"
                           # helper-60: an epoch column read as text said only "expected ISO 8601 text".
                           + ("; numbers since 1970 need timestamp.kind: epoch, other text timestamp.format)"
                              if spec.kind != "epoch" and not spec.format else ")"),
        parse.OUT_OF_RANGE: (f"timestamp_out_of_range: {{text}} in column '{spec.column}'"
                             + (f" (read as {expected})" if spec.kind == "epoch" else "")
                             + " lies outside 1677-09-21..2262-04-11, the range of nanosecond times"
                             # Prometheus and CloudWatch exports give epoch milliseconds (helper-46).
                             + (f": if they are {_FINER[spec.unit][1]}, set timestamp.unit: {_FINER[spec.unit][0]}"
                                if spec.kind == "epoch" and spec.unit in _FINER else "")),
        parse.AMBIGUOUS: f"ambiguous_local_time: {{text}} is skipped or repeated in {spec.timezone}",
    }


class _Rejections:
    """Collects rejected (row, metric) pairs of one chunk with their reasons."""

    def __init__(self, chunk: RawChunk, label: str, ts_column: str,
                 server_at: Callable[[np.ndarray], object]) -> None:
        self.chunk, self.label, self.ts_column, self.server_at = chunk, label, ts_column, server_at
        self.parts: list[pd.DataFrame] = []

    def add(self, index: np.ndarray, metric: object, value_column: str, reason: object) -> None:
        if len(index) == 0:
            return
        columns, lines = self.chunk.columns, self.chunk.lines
        if lines is None:
            sources: object = self.label
        else:
            sources = (self.label + ":" + pd.Series(lines[index]).astype(str)).to_numpy(dtype=object)
        reason = reason.to_numpy(dtype=object) if isinstance(reason, pd.Series) else reason
        self.parts.append(quarantine_frame(
            self.server_at(index), parse.texts_at(columns[self.ts_column], index), metric,
            parse.texts_at(columns[value_column], index), sources, reason))

    def frame(self) -> pd.DataFrame | None:
        parts = [p for p in self.parts if len(p)]
        return pd.concat(parts, ignore_index=True) if parts else None


# Forms of a metric whose values below 0 are not-collected codes, with what the message calls them.
_AMOUNTS = {"usage": "a usage", "free": "a free amount", "idle": "an idle percent"}


def _wide_metric(chunk: RawChunk, numbers: parse.ColumnNumbers, mapping: Mapping, metric: MetricName,
                 max_abs: float) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Values of one wide metric, the status of each row (0 = accepted) and the reason of each rejection."""
    spec = mapping.metrics[metric]
    value_column = spec.value_column
    capacity_column = spec.capacity_column
    raw, status = numbers(value_column)
    form = spec.form
    if form in ("percent", "idle"):  # "17,43 %" in a percent column is 17.43
        raw, status = parse.with_percent_signs(chunk.columns[value_column], raw, status,
                                               np.ones(len(raw), dtype=bool), numbers.decimal)
    templates = _number_templates(value_column, "value")
    values = raw * 100.0 if form == "fraction" else 100.0 - raw if form == "idle" else raw
    if capacity_column is not None:
        capacity, cap_status = numbers(capacity_column)
        cap_status = cap_status.copy()
        with np.errstate(invalid="ignore"):
            cap_status[(cap_status == parse.OK) & (capacity == 0)] = _ZERO
            cap_status[(cap_status == parse.OK) & (capacity < 0)] = _NEGATIVE
        cap_bad = (status == parse.OK) & (cap_status != parse.OK)
        # Capacity statuses are shifted by 100 so that one status array carries both columns.
        status = np.where(cap_bad, cap_status.astype(np.int16) + 100, status).astype(np.int16)
        templates |= {code + 100: text for code, text in _number_templates(capacity_column, "capacity").items()}
        if form in ("usage", "free"):
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                total = capacity * spec.capacity_multiplier
                values = (raw if form == "usage" else total - raw) / total * 100.0
    if form in _AMOUNTS:
        # A usage, free amount or idle percent below 0 is an agent's "not collected" code (vCenter's -1), not a
        # measurement: a usage would pass as 0 % and make a busy server look idle, an idle percent as 101 % cpu.
        with np.errstate(invalid="ignore"):
            status = np.where((status == parse.OK) & (raw < 0), _NEGATIVE_USAGE, status).astype(np.int16)
        templates[_NEGATIVE_USAGE] = (f"negative_value: {{text}} in column '{value_column}' ({_AMOUNTS[form]} "
                                      "below 0 is a not-collected code, not a measurement)")
    with np.errstate(invalid="ignore"):
        status = np.where((status == parse.OK) & ~(np.abs(values) <= max_abs), _TOO_LARGE, status)
    templates[_TOO_LARGE] = (f"value_out_of_range: {{text}} from column '{value_column}' "
                             f"(|percent| > {max_abs:g})")
    rejected = np.flatnonzero(status != parse.OK)
    texts = np.empty(len(rejected), dtype=object)
    if len(rejected):
        on_capacity = status[rejected] >= 100
        texts[~on_capacity] = parse.texts_at(chunk.columns[value_column], rejected[~on_capacity])
        if on_capacity.any() and capacity_column is not None:
            texts[on_capacity] = parse.texts_at(chunk.columns[capacity_column], rejected[on_capacity])
        if form in ("usage", "free"):
            huge = status[rejected] == _TOO_LARGE
            texts[huge] = [f"{v:g}" for v in values[rejected[huge]]]
    return values, status, _reasons(status[rejected], texts, templates)


def _long_metric(chunk: RawChunk, mapping: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Metric code per row of a long chunk (-1 where the name is not mapped) and the name as read."""
    spec = mapping.long
    assert spec is not None
    n = chunk.num_rows
    if spec.metric is not None:
        return np.full(n, METRICS.index(spec.metric), dtype=np.int8), np.full(n, spec.metric, dtype=object)
    assert spec.metric_column is not None
    names = {**{m: m for m in METRICS}, **spec.metric_names}
    text = parse.as_text(chunk.columns[spec.metric_column])
    encoded = pc.dictionary_encode(text)
    lookup = np.array([METRICS.index(names[v]) if v in names else -1
                       for v in encoded.dictionary.to_pylist()] + [-1], dtype=np.int8)
    indices = pc.fill_null(encoded.indices, len(lookup) - 1).to_numpy(zero_copy_only=False)
    codes = lookup[np.asarray(indices, dtype=np.int64)]
    shown = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    return codes, np.where(codes >= 0, np.array(METRICS, dtype=object)[np.maximum(codes, 0)], shown)


@dataclass(frozen=True)
class _Rows:
    """Row-level checks shared by every metric of a chunk.

    Attributes:
        ok: rows with a server, a usable time and (if mapped) a usable weight.
        no_server: rows without a server id.
        rejects: (rows, reasons) of the time check, then of the weight check.
        server_reason: the reason of each row without a usable server id (object array, one entry
            per row of the chunk; empty elsewhere).
    """

    ok: np.ndarray
    no_server: np.ndarray
    rejects: tuple[tuple[np.ndarray, pd.Series], ...]
    server_reason: np.ndarray


Accepted = tuple[np.ndarray, np.ndarray, np.ndarray]  # (row index, metric code, value)
# (row server codes, server names) -> per-row joined inventory columns, named inventory.<column>.
CapacityColumns = Callable[[np.ndarray, list[str]], dict[str, pa.Array]]


def _wide_values(chunk: RawChunk, numbers: parse.ColumnNumbers, mapping: Mapping, rows: _Rows,
                 rejections: _Rejections, max_abs: float) -> list[Accepted]:
    accepted = []
    for metric in mapping.metrics:
        value_column = mapping.metrics[metric].value_column
        no_server = np.flatnonzero(rows.no_server)
        rejections.add(no_server, metric, value_column, rows.server_reason[no_server])
        for index, reasons in rows.rejects:
            rejections.add(index, metric, value_column, reasons)
        values, status, reasons = _wide_metric(chunk, numbers, mapping, metric, max_abs)
        rejected = np.flatnonzero(status != parse.OK)
        keep = rows.ok[rejected]
        rejections.add(rejected[keep], metric, value_column, reasons[keep])
        good = np.flatnonzero(rows.ok & (status == parse.OK))
        accepted.append((good, np.full(len(good), METRICS.index(metric), dtype=np.int8), values[good]))
    return accepted


def _long_values(chunk: RawChunk, numbers: parse.ColumnNumbers, mapping: Mapping, rows: _Rows,
                 rejections: _Rejections, max_abs: float) -> list[Accepted]:
    spec = mapping.long
    assert spec is not None
    codes, shown_metric = _long_metric(chunk, mapping)
    no_server = np.flatnonzero(rows.no_server)
    rejections.add(no_server, shown_metric[no_server], spec.value, rows.server_reason[no_server])
    for index, reasons in rows.rejects:
        rejections.add(index, shown_metric[index], spec.value, reasons)
    unknown = np.flatnonzero(rows.ok & (codes < 0))
    known = ", ".join(sorted({*METRICS, *spec.metric_names}))
    rejections.add(unknown, shown_metric[unknown], spec.value,
                   "unknown_metric: " + _quoted(shown_metric[unknown]) +
                   f" in column '{spec.metric_column}' (mapped names: {known})")
    values, status = numbers(spec.value)
    fractions = [METRICS.index(m) for m in mapping.fraction_metrics()]
    # "17,43 %" is 17.43 for a metric in percent (a fraction with a percent sign stays unparseable).
    values, status = parse.with_percent_signs(chunk.columns[spec.value], values, status,
                                              (codes >= 0) & ~np.isin(codes, fractions), numbers.decimal)
    if fractions:
        values = np.where(np.isin(codes, fractions), values * 100.0, values)
    with np.errstate(invalid="ignore"):
        status = np.where((status == parse.OK) & ~(np.abs(values) <= max_abs), _TOO_LARGE, status)
    templates = _number_templates(spec.value, "value") | {
        _TOO_LARGE: f"value_out_of_range: {{text}} in column '{spec.value}' (|percent| > {max_abs:g})"}
    bad = np.flatnonzero(rows.ok & (codes >= 0) & (status != parse.OK))
    rejections.add(bad, shown_metric[bad], spec.value,
                   _reasons(status[bad], parse.texts_at(chunk.columns[spec.value], bad), templates))
    good = np.flatnonzero(rows.ok & (codes >= 0) & (status == parse.OK))
    return [(good, codes[good], values[good])]


def _row_weights(numbers: parse.ColumnNumbers, mapping: Mapping, checked: np.ndarray,
                 chunk: RawChunk) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Samples per row (mapping ``weight``), rows of ``checked`` whose weight is unusable, and why."""
    spec = mapping.weight
    assert spec is not None and mapping.interval_seconds is not None
    raw, status = numbers(spec.column)
    status = status.copy()
    with np.errstate(invalid="ignore"):
        status[(status == parse.OK) & (raw <= 0)] = _NEGATIVE
    if spec.unit == "count":
        weight = raw
        with np.errstate(invalid="ignore"):
            status[(status == parse.OK) & (raw != np.floor(raw))] = _FRACTIONAL
    else:
        # A duration is a whole number of samples; clock jitter (299,000 ms at 300 s) rounds away,
        # and a row is at least the one sample it reports.
        with np.errstate(invalid="ignore", over="ignore"):
            weight = np.maximum(np.rint(raw * (parse.NS_PER_UNIT[spec.unit] / 1e9 / mapping.interval_seconds)), 1.0)
    most = MAX_RUN_DAYS * 86_400 / mapping.interval_seconds
    with np.errstate(invalid="ignore"):
        status[(status == parse.OK) & ~(weight <= most)] = _LONG_RUN
    weight = np.where(status == parse.OK, weight, 1.0)  # a rejected row's weight is never used
    templates = _number_templates(spec.column, "weight")
    templates[_NEGATIVE] = f"invalid_weight: {{text}} in column '{spec.column}' (must be > 0)"
    templates[_FRACTIONAL] = f"invalid_weight: {{text}} in column '{spec.column}' (a count of samples is whole)"
    templates[_LONG_RUN] = (f"invalid_weight: {{text}} in column '{spec.column}' (a run of more than {MAX_RUN_DAYS} "
                            f"days of samples; is weight.unit '{spec.unit}' right?)")
    del templates[_ZERO]
    bad = np.flatnonzero(checked & (status != parse.OK))
    return weight, bad, _reasons(status[bad], parse.texts_at(chunk.columns[spec.column], bad), templates)


def _excluded(chunk: RawChunk, numbers: parse.ColumnNumbers, mapping: Mapping,
              checked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``checked`` the mapping's ``exclude_rows`` names as no sample, with the text of their column."""
    spec = mapping.exclude_rows
    assert spec is not None
    column = chunk.columns[spec.column]
    hit = np.zeros(chunk.num_rows, dtype=bool)
    wanted = [v for v in spec.values if isinstance(v, float)]
    if wanted:
        values, status = numbers(spec.column)
        hit |= (status == parse.OK) & np.isin(values, wanted)
    texts = [v.strip() for v in spec.values if isinstance(v, str)]
    if texts:
        hit |= pc.fill_null(pc.is_in(parse.as_text(column), pa.array(texts, pa.string())), False).to_numpy(
            zero_copy_only=False)
    rows = np.flatnonzero(checked & hit)
    return rows, pd.Series(parse.texts_at(column, rows), dtype=object).fillna("").astype(str).to_numpy(dtype=object)


def excluded_quarantine(counts: dict[tuple[str, str], int], mapping: Mapping, label: str) -> pd.DataFrame:
    """One quarantine record per (server, value) of the rows of one file the mapping excludes, with their count.

    Excluded rows are counted as quarantined rows, but a record per row would make the quarantine grow with
    data the mapping asked to leave out (a CloudWatch export's unwanted metrics: two records per sample).
    """
    spec = mapping.exclude_rows
    assert spec is not None
    keys = sorted(counts)
    shown = _quoted(np.array([text for _, text in keys], dtype=object))
    reasons = [f"excluded_row: {counts[key]:,} row(s) whose column '{spec.column}' is {quoted} (mapping "
               f"exclude_rows: {spec.reason})" for key, quoted in zip(keys, shown, strict=True)]
    return quarantine_frame(np.array([server for server, _ in keys], dtype=object), None, None,
                            np.array([text for _, text in keys], dtype=object), label, np.array(reasons, dtype=object))


def _clip_runs(numbers: parse.ColumnNumbers, mapping: Mapping, checked: np.ndarray, ts: np.ndarray,
               weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, pd.Series, tuple[int, float]]:
    """Runs cut at their server's last sample (mapping ``weight.until``, an inventory-file time).

    A run of ``w`` samples from ``ts`` claims samples up to ``ts + (w - 1) * interval``; those after
    the server's last sample are dropped (the export padded a stopped VM with one long idle run) and
    counted (the reader warns once per file). A row that starts after the last sample is rejected. A
    server without a known last sample keeps its runs.

    Returns:
        (weights, rows of ``checked`` rejected, their reasons, (runs cut, samples dropped)).
    """
    spec = mapping.weight
    assert spec is not None and spec.until is not None and mapping.interval_seconds is not None
    until, _ = numbers(f"inventory.{spec.until}")
    interval = mapping.interval_seconds * 1e9
    known = checked & np.isfinite(until)
    with np.errstate(invalid="ignore"):
        allowed = np.floor((until - ts.astype(np.float64)) / interval) + 1.0
    late = known & (allowed < 1.0)
    clipped = known & ~late & (allowed < weight)
    cut = (int(clipped.sum()), float(np.sum(weight[clipped] - allowed[clipped])) if clipped.any() else 0.0)
    weight = np.where(clipped, allowed, weight)
    rows = np.flatnonzero(late)
    last = pd.to_datetime(until[rows], unit="ns", utc=True).strftime("%Y-%m-%d %H:%M:%S")
    reasons = pd.Series([f"after_last_sample: the run starts after the server's last sample {t} UTC (inventory "
                         f"column '{spec.until}', weight.until)" for t in last], dtype=object)
    return weight, rows, reasons, cut


def _server_reasons(chunk: RawChunk, mapping: Mapping, no_server: np.ndarray) -> np.ndarray:
    """Why each row without a server code has none: an empty id, or an id with undecodable bytes."""
    column = mapping.server_id.column
    reasons = np.full(chunk.num_rows, "", dtype=object)
    index = np.flatnonzero(no_server)
    if len(index) == 0 or column is None:
        return reasons
    ids = pd.Series(parse.texts_at(chunk.columns[column], index), dtype=object).fillna("").astype(str)
    where = ("" if chunk.lines is None
             else " on line " + pd.Series(chunk.lines[index]).astype(str))
    undecodable = ("undecodable_server_id: " + _quoted(ids.to_numpy(dtype=object)) + f" in column '{column}'"
                   + where + f" holds bytes that are not valid {mapping.csv.encoding} (shown as U+FFFD); "
                   "fix the file or set csv.encoding in the mapping")
    absent = np.full(len(index), f"missing_server_id: column '{column}' is empty", dtype=object)
    pattern = mapping.server_id.pattern
    if pattern is not None:
        unmatched = ("unmatched_server_id: " + _quoted(ids.to_numpy(dtype=object)) + f" in column '{column}' does "
                     f"not match server_id.pattern {pattern!r}")
        absent = np.where((ids != "").to_numpy(), unmatched.to_numpy(dtype=object), absent)
    reasons[index] = np.where(ids.str.contains(REPLACEMENT_CHAR, regex=False).to_numpy(), undecodable.to_numpy(),
                              absent)
    return reasons


def extract(chunk: RawChunk, numbers: parse.ColumnNumbers, mapping: Mapping, label: str,
            servers: ServerIds, file_server: str | None, max_abs: float,
            capacities: CapacityColumns | None = None) -> ChunkSamples:
    """Turn a raw chunk into accepted values and quarantine records.

    Every row yields, per metric of a wide mapping (or once for a long one), either an accepted value
    or one quarantine record; the first failing check gives the reason (server id, then time, then
    ``exclude_rows``, then weight, then metric name, then value and capacity). With ``weight.time``
    ``last`` a row's samples end at its time, so its accepted time is its run's first sample.

    Args:
        chunk: the rows as read.
        numbers: the chunk's columns parsed as numbers (shared with the inventory deriver).
        mapping: the source mapping.
        label: the file, for quarantine sources.
        servers: the ingest's server dictionary (grows with new ids).
        file_server: the server id taken from the file name (prefixed), or None.
        max_abs: values whose magnitude exceeds this are quarantined (they cannot be a percentage).
        capacities: per-row columns joined from the inventory file (``inventory.<column>``) for
            ``metrics.<m>.inventory_capacity``, given the rows' server codes and the server names.

    Returns:
        The ChunkSamples.
    """
    ts_column = mapping.timestamp.column
    if file_server is not None:
        row_server = np.full(chunk.num_rows, servers.code(file_server), dtype=np.int32)

        def server_at(index: np.ndarray) -> object:
            return file_server
    else:
        id_text = parse.as_text(chunk.columns[mapping.server_id.column or ""])
        row_server = servers.codes(id_text, mapping.server_id)

        def server_at(index: np.ndarray) -> object:
            ids = pd.Series(parse.texts_at(id_text, index), dtype=object).fillna("").astype(str)
            return np.array([mapping.server_id.server_id(v) for v in ids], dtype=object)

    if capacities is not None:
        chunk = RawChunk({**chunk.columns, **capacities(row_server, servers.names)}, chunk.lines, chunk.bad_rows)
        numbers = parse.ColumnNumbers(chunk.columns, numbers.decimal)
    row_ts, ts_status = parse.parse_timestamps(chunk.columns[ts_column], mapping.timestamp)
    beyond = None
    excluded_rows = None
    column_type = chunk.columns[ts_column].type
    if mapping.timestamp.kind == "epoch" and not (pa.types.is_timestamp(column_type) or pa.types.is_date(column_type)) \
            and (ts_status == parse.OUT_OF_RANGE).any():
        late = np.flatnonzero((ts_status == parse.OUT_OF_RANGE) & (row_server >= 0))  # rows with a server
        beyond = (numbers(ts_column)[0][late], row_server[late]) if len(late) else None
    if mapping.weight is None and (ts_status == parse.AMBIGUOUS).any():
        # The hour a DST change repeats: placed by file order within each server's series (a
        # run-length row covers an unknown part of the hour: not placed).
        series = row_server.astype(np.int64)
        if mapping.layout == "long":
            series = series * 64 + _long_metric(chunk, mapping)[0].astype(np.int64) + 1
        row_ts, ts_status = parse.resolve_repeated(row_ts, ts_status, series, mapping.timestamp.timezone)
        row_ts = np.where(ts_status == parse.OK, row_ts, 0)
    no_server = row_server < 0
    ts_status = np.where(no_server, parse.OK, ts_status)
    time_rows = np.flatnonzero(ts_status != parse.OK)
    ok = ~no_server & (ts_status == parse.OK)
    rejects = [(time_rows, _reasons(ts_status[time_rows], parse.texts_at(chunk.columns[ts_column], time_rows),
                                    _time_templates(mapping)))]
    if mapping.exclude_rows is not None:
        excluded, excluded_texts = _excluded(chunk, numbers, mapping, ok)
        ok[excluded] = False
        excluded_rows = (row_server[excluded], excluded_texts)
    row_weight = None
    runs_cut = (0, 0.0)
    if mapping.weight is not None:
        row_weight, weight_rows, weight_reasons = _row_weights(numbers, mapping, ok, chunk)
        ok[weight_rows] = False
        rejects.append((weight_rows, weight_reasons))
        if mapping.weight.time == "last":
            # The row's time is its run's last sample: the run starts (weight - 1) intervals before it.
            step = (row_weight - 1.0) * (mapping.interval_seconds or 0.0) * 1e9
            row_ts = np.where(ok, row_ts - step.astype(np.int64), row_ts)
        if mapping.weight.until is not None:
            row_weight, late_rows, late_reasons, runs_cut = _clip_runs(numbers, mapping, ok, row_ts, row_weight)
            ok[late_rows] = False
            rejects.append((late_rows, late_reasons))
    rows = _Rows(ok=ok, no_server=no_server, rejects=tuple(rejects),
                 server_reason=_server_reasons(chunk, mapping, no_server))
    rejections = _Rejections(chunk, label, ts_column, server_at)
    values_of = _wide_values if mapping.layout == "wide" else _long_values
    accepted = values_of(chunk, numbers, mapping, rows, rejections, max_abs)
    index = np.concatenate([a[0] for a in accepted]).astype(np.int64)
    return ChunkSamples(
        row_server=row_server, row_ts=row_ts, row_ok=rows.ok,
        server=row_server[index], metric=np.concatenate([a[1] for a in accepted]), ts=row_ts[index],
        value=np.concatenate([a[2] for a in accepted]).astype(np.float64), row=index,
        weight=None if row_weight is None else row_weight[index],
        quarantine=rejections.frame(), runs_cut=runs_cut, beyond=beyond, excluded=excluded_rows,
    )


def bad_row_quarantine(bad_rows: tuple[BadRow, ...], label: str, metrics: tuple[str | None, ...],
                       file_server: str | None) -> pd.DataFrame:
    """Quarantine records for malformed or over-long CSV lines: one per metric the line would have carried.

    The ``value`` column holds the start of the line as read, since its fields cannot be told apart.
    """
    if not bad_rows:
        return empty_quarantine()
    texts = np.array([b.text[:_DETAIL_CHARS] for b in bad_rows], dtype=object)
    reasons = np.array([f"wrong_field_count: expected {b.expected} fields, found {b.found}" if b.length is None
                        else f"line_too_long: line {b.line} has {b.length:,} bytes, more than "
                             f"ingest.max_line_bytes ({b.limit:,}); it was not read (raise the setting to read it)"
                        for b in bad_rows], dtype=object)
    sources = np.array([f"{label}:{b.line}" for b in bad_rows], dtype=object)
    parts = [quarantine_frame(file_server, None, metric, texts, sources, reasons) for metric in metrics]
    return pd.concat(parts, ignore_index=True)
