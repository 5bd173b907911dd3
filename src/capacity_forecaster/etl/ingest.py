"""Ingest: real monitoring exports (CSV/Parquet, local or S3) into daily P95 long frames."""

from __future__ import annotations

import logging
import posixpath
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from capacity_forecaster.config import IngestConfig
from capacity_forecaster.errors import InputError
from capacity_forecaster.etl.extract import (
    bad_row_quarantine,
    empty_quarantine,
    excluded_quarantine,
    extract,
    quarantine_frame,
)
from capacity_forecaster.etl.guard import (
    VALUE_COUNT_COLUMNS,
    counted_values,
    main_reasons,
    sample_records,
    value_columns,
)
from capacity_forecaster.etl.inventory import (
    CapacityLookup,
    InventoryDeriver,
    id_key,
    ids_only_inventory,
    read_inventory,
)
from capacity_forecaster.etl.inventory_join import SOURCE_COLUMN
from capacity_forecaster.etl.mapping import Mapping
from capacity_forecaster.etl.parse import NS_PER_UNIT, ColumnNumbers
from capacity_forecaster.etl.partial_days import (
    Carryover,
    day_pieces,
    empty_partial_days,
    pool_staged,
    stage_partial_days,
)
from capacity_forecaster.etl.readers import read_chunks
from capacity_forecaster.etl.rollup import (
    DAY_SECONDS,
    Duplicates,
    Samples,
    empty_daily,
    measured_intervals,
    refit_coverage,
    rollup_daily,
    sort_and_dedupe,
)
from capacity_forecaster.etl.servers import ServerIds, server_from_filename
from capacity_forecaster.etl.sources import FilesystemFor, SourceFile, expand_sources, identical_files
from capacity_forecaster.etl.specs import SOURCE_DIR, InventorySpec
from capacity_forecaster.etl.spill import SampleGroup, SamplePool
from capacity_forecaster.etl.units import fraction_server_warnings, fraction_warnings, over_hundred_warnings
from capacity_forecaster.messages import examples
from capacity_forecaster.schema import METRICS

logger = logging.getLogger(__name__)

_YEAR_1990_NS = 631_152_000 * 1_000_000_000
# A file whose epoch times another unit fits on at least this share of its rows is refused; fewer are stray rows,
# quarantined one by one.
_UNIT_SHARE = 0.01
_MONTH_NS = 31 * 86_400 * 1_000_000_000
_BEYOND_SAMPLE = 10_000  # numbers kept per file to judge the unit of epoch times too large for the mapping's unit
_YEAR_2100_NS = 4_102_444_800 * 1_000_000_000
# Jitter puts a day's coverage a few percent over 1; half as many samples again as the interval allows is two
# sources of one series.
OVERFULL_COVERAGE = 1.5
# A percentage beyond this magnitude is not a measurement (an overflowed counter, a wrong column);
# smaller out-of-range values are kept as read for the ETL stage's tolerance rules.
MAX_ABS_PERCENT = 1e6


@dataclass(frozen=True)
class IngestResult:
    """What an ingest produced.

    Attributes:
        raw_metrics: one row per (server_id, ds, metric): server_id (str), ds (datetime64[ns], the
            local date), metric (str), value (float64, the day's P95), samples (int64), value_mean,
            value_max, coverage (float64) and low_coverage (bool).
        inventory: schema.INVENTORY_COLUMNS. Without an inventory section in the mapping it only
            knows the server ids (hostname = id, other text ``unknown``, numbers NaN) and
            ``inventory_ids_only`` is True. An inventory file's rows are as read, ids not yet joined
            to the metrics' (``inventory_join.join_to_metrics``, which ``capfc ingest`` applies
            against every server of the lake), plus ``inventory_source`` (see ``_inventory_source``).
        quarantine: schema.QUARANTINE_COLUMNS (all text): one record per rejected (row, metric), but one per
            file, server and value for the rows ``exclude_rows`` names (``extract.excluded_quarantine``).
        rows_read: data rows read (well-formed or not; header lines excluded).
        rows_used: rows that gave at least one accepted value.
        rows_quarantined: rows that gave none (rows_read == rows_used + rows_quarantined).
        rows_excluded: of those, the rows the mapping's ``exclude_rows`` names as no sample (the
            quarantine-share guard leaves them out: the mapping asked for it).
        file_copies: files of ``files`` not read because their bytes equal an earlier file's.
        files: the files read, in order.
        warnings: things the user should know that did not stop the ingest (e.g. header-only files).
        deferred: those of ``warnings`` about what the run would write (servers lost, overfull days,
            look-alike ids): not logged by ``ingest``; ``capfc ingest`` logs them once its guards let the
            run write (a refused run says one line).
        inventory_ids_only: the inventory was derived from the server ids alone (no inventory
            section): a re-ingest adds such rows for new servers but never overwrites known ones.
        values: per (server_id, metric), the values read and how many could not be read
            (guard.value_counts: server_id, metric, column, values, unreadable, example).
        partial_days: the staging of incomplete days after this run (schema.PARTIAL_DAY_COLUMNS):
            the staged rows of days this run did not deliver, plus the samples of this run's
            incomplete days that a later run may complete (see ``etl.partial_days``).
        pooled_days: server_id, ds, metric of the raw_metrics rows that pooled staged samples.
        carryover: what this run pooled from, and left in, the staging.
    """

    raw_metrics: pd.DataFrame
    inventory: pd.DataFrame
    quarantine: pd.DataFrame
    rows_read: int
    rows_used: int
    rows_quarantined: int
    files: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    inventory_ids_only: bool = False
    values: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(VALUE_COUNT_COLUMNS)))
    partial_days: pd.DataFrame = field(default_factory=empty_partial_days)
    pooled_days: pd.DataFrame = field(default_factory=lambda: empty_daily()[["server_id", "ds", "metric"]])
    carryover: Carryover = field(default_factory=Carryover)
    deferred: tuple[str, ...] = field(default=())
    rows_excluded: int = 0
    file_copies: int = 0


