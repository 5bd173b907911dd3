"""Inventory for ingested servers: read from an inventory file, or derived from the metric rows."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs

from capacity_forecaster.errors import InputError
from capacity_forecaster.etl import parse
from capacity_forecaster.etl.extract import empty_quarantine, quarantine_frame
from capacity_forecaster.etl.readers import DEFAULT_MAX_LINE_BYTES, read_chunks
from capacity_forecaster.etl.sources import FilesystemFor, SourceFile
from capacity_forecaster.etl.specs import (
    NUMERIC_INVENTORY_COLUMNS,
    SOURCE_DIR,
    DerivedColumn,
    InventorySpec,
    ServerIdSpec,
    TimestampSpec,
)
from capacity_forecaster.schema import INVENTORY_COLUMNS

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"


def id_key(ids: pd.Series) -> pd.Series:
    """The form in which inventory and metrics ids are matched: Unicode NFC (``Zürich`` typed as one code point
    or as ``u`` + a combining diaeresis), surrounding whitespace stripped, case folded."""
    return ids.astype(str).str.normalize("NFC").str.strip().str.casefold()


def _column(source: str | DerivedColumn) -> DerivedColumn:
    return DerivedColumn(column=source) if isinstance(source, str) else source


def _fill_defaults(frame: pd.DataFrame, spec: InventorySpec) -> pd.DataFrame:
    """Contract inventory columns in order; unmapped ones from defaults, the server id, unknown or NaN."""
    out = frame.copy()
    for column in INVENTORY_COLUMNS:
        if column in out.columns:
            continue
        if column in spec.defaults:
            default = spec.defaults[column]
            out[column] = float(default) if column in NUMERIC_INVENTORY_COLUMNS else str(default)
        elif column == "hostname":
            out[column] = out["server_id"]
        else:
            out[column] = np.nan if column in NUMERIC_INVENTORY_COLUMNS else UNKNOWN
    for column in NUMERIC_INVENTORY_COLUMNS:
        out[column] = out[column].astype(np.float64)
    return out[list(INVENTORY_COLUMNS)].sort_values("server_id", ignore_index=True)


# The largest inventory number taken (cores, GB, USD per month): beyond it a value is no server's size or cost.
INVENTORY_MAX = 1e9
# Inventory numbers that are sizes: above 0 (a cost may be 0).
SIZE_COLUMNS = ("cpu_cores", "memory_gb")


class InventoryDeriver:
    """Keeps, per server, the latest positive value of each derived inventory column.

    Bitbrains rows carry ``CPU cores`` and ``Memory capacity provisioned [KB]``; the latest positive
    value is the server's current size (zeros mark unprovisioned periods, not a size).
    """

    def __init__(self, spec: InventorySpec) -> None:
        self.spec = spec
        # target column -> (server codes, times, values), one entry per server
        self.latest: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def update(self, numbers: parse.ColumnNumbers, row_server: np.ndarray, row_ts: np.ndarray,
               row_ok: np.ndarray) -> None:
        """Fold one chunk's rows (parsed numbers, server codes and times) into the latest values."""
        for target, source in self.spec.columns.items():
            derived = _column(source)
            values, status = numbers(derived.column)
            with np.errstate(invalid="ignore"):
                usable = np.flatnonzero(row_ok & (status == parse.OK) & (values > 0)
                                        & (values / derived.divide_by <= INVENTORY_MAX))
            if len(usable) == 0:
                continue
            server, ts, value = row_server[usable], row_ts[usable], values[usable] / derived.divide_by
            if target in self.latest:
                old_server, old_ts, old_value = self.latest[target]
                server = np.concatenate([old_server, server])
                ts = np.concatenate([old_ts, ts])
                value = np.concatenate([old_value, value])
            # Sort by (server, time); the last entry of each server is its latest value.
            order = np.lexsort((ts, server))
            last = np.flatnonzero(np.append(server[order][1:] != server[order][:-1], True))
            pick = order[last]
            self.latest[target] = (server[pick], ts[pick], value[pick])

    def frame(self, server_names: list[str]) -> pd.DataFrame:
        """The inventory of every server seen (contract columns; see _fill_defaults for the rest).

        Returns:
            Frame with schema.INVENTORY_COLUMNS, one row per server, sorted by server_id.
        """
        out = pd.DataFrame({"server_id": pd.Series(server_names, dtype=object)})
        for target in self.spec.columns:
            values = np.full(len(server_names), np.nan)
            if target in self.latest:
                server, _, value = self.latest[target]
                values[server] = value
            out[target] = values
        return _fill_defaults(out, self.spec)


