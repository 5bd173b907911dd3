"""Chunked readers for CSV (pyarrow streaming) and Parquet (row batches) over a pyarrow filesystem."""

from __future__ import annotations

import codecs
import difflib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from capacity_forecaster.errors import InputError
from capacity_forecaster.etl.lines import LineGuard
from capacity_forecaster.etl.sniff import PARQUET, SNIFF_BYTES, Dialect, duplicated_names, not_csv, sniff
from capacity_forecaster.etl.sources import SourceFile
from capacity_forecaster.etl.specs import CsvSpec

logger = logging.getLogger(__name__)

FIRST_DATA_LINE = 2
_MIN_BLOCK = 1 << 20
_MAX_BLOCK = 8 << 20
_SHOWN_COLUMNS = 30
DEFAULT_MAX_LINE_BYTES = 1 << 20
# Transcoding (csv.encoding other than UTF-8) reports undecodable bytes as UnicodeError.
_READ_ERRORS = (pa.ArrowException, OSError, UnicodeError)


@dataclass(frozen=True)
class BadRow:
    """A CSV line that does not split into the header's number of fields, or is too long to read.

    ``length`` is set (bytes) for a line longer than ``limit`` (``ingest.max_line_bytes``); ``text`` is
    then its start.
    """

    line: int
    text: str
    expected: int
    found: int
    length: int | None = None
    limit: int | None = None


@dataclass(frozen=True)
class RawChunk:
    """A block of rows as read, before any parsing.

    Attributes:
        columns: source column name -> values (CSV: raw field bytes; Parquet: typed values).
        lines: 1-based line of each row in its file, header included (None for Parquet).
        bad_rows: malformed CSV lines met since the previous chunk; they are not in ``columns``.
    """

    columns: dict[str, pa.Array]
    lines: np.ndarray | None
    bad_rows: tuple[BadRow, ...] = field(default=())

    @property
    def num_rows(self) -> int:
        """Number of well-formed rows in the chunk."""
        return len(next(iter(self.columns.values()))) if self.columns else 0


def missing_column_message(label: str, header: tuple[str, ...], column: str, key: str,
                           dialect: Dialect | None = None) -> str:
    """The message for a mapped column the file does not have, with the columns it does have."""
    shown = ", ".join(header[:_SHOWN_COLUMNS]) or "(none)"
    if len(header) > _SHOWN_COLUMNS:
        shown += f", ... ({len(header) - _SHOWN_COLUMNS} more)"
    hint = ""
    close = difflib.get_close_matches(column, header, n=1)
    if close:
        hint = f" (did you mean '{close[0]}'?)"
    elif dialect is not None and len(header) == 1:
        hint = (f" (the header has one column when split on {dialect.delimiter!r}; is csv.delimiter right, or is "
                "there a title above the header line? csv.skip_lines skips such lines)")
    return f"{label}: column '{column}' not found; columns are: {shown} — set {key} in the mapping{hint}"


def check_columns(label: str, header: tuple[str, ...], roles: Mapping[str, str],
                  dialect: Dialect | None = None) -> None:
    """Raise InputError for the first mapped column missing from (or repeated in) ``header``."""
    for column, key in roles.items():
        if column not in header:
            raise InputError(missing_column_message(label, header, column, key, dialect))
    repeated = {c: n for c, n in duplicated_names(header).items() if c in roles}
    if repeated:
        column, count = next(iter(repeated.items()))
        raise InputError(f"{label}: column '{column}' appears {count} times in the header; the mapping "
                         f"({roles[column]}) needs it to be unique")


def _line_numbers(offset: int, count: int, bad: list[BadRow], first: int = FIRST_DATA_LINE) -> np.ndarray:
    """Lines of well-formed rows ``offset .. offset+count`` given the malformed lines skipped so far (``first``:
    the line of the first data row)."""
    rows = offset + np.arange(count, dtype=np.int64)
    if not bad:
        return rows + first
    # Well-formed rows read before each skipped line; row k comes after every skipped line with g <= k.
    before = np.array([b.line for b in bad], dtype=np.int64) - first - np.arange(len(bad))
    return rows + first + np.searchsorted(before, rows, side="right")


def _after_lines(head: bytes, count: int) -> bytes:
    """``head`` from its ``count + 1``-th line on (empty when it has no more lines); a line ends in LF, CRLF or
    CR alone (Excel for Mac's CSV, helper-61)."""
    for _ in range(count):
        ends = [i for i in (head.find(b"\n"), head.find(b"\r")) if i >= 0]
        if not ends:
            return b""
        end = min(ends)
        head = head[end + (2 if head[end:end + 2] == b"\r\n" else 1):]
    return head