def _duplicate_quarantine(group: SampleGroup, duplicates: Duplicates, labels: list[str],
                          names: list[str]) -> pd.DataFrame:
    if len(duplicates.position) == 0:
        return empty_quarantine()
    samples, pos = group.samples, duplicates.position
    first_source = group.sources(labels, duplicates.first)
    times = pd.Series(pd.to_datetime(samples.ts[pos], utc=True)).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return quarantine_frame(
        np.asarray(names, dtype=object)[samples.server[pos]],
        times.to_numpy(dtype=object),
        np.asarray(METRICS, dtype=object)[samples.metric[pos]],
        pd.Series(samples.value[pos]).map(repr).to_numpy(dtype=object),
        group.sources(labels, pos),
        ("duplicate_timestamp: same server, metric and time as " + pd.Series(first_source, dtype=object)
         + " (that one is kept)").to_numpy(dtype=object),
    )


# The share of samples repeated with another value that is worth a warning: an export with two statistics or two
# sources per time repeats half of them; a clock change or a re-sent sample repeats a handful (NAB's EC2 file: 11 of
# 22,082; Bitbrains Rnd: 1 of 670,959), which the quarantine keeps.
CONFLICT_SHARE = 0.01


def _count_conflicts(group: SampleGroup, duplicates: Duplicates, state: _Reading) -> None:
    """Count the repeats whose value differs from the sample kept (``_warn_conflicts``), keeping the first as an
    example."""
    value = group.samples.value
    repeat, first = value[duplicates.position], value[duplicates.first]
    differ = np.flatnonzero(~np.isclose(repeat, first, rtol=1e-9, atol=1e-9, equal_nan=True))
    if len(differ) == 0:
        return
    state.conflicts += len(differ)
    if not state.conflict_example:
        at = int(duplicates.position[differ[0]])
        when = pd.Timestamp(int(group.samples.ts[at]), tz="UTC")
        state.conflict_example = (f"{state.servers.names[group.samples.server[at]]} "
                                  f"{METRICS[group.samples.metric[at]]} at {when:%Y-%m-%dT%H:%M:%SZ}: "
                                  f"{first[differ[0]]:g} kept, {repeat[differ[0]]:g} quarantined")


def _warn_conflicts(state: _Reading, samples: int) -> None:
    """One warning for repeated (server, metric, time)s read with another value, more than ``CONFLICT_SHARE`` of the
    samples: the first read is kept, which is neither statistic when an export holds several per time (helper-66:
    CloudWatch rows of Average and Maximum in one file read as daily P95 90.1, the Averages' 62.9 and the Maximums'
    93.8)."""
    if state.conflicts > CONFLICT_SHARE * samples:
        state.defer(f"{state.conflicts:,} of {samples:,} samples repeat the server, metric and time of another with "
                    f"a different value (e.g. {state.conflict_example}); the first read is kept and the repeats are "
                    "quarantined as duplicate_timestamp: if a column tells them apart (a statistic such as "
                    "Average/Maximum, a replica), keep one with exclude_rows")


def _warn_lookalike_ids(ids: pd.Series, state: _Reading) -> None:
    """One warning for server ids that differ only in case, surrounding spaces or Unicode form (``id_key``): kept
    as separate servers (nothing says they are one), each with part of the history (helper-38: ``WEB-04`` in July,
    ``web-04`` in August read as one stale and one short-history server)."""
    keys = id_key(ids)
    twins = ids[keys.duplicated(keep=False)]
    if twins.empty:
        return
    groups = twins.groupby(keys[twins.index]).agg(lambda g: " / ".join(repr(i) for i in sorted(g)))
    state.defer(f"{len(groups)} server id(s) differ from another only in case, spaces or Unicode form and are kept as "
                f"separate servers: {examples(groups, sep='; ')}; if they are one server, set server_id.case: lower "
                "in the mapping (case and surrounding spaces) or make the export's ids agree, and ingest again with "
                "--replace")


# A series with at most this many samples on its typical complete day is hourly or coarser.
COARSE_SAMPLES_PER_DAY = 24


def _warn_coarse_samples(daily: pd.DataFrame, state: _Reading) -> None:
    """One warning when series are sampled hourly or coarser (2-24 samples a day): the P95 of a day's 24 hourly
    values (averages, usually) is well below the P95 of its 5-minute samples, so peaks read lower and the breach
    threshold is reached later (helper-60: VM 407 from hourly means read 30 days over 80 % instead of 56, high
    instead of critical). A daily source (one value a day) is taken as the daily value it is."""
    full = daily[daily["coverage"] >= 1.0 - 1e-9]
    if full.empty:
        return
    typical = full.groupby(["server_id", "metric"], observed=True)["samples"].median()
    coarse = typical[(typical >= 2) & (typical <= COARSE_SAMPLES_PER_DAY)]
    if coarse.empty:
        return
    first = coarse.sort_index()
    server, metric = first.index[0]
    state.defer(f"{len(coarse):,} of {len(typical):,} series have only {COARSE_SAMPLES_PER_DAY} or fewer samples a "
                f"day (e.g. {server} {metric}: {first.iloc[0]:g}): the daily P95 of hourly values (averages, "
                "usually) is lower than that of 5-minute samples, so peaks read lower and breaches show later; "
                "export 5-minute (or finer) samples if the monitoring keeps them")