def ids_only_inventory(server_ids: list[str] | np.ndarray) -> pd.DataFrame:
    """An inventory that knows only the server ids: hostname = the id, other text unknown, numbers NaN.

    Returns:
        Frame with schema.INVENTORY_COLUMNS, one row per distinct id, sorted by server_id.
    """
    ids = pd.Series(pd.unique(pd.Series(server_ids, dtype=object).dropna()), dtype=object)
    return _fill_defaults(pd.DataFrame({"server_id": ids}), InventorySpec())


class CapacityLookup:
    """Per-server numbers from columns of the inventory file (joined capacities), by server code.

    A metrics id finds its inventory row by equality, else by ``id_key`` where exactly one inventory
    id has that key (``AMS-DB-01.bank.local`` uses the row of ``AMS-DB-01.BANK.LOCAL``), as
    ``inventory_join.join_to_metrics`` joins the rows themselves.
    """

    def __init__(self, table: pd.DataFrame) -> None:
        """Args: table: server_id (unique) and one float column per joined inventory-file column."""
        self.table = table.set_index("server_id")
        self._values = {column: np.empty(0) for column in self.table.columns}
        keys = id_key(pd.Series(self.table.index, dtype=object))
        unique = ~keys.duplicated(keep=False).to_numpy()
        self._by_key = dict(zip(keys[unique], self.table.index[unique], strict=True))

    def columns_for(self, row_server: np.ndarray, names: list[str]) -> dict[str, pa.Array]:
        """``inventory.<column>`` -> float64 value per row (null where the server has none)."""
        known = len(next(iter(self._values.values()), np.empty(0)))
        if len(names) > known:
            added = pd.Series(names[known:], dtype=object)
            rows = added.where(added.isin(self.table.index), id_key(added).map(self._by_key))
            new = self.table.reindex(pd.Index(rows, dtype=object))
            for column in self._values:
                self._values[column] = np.concatenate([self._values[column], new[column].to_numpy(np.float64)])
        out = {}
        for column, values in self._values.items():
            padded = np.append(values, np.nan)
            per_row = padded[np.where(row_server >= 0, row_server, len(values))]
            out[f"inventory.{column}"] = pa.array(per_row, mask=np.isnan(per_row))
        return out


def _row_ids(part: pd.DataFrame, rows: np.ndarray, ids: ServerIdSpec) -> np.ndarray:
    """The server id of the given rows of a read block (``ids.server_id``; None where the id is empty)."""
    found = part["server_id"].to_numpy(dtype=object)[rows]
    return np.array([ids.server_id(i, inventory=True) if isinstance(i, str) and i else None for i in found],
                    dtype=object)


