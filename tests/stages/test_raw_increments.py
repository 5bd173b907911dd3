"""capfc ingest in increments: a day delivered by several runs is rolled up from all of its samples."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.config import GenerateConfig, Settings
from capacity_forecaster.errors import InputError
from capacity_forecaster.etl.rollup import DAILY_COLUMNS
from capacity_forecaster.stages.raw import generate_stage, ingest_stage
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import StageRun, list_runs

START = pd.Timestamp("2024-03-01 03:00")
DAY1 = pd.Timestamp("2024-03-02")
LONG = ("layout: long\nserver_id: {column: server}\ntimestamp: {column: time}\n"
        "long: {value: value, metric_column: metric, metric_names: {cpu_util: cpu, mem_util: memory}}\n")
RUNS = ("layout: wide\nserver_id: {column: vm}\ntimestamp: {column: t, kind: epoch, unit: s}\ninterval_seconds: 300\n"
        "weight: {column: runs}\nmetrics: {cpu: {percent: cpu}}\n")


def export(days: float = 3.5, seed: int = 0) -> pd.DataFrame:
    """5-minute samples of two servers' cpu and memory from START; db-2 misses ~3 % of them."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(START, periods=int(days * 288), freq="5min")
    frames = []
    for server, metric in itertools.product(("db-1", "db-2"), ("cpu_util", "mem_util")):
        keep = rng.random(len(times)) > (0.03 if server == "db-2" else 0.0)
        frames.append(pd.DataFrame({"server": server, "metric": metric, "time": times[keep],
                                    "value": np.round(rng.gamma(2.0, 12.0, int(keep.sum())), 2)}))
    return pd.concat(frames, ignore_index=True)


