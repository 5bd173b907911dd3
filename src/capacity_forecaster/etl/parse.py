"""Vectorised parsing of raw columns into text, numbers and UTC timestamps, with a status per value."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from capacity_forecaster.etl.specs import TimestampSpec

OK = 0
MISSING = 1
UNPARSEABLE = 2
NON_FINITE = 3
OUT_OF_RANGE = 4
AMBIGUOUS = 5

NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|nan)$"
_ZONE_SUFFIX = r"[T ]\d{2}(:\d{2}(:\d{2}([.,]\d+)?)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)$"
_ISO_SHAPE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}(:\d{2}(:\d{2}([.,]\d+)?)?)?\s*(Z|z|[+-]\d{2}(:?\d{2})?)?)?$"
_INT64_NS_LIMIT = 9.2e18
# Thousands separators of grouped numbers ("1.026,7", "16,384", "1 250,00", "1'234.5"): the one of '.'
# and ',' that is not the decimal separator, and spaces (also no-break ones) and apostrophes.
_GROUPING = {",": ".", ".": ","}
_SPACES_AND_APOSTROPHES = (" ", "\u00a0", "\u202f", "'", "\u2019")
_STRING_NULL = pa.scalar(None, pa.string())
# Whole years that int64 nanoseconds since 1970 hold (1677-09-21 .. 2262-04-11).
_FIRST_NS_YEAR = 1678
_LAST_NS_YEAR = 2261


def _flat(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def as_text(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Valid UTF-8 text of any column, surrounding ASCII whitespace trimmed.

    Binary CSV fields that are not valid UTF-8 are decoded with replacement characters, so that
    they show in the quarantine and never parse as a number or time.
    """
    array = _flat(array)
    if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
        try:
            array = pc.cast(array, pa.string())
        except pa.ArrowInvalid:
            decoded = [None if b is None else b.decode("utf-8", errors="replace") for b in array.to_pylist()]
            array = pa.array(decoded, pa.string())
    elif not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = pc.cast(array, pa.string())
    return pc.ascii_trim_whitespace(array)


def texts_at(array: pa.Array | pa.ChunkedArray, index: np.ndarray) -> np.ndarray:
    """Original text of the rows at ``index`` (object array; None where the field was null)."""
    if len(index) == 0:
        return np.empty(0, dtype=object)
    taken = _flat(array).take(pa.array(index, pa.int64()))
    return np.asarray(as_text(taken).to_numpy(zero_copy_only=False), dtype=object)


# Text that exporters write for "no measurement" (vendor CSVs, Excel, databases), in lower, upper or
# capitalised case after trimming: missing, as an empty cell is; not a misread number.
NULL_MARKERS = ("n/a", "na", "#n/a", "null", "none", "-", "--")
_NULL_MARKERS = pa.array(sorted({form for marker in NULL_MARKERS
                                 for form in (marker, marker.upper(), marker.capitalize())}), pa.string())


def _empty_as_null(text: pa.Array) -> tuple[pa.Array, np.ndarray]:
    empty = pc.fill_null(pc.equal(pc.binary_length(text), 0), True)
    marker = pc.fill_null(pc.is_in(text, value_set=_NULL_MARKERS), False)  # as_text trimmed it
    empty = pc.or_(empty, marker)
    return pc.if_else(empty, _STRING_NULL, text), np.asarray(empty.to_numpy(zero_copy_only=False), dtype=bool)