def _warn_overfull_days(daily: pd.DataFrame, state: _Reading, weight_unit: str | None = None) -> None:
    """One warning for days holding far more samples than the interval allows (``OVERFULL_COVERAGE``): two
    exports of one server whose times differ by a few seconds are both pooled into its days, which no duplicate
    check can see (helper-38: a second collector 7 s out of phase doubled 20 days of one VM)."""
    over = daily[daily["coverage"] > OVERFULL_COVERAGE]
    if over.empty:
        return
    worst = over.sort_values(["coverage", "server_id", "metric", "ds"], ascending=[False, True, True, True]).iloc[0]
    state.defer(f"{len(over):,} daily value(s) of {over['server_id'].nunique():,} server(s) hold more than "
                f"{OVERFULL_COVERAGE:g} times the samples their interval allows (e.g. {worst['server_id']} "
                f"{worst['metric']} on {pd.Timestamp(worst['ds']).date()}: coverage {worst['coverage']:.2f}): are two "
                "exports of the same server overlapping with shifted times? Their samples were pooled"
                # helper-51: durations in seconds read with unit ms gave coverage 1140 and only the overlap hint.
                + (f"; or does weight.unit '{weight_unit}' make each row stand for too many samples?"
                   if weight_unit is not None else ""))


def _warn_lost_servers(quarantine: pd.DataFrame, used: set[str], state: _Reading) -> None:
    """One warning naming servers whose every row was quarantined: otherwise they leave the fleet unremarked
    (an inventory file without their row, so no capacity; a capacity of 0)."""
    if quarantine.empty:
        return
    named = quarantine[sample_records(quarantine) & quarantine["server_id"].notna()
                       & ~quarantine["server_id"].isin(used)]
    if named.empty:
        return
    rows = main_reasons(named, ["server_id"])
    shown = examples((f"{server} ({int(row.rows):,} {'row' if row.rows == 1 else 'rows'}, mostly {row.reason})"
                      for server, row in rows.head(3).iterrows()), total=len(rows))
    state.defer(f"{len(rows)} server(s) had every row quarantined, so they are not in raw/: {shown}; see the "
                "quarantine table for each row's reason")


def _warn_lost_series(quarantine: pd.DataFrame, kept: Sequence[pd.DataFrame], used: set[str],
                      state: _Reading) -> None:
    """One warning naming the series of kept servers whose every sample was quarantined (helper-66: a NIC whose
    capacity was refused lost the server's network series, said nowhere but in the quarantine). ``kept``: the rows
    this run writes (server_id, metric)."""
    if quarantine.empty:
        return
    named = quarantine[sample_records(quarantine) & quarantine["server_id"].isin(used)
                       & quarantine["metric"].isin(METRICS)]
    if named.empty:
        return
    keys = ["server_id", "metric"]
    # Per series first (a quarantine of millions of records is a few series), then those not written.
    rows = main_reasons(named, keys)
    candidates = rows.index.to_frame(index=False).astype(str)
    servers = set(candidates["server_id"])
    mine = pd.concat([frame.loc[frame["server_id"].isin(servers), keys] for frame in kept], ignore_index=True)
    written = pd.MultiIndex.from_frame(mine.astype(str).drop_duplicates())
    rows = rows[~pd.MultiIndex.from_frame(candidates).isin(written)]
    if rows.empty:
        return
    flat = rows.head(3).reset_index()
    shown = examples((f"{server} {metric} ({count:,} {'sample' if count == 1 else 'samples'}, mostly {reason})"
                      for server, metric, count, reason in zip(flat["server_id"], flat["metric"],
                                                               flat["rows"].astype(int), flat["reason"], strict=True)),
                     total=len(rows))
    state.defer(f"{len(rows)} series had every sample quarantined, so they are not in raw/ (their servers' other "
                f"metrics are): {shown}; see the quarantine table for each sample's reason")


def _other_unit(mapping: Mapping, number: float) -> str | None:
    """The first epoch unit other than the mapping's that puts ``number`` between 1990 and 2100, or None."""
    fits = [unit for unit, factor in NS_PER_UNIT.items()
            if _YEAR_1990_NS <= number * factor < _YEAR_2100_NS and unit != mapping.timestamp.unit]
    return fits[0] if fits else None


def _early_epochs(mapping: Mapping, median_ns: float) -> tuple[str, str] | None:
    """(what is wrong, the unit that fits) when most epoch times fall before 1990 and another unit fits them.

    Seconds labelled as milliseconds (Bitbrains' ``Timestamp [ms]``) pack 100 days into one day of
    1970; written, such rows would sit in raw/ and fail every later ETL.
    """
    number = median_ns / NS_PER_UNIT[mapping.timestamp.unit]
    unit = _other_unit(mapping, number)
    if unit is None:
        return None
    median = pd.Timestamp(int(median_ns)).date().isoformat()
    on = pd.Timestamp(int(number * NS_PER_UNIT[unit])).date().isoformat()
    return (f"timestamp.unit '{mapping.timestamp.unit}' puts most values of column '{mapping.timestamp.column}' "
            f"before 1990 (median {median}); as '{unit}' they fall on {on}"), unit


