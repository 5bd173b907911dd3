"""AWS Lambda entry point: start the scheduled capfc stage job(s) on SageMaker.

Deployed as ``capacity_forecaster.aws.lambda_handler.handler`` from the small bundle built by
``capfc aws lambda-zip`` (standard library + boto3 from the Lambda runtime; no pandas, no pydantic).
Settings come from the ``CAPFC_JOB`` environment variable: the JSON of a ``sagemaker.JobSpec``
(set by deploy/cloudformation.yaml). No credentials: the function's role supplies them.

Events handled:

* an EventBridge schedule (or a manual test event, optionally ``{"stages": ["etl", "forecast"]}``):
  start the first stage of the chain, unless a capfc job is still running (one writer per lake);
* a "SageMaker Processing Job State Change" event for a capfc job, or a "SageMaker Training Job
  State Change" event (the forecast step runs as a spot training job when ``forecast_training``):
  when it completed, start the next stage of its chain (recorded in the job's ``capfc:chain`` tag);
  when it failed or stopped, report that and start nothing. Training jobs also report
  non-final changes (a spot interruption, a restart); those are ignored.

Job names derive from the event, so a retried event (Lambda's asynchronous retries, or a
redelivery by EventBridge) never starts a second job.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from capacity_forecaster.aws.clients import AwsClients, translated
from capacity_forecaster.aws.sagemaker import (
    CHAIN_TAG,
    STAGE_TAG,
    JobSpec,
    check_chain,
    parse_chain,
    running_jobs,
)
from capacity_forecaster.aws.training import TERMINAL, running_training_jobs, submit_step
from capacity_forecaster.errors import CapacityForecasterError, ConfigError

log = logging.getLogger(__name__)

JOB_ENV = "CAPFC_JOB"
STATE_CHANGE = "SageMaker Processing Job State Change"
TRAINING_STATE_CHANGE = "SageMaker Training Job State Change"
# The detail keys of each event: name, status, ARN.
_DETAIL_KEYS = {STATE_CHANGE: ("ProcessingJobName", "ProcessingJobStatus", "ProcessingJobArn"),
                TRAINING_STATE_CHANGE: ("TrainingJobName", "TrainingJobStatus", "TrainingJobArn")}


def load_spec(environ: Mapping[str, str]) -> JobSpec:
    """The job settings from the ``CAPFC_JOB`` variable.

    Raises:
        ConfigError: the variable is missing or not a valid JSON object of JobSpec fields.
    """
    raw = environ.get(JOB_ENV)
    if not raw:
        raise ConfigError(f"environment variable {JOB_ENV} is not set; it holds the job settings as JSON")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(f"environment variable {JOB_ENV} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"environment variable {JOB_ENV} must hold a JSON object")
    return JobSpec.from_mapping(data)


def _event_time(event: Mapping[str, Any]) -> dt.datetime:
    raw = event.get("time")
    if isinstance(raw, str):
        try:
            return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            pass
    return dt.datetime.now(dt.UTC)


def _start_chain(event: Mapping[str, Any], spec: JobSpec, clients: AwsClients) -> dict[str, Any]:
    requested = event.get("stages")
    if isinstance(requested, str):
        requested = [s.strip() for s in requested.split(",") if s.strip()]
    chain = check_chain(tuple(requested), "event stages") if requested else spec.stages
    busy = running_jobs(spec.job_prefix, clients) + running_training_jobs(spec.job_prefix, clients)
    if busy:
        log.warning("not starting %s: capfc job(s) %s still running", chain[0], ", ".join(busy))
        return {"action": "skipped", "reason": f"job(s) still running: {', '.join(busy)}", "running": busy,
                "chain": list(chain)}
    token = str(event.get("id") or "")
    job = submit_step(spec, chain[0], clients=clients, chain=chain, when=_event_time(event), token=token or None)
    return {"action": "started" if job["submitted"] else "already-started", "chain": list(chain), "job": job}


def _continue_chain(event: Mapping[str, Any], spec: JobSpec, clients: AwsClients) -> dict[str, Any]:
    detail = event.get("detail") or {}
    name_key, status_key, arn_key = _DETAIL_KEYS[str(event.get("detail-type"))]
    name = str(detail.get(name_key, ""))
    status = detail.get(status_key)
    arn = detail.get(arn_key)
    if not name.startswith(f"{spec.job_prefix}-") or not arn:
        return {"action": "ignored", "reason": f"job {name or '?'} is not a {spec.job_prefix}- job"}
    if status not in TERMINAL:  # a training job's InProgress/Stopping changes (spot interruption, restart)
        return {"action": "ignored", "reason": f"job {name} is {status} ({detail.get('SecondaryStatus')}); "
                "waiting for it to end"}
    if status != "Completed":
        log.error("capfc job %s ended %s (%s); the chain stops here", name, status, detail.get("FailureReason"))
        return {"action": "chain-stopped", "job_name": name, "status": status,
                "failure_reason": detail.get("FailureReason")}
    with translated(f"sagemaker ListTags {name}"):
        tags = {t["Key"]: t["Value"] for t in clients.client("sagemaker").list_tags(ResourceArn=arn).get("Tags", [])}
    if STAGE_TAG not in tags or CHAIN_TAG not in tags:
        return {"action": "ignored", "reason": f"job {name} has no {STAGE_TAG}/{CHAIN_TAG} tags"}
    chain = parse_chain(tags[CHAIN_TAG])
    position = chain.index(tags[STAGE_TAG]) if tags[STAGE_TAG] in chain else len(chain)
    if position + 1 >= len(chain):
        log.info("capfc chain %s finished with job %s", "+".join(chain), name)
        return {"action": "chain-finished", "job_name": name, "chain": list(chain)}
    job = submit_step(spec, chain[position + 1], clients=clients, chain=chain, when=_event_time(event), token=name)
    return {"action": "started" if job["submitted"] else "already-started", "after": name, "chain": list(chain),
            "job": job}


def handle(event: Mapping[str, Any], environ: Mapping[str, str], clients: AwsClients) -> dict[str, Any]:
    """Handle one event with explicit settings and clients (what ``handler`` does, testable).

    Returns:
        A JSON-able status: ``action`` (started, already-started, skipped, chain-finished,
        chain-stopped, ignored) and the job or reason.
    """
    _check_event(event)
    spec = load_spec(environ)
    if event.get("detail-type") in _DETAIL_KEYS and event.get("source") == "aws.sagemaker":
        return _continue_chain(event, spec, clients)
    return _start_chain(event, spec, clients)


def _check_event(event: Any) -> None:
    """Refuse an event of another shape in one line (helper-62: a list, a string, ``{"stages": 5}`` or a text
    ``detail`` ended in AttributeError/TypeError; ``{"stages": {"run": 1}}`` started a job)."""
    if not isinstance(event, Mapping):
        raise ConfigError(f"event: expected a JSON object (an EventBridge event or {{\"stages\": \"run\"}}), got "
                          f"{type(event).__name__}")
    stages = event.get("stages")
    if stages is not None and not (isinstance(stages, str) or (
            isinstance(stages, list) and all(isinstance(s, str) for s in stages))):
        raise ConfigError(f"event: 'stages' must be text (\"run\" or \"etl,forecast\") or a list of stage names, "
                          f"got {type(stages).__name__}")
    if "detail" in event and event["detail"] is not None and not isinstance(event["detail"], Mapping):
        raise ConfigError(f"event: 'detail' must be an object, got {type(event['detail']).__name__}")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda entry point.

    Returns:
        See ``handle``. A configuration problem or a failed AWS call raises: EventBridge invokes the
        function asynchronously, so Lambda itself retries the event twice and then puts it in the
        function's dead-letter queue (EventBridge's own retry policy covers only failed deliveries,
        such as throttling). The deterministic job name keeps retries from duplicating jobs.
    """
    if "AWS_LAMBDA_FUNCTION_NAME" in os.environ:  # inside Lambda: its root handler writes to CloudWatch
        logging.getLogger().setLevel(logging.INFO)
    try:
        result = handle(event or {}, os.environ, AwsClients())
    except CapacityForecasterError as err:
        log.error("capfc: %s", err)
        raise
    log.info("capfc: %s", json.dumps(result, default=str))
    return result
