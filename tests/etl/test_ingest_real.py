"""Ingest of the shared real traces (Bitbrains Rnd, NAB CloudWatch) checked against independent numpy."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from capacity_forecaster.config import IngestConfig, Settings
from capacity_forecaster.etl.ingest import IngestResult, ingest
from capacity_forecaster.etl.mapping import load_mapping, parse_mapping
from capacity_forecaster.etl.rollup import DAILY_COLUMNS
from capacity_forecaster.schema import INVENTORY_COLUMNS, QUARANTINE_COLUMNS
from capacity_forecaster.stages.raw import ingest_stage
from capacity_forecaster.storage import Lake

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / ".." / "shared" / "data" / "real"
RND = REAL / "bitbrains_rnd" / "rnd"
MONTHS = ("2013-7", "2013-8", "2013-9")
VMS = (1, 2, 3, 14, 89, 100, 206, 237, 250, 270, 333, 383, 407, 488)
NAB_CPU = REAL / "nab" / "realKnownCause" / "cpu_utilization_asg_misconfiguration.csv"
CPU_CAP, MEM_CAP = "CPU capacity provisioned [MHZ]", "Memory capacity provisioned [KB]"

needs_bitbrains = pytest.mark.skipif(not RND.is_dir(), reason=f"shared Bitbrains data not found at {RND}")
needs_nab = pytest.mark.skipif(not NAB_CPU.is_file(), reason=f"shared NAB data not found at {NAB_CPU}")


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def read_vm(vm: int) -> pd.DataFrame:
    """A VM's three month files joined in order, read with pandas (C engine; see the first test)."""
    frames = [pd.read_csv(RND / month / f"{vm}.csv", sep=";", skipinitialspace=True) for month in MONTHS]
    joined = pd.concat(frames, ignore_index=True)
    joined.columns = joined.columns.str.strip()
    return joined


def used_rows(raw: pd.DataFrame) -> dict[str, pd.Series]:
    """Per metric, the rows that are measurements: capacity > 0 and not a repeat of an earlier time."""
    out = {}
    for metric, capacity in (("cpu", raw[CPU_CAP]), ("memory", raw[MEM_CAP])):
        valid = capacity > 0
        out[metric] = valid & ~raw["Timestamp [ms]"].where(valid).duplicated()
    return out


def expected_daily(raw: pd.DataFrame) -> dict[str, pd.Series]:
    """Independent daily P95 per metric over UTC days (np.percentile, linear interpolation)."""
    used = used_rows(raw)
    out = {}
    for metric, values in (("cpu", raw["CPU usage [%]"]),
                           ("memory", raw["Memory usage [KB]"] / raw[MEM_CAP] * 100.0)):
        rows = used[metric]
        days = raw["Timestamp [ms]"][rows] // 86_400
        out[metric] = values[rows].groupby(days).agg(lambda v: np.percentile(v.to_numpy(), 95))
    return out


@pytest.fixture(scope="module")
def raw_vms() -> dict[int, pd.DataFrame]:
    return {vm: read_vm(vm) for vm in VMS}


@pytest.fixture(scope="module")
def bitbrains() -> IngestResult:
    mapping = load_mapping(REPO / "mappings" / "bitbrains.yaml")
    return ingest([str(RND)], mapping, IngestConfig(), local)


@needs_bitbrains
def test_c_engine_reads_like_the_python_engine() -> None:
    path = RND / "2013-7" / "14.csv"
    python_engine = pd.read_csv(path, sep=";\t", engine="python")
    c_engine = pd.read_csv(path, sep=";", skipinitialspace=True)
    c_engine.columns = c_engine.columns.str.strip()
    pd.testing.assert_frame_equal(python_engine, c_engine)


@needs_bitbrains
def test_bitbrains_daily_p95_matches_numpy(bitbrains: IngestResult, raw_vms: dict[int, pd.DataFrame]) -> None:
    daily = bitbrains.raw_metrics
    assert sorted(daily["server_id"].unique()) == sorted(f"bitbrains-{vm}" for vm in VMS)
    assert set(daily["metric"]) == {"cpu", "memory"}
    for vm in VMS:
        for metric, expected in expected_daily(raw_vms[vm]).items():
            got = daily[(daily["server_id"] == f"bitbrains-{vm}") & (daily["metric"] == metric)]
            expected_days = pd.to_datetime(expected.index.to_numpy() * 86_400, unit="s")
            assert got["ds"].tolist() == expected_days.tolist(), (vm, metric)
            np.testing.assert_allclose(got["value"].to_numpy(), expected.to_numpy(), rtol=1e-12, atol=1e-9,
                                       err_msg=f"VM {vm} {metric}")


