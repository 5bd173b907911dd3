"""The lake on a local folder and on S3 (moto server over HTTP): round trips, atomic replace, errors."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacity_forecaster.config import LakeConfig
from capacity_forecaster.errors import SchemaError, StorageError
from capacity_forecaster.storage import Lake


def metrics_frame(days: int = 70, servers: int = 3, start: str = "2024-12-15") -> pd.DataFrame:
    rng = np.random.default_rng(0)
    dates = pd.date_range(start, periods=days, freq="D")
    ids = [f"srv-{i:03d}" for i in range(servers)]
    frame = pd.DataFrame(
        {
            "server_id": np.repeat(ids, days),
            "ds": np.tile(dates.values, servers),
            "metric": "cpu",
            "value": rng.uniform(0, 100, days * servers),
        }
    )
    return frame


def test_partitioned_round_trip(lake: Lake) -> None:
    frame = metrics_frame()
    info = lake.write_table("raw_metrics", frame)
    assert info.rows == len(frame)
    files = lake.list_files("raw/metrics")
    assert any("year=2024/month=12/" in f for f in files)
    assert any("year=2025/month=02/" in f for f in files)
    back = lake.read_table("raw_metrics").sort_values(["server_id", "ds"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back, frame.sort_values(["server_id", "ds"]).reset_index(drop=True))
    assert back["ds"].dtype == "datetime64[ns]"


def test_rewrite_replaces_and_keeps_the_old_version_until_vacuum(lake: Lake) -> None:
    lake.write_table("raw_metrics", metrics_frame(days=70))
    first = lake.table_info("raw_metrics")
    lake.write_table("raw_metrics", metrics_frame(days=10, start="2025-03-01"))
    back = lake.read_table("raw_metrics")
    assert len(back) == 30
    assert first is not None
    assert len(lake.read_table("raw_metrics", as_of=first.written_at)) == 3 * 70
    removed = lake.vacuum("raw_metrics", retention_hours=0)
    assert removed and all("year=2025/month=03" not in f for f in removed)
    data_files = [f for f in lake.list_files("raw/metrics") if f.endswith(".parquet")]
    assert data_files and all("year=2025/month=03" in f for f in data_files), data_files
    assert len(lake.read_table("raw_metrics")) == 30


def test_crash_before_the_commit_keeps_previous_version(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    first = metrics_frame(days=20)
    lake.write_table("raw_metrics", first)

    def boom(*_args: object, **_kwargs: object) -> None:
        raise StorageError("simulated crash before the commit")

    monkeypatch.setattr(lake.delta, "commit", boom)
    with pytest.raises(StorageError, match="simulated crash"):
        lake.write_table("raw_metrics", metrics_frame(days=40, start="2023-01-01"))
    monkeypatch.undo()
    back = lake.read_table("raw_metrics")
    assert len(back) == len(first)
    assert back["ds"].min() == first["ds"].min()
    # the failed write removed its own files; a vacuum would remove any a killed writer left
    assert not any("year=2023" in f for f in lake.list_files("raw/metrics"))


def test_unpartitioned_table_and_filter(lake: Lake) -> None:
    inventory = pd.DataFrame(
        {
            "server_id": ["a", "b"], "hostname": ["h-a", "h-b"], "application": ["x", "y"],
            "business_unit": ["Payments", "Markets"], "environment": ["prod", "dev"],
            "datacenter": ["NYC1", "LON1"], "server_type": ["virtual", "physical"],
            "cpu_cores": [4, 32], "memory_gb": [16, 256], "monthly_cost_usd": [150.0, 2100.0],
        }
    )
    lake.write_table("inventory", inventory)
    import pyarrow.dataset as pads

    only_prod = lake.read_table("inventory", filter=pads.field("environment") == "prod")
    assert only_prod["server_id"].tolist() == ["a"]


def test_missing_columns_are_a_schema_error(lake: Lake) -> None:
    with pytest.raises(SchemaError, match="missing column"):
        lake.write_table("raw_metrics", pd.DataFrame({"server_id": ["a"], "value": [1.0]}))


def test_reading_an_unwritten_table_names_it_and_the_command_that_writes_it(lake: Lake) -> None:
    with pytest.raises(StorageError, match="table 'forecasts' not found.*; run capfc forecast first$"):
        lake.read_table("forecasts")
    with pytest.raises(StorageError, match="table 'metrics' not found.*; run capfc etl first$"):
        lake.read_table("metrics")


def test_empty_frame_round_trip(lake: Lake) -> None:
    empty = metrics_frame().iloc[0:0]
    lake.write_table("raw_metrics", empty)
    back = lake.read_table("raw_metrics")
    assert len(back) == 0
    assert list(back.columns) == ["server_id", "ds", "metric", "value"]


def test_s3_writes_request_server_side_encryption(s3_bucket: str, s3_endpoint: str) -> None:
    lake = Lake.open(f"s3://{s3_bucket}/enc", LakeConfig(), for_writing=True)
    lake.write_table("raw_metrics", metrics_frame(days=5))
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket, Prefix="enc/")["Contents"]]
    assert keys
    for key in keys:
        assert client.head_object(Bucket=s3_bucket, Key=key).get("ServerSideEncryption") == "AES256", key


def test_missing_bucket_is_one_clear_error(s3_endpoint: str) -> None:
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
        Lake.open("s3://no-such-bucket-here/x", LakeConfig(), for_writing=True)


def test_missing_credentials_are_one_clear_error(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StorageError, match="credentials"):
        Lake.open("s3://some-bucket/x", LakeConfig(), for_writing=True)


def test_delta_writes_take_the_bucket_region(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """helper-62: delta-rs (which follows no region redirect) took us-east-1 when the region came from the
    profile; it takes the bucket's own region now, below an explicit lake.s3_region."""
    name = f"eu-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="eu-west-1").create_bucket(
        Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    lake = Lake.open(f"s3://{name}/capfc", LakeConfig(), for_writing=True)
    assert lake.delta.options["AWS_REGION"] == "eu-west-1"
    lake.write_table("raw_metrics", pd.DataFrame({"server_id": "s1", "ds": pd.date_range("2025-01-01", periods=3),
                                                  "metric": "cpu", "value": [1.0, 2.0, 3.0]}))
    assert len(lake.read_table("raw_metrics")) == 3
    pinned = Lake.open(f"s3://{name}/capfc", LakeConfig(s3_region="eu-central-1"))
    assert pinned.delta.options["AWS_REGION"] == "eu-central-1"


