"""Ingest on tiny hand-written exports: layouts, times, metrics, quarantine, accounting and sources."""

from __future__ import annotations

import bz2
import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from capacity_forecaster.config import IngestConfig
from capacity_forecaster.errors import ConfigError, InputError
from capacity_forecaster.etl import parse
from capacity_forecaster.etl.ingest import IngestResult, ingest
from capacity_forecaster.etl.mapping import parse_mapping
from capacity_forecaster.schema import INVENTORY_COLUMNS, QUARANTINE_COLUMNS

WIDE = {
    "layout": "wide",
    "server_id": {"column": "host"},
    "timestamp": {"column": "ts"},
    "metrics": {"cpu": {"percent": "cpu"}, "memory": {"usage": "used", "capacity": "total"}},
}
LONG = {
    "layout": "long",
    "server_id": {"column": "server"},
    "timestamp": {"column": "time"},
    "long": {"value": "value", "metric_column": "metric", "metric_names": {"cpu_util": "cpu"}},
}


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def run(sources: list[Path | str], mapping: dict, cfg: IngestConfig | None = None) -> IngestResult:
    result = ingest([str(s) for s in sources], parse_mapping(mapping), cfg or IngestConfig(), local)
    assert result.rows_read == result.rows_used + result.rows_quarantined
    assert list(result.quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert not result.raw_metrics.duplicated(["server_id", "ds", "metric"]).any()
    return result


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


def reasons(result: IngestResult) -> list[str]:
    return result.quarantine["reason"].tolist()


def test_wide_csv_daily_p95_mean_max_and_samples(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    times = pd.date_range("2024-03-01", periods=2 * 288, freq="5min")
    cpu = rng.uniform(0, 100, len(times)).round(3)
    frame = pd.DataFrame({"host": "web-1", "ts": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "cpu": cpu,
                          "used": 4.0, "total": 16.0})
    frame.to_csv(tmp_path / "a.csv", index=False)
    result = run([tmp_path / "a.csv"], WIDE)
    daily = result.raw_metrics
    assert list(daily.columns) == ["server_id", "ds", "metric", "value", "samples", "value_mean",
                                   "value_max", "coverage", "low_coverage"]
    cpu_days = daily[daily["metric"] == "cpu"]
    assert cpu_days["ds"].tolist() == [pd.Timestamp("2024-03-01"), pd.Timestamp("2024-03-02")]
    for day, part in enumerate(np.split(cpu, 2)):
        row = cpu_days.iloc[day]
        assert row["value"] == pytest.approx(np.percentile(part, 95), rel=1e-12)
        assert row["value_mean"] == pytest.approx(part.mean()) and row["value_max"] == part.max()
        assert row["samples"] == 288 and row["coverage"] == 1.0 and not row["low_coverage"]
    assert (daily[daily["metric"] == "memory"]["value"] == 25.0).all()
    assert result.rows_read == result.rows_used == 576 and result.quarantine.empty
    assert result.warnings == () and result.inventory_ids_only
    assert result.inventory["server_id"].tolist() == ["web-1"] and result.inventory["cpu_cores"].isna().all()


def test_capacity_rows_quarantined_with_reason_and_line(tmp_path: Path) -> None:
    text = ("host,ts,cpu,used,total\n"
            "a,2024-01-01 00:00,10,1,4\n"
            "a,2024-01-01 00:05,20,1,0\n"       # memory capacity 0: not a measurement
            "a,2024-01-01 00:10,30,1,\n"        # memory capacity empty
            "a,2024-01-01 00:15,abc,1,4\n"      # cpu unparseable, memory fine
            "a,2024-01-01 00:20,101.5,1,-4\n"   # cpu slightly over 100 is kept
            ",2024-01-01 00:25,5,1,4\n")        # no server id: both metrics quarantined
    result = run([write(tmp_path / "m.csv", text)], WIDE)
    q = result.quarantine.set_index(["source", "metric"])
    src = str(tmp_path / "m.csv")
    assert q.loc[(f"{src}:3", "memory"), "reason"] == "zero_capacity: column 'total' is '0'"
    assert q.loc[(f"{src}:4", "memory"), "reason"] == "missing_capacity: column 'total' is empty"
    assert q.loc[(f"{src}:5", "cpu"), "reason"] == "unparseable_value: 'abc' in column 'cpu'"
    assert q.loc[(f"{src}:5", "cpu"), "value"] == "abc"
    assert q.loc[(f"{src}:6", "memory"), "reason"] == "invalid_capacity: '-4' in column 'total' (must be > 0)"
    assert q.loc[(f"{src}:7", "cpu"), "reason"] == "missing_server_id: column 'host' is empty"
    assert q.loc[(f"{src}:7", "cpu"), "ds"] == "2024-01-01 00:25"
    assert result.rows_read == 6 and result.rows_quarantined == 1
    assert result.raw_metrics["samples"].sum() + len(result.quarantine) == 2 * result.rows_read
    cpu = result.raw_metrics.set_index("metric").loc["cpu"]
    assert cpu["value_max"] == 101.5 and cpu["samples"] == 4
    assert result.raw_metrics.set_index("metric").loc["memory", "value"] == 25.0


def test_long_layout_metric_names_and_unknown_metrics(tmp_path: Path) -> None:
    text = ("server,time,metric,value\n"
            "db,2024-01-01T00:00:00,cpu_util,40\n"
            "db,2024-01-01T01:00:00,memory,70\n"
            "db,2024-01-01T02:00:00,load_avg,3\n")
    result = run([write(tmp_path / "l.csv", text)], LONG)
    assert result.raw_metrics.set_index("metric")["value"].to_dict() == {"cpu": 40.0, "memory": 70.0}
    assert reasons(result) == ["unknown_metric: 'load_avg' in column 'metric' (mapped names: cpu, cpu_util, "
                               "disk, memory, network)"]
    assert result.quarantine["metric"].tolist() == ["load_avg"]
    assert (result.rows_read, result.rows_used, result.rows_quarantined) == (3, 2, 1)


def test_epoch_milliseconds_and_a_wrong_unit_is_refused(tmp_path: Path) -> None:
    start = pd.Timestamp("2024-05-01", tz="UTC").value // 10**6
    text = "host;ts;cpu\n" + "".join(f"h;{start + i * 60_000};{i}\n" for i in range(10))
    mapping = {**WIDE, "timestamp": {"column": "ts", "kind": "epoch", "unit": "ms"},
               "metrics": {"cpu": {"percent": "cpu"}}}
    result = run([write(tmp_path / "e.csv", text)], mapping)
    assert result.raw_metrics["ds"].tolist() == [pd.Timestamp("2024-05-01")]
    assert result.warnings == ()
    seconds = {**mapping, "timestamp": {"column": "ts", "kind": "epoch", "unit": "us"}}
    # Milliseconds read as microseconds land in January 1970; as ms they fall in 2024: refused, the unit named.
    with pytest.raises(InputError, match=r"timestamp.unit 'us' puts most values of column 'ts' before 1990 "
                                         r"\(median 1970-01-20\); as 'ms' they fall on 2024-05-01: set "
                                         r"timestamp.unit: ms in the mapping \(nothing was written\)"):
        run([tmp_path / "e.csv"], seconds)
    # Small numbers no unit makes recent (a test clock from 0) are read as asked, with a warning.
    early = run([write(tmp_path / "z.csv", "host;ts;cpu\nh;0;1\nh;60;2\n")], mapping)
    assert any("before 1990 (median 1970-01-01)" in w and "timestamp.unit 'ms'" in w for w in early.warnings)
    # One file in seconds among files in milliseconds (helper-51: its rows landed on 1970-01-20, all "used").
    for n in range(3):
        write(tmp_path / "mixed" / f"ms{n}.csv", text.replace("h;", f"h{n};"))
    write(tmp_path / "mixed" / "sec.csv", "host;ts;cpu\n" + "".join(f"s;{start // 1000 + i * 60};{i}\n"
                                                                  for i in range(10)))
    with pytest.raises(InputError, match=r"sec\.csv: timestamp.unit 'ms' puts most values of column 'ts' before "
                                         r"1990 .* as 's' they fall on 2024-05-01"):
        run([tmp_path / "mixed"], mapping)


def test_semicolon_tab_files_are_sniffed(tmp_path: Path) -> None:
    # The last line holds a stray ';': it looks more tab-separated than the others, yet ';' is it.
    text = "Timestamp [ms];\tCPU usage [%]\n1372629804;\t1.5\n1372630104;\t2.5\n1372630404;\t;\n"
    mapping = {"layout": "wide", "server_id": {"from_filename": r"(\d+)\.csv", "prefix": "vm-"},
               "timestamp": {"column": "Timestamp [ms]", "kind": "epoch"},
               "metrics": {"cpu": {"percent": "CPU usage [%]"}}}
    result = run([write(tmp_path / "7.csv", text)], mapping)
    assert result.raw_metrics["server_id"].tolist() == ["vm-7"]
    assert reasons(result) == ["wrong_field_count: expected 2 fields, found 3"]
    assert result.raw_metrics["ds"].tolist() == [pd.Timestamp("2013-06-30")]


def test_day_timezone_and_dst_day_lengths(tmp_path: Path) -> None:
    # Hourly samples over the 2024 spring-forward day in New York (23 hours long).
    times = pd.date_range("2024-03-10 05:00", "2024-03-11 03:00", freq="h", tz="UTC")
    frame = pd.DataFrame({"host": "ny", "ts": times.strftime("%Y-%m-%dT%H:%M:%S+00:00"), "cpu": 50.0})
    frame.to_csv(tmp_path / "ny.csv", index=False)
    mapping = {**WIDE, "day_timezone": "America/New_York", "interval_seconds": 3600,
               "metrics": {"cpu": {"percent": "cpu"}}}
    daily = run([tmp_path / "ny.csv"], mapping).raw_metrics
    # 05:00 UTC on 10 March is midnight in New York; the day has 23 samples and 23 hours.
    assert daily["ds"].tolist() == [pd.Timestamp("2024-03-10")]
    assert daily["samples"].tolist() == [23] and daily["coverage"].tolist() == [1.0]
    utc = run([tmp_path / "ny.csv"], {**mapping, "day_timezone": "UTC"}).raw_metrics
    assert utc["ds"].tolist() == [pd.Timestamp("2024-03-10"), pd.Timestamp("2024-03-11")]


def test_naive_text_in_a_zone_and_skipped_local_times(tmp_path: Path) -> None:
    text = ("host,ts,cpu\n"
            "a,2024-03-10 00:30,1\n"
            "a,2024-03-10 02:30,2\n"   # skipped in New York (clocks go forward at 02:00)
            "a,2024-03-10 23:30,3\n"
            "a,2024-11-03 00:30,4\n"
            "a,2024-11-03 01:30,5\n")  # happens twice; after 00:30 in the file: the first (summer) instant
    mapping = {**WIDE, "timestamp": {"column": "ts", "timezone": "America/New_York"},
               "metrics": {"cpu": {"percent": "cpu"}}, "day_timezone": "America/New_York"}
    result = run([write(tmp_path / "z.csv", text)], mapping)
    assert reasons(result) == ["ambiguous_local_time: '2024-03-10 02:30' is skipped or repeated in "
                               "America/New_York"]
    assert result.raw_metrics["samples"].tolist() == [2, 2]
    assert result.raw_metrics["ds"].tolist() == [pd.Timestamp("2024-03-10"), pd.Timestamp("2024-11-03")]


@pytest.mark.parametrize("newest_first", [False, True])
@pytest.mark.parametrize("layout", ["wide", "long"])
def test_the_hour_a_dst_change_repeats_is_placed_by_file_order(tmp_path: Path, layout: str, newest_first: bool) -> None:
    """A local-time export of the day clocks go back (25 hours): every 5-minute sample is kept, none twice."""
    instants = pd.date_range("2024-10-27 00:00", "2024-10-28 00:00", freq="5min", tz="Europe/Amsterdam",
                             inclusive="left")
    assert len(instants) == 300
    wall = instants.tz_localize(None).strftime("%Y-%m-%d %H:%M")
    value = np.arange(300) % 97
    if layout == "wide":
        frame = pd.DataFrame({"host": "ams-1", "ts": wall, "cpu": value, "mem": 50.0})
        mapping = {**WIDE, "metrics": {"cpu": {"percent": "cpu"}, "memory": {"percent": "mem"}}}
    else:
        frame = pd.DataFrame({"server": "ams-1", "time": np.repeat(wall, 2), "metric": np.tile(["cpu", "memory"], 300),
                              "value": np.repeat(value, 2).astype(float)})
        mapping = dict(LONG)
    if newest_first:
        frame = frame.iloc[::-1]
    frame.to_csv(tmp_path / "dst.csv", index=False)
    mapping = {**mapping, "timestamp": {**mapping["timestamp"], "timezone": "Europe/Amsterdam"},
               "day_timezone": "Europe/Amsterdam", "interval_seconds": 300}
    result = run([tmp_path / "dst.csv"], mapping)
    assert reasons(result) == []
    daily = result.raw_metrics.set_index("metric")
    assert daily.loc["cpu", "samples"] == 300 and daily.loc["cpu", "coverage"] == 1.0
    assert daily.loc["cpu", "value"] == pytest.approx(np.percentile(value, 95), abs=1.0)


def test_resolve_repeated_places_by_the_row_before_and_leaves_what_it_cannot_decide() -> None:
    zone = "Europe/Amsterdam"

    def place(walls: list[str], ok: list[bool], series: list[int] | None = None) -> list[str | None]:
        times = pd.DatetimeIndex(walls)
        utc = times.tz_localize(zone, ambiguous="NaT", nonexistent="NaT").tz_convert("UTC").tz_localize(None)
        status = np.where(ok, parse.OK, parse.AMBIGUOUS).astype(np.int8)
        ns = np.where(ok, utc.asi8, times.asi8)
        codes = np.zeros(len(walls), dtype=np.int64) if series is None else np.array(series, dtype=np.int64)
        ns, out = parse.resolve_repeated(ns, status, codes, zone)
        text = pd.DatetimeIndex(ns.view("datetime64[ns]")).strftime("%H:%M:%S")
        return [t if o == parse.OK else None for t, o in zip(text, out, strict=True)]

    before = ["2024-10-27 01:50:00", "2024-10-27 01:55:00"]                 # summer time, UTC 23:50 / 23:55
    # both passes, the second with the exporter's seconds drift: summer then standard time
    assert place([*before, "2024-10-27 02:00:36", "2024-10-27 02:55:36", "2024-10-27 02:00:37",
                  "2024-10-27 03:00:00"], [True, True, False, False, False, True]
                 ) == ["23:50:00", "23:55:00", "00:00:36", "00:55:36", "01:00:37", "02:00:00"]
    # a duplicated row (the same wall-clock time right after itself): the duplicate is undecided
    assert place([*before, "2024-10-27 02:30:00", "2024-10-27 02:30:00"],
                 [True, True, False, False]) == ["23:50:00", "23:55:00", "00:30:00", None]
    # newest first: the first appearance is the later instant
    assert place(["2024-10-27 03:00:00", "2024-10-27 02:30:00", "2024-10-27 02:30:01", "2024-10-27 01:55:00",
                  "2024-10-27 01:50:00"], [True, False, False, True, True]
                 ) == ["02:00:00", "01:30:00", "00:30:01", "23:55:00", "23:50:00"]
    # no row before it in its series, or a series without a direction: undecided
    assert place(["2024-10-27 02:30:00", *before], [False, True, True]) == [None, "23:50:00", "23:55:00"]
    assert place([*before, "2024-10-27 02:30:00"], [True, True, False], series=[0, 0, 1])[2] is None


def test_daily_source_passes_through(tmp_path: Path) -> None:
    text = "server,time,metric,value\n" + "".join(f"s1,2024-01-{d:02d},cpu,{d}\n" for d in range(1, 8))
    daily = run([write(tmp_path / "d.csv", text)], LONG).raw_metrics
    assert daily["samples"].tolist() == [1] * 7 and daily["coverage"].tolist() == [1.0] * 7
    assert daily["value"].tolist() == [float(d) for d in range(1, 8)]
    assert not daily["low_coverage"].any()


def test_coverage_from_median_spacing_and_threshold(tmp_path: Path) -> None:
    # 10-minute samples; the second day only has its first 6 hours.
    times = list(pd.date_range("2024-01-01", periods=144, freq="10min"))
    times += list(pd.date_range("2024-01-02", periods=36, freq="10min"))
    text = "server,time,metric,value\n" + "".join(f"s,{t.isoformat()},cpu,1\n" for t in times)
    daily = run([write(tmp_path / "c.csv", text)], LONG).raw_metrics
    assert daily["coverage"].tolist() == [1.0, 0.25]
    assert daily["low_coverage"].tolist() == [False, True]
    lenient = run([tmp_path / "c.csv"], LONG, IngestConfig(min_coverage=0.2)).raw_metrics
    assert lenient["low_coverage"].tolist() == [False, False]


def test_same_file_twice_glob_and_folder_read_once(tmp_path: Path) -> None:
    text = "server,time,metric,value\ns,2024-01-01T00:00:00,cpu,5\ns,2024-01-01T00:05:00,cpu,7\n"
    path = write(tmp_path / "in" / "x.csv", text)
    once = run([path], LONG)
    for sources in ([path, path], [tmp_path / "in" / "*.csv", path], [tmp_path / "in", path]):
        again = run(sources, LONG)
        assert again.files == (str(path),)
        pd.testing.assert_frame_equal(again.raw_metrics, once.raw_metrics)
        assert again.rows_read == 2


def test_same_times_in_two_files_keep_the_first(tmp_path: Path) -> None:
    header = "server,time,metric,value\n"
    first = write(tmp_path / "a.csv", header + "s,2024-01-01T00:00:00,cpu,5\ns,2024-01-01T00:05:00,cpu,7\n")
    second = write(tmp_path / "b.csv", header + "s,2024-01-01T00:05:00,cpu,9\ns,2024-01-01T00:10:00,cpu,1\n")
    result = run([first, second], LONG)
    assert result.raw_metrics["samples"].tolist() == [3]
    assert result.raw_metrics["value_max"].tolist() == [7.0]
    record = result.quarantine.iloc[0]
    assert record["source"] == f"{second}:2" and record["value"] == "9.0"
    assert record["reason"] == (f"duplicate_timestamp: same server, metric and time as {first}:3 "
                                "(that one is kept)")
    assert record["ds"] == "2024-01-01T00:05:00Z"


def test_many_repeats_with_another_value_are_said_a_few_are_not(tmp_path: Path) -> None:
    """helper-66: a CloudWatch export with an Average and a Maximum row per time quarantined half its rows as
    duplicate_timestamp (not more than the 0.5 share that stops an ingest) with nothing said, and the daily P95 was
    neither statistic's. A handful of repeats (a clock change, a re-sent sample) stay in the quarantine alone."""
    header = "server,time,metric,value\n"
    times = pd.date_range("2024-01-01", periods=200, freq="5min").strftime("%Y-%m-%dT%H:%M:%S")
    pairs = "".join(f"s,{t},cpu,{40 + i % 7}\ns,{t},cpu,{90 + i % 5}\n" for i, t in enumerate(times))
    result = run([write(tmp_path / "stats.csv", header + pairs)], LONG)
    said = [w for w in result.warnings if "with a different value" in w]
    assert said == ["200 of 400 samples repeat the server, metric and time of another with a different value (e.g. s "
                    "cpu at 2024-01-01T00:00:00Z: 40 kept, 90 quarantined); the first read is kept and the repeats "
                    "are quarantined as duplicate_timestamp: if a column tells them apart (a statistic such as "
                    "Average/Maximum, a replica), keep one with exclude_rows"]
    once = "".join(f"s,{t},cpu,{40 + i % 7}\n" for i, t in enumerate(times)) + f"s,{times[0]},cpu,41\n"
    exact = "".join(f"s,{t},cpu,5\ns,{t},cpu,5\n" for t in times)
    for text in (once, exact):
        assert not [w for w in run([write(tmp_path / "few.csv", header + text)], LONG).warnings
                    if "with a different value" in w]


def test_folder_walk_reads_csv_gz_and_parquet(tmp_path: Path) -> None:
    header = "server,time,metric,value\n"
    write(tmp_path / "f" / "a.csv", header + "a,2024-01-01T00:00:00,cpu,1\n")
    gz = gzip.compress((header + "b,2024-01-01T00:00:00,cpu,2\n").encode())
    write(tmp_path / "f" / "sub" / "b.csv.gz", gz)
    write(tmp_path / "f" / "sub" / "B2.CSV.GZ", gzip.compress((header + "b2,2024-01-01T00:00:00,cpu,4\n").encode()))
    pq.write_table(pa.table({"server": [3], "time": pa.array([pd.Timestamp("2024-01-01", tz="UTC")]),
                             "metric": ["cpu"], "value": [3.5]}), tmp_path / "f" / "sub" / "c.parquet")
    # helper-51: a folder skipped the other compressions the readers take.
    write(tmp_path / "f" / "e.csv.bz2", bz2.compress((header + "e,2024-01-01T00:00:00,cpu,5\n").encode()))
    write(tmp_path / "f" / "notes.txt", "not data")
    write(tmp_path / "f" / ".hidden.csv", "junk")
    write(tmp_path / "f" / "_tmp" / "d.csv", "junk")
    result = run([tmp_path / "f"], LONG)
    assert [Path(f).name for f in result.files] == ["a.csv", "e.csv.bz2", "B2.CSV.GZ", "b.csv.gz", "c.parquet"]
    assert result.raw_metrics.set_index("server_id")["value"].to_dict() == {"a": 1.0, "e": 5.0, "b2": 4.0, "b": 2.0,
                                                                            "3": 3.5}


def test_parquet_typed_columns_and_quarantine_source(tmp_path: Path) -> None:
    table = pa.table({
        "host": ["p1", "p1", None],
        "ts": pa.array([1_700_000_000_000, None, 1_700_000_000_000], pa.int64()),
        "cpu": [10.0, 20.0, 30.0],
    })
    pq.write_table(table, tmp_path / "p.parquet")
    mapping = {**WIDE, "timestamp": {"column": "ts", "kind": "epoch", "unit": "ms"},
               "metrics": {"cpu": {"percent": "cpu"}}}
    result = run([tmp_path / "p.parquet"], mapping)
    assert result.raw_metrics["value"].tolist() == [10.0]
    assert result.quarantine["source"].tolist() == [str(tmp_path / "p.parquet")] * 2
    assert sorted(r.split(":")[0] for r in reasons(result)) == ["missing_server_id", "missing_timestamp"]


def test_missing_column_error_lists_columns_and_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "a,b,c\n1,2,3\n")
    with pytest.raises(InputError) as err:
        run([path], WIDE)
    assert str(err.value) == (f"{path}: column 'host' not found; columns are: a, b, c — set server_id.column "
                              "in the mapping")
    near = write(tmp_path / "near.csv", "Host,ts,cpu,used,total\n")
    with pytest.raises(InputError, match=r"did you mean 'Host'\?"):
        run([near], WIDE)
    semicolons = write(tmp_path / "semi.csv", "host;ts;cpu\nh;2024-01-01;1\n")
    with pytest.raises(InputError, match="the header has one column when split on ','; is csv.delimiter"):
        run([semicolons], {**WIDE, "csv": {"delimiter": ","}})


def test_header_only_and_empty_files_warn(tmp_path: Path) -> None:
    header_only = write(tmp_path / "h.csv", "server,time,metric,value\n")
    empty = write(tmp_path / "e.csv", "")
    result = run([header_only, empty], LONG)
    assert result.rows_read == 0 and result.raw_metrics.empty and result.quarantine.empty
    assert result.warnings == (f"{header_only}: no data rows (empty or header-only file)",
                               f"{empty}: no data rows (empty or header-only file)")
    assert result.raw_metrics["ds"].dtype == "datetime64[ns]"


def test_malformed_lines_are_quarantined_with_their_line(tmp_path: Path) -> None:
    text = ("server,time,metric,value\n"
            "s,2024-01-01T00:00:00,cpu,1\n"
            "s,2024-01-01T00:05:00,cpu\n"          # line 3: too few fields
            "\n"                                    # line 4: blank
            "s,2024-01-01T00:10:00,cpu,3,extra\n"  # line 5: too many fields
            "s,2024-01-01T00:15:00,cpu,oops\n")     # line 6: bad value
    result = run([write(tmp_path / "bad.csv", text)], LONG)
    by_line = result.quarantine.set_index("source")["reason"].to_dict()
    src = str(tmp_path / "bad.csv")
    assert by_line[f"{src}:3"] == "wrong_field_count: expected 4 fields, found 3"
    assert by_line[f"{src}:4"] == "missing_server_id: column 'server' is empty"
    assert by_line[f"{src}:5"] == "wrong_field_count: expected 4 fields, found 5"
    assert by_line[f"{src}:6"] == "unparseable_value: 'oops' in column 'value'"
    assert result.quarantine.set_index("source").loc[f"{src}:3", "value"] == "s,2024-01-01T00:05:00,cpu"
    assert (result.rows_read, result.rows_used, result.rows_quarantined) == (5, 1, 4)


@pytest.mark.parametrize("bad", ['"s,2024-01-01T00:05:00,cpu,2', 's,2024-01-01T00:05:00,"he said ""hi,2'])
def test_a_quote_left_open_stops_instead_of_swallowing_the_lines_after_it(tmp_path: Path, bad: str) -> None:
    """helper-51: one stray '"' made the reader take every later line as one field: 5 data lines read as 2 rows,
    exit 0, the rest counted nowhere (300,000 lines as 28,526 rows)."""
    lines = ["server,time,metric,value", "s,2024-01-01T00:00:00,cpu,1", bad,
             *(f"s,2024-01-01T00:{m:02d}:00,cpu,3" for m in range(10, 40, 5))]
    path = write(tmp_path / "q.csv", "\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"q\.csv: line 3 opens a quoted field .* does not close"):
        run([path], LONG)


def test_mixed_date_formats_partly_succeed(tmp_path: Path) -> None:
    text = ("server,time,metric,value\n"
            "s,2024-01-01T00:00:00Z,cpu,1\n"
            "s,2024-01-01 01:00:00,cpu,2\n"
            "s,2024-01-01T05:00:00+01:00,cpu,3\n"
            "s,01/02/2024 03:00,cpu,4\n"
            "s,2013-13-45,cpu,5\n")
    result = run([write(tmp_path / "mixed.csv", text)], LONG)
    assert result.raw_metrics["samples"].tolist() == [3]
    hint = "; numbers since 1970 need timestamp.kind: epoch, other text timestamp.format)"
    assert reasons(result) == [f"unparseable_timestamp: '01/02/2024 03:00' (expected ISO 8601 text{hint}",
                               f"unparseable_timestamp: '2013-13-45' (expected ISO 8601 text{hint}"]
    fmt = {**LONG, "timestamp": {"column": "time", "format": "%d/%m/%Y %H:%M"}}
    assert run([tmp_path / "mixed.csv"], fmt).raw_metrics["samples"].tolist() == [1]


def test_a_formatted_day_the_month_lacks_is_quarantined_not_moved_to_the_next_month(tmp_path: Path) -> None:
    """helper-51: with format '%d/%m/%Y %H:%M', 30/02/2024 was read as 2024-03-01 and 29/02/2023 as 2023-03-01."""
    text = ("server,time,metric,value\n"
            "s,29/02/2024 10:00,cpu,1\n"      # a leap day: kept
            "s,30/02/2024 10:00,cpu,2\n"
            "s,31/04/2024 10:00,cpu,3\n"
            "s,29/02/2023 10:00,cpu,4\n"
            "s,1/3/2024 9:05,cpu,5\n")        # unpadded, on a rolled-over date's day: kept
    fmt = {**LONG, "timestamp": {"column": "time", "format": "%d/%m/%Y %H:%M"}}
    result = run([write(tmp_path / "days.csv", text)], fmt)
    assert result.raw_metrics["ds"].dt.strftime("%Y-%m-%d").tolist() == ["2024-02-29", "2024-03-01"]
    assert reasons(result) == [f"unparseable_timestamp: '{day}' (expected format '%d/%m/%Y %H:%M')"
                               for day in ("30/02/2024 10:00", "31/04/2024 10:00", "29/02/2023 10:00")]


def test_non_utf8_values_and_headers(tmp_path: Path) -> None:
    body = b"server,time,metric,value\ns,2024-01-01T00:00:00,cpu,1\ns,2024-01-01T00:05:00,cpu,\xff2\n"
    result = run([write(tmp_path / "bytes.csv", body)], LONG)
    assert result.quarantine["value"].tolist() == ["\ufffd2"]
    assert result.quarantine["source"].tolist() == [f"{tmp_path / 'bytes.csv'}:3"]
    latin_text = "serv\xe9r,time,metric,value\ns,2024-01-01,cpu,1\n"
    latin = write(tmp_path / "latin.csv", latin_text.encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.csv: line 1, byte 5: not valid utf-8 text .*csv\.encoding"):
        run([latin], LONG)
    mapping = {**LONG, "csv": {"encoding": "latin-1"}, "server_id": {"column": "servér"}}
    assert run([latin], mapping).rows_used == 1


def test_huge_and_non_finite_values(tmp_path: Path) -> None:
    text = ("server,time,metric,value\n"
            "s,2024-01-01T00:00:00,cpu,1e300\ns,2024-01-01T00:01:00,cpu,inf\n"
            "s,2024-01-01T00:02:00,cpu,1e400\ns,2024-01-01T00:03:00,cpu,99\n")
    result = run([write(tmp_path / "huge.csv", text)], LONG)
    assert [r.split(":")[0] for r in reasons(result)] == ["value_out_of_range", "non_finite_value",
                                                          "non_finite_value"]
    assert result.raw_metrics["value"].tolist() == [99.0]


def test_decimal_comma(tmp_path: Path) -> None:
    text = "server;time;metric;value\ns;2024-01-01T00:00:00;cpu;12,5\n"
    mapping = {**LONG, "csv": {"decimal": ","}}
    assert run([write(tmp_path / "eu.csv", text)], mapping).raw_metrics["value"].tolist() == [12.5]


def test_source_errors_name_the_source(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"absent\.csv: no such file or folder"):
        run([tmp_path / "absent.csv"], LONG)
    with pytest.raises(InputError, match=r"\*\.parquet: no files match this pattern"):
        run([tmp_path / "*.parquet"], LONG)
    mapping = {**WIDE, "server_id": {"from_filename": r"vm(\d+)\.csv"},
               "metrics": {"cpu": {"percent": "cpu"}}}
    with pytest.raises(InputError, match=r"file name 'host\.csv' does not match server_id\.from_filename"):
        run([write(tmp_path / "host.csv", "ts,cpu\n")], mapping)
    with pytest.raises(InputError, match=r"broken\.parquet: cannot be read as Parquet"):
        run([write(tmp_path / "broken.parquet", b"PAR1 not really")], LONG)
    with pytest.raises(InputError, match=r"broken\.csv\.gz: cannot be opened"):
        run([write(tmp_path / "broken.csv.gz", b"\x1f\x8b not gzip")], LONG)


def test_existing_source_named_like_a_glob_is_read_as_named(tmp_path: Path) -> None:
    # helper-51: a folder called 'exp?' was matched as a pattern ("no files match") though it exists.
    folder = tmp_path / "exp?[1]"
    folder.mkdir()
    write(folder / "a.csv", "server,time,metric,value\ns,2024-01-01T00:00:00,cpu,5\n")
    assert run([folder], LONG).rows_used == 1
    assert run([tmp_path / "exp*" / "*.csv"], LONG).rows_used == 1  # a path that does not exist is a glob


def test_pipe_source_is_refused_in_one_line(tmp_path: Path) -> None:
    pipe = tmp_path / "export.csv"
    os.mkfifo(pipe)
    with pytest.raises(InputError, match=r"export\.csv: not a regular file \(a pipe or a device\?\)"):
        run([pipe], LONG)


def test_inventory_file_mapping(tmp_path: Path) -> None:
    write(tmp_path / "m.csv", "host,ts,cpu\nweb,2024-01-01T00:00:00Z,5\n")
    inventory = write(tmp_path / "inv.csv", "name,cores,mem_mb,app\nweb,4,8192,shop\n,2,1024,x\nweb,8,1,dup\n"
                                            "db,two,2048,\n")
    mapping = {**WIDE, "metrics": {"cpu": {"percent": "cpu"}},
               "server_id": {"column": "host", "prefix": "dc1-"},
               "inventory": {"source": str(inventory),
                             "columns": {"server_id": "name", "cpu_cores": "cores", "application": "app",
                                         "memory_gb": {"column": "mem_mb", "divide_by": 1024}},
                             "defaults": {"environment": "prod"}}}
    result = run([tmp_path / "m.csv"], mapping)
    inv = result.inventory
    assert inv is not None and list(inv.columns) == [*INVENTORY_COLUMNS, "inventory_source"]
    assert inv["server_id"].tolist() == ["dc1-db", "dc1-web"]
    # An unnamed mapping's inventory rows are known by their file.
    assert set(inv["inventory_source"]) == {str(inventory)}
    web = inv.set_index("server_id").loc["dc1-web"]
    assert (web["cpu_cores"], web["memory_gb"], web["application"]) == (4.0, 8.0, "shop")
    assert (web["environment"], web["hostname"], web["datacenter"]) == ("prod", "dc1-web", "unknown")
    db = inv.set_index("server_id").loc["dc1-db"]
    assert np.isnan(db["cpu_cores"]) and db["application"] == "unknown"
    codes = sorted(r.split(":")[0] for r in reasons(result))
    assert codes == ["inventory_duplicate_server_id", "inventory_missing_server_id",
                     "inventory_unparseable_number"]
    # Each record names the row's server where the row has one (with the mapping's prefix).
    by_code = result.quarantine.assign(code=result.quarantine["reason"].str.split(":").str[0]).set_index("code")
    assert by_code.loc["inventory_unparseable_number", "server_id"] == "dc1-db"
    assert by_code.loc["inventory_unparseable_number", "value"] == "two"
    assert by_code.loc["inventory_duplicate_server_id", "server_id"] == "dc1-web"
    # Said in a warning (helper-60: costs reading "$1,200.00" were an INFO count, then "no monthly cost").
    assert (f"inventory column 'cores' (cpu_cores): 1 value(s) are not numbers (write plain numbers such as 1200.5; "
            f"csv.decimal sets the decimal sign) and were kept empty, e.g. 'two' ({inventory}:5); see the quarantine "
            "table") in result.warnings
    assert pd.isna(by_code.loc["inventory_missing_server_id", "server_id"])
    # A repeat with other values is said (helper-66: only the quarantine knew which of 4 and 8 cores was taken).
    assert by_code.loc["inventory_duplicate_server_id", "reason"] == (
        "inventory_duplicate_server_id: an earlier row has this id and other values (that one is kept)")
    assert (f"1 inventory row(s) repeat the server id of an earlier row with other values, e.g. dc1-web "
            f"({inventory}:4): the first row of each id is kept; remove or merge the repeats") in result.warnings
    write(inventory, "name,cores\nweb,4\nweb,4\n")
    columns = {"server_id": "name", "cpu_cores": "cores"}
    again = run([tmp_path / "m.csv"], {**mapping, "inventory": {"source": str(inventory), "columns": columns}})
    assert reasons(again) == ["inventory_duplicate_server_id: an earlier row has this id (kept)"]
    assert not [w for w in again.warnings if "repeat the server id" in w]


def test_inventory_numbers_no_server_has_are_quarantined(tmp_path: Path) -> None:
    """helper-51: a cost of 1e308 was taken, summed to Infinity in the options table and broke its Delta log;
    negative cores and memory were taken too."""
    write(tmp_path / "m.csv", "host,ts,cpu\na,2024-01-01T00:00:00Z,5\nb,2024-01-01T00:00:00Z,5\n")
    inventory = write(tmp_path / "inv.csv", "name,cores,mem,cost\na,4,16,1e308\nb,-4,0,100\n")
    mapping = {**WIDE, "metrics": {"cpu": {"percent": "cpu"}},
               "inventory": {"source": str(inventory), "columns": {"server_id": "name", "cpu_cores": "cores",
                                                                    "memory_gb": "mem", "monthly_cost_usd": "cost"}}}
    result = run([tmp_path / "m.csv"], mapping)
    inv = result.inventory.set_index("server_id")
    assert np.isnan(inv.loc["a", "monthly_cost_usd"]) and inv.loc["a", "cpu_cores"] == 4
    assert np.isnan(inv.loc["b", "cpu_cores"]) and inv.loc["b", "monthly_cost_usd"] == 100
    # A size of 0 is no server's (helper-64: fastStorage meta's mem_capacity 0 became 0 GB); a cost of 0 may be.
    assert np.isnan(inv.loc["b", "memory_gb"])
    assert sorted(reasons(result)) == [
        "inventory_out_of_range: cpu_cores from column 'cores' is 0 or less, or above 1e+09 (kept as NaN)",
        "inventory_out_of_range: memory_gb from column 'mem' is 0 or less, or above 1e+09 (kept as NaN)",
        "inventory_out_of_range: monthly_cost_usd from column 'cost' is not between 0 and 1e+09 (kept as NaN)"]
    assert (f"inventory column 'cost' (monthly_cost_usd): 1 value(s) are not between 0 and 1e+09 and were kept empty, "
            f"e.g. '1e308' ({inventory}:2); see the quarantine table") in result.warnings


def test_a_metric_capacity_in_bytes_is_no_size_and_has_no_bound_above(tmp_path: Path) -> None:
    """helper-66: a 10 GbE NIC of 1.25e9 bytes/s in the inventory was refused as above 1e9 (the bound of cores, GB and
    costs), so every sample of the server's network was quarantined as missing_capacity and the series vanished. A
    capacity must be 0 or more and finite, nothing more; its messages name the mapping key, not a private name."""
    write(tmp_path / "m.csv", "host,ts,net\nsmall,2024-01-01T00:00:00Z,5e7\nbig,2024-01-01T00:00:00Z,6e8\n"
                              "none,2024-01-01T00:00:00Z,1\n")
    inventory = write(tmp_path / "inv.csv", "host,nic\nsmall,125000000\nbig,1.25e9\nnone,-1\n")
    mapping = {**WIDE, "metrics": {"network": {"usage": "net", "inventory_capacity": "nic"}},
               "inventory": {"source": str(inventory), "columns": {"server_id": "host"}}}
    result = run([tmp_path / "m.csv"], mapping)
    values = result.raw_metrics.set_index("server_id")["value"]
    assert values.to_dict() == pytest.approx({"small": 40.0, "big": 48.0})
    assert sorted(reasons(result)) == [
        "inventory_out_of_range: metrics.network.inventory_capacity from column 'nic' is below 0 or not finite "
        "(kept as NaN)",
        "missing_capacity: column 'inventory.nic' is empty or the server has no row in the inventory file"]
    assert any(w.startswith("inventory column 'nic' (metrics.network.inventory_capacity): 1 value(s) are below 0 or "
                            "not finite") for w in result.warnings)


def test_a_series_whose_every_sample_was_quarantined_is_said_beside_its_kept_server(tmp_path: Path) -> None:
    """helper-66: a server's network without a capacity left raw/ with nothing said but the quarantine (its cpu
    stayed, so no "every row quarantined" warning named the server)."""
    write(tmp_path / "m.csv", "host,ts,cpu,net\na,2024-01-01T00:00:00Z,50,5\na,2024-01-01T00:05:00Z,60,6\n"
                              "b,2024-01-01T00:00:00Z,50,5\n")
    inventory = write(tmp_path / "inv.csv", "host,nic\nb,100\n")
    mapping = {**WIDE, "metrics": {"cpu": {"percent": "cpu"}, "network": {"usage": "net", "inventory_capacity": "nic"}},
               "inventory": {"source": str(inventory), "columns": {"server_id": "host"}}}
    result = run([tmp_path / "m.csv"], mapping)
    assert sorted(zip(result.raw_metrics["server_id"], result.raw_metrics["metric"], strict=True)) == [
        ("a", "cpu"), ("b", "cpu"), ("b", "network")]
    assert ("1 series had every sample quarantined, so they are not in raw/ (their servers' other metrics are): a "
            "network (2 samples, mostly missing_capacity); see the quarantine table for each sample's reason"
            ) in result.warnings


def _cpu_and_cores(server_id: dict, inventory: Path) -> dict:
    """A wide cpu mapping with ``server_id`` and an inventory file of cores keyed by the same column."""
    columns = {"server_id": server_id["column"], "cpu_cores": "cores"}
    return {**WIDE, "server_id": server_id, "metrics": {"cpu": {"percent": "cpu"}},
            "inventory": {"source": str(inventory), "columns": columns}}


def test_server_id_case_makes_one_server_of_spellings_in_metrics_and_inventory(tmp_path: Path) -> None:
    """helper-66: a TrueSight export named one host 'SRV-APP-01', 'srv-app-01 ' and ' Srv-App-01': three servers at a
    third of the coverage each, and nothing in the mapping could make them one."""
    write(tmp_path / "m.csv", "host,ts,cpu\nSRV-APP-01,2024-01-01T00:00:00Z,50\nsrv-app-01 ,2024-01-01T00:05:00Z,60\n"
                              " Srv-App-01,2024-01-01T00:10:00Z,70\n")
    inventory = write(tmp_path / "inv.csv", "host,cores\n SRV-app-01,4\n")
    mapping = _cpu_and_cores({"column": "host", "prefix": "dc1-"}, inventory)
    kept = run([tmp_path / "m.csv"], mapping)
    assert len(kept.raw_metrics) == 3 and any("differ from another only in case" in w and "server_id.case: lower" in w
                                              for w in kept.warnings)
    result = run([tmp_path / "m.csv"], {**mapping, "server_id": {**mapping["server_id"], "case": "lower"}})
    assert result.raw_metrics[["server_id", "samples"]].values.tolist() == [["dc1-srv-app-01", 3]]
    assert result.inventory is not None and result.inventory["server_id"].tolist() == ["dc1-srv-app-01"]
    assert result.inventory["cpu_cores"].tolist() == [4.0]
    assert not [w for w in result.warnings if "only in case" in w]
    # The pattern searches the trimmed, cased id (helper-70: " SRV-01" was unmatched by '^(srv-\d+)' with case lower).
    cased = run([tmp_path / "m.csv"], {**mapping, "server_id": {**mapping["server_id"], "case": "lower",
                                                                "pattern": "^(srv-app)-\\d+$"}})
    assert cased.raw_metrics[["server_id", "samples"]].values.tolist() == [["dc1-srv-app", 3]]
    # Two spellings of one row are a repeat with the same values, its hostname (the id column) aside (helper-70).
    write(inventory, "host,cores\n SRV-app-01,4\nsrv-app-01,4\n")
    named = {**mapping["inventory"], "columns": {**mapping["inventory"]["columns"], "hostname": "host"}}
    twice = run([tmp_path / "m.csv"], {**mapping, "server_id": {**mapping["server_id"], "case": "lower"},
                                       "inventory": named})
    assert reasons(twice) == ["inventory_duplicate_server_id: an earlier row has this id (kept)"]


def test_server_id_pattern_reads_inventory_ids_it_matches(tmp_path: Path) -> None:
    """helper-66: a CMDB keyed like the metrics ('ams-db-01.bank.local:9100') did not join: the pattern read the
    metrics' ids only. An inventory id it does not match is kept whole."""
    write(tmp_path / "m.csv", "inst,ts,cpu\nams-db-01.bank.local:9100,2024-01-01T00:00:00Z,50\n"
                              "ams-web-01.bank.local:9100,2024-01-01T00:00:00Z,20\n")
    inventory = write(tmp_path / "inv.csv", "inst,cores\nams-db-01.bank.local:9100,8\nams-web-01.bank.local,2\n")
    result = run([tmp_path / "m.csv"], _cpu_and_cores({"column": "inst", "pattern": "^([^:]+):"}, inventory))
    assert result.inventory is not None
    assert dict(zip(result.inventory["server_id"], result.inventory["cpu_cores"], strict=True)) == {
        "ams-db-01.bank.local": 8.0, "ams-web-01.bank.local": 2.0}


def test_capacity_multiplier_puts_a_capacity_in_the_usage_unit(tmp_path: Path) -> None:
    """helper-66: a CMDB lists NICs in Gbit/s and memory in GB while the agent reports bytes/s and MB; the capacity
    could not be converted in the mapping."""
    write(tmp_path / "m.csv", "host,ts,net,mem_free\na,2024-01-01T00:00:00Z,62500000,4096\n")
    inventory = write(tmp_path / "inv.csv", "host,nic_gbit,mem_gb\na,1,16\n")
    mapping = {**WIDE, "metrics": {
        "network": {"usage": "net", "inventory_capacity": "nic_gbit", "capacity_multiplier": 125_000_000},
        "memory": {"free": "mem_free", "inventory_capacity": "mem_gb", "capacity_multiplier": 1024}},
        "inventory": {"source": str(inventory), "columns": {"server_id": "host"}}}
    values = run([tmp_path / "m.csv"], mapping).raw_metrics.set_index("metric")["value"]
    assert values.to_dict() == pytest.approx({"network": 50.0, "memory": 75.0})
    with pytest.raises(ConfigError, match="key 'metrics.cpu': capacity_multiplier converts a capacity to the unit"):
        run([tmp_path / "m.csv"], {**WIDE, "metrics": {"cpu": {"percent": "net", "capacity_multiplier": 2}}})


def test_an_inventory_file_reads_numbers_as_the_export_does_unless_told(tmp_path: Path) -> None:
    """helper-51: with csv.decimal ',' for the export, '16.384' MB in the inventory file read as 16.384 (0.016 GB)."""
    write(tmp_path / "m.csv", "host;ts;cpu\nweb;2024-01-01T00:00:00Z;12,5\n")
    inventory = write(tmp_path / "inv.csv", "host;vcpus;memory_mb\nweb;4;16.384\n")
    columns = {"server_id": "host", "cpu_cores": "vcpus", "memory_gb": {"column": "memory_mb", "divide_by": 1024}}
    mapping = {**WIDE, "csv": {"delimiter": ";", "decimal": ","}, "metrics": {"cpu": {"percent": "cpu"}},
               "server_id": {"column": "host"}, "inventory": {"source": str(inventory), "columns": columns}}
    assert run([tmp_path / "m.csv"], mapping).inventory["memory_gb"].tolist() == [16.0]
    own = {**mapping, "inventory": {**mapping["inventory"], "csv": {"delimiter": ";", "decimal": "."}}}
    assert run([tmp_path / "m.csv"], own).inventory["memory_gb"].tolist() == [16.384 / 1024]


def test_a_named_mappings_inventory_rows_carry_its_name(tmp_path: Path) -> None:
    write(tmp_path / "m.csv", "host,ts,cpu\nweb,2024-01-01T00:00:00Z,5\n")
    inventory = write(tmp_path / "inv.csv", "name,cores\nweb,4\n")
    mapping = {**WIDE, "name": "cmdb-a", "metrics": {"cpu": {"percent": "cpu"}},
               "inventory": {"source": str(inventory), "columns": {"server_id": "name", "cpu_cores": "cores"}}}
    assert run([tmp_path / "m.csv"], mapping).inventory["inventory_source"].tolist() == ["cmdb-a"]


def test_capacities_join_ids_that_differ_only_in_case(tmp_path: Path) -> None:
    write(tmp_path / "m.csv", "host,ts,used\nWeb-1,2024-01-01T00:00:00Z,5\nDB-1,2024-01-01T00:00:00Z,2\n")
    write(tmp_path / "inv.csv", "name,cap\nweb-1,10\ndb-1,4\nDB-1 ,8\n")
    mapping = {**WIDE, "metrics": {"cpu": {"usage": "used", "inventory_capacity": "cap"}},
               "inventory": {"source": str(tmp_path / "inv.csv"), "columns": {"server_id": "name"}}}
    result = run([tmp_path / "m.csv"], mapping)
    # web-1 is the one inventory id that Web-1 matches; DB-1 matches db-1 and 'DB-1 ' (read as DB-1) exactly.
    values = result.raw_metrics.set_index("server_id")["value"]
    assert values["Web-1"] == 50.0 and values["DB-1"] == 25.0


def test_ingest_over_s3(s3_bucket: str, tmp_path: Path) -> None:
    import boto3

    from capacity_forecaster.storage.filesystem import resolve

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
    header = "Timestamp [ms];\tCPU usage [%]\n"
    for vm in (1, 2):
        client.put_object(Bucket=s3_bucket, Key=f"exports/2013-7/{vm}.csv",
                          Body=(header + f"1372629804;\t{vm}.5\n1372630104;\t{vm}.0\n").encode())
    mapping = {"layout": "wide", "server_id": {"from_filename": r"(\d+)\.csv", "prefix": "vm-"},
               "timestamp": {"column": "Timestamp [ms]", "kind": "epoch"},
               "metrics": {"cpu": {"percent": "CPU usage [%]"}}}

    def s3_or_local(uri: str) -> tuple[pafs.FileSystem, str]:
        location = resolve(uri)
        return location.fs, location.path

    sources = [f"s3://{s3_bucket}/exports", f"s3://{s3_bucket}/exports/*/1.csv"]
    result = ingest(sources, parse_mapping(mapping), IngestConfig(), s3_or_local)
    assert result.files == (f"s3://{s3_bucket}/exports/2013-7/1.csv", f"s3://{s3_bucket}/exports/2013-7/2.csv")
    assert result.raw_metrics.set_index("server_id")["value_max"].to_dict() == {"vm-1": 1.5, "vm-2": 2.5}


def test_recursive_glob_and_contract_layout(tmp_path: Path) -> None:
    from capacity_forecaster.etl.mapping import contract_mapping

    text = "server_id,ds,metric,value\nweb,2024-01-01,cpu,41.5\nweb,2024-01-02,memory,60\n"
    write(tmp_path / "lake" / "year=2024" / "part-0.csv", text)
    write(tmp_path / "lake" / "top.csv", text.replace("web", "db"))
    sources = [str(tmp_path / "lake" / "**" / "*.csv")]
    result = ingest(sources, contract_mapping(), IngestConfig(), local)
    assert [Path(f).name for f in result.files] == ["top.csv", "part-0.csv"]
    assert result.raw_metrics[["server_id", "metric", "value"]].values.tolist() == [
        ["db", "cpu", 41.5], ["db", "memory", 60.0], ["web", "cpu", 41.5], ["web", "memory", 60.0]]
    assert (result.raw_metrics["samples"] == 1).all()


def test_derived_inventory_in_a_long_file(tmp_path: Path) -> None:
    text = ("server,time,metric,value,cores\n"
            "s,2024-01-01T00:00:00,cpu,5,2\ns,2024-01-01T01:00:00,cpu,6,0\ns,2024-01-01T00:30:00,cpu,7,4\n")
    mapping = {**LONG, "inventory": {"columns": {"cpu_cores": "cores"}}}
    result = run([write(tmp_path / "inv.csv", text)], mapping)
    assert result.inventory is not None
    # The latest positive value by time (00:30, since the 01:00 row says 0).
    assert result.inventory["cpu_cores"].tolist() == [4.0]


def test_a_memory_counter_that_reads_na_throughout_is_missing_and_the_ingest_goes_on(tmp_path: Path) -> None:
    """helper-38: one VM's agent wrote "N/A" for memory on every row; read as a misread number, the share guard
    stopped the whole export (exit 2) where empty cells went through."""
    lines = ["host,ts,cpu,used,total"] + [f"a,2024-03-01T{h:02d}:00:00,{h},N/A,100" for h in range(24)] + \
        [f"b,2024-03-01T{h:02d}:00:00,{h},50,100" for h in range(24)]
    result = run([write(tmp_path / "x.csv", "\n".join(lines) + "\n")], WIDE)
    kept = result.raw_metrics.groupby("server_id")["metric"].apply(sorted).to_dict()
    assert kept == {"a": ["cpu"], "b": ["cpu", "memory"]}
    assert set(reasons(result)) == {"missing_value: column 'used' is empty"}


def test_a_negative_usage_is_quarantined_not_read_as_zero_percent(tmp_path: Path) -> None:
    """helper-38: memory usage -1 KB ("not collected") over 16 GB became -0.00001 %, clipped to 0 %: idle."""
    lines = ["host,ts,cpu,used,total", "a,2024-03-01T00:00:00,5,-1,16000000",
             "a,2024-03-01T01:00:00,5,8000000,16000000"]
    result = run([write(tmp_path / "x.csv", "\n".join(lines) + "\n")], WIDE)
    memory = result.raw_metrics.set_index("metric").loc["memory"]
    assert memory["value"] == 50.0 and memory["samples"] == 1
    assert reasons(result) == ["negative_value: '-1' in column 'used' (a usage below 0 is a not-collected code, not a "
                               "measurement)"]


def test_two_exports_of_one_server_out_of_phase_are_said(tmp_path: Path) -> None:
    """A second collector 7 s out of phase: no duplicate times, twice the samples, a changed P95, no warning."""
    times = pd.date_range("2024-03-01", periods=3 * 288, freq="5min")
    one = pd.DataFrame({"host": "a", "ts": times.strftime("%Y-%m-%dT%H:%M:%S"), "cpu": 20.0, "used": 1, "total": 2})
    two = one.iloc[288:576].assign(ts=(times[288:576] + pd.Timedelta(seconds=7)).strftime("%Y-%m-%dT%H:%M:%S"))
    one.to_csv(tmp_path / "one.csv", index=False)
    two.to_csv(tmp_path / "two.csv", index=False)
    alone = run([tmp_path / "one.csv"], WIDE)
    assert not any("more than 1.5 times the samples" in w for w in alone.warnings)
    both = run([tmp_path / "one.csv", tmp_path / "two.csv"], WIDE)
    assert any(w.startswith("2 daily value(s) of 1 server(s) hold more than 1.5 times the samples their interval "
                            "allows (e.g. a cpu on 2024-03-02: coverage 2.00)") for w in both.warnings), both.warnings
    # Out of phase for the whole export (helper-39): the measured interval is the slots' 300 s, not the 7 s between
    # the two collectors (which made every day read 4 % coverage and hid the doubling).
    two = one.assign(ts=(times + pd.Timedelta(seconds=7)).strftime("%Y-%m-%dT%H:%M:%S"))
    two.to_csv(tmp_path / "two.csv", index=False)
    whole = run([tmp_path / "one.csv", tmp_path / "two.csv"], WIDE)
    assert whole.raw_metrics["coverage"].between(1.9, 2.01).all() and not whole.raw_metrics["low_coverage"].any()
    assert any("hold more than 1.5 times the samples" in w for w in whole.warnings)


def test_ids_that_differ_only_in_case_spaces_or_unicode_form_are_said(tmp_path: Path) -> None:
    nfc, nfd = "Z\u00fcrich DB 01", "Zu\u0308rich DB 01"
    lines = ["server,time,metric,value"] + [f"{server},2024-03-0{day}T00:00:00,cpu_util,5" for day, server in
                                            ((1, nfc), (2, nfd), (1, "WEB-04"), (2, "web-04"), (1, "db-1"))]
    result = run([write(tmp_path / "ids.csv", "\n".join(lines) + "\n")], LONG)
    assert result.raw_metrics["server_id"].nunique() == 5  # kept apart: nothing says they are one server
    said = [w for w in result.warnings if "differ from another only in case" in w]
    assert len(said) == 1 and said[0].startswith("2 server id(s)") and "'WEB-04' / 'web-04'" in said[0]
    assert "db-1" not in said[0]


def test_a_server_id_pattern_takes_the_host_out_of_a_prometheus_instance_label(tmp_path: Path) -> None:
    """helper-37: instance="pay-db-01.bank.local:9100" could not join the inventory, and no mapping key cut it."""
    mapping = {**LONG, "server_id": {"column": "server", "pattern": r"^([^:]+):\d+$"}}
    lines = ["server,time,metric,value", "pay-db-01.bank.local:9100,2024-03-01T00:00:00,cpu_util,40",
             "pay-db-01.bank.local:9100,2024-03-01T01:00:00,cpu_util,60",
             "node-exporter,2024-03-01T00:00:00,cpu_util,1", ",2024-03-01T00:00:00,cpu_util,1"]
    result = run([write(tmp_path / "p.csv", "\n".join(lines) + "\n")], mapping)
    assert result.raw_metrics["server_id"].tolist() == ["pay-db-01.bank.local"]
    assert reasons(result) == [
        "unmatched_server_id: 'node-exporter' in column 'server' does not match server_id.pattern '^([^:]+):\\\\d+$'",
        "missing_server_id: column 'server' is empty"]
    assert result.quarantine["server_id"].isna().all()


def test_a_copy_of_a_file_is_read_once_unless_its_name_names_the_server(tmp_path: Path) -> None:
    """helper-60: 'export (1).csv' beside 'export.csv' quarantined every sample as duplicate_timestamp."""
    text = "".join(f"web,2024-01-01T{h:02d}:00:00Z,{h}\n" for h in range(24))
    write(tmp_path / "export.csv", "host,ts,cpu\n" + text)
    write(tmp_path / "export (1).csv", "host,ts,cpu\n" + text)
    write(tmp_path / "other.csv", "host,ts,cpu\n" + text.replace("web", "db"))  # the same size, other bytes
    result = run([tmp_path], {**WIDE, "metrics": {"cpu": {"percent": "cpu"}}})
    assert result.quarantine.empty and result.rows_read == 48
    assert result.raw_metrics["samples"].tolist() == [24, 24]
    assert f"{tmp_path / 'export.csv'}: the same bytes as {tmp_path / 'export (1).csv'}; read once" in result.warnings
    by_name = {**WIDE, "metrics": {"cpu": {"percent": "cpu"}},
               "server_id": {"from_filename": r"^(.+)\.csv$"}}
    assert run([tmp_path], by_name).raw_metrics["server_id"].nunique() == 3  # three servers, one file each


def test_hourly_samples_are_said_to_understate_daily_peaks(tmp_path: Path) -> None:
    """helper-60: an hourly-average export read VM 407 as high, not critical, without a word."""
    hourly = "".join(f"web,2024-01-0{d}T{h:02d}:00:00Z,{h}\n" for d in (1, 2, 3) for h in range(24))
    five = "".join(f"db,2024-01-01T{m // 60:02d}:{m % 60:02d}:00Z,{m % 90}\n" for m in range(0, 1440, 5))
    write(tmp_path / "e.csv", "host,ts,cpu\n" + hourly + five)
    said = [w for w in run([tmp_path / "e.csv"], {**WIDE, "metrics": {"cpu": {"percent": "cpu"}}}).warnings
            if "samples a day" in w]
    assert said == ["1 of 2 series have only 24 or fewer samples a day (e.g. web cpu: 24): the daily P95 of hourly "
                    "values (averages, usually) is lower than that of 5-minute samples, so peaks read lower and "
                    "breaches show later; export 5-minute (or finer) samples if the monitoring keeps them"]
    write(tmp_path / "d.csv", "host,ts,cpu\n" + "".join(f"web,2024-01-0{d}T00:00:00Z,50\n" for d in range(1, 8)))
    assert not any("samples a day" in w for w in run([tmp_path / "d.csv"], {
        **WIDE, "metrics": {"cpu": {"percent": "cpu"}}}).warnings)  # a daily source is its own daily value


def test_idle_percent_and_free_amounts_are_read_as_their_complements(tmp_path: Path) -> None:
    """helper-60: sar's %idle and a MemAvailable column could not be mapped (cpu = 100 - idle)."""
    write(tmp_path / "sar.csv", "host;ts;%user;%idle;avail;total\n"
                                "web;2024-01-01T00:00:00Z;20;70,5;1024;4096\n"
                                "web;2024-01-01T00:05:00Z;21;-;-1;4096\n")
    mapping = {**WIDE, "csv": {"delimiter": ";", "decimal": ","},
               "metrics": {"cpu": {"idle": "%idle"}, "memory": {"free": "avail", "capacity": "total"}}}
    result = run([tmp_path / "sar.csv"], mapping)
    daily = result.raw_metrics.set_index("metric")
    assert daily.loc["cpu", "value"] == pytest.approx(29.5) and daily.loc["cpu", "samples"] == 1
    assert daily.loc["memory", "value"] == pytest.approx(75.0) and daily.loc["memory", "samples"] == 1
    assert sorted(reasons(result)) == [
        "missing_value: column '%idle' is empty",
        "negative_value: '-1' in column 'avail' (a free amount below 0 is a not-collected code, not a measurement)"]
    with pytest.raises(ConfigError, match="'free' also needs 'capacity'"):
        parse_mapping({**WIDE, "metrics": {"memory": {"free": "avail"}}})
    with pytest.raises(ConfigError, match="exactly one of"):
        parse_mapping({**WIDE, "metrics": {"cpu": {"idle": "a", "percent": "b"}}})


def test_lines_above_the_header_are_skipped_and_line_numbers_stay_the_files(tmp_path: Path) -> None:
    """helper-60: a TrueSight export starts with a title and its period; the error blamed csv.delimiter."""
    text = ("Capacity Optimization - Export\nZeitraum: 01.10.2013 - 29.11.2013\n\nhost;ts;cpu\n"
            "web;2024-01-01T00:00:00Z;5\nweb;2024-01-01T00:05:00Z;6;7\nweb;2024-01-01T00:10:00Z;x\n")
    write(tmp_path / "e.csv", text)
    write(tmp_path / "inv.csv", "host;cores\nweb;4\n")
    mapping = {**WIDE, "csv": {"delimiter": ";", "skip_lines": 3}, "metrics": {"cpu": {"percent": "cpu"}},
               "inventory": {"source": str(tmp_path / "inv.csv"),
                             "columns": {"server_id": "host", "cpu_cores": "cores"}}}
    result = run([tmp_path / "e.csv"], mapping)
    assert result.rows_read == 3 and result.raw_metrics["samples"].tolist() == [1]
    assert sorted(result.quarantine["source"].str.rsplit(":", n=1).str[1].astype(int)) == [6, 7]
    assert result.inventory["cpu_cores"].tolist() == [4]  # the inventory file has no lines above its header
    with pytest.raises(InputError, match="is there a title above the header line\\? csv.skip_lines skips such lines"):
        run([tmp_path / "e.csv"], {**mapping, "csv": {"delimiter": ";"}})


def test_review_edges_of_the_new_mapping_keys(tmp_path: Path) -> None:
    """helper-61: unquoted YAML booleans in exclude_rows, a negative idle percent, a rule matching nothing,
    CR-only lines below skip_lines."""
    with pytest.raises(ConfigError, match="false was read as a boolean .*quote the text the column holds, e.g. 'off'"):
        parse_mapping({**WIDE, "exclude_rows": {"column": "state", "values": [False], "reason": "off"}})
    write(tmp_path / "sar.csv", "host,ts,idle,state\nweb,2024-01-01T00:00:00Z,-1,on\nweb,2024-01-01T00:05:00Z,70,on\n")
    mapping = {**WIDE, "metrics": {"cpu": {"idle": "idle"}},
               "exclude_rows": {"column": "state", "values": ["off"], "reason": "powered off"}}
    result = run([tmp_path / "sar.csv"], mapping)
    assert result.raw_metrics["value"].tolist() == [30.0]  # -1 idle is not 101 % cpu
    assert reasons(result) == ["negative_value: '-1' in column 'idle' (an idle percent below 0 is a not-collected "
                               "code, not a measurement)"]
    assert ("exclude_rows matched no row: column 'state' never holds 'off' (numbers compare as numbers, text as "
            "trimmed text)") in result.warnings
    write(tmp_path / "cr.csv", "Title\rhost,ts,cpu\rweb,2024-01-01T00:00:00Z,5\rweb,2024-01-01T00:05:00Z,6\r")
    cr = run([tmp_path / "cr.csv"], {**WIDE, "csv": {"skip_lines": 1}, "metrics": {"cpu": {"percent": "cpu"}}})
    assert cr.rows_read == 2 and cr.raw_metrics["samples"].tolist() == [2]


def test_epoch_times_of_rows_without_a_server_are_not_judged(tmp_path: Path) -> None:
    """helper-61: milliseconds read as seconds on rows whose server id the pattern rejects ended in an IndexError."""
    write(tmp_path / "ms.csv", "host,t,cpu\n" + "".join(f"zz,{1_700_000_000_000 + 300_000 * i},5\n"
                                                       for i in range(30)))
    mapping = {**WIDE, "server_id": {"column": "host", "pattern": "^(web)$"},
               "timestamp": {"column": "t", "kind": "epoch", "unit": "s"}, "metrics": {"cpu": {"percent": "cpu"}}}
    result = run([tmp_path / "ms.csv"], mapping)
    assert result.rows_used == 0 and set(r.split(":")[0] for r in reasons(result)) == {"unmatched_server_id"}


def test_one_file_of_fractions_among_percent_files_is_said_per_server(tmp_path: Path) -> None:
    """helper-72: the whole-export fraction check missed one Prometheus ratio file beside percent files; its server
    read as idle (0.93 %) beside the same series in percent, already breaching."""
    times = pd.date_range("2024-01-01", periods=300, freq="5min")
    busy = 20.0 + 70.0 * (np.arange(300) % 50) / 50
    for host, values in (("pct", busy), ("ratio", busy / 100.0), ("quiet", 3.0 + busy / 100.0)):
        write(tmp_path / f"{host}.csv", "host,ts,cpu\n" + "".join(
            f"{host},{t:%Y-%m-%dT%H:%M:%SZ},{v:.4f}\n" for t, v in zip(times, values, strict=True)))
    mapping = {**WIDE, "metrics": {"cpu": {"percent": "cpu"}}}
    said = [w for w in run([tmp_path], mapping).warnings if "never exceed 1.5" in w]
    assert said == ["cpu: 1 of 3 servers never exceed 1.5 on any sample while others read in percent: ratio; read as "
                    "percent they look idle; if their files hold fractions (0.5 = 50 %), ingest those files with a "
                    "mapping that reads them (set metrics.cpu.fraction: 'cpu' instead of percent in the mapping "
                    "(docs/ingest.md, Values))"]
    alone = [w for w in run([tmp_path / "pct.csv", tmp_path / "quiet.csv"], mapping).warnings if "1.5" in w]
    assert alone == []  # a quiet server at 3-4 % is no fraction
