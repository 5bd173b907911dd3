"""SageMaker stage jobs: valid deterministic names, the request, no credentials, create + describe on moto."""

from __future__ import annotations

import datetime as dt
import json
import re

import boto3
import pytest
from aws_helpers import IMAGE_URI, ROLE_ARN, FixedSession
from botocore.stub import Stubber

from capacity_forecaster.aws.clients import AwsClients
from capacity_forecaster.aws.sagemaker import (
    CONFIG_DIR,
    JobSpec,
    job_name,
    job_status,
    processing_job_request,
    running_jobs,
    submit_job,
    submit_stage_job,
)
from capacity_forecaster.aws.training import training_job_request
from capacity_forecaster.config import load_settings
from capacity_forecaster.errors import AwsError, ConfigError

WHEN = dt.datetime(2026, 1, 5, 3, 0, tzinfo=dt.UTC)
NAME_RULE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")


def spec(**changes: object) -> JobSpec:
    values: dict[str, object] = {"image_uri": IMAGE_URI, "role_arn": ROLE_ARN, "lake_uri": "s3://capfc-lake/capfc/"}
    values.update(changes)
    return JobSpec(**values)  # type: ignore[arg-type]


def test_job_names_are_deterministic_and_valid() -> None:
    name = job_name("capfc", "forecast", WHEN, "event-1")
    assert name == job_name("capfc", "forecast", WHEN, "event-1")
    assert name != job_name("capfc", "forecast", WHEN, "event-2")
    assert name.startswith("capfc-forecast-20260105-030000-")
    longest = job_name("a" * 24, "forecast", WHEN, "x")
    assert len(longest) <= 63 and NAME_RULE.fullmatch(longest)
    # The time in the name is UTC whatever the time zone of the input.
    assert job_name("capfc", "etl", WHEN.astimezone(dt.timezone(dt.timedelta(hours=2))), "t") \
        == job_name("capfc", "etl", WHEN, "t")


def test_request_runs_capfc_on_the_lake_without_credentials() -> None:
    request = processing_job_request(spec(tags={"team": "capacity"}), "etl", "capfc-etl-x",
                                     ("etl", "forecast", "risk", "report"))
    app = request["AppSpecification"]
    assert app["ImageUri"] == IMAGE_URI and app["ContainerEntrypoint"] == ["capfc"]
    assert app["ContainerArguments"] == ["etl", "--lake", "s3://capfc-lake/capfc", "--log-level", "INFO"]
    assert request["RoleArn"] == ROLE_ARN
    assert request["ProcessingResources"]["ClusterConfig"] == {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                               "VolumeSizeInGB": 30}
    assert not any(re.search("KEY|SECRET|TOKEN|AWS_", k) for k in request["Environment"])
    assert {"Key": "capfc:chain", "Value": "etl+forecast+risk+report"} in request["Tags"]
    assert {"Key": "capfc:stage", "Value": "etl"} in request["Tags"]
    assert {"Key": "team", "Value": "capacity"} in request["Tags"]
    assert "ProcessingInputs" not in request


