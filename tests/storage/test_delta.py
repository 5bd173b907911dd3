"""Delta Lake tables: concurrent writers, stage-level consistency, time travel, migration of an old lake."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import socket
import subprocess
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.storage.test_lake import metrics_frame

from capacity_forecaster.config import LakeConfig, Settings
from capacity_forecaster.errors import StorageError
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.consistency import incomplete
from capacity_forecaster.storage.delta import ConflictError
from capacity_forecaster.storage.lease import LEASE_SECONDS, _process_space, running, sweep
from capacity_forecaster.storage.legacy import legacy_tables, migrate
from capacity_forecaster.storage.manifest import stage_run
from capacity_forecaster.storage.sql import SqlError, query


def _open(uri: str) -> Lake:
    return Lake.open(uri, LakeConfig(), for_writing=True)


def _settings(uri: str) -> Settings:
    return Settings.model_validate({"lake": {"uri": uri}})


def test_a_writer_based_on_a_replaced_version_fails_cleanly(lake_uri: str) -> None:
    first, second = _open(lake_uri), _open(lake_uri)
    first.write_table("raw_metrics", metrics_frame(days=10))
    assert len(first.read_table("raw_metrics")) == 30          # first reads version 1
    second.write_table("raw_metrics", metrics_frame(days=5))   # second replaces it: version 2
    with pytest.raises(ConflictError, match="changed by another writer.*run the command again"):
        first.write_table("raw_metrics", metrics_frame(days=20))
    back = _open(lake_uri).read_table("raw_metrics")
    assert len(back) == 15                                      # the second writer's rows, not lost
    # the refused write deleted its files: only the two committed versions' files remain
    files = [f for f in first.list_files("raw/metrics") if f.endswith(".parquet")]
    assert len(files) == 2                                      # versions 1 and 2; the refused one's is gone


def test_a_writer_that_read_nothing_still_conflicts_with_a_commit_after_it_started(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    a, b = _open(uri), _open(uri)
    a.write_table("inventory", pd.DataFrame({"server_id": ["x"]}), validate=False)
    writer = b.writer("inventory", validate=False)                             # based on version 1
    a.write_table("inventory", pd.DataFrame({"server_id": ["y"]}), validate=False)
    writer.write(pd.DataFrame({"server_id": ["z"]}))
    with pytest.raises(ConflictError):
        writer.commit()
    assert _open(uri).read_table("inventory")["server_id"].tolist() == ["y"]


def test_a_writer_that_found_no_table_conflicts_with_a_writer_that_created_it_since(tmp_path: Path) -> None:
    """Two first ingests into an empty lake: the one that read no table must not replace the other's rows."""
    uri = str(tmp_path / "lake")
    a, b = _open(uri), _open(uri)
    assert a.dataset("inventory") is None                                      # a reads: no table yet
    b.write_table("inventory", pd.DataFrame({"server_id": ["b"]}), validate=False)
    with pytest.raises(ConflictError, match="created by another writer|changed by another writer"):
        a.write_table("inventory", pd.DataFrame({"server_id": ["a"]}), validate=False)
    assert _open(uri).read_table("inventory")["server_id"].tolist() == ["b"]


def test_the_run_that_commits_first_and_completes_last_does_not_hide_the_other_runs_rows(tmp_path: Path) -> None:
    """Two ingests at once: a commits, b reads a's rows and commits after it, b completes, then a completes."""
    uri = str(tmp_path / "lake")
    settings = _settings(uri)
    a, b = _open(uri), _open(uri)
    with stage_run(a, "ingest", settings) as first:
        first.wrote(a.write_table("inventory", pd.DataFrame({"server_id": ["a"]}), validate=False))
        with stage_run(b, "ingest", settings) as second:
            rows = b.read_table("inventory")["server_id"].tolist()                # a's rows: no record yet
            second.wrote(b.write_table("inventory", pd.DataFrame({"server_id": [*rows, "b"]}), validate=False))
    assert _open(uri).read_table("inventory")["server_id"].tolist() == ["a", "b"]
    assert _open(uri).stage_records()["ingest"].tables["inventory"] == 2