def write(frame: pd.DataFrame, path: Path) -> str:
    out = frame.copy()
    out["time"] = out["time"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.sample(frac=1.0, random_state=1).to_csv(path, index=False)  # row order must not matter
    return str(path)


def cut(frame: pd.DataFrame, at: list[pd.Timestamp], folder: Path, column: str = "time") -> list[str]:
    """The export cut at the given times into files, as a job exporting "everything since the last run"."""
    bounds = [pd.Timestamp.min, *at, pd.Timestamp.max]
    return [write(frame[(frame[column] >= lo) & (frame[column] < hi)], folder / f"part{i}.csv")
            for i, (lo, hi) in enumerate(itertools.pairwise(bounds))]


def ingest(lake: Lake, files: list[str], mapping: Path, *, replace: bool = False) -> list[StageRun]:
    return [ingest_stage(lake, Settings(), [f], str(mapping), replace=replace) for f in files]


def raw(lake: Lake) -> pd.DataFrame:
    rows = lake.read_table("raw_metrics")[list(DAILY_COLUMNS)]
    return rows.sort_values(["server_id", "metric", "ds"], ignore_index=True)


@pytest.fixture()
def mapping(tmp_path: Path) -> Path:
    path = tmp_path / "long.yaml"
    path.write_text(LONG)
    return path


def reference(frame: pd.DataFrame, tmp_path: Path, mapping: Path, name: str = "all") -> pd.DataFrame:
    """The raw rows of one ingest of every sample."""
    lake = Lake.open(str(tmp_path / f"lake-{name}"), for_writing=True)
    ingest(lake, [write(frame, tmp_path / f"{name}.csv")], mapping)
    return raw(lake)


def test_a_day_split_across_two_runs_in_order_equals_one_ingest(tmp_path: Path, mapping: Path) -> None:
    frame = export()
    expected = reference(frame, tmp_path, mapping)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    runs = ingest(lake, cut(frame, [DAY1 + pd.Timedelta(hours=6), DAY1 + pd.Timedelta(hours=30)], tmp_path), mapping)
    pd.testing.assert_frame_equal(raw(lake), expected, check_exact=True)
    # The second and third runs completed the day the run before them left partial (4 series each).
    assert [r.counts["days_pooled"] for r in runs] == [0, 4, 4]
    assert [r.counts["days_completed"] for r in runs][1:] == [
        int((expected["ds"] == day).sum() - (expected["ds"] == day)[expected["coverage"] < 1].sum())
        for day in (DAY1, DAY1 + pd.Timedelta(days=1))]
    assert expected["samples"].sum() == len(frame)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_day_split_across_three_runs_in_any_order_equals_one_ingest(tmp_path: Path, mapping: Path,
                                                                      order: tuple[int, ...]) -> None:
    frame = export(days=2.5)
    expected = reference(frame, tmp_path, mapping)
    files = cut(frame, [DAY1 + pd.Timedelta(hours=8), DAY1 + pd.Timedelta(hours=16)], tmp_path)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    runs = ingest(lake, [files[i] for i in order], mapping)
    pd.testing.assert_frame_equal(raw(lake), expected, check_exact=True)
    assert not any(r.counts["warnings"] for r in runs)
    # Once complete, a day leaves the staging.
    staged = lake.read_table("partial_days")
    complete = expected[(expected["ds"] == DAY1) & (expected["coverage"] >= 1)]
    staged = staged[staged["ds"] == DAY1]
    assert len(complete) and not set(zip(complete["server_id"], complete["metric"], strict=True)) & set(
        zip(staged["server_id"], staged["metric"], strict=True))


def test_run_length_rows_split_across_runs_equal_one_ingest(tmp_path: Path) -> None:
    """Runs of equal samples (mapping weight) crossing midnight and the export's cut times."""
    rng = np.random.default_rng(3)
    rows = []
    for vm in ("a", "b"):
        t = int(START.timestamp())
        while t < int((START + pd.Timedelta(days=3)).timestamp()):
            runs = int(rng.integers(1, 40))
            rows.append((vm, t, runs, round(float(rng.uniform(0, 100)), 2)))
            t += 300 * runs + 300 * int(rng.random() < 0.1)  # now and then a missing sample
    frame = pd.DataFrame(rows, columns=["vm", "t", "runs", "cpu"])
    mapping = tmp_path / "runs.yaml"
    mapping.write_text(RUNS)
    whole = Lake.open(str(tmp_path / "whole"), for_writing=True)
    frame.to_csv(tmp_path / "all.csv", index=False)
    ingest(whole, [str(tmp_path / "all.csv")], mapping)
    bounds = [int((DAY1 + pd.Timedelta(hours=h)).timestamp()) for h in (6, 30)]
    parts = [frame[frame["t"] < bounds[0]], frame[(frame["t"] >= bounds[0]) & (frame["t"] < bounds[1])],
             frame[frame["t"] >= bounds[1]]]
    files = []
    for i, part in enumerate(parts):
        part.to_csv(tmp_path / f"p{i}.csv", index=False)
        files.append(str(tmp_path / f"p{i}.csv"))
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    ingest(lake, [files[0], files[2], files[1]], mapping)
    pd.testing.assert_frame_equal(raw(lake), raw(whole), check_exact=True)
    assert raw(whole)["samples"].sum() == frame["runs"].sum()


def test_a_sample_delivered_by_two_runs_counts_once(tmp_path: Path, mapping: Path) -> None:
    frame = export(days=2.5)
    expected = reference(frame, tmp_path, mapping)
    lo, hi = DAY1 + pd.Timedelta(hours=5), DAY1 + pd.Timedelta(hours=7)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    first, second = ingest(lake, [write(frame[frame["time"] < hi], tmp_path / "a.csv"),
                                  write(frame[frame["time"] >= lo], tmp_path / "b.csv")], mapping)
    pd.testing.assert_frame_equal(raw(lake), expected, check_exact=True)
    overlap = int(frame["time"].between(lo, hi, inclusive="left").sum())
    assert second.counts["samples_repeated"] == overlap > 0
    assert not second.counts["warnings"] and lake.read_table("quarantine").empty


def test_a_repeated_sample_with_another_value_takes_the_later_runs_and_warns(tmp_path: Path, mapping: Path) -> None:
    frame = export(days=2.5)
    lo, hi = DAY1 + pd.Timedelta(hours=5), DAY1 + pd.Timedelta(hours=7)
    later = frame[frame["time"] >= lo].copy()
    later.loc[later["time"] < hi, "value"] += 1.0
    expected = reference(pd.concat([frame[frame["time"] < lo], later]), tmp_path, mapping)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    _, second = ingest(lake, [write(frame[frame["time"] < hi], tmp_path / "a.csv"),
                              write(later, tmp_path / "b.csv")], mapping)
    pd.testing.assert_frame_equal(raw(lake), expected, check_exact=True)
    (warning,) = second.counts["warnings"]
    assert "with a different value; this run's value is used" in warning


def test_ingesting_the_same_files_again_changes_nothing(tmp_path: Path, mapping: Path) -> None:
    frame = export()
    expected = reference(frame, tmp_path, mapping)
    files = cut(frame, [DAY1 + pd.Timedelta(hours=6), DAY1 + pd.Timedelta(hours=30)], tmp_path)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    ingest(lake, files, mapping)
    staged = lake.read_table("partial_days")
    version = lake.table_info("raw_metrics").version  # type: ignore[union-attr]
    again = ingest(lake, [*files, files[1], files[0]], mapping)
    pd.testing.assert_frame_equal(raw(lake), expected, check_exact=True)
    # Nothing new: no raw_metrics version to read as new data (helper-55: capfc forecast then warned of stale
    # processed metrics after an ingest that changed nothing).
    assert lake.table_info("raw_metrics").version == version and again[-1].rows_out == 0  # type: ignore[union-attr]
    assert raw(lake)["samples"].sum() == len(frame)
    assert all(r.counts["rows_used"] == r.rows_in for r in again)
    key = ["server_id", "metric", "ds", "ts"]
    assert set(map(tuple, lake.read_table("partial_days")[key].to_numpy())) >= set(map(tuple, staged[key].to_numpy()))
    # Re-ingesting the first file delivers 6 hours of a day a later run completed: that day is kept.
    complete = int(((expected["ds"] == DAY1) & (expected["coverage"] >= 1)).sum())
    assert again[-1].counts["lake_days_kept"] == complete
    assert any("were kept" in w for w in again[-1].counts["warnings"]) == (complete > 0)


def test_replace_starts_the_staging_afresh(tmp_path: Path, mapping: Path) -> None:
    frame = export()
    files = cut(frame, [DAY1 + pd.Timedelta(hours=6), DAY1 + pd.Timedelta(hours=30)], tmp_path)
    alone = Lake.open(str(tmp_path / "alone"), for_writing=True)
    ingest(alone, [files[1]], mapping)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    ingest(lake, [files[0]], mapping)
    assert not lake.read_table("partial_days").empty
    (run,) = ingest(lake, [files[1]], mapping, replace=True)
    assert run.counts["days_pooled"] == 0
    pd.testing.assert_frame_equal(raw(lake), raw(alone), check_exact=True)
    staged = lake.read_table("partial_days")
    assert staged["ts"].min() >= DAY1 + pd.Timedelta(hours=6)
    pd.testing.assert_frame_equal(staged, alone.read_table("partial_days"))
    generate_stage(lake, Settings(generate=GenerateConfig(servers=2, years=0.1, holdout_days=5)))
    assert lake.read_table("partial_days").empty


def test_replace_with_an_export_of_no_rows_leaves_raw_as_it_is(tmp_path: Path, mapping: Path) -> None:
    """helper-51: a header-only export with --replace emptied raw_metrics (exit 0, a warning only)."""
    files = cut(export(), [DAY1 + pd.Timedelta(hours=6)], tmp_path)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    ingest(lake, files, mapping)
    before = raw(lake)
    empty = tmp_path / "empty.csv"
    empty.write_text(Path(files[0]).read_text().splitlines()[0] + "\n")
    with pytest.raises(InputError, match=r"ingest --replace: .*empty\.csv has no data rows; raw/ was left as it is"):
        ingest(lake, [str(empty)], mapping, replace=True)
    pd.testing.assert_frame_equal(raw(lake), before)


def test_a_run_cutting_days_in_another_zone_is_refused_unless_it_replaces(tmp_path: Path, mapping: Path) -> None:
    """helper-51: a UTC run then an America/New_York run left both kinds of days side by side in raw_metrics."""
    files = cut(export(), [DAY1 + pd.Timedelta(hours=30)], tmp_path)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    ingest(lake, [files[0]], mapping)
    before = raw(lake)
    other = tmp_path / "ny.yaml"
    other.write_text(mapping.read_text() + "day_timezone: America/New_York\n")
    with pytest.raises(InputError, match=r"day_timezone 'America/New_York', the lake's raw days were cut in 'UTC'"):
        ingest(lake, [files[1]], other)
    pd.testing.assert_frame_equal(raw(lake), before)
    ingest(lake, [files[0]], other, replace=True)  # raw/ rebuilt in the new zone, then runs merge in it
    assert ingest(lake, [files[1]], other)[0].counts["day_timezone"] == "America/New_York"


def test_a_generated_lake_keeps_its_utc_days(tmp_path: Path, mapping: Path) -> None:
    """A generated fleet's raw days are UTC: an ingest cutting New York days into it is refused (it was merged)."""
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    for _ in range(2):
        generate_stage(lake, Settings(generate=GenerateConfig(servers=2, years=0.1, holdout_days=5)))
    lake.vacuum("raw_metrics", 0.0)  # helper-57: a vacuum's commits hid the run that wrote the rows
    other = tmp_path / "ny.yaml"
    other.write_text(mapping.read_text() + "day_timezone: America/New_York\n")
    files = cut(export(), [DAY1 + pd.Timedelta(hours=6)], tmp_path)
    with pytest.raises(InputError, match=r"day_timezone 'America/New_York', the lake's raw days were cut in 'UTC'"):
        ingest(lake, [files[0]], other)
    assert ingest(lake, [files[0]], mapping)[0].rows_out > 0  # UTC days merge into it


def test_a_complete_day_delivered_again_in_part_is_kept(tmp_path: Path, mapping: Path) -> None:
    frame = export(days=2.5)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    ingest(lake, [write(frame, tmp_path / "all.csv")], mapping)
    before = raw(lake)
    hour = frame[frame["time"].between(DAY1 + pd.Timedelta(hours=12), DAY1 + pd.Timedelta(hours=13))]
    (run,) = ingest(lake, [write(hour, tmp_path / "hour.csv")], mapping)
    pd.testing.assert_frame_equal(raw(lake), before, check_exact=True)
    assert run.counts["lake_days_kept"] == 4 and run.rows_out == 0
    assert "4 day(s) already in raw_metrics have more samples than this run delivers" in run.counts["warnings"][0]
    assert DAY1 not in set(lake.read_table("partial_days")["ds"])


def test_a_partial_day_expires_from_the_staging_after_the_window(tmp_path: Path, mapping: Path) -> None:
    frame = export(days=8.0)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    early, late = DAY1 + pd.Timedelta(hours=6), DAY1 + pd.Timedelta(days=5)
    ingest(lake, [write(frame[frame["time"] < early], tmp_path / "a.csv"),
                  write(frame[frame["time"] >= late], tmp_path / "c.csv")], mapping)
    assert DAY1 not in set(lake.read_table("partial_days")["ds"])  # 5 days behind: beyond the window of 3
    # the first run staged its first and last day of each of the 4 series
    assert list_runs(lake, "ingest")[-1]["counts"]["partial_days_expired"] == 8
    (run,) = ingest(lake, [write(frame[(frame["time"] >= early) & (frame["time"] < late)], tmp_path / "b.csv")],
                    mapping)
    day = raw(lake)[raw(lake)["ds"] == DAY1]
    # The first 6 hours of the day were no longer staged: the row with more samples replaced theirs, and said so.
    assert (day["samples"] <= 216).all() and run.counts["days_pooled"] == 0
    assert any("without pooling the samples behind them" in w for w in run.counts["warnings"])


def test_the_other_half_of_an_expired_day_with_as_many_samples_is_said(tmp_path: Path, mapping: Path) -> None:
    """helper-55 #3: a day's second half arriving after its first half left the staging replaced it unsaid."""
    frame = export(days=8.0)
    frame = frame[frame["server"] == "db-1"]  # every slot there: both halves of a day hold 144 samples
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    noon, late = DAY1 + pd.Timedelta(hours=12), DAY1 + pd.Timedelta(days=5)
    ingest(lake, [write(frame[frame["time"] < noon], tmp_path / "a.csv"),
                  write(frame[frame["time"] >= late], tmp_path / "c.csv")], mapping)
    assert DAY1 not in set(lake.read_table("partial_days")["ds"])
    afternoon = frame[(frame["time"] >= noon) & (frame["time"] < DAY1 + pd.Timedelta(days=1))]
    (run,) = ingest(lake, [write(afternoon, tmp_path / "b.csv")], mapping)
    day = raw(lake)[raw(lake)["ds"] == DAY1]
    assert day["samples"].tolist() == [144, 144]  # the afternoon's: the morning's samples cannot be pooled
    [said] = [w for w in run.counts["warnings"] if "as many samples but other values" in w]
    assert said.startswith("2 day(s) in raw_metrics, each part of a day, were replaced by this run's rows") \
        and "e.g. db-1 cpu 2024-03-02: 144 samples in the lake, 144 in this run" in said
    # The same part again (the same values) is no news.
    (again,) = ingest(lake, [write(afternoon, tmp_path / "b.csv")], mapping)
    assert not any("as many samples" in w for w in again.counts.get("warnings", []))

def test_exports_longer_than_the_window_ingested_newest_first_equal_one_ingest(tmp_path: Path,
                                                                               mapping: Path) -> None:
    """Two 5-day exports cut at 06:00, the newer ingested first: its first day lay beyond the window of 3
    and was not staged, so the older export's part of that day was thrown away (215 of 288 samples)."""
    frame = export(days=10.0)
    expected = reference(frame, tmp_path, mapping)
    files = cut(frame, [DAY1 + pd.Timedelta(days=4, hours=6)], tmp_path)
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    runs = ingest(lake, files[::-1], mapping)
    pd.testing.assert_frame_equal(raw(lake), expected, check_exact=True)
    assert runs[1].counts["days_pooled"] == 4 and not runs[1].counts["lake_days_kept"]


def test_the_quarantine_is_rewritten_in_batches_keeping_other_sources_rows(tmp_path: Path, mapping: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ingest and ETL rewrites the quarantine: the lake's rows are copied batch by batch (they were read whole,
    1.29 GB of memory for an ingest of 2,000 rows beside a quarantine of a million), in files of at most
    QUARANTINE_FILE_ROWS rows; the rows of the sources ingested again are replaced, the ETL's own redone."""
    import capacity_forecaster.stages.raw as raw_stage
    from capacity_forecaster.stages.etl import etl_stage

    monkeypatch.setattr(raw_stage, "QUARANTINE_FILE_ROWS", 10)
    frame = export(days=1.0)
    files = []
    for i in range(3):
        part = frame.iloc[i::3].copy()
        part.loc[part.index[:4 + i], "value"] = np.nan
        path = tmp_path / f"bad{i}.csv"
        write(part, path)
        text = path.read_text().replace(",\n", ",n/a\n")  # unreadable values, quarantined per source
        path.write_text(text)
        files.append(str(path))
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    ingest(lake, files, mapping)
    first = lake.read_table("quarantine")
    assert sorted(first["source"].str.rsplit(":", n=1).str[0].value_counts().tolist()) == [4, 5, 6]
    ingest(lake, files[:1], mapping)  # the same source again: its rows replaced, the others' kept
    again = lake.read_table("quarantine")
    key = ["source", "reason", "value"]
    rows = [sorted(map(tuple, table[key].astype(str).to_numpy())) for table in (again, first)]
    assert rows[0] == rows[1]
    # bad1's 5 rows and bad2's 6 (two files) are gathered into one file of 11 (>= 10), bad0's 4 new rows are another.
    assert len(lake.table_info("quarantine").files) == 2  # type: ignore[union-attr]
    etl_stage(lake, Settings())
    etl_stage(lake, Settings())  # the ETL's rows are redone, not added twice
    after = lake.read_table("quarantine")
    assert (after["stage"] == "ingest").sum() == len(first)
    assert after.duplicated().sum() == 0