def _late_epochs(mapping: Mapping, rows: int, count: int, numbers: np.ndarray, server: str,
                 span: tuple[int, int] | None) -> tuple[str, str] | None:
    """(what is wrong, the unit that fits) when epoch times too large for the unit (after 2262) fit another.

    Milliseconds read as seconds were quarantined one by one (helper-60: one server's file in ms beside
    others in s lost all its rows under the quarantine share, and ingest exited 0). Another unit fits
    when it puts most of those numbers (``numbers``: a sample of them) between 1990 and 2100 and within a
    month of the file's usable times (``span``: the first and last), or, in a file without any, when they
    are most of its rows; and when they are at least ``_UNIT_SHARE`` of the file's rows. Fewer are
    stray values, left to the quarantine (``timestamp_out_of_range``).
    """
    if count < _UNIT_SHARE * rows or (span is None and 2 * count <= rows):
        return None
    low, high = _YEAR_1990_NS, _YEAR_2100_NS
    if span is not None:
        low, high = max(low, span[0] - _MONTH_NS), min(high, span[1] + _MONTH_NS)
    best, fitting = None, numbers[:0]
    for unit, factor in NS_PER_UNIT.items():
        if unit == mapping.timestamp.unit:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            times = numbers * factor
        inside = times[(times >= low) & (times <= high)]
        if len(inside) > len(fitting):
            best, fitting = unit, inside
    if best is None or 2 * len(fitting) <= len(numbers):
        return None
    on = pd.Timestamp(int(np.median(fitting))).date().isoformat()
    mixed = "" if count == rows else " (the file mixes units: split it, one mapping per unit)"
    return (f"{count:,} of {rows:,} rows of column '{mapping.timestamp.column}' (e.g. server {server}) fall after "
            f"2262 as timestamp.unit '{mapping.timestamp.unit}'{mixed}; as '{best}' they fall on {on}"), best


def _warn_unread_inventory(rejects: pd.DataFrame, state: _Reading) -> None:
    """One warning per inventory column whose numbers were not read (kept empty): an INFO count alone let
    ``capfc risk`` say "no monthly cost in the inventory" of a file whose costs read "$1,200.00" (helper-60)."""
    reasons = rejects["reason"].astype(str)
    unread = rejects[reasons.str.startswith(("inventory_unparseable_", "inventory_out_of_range"))]
    if unread.empty:
        return
    what = unread["reason"].astype(str).str.extract(r"^([a-z_]+): (\S+) from column '(.*)' (?:is (.*) )?\(kept")
    for (code, target, column), rows in unread.groupby([what[0], what[1], what[2]], sort=True):
        shown = repr(str(rows["value"].iloc[0]))
        why = {"inventory_out_of_range": str(what.loc[rows.index[0], 3]),
               "inventory_unparseable_time": "not times (write ISO 8601 text such as 2024-03-01T12:00:00Z)"}.get(
            str(code), "not numbers (write plain numbers such as 1200.5; csv.decimal sets the decimal sign)")
        state.defer(f"inventory column '{column}' ({target}): {len(rows):,} value(s) are {why} and were kept "
                    f"empty, e.g. {shown} ({rows['source'].iloc[0]}); see the quarantine table")


def _warn_repeated_inventory_ids(rejects: pd.DataFrame, state: _Reading) -> None:
    """One warning for inventory rows that repeat an earlier row's id with other values: the first is kept, and the
    sizing and savings rest on that choice (helper-66: web-03 with 4 and 8 cores was said only in the quarantine)."""
    other = rejects[rejects["reason"].astype(str).str.startswith(
        "inventory_duplicate_server_id: an earlier row has this id and other values")]
    if len(other):
        shown = examples((f"{server} ({source})" for server, source in zip(other["server_id"].head(3),
                                                                             other["source"].head(3), strict=True)),
                         total=len(other))
        state.defer(f"{len(other):,} inventory row(s) repeat the server id of an earlier row with other values, e.g. "
                    f"{shown}: the first row of each id is kept; remove or merge the repeats")


def _check_epoch_units(mapping: Mapping, state: _Reading, pool: SamplePool, labels: list[str]) -> None:
    """Refuse an export whose epoch times another ``timestamp.unit`` fits, naming the file; warn when most
    times fall before 1990 and no unit fits them.

    A file is judged on its own (its accepted times, and its times too large for the unit): when some
    files fit the mapping's unit and others do not, the message says to ingest those with a mapping of
    their own (helper-60: a folder with one file in s and one in ms was told to use s, then ms).

    Raises:
        InputError: a file's times fit another unit (nothing is written).
    """
    if mapping.timestamp.kind != "epoch":
        return
    odd: dict[int, tuple[str, str]] = {}
    for index, (rows, count, numbers, server) in sorted(state.beyond.items()):
        late = _late_epochs(mapping, rows, count, numbers, state.servers.names[server], state.spans.get(index))
        if late is not None:
            odd[index] = late
    for index, times in sorted(pool.file_times.items()):
        if index not in odd and len(times) and float(np.median(times)) < _YEAR_1990_NS:
            early = _early_epochs(mapping, float(np.median(times)))
            if early is not None:
                odd[index] = early
    if odd:
        index, (problem, unit) = next(iter(odd.items()))
        fine = len(set(pool.file_times) - set(odd))
        rest = ("" if fine == 0 else f"; {fine:,} other file(s) of the export fit timestamp.unit "
                f"'{mapping.timestamp.unit}': ingest the {len(odd):,} that do not, this one among them, with a "
                "mapping of their own")
        raise InputError(f"{labels[index]}: {problem}: set timestamp.unit: {unit} in the mapping{rest} (nothing "
                         "was written)")
    median = pool.median_time()
    if median < _YEAR_1990_NS:
        # Before the roll-up: every later warning would mislead.
        state.warn(f"most timestamps fall before 1990 (median {pd.Timestamp(int(median)).date().isoformat()}): is "
                   f"timestamp.unit '{mapping.timestamp.unit}' right?")


