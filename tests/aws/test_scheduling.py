"""EventBridge schedule + chain rules and the Lambda permission, created against moto and read back."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import pytest

from capacity_forecaster.aws.clients import AwsClients
from capacity_forecaster.aws.scheduling import RETRY_POLICY, TARGET_ID, chain_event_pattern, schedule
from capacity_forecaster.errors import ConfigError


@pytest.fixture()
def lambda_arn(clients: AwsClients) -> str:
    """A function on moto to target (created, never invoked: moto would need docker for that)."""
    iam = clients.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=f"r-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(trust))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return {}\n")
    function = clients.client("lambda").create_function(
        FunctionName=f"capfc-{uuid.uuid4().hex[:8]}", Runtime="python3.11", Role=role["Role"]["Arn"],
        Handler="index.handler", Code={"ZipFile": code.getvalue()})
    return str(function["FunctionArn"])


def test_schedule_creates_rules_targets_and_scoped_permissions(clients: AwsClients, lambda_arn: str) -> None:
    rule = f"capfc-daily-{uuid.uuid4().hex[:6]}"
    result = schedule(rule, "cron(0 3 * * ? *)", lambda_arn, job_prefix="capfc", tags={"team": "cap"},
                      clients=clients)
    events = clients.client("events")
    described = events.describe_rule(Name=rule)
    assert described["ScheduleExpression"] == "cron(0 3 * * ? *)" and described["State"] == "ENABLED"
    assert events.list_targets_by_rule(Rule=rule)["Targets"] == [
        {"Id": TARGET_ID, "Arn": lambda_arn, "RetryPolicy": RETRY_POLICY}]
    chain = events.describe_rule(Name=f"{rule}-chain")
    assert json.loads(chain["EventPattern"]) == chain_event_pattern("capfc")
    assert events.list_targets_by_rule(Rule=f"{rule}-chain")["Targets"][0]["Arn"] == lambda_arn
    assert {"Key": "team", "Value": "cap"} in events.list_tags_for_resource(ResourceARN=result["rule_arn"])["Tags"]
    policy = json.loads(clients.client("lambda").get_policy(FunctionName=lambda_arn)["Policy"])
    sources = sorted(s["Condition"]["ArnLike"]["AWS:SourceArn"] for s in policy["Statement"])
    assert sources == sorted([result["rule_arn"], result["chain_rule_arn"]])
    assert all(s["Principal"] == {"Service": "events.amazonaws.com"} for s in policy["Statement"])
    assert result["permissions_added"] == 2

    again = schedule(rule, "rate(12 hours)", lambda_arn, job_prefix="capfc", clients=clients)
    assert events.describe_rule(Name=rule)["ScheduleExpression"] == "rate(12 hours)"  # updated in place
    assert again["permissions_added"] == 0
    assert len(json.loads(clients.client("lambda").get_policy(FunctionName=lambda_arn)["Policy"])["Statement"]) == 2


def test_targets_carry_the_dead_letter_queue(clients: AwsClients, lambda_arn: str) -> None:
    queue = clients.client("sqs").create_queue(QueueName=f"capfc-dlq-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    queue_arn = clients.client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    dlq = queue_arn["Attributes"]["QueueArn"]
    rule = f"capfc-dlq-{uuid.uuid4().hex[:6]}"
    schedule(rule, "rate(1 day)", lambda_arn, chain_rule=False, dead_letter_arn=dlq, clients=clients)
    (target,) = clients.client("events").list_targets_by_rule(Rule=rule)["Targets"]
    assert target["DeadLetterConfig"] == {"Arn": dlq} and target["RetryPolicy"] == RETRY_POLICY


def test_an_update_keeps_the_dead_letter_queue_and_the_chain_prefix(clients: AwsClients, lambda_arn: str) -> None:
    """helper-62: ``capfc aws schedule --schedule ...`` on the stack's rule (docs step 6) dropped its dead-letter
    queue, and an aws.job_prefix other than the stack's JobPrefix rewrote its chain rule to other jobs."""
    queue = clients.client("sqs").create_queue(QueueName=f"capfc-dlq-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    dlq = clients.client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    rule = f"capfc-keep-{uuid.uuid4().hex[:6]}"
    schedule(rule, "rate(1 day)", lambda_arn, job_prefix="stack", dead_letter_arn=dlq, clients=clients)
    schedule(rule, "cron(30 2 * * ? *)", lambda_arn, job_prefix="stack", clients=clients)
    events = clients.client("events")
    for name in (rule, f"{rule}-chain"):
        (target,) = events.list_targets_by_rule(Rule=name)["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": dlq}, name
    with pytest.raises(ConfigError, match="other jobs than 'capfc-\\*'.*aws.job_prefix"):
        schedule(rule, "rate(2 days)", lambda_arn, job_prefix="capfc", clients=clients)
    assert events.describe_rule(Name=rule)["ScheduleExpression"] == "cron(30 2 * * ? *)"  # nothing changed
    assert json.loads(events.describe_rule(Name=f"{rule}-chain")["EventPattern"]) == chain_event_pattern("stack")


def test_single_job_schedule_needs_no_chain_rule(clients: AwsClients, lambda_arn: str) -> None:
    rule = f"capfc-once-{uuid.uuid4().hex[:6]}"
    result = schedule(rule, "rate(1 day)", lambda_arn, chain_rule=False, clients=clients)
    assert result["chain_rule"] is None
    assert [r["Name"] for r in clients.client("events").list_rules(NamePrefix=rule)["Rules"]] == [rule]


@pytest.mark.parametrize(
    ("rule", "expression", "arn", "message"),
    [
        ("capfc daily", "rate(1 day)", "arn:aws:lambda:us-east-1:123456789012:function:f", "EventBridge rule name"),
        ("capfc.daily", "rate(1 day)", "arn:aws:lambda:us-east-1:123456789012:function:f", "no '.'"),
        ("capfc", "0 3 * * *", "arn:aws:lambda:us-east-1:123456789012:function:f", "cron\\(<min>"),
        ("capfc", "rate(1 days)", "arn:aws:lambda:us-east-1:123456789012:function:f", "schedule expression"),
        ("capfc", "cron(0 3 * * ?)", "arn:aws:lambda:us-east-1:123456789012:function:f", "schedule expression"),
        ("capfc", "rate(1 day)", "capfc-scheduler", "Lambda function ARN"),
        # helper-62: EventBridge refuses these, moto accepts them.
        ("capfc", "cron(0 3 * * * *)", "arn:aws:lambda:us-east-1:123456789012:function:f", "exactly one of day-of"),
        ("capfc", "cron(61 3 * * ? *)", "arn:aws:lambda:us-east-1:123456789012:function:f", "minutes '61'"),
        ("capfc", "cron(0 25 * * ? *)", "arn:aws:lambda:us-east-1:123456789012:function:f", "hours '25'"),
        ("capfc", "cron(0 3 ? * 8 *)", "arn:aws:lambda:us-east-1:123456789012:function:f", "day-of-week '8'"),
        ("capfc", "cron(0 3 ? * MON-FRY *)", "arn:aws:lambda:us-east-1:123456789012:function:f", "day-of-week"),
        ("capfc", "cron(\u00b2 3 * * ? *)", "arn:aws:lambda:us-east-1:123456789012:function:f", "minutes"),  # helper-65
        ("capfc", "cron(\u0663 3 * * ? *)", "arn:aws:lambda:us-east-1:123456789012:function:f", "minutes"),
        ("capfc", "cron(0 3 ? * 2#9 *)", "arn:aws:lambda:us-east-1:123456789012:function:f", "week of the month"),
    ],
)
def test_bad_schedule_inputs_fail_before_any_call(rule: str, expression: str, arn: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        schedule(rule, expression, arn, clients=AwsClients(region="us-east-1", endpoint_url="http://127.0.0.1:9"))


@pytest.mark.parametrize("expression", ["cron(0 3 * * ? *)", "cron(0/15 8-17 ? * MON-FRI *)", "cron(0 8 L * ? *)",
                                        "cron(15 10 ? * 6L 2026-2030)", "cron(0 9 ? * 2#1 *)", "cron(0 9 15W * ? *)",
                                        "cron(0 3 * JAN,JUL ? *)", "rate(5 minutes)"])
def test_valid_schedules_pass_the_check(expression: str) -> None:
    from capacity_forecaster.aws.names import problem

    assert problem("schedule", expression) is None


def test_capfc_tag_keys_are_refused() -> None:
    """helper-62: a user tag capfc:chain was sent twice beside capfc's own."""
    from capacity_forecaster.aws.names import check_tags

    with pytest.raises(ConfigError, match="tag key 'capfc:chain' is capfc's own"):
        check_tags({"capfc:chain": "x"})