def test_a_writer_is_refused_on_a_running_runs_commit_and_builds_on_a_dead_runs(tmp_path: Path) -> None:
    """A run's commit is work in progress while its lease lives: building on the older version would drop it."""
    uri = str(tmp_path / "lake")
    settings = _settings(uri)
    with stage_run(_open(uri), "ingest", settings) as run:
        run.wrote(_open(uri).write_table("inventory", pd.DataFrame({"server_id": ["old"]}), validate=False))
    a, b = _open(uri), _open(uri)
    with stage_run(a, "ingest", settings) as first:
        first.wrote(a.write_table("inventory", pd.DataFrame({"server_id": ["old", "a"]}), validate=False))
        with stage_run(b, "ingest", settings) as second:
            rows = b.read_table("inventory")["server_id"].tolist()
            assert rows == ["old"]                                             # a has not completed
            assert running(b, first.run_id) is not None
            with pytest.raises(ConflictError, match=f"newer version from run {first.run_id}.*has not completed"):
                second.wrote(b.write_table("inventory", pd.DataFrame({"server_id": [*rows, "b"]}), validate=False))
        blind = _open(uri)                                                     # a writer that never read it
        with stage_run(blind, "etl", settings), pytest.raises(ConflictError):
            blind.write_table("inventory", pd.DataFrame({"server_id": ["c"]}), validate=False)
    assert _open(uri).read_table("inventory")["server_id"].tolist() == ["old", "a"]
    # a run that died after its commit (its lease ended with it) is built on: the rerun is not refused
    with pytest.raises(RuntimeError), stage_run(a, "ingest", settings) as dead:
        dead.wrote(a.write_table("inventory", pd.DataFrame({"server_id": ["partial"]}), validate=False))
        raise RuntimeError("killed")
    assert running(b, dead.run_id) is None
    with stage_run(b, "ingest", settings) as rerun:
        rows = b.read_table("inventory")["server_id"].tolist()
        rerun.wrote(b.write_table("inventory", pd.DataFrame({"server_id": [*rows, "b"]}), validate=False))
    assert _open(uri).read_table("inventory")["server_id"].tolist() == ["old", "a", "b"]


def test_a_vacuum_after_the_record_is_not_a_run_in_progress(tmp_path: Path) -> None:
    """A completed run's vacuum commits come after its record: later writers build on them, unrefused."""
    uri = str(tmp_path / "lake")
    settings = Settings.model_validate({"lake": {"uri": uri, "retention_hours": 0}})
    for rows in (["a"], ["a", "b"]):
        lake = _open(uri)
        with stage_run(lake, "ingest", settings) as run:
            run.wrote(lake.write_table("inventory", pd.DataFrame({"server_id": rows}), validate=False))
    operations = [e["operation"] for e in _open(uri).history("inventory")]
    assert operations[0].startswith("VACUUM")                                  # the newest commits are a vacuum's
    # ... made while the run still held its lease (it is deleted after the vacuum)
    _open(uri).write_json(f"_active/{run.run_id}.json", {
        "run_id": run.run_id, "stage": "ingest", "host": "elsewhere", "pid": 1, "process_space": "elsewhere/x/1",
        "heartbeat": dt.datetime.now(dt.UTC).isoformat()})
    reader = _open(uri)
    with stage_run(reader, "ingest", settings) as run:
        rows = reader.read_table("inventory")["server_id"].tolist()
        run.wrote(reader.write_table("inventory", pd.DataFrame({"server_id": [*rows, "c"]}), validate=False))
    assert _open(uri).read_table("inventory")["server_id"].tolist() == ["a", "b", "c"]