def test_config_file_is_downloaded_and_passed() -> None:
    request = processing_job_request(spec(config_s3_uri="s3://capfc-lake/capfc/_config/capfc.yaml"), "run", "n-1")
    (item,) = request["ProcessingInputs"]
    assert item["S3Input"]["S3Uri"] == "s3://capfc-lake/capfc/_config/capfc.yaml"
    assert item["S3Input"]["LocalPath"] == CONFIG_DIR
    assert request["AppSpecification"]["ContainerArguments"][-2:] == ["--config", f"{CONFIG_DIR}/capfc.yaml"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"lake_uri": "./lake"}, "SageMaker jobs need an s3:// lake"),
        ({"role_arn": "capfc-role"}, "IAM role ARN 'capfc-role' is not valid"),
        ({"image_uri": "capfc latest"}, "container image URI"),
        ({"instance_type": "m5.large"}, "SageMaker instance type"),
        ({"instance_count": 2}, "instance_count = 2"),
        ({"job_prefix": "Capfc_Jobs"}, "SageMaker job name prefix"),
        ({"stages": ("forecast", "etl")}, "must be in pipeline order"),
        ({"stages": ("run", "etl")}, "'run' already runs every stage"),
        ({"stages": ("train",)}, "unknown stage"),
        ({"environment": {"AWS_SECRET_ACCESS_KEY": "x"}}, "credentials and AWS_\\* settings are never passed"),
        ({"environment": {"DB_PASSWORD": "x"}}, "never passed"),
        ({"tags": {"aws:owner": "me"}}, "not starting with 'aws:'"),
        ({"config_s3_uri": "s3://capfc-lake/cfg/"}, "give the YAML file"),
    ],
)
def test_invalid_specs_say_what_is_wrong(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec(**changes)


def test_spec_round_trips_through_json_and_accepts_strings() -> None:
    original = spec(stages=("etl", "forecast"), tags={"team": "x"}, environment={"CAPFC_FORECAST__N_JOBS": "4"})
    data = json.loads(original.to_json())
    assert JobSpec.from_mapping(data) == original
    data |= {"stages": "etl,forecast", "volume_size_gb": "30", "config_s3_uri": ""}
    assert JobSpec.from_mapping(data) == original
    with pytest.raises(ConfigError, match="unknown key\\(s\\) colour"):
        JobSpec.from_mapping({**data, "colour": "blue"})


def test_settings_supply_the_spec() -> None:
    settings = load_settings(None, {"lake.uri": "s3://capfc-lake/capfc", "lake.sse": "aws:kms",
                                    "lake.sse_kms_key_id": "alias/capfc"}, environ={})
    with pytest.raises(ConfigError, match="aws.image_uri is not set.*--image-uri"):
        JobSpec.from_settings(settings)
    built = JobSpec.from_settings(settings, image_uri=IMAGE_URI, role_arn=ROLE_ARN)
    assert built.environment == {"CAPFC_LAKE__SSE": "aws:kms", "CAPFC_LAKE__SSE_KMS_KEY_ID": "alias/capfc"}
    assert built.tags == {"project": "aws-capacity-forecaster"} and built.stages == ("run", "verify")


def test_submit_and_describe_on_moto(clients: AwsClients) -> None:
    job = submit_job(spec(), "forecast", clients=clients, when=WHEN, token="t-1")
    assert job["submitted"] and job["stage"] == "forecast"
    status = job_status(job["job_name"], clients)
    assert status["job_name"] == job["job_name"] and status["stage"] == "forecast"
    assert status["status"] in ("InProgress", "Completed") and status["arn"].endswith(job["job_name"])
    described = clients.client("sagemaker").describe_processing_job(ProcessingJobName=job["job_name"])
    assert described["RoleArn"] == ROLE_ARN and described["AppSpecification"]["ImageUri"] == IMAGE_URI
    tags = clients.client("sagemaker").list_tags(ResourceArn=status["arn"])["Tags"]
    assert {"Key": "capfc:stage", "Value": "forecast"} in tags
    again = submit_job(spec(), "forecast", clients=clients, when=WHEN, token="t-1")
    assert again["job_name"] == job["job_name"] and again["submitted"] is False


def test_submit_stage_job_from_settings(clients: AwsClients) -> None:
    settings = load_settings(None, {"lake.uri": "s3://capfc-lake/capfc", "aws.image_uri": IMAGE_URI,
                                    "aws.role_arn": ROLE_ARN}, environ={})
    job = submit_stage_job("risk", settings, instance_type="ml.c5.2xlarge", clients=clients)
    assert job["submitted"] and job["job_name"].startswith("capfc-risk-")
    described = clients.client("sagemaker").describe_processing_job(ProcessingJobName=job["job_name"])
    # moto's DescribeProcessingJob leaves out ProcessingResources; the override is checked on the spec.
    assert JobSpec.from_settings(settings, instance_type="ml.c5.2xlarge").instance_type == "ml.c5.2xlarge"
    assert described["AppSpecification"]["ContainerArguments"][:3] == ["risk", "--lake", "s3://capfc-lake/capfc"]


def test_status_of_a_missing_job_is_one_error(clients: AwsClients) -> None:
    with pytest.raises(AwsError, match="DescribeProcessingJob capfc-nope failed: ValidationException"):
        job_status("capfc-nope", clients)


def test_running_jobs_keeps_only_our_prefix() -> None:
    client = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    created = dt.datetime(2026, 1, 5)
    summary = {"ProcessingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:processing-job/x",
               "CreationTime": created, "ProcessingJobStatus": "InProgress"}
    stub.add_response("list_processing_jobs", {"ProcessingJobSummaries": [
        {**summary, "ProcessingJobName": "capfc-run-20260105-030000-abcd1234"},
        {**summary, "ProcessingJobName": "other-capfc-job"},
    ]}, {"NameContains": "capfc", "StatusEquals": "InProgress"})
    stub.add_response("list_processing_jobs", {"ProcessingJobSummaries": []},
                      {"NameContains": "capfc", "StatusEquals": "Stopping"})
    with stub:
        found = running_jobs("capfc", AwsClients(session=FixedSession(client)))
    assert found == ["capfc-run-20260105-030000-abcd1234"]



SUBNETS = ("subnet-0123456789abcdef0", "subnet-89abcdef")
GROUPS = ("sg-0123456789abcdef0",)


def test_vpc_reaches_processing_and_training_jobs_without_network_isolation() -> None:
    in_vpc = spec(subnet_ids=SUBNETS, security_group_ids=GROUPS, instance_type="ml.m5.xlarge")
    vpc = {"SecurityGroupIds": list(GROUPS), "Subnets": list(SUBNETS)}
    # Isolation would cut the container off from S3, and capfc reads and writes the lake itself.
    assert processing_job_request(in_vpc, "etl", "n-1")["NetworkConfig"] == {
        "EnableNetworkIsolation": False, "VpcConfig": vpc}
    assert processing_job_request(spec(), "etl", "n-1")["NetworkConfig"] == {"EnableNetworkIsolation": False}
    training = training_job_request(in_vpc, "n-1")
    assert training["VpcConfig"] == vpc and training["EnableNetworkIsolation"] is False
    assert "VpcConfig" not in training_job_request(spec(), "n-1")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subnet_ids": SUBNETS}, "give both"),
        ({"security_group_ids": GROUPS}, "give both"),
        ({"subnet_ids": ("subnet-XYZ",), "security_group_ids": GROUPS}, "VPC subnet id 'subnet-XYZ' is not valid"),
        ({"subnet_ids": SUBNETS, "security_group_ids": ("sg-123",)}, "VPC security group id 'sg-123'"),
        ({"subnet_ids": SUBNETS, "security_group_ids": tuple(f"sg-{i:08x}" for i in range(6))}, "at most 5"),
        ({"subnet_ids": tuple(f"subnet-{i:08x}" for i in range(17)), "security_group_ids": GROUPS}, "at most 16"),
        ({"subnet_ids": SUBNETS[:1] * 2, "security_group_ids": GROUPS}, "repeats an id"),
        ({"glue_database": "Capfc-DB"}, "Glue/Athena name"),
        ({"region": "mars"}, "AWS region"),
    ],
)
def test_invalid_vpc_and_glue_settings(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec(**changes)


REPOSITORY = "123456789012.dkr.ecr.us-east-1.amazonaws.com/capfc"


@pytest.mark.parametrize(
    ("uri", "pinning"),
    [
        (f"{REPOSITORY}@sha256:{'0123456789abcdef' * 4}", "digest"),
        (f"{REPOSITORY}:1.0", "tag"),
        (f"{REPOSITORY}:latest", "latest"),
        (REPOSITORY, "latest"),  # no tag: Docker pulls latest
        ("registry.example.com:5000/team/capfc:2026.01", "tag"),
        ("registry.example.com:5000/team/capfc", "latest"),  # the port is not a tag
    ],
)
def test_image_pinning(uri: str, pinning: str, caplog: pytest.LogCaptureFixture) -> None:
    from capacity_forecaster.aws.names import image_pinning

    assert image_pinning(uri) == pinning
    with caplog.at_level("WARNING", logger="capacity_forecaster.aws.sagemaker"):
        assert spec(image_uri=uri).image_uri == uri  # accepted; ':latest' only warns
    warned = [r.getMessage() for r in caplog.records if "latest" in r.getMessage()]
    assert bool(warned) == (pinning == "latest")
    if warned:
        assert "@sha256:<digest>" in warned[0]


@pytest.mark.parametrize("bad", [
    f"{REPOSITORY}@sha256:{'0' * 63}",  # too short
    f"{REPOSITORY}@sha256:{'A' * 64}",  # digests are lowercase hex
    f"{REPOSITORY}@sha512:{'0' * 64}",
    f"{REPOSITORY}:1.0@sha256",
])
def test_malformed_digests_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="container image URI"):
        spec(image_uri=bad)


