"""deploy/cloudformation.yaml: cfn-lint clean, least-privilege policies, and a stack created on moto that the
scheduler handler then drives end to end."""

from __future__ import annotations

import fnmatch
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint, lint_file
from cfnlint.decode import decode_str

from capacity_forecaster.aws.bundle import build_lambda_zip
from capacity_forecaster.aws.clients import AwsClients
from capacity_forecaster.aws.lambda_handler import handler, load_spec
from capacity_forecaster.aws.sagemaker import JobSpec, job_status, processing_job_request
from capacity_forecaster.aws.scheduling import chain_event_pattern

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation.yaml"
LINT = ManualArgs(regions=["us-east-1", "eu-west-1"], include_checks=["I"])
# The only actions granted on "*": none supports resource-level permissions.
UNSCOPED_OK = {"ecr:GetAuthorizationToken", "sagemaker:ListProcessingJobs", "sagemaker:ListTrainingJobs",
               "ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups",
               "ec2:DescribeSubnets", "ec2:DescribeVpcs"}
DIGEST = "sha256:" + "ab12" * 16


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    parsed, problems = decode_str(TEMPLATE.read_text())
    assert not problems
    return dict(parsed)


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                out += [(name, s) for s in policy["PolicyDocument"]["Statement"]]
        if resource["Type"] == "AWS::IAM::Policy":
            out += [(name, s) for s in resource["Properties"]["PolicyDocument"]["Statement"]]
    return out


def _allows_listing(condition: dict[str, Any], prefix: str | None, lake_prefix: str = "capfc") -> bool:
    """How IAM evaluates the LakeListing condition for a request with (or without) an s3:prefix."""
    ((operator, keys),) = condition.items()
    patterns = [p if isinstance(p, str) else p["Fn::Sub"].replace("${LakePrefix}", lake_prefix) if "Fn::Sub" in p
                else lake_prefix for p in keys["s3:prefix"]]
    if prefix is None:
        return operator.endswith("IfExists")
    return any(fnmatch.fnmatchcase(prefix, p) for p in patterns)


def test_cfn_lint_finds_nothing() -> None:
    assert [str(m) for m in lint_file(TEMPLATE, config=LINT)] == []
    broken = TEMPLATE.read_text().replace("      Runtime: python3.11\n", "      Runtime: python2.7\n")
    assert lint(broken, config=LINT), "cfn-lint should flag a deprecated runtime (the linter really runs)"


