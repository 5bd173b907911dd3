"""An export too large for memory: spilled to disk by server group and rolled up one group at a time.

Every output must equal the in-memory ingest's: daily rows, quarantine (with its file:line sources),
staging of partial days, value counts, row counts, warnings and the carry-over from earlier runs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pytest

from capacity_forecaster.config import IngestConfig
from capacity_forecaster.errors import StorageError
from capacity_forecaster.etl import ingest as ingest_module
from capacity_forecaster.etl import spill as spill_module
from capacity_forecaster.etl.ingest import IngestResult, ingest
from capacity_forecaster.etl.mapping import load_mapping, parse_mapping

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / ".." / "shared" / "data" / "real"
RND = REAL / "bitbrains_rnd" / "rnd"
FAST = REAL / "bitbrains_faststorage" / "trace.parquet"
needs_real = pytest.mark.skipif(not (RND.is_dir() and FAST.is_file()), reason=f"shared data not found at {REAL}")


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def assert_same(memory: IngestResult, spilled: IngestResult) -> None:
    """Every output equal, row order included (the lake's tables do not depend on how servers were grouped)."""
    for name in ("raw_metrics", "quarantine", "partial_days", "values", "pooled_days"):
        pd.testing.assert_frame_equal(getattr(memory, name), getattr(spilled, name), obj=name)
    assert (memory.rows_read, memory.rows_used, memory.rows_quarantined) == (
        spilled.rows_read, spilled.rows_used, spilled.rows_quarantined)
    assert memory.warnings == spilled.warnings and memory.carryover == spilled.carryover


def both(sources: list[str], mapping_file: Path | dict, staged: pd.DataFrame | None = None,
         spill_rows: int = 5_000) -> tuple[IngestResult, IngestResult]:
    mapping = load_mapping(mapping_file) if isinstance(mapping_file, Path) else parse_mapping(mapping_file)
    return tuple(ingest(sources, mapping, IngestConfig(spill_rows=rows), local, staged)  # type: ignore[return-value]
                 for rows in (0, spill_rows))


@needs_real
@pytest.mark.parametrize("export", ["rnd", "faststorage"])
def test_a_spilled_real_export_rolls_up_as_in_memory(export: str, monkeypatch: pytest.MonkeyPatch) -> None:
    spills = []
    original = spill_module.SamplePool._spill
    monkeypatch.setattr(spill_module.SamplePool, "_spill", lambda pool: (spills.append(1), original(pool)))
    if export == "rnd":
        memory, spilled = both([str(RND / "2013-7"), str(RND / "2013-8")], REPO / "mappings" / "bitbrains.yaml",
                               spill_rows=50_000)
    else:
        memory, spilled = both([str(FAST)], REPO / "mappings" / "bitbrains_faststorage.yaml", spill_rows=50_000)
    assert len(spills) >= 2, "the export was spilled, then the rest at the end"
    assert_same(memory, spilled)
    assert len(memory.raw_metrics) > 1_000


@needs_real
def test_spilled_runs_pool_the_partial_days_an_earlier_run_staged(tmp_path: Path) -> None:
    # August cut at noon of the 15th into two deliveries: the second completes the first's last day.
    cut = int(pd.Timestamp("2013-08-15 12:00", tz="UTC").timestamp())
    for part in ("first", "second"):
        (tmp_path / part).mkdir()
    for path in sorted((RND / "2013-8").glob("*.csv"))[:6]:
        header, *lines = path.read_text().splitlines(keepends=True)
        early = [line for line in lines if line.strip() and int(line.split(";", 1)[0]) < cut]
        (tmp_path / "first" / path.name).write_text(header + "".join(early))
        (tmp_path / "second" / path.name).write_text(header + "".join(line for line in lines if line not in early))
    mapping = REPO / "mappings" / "bitbrains.yaml"
    first = both([str(tmp_path / "first")], mapping, spill_rows=20_000)
    assert_same(*first)
    # A staged day of a server the second run lacks passes through; so does one of a server whose
    # samples all fall in other server groups than the first one rolled up.
    ghost = first[0].partial_days.head(3).assign(server_id="bitbrains-retired")
    staged = pd.concat([first[0].partial_days, ghost], ignore_index=True)
    second = both([str(tmp_path / "second")], mapping, staged, spill_rows=20_000)
    assert_same(*second)
    assert second[1].carryover.days_combined > 0
    assert (second[1].partial_days["server_id"] == "bitbrains-retired").sum() == 3


def test_duplicates_keep_the_first_sample_read_and_name_their_lines(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    times = pd.date_range("2024-03-01", periods=600, freq="15min")
    lines = [f"{host},{t:%Y-%m-%dT%H:%M:%S},{rng.uniform(5, 95):.3f}" for t in times for host in
             ("web-01", "web-02", "db-01", "db-02", "app-01")]
    lines += lines[100:160]  # the same times again, other values where drawn again below
    lines += [line.rsplit(",", 1)[0] + ",99.0" for line in lines[300:320]]
    path = tmp_path / "export.csv"
    path.write_text("host,time,cpu\n" + "\n".join(lines) + "\n", encoding="utf-8")
    mapping = {"layout": "wide", "server_id": {"column": "host"},
               "timestamp": {"column": "time", "kind": "text", "timezone": "UTC"},
               "metrics": {"cpu": {"percent": "cpu"}}}
    memory, spilled = both([str(path)], mapping, spill_rows=500)
    assert_same(memory, spilled)
    reasons = spilled.quarantine["reason"].astype(str)
    assert reasons.str.startswith("duplicate_timestamp: same server, metric and time as ").sum() == 80
    assert spilled.quarantine["source"].astype(str).str.match(r".*export\.csv:\d+$").all()


def test_the_spill_folder_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    times = pd.date_range("2024-03-01", periods=2_000, freq="5min")
    path = tmp_path / "export.csv"
    path.write_text("host,time,cpu\n" + "\n".join(f"vm-{i % 7},{t:%Y-%m-%dT%H:%M:%S},{i % 90}"
                                                  for i, t in enumerate(times)) + "\n", encoding="utf-8")
    mapping = {"layout": "wide", "server_id": {"column": "host"},
               "timestamp": {"column": "time", "kind": "text", "timezone": "UTC"},
               "metrics": {"cpu": {"percent": "cpu"}}}
    assert_same(*both([str(path)], mapping, spill_rows=300))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]


def test_a_full_temporary_disk_is_one_line_and_leaves_no_folder(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """helper-51: ENOSPC while spilling ended in 'OSError: 40000 requested and 0 written'."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    times = pd.date_range("2024-03-01", periods=2_000, freq="5min")
    path = tmp_path / "export.csv"
    path.write_text("host,time,cpu\n" + "\n".join(f"vm-{i % 7},{t:%Y-%m-%dT%H:%M:%S},{i % 90}"
                                                  for i, t in enumerate(times)) + "\n", encoding="utf-8")
    mapping = {"layout": "wide", "server_id": {"column": "host"}, "timestamp": {"column": "time"},
               "metrics": {"cpu": {"percent": "cpu"}}}
    # Every spill write fails as on a full disk (numpy's ascontiguousarray feeds only the spill's tofile here).
    monkeypatch.setattr(spill_module.np, "ascontiguousarray", lambda a: _Full(a))
    with pytest.raises(StorageError, match=r"cannot spill samples to the temporary folder .*capfc-ingest-.* \(No "
                                           r"space left on device\); free space there"):
        ingest([str(path)], parse_mapping(mapping), IngestConfig(spill_rows=300), local)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]


class _Full:
    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def tofile(self, _path: str) -> None:
        raise OSError(28, "No space left on device")


@needs_real
def test_runs_cut_at_the_last_sample_are_one_warning_per_file_whatever_the_chunks() -> None:
    # fastStorage read as if its rows were stamped at their runs' first sample, every row kept: 4 VMs' last rows
    # then reach 4.6-15 days past their meta.stop_time.
    shipped = load_mapping(REPO / "mappings" / "bitbrains_faststorage.yaml")
    assert shipped.weight is not None
    mapping = shipped.model_copy(update={"exclude_rows": None, "weight": shipped.weight.model_copy(
        update={"time": "first", "until": "stop_time"})})
    result = ingest([str(FAST)], mapping, IngestConfig(chunk_rows=20_000), local)
    [cut] = [w for w in result.warnings if "run(s) cut" in w]
    assert cut.endswith("17 run(s) cut at their server's last sample (inventory column 'stop_time', weight.until): "
                        "11,530 sample(s) after it dropped")


MAPPING = {"layout": "wide", "server_id": {"column": "host"},
           "timestamp": {"column": "time", "kind": "text", "timezone": "UTC"}, "metrics": {"cpu": {"percent": "cpu"}}}


def test_a_single_sample_series_takes_the_interval_of_every_series_not_of_its_group(tmp_path: Path) -> None:
    # helper-43: spilled, "lonely" took its group's fallback (one day: coverage 1.0) instead of 5 minutes.
    times = pd.date_range("2024-03-01", periods=600, freq="5min")
    lines = [f"web-{h},{t:%Y-%m-%dT%H:%M:%S},{(i * 7) % 90 + 1}" for i, t in enumerate(times) for h in (1, 2)]
    path = tmp_path / "export.csv"
    path.write_text("host,time,cpu\n" + "\n".join([*lines, "lonely,2024-03-02T10:00:00,42"]) + "\n")
    memory, spilled = both([str(path)], MAPPING, spill_rows=100)
    assert_same(memory, spilled)
    lonely = spilled.raw_metrics.set_index("server_id").loc["lonely"]
    assert lonely["coverage"] == pytest.approx(1 / 288) and lonely["low_coverage"]


def test_staged_conflicts_name_the_same_example_whatever_the_grouping(tmp_path: Path) -> None:
    # helper-43: the example was the first conflict of the first server group rolled up.
    day = [f"s{h},2024-03-01T{m // 60:02d}:{m % 60:02d}:00,{h + 1}" for h in (1, 0) for m in range(0, 720, 5)]
    first = tmp_path / "first.csv"
    first.write_text("host,time,cpu\n" + "\n".join(day) + "\n")
    staged = ingest([str(first)], parse_mapping(MAPPING), IngestConfig(), local).partial_days
    again = [line.rsplit(",", 1)[0] + ",50" for line in day if "T12:00:00" in line or "T11:55:00" in line]
    second = tmp_path / "second.csv"
    second.write_text("host,time,cpu\n" + "\n".join(again) + "\n")
    memory, spilled = both([str(second)], MAPPING, staged, spill_rows=1)
    assert_same(memory, spilled)
    assert memory.carryover.example.startswith("s0 cpu 2024-03-01T11:55:00Z: 1.0 staged, 50.0 now")


def test_the_spill_folder_is_removed_when_the_ingest_is_refused(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # helper-43: a refusal after a spill (a wrong epoch unit) left the folder until the traceback was freed.
    from capacity_forecaster.errors import InputError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seconds = pd.date_range("2024-03-01", periods=500, freq="5min").astype("int64") // 10**9
    path = tmp_path / "export.csv"
    path.write_text("host,time,cpu\n" + "\n".join(f"vm-{i % 3},{t},{i % 90}" for i, t in enumerate(seconds)) + "\n")
    epoch_ms = {**MAPPING, "timestamp": {"column": "time", "kind": "epoch", "unit": "ms"}}
    with pytest.raises(InputError, match="set timestamp.unit: s"):
        ingest([str(path)], parse_mapping(epoch_ms), IngestConfig(spill_rows=50), local)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]


def test_the_epoch_check_samples_every_16th_time_of_the_export_not_of_each_chunk() -> None:
    # helper-43: a stride restarting at every chunk let files of a few samples weigh more per sample.
    from capacity_forecaster.etl.rollup import Samples

    pool = spill_module.SamplePool()
    for start, n in ((0, 5), (5, 20), (25, 3), (28, 40)):
        ts = np.arange(start, start + n, dtype=np.int64)
        pool.add(0, None, n, Samples(np.zeros(n, np.int32), np.zeros(n, np.int8), ts, np.ones(n), np.arange(n)))
    [times] = pool.times.summary().values()
    assert times.count == len(range(0, 68, spill_module.TIME_STRIDE)) == 5
    assert pool.median_time() == 32.0  # of 0, 16, 32, 48, 64


@needs_real
def test_groups_hold_about_spill_rows_samples_whatever_the_export_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """64 fixed groups held 1/64 of everything (866,000 samples each at 10,000 fastStorage copies, helper-45):
    runs of buckets now hold about spill_rows samples, a bigger bucket alone."""
    sizes: list[int] = []
    original = ingest_module._roll_up

    def spy(group, *args, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(group.samples))
        return original(group, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "_roll_up", spy)
    mapping = load_mapping(REPO / "mappings" / "bitbrains_faststorage.yaml")
    ingest([str(FAST)], mapping, IngestConfig(spill_rows=20_000), local)
    # One server's 8,640 five-minute samples: a bucket never holds much more than two of fastStorage's VMs.
    assert len(sizes) > 10 and max(sizes) <= 20_000 + 2 * 9_000
    assert sum(sizes) == 276_979 - 291  # every run-length row rolled up once (but the 291 the mapping excludes)