def test_delta_writes_take_refreshed_credentials(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """helper-62: delta-rs kept the keys of the moment the lake was opened; a job role's or SSO's temporary
    keys expire under a long capfc run while s3fs renews its own."""
    import botocore.credentials
    import botocore.session

    issued = iter(range(1, 100))

    def refresh() -> dict[str, str]:
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)  # inside botocore's refresh window
        return {"access_key": f"TEMPKEY{next(issued):04d}", "secret_key": "testing", "token": "t",
                "expiry_time": expiry.isoformat()}

    creds = botocore.credentials.RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: creds)
    lake = Lake.open(f"s3://{s3_bucket}/capfc", LakeConfig(), for_writing=True)
    first = lake.delta.options["AWS_ACCESS_KEY_ID"]
    assert lake.delta.options["AWS_ACCESS_KEY_ID"] != first
    assert lake.delta.options["AWS_SESSION_TOKEN"] == "t"
    lake.write_table("raw_metrics", pd.DataFrame({"server_id": "s1", "ds": pd.date_range("2025-01-01", periods=2),
                                                  "metric": "cpu", "value": [1.0, 2.0]}))
    assert len(lake.read_table("raw_metrics")) == 2


def test_credentials_that_cannot_be_renewed_are_one_clear_error(s3_bucket: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """helper-65: a renewal failing at a commit (an SSO session that expired mid-run) was a botocore traceback."""
    import botocore.credentials
    import botocore.exceptions
    import botocore.session

    calls = iter(range(100))

    def refresh() -> dict[str, str]:
        if next(calls) >= 1:
            raise botocore.exceptions.TokenRetrievalError(provider="sso", error_msg="The SSO session has expired")
        expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
        return {"access_key": "TEMPKEY", "secret_key": "testing", "token": "t", "expiry_time": expiry.isoformat()}

    creds = botocore.credentials.RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: creds)
    lake = Lake.open(f"s3://{s3_bucket}/capfc", LakeConfig(), for_writing=True)
    with pytest.raises(StorageError, match="could not be renewed .*TokenRetrievalError.*aws sso login"):
        lake.write_table("raw_metrics", pd.DataFrame({"server_id": "s1", "ds": pd.date_range("2025-01-01", periods=2),
                                                      "metric": "cpu", "value": [1.0, 2.0]}))


