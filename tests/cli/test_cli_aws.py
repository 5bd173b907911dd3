"""``capfc aws ...``: DDL, Glue, SageMaker submit/status, schedule, QuickSight, Lambda zip; bad input exits 2."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.cli import main
from capacity_forecaster.storage import Lake

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/capfc:1.0"
ROLE = "arn:aws:iam::123456789012:role/capfc-sagemaker"


def _write(lake: Lake) -> None:
    days = pd.date_range("2025-12-20", periods=20)
    lake.write_table("raw_metrics", pd.DataFrame({"server_id": "srv-1", "ds": days, "metric": "cpu",
                                                  "value": np.arange(20.0)}))
    lake.write_table("clusters", pd.DataFrame({"server_id": ["srv-1"], "cluster_id": [1], "cluster_label": ["idle"]}))


@pytest.fixture()
def local_lake(tmp_path: Path) -> str:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    _write(lake)
    return lake.uri


@pytest.fixture()
def s3_lake(s3_bucket: str) -> str:
    lake = Lake.open(f"s3://{s3_bucket}/capfc", for_writing=True)
    _write(lake)
    return lake.uri


def test_athena_ddl_prints_statements(local_lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["aws", "athena-ddl", "--lake", local_lake, "--s3-uri", "s3://my-bucket/capfc", "--database",
                 "capfc_prod", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("CREATE DATABASE IF NOT EXISTS `capfc_prod`;")
    assert "`capfc_prod`.`raw_metrics`" in out and "LOCATION 's3://my-bucket/capfc/risk/clusters/'" in out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--database", "Capfc-Prod"], "key 'aws.glue_database' = 'Capfc-Prod'"),
        (["--database", "capfc_prod"], "Athena reads only S3"),
        (["--database", "capfc", "--s3-uri", "s3://bucket/it's"], "S3 URI"),
    ],
)
def test_bad_aws_input_exits_2_with_one_line(local_lake: str, args: list[str], expected: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "athena-ddl", "--lake", local_lake, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("capfc: error: ") and err.count("\n") == 1 and expected in err


def test_bad_database_from_the_environment_names_the_variable(local_lake: str, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CAPFC_AWS__GLUE_DATABASE", "drop table")
    assert main(["aws", "glue", "--lake", local_lake]) == 2
    err = capsys.readouterr().err
    assert "CAPFC_AWS__GLUE_DATABASE" in err and "lowercase letters, digits and underscores" in err


def test_glue_registers_the_lake(s3_lake: str, s3_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "glue", "--lake", s3_lake, "--database", "capfc_cli", "--region", "us-east-1"]) == 0
    assert "glue database capfc_cli" in capsys.readouterr().out
    glue = boto3.client("glue", endpoint_url=s3_endpoint, region_name="us-east-1")
    assert {t["Name"] for t in glue.get_tables(DatabaseName="capfc_cli")["TableList"]} == {"raw_metrics", "clusters"}


def test_submit_and_status(s3_lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "submit", "forecast", "--lake", s3_lake, "--image-uri", IMAGE, "--role-arn", ROLE,
                 "--quiet"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["submitted"] and job["stage"] == "forecast"
    assert main(["aws", "status", job["job_name"], "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["job_name"] == job["job_name"]


def test_submit_without_image_says_which_key(s3_lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "submit", "etl", "--lake", s3_lake, "--role-arn", ROLE]) == 2
    assert "aws.image_uri is not set" in capsys.readouterr().err


def test_submit_unknown_stage(s3_lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "submit", "train", "--lake", s3_lake, "--image-uri", IMAGE, "--role-arn", ROLE]) == 2
    assert "unknown stage(s) train" in capsys.readouterr().err


def test_schedule_needs_a_valid_lambda_arn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "schedule", "--lake", str(tmp_path)]) == 2
    assert "aws.lambda_arn is not set" in capsys.readouterr().err
    assert main(["aws", "schedule", "--lake", str(tmp_path), "--lambda-arn", "capfc-scheduler"]) == 2
    assert "aws.lambda_arn" in capsys.readouterr().err
    assert main(["aws", "schedule", "--lake", str(tmp_path), "--schedule", "daily",
                 "--lambda-arn", "arn:aws:lambda:us-east-1:123456789012:function:capfc-scheduler"]) == 2
    assert "aws.schedule_expression" in capsys.readouterr().err


def test_no_region_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    """helper-62: botocore's NoRegionError was a traceback and exit 1."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert main(["aws", "status", "capfc-run-1", "--lake", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no AWS region" in err and "AWS_REGION" in err and "Traceback" not in err