@needs_bitbrains
def test_bitbrains_days_per_vm_and_columns(bitbrains: IngestResult) -> None:
    daily = bitbrains.raw_metrics
    assert list(daily.columns) == ["server_id", "ds", "metric", "value", "samples", "value_mean",
                                   "value_max", "coverage", "low_coverage"]
    assert daily["ds"].dtype == "datetime64[ns]" and daily["value"].dtype == "float64"
    assert not daily.duplicated(["server_id", "ds", "metric"]).any()
    cpu_days = daily[daily["metric"] == "cpu"].groupby("server_id").size()
    full = [f"bitbrains-{vm}" for vm in VMS if vm not in (14, 206)]
    assert (cpu_days[full] == 92).all()  # 2013-06-30 .. 2013-09-29 UTC, as in SOURCE.md
    assert cpu_days["bitbrains-206"] == 63
    # VM 14 has rows on 63 days, but on 7 of them every row has capacity 0.
    assert cpu_days["bitbrains-14"] == 56
    # 5-minute samples: a full UTC day has about 288. The trace starts 2013-06-30 22:03 and the
    # August file 2013-07-31 22:02 (a day after July ends): those days are flagged, not trusted.
    vm1 = daily[(daily["server_id"] == "bitbrains-1") & (daily["metric"] == "cpu")].set_index("ds")
    flagged = vm1.index[vm1["low_coverage"]].strftime("%Y-%m-%d").tolist()
    assert {"2013-06-30", "2013-07-31", "2013-08-31"} <= set(flagged)
    assert vm1.loc["2013-07-30", "coverage"] == pytest.approx(263 / 288, abs=0.01)  # ends 21:57
    assert vm1.loc["2013-07-01", "coverage"] == pytest.approx(1.0, abs=0.01)
    # Values above 100 are kept as read (the ETL stage applies its tolerance).
    assert daily["value_max"].max() > 100.0


@needs_bitbrains
def test_bitbrains_row_accounting(bitbrains: IngestResult, raw_vms: dict[int, pd.DataFrame]) -> None:
    result = bitbrains
    assert result.rows_read == sum(len(raw) for raw in raw_vms.values()) == 341_702  # as in SOURCE.md
    assert result.rows_read == result.rows_used + result.rows_quarantined
    unused = 0
    for raw in raw_vms.values():
        used = used_rows(raw)
        unused += int((~(used["cpu"] | used["memory"])).sum())
    assert result.rows_quarantined == unused
    # Each row carries two metrics; each (row, metric) is either a sample or a quarantine record.
    assert result.raw_metrics["samples"].sum() + len(result.quarantine) == 2 * result.rows_read
    assert list(result.quarantine.columns) == list(QUARANTINE_COLUMNS)
    assert set(result.quarantine["stage"]) == {"ingest"}


@needs_bitbrains
def test_bitbrains_vm14_quirks(bitbrains: IngestResult, raw_vms: dict[int, pd.DataFrame]) -> None:
    raw = raw_vms[14]
    assert raw["Timestamp [ms]"].duplicated().sum() == 2_076
    used = used_rows(raw)
    q14 = bitbrains.quarantine[bitbrains.quarantine["server_id"] == "bitbrains-14"]
    codes = q14["reason"].str.split(":").str[0]
    assert (codes[q14["metric"] == "cpu"] == "zero_capacity").sum() == (raw[CPU_CAP] == 0).sum() == 6_219
    assert (codes[q14["metric"] == "memory"] == "zero_capacity").sum() == (raw[MEM_CAP] == 0).sum() == 6_216
    repeats = ((raw[CPU_CAP] > 0) & ~used["cpu"]).sum() + ((raw[MEM_CAP] > 0) & ~used["memory"]).sum()
    assert (codes == "duplicate_timestamp").sum() == repeats
    zero = q14[codes == "zero_capacity"].iloc[0]
    assert zero["source"].endswith("2013-7/14.csv:2")
    assert zero["reason"] == "zero_capacity: column 'CPU capacity provisioned [MHZ]' is '0.0'"
    assert zero["ds"] == "1375093346" and zero["value"] == "0.0"
    repeat = q14[codes == "duplicate_timestamp"].iloc[0]
    assert "14.csv:" in repeat["source"] and "(that one is kept)" in repeat["reason"]