def test_verify_step_reregisters_glue_tables() -> None:
    chained = spec(glue_database="capacity_forecaster", region="eu-west-1", stages=("run", "verify"))
    arguments = processing_job_request(chained, "verify", "n-1", ("run", "verify"))["AppSpecification"][
        "ContainerArguments"]
    assert arguments[:6] == ["aws", "verify", "--delete", "--glue-database", "capacity_forecaster", "--region"]
    assert "--glue-database" not in processing_job_request(chained, "etl", "n-1")["AppSpecification"][
        "ContainerArguments"]
    assert processing_job_request(spec(), "verify", "n-2")["AppSpecification"]["ContainerArguments"][:4] == [
        "aws", "verify", "--delete", "--lake"]


def test_lambda_settings_carry_the_vpc_as_text() -> None:
    """CloudFormation joins its list parameters with ',' (empty when not given)."""
    base = json.loads(spec().to_json())
    joined = JobSpec.from_mapping({**base, "subnet_ids": ",".join(SUBNETS), "security_group_ids": GROUPS[0],
                                   "glue_database": "capacity_forecaster", "region": "us-east-1"})
    assert joined.subnet_ids == SUBNETS and joined.security_group_ids == GROUPS
    empty = JobSpec.from_mapping({**base, "subnet_ids": "", "security_group_ids": "", "glue_database": "",
                                  "region": ""})
    assert empty == spec()
    assert JobSpec.from_mapping(json.loads(joined.to_json())) == joined


def test_settings_supply_vpc_and_glue() -> None:
    settings = load_settings(None, {"lake.uri": "s3://capfc-lake/capfc", "aws.subnet_ids": list(SUBNETS),
                                    "aws.security_group_ids": list(GROUPS), "aws.region": "eu-west-1"}, environ={})
    built = JobSpec.from_settings(settings, image_uri=IMAGE_URI, role_arn=ROLE_ARN)
    assert built.subnet_ids == SUBNETS and built.security_group_ids == GROUPS
    assert built.glue_database == "capacity_forecaster" and built.region == "eu-west-1"
    off = load_settings(None, {"lake.uri": "s3://capfc-lake/capfc", "aws.verify_registers_glue": False}, environ={})
    assert JobSpec.from_settings(off, image_uri=IMAGE_URI, role_arn=ROLE_ARN).glue_database is None
    with pytest.raises(ConfigError, match="give both"):
        load_settings(None, {"aws.subnet_ids": list(SUBNETS)}, environ={})
