"""Bad input, fuzzed: a clear InputError naming the file, or partial success that accounts for every row."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from capacity_forecaster.config import IngestConfig
from capacity_forecaster.errors import InputError
from capacity_forecaster.etl.ingest import IngestResult, ingest
from capacity_forecaster.etl.mapping import Mapping, parse_mapping

LONG = parse_mapping({
    "layout": "long",
    "server_id": {"column": "server"},
    "timestamp": {"column": "time"},
    "long": {"value": "value", "metric_column": "metric"},
})
WIDE = parse_mapping({
    "layout": "wide",
    "server_id": {"from_filename": r"^(\w+)\.csv$"},
    "timestamp": {"column": "ts", "kind": "epoch"},
    "metrics": {"cpu": {"percent": "cpu"}, "memory": {"usage": "used", "capacity": "total"}},
})
FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


@contextmanager
def file_with(content: bytes, name: str = "data.csv") -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        yield path


def ingest_or_input_error(path: Path, mapping: Mapping = LONG) -> IngestResult | None:
    """Ingest, allowing only an InputError that names the file; check the accounting otherwise."""
    try:
        result = ingest([str(path)], mapping, IngestConfig(), local)
    except InputError as err:
        assert str(path) in str(err)
        return None
    assert result.rows_read == result.rows_used + result.rows_quarantined
    per_row = len(mapping.metrics) or 1
    assert int(result.raw_metrics["samples"].sum()) + len(result.quarantine) == per_row * result.rows_read
    assert result.quarantine["reason"].str.match(r"^[a-z_]+: ").all()
    assert result.quarantine["source"].str.startswith(str(path)).all()
    # No phantom server from undecodable bytes, no time wrapped around from beyond 2262.
    assert not result.raw_metrics["server_id"].astype(str).str.contains("\ufffd").any()
    assert result.raw_metrics["ds"].between(pd.Timestamp("1677-09-22"), pd.Timestamp("2262-04-11")).all()
    return result


@FAST
@given(st.binary(max_size=400))
def test_random_bytes(content: bytes) -> None:
    with file_with(content) as path:
        ingest_or_input_error(path)


@FAST
@given(st.binary(max_size=300))
def test_random_bytes_after_a_good_header(content: bytes) -> None:
    with file_with(b"server,time,metric,value\n" + content) as path:
        ingest_or_input_error(path)


FIELD = st.one_of(
    st.sampled_from(["s1", "s2", "", " ", "cpu", "memory", "disk", "gpu", "NaN", "inf", "-inf", "1e400",
                     "1e300", "-0", "12.5", "100.4", "99999999999999999999", "abc", "1,5", "caf\xe9"]),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["2024-01-01T00:00:00Z", "2024-01-01 00:05:00", "2024-01-01T00:10:00+02:00", "2024-01-01",
                     "01/02/2024 03:00", "2024-13-45", "2024-01-01T25:00:00", "1704067200", "9999-12-31",
                     "2024-03-10T02:30:00"]),
    st.text(alphabet=st.characters(blacklist_characters=',"\r\n', blacklist_categories=("Cs",)), max_size=8),
)
ENCODED_FIELD = st.one_of(FIELD.map(lambda f: f.encode("utf-8")),
                          st.sampled_from([b"\xff", b"caf\xe9", b"\x00"]))
ROW = st.lists(ENCODED_FIELD, min_size=0, max_size=6).map(lambda fields: b",".join(fields))
HEADERS = st.sampled_from([
    b"server,time,metric,value", b"time,server,value,metric", b"server;time;metric;value",
    b"server\ttime\tmetric\tvalue", b"server,time,value", b"Server,Time,Metric,Value",
    b"\xef\xbb\xbfserver,time,metric,value",
])


@FAST
@given(HEADERS, st.lists(ROW, max_size=25), st.booleans())
def test_structured_garbage_accounts_for_every_line(header: bytes, rows: list[bytes],
                                                     final_newline: bool) -> None:
    content = b"\n".join([header, *rows]) + (b"\n" if final_newline else b"")
    lines = content.split(b"\n")[1:]
    if lines and lines[-1] == b"":
        lines.pop()  # the line break that ends the last line
    with file_with(content) as path:
        result = ingest_or_input_error(path)
    if result is None:
        # Only a header without the mapped columns is refused.
        assert header not in (b"server,time,metric,value", b"time,server,value,metric",
                              b"server;time;metric;value", b"server\ttime\tmetric\tvalue",
                              b"\xef\xbb\xbfserver,time,metric,value")
        return
    # Every data line is a row: used, or quarantined with a reason (blank lines included).
    assert result.rows_read == len(lines)
    if not lines:
        assert result.warnings and "no data rows" in result.warnings[0]


WIDE_ROW = st.tuples(
    st.one_of(st.integers(1_300_000_000, 1_800_000_000).map(str), FIELD),
    FIELD, FIELD, st.one_of(st.sampled_from(["0", "0.0", "", "-1", "16384"]), FIELD),
).map(lambda fields: ";\t".join(fields).encode("utf-8", errors="replace"))


@FAST
@given(st.lists(WIDE_ROW, max_size=25))
@example([b"631152000000000.0;\ts1;\ts1;\t0"])  # microseconds read as seconds: the epoch-unit refusal
def test_wide_semicolon_tab_rows_with_capacities(rows: list[bytes]) -> None:
    content = b"\n".join([b"ts;\tcpu;\tused;\ttotal", *rows]) + b"\n"
    with file_with(content, "vm1.csv") as path:
        result = ingest_or_input_error(path, WIDE)
        if result is None:  # only times another timestamp.unit fits stop the ingest (stop 23), naming the file
            with pytest.raises(InputError, match=r"fall after 2262 as timestamp.unit 's'.*as '(ms|us|ns)'"):
                ingest([str(path)], WIDE, IngestConfig(), local)
            return
    assert result.rows_read == len(rows)
    kept = result.raw_metrics
    assert kept.empty or set(kept["server_id"]) == {"vm1"}


def test_empty_and_header_only_files_are_warnings_not_errors() -> None:
    for content in (b"", b"server,time,metric,value\n", b"server,time,metric,value", b"\n\n"):
        with file_with(content) as path:
            try:
                result = ingest([str(path)], LONG, IngestConfig(), local)
            except InputError as err:
                # Only whitespace before any header: there is no header line to read.
                assert content.strip() == b"" and content != b"" and str(path) in str(err)
                continue
            assert result.rows_read == 0 and result.raw_metrics.empty
            assert result.warnings == (f"{path}: no data rows (empty or header-only file)",)


EUROPEAN = parse_mapping({
    "layout": "wide",
    "csv": {"delimiter": ";", "decimal": ","},
    "server_id": {"column": "host"},
    "timestamp": {"column": "day"},
    "metrics": {"cpu": {"percent": "cpu"}, "memory": {"usage": "used", "capacity": "total"}},
})


def _de(value: float, decimals: int) -> str:
    """How a de-DE export writes a number: '1.026,7'."""
    return f"{value:,.{decimals}f}".replace(",", "\0").replace(".", ",").replace("\0", ".")


@FAST
@given(st.lists(st.tuples(st.floats(0, 150), st.floats(0, 1.2), st.integers(1, 10**7)), min_size=1, max_size=20))
def test_european_grouped_numbers_are_read_whole(days: list[tuple[float, float, int]]) -> None:
    """'1.026,7' and '16.384' with decimal ',' are 1026.7 and 16384: no value quarantined, none misread."""
    days = [(cpu, share * total, total) for cpu, share, total in days]
    lines = [b"host;day;cpu;used;total"] + [
        f"vm;{(pd.Timestamp('2024-01-01') + pd.Timedelta(days=i)).date()};{_de(cpu, 2)};{_de(used, 1)};"
        f"{_de(total, 0)}".encode() for i, (cpu, used, total) in enumerate(days)]
    with file_with(b"\n".join(lines) + b"\n") as path:
        result = ingest_or_input_error(path, EUROPEAN)
    assert result is not None and result.quarantine.empty
    daily = result.raw_metrics.pivot(index="ds", columns="metric", values="value")
    expected_cpu = [round(cpu, 2) for cpu, _, _ in days]
    expected_memory = [round(used, 1) / round(total) * 100 for _, used, total in days]
    np.testing.assert_allclose(daily["cpu"].to_numpy(), expected_cpu)
    np.testing.assert_allclose(daily["memory"].to_numpy(), expected_memory, rtol=1e-9)