def _summarise(quarantine: pd.DataFrame) -> str:
    if quarantine.empty:
        return "none"
    codes = quarantine["reason"].astype(str).str.split(":", n=1).str[0].value_counts()
    return ", ".join(f"{code} {count}" for code, count in codes.items())


@dataclass
class _Reading:
    """What reading the files gathers before the roll-up."""

    pool: SamplePool = field(default_factory=SamplePool)
    servers: ServerIds = field(default_factory=ServerIds)
    rejected: list[pd.DataFrame] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)
    malformed: int = 0
    copies: int = 0
    excluded: int = 0  # rows the mapping's exclude_rows named as no sample
    # Repeats of a (server, metric, time) read with another value than the sample kept, and the first of them.
    conflicts: int = 0
    conflict_example: str = ""
    # Per file: (its rows, rows whose epoch time is too large for the unit, a sample of those numbers, the
    # first such row's server code).
    beyond: dict[int, tuple[int, int, np.ndarray, int]] = field(default_factory=dict)
    # Per file: the first and last time of its rows with a usable time.
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)

    def warn(self, message: str) -> None:
        logger.warning("%s", message)
        self.warnings.append(message)

    def defer(self, message: str) -> None:
        """A warning about what the run would write: kept, logged by the stage only if it writes."""
        self.warnings.append(message)
        self.deferred.append(message)


def _read_files(files: list[SourceFile], mapping: Mapping, cfg: IngestConfig,
                deriver: InventoryDeriver | None, capacities: CapacityLookup | None, pool: SamplePool) -> _Reading:
    """Read every file chunk by chunk into accepted samples (``pool``) and quarantine records."""
    state = _Reading(pool=pool)
    roles = mapping.column_roles()
    per_row_metrics: tuple[str | None, ...] = mapping.metric_names() or (None,)
    copies: set[str] = set()
    if mapping.server_id.from_filename is None:  # a file's name names its server: a copy is another server
        for copy, original in identical_files(files):
            state.warn(f"{copy.label}: the same bytes as {original.label}; read once")
            copies.add(copy.label)
    state.copies = len(copies)
    for index, src in enumerate(files):
        if src.label in copies:
            continue
        file_server = None
        if mapping.server_id.from_filename is not None:
            file_server = mapping.server_id.server_id(server_from_filename(
                src.name, mapping.server_id.from_filename, src.label))
        file_rows = 0
        runs_cut, samples_dropped = 0, 0.0
        excluded: Counter[tuple[str, str]] = Counter()
        for chunk in read_chunks(src, roles, mapping.csv, mapping.format, cfg.chunk_rows, cfg.max_line_bytes):
            if chunk.bad_rows:
                state.rejected.append(bad_row_quarantine(chunk.bad_rows, src.label, per_row_metrics,
                                                         file_server))
                state.malformed += len(chunk.bad_rows)
                file_rows += len(chunk.bad_rows)
            if chunk.num_rows == 0:
                continue
            numbers = ColumnNumbers(chunk.columns, mapping.csv.decimal)
            got = extract(chunk, numbers, mapping, src.label, state.servers, file_server, MAX_ABS_PERCENT,
                          None if capacities is None else capacities.columns_for)
            if deriver is not None:
                deriver.update(numbers, got.row_server, got.row_ts, got.row_ok)
            state.pool.add(index, chunk.lines, chunk.num_rows,
                           Samples(got.server, got.metric, got.ts, got.value, got.row, got.weight))
            if got.quarantine is not None:
                state.rejected.append(got.quarantine)
            runs_cut, samples_dropped = runs_cut + got.runs_cut[0], samples_dropped + got.runs_cut[1]
            file_rows += chunk.num_rows
            if got.row_ok.any():
                times = got.row_ts[got.row_ok]
                first, last = state.spans.get(index, (int(times.min()), int(times.max())))
                state.spans[index] = (min(first, int(times.min())), max(last, int(times.max())))
            if got.excluded is not None:
                excluded.update(zip((state.servers.names[c] for c in got.excluded[0]), got.excluded[1], strict=True))
            if got.beyond is not None:
                _, count, kept, server = state.beyond.get(index, (0, 0, got.beyond[0][:0], int(got.beyond[1][0])))
                state.beyond[index] = (0, count + len(got.beyond[0]),
                                       np.concatenate([kept, got.beyond[0]])[:_BEYOND_SAMPLE], server)
        if index in state.beyond:
            state.beyond[index] = (file_rows, *state.beyond[index][1:])
        if excluded:
            state.rejected.append(excluded_quarantine(dict(excluded), mapping, src.label))
            state.excluded += sum(excluded.values())
        if runs_cut:
            assert mapping.weight is not None
            state.warn(f"{src.label}: {runs_cut:,} run(s) cut at their server's last sample (inventory column "
                       f"'{mapping.weight.until}', weight.until): {samples_dropped:,.0f} sample(s) after it dropped")
        if file_rows == 0:
            state.warn(f"{src.label}: no data rows (empty or header-only file)")
        logger.debug("%s: %s rows", src.label, file_rows)
    return state


