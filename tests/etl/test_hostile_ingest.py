"""Issue 15 regressions at the ingest level: year 9999, Latin-1 ids, over-long lines."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from capacity_forecaster.config import IngestConfig
from capacity_forecaster.errors import InputError
from capacity_forecaster.etl.ingest import IngestResult, ingest
from capacity_forecaster.etl.mapping import load_mapping

GENERIC_LONG = load_mapping(Path(__file__).resolve().parents[2] / "mappings" / "generic_long.yaml")


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def run(path: Path, cfg: IngestConfig | None = None) -> IngestResult:
    result = ingest([str(path)], GENERIC_LONG, cfg or IngestConfig(), local)
    assert result.rows_read == result.rows_used + result.rows_quarantined
    return result


@pytest.mark.parametrize("kind", [pa.timestamp("us"), pa.timestamp("ms"), pa.date32(), pa.date64()])
def test_parquet_year_9999_is_quarantined_not_wrapped_to_1816(tmp_path: Path, kind: pa.DataType) -> None:
    times = [dt.datetime(9999, 1, 1), dt.datetime(2024, 1, 1)]
    values = [t.date() for t in times] if pa.types.is_date(kind) else times
    path = tmp_path / "one.parquet"
    pq.write_table(pa.table({"server": ["a", "a"], "time": pa.array(values, kind), "metric": ["cpu", "cpu"],
                             "value": [1.0, 2.0]}), path)
    result = run(path)
    assert result.raw_metrics["ds"].dt.year.tolist() == [2024]
    (reason,) = result.quarantine["reason"]
    assert reason.startswith("timestamp_out_of_range: '9999-01-01") and "column 'time'" in reason
    assert "1677-09-21..2262-04-11" in reason


def test_text_year_9999_is_out_of_range_not_unparseable(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("server,time,metric,value\na,9999-01-01 00:00:00,cpu,1\na,2024-01-01,cpu,2\n"
                    "a,1500-06-01T00:00:00Z,cpu,3\na,2024-13-45,cpu,4\n", encoding="utf-8")
    codes = run(path).quarantine["reason"].str.split(":").str[0].tolist()
    assert codes == ["timestamp_out_of_range", "timestamp_out_of_range", "unparseable_timestamp"]


def test_formatted_text_beyond_2262_is_out_of_range(tmp_path: Path) -> None:
    mapping = GENERIC_LONG.model_copy(update={"timestamp": GENERIC_LONG.timestamp.model_copy(
        update={"format": "%d/%m/%Y"})})
    path = tmp_path / "t.csv"
    path.write_text("server,time,metric,value\na,31/12/9999,cpu,1\na,01/01/2024,cpu,2\na,xx,cpu,3\n")
    result = ingest([str(path)], mapping, IngestConfig(), local)
    assert result.quarantine["reason"].str.split(":").str[0].tolist() == [
        "timestamp_out_of_range", "unparseable_timestamp"]


def test_latin1_server_id_is_quarantined_not_a_phantom_server(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    rows = b"".join(b"w\xe9b-01,2024-01-%02d T00:00:00,cpu,5\n".replace(b" ", b"") % d for d in range(1, 11))
    path.write_bytes(b"server,time,metric,value\nok-1,2024-01-01T00:00:00,cpu,6\n" + rows)
    result = run(path)
    assert set(result.raw_metrics["server_id"]) == {"ok-1"} and set(result.inventory["server_id"]) == {"ok-1"}
    reasons = result.quarantine["reason"]
    assert len(reasons) == 10
    assert reasons.str.startswith("undecodable_server_id: 'w\ufffdb-01' in column 'server'").all()
    assert "on line 3 " in reasons.iloc[0] and "csv.encoding" in reasons.iloc[0]
    assert result.quarantine["source"].iloc[0].endswith("wide.csv:3")


def test_line_longer_than_the_read_block_keeps_the_rest_of_the_file(tmp_path: Path) -> None:
    """A line over pyarrow's block (1 MiB at least) used to fail the whole file."""
    path = tmp_path / "big.csv"
    good = [f"a,2024-01-01T{h:02d}:00:00,cpu,{h}".encode() for h in range(6)]
    path.write_bytes(b"\n".join([b"server,time,metric,value", *good[:3], b"a,x," + b"9" * (3 << 20), *good[3:]]))
    result = run(path)
    assert result.rows_read == 7 and result.rows_used == 6
    (reason,) = result.quarantine["reason"]
    assert reason.startswith("line_too_long: line 5 has 3,145,732 bytes, more than ingest.max_line_bytes (1,048,576)")
    assert result.quarantine["source"].iloc[0].endswith("big.csv:5")
    assert result.quarantine["value"].iloc[0].startswith("a,x,999")
    assert int(result.raw_metrics["samples"].sum()) == 6