class _Utf8Stream:
    """A byte stream re-encoded as valid UTF-8; bytes that do not decode become U+FFFD.

    pyarrow's reader decodes a malformed line as strict UTF-8 before calling the invalid-row
    handler, and would lose such a line; with clean UTF-8 every line reaches the handler, and a
    bad byte in a value only makes that value unparseable (quarantined with the text shown).
    """

    def __init__(self, raw: pa.NativeFile, encoding: str, guard: LineGuard) -> None:
        self._raw = raw
        self._guard = guard
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        self._pending = b""
        self._done = False
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        while not self._done and (size < 0 or len(self._pending) < size):
            block = self._raw.read(max(size, 1 << 20))
            self._done = not block
            text = self._decoder.decode(block, final=self._done).encode("utf-8")
            self._pending += self._guard.feed(text, final=self._done)
        if size < 0:
            size = len(self._pending)
        out, self._pending = self._pending[:size], self._pending[size:]
        return out

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._raw.close()


# Compressed files are decompressed by their extension, in any letter case (pyarrow's own detection
# reads only lower-case ones, so 'EXPORT.CSV.GZ' was read as binary).
_CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


def _open(src: SourceFile) -> pa.NativeFile:
    """The file as a stream, decompressed when its name ends in .gz, .bz2, .zst or .lz4 (any case)."""
    lower = src.path.lower()
    codec = next((name for suffix, name in _CODECS.items() if lower.endswith(suffix)), None)
    return src.filesystem.open_input_stream(src.path, compression=codec)


def _read_head(src: SourceFile) -> tuple[bytes, bool]:
    with _open(src) as stream:
        head = stream.read(SNIFF_BYTES + 1)
    return head[:SNIFF_BYTES], len(head) > SNIFF_BYTES