def read_inventory(spec: InventorySpec, filesystem_for: FilesystemFor, id_spec: ServerIdSpec, chunk_rows: int,
                   extra: Mapping[str, str] | None = None,
                   max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                   times: Collection[str] = ()) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Read an inventory file into the contract inventory columns (and joined capacity columns).

    Server ids are read as the metrics' are (``ServerIdSpec.server_id``: the mapping's pattern where it matches,
    case and prefix). Rows without a server id, and repeats of an id, are quarantined; a number that does not parse
    is left NaN and quarantined as a field.

    Args:
        spec: the mapping's inventory section (``source`` set).
        filesystem_for: returns (filesystem, path) for the source URI.
        id_spec: the mapping's server_id section.
        chunk_rows: rows per read block.
        extra: further numeric columns to read (column -> the mapping key that names it), e.g. the
            capacities of ``metrics.<m>.inventory_capacity``.
        times: the columns of ``extra`` that hold times (``weight.until``): read as UTC nanoseconds.

    Returns:
        (inventory with schema.INVENTORY_COLUMNS sorted by server_id, quarantine records, frame of
        server_id and the ``extra`` columns as float64).

    Raises:
        InputError: the file cannot be read or lacks a mapped column.
    """
    assert spec.source is not None
    fs, path = filesystem_for(spec.source)
    src = SourceFile(spec.source if "://" in spec.source else path, fs, path)
    try:
        found = fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError:
        found = True  # unreadable for another reason: the reader says which
    if not found:
        relative = "" if "://" in spec.source or os.path.isabs(spec.source) else \
            f" (a relative path is read from the folder capfc runs in, {os.getcwd()})"
        raise InputError(f"inventory.source {spec.source!r}: no such file{relative}; write "
                         f"'{SOURCE_DIR}/<file name>' for a file beside the metric files")
    mapped: dict[str, DerivedColumn] = {target: _column(source) for target, source in spec.columns.items()}
    extra = dict(extra or {})
    roles = {d.column: f"inventory.columns.{target}" for target, d in mapped.items()} | {
        column: key for column, key in extra.items() if column not in {d.column for d in mapped.values()}}
    # Joined capacity columns are read under a private name, so a column that is also mapped to an
    # inventory column (say cpu_count for cpu_cores) can serve both.
    numeric = {target: d for target, d in mapped.items() if target in NUMERIC_INVENTORY_COLUMNS}
    numeric |= {f"_extra_{column}": DerivedColumn(column=column) for column in extra}
    parts: list[pd.DataFrame] = []
    rejected: list[pd.DataFrame] = []
    for chunk in read_chunks(src, roles, spec.csv, "auto", chunk_rows, max_line_bytes):
        if chunk.bad_rows:
            rejected.append(quarantine_frame(
                None, None, None, [b.text[:120] for b in chunk.bad_rows],
                [f"{src.label}:{b.line}" for b in chunk.bad_rows],
                [f"inventory_wrong_field_count: expected {b.expected} fields, found {b.found}" if b.length is None
                 else f"inventory_line_too_long: line {b.line} has {b.length:,} bytes, more than "
                      f"ingest.max_line_bytes ({b.limit:,})" for b in chunk.bad_rows]))
        if chunk.num_rows == 0:
            continue
        lines = chunk.lines if chunk.lines is not None else np.zeros(chunk.num_rows, dtype=np.int64)
        part = pd.DataFrame({"_line": lines})
        for target, derived in mapped.items():
            if target in NUMERIC_INVENTORY_COLUMNS:
                continue
            text = pd.Series(parse.as_text(chunk.columns[derived.column]).to_numpy(zero_copy_only=False),
                             dtype=object)
            # An empty text cell says "not known"; server ids are checked separately below.
            part[target] = text if target == "server_id" else text.fillna("").replace("", UNKNOWN)
        for target, derived in numeric.items():
            column = chunk.columns[derived.column]
            # A joined column is named by its mapping key in messages (metrics.network.inventory_capacity).
            capacity = target.startswith("_extra_")
            named = extra.get(derived.column, derived.column) if capacity else target
            if capacity and derived.column in times:
                ns, status = parse.parse_timestamps(column, TimestampSpec(column=derived.column))
                part[target] = np.where(status == parse.OK, ns.astype(np.float64), np.nan)
                values_kind = "time"
            else:
                values, status = parse.parse_numbers(column, spec.csv.decimal)
                values = values / derived.divide_by
                # A size of 0 is no server's either (helper-64: fastStorage meta with mem_capacity 0 became
                # 0 GB of memory); a cost of 0 may be (a machine paid for). A metric's capacity is in the metric's
                # own unit, with no bound above (helper-66: a 10 GbE NIC is 1.25e9 bytes/s, 16 GiB 1.7e10 bytes);
                # one of 0 is kept, and its samples are quarantined as zero_capacity (extract).
                sized = target in SIZE_COLUMNS
                with np.errstate(invalid="ignore"):
                    low = (values <= 0) if sized else (values < 0)
                    high = ~np.isfinite(values) if capacity else values > INVENTORY_MAX
                    wild = (status == parse.OK) & (low | high)
                if wild.any():
                    # A negative size, or a cost of 1e308 (whose sums overflowed to Infinity in the options
                    # table and broke its Delta log, helper-51): not a server's.
                    texts = parse.texts_at(column, np.flatnonzero(wild))
                    rejected.append(quarantine_frame(
                        _row_ids(part, np.flatnonzero(wild), id_spec), None, None, texts,
                        [f"{src.label}:{line}" for line in lines[wild]],
                        [f"inventory_out_of_range: {named} from column '{derived.column}' is "
                         + ("below 0 or not finite" if capacity else
                            f"{'0 or less, or above' if sized else 'not between 0 and'} {INVENTORY_MAX:g}")
                         + " (kept as NaN)"]
                        * int(wild.sum())))
                    values = np.where(wild, np.nan, values)
                part[target] = values
                values_kind = "number"
            bad = np.flatnonzero((status != parse.OK) & (status != parse.MISSING))
            if len(bad):
                texts = parse.texts_at(column, bad)
                rejected.append(quarantine_frame(
                    _row_ids(part, bad, id_spec), None, None, texts, [f"{src.label}:{line}" for line in lines[bad]],
                    [f"inventory_unparseable_{values_kind}: {named} from column "
                     f"'{derived.column}' "
                     f"(kept as NaN)" for _ in bad]))
        parts.append(part)
    if not parts:
        logger.warning("%s: inventory file has no rows", src.label)
        frame = pd.DataFrame({"server_id": pd.Series(dtype=object), "_line": pd.Series(dtype=np.int64)})
    else:
        frame = pd.concat(parts, ignore_index=True)
    where = src.label + ":" + frame["_line"].astype(str)
    ids = frame["server_id"].map(lambda v: id_spec.server_id(v, inventory=True) if isinstance(v, str) else None,
                                 na_action="ignore").fillna("")
    missing = ids == ""
    repeated = ~missing & ids.duplicated(keep="first")
    if missing.any():
        rejected.append(quarantine_frame(None, None, None, None, where[missing].to_numpy(dtype=object),
                                         "inventory_missing_server_id: the server id column is empty"))
    if repeated.any():
        # Whether a repeat says something else than the row kept (helper-66: web-03 with 4 and 8 cores, $300 and
        # $600: the first was taken, said only in the quarantine): ingest warns about those.
        # (Not the id's own spellings: a hostname read from the id column differs where only its case did.)
        id_column = mapped["server_id"].column
        given = frame.drop(columns=["_line", "server_id", *(t for t, d in mapped.items()
                                                             if t != "server_id" and d.column == id_column)])
        digest = pd.util.hash_pandas_object(given, index=False).to_numpy()
        kept_at = pd.Series(np.arange(len(frame)), index=ids.to_numpy())[~missing.to_numpy() & ~repeated.to_numpy()]
        first = kept_at.reindex(ids[repeated].to_numpy()).to_numpy(dtype=np.int64)
        other = digest[repeated.to_numpy()] != digest[first]
        code = "inventory_duplicate_server_id: an earlier row has this id"
        rejected.append(quarantine_frame(
            ids[repeated], None, None, None, where[repeated].to_numpy(dtype=object),
            np.where(other, f"{code} and other values (that one is kept)", f"{code} (kept)").astype(object)))
    frame = frame[~missing & ~repeated].drop(columns="_line")
    frame["server_id"] = ids[~missing & ~repeated].astype(str)
    quarantine = pd.concat(rejected, ignore_index=True) if rejected else empty_quarantine()
    joined = pd.DataFrame({"server_id": frame["server_id"].to_numpy(dtype=object)})
    for column in extra:
        name = f"_extra_{column}"
        joined[column] = frame[name].to_numpy(np.float64) if name in frame else np.full(len(frame), np.nan)
    frame = frame.drop(columns=[c for c in frame.columns if c.startswith("_extra_")])
    return _fill_defaults(frame, spec), quarantine, joined