def test_delta_errors_keep_their_cause() -> None:
    """helper-62: only delta-rs's first line was kept ("Kernel error -> Generic S3 error"), not its cause."""
    from capacity_forecaster.storage.delta import _detail

    err = RuntimeError("Kernel error -> Generic S3 error\n\x1b[2m↳\x1b[0m Received redirect without LOCATION, "
                       "this normally indicates an incorrectly configured region")
    assert _detail(err) == ("Kernel error -> Generic S3 error (Received redirect without LOCATION, this normally "
                            "indicates an incorrectly configured region)")
    assert _detail(RuntimeError("one line")) == "one line"


def test_unwritable_local_folder_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError, match="cannot create folder"):
        Lake.open(str(blocker / "lake"), LakeConfig(), for_writing=True)


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="unsupported scheme 'gs://'"):
        Lake.open("gs://bucket/x")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    days=st.lists(st.dates(min_value=dt.date(1999, 1, 1), max_value=dt.date(2040, 12, 31)),
                  min_size=0, max_size=40),
    values=st.one_of(st.just(float("nan")), st.floats(min_value=0, max_value=100)),
)
def test_partition_round_trip_property(tmp_path_factory: pytest.TempPathFactory,
                                       days: list[dt.date], values: float) -> None:
    lake = Lake.open(str(tmp_path_factory.mktemp("lake")), for_writing=True)
    frame = pd.DataFrame(
        {"server_id": [f"s{i % 3}" for i in range(len(days))], "ds": pd.to_datetime(days),
         "metric": "memory", "value": [values] * len(days)}
    ).astype({"ds": "datetime64[ns]", "value": "float64", "server_id": "object", "metric": "object"})
    lake.write_table("raw_metrics", frame)
    back = lake.read_table("raw_metrics")
    key = ["server_id", "ds", "value"]
    pd.testing.assert_frame_equal(
        back.sort_values(key).reset_index(drop=True), frame.sort_values(key).reset_index(drop=True)
    )


def test_categorical_columns_come_back_as_strings(lake: Lake) -> None:
    frame = metrics_frame(days=5)
    lake.write_table("raw_metrics", frame.astype({"server_id": "category", "metric": "category"}))
    back = lake.read_table("raw_metrics")
    assert back["server_id"].dtype == object and back["metric"].dtype == object
    assert sorted(back["server_id"].unique()) == sorted(frame["server_id"].unique())


def test_batched_writer_publishes_only_on_commit(lake: Lake) -> None:
    lake.write_table("raw_metrics", metrics_frame(days=3))
    writer = lake.writer("raw_metrics")
    writer.write(metrics_frame(days=10, servers=2))
    writer.write(metrics_frame(days=10, servers=1, start="2026-01-01").assign(server_id="other"))
    assert len(lake.read_table("raw_metrics")) == 9  # the old version until commit
    info = writer.commit()
    assert info.rows == 30
    back = lake.read_table("raw_metrics")
    assert len(back) == 30 and set(back["server_id"]) == {"srv-000", "srv-001", "other"}