def test_max_line_bytes_is_the_setting_that_raises_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("server,time,metric,value\na,2024-01-01,cpu," + "1" * 300 + "\na,2024-01-02,cpu,2\n")
    assert run(path, IngestConfig(max_line_bytes=100)).quarantine["reason"].str.startswith("line_too_long").all()
    raised = run(path, IngestConfig(max_line_bytes=1000))
    assert raised.quarantine["reason"].str.startswith("value_out_of_range").all()


def test_epoch_milliseconds_read_as_seconds_say_which_unit_to_set(tmp_path: Path) -> None:
    """helper-46: a Prometheus export's epoch milliseconds under unit s gave a generic out-of-range line."""
    mapping = GENERIC_LONG.model_copy(update={"timestamp": GENERIC_LONG.timestamp.model_copy(
        update={"kind": "epoch", "unit": "s"})})
    path = tmp_path / "t.csv"
    seconds = "".join(f"a,{1727740800 + 300 * i},cpu,2\n" for i in range(200))
    path.write_text("server,time,metric,value\na,1727740800000,cpu,1\n" + seconds, encoding="utf-8")
    result = ingest([str(path)], mapping, IngestConfig(), local)  # one stray row: quarantined
    reason = result.quarantine["reason"].iloc[0]
    assert reason.startswith("timestamp_out_of_range: '1727740800000'")
    assert reason.endswith("(read as epoch s) lies outside 1677-09-21..2262-04-11, the range of nanosecond times: "
                           "if they are milliseconds, set timestamp.unit: ms")
    # helper-60: a server's file in ms beside one in s lost every row under the quarantine share, and exited 0.
    (tmp_path / "ms.csv").write_text("server,time,metric,value\n" + "".join(
        f"b,{1727740800000 + 300_000 * i},cpu,2\n" for i in range(199)), encoding="utf-8")
    with pytest.raises(InputError, match=r"ms.csv: 199 of 199 rows of column 'time' \(e.g. server b\) fall after 2262 "
                                         r"as timestamp.unit 's'; as 'ms' they fall on 2024-10-01: set timestamp.unit: "
                                         r"ms in the mapping; 1 other file\(s\) of the export fit timestamp.unit 's': "
                                         r"ingest the 1 that do not, this one among them, with a mapping of their own"):
        ingest([str(path), str(tmp_path / "ms.csv")], mapping, IngestConfig(), local)
    (tmp_path / "ms.csv").write_text("server,time,metric,value\n" + seconds + "".join(
        f"b,{1727740800000 + 300_000 * i},cpu,2\n" for i in range(10)), encoding="utf-8")
    with pytest.raises(InputError, match=r"10 of 210 rows .* \(the file mixes units: split it, one mapping per unit\)"):
        ingest([str(tmp_path / "ms.csv")], mapping, IngestConfig(), local)


def test_parquet_row_groups_are_read_a_few_at_a_time_up_to_the_chunk(tmp_path: Path) -> None:
    """One iterator per file held every batch (helper-45); one per 50-row group made ingest 4x slower (helper-48)."""
    from capacity_forecaster.etl.readers import _row_group_runs

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": list(range(95))}), path, row_group_size=10)
    metadata = pq.ParquetFile(path).metadata
    assert list(_row_group_runs(metadata, 30)) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert list(_row_group_runs(metadata, 5)) == [[g] for g in range(10)]  # a larger group alone
    pq.write_table(pa.table({"x": pa.array([], pa.int64())}), tmp_path / "e.parquet")
    assert list(_row_group_runs(pq.ParquetFile(tmp_path / "e.parquet").metadata, 30)) in ([None], [[0]])


def test_percent_signs_in_a_long_export_are_read_for_percent_metrics_only(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("server,time,metric,value\na,2024-01-01T00:00:00Z,cpu,17.5 %\na,2024-01-01T00:05:00Z,cpu,18%\n"
                    "a,2024-01-01T00:10:00Z,cpu,%\n", encoding="utf-8")
    result = run(path)
    assert result.rows_used == 2 and result.rows_quarantined == 1
    assert result.quarantine["reason"].str.startswith("unparseable_value: '%'").all()
