"""Hostile input, fuzzed: over-long lines, undecodable ids, times beyond 2262 and zoned dates.

Each property says what must hold for any input: every row accounted for, no value or id changed,
no time wrapped around into another century.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from tests.etl.test_readers_fuzz import LONG, ingest_or_input_error, local

from capacity_forecaster.config import EtlConfig, IngestConfig
from capacity_forecaster.etl.ingest import ingest
from capacity_forecaster.etl.lines import LineGuard
from capacity_forecaster.etl.validate import validate

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CAP = 40
FILLER = b",,,,"


LINE = st.tuples(st.integers(0, 3 * CAP), st.sampled_from([b"\n", b"\r\n", b"\r"]))


@FAST
@given(st.lists(LINE, max_size=12), st.booleans(), st.lists(st.integers(1, 200), max_size=6))
@example([(0, b"\r\n"), (40, b"\n")], False, [1])  # a CRLF split between blocks: its LF is no line text
@example([(0, b"\n"), (34, b"\r\n"), (120, b"\r\n"), (0, b"\n")], False, [1, 157])  # ... after a cut line
@example([(0, b"\n"), (34, b"\r\n"), (120, b"\r\n"), (0, b"\n"), (0, b"\n")], False, [1, 157])  # ... then an LF
def test_line_guard_cuts_exactly_the_long_lines(lines: list[tuple[int, bytes]], last_break: bool,
                                                splits: list[int]) -> None:
    content = b"".join(b"a" * n + end for n, end in lines)
    if lines and not last_break:
        content = content[:len(content) - len(lines[-1][1])]
    guard = LineGuard(CAP, FILLER)
    out, start = [], 0
    for size in splits:
        out.append(guard.feed(content[start:start + size]))
        start += size
    out.append(guard.feed(content[start:], final=True))
    got = b"".join(out)
    # Every long line (never line 1) is replaced by the filler, everything else passes unchanged.
    # A line's length excludes its terminator; the CR of a cut CRLF line goes with the line.
    physical = _physical_lines(content)
    expected = {number: len(text) for number, (text, _) in enumerate(physical, start=1)
                if number > 1 and len(text) > CAP}
    assert {number: line.length for number, line in guard.long_lines.items()} == expected
    assert got.count(FILLER) == len(guard.long_lines)
    cut_cr = sum(1 for number, (_, end) in enumerate(physical, start=1) if number in expected and end == b"\r\n")
    kept = got.replace(FILLER, b"")
    assert len(kept) == len(content) - sum(expected.values()) - cut_cr
    assert _breaks(got) == _breaks(content)  # line numbers are kept


def _physical_lines(content: bytes) -> list[tuple[bytes, bytes]]:
    """(text, terminator) of each line, split on CRLF, LF or a lone CR (an independent oracle)."""
    import re

    found = [(m.group(1), m.group(2)) for m in re.finditer(rb"([^\r\n]*)(\r\n|\n|\r|$)", content)]
    return [line for line in found if line != (b"", b"")]


def _breaks(content: bytes) -> int:
    """Line breaks: LF, CRLF or a CR alone (a cut CRLF line keeps only its LF)."""
    return content.count(b"\n") + content.count(b"\r") - content.count(b"\r\n")


@FAST
@given(st.lists(st.tuples(st.sampled_from(["web-01", "db-2"]), st.integers(0, 47), st.integers(0, 2 * CAP * 4)),
                min_size=1, max_size=15), st.sampled_from([b"\n", b"\r\n"]))
def test_long_lines_are_quarantined_with_their_line_and_the_rest_is_read(
        rows: list[tuple[str, int, int]], newline: bytes) -> None:
    body = [f"{server},2024-01-01T{hour % 24:02d}:{hour // 24 * 30:02d}:00,cpu,{pad}".encode()
            + b"0" * max(0, pad - 40) for server, hour, pad in rows]
    content = newline.join([b"server,time,metric,value", *body]) + newline
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        path.write_bytes(content)
        result = ingest([str(path)], LONG, IngestConfig(max_line_bytes=4 * CAP), local)
    too_long = {i + 2 for i, line in enumerate(body) if len(line) > 4 * CAP}
    assert result.rows_read == len(rows) == result.rows_used + result.rows_quarantined
    reasons = result.quarantine["reason"]
    flagged = result.quarantine.loc[reasons.str.startswith("line_too_long:"), "source"]
    assert {int(s.rsplit(":", 1)[1]) for s in flagged} == too_long


ID_BYTES = st.sampled_from([b"web-01", b"w\xe9b-01", b"\xff", b"caf\xc3\xa9", b"ok\xe2\x82", b"db-2"])


@FAST
@given(st.lists(ID_BYTES, min_size=1, max_size=20))
def test_undecodable_ids_never_become_servers(ids: list[bytes]) -> None:
    rows = [i + b",2024-01-0" + str(1 + k % 9).encode() + b"T00:00:00,cpu,5" for k, i in enumerate(ids)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        path.write_bytes(b"\n".join([b"server,time,metric,value", *rows]) + b"\n")
        result = ingest_or_input_error(path)
    assert result is not None
    valid = {i.decode() for i in ids if _decodes(i)}
    assert set(result.raw_metrics["server_id"]) <= valid and set(result.inventory["server_id"]) <= valid
    bad = sum(not _decodes(i) for i in ids)
    assert result.quarantine["reason"].str.startswith("undecodable_server_id:").sum() == bad


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


MOMENT = st.one_of(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
                   st.sampled_from([dt.datetime(9999, 1, 1), dt.datetime(2262, 4, 12), dt.datetime(1677, 9, 20),
                                    dt.datetime(2024, 1, 1), dt.datetime(2262, 4, 11)]))


@FAST
@given(st.lists(MOMENT, min_size=1, max_size=12), st.sampled_from(["us", "ms", "s", "date32"]))
def test_parquet_times_beyond_2262_are_quarantined_never_wrapped(moments: list[dt.datetime], unit: str) -> None:
    kind = pa.date32() if unit == "date32" else pa.timestamp(unit)
    values = [m.date() for m in moments] if unit == "date32" else moments
    table = pa.table({"server": [f"s{i}" for i in range(len(values))], "time": pa.array(values, kind),
                      "metric": ["cpu"] * len(values), "value": [float(i) for i in range(len(values))]})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.parquet"
        pq.write_table(table, path)
        result = ingest_or_input_error(path)
    assert result is not None
    stored = [pd.Timestamp(v) for v in table.column("time").to_pylist()]  # as the file holds them
    expected = {f"s{i}": v.normalize().as_unit("ns") for i, v in enumerate(stored)
                if pd.Timestamp.min <= v <= pd.Timestamp.max}
    got = dict(zip(result.raw_metrics["server_id"], result.raw_metrics["ds"], strict=True))
    assert got == expected
    codes = result.quarantine["reason"].str.split(":").str[0]
    assert set(codes) <= {"timestamp_out_of_range"}


DS = st.one_of(
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)).map(lambda d: np.datetime64(d, "s")),
    st.sampled_from([np.datetime64("9999-12-31", "s"), np.datetime64("2024-01-01T05:00", "s"),
                     np.datetime64("NaT", "s")]),
)


@FAST
@given(st.lists(DS, min_size=1, max_size=20), st.sampled_from([None, "UTC", "Europe/Paris", "America/New_York"]))
def test_validate_never_fails_on_dates_and_accounts_for_every_row(days: list[np.datetime64], zone: str | None) -> None:
    ds = pd.Series(np.array(days, dtype="datetime64[s]"))
    if zone is not None:
        ds = ds[(ds.isna()) | ((ds > pd.Timestamp("1700-01-01")) & (ds < pd.Timestamp("2200-01-01")))]
        ds = ds.reset_index(drop=True).dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    raw = pd.DataFrame({"server_id": "a", "ds": ds, "metric": "cpu", "value": np.arange(len(ds), dtype=float)})
    checked = validate(raw, pd.DataFrame({"server_id": ["a"]}), EtlConfig())
    assert len(checked.rows) + len(checked.quarantine) == len(raw)
    first = (np.datetime64("2000-01-01") - np.datetime64("1970-01-01")).astype(int)
    last = (np.datetime64("2100-12-31") - np.datetime64("1970-01-01")).astype(int)
    assert ((checked.days >= first) & (checked.days <= last)).all()
    if zone is not None:
        local = ds.dt.tz_localize(None).iloc[checked.rows]
        assert (local.dt.normalize() == local).all()
        assert (checked.days == (local.to_numpy().astype("datetime64[D]") - np.datetime64("1970-01-01")).astype(int)
                ).all()


def test_a_line_exactly_at_the_cap_is_kept_whatever_its_line_ending() -> None:
    """The cap counts the line's bytes, not its terminator (a CRLF line of exactly max_bytes is kept)."""
    for newline in (b"\n", b"\r\n"):
        guard = LineGuard(CAP, FILLER)
        content = newline.join([b"header", b"x" * CAP, b"y" * (CAP + 1), b""])
        guard.feed(content, final=True)
        assert sorted(guard.long_lines) == [3], newline
