"""Every request the package builds is valid under botocore's model, patterns, enums and lengths included.

moto accepts values AWS rejects (a QuickSight PhysicalTableMap key with '_'), and botocore's own
validator skips patterns and enums, so these checks run on the pure request builders directly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import inspect
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_helpers import ACCOUNT, IMAGE_URI, ROLE_ARN, write_small_lake
from botocore.validate import ParamValidator
from botocore_model import model_problems, operation

import capacity_forecaster.aws
from capacity_forecaster.aws import amazon_forecast, glue, quicksight, sagemaker, scheduling, training
from capacity_forecaster.aws.catalog import TableDefinition, lake_definitions
from capacity_forecaster.storage import Lake

LAMBDA_ARN = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:capfc-scheduler"
RULE_ARN = f"arn:aws:events:us-east-1:{ACCOUNT}:rule/capfc-daily"
DLQ_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:capfc-dlq"
PRINCIPAL = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:user/default/analyst"
SOURCE_ARN = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:datasource/capfc-athena"
TAGS = [{"Key": "project", "Value": "aws-capacity-forecaster"}]
Case = tuple[str, str, dict[str, Any]]
# The most a VpcConfig takes: 16 subnets, 5 security groups (17-hex-digit ids).
VPC = {"subnet_ids": tuple(f"subnet-{i:017x}" for i in range(16)),
       "security_group_ids": tuple(f"sg-{i:017x}" for i in range(5))}
DIGEST_URI = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/capfc@sha256:{'0a' * 32}"


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> list[TableDefinition]:
    lake = Lake.open(str(tmp_path_factory.mktemp("lake")), for_writing=True)
    write_small_lake(lake)
    definitions, _ = lake_definitions(lake, s3_uri="s3://acme-capfc-lake/capfc")
    assert {"server_risk", "raw_metrics"} <= {t.name for t in definitions}  # names with '_' are covered
    return definitions


def _subset(request: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: request[k] for k in keys if k in request}


def _processing(tables: list[TableDefinition]) -> list[Case]:
    spec = sagemaker.JobSpec(image_uri=IMAGE_URI, role_arn=ROLE_ARN, lake_uri="s3://acme-capfc-lake/capfc",
                             config_s3_uri="s3://acme-capfc-lake/capfc/_config/capfc.yaml",
                             tags={"project": "aws-capacity-forecaster"}, stages=sagemaker.PIPELINE)
    name = sagemaker.job_name("capfc-prod-abcdefghijklm", "forecast", dt.datetime(2026, 1, 5, 3), "ev-1")
    request = sagemaker.processing_job_request(spec, "forecast", name, sagemaker.PIPELINE)
    in_vpc = sagemaker.JobSpec(image_uri=DIGEST_URI, role_arn=ROLE_ARN, lake_uri="s3://acme-capfc-lake/capfc",
                               glue_database="capacity_forecaster", region="us-east-1", **VPC)  # type: ignore[arg-type]
    verify = sagemaker.processing_job_request(in_vpc, "verify", name, ("run", "verify"))
    assert verify["NetworkConfig"]["VpcConfig"]["Subnets"] == list(VPC["subnet_ids"])
    return [("sagemaker", "CreateProcessingJob", request), ("sagemaker", "CreateProcessingJob", verify)]


def _training(tables: list[TableDefinition]) -> list[Case]:
    spec = sagemaker.JobSpec(image_uri=IMAGE_URI, role_arn=ROLE_ARN, lake_uri="s3://acme-capfc-lake/capfc",
                             config_s3_uri="s3://acme-capfc-lake/capfc/_config/capfc.yaml",
                             tags={"project": "aws-capacity-forecaster"}, stages=sagemaker.PIPELINE,
                             forecast_training=True, kms_key_id="alias/capfc-lake", max_wait_seconds=777_600)
    name = sagemaker.job_name("capfc-prod-abcdefghijklm", "forecast", dt.datetime(2026, 1, 5, 3), "ev-1")
    in_vpc = dataclasses.replace(spec, image_uri=DIGEST_URI, **VPC)  # type: ignore[arg-type]
    return [("sagemaker", "CreateTrainingJob", training.training_job_request(spec, name, sagemaker.PIPELINE)),
            ("sagemaker", "CreateTrainingJob", training.training_job_request(in_vpc, name, sagemaker.PIPELINE))]


def _amazon_forecast(tables: list[TableDefinition]) -> list[Case]:
    run = amazon_forecast.ForecastRun(
        lake_uri="s3://acme-capfc-lake/capfc", role_arn=f"arn:aws:iam::{ACCOUNT}:role/capfc-forecast",
        account_id=ACCOUNT, region="us-east-1", horizon=500, freq="h", tags=(("project", "aws-capacity-forecaster"),),
        kms_key_arn=f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    names = amazon_forecast.ForecastNames.build("capfc-prod-abcdefghijklm", "20260105")
    return [("forecast", operation, request) for _kind, _arn, operation, request in amazon_forecast.steps(run, names)]


def _glue(tables: list[TableDefinition]) -> list[Case]:
    cases: list[Case] = [("glue", "CreateDatabase", glue.database_request("capacity_forecaster"))]
    for table in tables:
        request = glue.table_request("capacity_forecaster", table)
        cases += [("glue", "CreateTable", request), ("glue", "UpdateTable", request)]
    return cases


def _rules(tables: list[TableDefinition]) -> list[Case]:
    tags = {"project": "aws-capacity-forecaster"}
    return [
        ("events", "PutRule", scheduling.rule_request("capfc-daily", "schedule", tags,
                                                      schedule_expression="cron(0 3 * * ? *)")),
        ("events", "PutRule", scheduling.rule_request("capfc-daily-chain", "chain", tags,
                                                      event_pattern=scheduling.chain_event_pattern("capfc"))),
    ]


def _targets(tables: list[TableDefinition]) -> list[Case]:
    return [("events", "PutTargets", scheduling.targets_request("capfc-daily", LAMBDA_ARN)),
            ("events", "PutTargets", scheduling.targets_request("capfc-daily", LAMBDA_ARN, DLQ_ARN))]


def _permission(tables: list[TableDefinition]) -> list[Case]:
    longest = "r" * 52 + "-chain"  # the longest chain rule name the rule-name check allows
    return [("lambda", "AddPermission", scheduling.permission_request(LAMBDA_ARN, longest, RULE_ARN))]


def _data_source(tables: list[TableDefinition]) -> list[Case]:
    request = quicksight.data_source_request(ACCOUNT, "capfc-athena", "capfc", "capfc", PRINCIPAL, TAGS)
    return [("quicksight", "CreateDataSource", request),
            ("quicksight", "UpdateDataSource", _subset(request, quicksight._SOURCE_UPDATE_KEYS))]


def _data_set(tables: list[TableDefinition]) -> list[Case]:
    cases: list[Case] = []
    for table in tables:
        request = quicksight.data_set_request(ACCOUNT, "capfc-athena", SOURCE_ARN, "capacity_forecaster", table,
                                              PRINCIPAL, TAGS)
        cases += [("quicksight", "CreateDataSet", request),
                  ("quicksight", "UpdateDataSet", _subset(request, quicksight._DATASET_UPDATE_KEYS))]
    return cases


# Every request builder of the package -> the requests it makes, with realistic and edge-case inputs.
BUILDERS: dict[Callable[..., dict[str, Any]], Callable[[list[TableDefinition]], list[Case]]] = {
    sagemaker.processing_job_request: _processing,
    training.training_job_request: _training,
    amazon_forecast.dataset_request: _amazon_forecast,
    amazon_forecast.dataset_group_request: _amazon_forecast,
    amazon_forecast.dataset_import_job_request: _amazon_forecast,
    amazon_forecast.auto_predictor_request: _amazon_forecast,
    amazon_forecast.forecast_request: _amazon_forecast,
    amazon_forecast.forecast_export_job_request: _amazon_forecast,
    glue.database_request: _glue,
    glue.table_request: _glue,
    scheduling.rule_request: _rules,
    scheduling.targets_request: _targets,
    scheduling.permission_request: _permission,
    quicksight.data_source_request: _data_source,
    quicksight.data_set_request: _data_set,
}


def _package_builders() -> set[str]:
    """``module.function`` of every ``*_request`` function defined in capacity_forecaster.aws."""
    found = set()
    for module_info in pkgutil.iter_modules([str(Path(capacity_forecaster.aws.__file__).parent)]):
        module = importlib.import_module(f"capacity_forecaster.aws.{module_info.name}")
        for name, function in inspect.getmembers(module, inspect.isfunction):
            if name.endswith("_request") and function.__module__ == module.__name__:
                found.add(f"{module.__name__}.{name}")
    return found


def test_every_request_builder_is_covered() -> None:
    covered = {f"{f.__module__}.{f.__name__}" for f in BUILDERS}
    missing = _package_builders() - covered
    assert not missing, f"add these request builders to BUILDERS in {__file__}: {sorted(missing)}"
    assert covered <= _package_builders()


@pytest.mark.parametrize("builder", list(BUILDERS), ids=lambda f: f"{f.__module__.rsplit('.', 1)[-1]}.{f.__name__}")
def test_requests_are_valid_under_the_service_model(builder: Callable[..., Any],
                                                    tables: list[TableDefinition]) -> None:
    cases = BUILDERS[builder](tables)
    assert cases
    for service, op, request in cases:
        assert model_problems(service, op, request) == [], (service, op)


def test_validator_catches_what_botocore_and_moto_let_through(tables: list[TableDefinition]) -> None:
    server_risk = next(t for t in tables if t.name == "server_risk")
    request = quicksight.data_set_request(ACCOUNT, "capfc-athena", SOURCE_ARN, "capfc", server_risk, None, [])
    assert list(request["PhysicalTableMap"]) == ["server-risk"]
    request["PhysicalTableMap"] = {"server_risk": request["PhysicalTableMap"]["server-risk"]}  # the old key
    assert not ParamValidator().validate(request, operation("quicksight", "CreateDataSet").input_shape).has_errors()
    (problem,) = model_problems("quicksight", "CreateDataSet", request)
    assert "'server_risk'" in problem and "[0-9a-zA-Z-]*" in problem
    permission = scheduling.permission_request(LAMBDA_ARN, "capfc.daily", RULE_ARN)  # '.' is no StatementId
    assert any("StatementId" in p for p in model_problems("lambda", "AddPermission", permission))
    job = _processing(tables)[0][2]
    job["ProcessingResources"]["ClusterConfig"]["InstanceType"] = "ml.foo.bar"
    assert any("InstanceType" in p and "allowed values" in p for p in model_problems("sagemaker",
                                                                                    "CreateProcessingJob", job))
