"""capfc aws verify: lake folders vs their pointers, on a local lake and on the moto S3 server."""

from __future__ import annotations

import datetime as dt
import posixpath
from pathlib import Path

import pytest
from aws_helpers import IMAGE_URI, ROLE_ARN, write_small_lake

from capacity_forecaster.aws.sagemaker import JobSpec, check_chain, processing_job_request
from capacity_forecaster.aws.verify import verify_lake
from capacity_forecaster.errors import ConfigError
from capacity_forecaster.schema import table_spec
from capacity_forecaster.storage import Lake

LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)  # every file written now is two hours old by then


def _crash_a_write(lake: Lake, table: str) -> list[str]:
    """Leave the files of a write that never reached its pointer swap (as a crashed job does)."""
    writer = lake.writer(table)
    writer.write(lake.read_table(table))  # files written; commit() (the pointer swap) never happens
    return [posixpath.join(table_spec(table).path, f) for f in writer.files]


def lake_path(table: str) -> str:
    return table_spec(table).path


def _check(lake: Lake) -> None:
    assert verify_lake(lake, now=LATER)["clean"]  # nothing to report on a freshly written lake
    orphans = _crash_a_write(lake, "raw_metrics") + _crash_a_write(lake, "server_risk")
    found = verify_lake(lake, now=LATER)
    assert not found["clean"] and found["orphans"] == len(orphans) > 2 and found["deleted"] == 0
    assert sorted(f for t in found["tables"].values() for f in t["orphans"]) == sorted(orphans)
    assert set(found["tables"]) == {"raw_metrics", "server_risk"}
    risk = found["tables"]["server_risk"]
    assert risk["pointer"] and risk["files"] == 1 and len(risk["orphans"]) == 1 and risk["missing"] == []
    # Orphans younger than the minimum age may be a write in progress: reported, kept, not "unclean".
    young = verify_lake(lake, delete=True)
    assert young["deleted"] == 0 and young["recent"] == found["orphans"] and young["clean"]
    removed = verify_lake(lake, delete=True, now=LATER)
    assert removed["deleted"] == found["orphans"] and removed["clean"]
    assert verify_lake(lake, now=LATER) | {"lake": ""} == {"lake": "", "clean": True, "orphans": 0, "deleted": 0,
                                                          "recent": 0, "missing": 0, "foreign": 0, "tables": {}}
    assert not any(lake.list_files(p.rsplit("/", 1)[0]).count(p) for p in orphans)
    assert len(lake.read_table("raw_metrics")) == 42 and len(lake.read_table("server_risk")) == 1


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
    (tmp_path / "lake" / lake_path("clusters") / ".hidden").write_text("x")  # Athena skips it: so do we
    found = verify_lake(lake, delete=True, now=LATER)
    assert not found["clean"] and found["missing"] == 1 and found["foreign"] == 1 and found["deleted"] == 0
    assert (tmp_path / "lake" / lake_path("clusters") / "notes.csv").exists()


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
