"""The scheduler Lambda, called directly (moto cannot invoke Lambdas without docker) with a moto SageMaker."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_helpers import IMAGE_URI, ROLE_ARN, FixedSession
from botocore.stub import Stubber

from capacity_forecaster.aws.bundle import HANDLER, MODULES, build_lambda_zip
from capacity_forecaster.aws.clients import AwsClients
from capacity_forecaster.aws.lambda_handler import STATE_CHANGE, handle, handler
from capacity_forecaster.aws.sagemaker import JobSpec, job_status
from capacity_forecaster.errors import ConfigError


@pytest.fixture()
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:6]}"


@pytest.fixture()
def job_env(prefix: str, clients: AwsClients, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """CAPFC_JOB as the stack sets it; boto3 inside the handler reaches moto through AWS_ENDPOINT_URL."""
    spec = JobSpec(image_uri=IMAGE_URI, role_arn=ROLE_ARN, lake_uri="s3://capfc-lake/capfc", job_prefix=prefix)
    monkeypatch.setenv("CAPFC_JOB", spec.to_json())
    return {"CAPFC_JOB": spec.to_json()}


def scheduled_event(event_id: str = "ev-1") -> dict[str, Any]:
    return {"id": event_id, "detail-type": "Scheduled Event", "source": "aws.events",
            "time": "2026-01-05T03:00:00Z", "resources": ["arn:aws:events:us-east-1:123456789012:rule/capfc-daily"],
            "detail": {}}


def state_change(job: dict[str, Any], status: str = "Completed") -> dict[str, Any]:
    return {"id": f"sc-{uuid.uuid4().hex[:6]}", "detail-type": STATE_CHANGE, "source": "aws.sagemaker",
            "time": "2026-01-05T03:40:00Z",
            "detail": {"ProcessingJobName": job["job_name"], "ProcessingJobArn": job["arn"],
                       "ProcessingJobStatus": status, "FailureReason": "boom" if status == "Failed" else None}}


def test_schedule_starts_one_run_job_and_retries_do_not_duplicate(job_env: dict[str, str], prefix: str,
                                                                  clients: AwsClients) -> None:
    result = handler(scheduled_event(), None)
    assert json.loads(json.dumps(result)) == result  # JSON-able
    assert result["action"] == "started" and result["chain"] == ["run"]
    name = result["job"]["job_name"]
    assert name.startswith(f"{prefix}-run-20260105-030000-")
    described = job_status(name, clients)
    assert described["stage"] == "run"
    retry = handler(scheduled_event(), None)
    assert retry["action"] == "already-started" and retry["job"]["job_name"] == name
    other_day = handler(scheduled_event("ev-2"), None)
    assert other_day["job"]["job_name"] != name


def test_stage_chain_runs_one_stage_after_another(job_env: dict[str, str], prefix: str) -> None:
    first = handler({**scheduled_event("ev-chain"), "stages": ["etl", "forecast", "risk", "report"]}, None)
    assert first["action"] == "started" and first["job"]["stage"] == "etl"
    etl = {**first["job"], "arn": job_status(first["job"]["job_name"])["arn"]}
    second = handler(state_change(etl), None)
    assert second["action"] == "started" and second["job"]["stage"] == "forecast" and second["after"] == etl["job_name"]
    assert handler(state_change(etl), None)["action"] == "already-started"  # redelivered event
    job = second["job"]
    for expected in ("risk", "report"):
        job = {**job, "arn": job_status(job["job_name"])["arn"]}
        step = handler(state_change(job), None)
        assert step["job"]["stage"] == expected
        job = step["job"]
    last = handler(state_change({**job, "arn": job_status(job["job_name"])["arn"]}), None)
    assert last["action"] == "chain-finished" and last["chain"] == ["etl", "forecast", "risk", "report"]


def test_failed_job_stops_the_chain_and_foreign_jobs_are_ignored(job_env: dict[str, str]) -> None:
    first = handler({**scheduled_event("ev-fail"), "stages": "etl,forecast"}, None)
    etl = {**first["job"], "arn": job_status(first["job"]["job_name"])["arn"]}
    stopped = handler(state_change(etl, "Failed"), None)
    assert stopped == {"action": "chain-stopped", "job_name": etl["job_name"], "status": "Failed",
                       "failure_reason": "boom"}
    foreign = handler(state_change({"job_name": "someone-else-etl", "arn": "arn:x"}), None)
    assert foreign["action"] == "ignored"


def test_a_running_job_blocks_a_second_writer(job_env: dict[str, str], prefix: str) -> None:
    client = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(client)
    running = f"{prefix}-run-20260104-030000-00000000"
    stub.add_response("list_processing_jobs", {"ProcessingJobSummaries": [{
        "ProcessingJobName": running, "ProcessingJobArn": f"arn:aws:sagemaker:us-east-1:1:processing-job/{running}",
        "CreationTime": dt.datetime(2026, 1, 4), "ProcessingJobStatus": "InProgress"}]})
    stub.add_response("list_processing_jobs", {"ProcessingJobSummaries": []})
    training = f"{prefix}-forecast-20260104-030000-00000000"  # a spot forecast job counts as a writer too
    stub.add_response("list_training_jobs", {"TrainingJobSummaries": [{
        "TrainingJobName": training, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:1:training-job/{training}",
        "CreationTime": dt.datetime(2026, 1, 4), "TrainingJobStatus": "InProgress"}]})
    stub.add_response("list_training_jobs", {"TrainingJobSummaries": []})
    with stub:
        result = handle(scheduled_event(), job_env, AwsClients(session=FixedSession(client)))
    assert result["action"] == "skipped" and result["running"] == [running, training]
    stub.assert_no_pending_responses()  # and nothing was created


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "CAPFC_JOB is not set"), ("{not json", "not valid JSON"), ("[1]", "JSON object"),
     ('{"image_uri": "x"}', "missing role_arn, lake_uri")],
)
def test_bad_settings_fail_the_invocation(value: str | None, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("CAPFC_JOB", raising=False)
    else:
        monkeypatch.setenv("CAPFC_JOB", value)
    with pytest.raises(ConfigError, match=message):
        handler(scheduled_event(), None)


@pytest.mark.parametrize(
    ("event", "message"),
    [(["run"], "expected a JSON object"), ("run", "expected a JSON object"), ({"stages": 5}, "'stages' must be text"),
     ({"stages": {"run": 1}}, "'stages' must be text"),
     ({"source": "aws.sagemaker", "detail-type": STATE_CHANGE, "detail": "x"}, "'detail' must be an object")],
)
def test_events_of_another_shape_fail_in_one_line(event: Any, message: str, job_env: dict[str, str]) -> None:
    """helper-62: these ended in AttributeError/TypeError, and {"stages": {"run": 1}} started a job."""
    with pytest.raises(ConfigError, match=message):
        handle(event, job_env, AwsClients(region="us-east-1", endpoint_url="http://127.0.0.1:9"))


def test_bundle_runs_on_its_own_with_boto3_only(tmp_path: Path, job_env: dict[str, str], s3_endpoint: str) -> None:
    bundle = build_lambda_zip(tmp_path / "capfc-lambda.zip")
    assert sorted(zipfile.ZipFile(bundle).namelist()) == sorted(f"capacity_forecaster/{m}" for m in MODULES)
    assert build_lambda_zip(tmp_path / "again.zip").read_bytes() == bundle.read_bytes()  # reproducible
    module, function = HANDLER.rsplit(".", 1)
    script = f"""
import json, sys
sys.path.insert(0, {str(bundle)!r})
import {module} as entry
import capacity_forecaster
assert capacity_forecaster.__file__.startswith({str(bundle)!r}), capacity_forecaster.__file__
heavy = sorted({{"pandas", "pyarrow", "pydantic", "yaml", "numpy", "typer"}} & set(sys.modules))
result = entry.{function}({json.dumps(scheduled_event("ev-bundle"))}, None)
print(json.dumps({{"heavy": heavy, "action": result["action"]}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPFC_")} | job_env
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"heavy": [], "action": "started"}
