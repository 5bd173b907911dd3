"""capfc aws verify: Delta logs, files and vacuum of the lake's tables, on a local lake and on the moto S3 server."""

from __future__ import annotations

import datetime as dt
import posixpath
from pathlib import Path
from typing import Any

import pytest
from aws_helpers import IMAGE_URI, ROLE_ARN, write_small_lake

from capacity_forecaster.aws.sagemaker import JobSpec, check_chain, processing_job_request
from capacity_forecaster.aws.verify import verify_lake
from capacity_forecaster.errors import ConfigError
from capacity_forecaster.schema import table_spec
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.consistency import write_record


def verify_now(lake: Lake, **kwargs: Any) -> dict[str, Any]:
    """``verify_lake`` without retention or minimum age: every file no current version names is old enough."""
    return verify_lake(lake, retention_hours=0, min_age=dt.timedelta(0), **kwargs)


def _crash_a_write(lake: Lake, table: str) -> list[str]:
    """Leave the files of a write that never committed (as a crashed job does)."""
    writer = lake.writer(table)
    writer.write(lake.read_table(table))  # files written; commit() never happens
    return [posixpath.join(table_spec(table).path, f) for f in writer.files]


def lake_path(table: str) -> str:
    return table_spec(table).path


def _check(lake: Lake) -> None:
    assert verify_now(lake)["clean"]  # nothing to report on a freshly written lake
    old = lake.table_info("inventory")
    assert old is not None
    lake.write_table("inventory", lake.read_table("inventory"))  # the first version is now kept for time travel
    expired = [posixpath.join(lake_path("inventory"), f) for f in old.files]
    orphans = _crash_a_write(lake, "raw_metrics") + _crash_a_write(lake, "server_risk")
    # Within the retention (default: lake.retention_hours) everything is kept: recent, not unclean.
    kept = verify_lake(lake, delete=True)
    assert kept["clean"] and kept["orphans"] == kept["deleted"] == 0 and kept["retention_hours"] == 168
    assert kept["recent"] == len(orphans) + len(expired) and kept["tables"] == {}
    found = verify_now(lake)
    assert not found["clean"] and found["orphans"] == len(orphans) + len(expired) > 3 and found["deleted"] == 0
    assert sorted(f for t in found["tables"].values() for f in t["orphans"]) == sorted(orphans + expired)
    assert set(found["tables"]) == {"raw_metrics", "server_risk", "inventory"}
    risk = found["tables"]["server_risk"]
    assert risk["version"] == risk["latest"] == 1 and risk["files"] == 1 and len(risk["orphans"]) == 1
    assert risk["missing"] == [] and risk["problem"] is None
    # The minimum age protects a write in progress whatever the retention.
    young = verify_lake(lake, delete=True, retention_hours=0)
    assert young["deleted"] == 0 and young["recent"] == found["orphans"] and young["clean"]
    assert young["retention_hours"] == 1
    removed = verify_now(lake, delete=True)
    assert removed["deleted"] == found["orphans"] and removed["clean"]
    assert verify_now(lake) | {"lake": ""} == {
        "lake": "", "clean": True, "retention_hours": 0, "orphans": 0, "deleted": 0, "recent": 0, "missing": 0,
        "foreign": 0, "problems": 0, "tables": {}}
    assert not set(orphans + expired) & {f for t in ("raw_metrics", "server_risk", "inventory")
                                        for f in lake.list_files(lake_path(t))}
    assert len(lake.read_table("raw_metrics")) == 42 and len(lake.read_table("server_risk")) == 1
    assert len(lake.read_table("inventory")) == 1


def test_verify_local_lake(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    write_small_lake(lake)
    _check(lake)


def test_verify_s3_lake_on_moto(s3_lake: Lake) -> None:
    _check(s3_lake)


def test_missing_and_foreign_files_are_reported_never_deleted(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    write_small_lake(lake)
    info = lake.table_info("inventory")
    assert info is not None
    (tmp_path / "lake" / lake_path("inventory") / info.files[0]).unlink()
    (tmp_path / "lake" / lake_path("clusters") / "notes.csv").write_text("a,b\n")
    (tmp_path / "lake" / lake_path("clusters") / ".hidden").write_text("x")  # Delta skips it: so do we
    crashed = _crash_a_write(lake, "clusters")
    found = verify_now(lake, delete=True)
    assert not found["clean"] and found["missing"] == 1 and found["foreign"] == 1 and found["deleted"] == 0
    clusters = found["tables"]["clusters"]
    # The vacuum would remove the foreign file with the orphan: the table is not vacuumed at all.
    assert clusters["orphans"] == crashed and "foreign files too" in clusters["problem"]
    assert (tmp_path / "lake" / lake_path("clusters") / "notes.csv").exists()
    assert found["tables"]["inventory"]["missing"] == [posixpath.join(lake_path("inventory"), info.files[0])]


def test_unreadable_log_is_a_problem_of_that_table_only(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    write_small_lake(lake)
    log_dir = tmp_path / "lake" / lake_path("clusters") / "_delta_log"
    for entry in log_dir.glob("*.json"):
        entry.write_text("{not json")
    found = verify_now(Lake.open(str(tmp_path / "lake")))
    assert not found["clean"] and found["problems"] == 1 and list(found["tables"]) == ["clusters"]
    assert "Delta log cannot be read" in found["tables"]["clusters"]["problem"]


def test_files_capfc_still_reads_are_never_vacuumed(tmp_path: Path) -> None:
    """A run that committed a table but never completed: capfc keeps reading the previous version."""
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    write_small_lake(lake)
    frame = lake.read_table("clusters")
    lake.run = ("run-a", "risk")
    done = lake.write_table("clusters", frame)
    write_record(lake, "risk", "run-a", {"clusters": int(done.version)})
    lake.run = ("run-b", "risk")
    lake.write_table("clusters", frame)  # run-b crashes after this commit
    reader = Lake.open(str(tmp_path / "lake"), for_writing=True)
    found = verify_now(reader, delete=True)
    clusters = found["tables"]["clusters"]
    assert clusters["version"] == int(done.version) < clusters["latest"]
    # the vacuum keeps the version capfc reads, and its own commits do not make run-b's version current
    again = Lake.open(str(tmp_path / "lake"))
    assert again.table_info("clusters").version == done.version  # type: ignore[union-attr]
    assert len(again.read_table("clusters")) == 1


def test_verify_ends_the_chain_as_its_own_job() -> None:
    assert check_chain(("run", "verify")) == ("run", "verify")
    assert check_chain(("etl", "forecast", "verify")) == ("etl", "forecast", "verify")
    assert check_chain(("verify",)) == ("verify",)
    with pytest.raises(ConfigError, match="put it last"):
        check_chain(("verify", "run"))
    with pytest.raises(ConfigError, match="give it alone"):
        check_chain(("run", "etl", "verify"))
    spec = JobSpec(image_uri=IMAGE_URI, role_arn=ROLE_ARN, lake_uri="s3://bucket/capfc", stages=("run", "verify"))
    request = processing_job_request(spec, "verify", "capfc-verify-20260105-030000-abcd1234", spec.stages)
    assert request["AppSpecification"]["ContainerArguments"][:5] == [
        "aws", "verify", "--delete", "--lake", "s3://bucket/capfc"]