def _inventory_spec(spec: InventorySpec | None, files: list[SourceFile]) -> InventorySpec | None:
    """The inventory section with ``{source_dir}`` replaced by the folder of the first metric file."""
    if spec is None or spec.source is None or SOURCE_DIR not in spec.source:
        return spec
    if not files:
        raise InputError(f"inventory.source {spec.source!r} names {SOURCE_DIR}, but no metric file was found")
    return spec.model_copy(update={"source": spec.source.replace(SOURCE_DIR, posixpath.dirname(files[0].label))})


def _inventory_source(mapping: Mapping, source: str, filesystem_for: FilesystemFor) -> str:
    """What identifies an inventory file's rows in the lake: the mapping's name, which stays the same when
    a corrected file replaces the first (a mapping without a name: the file itself). A mapping whose
    inventory is ``{source_dir}/...`` reads one inventory per export folder: each folder's file is a
    source of its own (``name@file``), so a second export does not replace the first's inventory."""
    path = source if "://" in source else filesystem_for(source)[1]
    if "name" not in mapping.model_fields_set:
        return path
    per_folder = mapping.inventory is not None and SOURCE_DIR in (mapping.inventory.source or "")
    return f"{mapping.name}@{path}" if per_folder else mapping.name


@dataclass(frozen=True)
class _GroupRollUp:
    """One server group's roll-up (see ``_roll_up``)."""

    daily: pd.DataFrame
    partial: pd.DataFrame
    pooled: pd.DataFrame
    carry: Carryover
    rows_used: int
    servers: np.ndarray
    duplicates: pd.DataFrame
    measured: pd.Series | None = None  # series code -> measured interval (spilled, no interval_seconds)
    unmeasured: pd.DataFrame | None = None  # server_id, metric of the series without one


@dataclass
class _RolledUp:
    """The roll-ups of an ingest's server groups, gathered: the same tables as one roll-up of everything."""

    measure: bool = False
    parts: list[_GroupRollUp] = field(default_factory=list)

    @property
    def rows_used(self) -> int:
        return sum(p.rows_used for p in self.parts)

    @property
    def servers(self) -> set[int]:
        return {int(c) for p in self.parts for c in p.servers}

    def add(self, part: _GroupRollUp) -> None:
        self.parts.append(part)

    def tables(self, left: dict[int, pd.DataFrame | None], min_coverage: float, day_timezone: str) -> tuple[
            pd.DataFrame, pd.DataFrame, pd.DataFrame, Carryover, pd.DataFrame]:
        """(daily rows sorted by server_id, metric, ds; the staging sorted by server_id, metric, ts; the pooled
        days sorted by server_id, ds, metric; the summed Carryover; the duplicate quarantine sorted by server_id,
        metric, ds): the order does not depend on how the servers were grouped.

        ``left``: staged rows no group took (servers whose every sample was quarantined): kept as staged. A
        series with a single sample (no interval of its own, no ``interval_seconds``) takes the median interval
        over every series, as one roll-up of everything gives it.
        """
        unclaimed = [p for p in left.values() if p is not None and len(p)]
        daily = pd.concat([p.daily for p in self.parts], ignore_index=True).sort_values(
            ["server_id", "metric", "ds"], kind="stable", ignore_index=True)
        if self.measure:
            measured = [p.measured for p in self.parts if p.measured is not None and len(p.measured)]
            fallback = float(pd.concat(measured).median()) if measured else DAY_SECONDS
            lacking = [p.unmeasured for p in self.parts if p.unmeasured is not None and len(p.unmeasured)]
            if lacking:
                keys = pd.MultiIndex.from_frame(pd.concat(lacking, ignore_index=True))
                rows = pd.MultiIndex.from_frame(daily[["server_id", "metric"]]).isin(keys)
                daily = refit_coverage(daily, rows, fallback, min_coverage, day_timezone)
        partial = pd.concat([*(p.partial for p in self.parts), *unclaimed], ignore_index=True)
        partial = partial.sort_values(["server_id", "metric", "ts"], kind="stable", ignore_index=True)
        pooled = pd.concat([p.pooled for p in self.parts], ignore_index=True).sort_values(
            ["server_id", "ds", "metric"], kind="stable", ignore_index=True)
        duplicates = pd.concat([p.duplicates for p in self.parts], ignore_index=True)
        duplicates = duplicates.sort_values(["server_id", "metric", "ds"], kind="stable", ignore_index=True)
        carry = [p.carry for p in self.parts]
        totals = {name: sum(getattr(c, name) for c in carry)
                  for name in ("days_combined", "days_completed", "samples_combined", "repeats", "conflicts",
                               "days_staged", "days_expired")}
        totals["days_staged"] += sum(len(p[["server_id", "metric", "ds"]].drop_duplicates()) for p in unclaimed)
        example = min((c.example for c in carry if c.example), default="")
        return daily, partial, pooled, Carryover(**totals, example=example), duplicates


def _staged_groups(staged: pd.DataFrame | None, names: list[str], pool: SamplePool) -> dict[int, pd.DataFrame | None]:
    """The staged partial days split like the spilled samples (by server group, ``pool.group_of``); the rows of
    servers this run does not deliver go with the first group that is rolled up (key -1), which passes them on."""
    if staged is None or staged.empty:
        return {}
    code = pd.Series(np.arange(len(names)), index=pd.Index(names, dtype=object))
    codes = code.reindex(staged["server_id"].astype(str)).to_numpy()
    group = np.where(np.isnan(codes), -1, pool.group_of(np.nan_to_num(codes))).astype(np.int64)
    return {int(g): staged[group == g].reset_index(drop=True) for g in np.unique(group)}


