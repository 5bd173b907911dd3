"""Amazon Forecast: the export files on an S3 lake, valid requests, the resumable run (Stubber), the import."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path
from typing import Any

import boto3
import pandas as pd
import pytest
from aws_helpers import ACCOUNT, FixedSession
from botocore.stub import Stubber
from botocore_model import model_problems

from capacity_forecaster.aws import amazon_forecast as af
from capacity_forecaster.aws.clients import AwsClients
from capacity_forecaster.errors import AwsError, ConfigError, SchemaError
from capacity_forecaster.storage import Lake

DATA = Path(__file__).parent / "data" / "amazon_forecast_export"
FORECAST_ROLE = f"arn:aws:iam::{ACCOUNT}:role/capfc-forecast"
RUN = af.ForecastRun(lake_uri="s3://acme-capfc-lake/capfc", role_arn=FORECAST_ROLE, account_id=ACCOUNT,
                     region="us-east-1", horizon=90, tags=(("project", "aws-capacity-forecaster"),))
NAMES = af.ForecastNames.build("capfc-prod", "20260105")


def test_target_and_metadata_frames() -> None:
    metrics = pd.DataFrame({"server_id": ["srv-1", "srv-1", "srv-2"], "metric": ["cpu", "cpu", "memory"],
                            "ds": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-01"]),
                            "value": [10.0, None, 30.5]})
    target = af.target_frame(metrics)
    assert target.to_dict("list") == {"item_id": ["srv-1|cpu", "srv-2|memory"],
                                      "timestamp": ["2026-01-01", "2026-01-01"], "target_value": [10.0, 30.5]}
    inventory = pd.DataFrame({"server_id": ["srv-1"], "application": ["web"], "cpu_cores": [8]})
    meta = af.metadata_frame(inventory, target["item_id"])
    assert meta.loc[0, ["item_id", "metric", "application", "cpu_cores"]].tolist() == ["srv-1|cpu", "cpu", "web", "8"]
    assert meta.loc[1, "application"] == "unknown"  # srv-2 is not in the inventory


def test_export_writes_csv_through_the_lake(s3_lake: Lake) -> None:
    days = pd.date_range("2026-01-01", periods=3)
    s3_lake.write_table("metrics", pd.DataFrame({
        "server_id": "srv-001", "ds": days, "metric": "cpu", "value": [1.0, 2.0, 3.0], "value_raw": [1.0, 2.0, 3.0],
        "is_imputed": False, "is_outlier": False, "is_anomaly": False, "anomaly_score": 0.0, "is_saturated": False}))
    result = af.export_lake(s3_lake)
    assert result["rows"] == 3 and result["items"] == 1
    assert result["target_uri"] == s3_lake.display("_amazon_forecast/input/target_time_series.csv")
    body = s3_lake.read_bytes("_amazon_forecast/input/target_time_series.csv") or b""
    assert body.decode().splitlines()[0] == "srv-001|cpu,2026-01-01,1.0"  # no header: the schema gives the order
    meta = (s3_lake.read_bytes("_amazon_forecast/input/item_metadata.csv") or b"").decode()
    assert meta.startswith("srv-001|cpu,cpu,app,bu,prod,dc1,vm,8,32")


def test_requests_are_valid_under_the_service_model() -> None:
    for _kind, arn, operation, request in af.steps(RUN, NAMES):
        assert model_problems("forecast", operation, request) == [], operation
        assert arn.startswith(f"arn:aws:forecast:us-east-1:{ACCOUNT}:")
    predictor = af.steps(RUN, NAMES)[5][3]
    assert predictor["ForecastTypes"] == ["0.1", "0.5", "0.9"] and predictor["ForecastHorizon"] == 90
    group = af.steps(RUN, NAMES)[2][3]
    assert group["Domain"] == "CUSTOM" and len(group["DatasetArns"]) == 2
    # botocore's model pattern for RoleArn (arn:...:forecast:...) would refuse every IAM role: see PATTERN_ERRATA.
    bad = af.forecast_export_job_request("x", "arn:aws:forecast:us-east-1:1:forecast/f", "s3://b/p", "role", {})
    assert any("RoleArn" in p for p in model_problems("forecast", "CreateForecastExportJob", bad))


def test_names_and_horizon_are_checked() -> None:
    assert NAMES.group == "capfc_prod" and NAMES.export == "capfc_prod_export_20260105"
    assert af.ForecastNames.build("9lives", "r1").group == "capfc_9lives"
    with pytest.raises(ConfigError, match="Amazon Forecast"):
        af.ForecastNames.build("capfc", "2026-01-05")
    with pytest.raises(ConfigError, match="at most 500 steps"):
        af.auto_predictor_request("p", "arn:aws:forecast:us-east-1:1:dataset-group/g", 730, "D", {})


def _client() -> tuple[Any, Stubber]:
    client = boto3.client("forecast", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_advance_creates_the_first_missing_resource_then_waits_then_finishes() -> None:
    client, stub = _client()
    plan = af.steps(RUN, NAMES)
    stub.add_response("describe_dataset", {"DatasetArn": plan[0][1], "Status": "ACTIVE"}, {"DatasetArn": plan[0][1]})
    stub.add_client_error("describe_dataset", "ResourceNotFoundException", "No dataset", 400,
                          expected_params={"DatasetArn": plan[1][1]})
    stub.add_response("create_dataset", {"DatasetArn": plan[1][1]}, plan[1][3])
    with stub:
        created = af.advance(RUN, NAMES, AwsClients(session=FixedSession(client)))
    assert created == {"state": "created", "step": "dataset", "name": NAMES.metadata_dataset, "arn": plan[1][1],
                       "status": "CREATE_PENDING"}
    client, stub = _client()
    for kind, arn, _op, _request in plan[:5]:
        key = {"dataset": "DatasetArn", "dataset_group": "DatasetGroupArn",
               "dataset_import_job": "DatasetImportJobArn"}[kind]
        stub.add_response(f"describe_{kind}", {key: arn, "Status": "ACTIVE"}, {key: arn})
    stub.add_response("describe_auto_predictor", {"PredictorArn": plan[5][1], "Status": "CREATE_IN_PROGRESS"},
                      {"PredictorArn": plan[5][1]})
    with stub:
        waiting = af.advance(RUN, NAMES, AwsClients(session=FixedSession(client)))
    assert waiting["state"] == "in-progress" and waiting["step"] == "auto_predictor"
    client, stub = _client()
    for kind, arn, _op, _request in plan:
        key = f"{af._pascal(kind)}Arn"
        stub.add_response(f"describe_{kind}", {key: arn, "Status": "ACTIVE"}, {key: arn})
    with stub:
        done = af.advance(RUN, NAMES, AwsClients(session=FixedSession(client)))
    assert done["state"] == "done"
    assert done["output_uri"].endswith("/_amazon_forecast/output/capfc_prod_export_20260105/")


def test_a_failed_resource_is_one_error_with_forecasts_message() -> None:
    client, stub = _client()
    arn = af.steps(RUN, NAMES)[0][1]
    stub.add_response("describe_dataset", {"DatasetArn": arn, "Status": "CREATE_FAILED"}, {"DatasetArn": arn})
    with stub, pytest.raises(AwsError, match="dataset capfc_prod_metrics is CREATE_FAILED"):
        af.advance(RUN, NAMES, AwsClients(session=FixedSession(client)))


def test_moto_dataset_group_accepts_the_request(clients: AwsClients) -> None:
    request = af.dataset_group_request("capfc_moto", [], {"project": "x"})
    arn = clients.client("forecast").create_dataset_group(**request)["DatasetGroupArn"]
    assert clients.client("forecast").describe_dataset_group(DatasetGroupArn=arn)["DatasetGroupName"] == "capfc_moto"


def test_forecast_rows_from_the_recorded_export() -> None:
    export = pd.concat([pd.read_csv(f) for f in sorted(DATA.glob("*.csv"))], ignore_index=True)
    rows = af.forecast_rows(export)
    assert list(rows.columns) == ["server_id", "metric", "ds", "model", "yhat", "yhat_lower", "yhat_upper",
                                  "interval"]
    assert len(rows) == 7 and set(rows["model"]) == {"amazon_forecast"} and set(rows["interval"]) == {0.8}
    first = rows.iloc[0]
    assert (first["server_id"], first["metric"], first["ds"]) == ("srv-001", "cpu", pd.Timestamp("2026-01-06"))
    assert (first["yhat_lower"], first["yhat"], first["yhat_upper"]) == (41.2, 50.3, 59.8)
    assert (rows["yhat_lower"] <= rows["yhat"]).all() and (rows["yhat"] <= rows["yhat_upper"]).all()  # crossed p90
    with pytest.raises(SchemaError, match="missing column\\(s\\) p90"):
        af.forecast_rows(export.drop(columns="p90"))
    with pytest.raises(SchemaError, match="'srv-9' is not server_id|metric"):
        af.forecast_rows(export.assign(item_id="srv-9"))


def test_import_reads_the_export_folder_and_writes_parquet(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    for file in DATA.glob("*.csv"):
        lake.write_bytes(f"_amazon_forecast/output/capfc_export_20260105/{file.name}", file.read_bytes())
    result = af.import_forecasts(lake, "_amazon_forecast/output/capfc_export_20260105")
    assert result["rows"] == 7 and result["series"] == 3 and result["last_ds"].startswith("2026-01-08")
    stored = pd.read_parquet(io.BytesIO(lake.read_bytes("_amazon_forecast/imported/forecasts.parquet") or b""))
    assert len(stored) == 7
    with pytest.raises(SchemaError, match="no CSV files"):
        af.import_forecasts(lake, "_amazon_forecast/output/nothing")
    assert af.run_id(dt.datetime(2026, 1, 5, 23, tzinfo=dt.timezone(dt.timedelta(hours=-2)))) == "20260106"