def parse_numbers(array: pa.Array | pa.ChunkedArray, decimal: str = ".") -> tuple[np.ndarray, np.ndarray]:
    """Parse a column as float64.

    Text numbers may group their digits in threes with a thousands separator: the one of ``.`` and
    ``,`` that is not ``decimal``, a space (also U+00A0 or U+202F) or an apostrophe (also U+2019),
    one kind per number: with decimal ``,`` ``1.026,7`` is 1026.7 and ``16.384`` is 16384; with
    decimal ``.`` ``1,026.7`` is 1026.7 and ``16,384`` is 16384. A grouping must be well formed (a
    first group of 1-3 digits not starting with 0, then groups of exactly three), else the value is
    UNPARSEABLE; so is a ``.`` with decimal ``,`` that does not group digits (``3.75``): the mapping
    says ``,`` is the decimal separator, and reading ``3.75`` as 3.75 but ``3.750`` as 3750 would mix
    two readings in one column.

    Args:
        array: the column (text as read from CSV, or a typed Parquet column).
        decimal: the decimal separator of text numbers.

    Returns:
        (values, status): float64 values (NaN where not OK) and int8 status per row:
        OK, MISSING (null or empty), UNPARSEABLE or NON_FINITE (NaN, inf, overflow).
    """
    array = _flat(array)
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        # Unsafe: a uint64 of 2**64 - 1 (helper-51) or a wide decimal becomes its nearest float, judged like any other
        # value (out of range), instead of a cast error.
        values = np.asarray(pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False),
                            dtype=np.float64)
        missing = np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        status = np.where(missing, MISSING, np.where(np.isfinite(values), OK, NON_FINITE)).astype(np.int8)
        return np.where(status == OK, values, np.nan), status
    text, missing = _empty_as_null(as_text(array))
    parsed = _text_to_float(text, decimal)
    values = np.asarray(parsed.to_numpy(zero_copy_only=False), dtype=np.float64)
    unparsed = np.asarray(parsed.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    status = np.full(len(values), OK, dtype=np.int8)
    status[~np.isfinite(values)] = NON_FINITE
    status[unparsed] = UNPARSEABLE
    status[missing] = MISSING
    return np.where(status == OK, values, np.nan), status


def with_percent_signs(array: pa.Array | pa.ChunkedArray, values: np.ndarray, status: np.ndarray,
                       rows: np.ndarray, decimal: str = ".") -> tuple[np.ndarray, np.ndarray]:
    """``parse_numbers``' result with the UNPARSEABLE ``rows`` (a boolean mask: values that are percentages) read
    again without a trailing percent sign: ``17,43 %`` is 17.43 in a percent column, a common vendor format
    (helper-46). Other rows, and text that is no number without its sign, are left as they were."""
    retry = rows & (status == UNPARSEABLE)
    if not retry.any():
        return values, status
    text = as_text(_flat(array)).take(pa.array(np.flatnonzero(retry)))
    signed = pc.fill_null(pc.match_substring_regex(text, r"^\s*[^%\s](.*[^%\s])?\s*%\s*$"), False)
    bare = pc.if_else(signed, pc.utf8_trim_whitespace(pc.replace_substring_regex(text, r"\s*%\s*$", "")),
                      _STRING_NULL)
    again, again_status = parse_numbers(bare, decimal)
    values, status = values.copy(), status.copy()
    read = np.isin(again_status, (OK, NON_FINITE))  # "nan %" is non-finite, as "nan" is
    at = np.flatnonzero(retry)[read]
    values[at], status[at] = again[read], again_status[read]
    return values, status


def _re2_class(chars: tuple[str, ...]) -> str:
    return "[" + "".join(f"\\x{{{ord(c):04X}}}" for c in chars) + "]"


def _ungroup(text: pa.Array, decimal: str) -> pa.Array:
    """Text with the thousands separators of well-formed grouped numbers removed (others unchanged)."""
    separators = (_GROUPING[decimal], *_SPACES_AND_APOSTROPHES)
    any_separator = _re2_class(separators)
    if not pc.any(pc.fill_null(pc.match_substring_regex(text, any_separator), False)).as_py():
        return text
    groups = "|".join(f"({_re2_class((sep,))}\\d{{3}})+" for sep in separators)
    pattern = f"^[+-]?[1-9]\\d{{0,2}}({groups})({_re2_class((decimal,))}\\d*)?$"
    grouped = pc.fill_null(pc.match_substring_regex(text, pattern), False)
    return pc.if_else(grouped, pc.replace_substring_regex(text, any_separator, ""), text)


def _text_to_float(text: pa.Array, decimal: str) -> pa.Array:
    """float64 of number text (null where it is not a number); see parse_numbers for the rules."""
    if decimal == ".":
        try:
            return pc.cast(text, pa.float64())
        except pa.ArrowInvalid:
            pass
    text = _ungroup(text, decimal)
    if decimal == ",":
        # Every '.' left is outside a grouping: not a number in this locale (see parse_numbers).
        text = pc.if_else(pc.fill_null(pc.match_substring(text, "."), False), _STRING_NULL, text)
        text = pc.replace_substring(text, ",", ".")
    try:
        return pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        numeric = pc.match_substring_regex(text, _NUMBER, ignore_case=True)
        return pc.cast(pc.if_else(numeric, text, _STRING_NULL), pa.float64())


class ColumnNumbers:
    """Parses each column of one chunk as numbers at most once (metrics and inventory share columns)."""

    def __init__(self, columns: dict[str, pa.Array], decimal: str = ".") -> None:
        self.columns = columns
        self.decimal = decimal
        self._parsed: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __call__(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, status) of ``column`` as returned by parse_numbers; do not modify them."""
        found = self._parsed.get(column)
        if found is None:
            found = self._parsed[column] = parse_numbers(self.columns[column], self.decimal)
        return found


def _localize(ns: np.ndarray, status: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Read naive wall-clock times in ``timezone`` as UTC; ambiguous or skipped times get AMBIGUOUS.

    An AMBIGUOUS row keeps its wall-clock time (naive ns) for ``resolve_repeated``.
    """
    if timezone == "UTC":
        return ns, status
    wall = pd.DatetimeIndex(np.where(status == OK, ns, np.iinfo(np.int64).min).view("datetime64[ns]"))
    local = wall.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT")
    lost = np.asarray(local.isna()) & (status == OK)
    status = np.where(lost, AMBIGUOUS, status).astype(np.int8)
    return np.where(status == OK, local.asi8, np.where(status == AMBIGUOUS, ns, 0)), status


def resolve_repeated(ns: np.ndarray, status: np.ndarray, series: np.ndarray,
                     timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """Place the wall-clock times a DST change repeats by their order in the file.

    When clocks go back, one local hour (e.g. 02:00-02:59 on the last Sunday of October in
    Europe) happens twice. Within one series (``series``: a code per row, e.g. server and metric)
    of one read chunk, rows are taken in file order and each time of that hour is given the
    earlier instant (summer time) when that instant comes after the last placed row of the series,
    else the later one (standard time) when that does; a series whose rows run newest first
    (the sign of its steps between unambiguous times) is read the other way round. Exporters'
    seconds drift between the two passes does not matter. Everything that cannot be decided stays
    AMBIGUOUS (quarantined, never guessed): a row with no earlier placed row in its series in the
    chunk, a series without a direction, a time equal to the row before it (a duplicated row, or
    the repeat itself in hourly data), one neither instant of which follows the last placed row,
    and every time a DST change skips.

    Args:
        ns: UTC ns per row from ``parse_timestamps`` (wall-clock ns where AMBIGUOUS).
        status: per-row status from ``parse_timestamps``.
        series: int64 series code per row, in file order.
        timezone: the zone of the naive times.

    Returns:
        (ns, status) with the repeated times that could be placed made OK.
    """
    rows = np.flatnonzero(status == AMBIGUOUS)
    if len(rows) == 0 or timezone == "UTC":
        return ns, status
    wall = pd.DatetimeIndex(ns[rows].view("datetime64[ns]"))
    summer = wall.tz_localize(timezone, ambiguous=np.ones(len(rows), dtype=bool), nonexistent="NaT")
    winter = wall.tz_localize(timezone, ambiguous=np.zeros(len(rows), dtype=bool), nonexistent="NaT")
    repeated = ~np.asarray(summer.isna()) & ~np.asarray(winter.isna()) & (summer.asi8 != winter.asi8)
    if not repeated.any():
        return ns, status
    candidates = {int(r): (int(a), int(b)) for r, a, b in zip(rows[repeated], summer.asi8[repeated],
                                                              winter.asi8[repeated], strict=True)}
    # The rows of the series with a repeated time, by series and in file order within each.
    usable = np.flatnonzero(((status == OK) | (status == AMBIGUOUS)) & np.isin(series, series[rows[repeated]]))
    usable = usable[np.argsort(series[usable], kind="stable")]
    ns, status = ns.copy(), status.copy()
    for part in np.split(usable, np.flatnonzero(np.diff(series[usable])) + 1):
        known = part[status[part] == OK]
        direction = int(np.sign(np.diff(ns[known])).sum()) if len(known) > 1 else 0
        previous: int | None = None       # the instant of the last row placed before
        previous_wall: int | None = None
        for row in part.tolist():
            if row not in candidates:
                if status[row] == OK:
                    previous, previous_wall = int(ns[row]), None
                continue
            here = int(ns[row])
            early, late = candidates[row]
            choice = None
            if direction != 0 and previous is not None and here != previous_wall:
                first, second = (early, late) if direction > 0 else (late, early)
                for instant in (first, second):
                    if (instant - previous) * direction > 0:
                        choice = instant
                        break
            previous_wall = here
            if choice is not None:
                previous = choice
                ns[row], status[row] = choice, OK
    return ns, status


def out_of_ns_range(array: pa.Array) -> np.ndarray:
    """Rows of a date or timestamp column that nanoseconds since 1970 cannot hold (about 1677-2262)."""
    kind = array.type
    if pa.types.is_date32(kind):
        per_unit = 86_400 * NS_PER_UNIT["s"]
    elif pa.types.is_date64(kind):
        per_unit = NS_PER_UNIT["ms"]
    elif pa.types.is_timestamp(kind):
        per_unit = NS_PER_UNIT[kind.unit]
    else:
        return np.zeros(len(array), dtype=bool)
    if per_unit == 1:
        return np.zeros(len(array), dtype=bool)
    ints = array.cast(pa.int32() if pa.types.is_date32(kind) else pa.int64()).cast(pa.int64())
    raw = np.asarray(pc.fill_null(ints, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    limit = np.iinfo(np.int64).max // per_unit
    return np.abs(raw) > limit


def _rolled_over(text: pa.Array, fmt: str, parsed: pa.Array, unparsed: np.ndarray) -> np.ndarray:
    """Rows whose text names a day the month does not have (``30/02/2024``): Arrow's strptime rolls them into the
    next month (2024-03-01; helper-51), Python's strptime (pandas) refuses them. Only a parsed day 1-3, where a
    rolled-over date lands, is checked, so a text the two parsers read differently otherwise is left alone."""
    days = np.asarray(pc.fill_null(pc.day(parsed), 0).to_numpy(zero_copy_only=False))
    suspect = ~unparsed & (days >= 1) & (days <= 3)
    out = np.zeros(len(unparsed), dtype=bool)
    if not suspect.any():
        return out
    texts = pd.Series(np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)[suspect])
    try:
        checked = pd.to_datetime(texts, format=fmt, errors="coerce", utc=True)
    except (ValueError, TypeError):
        return out  # a format pandas does not take: Arrow's reading stands
    out[np.flatnonzero(suspect)] = checked.isna().to_numpy()
    return out


def _timestamp_values(parsed: pa.Array) -> tuple[np.ndarray, np.ndarray, bool, np.ndarray]:
    """int64 ns, null mask, whether the type carried a zone and the rows beyond the ns range.

    Rows beyond the ns range (years before 1677 or after 2262) get 0 instead of a wrapped-around
    time: a year-9999 sentinel must never turn into 1816.
    """
    has_zone = pa.types.is_timestamp(parsed.type) and parsed.type.tz is not None
    target = pa.timestamp("ns", "UTC") if has_zone else pa.timestamp("ns")
    beyond = out_of_ns_range(parsed)
    if beyond.any():
        parsed = pc.if_else(pa.array(beyond), pa.scalar(None, parsed.type), parsed)
    cast = pc.cast(parsed, target)
    nulls = np.asarray(cast.is_null().to_numpy(zero_copy_only=False), dtype=bool) & ~beyond
    ns = np.asarray(pc.fill_null(cast.cast(pa.int64()), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return ns, nulls, has_zone, beyond


def _cast_iso(text: pa.Array, zoned: bool) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 text that all has (or all lacks) a zone suffix to (ns, unparsed)."""
    target = pa.timestamp("ns", "UTC" if zoned else None)
    try:
        return _timestamp_values(pc.cast(text, target))[:2]
    except pa.ArrowInvalid:
        pass
    shaped = pc.if_else(pc.match_substring_regex(text, _ISO_SHAPE), text, _STRING_NULL)
    try:
        return _timestamp_values(pc.cast(shaped, target))[:2]
    except pa.ArrowInvalid:
        pass
    # Well-shaped but impossible dates (month 13, hour 25) are left to pandas' lenient parser.
    values = pd.Series(shaped.to_numpy(zero_copy_only=False), dtype=object)
    # utc=True keeps naive wall-clock numbers as they are and never fails on a stray offset.
    times = pd.DatetimeIndex(pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True))
    unparsed = np.asarray(times.isna())
    return np.where(unparsed, 0, times.asi8), unparsed


def _iso_year_beyond(text: pa.Array) -> np.ndarray:
    """ISO-shaped text whose year lies outside what nanoseconds can hold (before 1678 or after 2261)."""
    shaped = pc.fill_null(pc.match_substring_regex(text, _ISO_SHAPE), False)
    year = pc.cast(pc.utf8_slice_codeunits(pc.if_else(shaped, text, _STRING_NULL), 0, 4), pa.int32())
    beyond = pc.or_(pc.less(year, _FIRST_NS_YEAR), pc.greater(year, _LAST_NS_YEAR))
    return np.asarray(pc.fill_null(beyond, False).to_numpy(zero_copy_only=False), dtype=bool)


def _parse_iso(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ISO 8601 text to (ns, unparsed, zoned): zoned rows are already UTC, the others are wall clock."""
    present = pc.drop_null(text)
    if len(present) == 0:
        n = len(text)
        return np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    # Exports rarely mix forms: guess from the first value, split by regex only if the guess fails.
    guess = re.search(_ZONE_SUFFIX, present[0].as_py()) is not None
    try:
        ns, unparsed, _, _ = _timestamp_values(pc.cast(text, pa.timestamp("ns", "UTC" if guess else None)))
        return ns, unparsed, np.full(len(text), guess)
    except pa.ArrowInvalid:
        pass
    zoned = np.asarray(pc.fill_null(pc.match_substring_regex(text, _ZONE_SUFFIX), False)
                       .to_numpy(zero_copy_only=False), dtype=bool)
    ns = np.zeros(len(text), dtype=np.int64)
    unparsed = np.ones(len(text), dtype=bool)
    for part, is_zoned in ((zoned, True), (~zoned, False)):
        index = np.flatnonzero(part)
        if len(index):
            ns[index], unparsed[index] = _cast_iso(text.take(pa.array(index)), is_zoned)
    return ns, unparsed, zoned


def parse_timestamps(array: pa.Array | pa.ChunkedArray, spec: TimestampSpec) -> tuple[np.ndarray, np.ndarray]:
    """Parse the time column into UTC nanoseconds since the epoch.

    Args:
        array: the column (text from CSV, or numbers/timestamps/dates from Parquet).
        spec: the mapping's timestamp section (kind, unit, format, zone of naive text).

    Returns:
        (ns, status): int64 UTC nanoseconds (0 where not OK) and int8 status per row: OK, MISSING,
        UNPARSEABLE, OUT_OF_RANGE or AMBIGUOUS (a local time that a DST change skips or repeats).
    """
    array = _flat(array)
    if pa.types.is_timestamp(array.type) or pa.types.is_date(array.type):
        ns, nulls, has_zone, beyond = _timestamp_values(array)
        status = np.where(nulls, MISSING, np.where(beyond, OUT_OF_RANGE, OK)).astype(np.int8)
        return (ns, status) if has_zone else _localize(ns, status, spec.timezone)
    if spec.kind == "epoch":
        values, status = parse_numbers(array)
        status = np.where(status == NON_FINITE, UNPARSEABLE, status).astype(np.int8)
        factor = NS_PER_UNIT[spec.unit]
        ok = status == OK
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = values * factor
        status[ok & ~(np.abs(scaled) < _INT64_NS_LIMIT)] = OUT_OF_RANGE
        ok = status == OK
        whole = values[ok]
        if np.all(whole == np.floor(whole)) and (len(whole) == 0 or np.abs(whole).max() < 2.0**53):
            ns = np.where(ok, np.where(ok, values, 0).astype(np.int64) * factor, 0)
        else:
            ns = np.where(ok, np.round(np.where(ok, scaled, 0)), 0).astype(np.int64)
        return ns.astype(np.int64), status
    text, missing = _empty_as_null(as_text(array))
    if spec.format is not None:
        parsed = pc.strptime(text, format=spec.format, unit="ns", error_is_null=True)
        ns, unparsed, has_zone, _ = _timestamp_values(parsed)
        rolled = _rolled_over(text, spec.format, parsed, unparsed)
        unparsed |= rolled
        zoned = np.full(len(ns), has_zone)
        # A time that parses in seconds but not in nanoseconds lies beyond the ns range.
        beyond = unparsed & ~rolled & np.asarray(pc.is_valid(pc.strptime(text, format=spec.format, unit="s",
                                                               error_is_null=True))
                                       .to_numpy(zero_copy_only=False), dtype=bool)
    else:
        ns, unparsed, zoned = _parse_iso(text)
        beyond = unparsed & _iso_year_beyond(text)
    status = np.where(missing, MISSING, np.where(beyond, OUT_OF_RANGE,
                                                 np.where(unparsed, UNPARSEABLE, OK))).astype(np.int8)
    if spec.timezone != "UTC" and not zoned.all():
        naive = ~zoned
        local_ns, local_status = _localize(ns[naive], status[naive], spec.timezone)
        ns = ns.copy()
        ns[naive] = local_ns
        status[naive] = local_status
    return np.where((status == OK) | (status == AMBIGUOUS), ns, 0).astype(np.int64), status
