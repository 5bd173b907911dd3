"""Run the forecast stage as a SageMaker managed-spot training job (``capfc forecast`` with checkpoints).

Only training jobs can use spot capacity. The job runs ``capfc forecast --lake s3://... --checkpoint-dir
/opt/ml/checkpoints`` in the same image as the processing jobs; SageMaker copies that folder to
``<lake>/_sagemaker/checkpoints/<job name>/`` while the job runs and back onto the new instance when
an interrupted spot job restarts, so the stage resumes from its last checkpoint. The folder is per job
(the name is deterministic), so a retried event resumes the same job and never another day's run.

Standard library and boto3 only at import time (the Lambda bundle carries this module).
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import uuid
from typing import Any

from capacity_forecaster.aws import names
from capacity_forecaster.aws.clients import AwsClients, is_missing, translated
from capacity_forecaster.aws.sagemaker import (
    _CHAIN_SEP,
    CHAIN_TAG,
    MAX_WAIT,
    STAGE_TAG,
    JobSpec,
    check_chain,
    create_once,
    job_name,
    job_status,
    running_jobs,
    submit_job,
)
from capacity_forecaster.errors import AwsError, ConfigError

log = logging.getLogger(__name__)

STAGE = "forecast"
CHECKPOINT_DIR = "/opt/ml/checkpoints"
# Training jobs receive S3 inputs as channels under /opt/ml/input/data/<channel>/.
CONFIG_CHANNEL = "config"
CONFIG_DIR = f"/opt/ml/input/data/{CONFIG_CHANNEL}"
MODELS_FOLDER = "_sagemaker/models"
CHECKPOINTS_FOLDER = "_sagemaker/checkpoints"
TERMINAL = ("Completed", "Failed", "Stopped")
# Instance families with local NVMe storage, which AWS encrypts in hardware and for which
# CreateTrainingJob refuses a VolumeKmsKeyId (SageMaker "instance storage volumes" list).
_LOCAL_STORAGE = ("m5d", "c5d", "r5d", "g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en",
                  "trn1", "trn1n", "trn2")


def max_wait(spec: JobSpec) -> int:
    """The spot job's ``MaxWaitTimeInSeconds``: the spec's, or twice the runtime (at most 28 days)."""
    return spec.max_wait_seconds or min(2 * spec.max_runtime_seconds, MAX_WAIT)


def training_job_request(spec: JobSpec, name: str, chain: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The ``CreateTrainingJob`` request running the forecast stage (pure).

    The container runs ``capfc forecast --lake <lake> --checkpoint-dir /opt/ml/checkpoints``; the model
    artefacts stay in the lake as the stage writes them, so ``S3OutputPath`` only receives
    SageMaker's (empty) ``model.tar.gz``.

    Args:
        spec: how jobs run (``spot_training``, ``max_wait_seconds`` and ``kms_key_id`` apply here).
        name: the job name (see ``sagemaker.job_name``).
        chain: the chain the forecast step belongs to (default: forecast alone), recorded in a tag.

    Raises:
        ConfigError: the instance type cannot run training jobs, or forecast is not in the chain.
    """
    chain = check_chain(chain or (STAGE,))
    if STAGE not in chain:
        raise ConfigError(f"stage '{STAGE}' is not part of the chain {list(chain)}")
    names.check("job_name", name, "job name")
    problem = names.instance_type_problem(spec.instance_type, training_only=True)
    if problem:
        raise ConfigError(f"instance_type: {problem}")
    arguments = [STAGE, "--lake", spec.lake_uri, "--checkpoint-dir", CHECKPOINT_DIR, "--log-level", spec.log_level]
    resources: dict[str, Any] = {"InstanceType": spec.instance_type, "InstanceCount": spec.instance_count,
                                 "VolumeSizeInGB": spec.volume_size_gb}
    output: dict[str, Any] = {"S3OutputPath": f"{spec.lake_uri}/{MODELS_FOLDER}/"}
    if spec.kms_key_id:
        output["KmsKeyId"] = spec.kms_key_id
        if spec.instance_type.split(".")[1] not in _LOCAL_STORAGE:
            resources["VolumeKmsKeyId"] = spec.kms_key_id
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": spec.max_runtime_seconds}
    if spec.spot_training:
        stopping["MaxWaitTimeInSeconds"] = max_wait(spec)
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "RoleArn": spec.role_arn,
        "AlgorithmSpecification": {"TrainingImage": spec.image_uri, "TrainingInputMode": "File",
                                   "ContainerEntrypoint": ["capfc"]},
        "OutputDataConfig": output,
        "ResourceConfig": resources,
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": spec.spot_training,
        # Never network isolation: `capfc forecast` reads the lake from inside the container (isolation
        # leaves only SageMaker's own channel and checkpoint copies, not the container's S3 calls).
        "EnableNetworkIsolation": False,
        "CheckpointConfig": {"S3Uri": f"{spec.lake_uri}/{CHECKPOINTS_FOLDER}/{name}/", "LocalPath": CHECKPOINT_DIR},
        "Environment": {"PYTHONUNBUFFERED": "1", **spec.environment},
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())]
        + [{"Key": STAGE_TAG, "Value": STAGE}, {"Key": CHAIN_TAG, "Value": _CHAIN_SEP.join(chain)}],
    }
    if (vpc := spec.vpc_config()) is not None:
        request["VpcConfig"] = vpc
    if spec.config_s3_uri:
        request["InputDataConfig"] = [{
            "ChannelName": CONFIG_CHANNEL, "InputMode": "File",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": spec.config_s3_uri,
                                            "S3DataDistributionType": "FullyReplicated"}},
        }]
        arguments += ["--config", posixpath.join(CONFIG_DIR, posixpath.basename(spec.config_s3_uri))]
    request["AlgorithmSpecification"]["ContainerArguments"] = arguments
    return request


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