def _roll_up(group: SampleGroup, staged: dict[int, pd.DataFrame | None], pool: SamplePool, labels: list[str],
             state: _Reading, mapping: Mapping, cfg: IngestConfig) -> _GroupRollUp:
    """De-duplicate, pool with the staged samples and roll up one group of servers (or all of them).

    ``staged`` holds the staging per server group (``_staged_groups``; key 0 for everything when nothing was
    spilled); the group's own rows and the rows of servers the run lacks (key -1, taken by the first group)
    are popped from it. Returns (daily rows, staging, pooled days, Carryover, rows used, server codes kept).
    """
    kept, duplicates = sort_and_dedupe(group.samples)
    repeated = _duplicate_quarantine(group, duplicates, labels, state.servers.names)
    _count_conflicts(group, duplicates, state)
    spilled = pool.spilled
    key = int(pool.group_of(group.samples.server[:1])[0]) if spilled else 0
    parts = [p for p in (staged.pop(key, None), staged.pop(-1, None)) if p is not None and len(p)]
    mine = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else None
    rows_used = group.rows_used(kept.row)
    servers = kept.server[np.r_[True, kept.server[1:] != kept.server[:-1]]] if len(kept) else kept.server
    if kept.weight is not None:
        assert mapping.interval_seconds is not None  # the mapping requires it with a weight
        kept = day_pieces(kept, mapping.interval_seconds, mapping.day_timezone)
    pooled = pool_staged(kept, mine, state.servers.names, mapping.day_timezone)
    if pooled.samples.weight is not None and mapping.interval_seconds is None:
        raise InputError("table 'partial_days' holds run-length samples (weight) that an earlier ingest staged "
                         "for days this run delivers, and this mapping has no interval_seconds to roll them up "
                         "with; ingest with the mapping of that earlier run")
    daily = rollup_daily(pooled.samples, state.servers.names, cfg.percentile, cfg.min_coverage,
                         mapping.day_timezone, mapping.interval_seconds)
    partial_days, pooled_days, carry = stage_partial_days(pooled, daily, state.servers.names, cfg.partial_days_window,
                                                          mapping.interval_seconds)
    measured = unmeasured = None
    if spilled and mapping.interval_seconds is None:
        # A single-sample series' interval is the median over every series: known after the last group.
        measured = measured_intervals(pooled.samples)
        codes = np.unique(pooled.samples.server.astype(np.int64) * len(METRICS) + pooled.samples.metric)
        alone = codes[~np.isin(codes, measured.index.to_numpy())]
        unmeasured = pd.DataFrame({"server_id": np.asarray(state.servers.names, dtype=object)[alone // len(METRICS)],
                                   "metric": np.asarray(METRICS, dtype=object)[alone % len(METRICS)]})
    return _GroupRollUp(daily, partial_days, pooled_days, carry, rows_used, servers, repeated, measured, unmeasured)


def ingest(sources: Sequence[str], mapping: Mapping, cfg: IngestConfig,
           filesystem_for: FilesystemFor, staged: pd.DataFrame | None = None) -> IngestResult:
    """Read monitoring exports and roll them up to one row per server, day and metric.

    Files are read in chunks (pyarrow CSV streaming, Parquet row batches). Rows that are not
    measurements are quarantined with a reason, never dropped silently. Samples of one server from
    several files are pooled into one series; a file named twice (directly, or by overlapping
    folders and globs) is read once, and a (server, metric, time) read twice keeps its first sample
    (the repeat is quarantined as ``duplicate_timestamp``). The result therefore never holds the same
    (server_id, ds, metric) twice.

    Samples of the same day delivered by earlier ingests are pooled in from ``staged`` (the lake's
    ``raw/partial_days``) for the (server, metric, day)s this run delivers: the day's row is then
    the roll-up of all of them (a staged sample at a time this run delivers again is counted once,
    with this run's value). The result's ``partial_days`` is the staging to keep for later runs.

    Args:
        sources: files, folders or glob patterns, local or ``s3://``.
        mapping: how the files' columns map to the contract.
        cfg: percentile, coverage threshold and chunk size.
        filesystem_for: returns (pyarrow filesystem, path within it) for a source URI.
        staged: the staging of partial days from earlier ingests (schema.PARTIAL_DAY_COLUMNS), or None.

    Returns:
        The IngestResult; raw_metrics has columns server_id, ds, metric, value, samples, value_mean,
        value_max, coverage and low_coverage (run-length rows of a ``weight`` mapping count by their
        samples); inventory has schema.INVENTORY_COLUMNS (the server ids alone when the mapping has
        no inventory section; + inventory_source for an inventory file). An inventory file is read
        first: metric capacities may join from it (ids matched as ``inventory.CapacityLookup`` says).

    Raises:
        InputError: a source is missing or unreadable, a mapped column is absent, a file name does not
            match server_id.from_filename (each message names the file and what was expected), or
            staged run-length samples must be pooled and the mapping has no ``interval_seconds``.
    """
    started = time.perf_counter()
    files = expand_sources(sources, filesystem_for)
    spec = _inventory_spec(mapping.inventory, files)
    if spec is not None and spec.source is not None:
        # A folder given whole holds the mapping's own inventory file (fastStorage's meta.parquet beside
        # trace.parquet): it is read as the inventory, not as metrics.
        inventory_path = filesystem_for(spec.source)[1]
        files = [f for f in files if f.path != inventory_path] or files
    labels = [f.label for f in files]
    deriver = InventoryDeriver(spec) if spec is not None and spec.source is None else None
    inventory = None
    inventory_rejects = empty_quarantine()
    capacities = None
    if spec is not None and spec.source is not None:
        # Read before the metrics: metric capacities may be joined from it.
        inventory, inventory_rejects, joined = read_inventory(
            spec, filesystem_for, mapping.server_id, cfg.chunk_rows, mapping.inventory_joins(),
            cfg.max_line_bytes, times=mapping.inventory_times())
        capacities = CapacityLookup(joined) if mapping.inventory_joins() else None
        inventory[SOURCE_COLUMN] = _inventory_source(mapping, spec.source, filesystem_for)
    pool = SamplePool(cfg.spill_rows)
    try:
        return _ingest_read(files, labels, mapping, cfg, deriver, capacities, inventory, inventory_rejects, staged,
                            pool, started)
    finally:
        pool.close()  # a refusal or a bad file after a spill leaves no folder behind


def _ingest_read(files: list[SourceFile], labels: list[str], mapping: Mapping, cfg: IngestConfig,
                 deriver: InventoryDeriver | None, capacities: CapacityLookup | None, inventory: pd.DataFrame | None,
                 inventory_rejects: pd.DataFrame, staged: pd.DataFrame | None, pool: SamplePool,
                 started: float) -> IngestResult:
    """``ingest`` from reading the metric files on (``pool`` holds, and may spill, their samples)."""
    state = _read_files(files, mapping, cfg, deriver, capacities, pool)
    tallied = pool.values.summary()
    for message in [*fraction_warnings(tallied, mapping), *over_hundred_warnings(
            tallied, None if mapping.long is None else mapping.long.metric_column or "")]:
        state.warn(message)
    _check_epoch_units(mapping, state, pool, labels)
    rolled = _RolledUp(measure=pool.spilled and mapping.interval_seconds is None)
    pool.finish()
    staged_by_group = _staged_groups(staged, state.servers.names, pool) if pool.spilled else {0: staged}
    for group in pool.groups():
        rolled.add(_roll_up(group, staged_by_group, pool, labels, state, mapping, cfg))
        del group  # free the group's samples before the next one is read back
    daily, partial_days, pooled_days, carry, duplicates = rolled.tables(staged_by_group, cfg.min_coverage,
                                                                        mapping.day_timezone)
    state.rejected.append(duplicates)
    for message in fraction_server_warnings(daily, mapping):
        state.warn(message)
    if carry.conflicts:
        state.warn(f"{carry.conflicts} sample(s) repeat the server, metric and time of a sample an earlier ingest "
                   f"staged (raw/partial_days) with a different value; this run's value is used "
                   f"(e.g. {carry.example})")
    rows_used = rolled.rows_used
    rows_read = state.pool.rows + state.malformed
    parts = [q for q in [*state.rejected, inventory_rejects] if len(q)]
    quarantine = pd.concat(parts, ignore_index=True) if parts else empty_quarantine()
    # Warnings about what this run would write are deferred: a run the stage refuses says one line.
    used = {state.servers.names[c] for c in rolled.servers}
    _warn_lost_servers(quarantine, used, state)
    _warn_lost_series(quarantine, (daily, partial_days), used, state)
    _warn_conflicts(state, state.pool.sampled)
    _warn_overfull_days(daily, state, mapping.weight.unit if mapping.weight is not None else None)
    _warn_coarse_samples(daily, state)
    _warn_lookalike_ids(pd.Series(daily["server_id"].unique(), dtype=object), state)
    _warn_unread_inventory(inventory_rejects, state)
    _warn_repeated_inventory_ids(inventory_rejects, state)
    if rows_read and not rows_used:
        top = quarantine["reason"].astype(str).str.split(":", n=1).str[0].value_counts()
        state.defer(f"no row could be used: every row was quarantined (mostly {top.index[0]}, "
                    f"{top.iloc[0]} records); check the mapping against the quarantine reasons")
    if deriver is not None:
        inventory = deriver.frame(state.servers.names)
    ids_only = inventory is None
    if inventory is None:
        inventory = ids_only_inventory(daily["server_id"].unique())
    logger.info(
        "ingest (%s): %s file(s), %s rows read, %s used, %s quarantined; %s servers, %s daily rows "
        "(%s low coverage); quarantine reasons: %s; %s day(s) pooled with %s sample(s) of earlier runs "
        "(%s completed, %s repeated sample(s)), %s partial day(s) staged, %s expired; %.1f s",
        mapping.name, len(files), rows_read, rows_used, rows_read - rows_used, daily["server_id"].nunique(),
        len(daily), int(daily["low_coverage"].sum()), _summarise(quarantine), carry.days_combined,
        carry.samples_combined, carry.days_completed, carry.repeats, carry.days_staged, carry.days_expired,
        time.perf_counter() - started)
    values = counted_values(pool.accepted, state.servers.names, quarantine, value_columns(mapping))
    excluded = state.excluded
    if mapping.exclude_rows is not None and rows_read and not excluded:
        rule = mapping.exclude_rows
        state.warn(f"exclude_rows matched no row: column '{rule.column}' never holds "
                   f"{', '.join(repr(v) for v in rule.values)} (numbers compare as numbers, text as trimmed text)")
    return IngestResult(daily, inventory, quarantine, rows_read, rows_used, rows_read - rows_used,
                        tuple(labels), tuple(state.warnings), ids_only, values, partial_days, pooled_days, carry,
                        tuple(state.deferred), excluded, state.copies)