def test_a_lease_ages_out_and_a_dead_process_on_this_host_holds_none(tmp_path: Path) -> None:
    lake = _open(str(tmp_path / "lake"))
    now = dt.datetime.now(dt.UTC)
    lease = {"run_id": "r1", "stage": "etl", "host": socket.gethostname(), "pid": os.getpid(),
             "process_space": _process_space(), "heartbeat": now.isoformat()}
    lake.write_json("_active/r1.json", lease)
    assert running(lake, "r1") is not None
    assert running(lake, "r1", now=now + dt.timedelta(seconds=LEASE_SECONDS + 1)) is None
    lake.write_json("_active/r1.json", {**lease, "pid": _dead_pid()})
    assert running(lake, "r1") is None
    lake.write_json("_active/r1.json", {**lease, "pid": _dead_pid(), "process_space": "algo-1/other-boot/4026531836"})
    assert running(lake, "r1") is not None          # another container with the same host name: its heartbeat tells
    assert sweep(lake) == 0
    old = (now - dt.timedelta(seconds=LEASE_SECONDS + 1)).isoformat()
    lake.write_json("_active/r1.json", {**lease, "heartbeat": old})
    assert sweep(lake) == 1 and lake.list_files("_active") == []               # a killed run's lease is swept
    assert running(lake, "never-leased") is None


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_tables_of_a_stage_that_did_not_complete_stay_invisible(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    lake = _open(uri)
    settings = _settings(uri)
    with stage_run(lake, "etl", settings) as run:
        run.wrote(lake.write_table("metrics", metrics_frame(days=10), validate=False))
        run.wrote(lake.write_table("quarantine", pd.DataFrame({"server_id": ["a"], "reason": ["x"]}), validate=False))
    complete = run.run_id
    with pytest.raises(RuntimeError, match="killed"), stage_run(lake, "etl", settings) as run:
        run.wrote(lake.write_table("metrics", metrics_frame(days=40), validate=False))
        assert len(lake.read_table("metrics")) == 120          # the running stage reads its own write
        raise RuntimeError("killed between two table commits")
    reader = _open(uri)
    assert len(reader.read_table("metrics")) == 30             # the complete run's version, with its sibling
    assert reader.table_info("metrics").version == "1"         # type: ignore[union-attr]
    assert reader.table_info("metrics").run_id == complete     # type: ignore[union-attr]  # not the killed run's
    assert query(reader, "SELECT count(*) AS n FROM metrics")["n"].iloc[0] == 30
    assert incomplete(reader, "metrics") is not None
    # the next complete run makes its versions visible, and is based on the newest commit (no conflict)
    with stage_run(reader, "etl", settings) as run:
        run.wrote(reader.write_table("metrics", metrics_frame(days=7), validate=False))
    assert len(_open(uri).read_table("metrics")) == 21
    assert incomplete(_open(uri), "metrics") is None


def test_a_first_run_that_died_between_its_commits_leaves_no_table_behind(tmp_path: Path) -> None:
    """helper-51: a first ingest that failed on a later table's commit left raw_metrics readable without its
    quarantine and inventory. Now a table that only dead, incomplete runs wrote reads as absent, and the rerun
    builds on its newest commit without a conflict."""
    uri = str(tmp_path / "lake")
    settings = _settings(uri)
    lake = _open(uri)
    with pytest.raises(RuntimeError, match="disk full"), stage_run(lake, "ingest", settings) as run:
        run.wrote(lake.write_table("raw_metrics", metrics_frame(days=10), validate=False))
        raise RuntimeError("disk full while committing the inventory")
    reader = _open(uri)
    assert not reader.has_table("raw_metrics") and incomplete(reader, "raw_metrics") == ("ingest", run.run_id)
    with pytest.raises(StorageError, match="table 'raw_metrics' not found"):
        reader.read_table("raw_metrics")
    with pytest.raises(StorageError, match=f"run {run.run_id} did not complete \\(failed\\): what it wrote was never "
                                           "published"):
        reader.read_table("raw_metrics", as_of=run.run_id)  # helper-55: time travel showed unpublished rows
    with stage_run(reader, "ingest", settings) as rerun:
        rerun.wrote(reader.write_table("raw_metrics", metrics_frame(days=4), validate=False))
    assert len(_open(uri).read_table("raw_metrics")) == 12


def test_time_travel_by_run_id_and_by_time(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    lake = _open(uri)
    settings = _settings(uri)
    with stage_run(lake, "forecast", settings) as old:
        old.wrote(lake.write_table("inventory", pd.DataFrame({"server_id": ["a", "b"]}), validate=False))
    then = lake.table_info("inventory").written_at  # type: ignore[union-attr]
    with stage_run(lake, "forecast", settings) as new:
        new.wrote(lake.write_table("inventory", pd.DataFrame({"server_id": ["c"]}), validate=False))
    assert lake.read_table("inventory")["server_id"].tolist() == ["c"]
    assert lake.read_table("inventory", as_of=old.run_id)["server_id"].tolist() == ["a", "b"]
    assert lake.read_table("inventory", as_of=then)["server_id"].tolist() == ["a", "b"]
    assert query(lake, "SELECT count(*) AS n FROM inventory", as_of=old.run_id)["n"].iloc[0] == 2
    with pytest.raises(StorageError, match="no run 'nosuchrun'"):
        lake.read_table("inventory", as_of="nosuchrun")
    with pytest.raises(StorageError, match="not found"):
        lake.read_table("inventory", as_of="2001-01-01T00:00")
    assert [h["run_id"] for h in lake.history("inventory")][:2] == [new.run_id, old.run_id]
    # helper-55: every `capfc sql --as-of RUN` failed on one vacuumed table, whichever tables it used.
    risk_runs = []
    for server in ("a", "b"):
        with stage_run(lake, "risk", settings) as run:
            run.wrote(lake.write_table("clusters", pd.DataFrame({"server_id": [server]}), validate=False))
        risk_runs.append(run)
    first = risk_runs[0]
    lake.vacuum("clusters", 0.0)
    assert query(lake, "SELECT count(*) AS n FROM inventory", as_of=first.run_id)["n"].iloc[0] == 1
    with pytest.raises(SqlError, match=r"clusters.*not readable as of .*table 'clusters' version \d+: its files were "
                                       r"vacuumed"):
        query(lake, "SELECT * FROM clusters", as_of=first.run_id)


def test_a_folder_scan_sees_old_versions_the_delta_reader_does_not(tmp_path: Path) -> None:
    lake = _open(str(tmp_path / "lake"))
    lake.write_table("raw_metrics", metrics_frame(days=10))
    lake.write_table("raw_metrics", metrics_frame(days=10))
    folder = lake.path("raw", "metrics")
    scanned = duckdb.sql(f"SELECT count(*) FROM read_parquet('{folder}/**/*.parquet')").fetchall()[0][0]
    assert scanned == 60            # why Athena must read it as a Delta table
    assert len(lake.read_table("raw_metrics")) == 30
    from deltalake import DeltaTable

    assert DeltaTable(folder).to_pyarrow_table().num_rows == 30  # any Delta reader agrees


def test_stored_types_are_ones_delta_and_athena_declare(tmp_path: Path) -> None:
    lake = _open(str(tmp_path / "lake"))
    frame = pd.DataFrame({"server_id": ["a", "b"], "target_server_id": [None, None],
                          "needed_by": pd.to_datetime(["2026-01-01 10:30", None]),
                          "count": pd.array([1, 2], dtype="uint8")})
    lake.write_table("inventory", frame, validate=False)
    from deltalake import DeltaTable

    schema = pa.schema(DeltaTable(lake.path("raw", "inventory")).schema().to_arrow())
    assert schema.field("target_server_id").type == pa.string()
    assert schema.field("needed_by").type == pa.timestamp("us", tz="UTC")
    assert schema.field("count").type == pa.int16()
    back = lake.read_table("inventory")
    assert back["needed_by"].iloc[0] == pd.Timestamp("2026-01-01 10:30")
    assert back["target_server_id"].isna().all()


def _legacy_table(root: Path, folder: str, table: pa.Table, partitioned: bool) -> None:
    base = root / folder
    files = []
    if partitioned:
        rel = "year=2024/month=12/part-old-0-0.parquet"
    else:
        rel = "part-old-0.parquet"
    (base / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, base / rel)
    files.append(rel)
    pointer = {"table": folder, "version": "old", "files": files, "rows": table.num_rows,
               "schema": base64.b64encode(table.schema.serialize().to_pybytes()).decode(), "written_at": "x"}
    (base / "_table.json").write_text(json.dumps(pointer))


def test_an_old_lake_is_refused_with_a_hint_then_migrated_with_row_counts_checked(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    metrics = pa.Table.from_pandas(metrics_frame(days=10, start="2024-12-01"), preserve_index=False)
    _legacy_table(root, "raw/metrics", metrics, partitioned=True)
    _legacy_table(root, "raw/inventory", pa.table({"server_id": ["srv-000"], "x": pa.array([None], pa.null())}),
                  partitioned=False)
    lake = _open(str(root))
    with pytest.raises(StorageError, match="pre-Delta layout .*capfc lake migrate"):
        lake.read_table("raw_metrics")
    assert sorted(legacy_tables(lake)) == ["inventory", "raw_metrics"]
    done = {m.table: m for m in migrate(lake)}
    assert done["raw_metrics"].rows_before == done["raw_metrics"].rows_after == 30
    assert done["inventory"].rows_after == 1
    fresh = _open(str(root))
    assert len(fresh.read_table("raw_metrics")) == 30
    assert not (root / "raw/metrics/_table.json").exists()
    assert not legacy_tables(fresh) and migrate(fresh) == []


def test_a_vacuum_neither_exposes_an_incomplete_run_nor_deletes_the_version_readers_use(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    lake = _open(uri)
    settings = _settings(uri)
    with stage_run(lake, "etl", settings) as run:
        run.wrote(lake.write_table("metrics", metrics_frame(days=10), validate=False))
    with pytest.raises(RuntimeError), stage_run(lake, "etl", settings) as run:
        lake.write_table("metrics", metrics_frame(days=40), validate=False)
        raise RuntimeError("killed")
    reader = _open(uri)
    removed = reader.vacuum("metrics", retention_hours=0, full=True)   # VACUUM commits carry no run id
    assert not any(f.endswith(".json") for f in removed)
    again = _open(uri)
    assert again.table_info("metrics").version == "1"                    # type: ignore[union-attr]
    assert len(again.read_table("metrics")) == 30                          # its files were kept


def test_the_newest_forecast_versions_survive_the_vacuum_for_accuracy_tracking(tmp_path: Path) -> None:
    uri = str(tmp_path / "lake")
    lake = _open(uri)
    settings = Settings.model_validate({"lake": {"uri": uri, "retention_hours": 0}, "report": {"accuracy_runs": 2}})
    runs = []
    for k in range(5):
        with stage_run(lake, "forecast", settings) as run:
            run.wrote(lake.write_table("inventory", pd.DataFrame({"server_id": [f"s{k}"]}), validate=False))
            run.wrote(lake.write_table("forecasts", pd.DataFrame({"server_id": [f"s{k}"], "ds": [pd.Timestamp(
                "2026-01-01")]}), validate=False))
        runs.append(run.run_id)
    # inventory keeps only what readers use; forecasts keep the last accuracy_runs + 1 versions
    assert lake.read_table("forecasts", as_of=runs[2])["server_id"].tolist() == ["s2"]
    with pytest.raises(StorageError):
        lake.read_table("forecasts", as_of=runs[1])
    with pytest.raises(StorageError):
        lake.read_table("inventory", as_of=runs[3])


def _commit_at_once(writer: object, barrier: object, outcomes: list[str]) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    try:
        writer.commit()  # type: ignore[attr-defined]
        outcomes.append("ok")
    except ConflictError:
        outcomes.append("conflict")


def test_racing_commits_on_one_version_one_wins_one_is_refused(lake_uri: str) -> None:
    """Two writers based on the same version commit at once, 5 times: on S3 the log entry is a
    conditional PUT (If-None-Match), so every version has exactly one author and no commit is lost."""
    import threading

    _open(lake_uri).write_table("inventory", pd.DataFrame({"server_id": ["base"]}), validate=False)
    wins = 0
    for round_ in range(5):
        writers = [_open(lake_uri).writer("inventory", validate=False) for _ in range(2)]
        for k, writer in enumerate(writers):
            writer.write(pd.DataFrame({"server_id": [f"r{round_}-w{k}"]}))
        outcomes: list[str] = []
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=_commit_at_once, args=(w, barrier, outcomes)) for w in writers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["conflict", "ok"], outcomes
        wins += 1
    lake = _open(lake_uri)
    writes = [h for h in lake.history("inventory") if h["operation"] == "WRITE"]
    assert len(writes) == 1 + wins                    # one commit per round, none overwritten
    assert lake.read_table("inventory")["server_id"].iloc[0].startswith("r4-")


def test_two_overwrites_of_the_empty_first_version_do_not_both_land(tmp_path: Path) -> None:
    """Based on version 0 (a table with no files), the second commit must fail, not keep both writers' rows."""
    lake = _open(str(tmp_path / "lake"))
    lake.write_table("inventory", pd.DataFrame({"server_id": ["a"]}), validate=False)  # creates v0, writes v1
    first, second = (_open(str(tmp_path / "lake")).writer("inventory", validate=False) for _ in range(2))
    first.base_version = second.base_version = 0
    first.write(pd.DataFrame({"server_id": ["x"]}))
    second.write(pd.DataFrame({"server_id": ["y"]}))
    with pytest.raises(ConflictError):
        first.commit()                       # version 1 is taken already
    with pytest.raises(ConflictError):
        second.commit()
    assert _open(str(tmp_path / "lake")).read_table("inventory")["server_id"].tolist() == ["a"]


def test_every_committed_file_carries_bounds_that_contain_its_rows(tmp_path: Path) -> None:
    """numRecords, nullCount, min/max per file: readers skip files by them, so a bound must never be too tight."""
    from deltalake import DeltaTable

    lake = _open(str(tmp_path / "lake"))
    frame = metrics_frame(days=40)
    frame.loc[3, "value"] = float("nan")                                   # stored as a null
    lake.write_table("raw_metrics", frame)
    actions = pa.table(DeltaTable(str(tmp_path / "lake" / "raw" / "metrics")).get_add_actions(flatten=True))
    assert actions.num_rows >= 2                                           # one file per month
    assert sum(actions.column("num_records").to_pylist()) == len(frame)
    names = actions.column_names
    assert "min.server_id" in names and "max.ds" in names and "null_count.value" in names
    for row in actions.to_pylist():
        month = frame[(frame["ds"].dt.year == int(row["partition.year"]))
                      & (frame["ds"].dt.month == int(row["partition.month"]))]
        assert row["num_records"] == len(month)
        assert row["min.server_id"] == month["server_id"].min() and row["max.server_id"] == month["server_id"].max()
        assert pd.Timestamp(row["min.ds"]).tz_localize(None) <= month["ds"].min()
        assert pd.Timestamp(row["max.ds"]).tz_localize(None) >= month["ds"].max()
        assert row["min.value"] == month["value"].min() and row["max.value"] == month["value"].max()
        assert row["null_count.value"] == month["value"].isna().sum()


def test_statistics_round_timestamps_outwards_and_leave_long_strings_unbounded() -> None:
    from capacity_forecaster.storage.delta import file_stats

    stamps = pa.array([pd.Timestamp("2024-01-01 00:00:00.0004", tz="UTC"),
                       pd.Timestamp("2024-01-02 00:00:00.0015", tz="UTC")], pa.timestamp("us", "UTC"))
    stats = json.loads(file_stats(pa.table({"t": stamps, "s": ["a", "b" * 40], "n": [1, None], "f": [0.5, 2.5],
                                            "nan": [0.5, float("nan")]})))
    assert stats["minValues"]["t"] == "2024-01-01T00:00:00.000Z"
    assert stats["maxValues"]["t"] == "2024-01-02T00:00:00.002Z"
    assert "s" not in stats["maxValues"] and "nan" not in stats["minValues"]  # no bound that could be too tight
    assert stats["nullCount"] == {"t": 0, "s": 0, "n": 1, "f": 0, "nan": 0}
    assert stats["minValues"]["n"] == 1 and stats["maxValues"]["f"] == 2.5 and stats["numRecords"] == 2


def test_a_stage_reads_each_input_at_one_version_while_another_run_completes(tmp_path: Path) -> None:
    """A stage reading an input in several passes (chunks) never mixes two runs of it."""
    uri = str(tmp_path / "lake")
    settings = _settings(uri)
    first = _open(uri)
    with stage_run(first, "ingest", settings) as run:
        run.wrote(first.write_table("raw_metrics", metrics_frame(days=10)))
    reader, other = _open(uri), _open(uri)
    with stage_run(reader, "etl", settings):
        assert len(reader.read_table("raw_metrics")) == 30                 # pass 1
        with stage_run(other, "ingest", settings) as run:                  # another run completes meanwhile
            run.wrote(other.write_table("raw_metrics", metrics_frame(days=5)))
        assert len(reader.read_table("raw_metrics")) == 30                 # pass 2: the same version
        reader.write_table("metrics", pd.DataFrame({"server_id": ["a"], "ds": [pd.Timestamp("2024-01-01")],
                                                    "metric": ["cpu"], "value": [1.0]}), validate=False)
        assert len(reader.read_table("metrics")) == 1                      # its own write, as written
    assert len(reader.read_table("raw_metrics")) == 15                     # after the stage: the newest run



def test_readers_never_see_a_run_that_has_not_completed_by_cached_records_or_time_travel(tmp_path: Path) -> None:
    """helper-57: a reader whose stage records predate a table's first run read a running second run's rows, and
    --as-of a time (or a run that did not write the table) resolved to a killed run's commit."""
    uri = str(tmp_path / "lake")
    settings = _settings(uri)
    reader = _open(uri)
    reader.stage_records()  # cached before the table's first run completes
    first, second = _open(uri), _open(uri)
    with stage_run(first, "ingest", settings) as run:
        run.wrote(first.write_table("raw_metrics", metrics_frame(days=10), validate=False))  # 30 rows, published
    with stage_run(second, "ingest", settings) as running_run:
        running_run.wrote(second.write_table("raw_metrics", metrics_frame(days=20), validate=False))  # not yet
        assert len(reader.read_table("raw_metrics")) == 30
    with pytest.raises(RuntimeError), stage_run(second, "ingest", settings) as dead:
        dead.wrote(second.write_table("raw_metrics", metrics_frame(days=30), validate=False))  # never published
        raise RuntimeError("killed")
    lake = _open(uri)
    with stage_run(lake, "risk", settings) as risk:
        risk.wrote(lake.write_table("clusters", pd.DataFrame({"server_id": ["a"]}), validate=False))
    assert len(lake.read_table("raw_metrics")) == 60  # the second run's, the last to complete
    now = dt.datetime.now(dt.UTC).isoformat()
    for when in (risk.run_id, now):
        assert query(_open(uri), "SELECT count(*) AS n FROM raw_metrics", as_of=when)["n"].iloc[0] == 60