def training_job_status(name: str, clients: AwsClients | None = None) -> dict[str, Any]:
    """The state of a training job, JSON-able, in the shape of ``sagemaker.job_status``.

    Returns:
        ``job_name, arn, stage, status`` (InProgress, Completed, Failed, Stopping, Stopped),
        ``secondary_status`` (e.g. Downloading, Training, Interrupted, Restarting, MaxWaitTimeExceeded),
        ``failure_reason, exit_message, created, ended``, ``spot``, ``training_seconds`` and
        ``billable_seconds`` (their ratio is the spot saving), ``kind`` = "training".

    Raises:
        AwsError: the job does not exist or the call failed.
    """
    names.check("job_name", name, "job name")
    sagemaker = (clients or AwsClients()).client("sagemaker")
    with translated(f"sagemaker DescribeTrainingJob {name}"):
        job = sagemaker.describe_training_job(TrainingJobName=name)
    arguments = job.get("AlgorithmSpecification", {}).get("ContainerArguments") or [STAGE]
    return {
        "job_name": job["TrainingJobName"],
        "arn": job.get("TrainingJobArn"),
        "stage": arguments[0],
        "status": job.get("TrainingJobStatus"),
        "secondary_status": job.get("SecondaryStatus"),
        "failure_reason": job.get("FailureReason"),
        "exit_message": None,
        "created": _iso(job.get("CreationTime")),
        "ended": _iso(job.get("TrainingEndTime")),
        "spot": bool(job.get("EnableManagedSpotTraining")),
        "training_seconds": job.get("TrainingTimeInSeconds"),
        "billable_seconds": job.get("BillableTimeInSeconds"),
        "kind": "training",
    }


def running_training_jobs(prefix: str, clients: AwsClients) -> list[str]:
    """Names of in-progress training jobs whose names start with ``<prefix>-``."""
    return running_jobs(prefix, clients, "Training")


def submit_training_job(
    spec: JobSpec,
    *,
    clients: AwsClients | None = None,
    name: str | None = None,
    chain: tuple[str, ...] | None = None,
    when: dt.datetime | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Create the forecast training job unless one of the same name exists already.

    Args: as ``sagemaker.submit_job`` (the stage is forecast).

    Returns:
        ``job_name, arn, stage, status, submitted`` (False when the job existed already), ``kind``.

    Raises:
        ConfigError: the instance type cannot run training jobs.
        AwsError: the call failed (e.g. the caller may not create training jobs or pass the role).
    """
    clients = clients or AwsClients()
    when = when or dt.datetime.now(dt.UTC)
    name = name or job_name(spec.job_prefix, STAGE, when, token or uuid.uuid4().hex)
    request = training_job_request(spec, name, chain)
    response, created = create_once(name, "training", clients, training_job_status,
                                    lambda: clients.client("sagemaker").create_training_job(**request))
    if not created:
        return response
    log.info("submitted training job %s: capfc forecast on %s (%s, %s)", name, spec.lake_uri, spec.instance_type,
             f"spot, wait <= {max_wait(spec)} s" if spec.spot_training else "on demand")
    return {"job_name": name, "arn": response.get("TrainingJobArn"), "stage": STAGE, "status": "InProgress",
            "submitted": True, "kind": "training"}


def submit_step(spec: JobSpec, stage: str, **kwargs: Any) -> dict[str, Any]:
    """Submit one chain step: forecast as a training job when ``spec.forecast_training``, else a processing job.

    Args:
        spec: how jobs run.
        stage: the stage to run.
        **kwargs: ``clients, name, chain, when, token`` as for ``sagemaker.submit_job``.
    """
    if stage == STAGE and spec.forecast_training:
        return submit_training_job(spec, **kwargs)
    return {**submit_job(spec, stage, **kwargs), "kind": "processing"}


def job_state(name: str, clients: AwsClients | None = None) -> dict[str, Any]:
    """The state of a capfc job of either kind: the processing job of that name, else the training job.

    Raises:
        AwsError: neither exists, or a call failed.
    """
    try:
        return {**job_status(name, clients), "kind": "processing"}
    except AwsError as err:
        if not is_missing(err):
            raise
    try:
        return training_job_status(name, clients)
    except AwsError as err:
        if is_missing(err):
            raise AwsError(f"no SageMaker processing or training job named {name}; check the name printed by "
                           "capfc aws submit, and aws.region", err.code) from err
        raise
