"""The forecast stage as a managed-spot training job: the request, status, submit on moto, the Lambda chain."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import boto3
import pytest
from aws_helpers import IMAGE_URI, ROLE_ARN, FixedSession
from botocore.stub import Stubber
from botocore_model import model_problems

from capacity_forecaster.aws import names
from capacity_forecaster.aws.clients import AwsClients
from capacity_forecaster.aws.lambda_handler import TRAINING_STATE_CHANGE, handle
from capacity_forecaster.aws.sagemaker import JobSpec, job_name
from capacity_forecaster.aws.training import (
    CHECKPOINT_DIR,
    job_state,
    submit_step,
    submit_training_job,
    training_job_request,
    training_job_status,
)
from capacity_forecaster.config import load_settings
from capacity_forecaster.errors import AwsError, ConfigError

WHEN = dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC)
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def spec(**changes: Any) -> JobSpec:
    values: dict[str, Any] = {"image_uri": IMAGE_URI, "role_arn": ROLE_ARN, "lake_uri": "s3://capfc-lake/capfc"}
    return JobSpec(**(values | changes))


def test_request_runs_forecast_with_checkpoints_on_spot() -> None:
    name = job_name("capfc", "forecast", WHEN, "ev-1")
    request = training_job_request(spec(config_s3_uri="s3://capfc-lake/capfc/_config/capfc.yaml"), name,
                                   ("etl", "forecast", "risk"))
    assert model_problems("sagemaker", "CreateTrainingJob", request) == []
    algorithm = request["AlgorithmSpecification"]
    assert algorithm["TrainingImage"] == IMAGE_URI and algorithm["TrainingInputMode"] == "File"
    assert algorithm["ContainerEntrypoint"] == ["capfc"]
    assert algorithm["ContainerArguments"] == ["forecast", "--lake", "s3://capfc-lake/capfc", "--checkpoint-dir",
                                               CHECKPOINT_DIR, "--log-level", "INFO", "--config",
                                               "/opt/ml/input/data/config/capfc.yaml"]
    assert request["EnableManagedSpotTraining"] is True
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 14_400, "MaxWaitTimeInSeconds": 28_800}
    assert request["CheckpointConfig"] == {"S3Uri": f"s3://capfc-lake/capfc/_sagemaker/checkpoints/{name}/",
                                           "LocalPath": CHECKPOINT_DIR}
    assert request["OutputDataConfig"] == {"S3OutputPath": "s3://capfc-lake/capfc/_sagemaker/models/"}
    assert "VolumeKmsKeyId" not in request["ResourceConfig"]
    assert {"Key": "capfc:chain", "Value": "etl+forecast+risk"} in request["Tags"]
    assert request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].endswith("_config/capfc.yaml")


def test_kms_on_demand_and_local_storage_instances() -> None:
    request = training_job_request(spec(kms_key_id=KEY, spot_training=False), "capfc-forecast-x")
    assert request["OutputDataConfig"]["KmsKeyId"] == KEY and request["ResourceConfig"]["VolumeKmsKeyId"] == KEY
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 14_400}
    assert request["EnableManagedSpotTraining"] is False
    nvme = training_job_request(spec(kms_key_id="alias/capfc", instance_type="ml.g5.xlarge"), "capfc-forecast-x")
    assert "VolumeKmsKeyId" not in nvme["ResourceConfig"] and nvme["OutputDataConfig"]["KmsKeyId"] == "alias/capfc"
    for built in (request, nvme):
        assert model_problems("sagemaker", "CreateTrainingJob", built) == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"max_wait_seconds": 600}, "max_wait_seconds = 600.*max_runtime_seconds"),
     ({"kms_key_id": "alias/my key"}, "KMS key id"),
     ({"spot_training": "yes"}, "expected true or false")],
)
def test_bad_training_settings(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec(**changes)


def test_processing_only_instance_types_are_refused_for_training(monkeypatch: pytest.MonkeyPatch) -> None:
    # Today botocore's processing types are all training types too; a future processing-only one is refused.
    enums = (frozenset({"ml.m5.xlarge", "ml.m5.large"}), frozenset({"ml.m5.xlarge"}))
    monkeypatch.setattr(names, "_instance_type_enums", lambda: enums)
    spec(instance_type="ml.m5.large")  # fine as a processing job
    with pytest.raises(ConfigError, match="not one training jobs accept"):
        training_job_request(spec(instance_type="ml.m5.large"), "capfc-forecast-x")
    with pytest.raises(ConfigError, match="forecast as a training job"):
        spec(instance_type="ml.m5.large", forecast_training=True)


def test_settings_supply_the_training_keys() -> None:
    settings = load_settings(None, {"lake.uri": "s3://capfc-lake/capfc", "lake.sse": "aws:kms",
                                    "lake.sse_kms_key_id": KEY, "aws.forecast_training_job": True,
                                    "aws.max_wait_seconds": 20_000}, environ={})
    built = JobSpec.from_settings(settings, image_uri=IMAGE_URI, role_arn=ROLE_ARN)
    assert built.forecast_training and built.spot_training and built.max_wait_seconds == 20_000
    assert built.kms_key_id == KEY
    # CloudFormation substitutes text: "false" and "" arrive in CAPFC_JOB.
    parsed = JobSpec.from_mapping({**built.__dict__, "forecast_training": "false", "max_wait_seconds": ""})
    assert parsed == JobSpec(**{**built.__dict__, "forecast_training": False, "max_wait_seconds": None})
    with pytest.raises(ConfigError, match="max_wait_seconds"):
        load_settings(None, {"aws.max_wait_seconds": 600}, environ={})


def test_submit_describe_and_dedupe_on_moto(clients: AwsClients) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    job = submit_training_job(spec(job_prefix=prefix), clients=clients, when=WHEN, token="t-1")
    assert job["submitted"] and job["kind"] == "training" and job["job_name"].startswith(f"{prefix}-forecast-")
    status = training_job_status(job["job_name"], clients)
    assert status["stage"] == "forecast" and status["status"] in ("InProgress", "Completed")
    assert status["arn"].endswith(job["job_name"]) and job_state(job["job_name"], clients)["kind"] == "training"
    again = submit_training_job(spec(job_prefix=prefix), clients=clients, when=WHEN, token="t-1")
    assert again["submitted"] is False and again["job_name"] == job["job_name"]
    other = submit_step(spec(job_prefix=prefix), "forecast", clients=clients, when=WHEN, token="t-2")
    assert other["kind"] == "processing"  # forecast_training off: a processing job
    with pytest.raises(AwsError, match="no SageMaker processing or training job named capfc-nope"):
        job_state("capfc-nope", clients)


def _stubbed(describe: dict[str, Any]) -> dict[str, Any]:
    client = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stub:
        stub.add_response("describe_training_job", describe, {"TrainingJobName": describe["TrainingJobName"]})
        return training_job_status(describe["TrainingJobName"], AwsClients(session=FixedSession(client)))


def test_status_reports_spot_interruptions_and_savings() -> None:
    base = {"TrainingJobName": "capfc-forecast-1", "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x",
            "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"}, "AlgorithmSpecification": {
                "TrainingImage": IMAGE_URI, "TrainingInputMode": "File", "ContainerArguments": ["forecast"]},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
            "CreationTime": dt.datetime(2026, 1, 5, 3), "EnableManagedSpotTraining": True}
    interrupted = _stubbed({**base, "TrainingJobStatus": "InProgress", "SecondaryStatus": "Interrupted"})
    assert interrupted["status"] == "InProgress" and interrupted["secondary_status"] == "Interrupted"
    done = _stubbed({**base, "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed",
                     "TrainingTimeInSeconds": 1000, "BillableTimeInSeconds": 300,
                     "TrainingEndTime": dt.datetime(2026, 1, 5, 4)})
    assert done["spot"] and done["billable_seconds"] == 300 and done["ended"].startswith("2026-01-05T04")
    waited = _stubbed({**base, "TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxWaitTimeExceeded"})
    assert waited["status"] == "Stopped" and waited["secondary_status"] == "MaxWaitTimeExceeded"


def test_lambda_chain_runs_forecast_as_training_job(clients: AwsClients, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}"
    job_spec = spec(job_prefix=prefix, forecast_training=True, stages=("etl", "forecast", "risk"))
    environ = {"CAPFC_JOB": job_spec.to_json()}
    first = handle({"id": "ev-t", "time": "2026-01-05T03:00:00Z", "detail-type": "Scheduled Event",
                    "source": "aws.events"}, environ, clients)
    etl = job_state(first["job"]["job_name"], clients)
    after_etl = handle({"id": "sc-1", "source": "aws.sagemaker", "detail-type": "SageMaker Processing Job State Change",
                        "time": "2026-01-05T03:40:00Z", "detail": {
                            "ProcessingJobName": etl["job_name"], "ProcessingJobArn": etl["arn"],
                            "ProcessingJobStatus": "Completed"}}, environ, clients)
    forecast = after_etl["job"]
    assert forecast["stage"] == "forecast" and forecast["kind"] == "training"
    arn = training_job_status(forecast["job_name"], clients)["arn"]

    def training_event(status: str, secondary: str) -> dict[str, Any]:
        return {"id": f"sc-{uuid.uuid4().hex[:4]}", "source": "aws.sagemaker", "detail-type": TRAINING_STATE_CHANGE,
                "time": "2026-01-05T05:00:00Z", "detail": {"TrainingJobName": forecast["job_name"],
                                                           "TrainingJobArn": arn, "TrainingJobStatus": status,
                                                           "SecondaryStatus": secondary}}

    assert handle(training_event("InProgress", "Interrupted"), environ, clients)["action"] == "ignored"
    risk = handle(training_event("Completed", "Completed"), environ, clients)
    assert risk["action"] == "started" and risk["job"]["stage"] == "risk" and risk["job"]["kind"] == "processing"
    stopped = handle(training_event("Stopped", "MaxWaitTimeExceeded"), environ, clients)
    assert stopped["action"] == "chain-stopped"
