"""EventBridge rules that invoke the capfc Lambda: a schedule, and a chain rule for stage-by-stage runs.

``schedule`` creates (or updates) two rules targeting the Lambda of ``lambda_handler.py``:

* ``<rule>``: the cron/rate schedule that starts the configured chain;
* ``<rule>-chain``: "SageMaker Processing Job State Change" and "SageMaker Training Job State
  Change" events of ``<prefix>-*`` jobs that completed, failed or stopped, so the Lambda can start
  the next stage or report the stop.

It also grants EventBridge permission to invoke the function, scoped to each rule's ARN.
Re-running updates the rules in place (``PutRule``/``PutTargets`` are upserts).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from capacity_forecaster.aws import names
from capacity_forecaster.aws.clients import AwsClients, is_exists, is_missing, translated
from capacity_forecaster.aws.lambda_handler import STATE_CHANGE, TRAINING_STATE_CHANGE
from capacity_forecaster.errors import AwsError, ConfigError

log = logging.getLogger(__name__)

TARGET_ID = "capfc-lambda"
# EventBridge retries a failed asynchronous delivery to the Lambda for up to this long / this often;
# events it gives up on go to the dead-letter queue when one is given.
RETRY_POLICY = {"MaximumRetryAttempts": 4, "MaximumEventAgeInSeconds": 3600}


def rule_request(name: str, description: str, tags: dict[str, str], *, schedule_expression: str | None = None,
                 event_pattern: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``PutRule`` request of a schedule rule or an event-pattern rule (pure)."""
    request: dict[str, Any] = {"Name": name, "Description": description, "State": "ENABLED",
                               "Tags": [{"Key": k, "Value": v} for k, v in sorted(tags.items())]}
    if schedule_expression is not None:
        request["ScheduleExpression"] = schedule_expression
    if event_pattern is not None:
        request["EventPattern"] = json.dumps(event_pattern)
    return request


def targets_request(rule_name: str, lambda_arn: str, dead_letter_arn: str | None = None) -> dict[str, Any]:
    """The ``PutTargets`` request pointing a rule at the Lambda, with retries and an optional DLQ (pure)."""
    target: dict[str, Any] = {"Id": TARGET_ID, "Arn": lambda_arn, "RetryPolicy": dict(RETRY_POLICY)}
    if dead_letter_arn:
        target["DeadLetterConfig"] = {"Arn": dead_letter_arn}
    return {"Rule": rule_name, "Targets": [target]}


def permission_request(lambda_arn: str, rule_name: str, rule_arn: str) -> dict[str, Any]:
    """The ``AddPermission`` request letting one rule (and only it) invoke the Lambda (pure)."""
    return {"FunctionName": lambda_arn, "StatementId": f"{rule_name}-invoke", "Action": "lambda:InvokeFunction",
            "Principal": "events.amazonaws.com", "SourceArn": rule_arn}


def chain_event_pattern(job_prefix: str) -> dict[str, Any]:
    """EventBridge pattern matching the end of every ``<job_prefix>-*`` processing or training job."""
    names.check("job_prefix", job_prefix, "job_prefix")
    ended = ["Completed", "Failed", "Stopped"]
    return {
        "source": ["aws.sagemaker"],
        "$or": [
            {"detail-type": [STATE_CHANGE],
             "detail": {"ProcessingJobName": [{"prefix": f"{job_prefix}-"}], "ProcessingJobStatus": ended}},
            {"detail-type": [TRAINING_STATE_CHANGE],
             "detail": {"TrainingJobName": [{"prefix": f"{job_prefix}-"}], "TrainingJobStatus": ended}},
        ],
    }


def _allow_invoke(lambda_arn: str, rule_name: str, rule_arn: str, clients: AwsClients) -> bool:
    """Let EventBridge invoke the function for this rule only; returns whether a statement was added."""
    function = clients.client("lambda")
    request = permission_request(lambda_arn, rule_name, rule_arn)
    statement_id = request["StatementId"]
    try:
        with translated(f"lambda GetPolicy {lambda_arn}"):
            policy = json.loads(function.get_policy(FunctionName=lambda_arn)["Policy"])
        if any(s.get("Sid") == statement_id for s in policy.get("Statement", [])):
            return False
    except AwsError as err:
        if not is_missing(err):
            raise
    try:
        with translated(f"lambda AddPermission {lambda_arn}"):
            function.add_permission(**request)
    except AwsError as err:
        if is_exists(err):
            return False
        raise
    return True


def _kept_dead_letter(name: str, clients: AwsClients) -> str | None:
    """The dead-letter queue the rule's capfc target already has, if any (so an update without
    ``--dead-letter-arn`` keeps the stack's queue: helper-62, it was dropped)."""
    try:
        with translated(f"events ListTargetsByRule {name}"):
            targets = clients.client("events").list_targets_by_rule(Rule=name).get("Targets", [])
    except AwsError as err:
        if is_missing(err):
            return None
        raise
    for target in targets:
        if target.get("Id") == TARGET_ID and target.get("DeadLetterConfig", {}).get("Arn"):
            return str(target["DeadLetterConfig"]["Arn"])
    return None