def _csv_chunks(src: SourceFile, roles: Mapping[str, str], spec: CsvSpec,
                chunk_rows: int, max_line_bytes: int, declared: str) -> Iterator[RawChunk]:
    try:
        head, truncated = _read_head(src)
    except _READ_ERRORS as err:
        raise InputError(f"{src.label}: cannot be opened: {err}") from err
    other = not_csv(head, src.label)
    if other == PARQUET:
        if declared == "csv":
            raise InputError(f"{src.label}: looks like Parquet, but the mapping says format: csv; set format: "
                             "parquet (or auto, which reads Parquet whatever the file is called)")
        yield from _parquet_chunks(src, roles, chunk_rows)
        return
    if other is not None:
        raise InputError(other)
    if spec.skip_lines:
        head = _after_lines(head, spec.skip_lines)
        if not head and truncated:
            raise InputError(f"{src.label}: csv.skip_lines {spec.skip_lines} skips more than the first "
                             f"{SNIFF_BYTES:,} bytes; the header line must start within them")
        if not head.strip():
            logger.warning("%s: no header line below the %d line(s) csv.skip_lines skips", src.label, spec.skip_lines)
    dialect = sniff(head, truncated, src.label, spec.encoding, spec.delimiter)
    if dialect is None:
        return
    check_columns(src.label, dialect.header, roles, dialect)
    if not truncated and not any(end in head for end in (b"\n", b"\r")):
        return  # the header line alone, without a line break
    position = {column: dialect.header.index(column) for column in roles}
    names = [f"f{i}" for i in range(len(dialect.header))]
    wanted = sorted({names[i] for i in position.values()})
    bad: list[BadRow] = []
    # A long line becomes one delimiter more than the header has: a malformed row the reader reports.
    guard = LineGuard(max_line_bytes, dialect.delimiter.encode("utf-8") * len(dialect.header))

    spanning: list[int] = []  # lines where a quote opened that no later character on the line closed

    def on_bad_row(row: pacsv.InvalidRow) -> str:
        number = row.number or -1
        if "\n" in row.text or "\r" in row.text:
            # The reader took the lines after an unclosed quote as one field (helper-51: one stray '"' read
            # 300,000 lines as 28,526 rows, the rest never counted): refused below, never skipped silently.
            spanning.append(number)
        long_line = guard.long_lines.get(number)
        if long_line is not None:
            bad.append(BadRow(number, long_line.head, row.expected_columns, 0, long_line.length, max_line_bytes))
        else:
            bad.append(BadRow(number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    # A block must hold the longest line allowed (pyarrow fails on a line longer than its block).
    block = int(max(min(_MAX_BLOCK, max(_MIN_BLOCK, chunk_rows * dialect.bytes_per_row)), 2 * max_line_bytes))
    try:
        stream = _Utf8Stream(_open(src), spec.encoding, guard)
    except _READ_ERRORS as err:
        raise InputError(f"{src.label}: cannot be opened: {err}") from err
    offset = 0
    reported = 0
    try:
        try:
            reader = pacsv.open_csv(
                stream,
                # Threads off: only the serial reader reports line numbers of malformed rows.
                read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 + spec.skip_lines, use_threads=False,
                                               block_size=block),
                parse_options=pacsv.ParseOptions(delimiter=dialect.delimiter, quote_char='"',
                                                 ignore_empty_lines=False, invalid_row_handler=on_bad_row),
                convert_options=pacsv.ConvertOptions(column_types={n: pa.binary() for n in wanted},
                                                     include_columns=wanted, null_values=[],
                                                     strings_can_be_null=False,
                                                     quoted_strings_can_be_null=False),
            )
        except _READ_ERRORS as err:
            raise InputError(f"{src.label}: cannot be read as CSV: {err}") from err
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                break
            except _READ_ERRORS as err:
                raise InputError(
                    f"{src.label}: cannot be read as CSV after data row {offset}: {err}") from err
            _refuse_spanning_quote(src.label, spanning)
            columns = {column: batch.column(names[i]) for column, i in position.items()}
            lines = _line_numbers(offset, batch.num_rows, bad, FIRST_DATA_LINE + spec.skip_lines)
            fresh = tuple(bad[reported:])
            reported = len(bad)
            offset += batch.num_rows
            yield RawChunk(columns, lines, fresh)
    finally:
        stream.close()
    _refuse_spanning_quote(src.label, spanning)
    if reported < len(bad):
        empty = {column: pa.array([], pa.binary()) for column in position}
        yield RawChunk(empty, np.empty(0, dtype=np.int64), tuple(bad[reported:]))


def _refuse_spanning_quote(label: str, spanning: list[int]) -> None:
    """Stop at the first line whose opening quote no character of the line closes (see ``on_bad_row``)."""
    if spanning:
        where = f"line {spanning[0]}" if spanning[0] > 0 else "a line"
        raise InputError(f"{label}: {where} opens a quoted field ('\"') that the line does not close, so the lines "
                         "after it would be read as one value; close or remove the quote (a quoted field may not "
                         "span lines)")


def _row_group_runs(metadata: pq.FileMetaData, chunk_rows: int) -> Iterator[list[int] | None]:
    """Consecutive row groups of about ``chunk_rows`` rows together (a larger group alone); None for a file
    without row groups (read whole: it is empty)."""
    if metadata.num_row_groups == 0:
        yield None
        return
    run: list[int] = []
    rows = 0
    for group in range(metadata.num_row_groups):
        size = metadata.row_group(group).num_rows
        if run and rows + size > chunk_rows:
            yield run
            run, rows = [], 0
        run.append(group)
        rows += size
    yield run


def _parquet_chunks(src: SourceFile, roles: Mapping[str, str], chunk_rows: int) -> Iterator[RawChunk]:
    try:
        parquet = pq.ParquetFile(src.filesystem.open_input_file(src.path))
        header = tuple(parquet.schema_arrow.names)
    except _READ_ERRORS as err:
        raise InputError(f"{src.label}: cannot be read as Parquet: {err}") from err
    check_columns(src.label, header, roles)
    for column, key in roles.items():
        kind = parquet.schema_arrow.field(column).type
        if pa.types.is_nested(kind):
            raise InputError(f"{src.label}: column '{column}' ({key}) holds {kind} values; expected numbers, text "
                             "or times, one per row")
    # A few row groups at a time: one iterator over the whole file kept every decoded batch's buffers alive
    # until it ended (pyarrow 26: 631 MB of Arrow memory for fastStorage copied to 10,000 servers, 28 MB this
    # way); consecutive small groups are read together up to chunk_rows (helper-48: 50-row groups, one
    # iterator each, made ingest 4x slower).
    for groups in _row_group_runs(parquet.metadata, chunk_rows):
        batches = parquet.iter_batches(batch_size=chunk_rows, columns=list(roles), row_groups=groups)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except _READ_ERRORS as err:
                raise InputError(f"{src.label}: cannot be read as Parquet: {err}") from err
            yield RawChunk({column: batch.column(column) for column in roles}, None)


def read_chunks(src: SourceFile, roles: Mapping[str, str], spec: CsvSpec, file_format: str,
                chunk_rows: int, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Iterator[RawChunk]:
    """Stream the mapped columns of one file in blocks of about ``chunk_rows`` rows.

    CSV is read with pyarrow's streaming reader (block size from the sniffed row size), every
    field as raw bytes so that a bad value never fails a whole block; malformed lines are skipped
    and reported in ``RawChunk.bad_rows``. Parquet is read by row batches of the needed columns;
    with ``file_format`` auto, a file that starts like Parquet is read as Parquet whatever its name.
    A file that looks like another format (JSON, a workbook, compressed data under a name that does
    not say so, UTF-16 text) is refused with one line saying so.

    Args:
        src: the file.
        roles: source column -> mapping key that names it (for messages).
        spec: the mapping's CSV settings.
        file_format: the mapping's ``format`` (``auto``, ``csv`` or ``parquet``).
        chunk_rows: rows per chunk (approximate for CSV).
        max_line_bytes: CSV lines longer than this (in UTF-8 bytes, the header excepted) are not
            read; each is reported in ``bad_rows`` with its length (``BadRow.length``).

    Yields:
        RawChunk objects; none for an empty or header-only file.

    Raises:
        InputError: the file cannot be opened or decoded, is not CSV or Parquet, or lacks a mapped
            column.
    """
    if src.is_parquet(file_format):
        yield from _parquet_chunks(src, roles, chunk_rows)
    else:
        yield from _csv_chunks(src, roles, spec, chunk_rows, max_line_bytes, file_format)