@needs_bitbrains
def test_bitbrains_derived_inventory(bitbrains: IngestResult) -> None:
    inventory = bitbrains.inventory
    assert inventory is not None and list(inventory.columns) == list(INVENTORY_COLUMNS)
    assert len(inventory) == len(VMS)
    row = inventory.set_index("server_id").loc["bitbrains-1"]
    assert row["cpu_cores"] == 2 and row["memory_gb"] == pytest.approx(8.0)
    assert row["hostname"] == "bitbrains-1" and row["application"] == "unknown"
    assert row["server_type"] == "vm" and np.isnan(row["monthly_cost_usd"])
    # VM 206 is resized from 1 to 4 cores in September; the inventory holds the latest size.
    assert inventory.set_index("server_id").loc["bitbrains-206", "cpu_cores"] == 4
    # VM 14 ends with unprovisioned (0-core) rows; the latest real size is kept.
    assert inventory.set_index("server_id").loc["bitbrains-14", "cpu_cores"] == 1


NAB_MAPPING = {
    "name": "nab-cloudwatch",
    "layout": "long",
    "server_id": {"from_filename": r"^(.+)\.csv$", "prefix": "nab-"},
    "timestamp": {"column": "timestamp"},
    "long": {"value": "value", "metric": "cpu"},
}


@needs_nab
def test_nab_cloudwatch_cpu_long_mapping() -> None:
    result = ingest([str(NAB_CPU)], parse_mapping(NAB_MAPPING), IngestConfig(), local)
    raw = pd.read_csv(NAB_CPU, parse_dates=["timestamp"])
    assert result.rows_read == result.rows_used == len(raw) == 18_050
    assert result.quarantine.empty and result.inventory_ids_only
    assert result.inventory["server_id"].tolist() == ["nab-cpu_utilization_asg_misconfiguration"]
    daily = result.raw_metrics
    assert set(daily["server_id"]) == {"nab-cpu_utilization_asg_misconfiguration"}
    assert set(daily["metric"]) == {"cpu"}
    expected = raw.groupby(raw["timestamp"].dt.floor("D"))["value"].agg(lambda v: np.percentile(v, 95))
    assert daily["ds"].tolist() == expected.index.tolist()
    np.testing.assert_allclose(daily["value"], expected.to_numpy(), rtol=1e-12)
    # Exactly 300 s apart: full days have 288 samples and coverage 1; the first (from 01:14) and
    # last (to 17:19) days are partial but above the 0.5 coverage threshold.
    inner = daily.iloc[1:-1]
    assert (inner["samples"] == 288).all() and np.allclose(inner["coverage"], 1.0)
    assert daily["samples"].iloc[[0, -1]].tolist() == [274, 208]
    assert not daily["low_coverage"].any()


FASTSTORAGE = REAL / "bitbrains_faststorage"
needs_faststorage = pytest.mark.skipif(not (FASTSTORAGE / "trace.parquet").is_file(),
                                       reason=f"shared fastStorage data not found at {FASTSTORAGE}")


@pytest.fixture(scope="module")
def faststorage() -> IngestResult:
    mapping = load_mapping(REPO / "mappings" / "bitbrains_faststorage.yaml")
    return ingest([str(FASTSTORAGE / "trace.parquet")], mapping, IngestConfig(), local)