def _check_chain_prefix(name: str, job_prefix: str, clients: AwsClients) -> None:
    """Refuse to point an existing chain rule at other jobs than it matches (helper-62: an ``aws.job_prefix``
    other than the stack's JobPrefix rewrote the stack's chain rule, and the chain stopped after its first job)."""
    try:
        with translated(f"events DescribeRule {name}"):
            pattern = clients.client("events").describe_rule(Name=name).get("EventPattern")
    except AwsError as err:
        if is_missing(err):
            return
        raise
    text = json.dumps(json.loads(pattern)) if pattern else ""
    if text and f'"prefix": "{job_prefix}-"' not in text:
        raise ConfigError(f"rule {name} already starts the next stage of other jobs than '{job_prefix}-*' "
                          f"({text[:200]}); set aws.job_prefix to the prefix its jobs use (the stack's JobPrefix) "
                          "or choose another --rule")


def _put_rule(rule: dict[str, Any], lambda_arn: str, dead_letter_arn: str | None, clients: AwsClients) -> str:
    events = clients.client("events")
    name = rule["Name"]
    dead_letter_arn = dead_letter_arn or _kept_dead_letter(name, clients)
    with translated(f"events PutRule {name}"):
        rule_arn = str(events.put_rule(**rule)["RuleArn"])
    with translated(f"events PutTargets {name}"):
        response = events.put_targets(**targets_request(name, lambda_arn, dead_letter_arn))
    if response.get("FailedEntryCount"):
        raise AwsError(f"events PutTargets {name} failed: {response.get('FailedEntries')}")
    return rule_arn


def schedule(
    rule_name: str,
    cron_expression: str,
    lambda_arn: str,
    *,
    job_prefix: str = "capfc",
    chain_rule: bool = True,
    grant_invoke: bool = True,
    dead_letter_arn: str | None = None,
    tags: dict[str, str] | None = None,
    clients: AwsClients | None = None,
) -> dict[str, Any]:
    """Create or update the schedule (and chain) rule targeting the capfc Lambda.

    Args:
        rule_name: EventBridge rule name (checked); the chain rule is ``<rule_name>-chain``.
        cron_expression: ``cron(...)`` (six fields, UTC) or ``rate(...)``.
        lambda_arn: ARN of the function deployed with ``lambda_handler.handler``.
        job_prefix: job name prefix the chain rule listens for.
        chain_rule: also create the chain rule (needed when the chain has more than one stage).
        grant_invoke: add the Lambda resource-policy statements letting these rules invoke it.
        dead_letter_arn: SQS queue ARN for events EventBridge could not deliver after its retries
            (the stack's ``DeadLetterQueueArn`` output); the queue policy must allow EventBridge. None keeps
            the queue a rule's capfc target already has.
        tags: tags for the rules.
        clients: boto3 client factory.

    Returns:
        ``rule, rule_arn, schedule, chain_rule, chain_rule_arn, target, permissions_added``.

    Raises:
        ConfigError: an invalid name, expression or ARN, or an existing chain rule that matches another
            job prefix.
        AwsError: a call failed.
    """
    names.check("rule_name", rule_name, "schedule rule")
    names.check("schedule", cron_expression, "schedule expression")
    names.check("lambda_arn", lambda_arn, "Lambda ARN")
    if dead_letter_arn:
        names.check("sqs_arn", dead_letter_arn, "dead-letter queue ARN")
    tags = names.check_tags(dict(tags or {}))
    clients = clients or AwsClients()
    description = "AWS-CapacityForecaster: start the scheduled capfc stage job(s) on SageMaker"
    if chain_rule:  # before anything is changed
        _check_chain_prefix(f"{rule_name}-chain", job_prefix, clients)
    rule_arn = _put_rule(rule_request(rule_name, description, tags, schedule_expression=cron_expression),
                         lambda_arn, dead_letter_arn, clients)
    result: dict[str, Any] = {"rule": rule_name, "rule_arn": rule_arn, "schedule": cron_expression,
                              "chain_rule": None, "chain_rule_arn": None, "target": lambda_arn,
                              "permissions_added": 0}
    rules = [(rule_name, rule_arn)]
    if chain_rule:
        chain_name = f"{rule_name}-chain"
        chain_arn = _put_rule(rule_request(chain_name, "AWS-CapacityForecaster: start the next stage when a capfc "
                                           "job ends", tags, event_pattern=chain_event_pattern(job_prefix)),
                              lambda_arn, dead_letter_arn, clients)
        result |= {"chain_rule": chain_name, "chain_rule_arn": chain_arn}
        rules.append((chain_name, chain_arn))
    if grant_invoke:
        result["permissions_added"] = sum(_allow_invoke(lambda_arn, name, arn, clients) for name, arn in rules)
    log.info("schedule %s (%s) -> %s", rule_name, cron_expression, lambda_arn)
    return result