def test_batched_writer_skips_untyped_empty_batches(lake: Lake) -> None:
    import pandas as pd

    columns = ["server_id", "ds", "metric", "value", "source", "reason", "stage"]
    writer = lake.writer("quarantine")
    writer.write(pd.DataFrame(columns=columns))  # object columns of an empty frame: Arrow nulls
    writer.write(pd.DataFrame([["a", "2024-01-01", "cpu", "-5", "raw_metrics", "out_of_range", "etl"]],
                              columns=columns))
    assert writer.commit().rows == 1
    empty_only = lake.writer("quarantine")
    empty_only.write(pd.DataFrame(columns=columns))
    assert empty_only.commit().rows == 0
    assert len(lake.read_table("quarantine")) == 0


def test_a_date_outside_the_nanosecond_range_does_not_fail_the_read(tmp_path: Path) -> None:
    """A year-9999 typo in a raw table stays readable (the ETL quarantines it; sql and the dashboard still work)."""
    import pyarrow as pa

    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    table = pa.table({"server_id": ["a", "a"], "ds": pa.array([dt.date(2025, 1, 1), dt.date(9999, 12, 31)]),
                      "metric": ["cpu", "cpu"], "value": [1.0, 2.0]})
    lake.write_table("raw_metrics", table)
    frame = lake.read_table("raw_metrics")
    assert len(frame) == 2 and frame["ds"].max().year == 9999


def test_an_infinite_float_is_refused_before_it_reaches_the_delta_log(tmp_path: Path) -> None:
    """helper-51: Infinity in a column's statistics made the table's log unreadable for every later command."""
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    good = pd.DataFrame({"server_id": ["a"], "metric": ["cpu"], "risk_level": ["low"], "peak_yhat": [1.0],
                         "peak_ds": [pd.Timestamp("2024-01-01")], "breach_ds": [pd.NaT], "days_to_breach": [np.nan],
                         "breach_probability": [0.1]})
    lake.write_table("server_risk", good)
    with pytest.raises(StorageError, match="table 'server_risk': column 'peak_yhat' holds 1 infinite value"):
        lake.write_table("server_risk", good.assign(peak_yhat=np.inf))
    assert lake.read_table("server_risk")["peak_yhat"].tolist() == [1.0]


def test_json_files_are_strict_json(tmp_path: Path) -> None:
    """helper-51: an ETL manifest held a bare NaN ("imputation_mae_knn": NaN), which strict parsers refuse."""
    import json

    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    lake.write_json("x.json", {"a": float("nan"), "b": [np.float64("inf"), 1.5], "c": {"d": np.float32("nan")}})
    text = (tmp_path / "lake" / "x.json").read_text()
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict {name}")) == {
        "a": None, "b": [None, 1.5], "c": {"d": None}}


@pytest.mark.parametrize("name", ["lake#1", "lake?", "lake%201"])
def test_a_lake_folder_with_url_syntax_in_its_path_is_refused(tmp_path: Path, name: str) -> None:
    """helper-51: a lake in 'lake#1' lost its own commits ('not in the table's log'); 'lake%201' read 'lake 1'."""
    with pytest.raises(StorageError, match="which the table logs read as URL syntax; choose a folder without them"):
        Lake.open(str(tmp_path / name), for_writing=True)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("role", ["lake", "source"])
def test_missing_credentials_name_what_the_s3_uri_is(monkeypatch: pytest.MonkeyPatch, role: str) -> None:
    """helper-51: an s3:// export read into a local lake said 'no AWS credentials found for the s3:// lake'."""
    import botocore.session

    from capacity_forecaster.storage.filesystem import resolve

    monkeypatch.setattr(botocore.session.Session, "get_credentials", lambda self: None)
    with pytest.raises(StorageError, match=f"no AWS credentials found for the s3:// {role};"):
        resolve("s3://some-bucket/export.csv", role=role)