def test_bucket_is_encrypted_private_and_tls_only(template: dict[str, Any]) -> None:
    bucket = template["Resources"]["LakeBucket"]["Properties"]
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    condition, with_key, without_key = rule["ServerSideEncryptionByDefault"]["Fn::If"]
    assert condition == "HasKmsKey" and without_key == {"SSEAlgorithm": "AES256"}
    assert with_key == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": {"Ref": "KmsKeyArn"}}
    assert rule["BucketKeyEnabled"]["Fn::If"][:2] == ["HasKmsKey", True]
    (versions, _results) = bucket["LifecycleConfiguration"]["Rules"]
    assert versions["ExpiredObjectDeleteMarker"] is True
    assert all(bucket["PublicAccessBlockConfiguration"][k] is True for k in (
        "BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"))
    (deny,) = template["Resources"]["LakeBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    workgroup = template["Resources"]["AthenaWorkGroup"]["Properties"]["WorkGroupConfiguration"]
    assert workgroup["EnforceWorkGroupConfiguration"] is True
    results = workgroup["ResultConfiguration"]["EncryptionConfiguration"]["Fn::If"]
    assert results[2] == {"EncryptionOption": "SSE_S3"} and results[1]["EncryptionOption"] == "SSE_KMS"


def test_policies_are_least_privilege(template: dict[str, Any]) -> None:
    statements = _statements(template)
    assert statements
    for role, statement in statements:
        assert statement["Effect"] == "Allow"
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a == "*" or a.endswith(":*") for a in actions), (role, actions)
        if statement["Resource"] == "*":
            assert set(actions) <= UNSCOPED_OK, (role, actions)
    by_sid = {s["Sid"]: s for _role, s in statements}
    assert by_sid["LakeObjects"]["Resource"] == {"Fn::Sub": "${LakeBucket.Arn}/${LakePrefix}/*"}
    listing = by_sid["LakeListing"]["Condition"]
    # s3fs's HeadBucket carries no s3:prefix: it must pass, while other prefixes of the bucket stay closed.
    assert _allows_listing(listing, None) and _allows_listing(listing, "")
    assert _allows_listing(listing, "capfc") and _allows_listing(listing, "capfc/metrics/")
    assert not _allows_listing(listing, "athena-results/") and not _allows_listing(listing, "capfcx/")
    for sid in ("LakeKey", "DeadLetterKey"):  # the KMS grants exist only with a key, and only via one service
        assert by_sid[sid]["Resource"] == {"Ref": "KmsKeyArn"} and "kms:ViaService" in by_sid[sid]["Condition"][
            "StringEquals"]
    for name in ("JobRoleKmsPolicy", "SchedulerKmsPolicy"):
        assert template["Resources"][name]["Condition"] == "HasKmsKey"
    assert template["Resources"]["JobRoleGluePolicy"]["Condition"] == "RefreshesGlue"
    create = by_sid["CreateJobsOfOneInstanceType"]
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in create["Resource"]] == ["processing-job/${JobPrefix}-*",
                                                                           "training-job/${JobPrefix}-*"]
    assert create["Condition"]["ForAllValues:StringEquals"]["sagemaker:InstanceTypes"] == [{"Ref": "InstanceType"}]
    # With a VPC, jobs only in its subnets and security groups, and a VPC config is required.
    vpc_keys = create["Condition"]["ForAllValues:StringEquals"]
    assert vpc_keys["sagemaker:VpcSubnets"] == {"Fn::If": ["HasVpc", {"Ref": "SubnetIds"}, {"Ref": "AWS::NoValue"}]}
    assert vpc_keys["sagemaker:VpcSecurityGroupIds"]["Fn::If"][1] == {"Ref": "SecurityGroupIds"}
    assert create["Condition"]["Null"]["Fn::If"][1] == {"sagemaker:VpcSubnets": "false",
                                                        "sagemaker:VpcSecurityGroupIds": "false"}
    # The job role's network-interface rights exist only with a VPC, scoped to the account, region and VPC.
    assert template["Resources"]["JobRoleVpcPolicy"]["Condition"] == "HasVpc"
    enis = by_sid["JobNetworkInterfaces"]
    assert all(r["Fn::Sub"].startswith("arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:")
               for r in enis["Resource"])
    assert enis["Condition"]["ArnEqualsIfExists"]["ec2:Vpc"]["Fn::Sub"].endswith(":vpc/${VpcId}")
    # Glue: only the lake's database and its tables (the verify step's re-registration).
    glue = by_sid["RefreshLakeTables"]
    assert sorted(glue["Action"]) == ["glue:CreateDatabase", "glue:CreateTable", "glue:GetTable", "glue:UpdateTable"]
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in glue["Resource"]] == [
        "catalog", "database/${GlueDatabaseName}", "table/${GlueDatabaseName}/*"]
    assert by_sid["PassJobRole"]["Resource"] == {"Fn::GetAtt": ["SageMakerJobRole", "Arn"]}
    assert by_sid["PassJobRole"]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    # Nothing in the template is a credential.
    assert "AccessKey" not in TEMPLATE.read_text() and "Secret" not in TEMPLATE.read_text()