def test_quicksight_data_source(s3_lake: str, s3_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "quicksight", "--lake", s3_lake, "--datasets", "clusters", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["data_source"] in ("created", "updated") and result["data_sets"] == {"clusters": "created"}


def test_quicksight_failed_data_set_exits_2_after_the_others(s3_lake: str, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # 118 + "-clusters" fits QuickSight's 128-character data set id; 118 + "-raw_metrics" does not.
    monkeypatch.setenv("CAPFC_AWS__QUICKSIGHT_DATA_SOURCE_ID", "capfc-" + "x" * 112)
    assert main(["aws", "quicksight", "--lake", s3_lake, "--datasets", "raw_metrics,clusters", "--quiet"]) == 2
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["data_sets"] == {"clusters": "created"} and list(result["failed"]) == ["raw_metrics"]
    assert "1 QuickSight data set(s) failed: raw_metrics" in captured.err


@pytest.mark.parametrize("where", ["local", "s3"])
def test_verify_flags_then_vacuums_orphans(where: str, local_lake: str, s3_lake: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    uri = local_lake if where == "local" else s3_lake
    lake = Lake.open(uri, for_writing=True)
    writer = lake.writer("clusters")
    writer.write(lake.read_table("clusters"))  # a crashed write: files, no commit
    assert main(["aws", "verify", "--lake", uri, "--quiet"]) == 0  # younger than lake.retention_hours: kept
    result = json.loads(capsys.readouterr().out)
    assert result["recent"] == 1 and result["orphans"] == 0 and result["retention_hours"] == 168
    now = ["--retention-hours", "0", "--min-age-minutes", "0"]
    assert main(["aws", "verify", "--lake", uri, *now, "--quiet"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["orphans"] == 1 and "re-run with --delete" in captured.err
    assert main(["aws", "verify", "--lake", uri, *now, "--delete", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["deleted"] == 1
    assert main(["aws", "verify", "--lake", uri, *now, "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["clean"] is True
    assert len(Lake.open(uri).read_table("clusters")) == 1


def test_verify_reregisters_a_new_column_in_glue(s3_lake: str, s3_endpoint: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The chain's last step (capfc aws verify --delete --glue-database ...) makes Glue follow the Delta schema."""
    glue = boto3.client("glue", endpoint_url=s3_endpoint, region_name="us-east-1")
    args = ["aws", "verify", "--lake", s3_lake, "--glue-database", "capfc_chain", "--region", "us-east-1", "--quiet"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["glue"] == {"database": "capfc_chain",
                                                           "created": ["raw_metrics", "clusters"], "updated": []}
    lake = Lake.open(s3_lake, for_writing=True)
    lake.write_table("clusters", lake.read_table("clusters").assign(rack=["r1"]))  # a stage adds a column
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["glue"]["updated"] == ["raw_metrics", "clusters"]
    columns = glue.get_table(DatabaseName="capfc_chain", Name="clusters")["Table"]["StorageDescriptor"]["Columns"]
    assert columns[-1] == {"Name": "rack", "Type": "string"}


def test_athena_ddl_is_delta_only(local_lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "athena-ddl", "--lake", local_lake, "--s3-uri", "s3://my-bucket/capfc", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("TBLPROPERTIES ('table_type'='DELTA');") == 2 and "PARTITIONED BY" not in out


def test_lambda_zip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "build" / "capfc-lambda.zip"
    assert main(["aws", "lambda-zip", str(target)]) == 0
    assert "capacity_forecaster/aws/lambda_handler.py" in zipfile.ZipFile(target).namelist()
    assert "capacity_forecaster.aws.lambda_handler.handler" in capsys.readouterr().out


def test_aws_help_lists_the_commands() -> None:
    proc = subprocess.run([sys.executable, "-m", "capacity_forecaster.cli", "aws", "--help"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0
    for command in ("athena-ddl", "glue", "submit", "status", "schedule", "quicksight", "verify", "lambda-zip"):
        assert command in proc.stdout


def test_submit_forecast_as_training_job_and_status(s3_lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["aws", "submit", "forecast", "--training", "--lake", s3_lake, "--image-uri", IMAGE,
                 "--role-arn", ROLE]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["kind"] == "training" and job["submitted"]
    assert main(["aws", "status", job["job_name"]]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "training"
    assert main(["aws", "submit", "risk", "--training", "--lake", s3_lake, "--image-uri", IMAGE,
                 "--role-arn", ROLE]) == 2
    assert "only the forecast stage" in capsys.readouterr().err


def test_forecast_import_writes_parquet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    data = Path(__file__).parents[1] / "aws" / "data" / "amazon_forecast_export"
    for file in data.glob("*.csv"):
        lake.write_bytes(f"_amazon_forecast/output/capfc_export_20260105/{file.name}", file.read_bytes())
    assert main(["aws", "forecast-import", "--run", "20260105", "--lake", lake.uri]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == 7
