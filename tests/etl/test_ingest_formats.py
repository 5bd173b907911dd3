"""Files that are not CSV text: one clear line instead of a delimiter or column error; compressed CSV."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from capacity_forecaster.cli import main
from capacity_forecaster.config import IngestConfig
from capacity_forecaster.errors import ConfigError, InputError
from capacity_forecaster.etl.ingest import IngestResult, ingest
from capacity_forecaster.etl.mapping import parse_mapping
from capacity_forecaster.etl.sniff import PARQUET, not_csv

LONG = {
    "layout": "long",
    "server_id": {"column": "InstanceId"},
    "timestamp": {"column": "Timestamp"},
    "long": {"value": "Value", "metric_column": "MetricName", "metric_names": {"CPUUtilization": "cpu"}},
}
CSV = ("InstanceId,MetricName,Timestamp,Value\n"
       "i-1,CPUUtilization,2024-01-01T00:00:00Z,10\ni-1,CPUUtilization,2024-01-01T01:00:00Z,20\n")
# The shape of `aws cloudwatch get-metric-data` output.
GET_METRIC_DATA = json.dumps({"MetricDataResults": [{
    "Id": "m1", "Label": "i-1 CPUUtilization", "Timestamps": ["2024-01-01T01:00:00+00:00"],
    "Values": [20.0], "StatusCode": "Complete"}], "Messages": []}, indent=1)


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def run(path: Path, mapping: dict | None = None) -> IngestResult:
    return ingest([str(path)], parse_mapping(mapping or LONG), IngestConfig(), local)


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metrics/day1.csv", "server,time,metric,value\n")
    return buffer.getvalue()


def xlsx_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as book:
        book.writestr("[Content_Types].xml", "<Types/>")
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("get-metric-data.json", GET_METRIC_DATA.encode(), r"get-metric-data\.json: looks like JSON; capfc ingest "
                                                       r"reads CSV or Parquet — export the data as CSV"),
    ("lines.csv", b'{"InstanceId": "i-1", "Value": 3}\n{"InstanceId": "i-2", "Value": 4}\n', "looks like JSON"),
    ("array.json", b'[\n {"a": 1}\n]\n', "looks like JSON"),
    ("export.xlsx", xlsx_bytes(), r"looks like a spreadsheet workbook; .* save the sheet as CSV"),
    ("export.csv", xlsx_bytes(), r"looks like a spreadsheet workbook; .* save the sheet as CSV"),  # renamed
    ("export.zip", zip_bytes(), "looks like a ZIP archive; .* unzip it"),
    ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), r"Excel 97-2003 workbook \(\.xls\)"),
    ("packed.csv", gzip.compress(CSV.encode()), r"looks like gzip-compressed data; .* rename it to end in \.gz"),
    ("packed.dat", bz2.compress(CSV.encode()), r"looks like bzip2-compressed data; .* rename it to end in \.bz2"),
    ("unicode.txt", CSV.encode("utf-16"), "looks like UTF-16 text .* save it as UTF-8 CSV"),
    ("error.csv", b"<!DOCTYPE html>\n<html><body>Access denied</body></html>\n", "looks like XML or HTML"),
])
def test_a_file_that_is_not_csv_gets_one_line_saying_what_it_looks_like(
        tmp_path: Path, name: str, content: bytes, expected: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=expected) as caught:
        run(path)
    assert "\n" not in str(caught.value) and "delimiter" not in str(caught.value)


def test_csv_headers_that_start_like_other_formats_are_still_csv() -> None:
    for header in (b"[time],value\n", b"<time>,value\n", b"BZh,value\n", b"PK,value\n", b"{a},b\n"):
        assert not_csv(header + b"1,2\n", "x.csv") is None, header
    assert not_csv(b"\xef\xbb\xbf" + CSV.encode(), "bom.csv") is None


def test_the_cli_refuses_cloudwatch_json_with_exit_2_and_one_line(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "get-metric-data.json"
    data.write_text(GET_METRIC_DATA, encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(json.dumps(LONG), encoding="utf-8")
    code = main(["ingest", str(data), "--mapping", str(mapping), "--lake", str(tmp_path / "lake")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "looks like JSON" in err and "column 'InstanceId' not found" not in err


@pytest.mark.parametrize(("name", "compress"), [("a.csv.gz", gzip.compress), ("a.csv.bz2", bz2.compress),
                                                ("a.gz", gzip.compress)])
def test_compressed_csv_is_read_by_its_extension(tmp_path: Path, name: str, compress) -> None:
    path = tmp_path / name
    path.write_bytes(compress(CSV.encode()))
    result = run(path)
    assert result.rows_used == 2 and result.raw_metrics["value"].round(1).tolist() == [19.5]


def test_parquet_under_another_name_is_read_as_parquet_unless_the_mapping_says_csv(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    pq.write_table(pa.table({"InstanceId": ["i-1"], "MetricName": ["CPUUtilization"],
                             "Timestamp": ["2024-01-01T00:00:00Z"], "Value": [12.5]}), path)
    assert not_csv(path.read_bytes()[:64], "export.csv") == PARQUET
    assert run(path).raw_metrics["value"].tolist() == [12.5]
    with pytest.raises(InputError, match="looks like Parquet, but the mapping says format: csv"):
        run(path, {**LONG, "format": "csv"})


def test_utf16_is_refused_as_a_mapping_encoding() -> None:
    with pytest.raises(ConfigError, match="'utf-16' is not supported: .* save the file as UTF-8"):
        parse_mapping({**LONG, "csv": {"encoding": "utf-16"}}, "m.yaml")


def test_parquet_columns_of_lists_or_huge_integers_get_a_line_or_a_quarantine_record(tmp_path: Path) -> None:
    """helper-51: a list column mapped as the value, or a uint64 of 2**64 - 1, ended in an Arrow traceback."""
    stamps = pa.array(["2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"])
    base = {"InstanceId": ["i-1", "i-1"], "MetricName": ["CPUUtilization"] * 2, "Timestamp": stamps}
    pq.write_table(pa.table({**base, "Value": pa.array([[1.0], [2.0]])}), tmp_path / "list.parquet")
    with pytest.raises(InputError, match=r"list\.parquet: column 'Value' \(long\.value\) holds list<.*> values"):
        run(tmp_path / "list.parquet")
    pq.write_table(pa.table({**base, "Value": pa.array([2**64 - 1, 20], pa.uint64())}), tmp_path / "u64.parquet")
    result = run(tmp_path / "u64.parquet")
    assert result.rows_used == 1 and result.quarantine["reason"].str.startswith("value_out_of_range").all()