def test_chain_rule_matches_the_python_pattern(template: dict[str, Any]) -> None:
    pattern = json.loads(json.dumps(template["Resources"]["ChainRule"]["Properties"]["EventPattern"]))
    expected = chain_event_pattern("capfc")
    for branch, key in zip(pattern["$or"], ("ProcessingJobName", "TrainingJobName"), strict=True):
        branch["detail"][key] = [{"prefix": "capfc-"}]  # the template's Fn::Sub of ${JobPrefix}-
    assert pattern == expected


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_stack_on_moto_wires_the_handler_to_sagemaker(clients: AwsClients, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    suffix = uuid.uuid4().hex[:8]
    s3 = clients.client("s3")
    artifacts = f"artifacts-{suffix}"
    s3.create_bucket(Bucket=artifacts)
    s3.put_object(Bucket=artifacts, Key="capfc-lambda.zip",
                  Body=build_lambda_zip(tmp_path / "capfc-lambda.zip").read_bytes())
    parameters = {"LakeBucketName": f"capfc-lake-{suffix}", "LambdaCodeBucket": artifacts, "JobPrefix": f"c{suffix}",
                  "ScheduleRuleName": f"capfc-{suffix}", "Stages": "etl,forecast,risk,report",
                  "ConfigFileName": "_config/capfc.yaml", "ImageDigest": DIGEST, "ImageTag": "1.0"}
    cloudformation = clients.client("cloudformation")
    cloudformation.create_stack(StackName=f"capfc-{suffix}", TemplateBody=TEMPLATE.read_text(),
                                Capabilities=["CAPABILITY_IAM"],
                                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    stack = cloudformation.describe_stacks(StackName=f"capfc-{suffix}")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

    encryption = s3.get_bucket_encryption(Bucket=parameters["LakeBucketName"])
    assert encryption["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"] == \
        {"SSEAlgorithm": "AES256"}
    events = clients.client("events")
    assert events.describe_rule(Name=f"capfc-{suffix}")["ScheduleExpression"] == "cron(0 3 * * ? *)"
    chain = json.loads(events.describe_rule(Name=f"capfc-{suffix}-chain")["EventPattern"])
    assert chain == chain_event_pattern(f"c{suffix}")
    function = clients.client("lambda").get_function_configuration(FunctionName=f"c{suffix}-scheduler")
    assert events.list_targets_by_rule(Rule=f"capfc-{suffix}")["Targets"][0]["Arn"] == function["FunctionArn"]
    assert function["Handler"] == "capacity_forecaster.aws.lambda_handler.handler"
    # Operations: retries and a dead-letter queue on every path, SSE-SQS without a key, log retention.
    dlq = outputs["DeadLetterQueueArn"]
    # (moto's CloudFormation drops the function's DeadLetterConfig; test_operations... checks the template)
    for rule in (f"capfc-{suffix}", f"capfc-{suffix}-chain", f"capfc-{suffix}-alarm"):
        (target,) = events.list_targets_by_rule(Rule=rule)["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": dlq} and target["RetryPolicy"]["MaximumRetryAttempts"] == 4
    alarm_target = events.list_targets_by_rule(Rule=f"capfc-{suffix}-alarm")["Targets"][0]
    assert alarm_target["Arn"] == outputs["AlarmTopicArn"]
    queue_url = clients.client("sqs").get_queue_url(QueueName=dlq.rsplit(":", 1)[1])["QueueUrl"]
    queue = clients.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert queue["SqsManagedSseEnabled"] == "true" and "KmsMasterKeyId" not in queue
    groups = {g["logGroupName"]: g for g in clients.client("logs").describe_log_groups(
        logGroupNamePrefix="/aws/")["logGroups"]}
    for group in (f"/aws/lambda/c{suffix}-scheduler", "/aws/sagemaker/ProcessingJobs", "/aws/sagemaker/TrainingJobs"):
        assert groups[group]["retentionInDays"] == 30 and "kmsKeyId" not in groups[group]

    # The stack's CAPFC_JOB is a valid job spec that agrees with the stack outputs ...
    environ = function["Environment"]["Variables"]
    spec = load_spec(environ)
    assert spec == JobSpec.from_mapping(json.loads(environ["CAPFC_JOB"]))
    assert spec.lake_uri == outputs["LakeUri"] and spec.role_arn == outputs["SageMakerRoleArn"]
    assert spec.image_uri == outputs["ImageUri"] and spec.stages == ("etl", "forecast", "risk", "report")
    assert spec.image_uri.endswith(f"/capfc@{DIGEST}")  # the digest wins over the tag
    assert spec.subnet_ids == () and spec.security_group_ids == ()  # no VPC: SageMaker's network
    assert spec.glue_database == "capacity_forecaster" and spec.region == "us-east-1"
    job_role = next(r["PhysicalResourceId"] for r in cloudformation.list_stack_resources(
        StackName=f"capfc-{suffix}")["StackResourceSummaries"] if r["LogicalResourceId"] == "SageMakerJobRole")
    assert "capfc-glue" in clients.client("iam").list_role_policies(RoleName=job_role)["PolicyNames"]
    assert "JobRoleVpcPolicy" not in {r["LogicalResourceId"] for r in cloudformation.list_stack_resources(
        StackName=f"capfc-{suffix}")["StackResourceSummaries"]}
    assert spec.config_s3_uri == f"{outputs['LakeUri']}/_config/capfc.yaml"
    # ... and the handler, configured exactly like the deployed function, starts the first stage.
    monkeypatch.setenv("CAPFC_JOB", environ["CAPFC_JOB"])
    result = handler({"id": f"ev-{suffix}", "time": "2026-01-05T03:00:00Z", "source": "aws.events",
                      "detail-type": "Scheduled Event"}, None)
    assert result["action"] == "started" and result["job"]["stage"] == "etl"
    described = clients.client("sagemaker").describe_processing_job(ProcessingJobName=result["job"]["job_name"])
    assert described["RoleArn"] == outputs["SageMakerRoleArn"]
    assert described["AppSpecification"]["ImageUri"] == outputs["ImageUri"]
    assert described["NetworkConfig"] == {"EnableNetworkIsolation": False}
    assert described["AppSpecification"]["ContainerArguments"][-2:] == [
        "--config", "/opt/ml/processing/input/config/capfc.yaml"]
    assert job_status(result["job"]["job_name"], clients)["stage"] == "etl"


FAILED_EVENT = {"source": "aws.sagemaker", "detail-type": "SageMaker Processing Job State Change",
                "detail": {"ProcessingJobName": "capfc-etl-20260105-030000-abcd1234", "ProcessingJobStatus": "Failed"}}


def test_operations_failed_jobs_and_dead_letters_reach_the_topic(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    assert resources["SchedulerFunction"]["Properties"]["DeadLetterConfig"] == {
        "TargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}}
    pattern = json.loads(json.dumps(template["Resources"]["FailedJobRule"]["Properties"]["EventPattern"]))
    processing, training = pattern["$or"]
    assert processing["detail"]["ProcessingJobStatus"] == ["Failed"]
    assert training["detail-type"] == ["SageMaker Training Job State Change"]
    assert training["detail"]["TrainingJobStatus"] == ["Failed"]
    for branch, key in ((processing, "ProcessingJobName"), (training, "TrainingJobName")):
        assert branch["detail"][key] == [{"prefix": {"Fn::Sub": "${JobPrefix}-"}}]
    alarms = [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert {a["MetricName"] for a in alarms} == {"ApproximateNumberOfMessagesVisible", "Errors"}
    assert all(a["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms)


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_stack_with_kms_key_boundary_and_email_on_moto(clients: AwsClients, template: dict[str, Any]) -> None:
    suffix = uuid.uuid4().hex[:8]
    s3 = clients.client("s3")
    s3.create_bucket(Bucket=f"artifacts-{suffix}")
    s3.put_object(Bucket=f"artifacts-{suffix}", Key="capfc-lambda.zip", Body=b"PK")
    key = clients.client("kms").create_key(Description="capfc test")["KeyMetadata"]["Arn"]
    boundary = clients.client("iam").create_policy(PolicyName=f"boundary-{suffix}", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    boundary_arn = boundary["Policy"]["Arn"]
    ec2 = clients.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.20.{i}.0/24")["Subnet"]["SubnetId"] for i in (1, 2)]
    sg = ec2.create_security_group(GroupName=f"capfc-{suffix}", Description="capfc jobs", VpcId=vpc)["GroupId"]
    parameters = {"LakeBucketName": f"capfc-lake-{suffix}", "LambdaCodeBucket": f"artifacts-{suffix}",
                  "ImageTag": "1.0", "SubnetIds": ",".join(subnets), "SecurityGroupIds": sg, "VpcId": vpc,
                  "JobPrefix": f"k{suffix}", "ScheduleRuleName": f"capfc-{suffix}", "KmsKeyArn": key,
                  "PermissionsBoundaryArn": boundary_arn, "AlarmEmail": "capacity-team@example.com",
                  "CreateSageMakerLogGroups": "false", "LogRetentionDays": "90", "RefreshGlueTables": "false"}
    cloudformation = clients.client("cloudformation")
    cloudformation.create_stack(StackName=f"capfc-{suffix}", TemplateBody=TEMPLATE.read_text(),
                                Capabilities=["CAPABILITY_IAM"],
                                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    stack = cloudformation.describe_stacks(StackName=f"capfc-{suffix}")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    (rule,) = s3.get_bucket_encryption(Bucket=parameters["LakeBucketName"])[
        "ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}
    # (moto's CloudFormation drops BucketKeyEnabled; test_bucket_is_encrypted... checks the template)
    queue_url = clients.client("sqs").get_queue_url(QueueName=outputs["DeadLetterQueueArn"].rsplit(":", 1)[1])
    queue = clients.client("sqs").get_queue_attributes(QueueUrl=queue_url["QueueUrl"], AttributeNames=["All"])
    assert queue["Attributes"]["KmsMasterKeyId"] == key
    topic = clients.client("sns").get_topic_attributes(TopicArn=outputs["AlarmTopicArn"])["Attributes"]
    assert topic["KmsMasterKeyId"] == key
    (group,) = clients.client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/k{suffix}-")["logGroups"]
    assert group["retentionInDays"] == 90  # (moto's CloudFormation drops KmsKeyId: checked on the template)
    for name in ("SchedulerLogGroup", "ProcessingJobsLogGroup", "TrainingJobsLogGroup"):
        properties = template["Resources"][name]["Properties"]
        assert properties["KmsKeyId"]["Fn::If"][:2] == ["HasKmsKey", {"Ref": "KmsKeyArn"}]
        assert properties["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    resources = cloudformation.list_stack_resources(StackName=f"capfc-{suffix}")["StackResourceSummaries"]
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}
    assert "ProcessingJobsLogGroup" not in physical  # CreateSageMakerLogGroups=false
    # The VPC reaches the jobs through CAPFC_JOB, and the job role gets its network-interface policy.
    function = clients.client("lambda").get_function_configuration(FunctionName=f"k{suffix}-scheduler")
    spec = load_spec(function["Environment"]["Variables"])
    assert spec.subnet_ids == tuple(subnets) and spec.security_group_ids == (sg,)
    assert spec.image_uri == outputs["ImageUri"] and spec.image_uri.endswith("/capfc:1.0")
    assert spec.vpc_config() == {"SecurityGroupIds": [sg], "Subnets": subnets}
    assert "JobRoleVpcPolicy" in physical
    # The jobs write the lake with the stack's key (helper-62: they asked for SSE-S3, the lake.sse default).
    assert spec.kms_key_id is None  # the training job's output and volume keep SageMaker's default key
    assert spec.environment == {"CAPFC_LAKE__SSE": "aws:kms", "CAPFC_LAKE__SSE_KMS_KEY_ID": key}
    assert processing_job_request(spec, "run", f"k{suffix}-run-20260101-000000-abcdef12",
                                  ("run",))["Environment"]["CAPFC_LAKE__SSE_KMS_KEY_ID"] == key
    assert spec.glue_database is None  # RefreshGlueTables=false: the verify step leaves Glue alone ...
    assert "JobRoleGluePolicy" not in physical
    iam = clients.client("iam")
    for role in ("SageMakerJobRole", "SchedulerRole"):
        described = iam.get_role(RoleName=physical[role])["Role"]
        assert described["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary_arn
        assert iam.list_role_policies(RoleName=physical[role])["PolicyNames"].count("capfc-kms") == 1


def test_schedule_parameter_pattern_agrees_with_capfcs_check(template: dict[str, Any]) -> None:
    """helper-65: moto's CloudFormation ignores AllowedPattern and cfn-lint checks only the default, so the pattern
    is checked here against names.problem: it passes every expression capfc passes and refuses the shapes it can
    see (both or neither day field '?', 'rate(1 days)'); field ranges are left to EventBridge."""
    import re

    from capacity_forecaster.aws.names import problem

    pattern = template["Parameters"]["ScheduleExpression"]["AllowedPattern"]
    valid = ["cron(0 3 * * ? *)", "cron(0/15 8-17 ? * MON-FRI *)", "cron(0 12 ? * MON#1 *)", "cron(0 3 L * ? *)",
             "cron(15 10 ? * 6L 2026-2030)", "rate(1 day)", "rate(5 minutes)", "rate(12 hours)"]
    shapes = ["cron(0 3 * * * *)", "cron(0 3 ? * ? *)", "rate(1 days)", "rate(5 minute)", "cron(0 3 * * ?)",
              "rate(0 days)"]
    for expression in valid:
        assert problem("schedule", expression) is None and re.fullmatch(pattern, expression), expression
    for expression in shapes:
        assert problem("schedule", expression) is not None and not re.fullmatch(pattern, expression), expression
    assert re.fullmatch(pattern, template["Parameters"]["ScheduleExpression"]["Default"])


def test_image_and_vpc_parameters_must_be_complete(template: dict[str, Any]) -> None:
    """CloudFormation refuses a stack without an image reference, or with half a VPC (moto skips Rules)."""
    parameters = template["Parameters"]
    assert parameters["ImageTag"]["Default"] == "" and parameters["ImageDigest"]["Default"] == ""
    assert parameters["ImageDigest"]["AllowedPattern"] == "^(sha256:[a-f0-9]{64})?$"
    rules = template["Rules"]
    (image,) = rules["ImageIsPinned"]["Assertions"]
    assert image["Assert"]["Fn::Or"] == [{"Fn::Not": [{"Fn::Equals": [{"Ref": key}, ""]}]}
                                         for key in ("ImageDigest", "ImageTag")]
    (vpc,) = rules["VpcIsComplete"]["Assertions"]
    none_given, all_given = vpc["Assert"]["Fn::Or"]
    assert len(none_given["Fn::And"]) == len(all_given["Fn::And"]) == 3
    outputs = template["Outputs"]["ImageUri"]["Value"]["Fn::If"]
    assert outputs[0] == "HasDigest" and "@${ImageDigest}" in outputs[1]["Fn::Sub"]
