"""The naming rules of aws/names.py never let through a value the service's own model rejects.

The services' patterns, enums and lengths come from botocore's model at test time, so a rule that
drifts from AWS (a '.' in a rule name that also ends up in a Lambda StatementId) fails here.
"""

from __future__ import annotations

import pytest
from botocore_model import member, value_problems
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacity_forecaster.aws import names
from capacity_forecaster.aws.sagemaker import JobSpec
from capacity_forecaster.errors import ConfigError

# rule -> the request members its names reach, with what capfc adds to them.
TARGETS: dict[str, list[tuple[str, str, str, str]]] = {
    "glue_name": [("glue", "CreateDatabase", "DatabaseInput.Name", ""), ("glue", "CreateTable", "TableInput.Name", "")],
    "athena_workgroup": [("athena", "CreateWorkGroup", "Name", "")],
    "job_name": [("sagemaker", "CreateProcessingJob", "ProcessingJobName", ""),
                 ("sagemaker", "CreateTrainingJob", "TrainingJobName", "")],
    "rule_name": [("events", "PutRule", "Name", ""), ("events", "PutRule", "Name", "-chain"),
                  ("lambda", "AddPermission", "StatementId", "-invoke"),
                  ("lambda", "AddPermission", "StatementId", "-chain-invoke")],
    "resource_id": [("quicksight", "CreateDataSource", "DataSourceId", ""),
                    ("quicksight", "CreateDataSet", "DataSetId", "")],
    "account_id": [("quicksight", "CreateDataSource", "AwsAccountId", "")],
    "role_arn": [("sagemaker", "CreateProcessingJob", "RoleArn", ""),
                 ("sagemaker", "CreateTrainingJob", "RoleArn", "")],
    "kms_key_id": [("sagemaker", "CreateTrainingJob", "OutputDataConfig.KmsKeyId", ""),
                   ("sagemaker", "CreateTrainingJob", "ResourceConfig.VolumeKmsKeyId", "")],
    "forecast_name": [("forecast", "CreateDatasetGroup", "DatasetGroupName", ""),
                      ("forecast", "CreateAutoPredictor", "PredictorName", ""),
                      ("forecast", "CreateForecastExportJob", "ForecastExportJobName", "")],
    "lambda_arn": [("events", "PutTargets", "Targets.Arn", ""), ("lambda", "AddPermission", "FunctionName", "")],
    "sqs_arn": [("events", "PutTargets", "Targets.DeadLetterConfig.Arn", "")],
    "principal_arn": [("quicksight", "CreateDataSource", "Permissions.Principal", "")],
    "image_uri": [("sagemaker", "CreateProcessingJob", "AppSpecification.ImageUri", ""),
                  ("sagemaker", "CreateTrainingJob", "AlgorithmSpecification.TrainingImage", "")],
    "subnet_id": [("sagemaker", "CreateProcessingJob", "NetworkConfig.VpcConfig.Subnets", ""),
                  ("sagemaker", "CreateTrainingJob", "VpcConfig.Subnets", "")],
    "security_group_id": [("sagemaker", "CreateProcessingJob", "NetworkConfig.VpcConfig.SecurityGroupIds", ""),
                          ("sagemaker", "CreateTrainingJob", "VpcConfig.SecurityGroupIds", "")],
    "schedule": [("events", "PutRule", "ScheduleExpression", "")],
    "tag_key": [("sagemaker", "CreateProcessingJob", "Tags.Key", ""), ("events", "PutRule", "Tags.Key", ""),
                ("quicksight", "CreateDataSource", "Tags.Key", "")],
    "tag_value": [("sagemaker", "CreateProcessingJob", "Tags.Value", ""), ("events", "PutRule", "Tags.Value", ""),
                  ("quicksight", "CreateDataSource", "Tags.Value", "")],
}


def test_every_rule_that_reaches_a_request_is_mapped() -> None:
    # Rules not sent as such: parts of other names, or URIs/URLs that are never a request member alone.
    local = {"job_prefix", "region", "instance_type", "s3_uri", "endpoint_url"}
    assert set(names.RULES) - local == set(TARGETS)


def _valid_names(kind: str) -> st.SearchStrategy[str]:
    rule = names.RULES[kind]
    return st.from_regex(rule.pattern, fullmatch=True).filter(lambda v: names.problem(kind, v) is None)


@pytest.mark.parametrize("kind", sorted(TARGETS))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=st.data())
def test_names_the_rules_accept_are_accepted_by_the_service(kind: str, data: st.DataObject) -> None:
    value = data.draw(_valid_names(kind))
    for service, operation, path, suffix in TARGETS[kind]:
        assert value_problems(service, operation, path, value + suffix) == [], (kind, service, operation)


def test_instance_types_are_the_services_own() -> None:
    processing = member("sagemaker", "CreateProcessingJob", "ProcessingResources.ClusterConfig.InstanceType").enum
    training = member("sagemaker", "CreateTrainingJob", "ResourceConfig.InstanceType").enum
    known = names.sagemaker_instance_types()
    assert known == set(processing) | set(training)
    assert all(names.instance_type_problem(t) is None for t in known)  # nothing valid is refused
    for bad in ("ml.foo.bar", "ml.m5.huge", "m5.xlarge"):
        assert names.instance_type_problem(bad)
    assert "ml.m5.xlarge" in (names.instance_type_problem("ml.m5.xlarge2") or "")  # the message lists the sizes


def test_job_spec_refuses_an_unknown_instance_type() -> None:
    with pytest.raises(ConfigError, match="instance_type: SageMaker instance type 'ml.foo.bar' is not one"):
        JobSpec(image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/capfc:1.0",
                role_arn="arn:aws:iam::123456789012:role/r", lake_uri="s3://bucket/capfc", instance_type="ml.foo.bar")


def test_rule_names_with_a_dot_are_refused() -> None:
    with pytest.raises(ConfigError, match="no '.'"):
        names.check("rule_name", "capfc.daily")