@needs_faststorage
def test_faststorage_run_length_rows_and_joined_capacity(faststorage: IngestResult) -> None:
    result = faststorage
    # 291 rows of 8 VMs report 0 vCPU (a stopped VM): quarantined by the mapping's exclude_rows, one record per VM
    # with its rows; every other row used.
    assert result.rows_read == 276_979 and result.rows_used == 276_979 - 291 and result.rows_excluded == 291
    assert result.quarantine["reason"].str.match(r"^excluded_row: \d+ row\(s\) whose column 'cpu_count' is '0' ").all()
    assert len(result.quarantine) == 8 and result.quarantine["server_id"].nunique() == 8
    counts = result.quarantine["reason"].str.extract(r"^excluded_row: (\d+) row")[0].astype(int)
    assert counts.sum() == 291
    daily = result.raw_metrics
    assert daily["server_id"].nunique() == 50 and set(daily["metric"]) == {"cpu"}
    trace = pd.read_parquet(FASTSTORAGE / "trace.parquet")
    meta = pd.read_parquet(FASTSTORAGE / "meta.parquet").set_index("id")
    # A row's time is its run's last sample (OpenDC's duration is the time since the previous sample):
    # every VM's first row starts at its meta.start_time and its last row ends at meta.stop_time.
    by_vm = trace.sort_values("timestamp").groupby("id")
    first, last = by_vm.first(), by_vm.last()
    starts = first["timestamp"] - pd.to_timedelta(first["duration"], unit="ms")
    assert (starts == meta.loc[first.index, "start_time"]).all()
    assert (last["timestamp"] == meta.loc[last.index, "stop_time"]).all()
    # VM 636 has durations off the 5-minute grid (jitter), CPU above 100 %, and ends in one 15-day row
    # with 0 vCPU: the VM was stopped, so its last 15 days hold no sample.
    trace = trace[trace["id"] == "636"].sort_values("timestamp")
    capacity = meta.loc["636", "cpu_capacity"]
    slots = np.maximum(np.rint(trace["duration"].to_numpy() / 300_000), 1).astype(int)
    assert slots[-1] > 4_000 and trace["cpu_count"].iloc[-1] == 0
    end = trace["timestamp"].dt.tz_convert(None).astype("datetime64[ns]").astype(np.int64).to_numpy()
    before = np.arange(slots.sum()) - np.repeat(np.cumsum(slots) - 1, slots)  # -(slots - 1) .. 0 in each row
    times = np.repeat(end, slots) + before * 300 * 10**9
    percent = np.repeat(trace["cpu_usage"].to_numpy() / capacity * 100.0, slots)
    kept = np.repeat(trace["cpu_count"].to_numpy() > 0, slots)
    by_day = pd.Series(percent[kept]).groupby(times[kept] // (86_400 * 10**9))
    got = daily[daily["server_id"] == "bitbrains-fs-636"]
    assert got["ds"].tolist() == pd.to_datetime(by_day.size().index.to_numpy(), unit="D").tolist()
    assert got["ds"].max() == pd.Timestamp("2013-08-27")
    np.testing.assert_allclose(got["value"], by_day.agg(lambda v: np.percentile(v, 95)), rtol=1e-12)
    assert got["samples"].tolist() == by_day.size().tolist()
    assert got["value"].max() > 100.0
    inventory = result.inventory.set_index("server_id")
    assert not result.inventory_ids_only and len(inventory) == 50
    assert inventory.loc["bitbrains-fs-636", "cpu_cores"] == 4
    assert inventory.loc["bitbrains-fs-1019", "memory_gb"] == pytest.approx(181_352 / 1_048_576)


@needs_faststorage
def test_the_faststorage_folder_reads_meta_as_the_inventory_not_as_metrics(faststorage: IngestResult) -> None:
    # helper-41: the folder given whole failed with "meta.parquet: column 'timestamp' not found".
    mapping = load_mapping(REPO / "mappings" / "bitbrains_faststorage.yaml")
    folder = ingest([str(FASTSTORAGE)], mapping, IngestConfig(), local)
    assert [Path(f).resolve() for f in folder.files] == [(FASTSTORAGE / "trace.parquet").resolve()]
    pd.testing.assert_frame_equal(folder.raw_metrics, faststorage.raw_metrics)


@needs_faststorage
def test_faststorage_delivered_day_by_day_gives_the_rows_of_one_ingest(tmp_path: Path) -> None:
    """helper-55: each day's export (the rows stamped that day; a run crossing midnight ends in the later file)
    ingested in turn gives the daily rows of one ingest of them all, samples and values alike."""
    trace = pq.read_table(FASTSTORAGE / "trace.parquet")
    stamps = trace.column("timestamp").to_pandas()
    mapping = str(REPO / "mappings" / "bitbrains_faststorage.yaml")
    days = pd.date_range("2013-08-12", "2013-08-20", freq="D", tz="UTC")
    whole, daily = (Lake.open(str(tmp_path / name), for_writing=True) for name in ("whole", "daily"))
    for day in days:
        folder = tmp_path / day.strftime("%m%d")
        folder.mkdir()
        rows = ((stamps >= day) & (stamps < day + pd.Timedelta(days=1))).to_numpy()
        pq.write_table(trace.filter(pa.array(rows)), folder / "trace.parquet")
        shutil.copy(FASTSTORAGE / "meta.parquet", folder / "meta.parquet")
        ingest_stage(daily, Settings(), [str(folder / "trace.parquet")], mapping)
    every = tmp_path / "all"
    every.mkdir()
    rows = (stamps < days[-1] + pd.Timedelta(days=1)).to_numpy()
    pq.write_table(trace.filter(pa.array(rows)), every / "trace.parquet")
    shutil.copy(FASTSTORAGE / "meta.parquet", every / "meta.parquet")
    ingest_stage(whole, Settings(), [str(every / "trace.parquet")], mapping)
    got, expected = (lake.read_table("raw_metrics")[list(DAILY_COLUMNS)].sort_values(["server_id", "ds"],
                                                                                     ignore_index=True)
                     for lake in (daily, whole))
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    assert expected["ds"].nunique() == len(days) and len(expected) == 388
