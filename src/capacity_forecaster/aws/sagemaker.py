"""Run a pipeline stage as a SageMaker Processing job: ``capfc <stage> --lake s3://...`` in the user's image.

Uses the plain boto3 ``sagemaker`` client (the SageMaker Python SDK is not needed). Standard
library and boto3 only at import time, so the Lambda bundle can carry this module.

A job's name is ``<prefix>-<stage>-<yyyymmdd-hhmmss>-<hash>``; the hash comes from a token (the
EventBridge event id, or the previous job's name in a chain), so a retried event maps to the same
name and is recognised as already submitted instead of starting a second writer on the lake.
The job environment never carries credentials: the job's IAM role supplies them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import posixpath
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from capacity_forecaster.aws import names
from capacity_forecaster.aws.clients import AwsClients, is_exists, is_missing, translated
from capacity_forecaster.errors import AwsError, ConfigError

if TYPE_CHECKING:
    from capacity_forecaster.config import Settings

log = logging.getLogger(__name__)

PIPELINE = ("generate", "etl", "forecast", "risk", "report")
# ``verify`` is not a pipeline stage: ``capfc aws verify --delete`` checks every table's Delta log and
# files and vacuums the files no retained version uses (aws/verify.py); it may end any chain.
VERIFY = "verify"
STAGES = (*PIPELINE, "run", VERIFY)
CONFIG_DIR = "/opt/ml/processing/input/config"
STAGE_TAG = "capfc:stage"
CHAIN_TAG = "capfc:chain"
_CHAIN_SEP = "+"
# Refused as extra environment variable names: the job role supplies credentials.
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSW|CREDENTIAL|ACCESS_KEY|PRIVATE|SESSION", re.IGNORECASE)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_WAIT = 2_419_200  # 28 days: SageMaker's longest training job, waiting for spot capacity included


def check_chain(stages: tuple[str, ...] | list[str], where: str = "stages") -> tuple[str, ...]:
    """Return ``stages`` if they form a runnable chain: ``run`` alone, or pipeline stages in order,
    optionally followed by ``verify`` (or ``verify`` alone).

    Raises:
        ConfigError: naming the bad stage or order.
    """
    chain = tuple(stages)
    if not chain:
        raise ConfigError(f"{where}: give at least one stage ({', '.join(STAGES)})")
    unknown = [s for s in chain if s not in STAGES]
    if unknown:
        raise ConfigError(f"{where}: unknown stage(s) {', '.join(unknown)}; valid: {', '.join(STAGES)}")
    if VERIFY in chain[:-1]:
        raise ConfigError(f"{where}: '{VERIFY}' checks the lake after the other stages; put it last")
    steps = chain[:-1] if chain[-1] == VERIFY else chain
    if "run" in steps and len(steps) > 1:
        raise ConfigError(f"{where}: 'run' already runs every stage; give it alone (optionally followed by "
                          f"'{VERIFY}')")
    order = [PIPELINE.index(s) for s in steps if s != "run"]
    if order != sorted(set(order)):
        raise ConfigError(f"{where}: stages {list(chain)} must be in pipeline order ({', '.join(PIPELINE)}) "
                          "without repeats")
    return chain


@dataclass(frozen=True)
class JobSpec:
    """How stages run on SageMaker; validated on construction.

    Attributes:
        image_uri: container image with capfc installed (see deploy/Dockerfile).
        role_arn: IAM role the job runs as (reads and writes the lake; no credentials are passed).
        lake_uri: ``s3://bucket/prefix`` of the lake.
        instance_type: SageMaker instance type.
        instance_count: instances; 1, because a lake table has one writer at a time.
        volume_size_gb: ML storage volume per instance.
        max_runtime_seconds: the job is stopped after this long.
        job_prefix: first part of every job name (also scopes the IAM policies).
        config_s3_uri: S3 URI of a YAML config file handed to capfc as ``--config`` (optional).
        stages: the chain started by a schedule: ``("run",)`` or pipeline stages in order.
        tags: tags put on every job (cost allocation).
        environment: extra environment variables (never credentials).
        log_level: capfc log level inside the job.
        forecast_training: the forecast step of a chain runs as a (spot) training job (aws/training.py).
        spot_training: training jobs use managed spot capacity (interrupted jobs resume from checkpoints).
        max_wait_seconds: spot training: give up after this long, waiting included (None: twice the runtime).
        kms_key_id: KMS key for training job output and volumes (the lake's key when lake.sse is aws:kms).
        subnet_ids: VPC subnets the jobs run in (with ``security_group_ids``; both or neither).
        security_group_ids: security groups of the jobs' network interfaces in those subnets.
        glue_database: the ``verify`` step also re-registers the written tables in this Glue database
            (``capfc aws verify --glue-database``), so the catalog's columns follow the Delta schemas.
        region: AWS region passed to that Glue registration (``--region``); None: the container's default.
    """

    image_uri: str
    role_arn: str
    lake_uri: str
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_size_gb: int = 30
    max_runtime_seconds: int = 4 * 3600
    job_prefix: str = "capfc"
    config_s3_uri: str | None = None
    stages: tuple[str, ...] = ("run",)
    tags: dict[str, str] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    forecast_training: bool = False
    spot_training: bool = True
    max_wait_seconds: int | None = None
    kms_key_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    glue_database: str | None = None
    region: str | None = None

    def __post_init__(self) -> None:
        names.check("image_uri", self.image_uri, "image_uri")
        if names.image_pinning(self.image_uri) == "latest":
            # Not refused (a test stack may use it), but a tag can be moved: pin production by digest.
            log.warning("image_uri %s names the image by the tag 'latest': each job runs whatever was pushed "
                        "last; give <repository>@sha256:<digest> (docs/aws.md, step 1)", self.image_uri)
        subnets, groups = names.check_vpc(tuple(self.subnet_ids), tuple(self.security_group_ids), "job settings")
        object.__setattr__(self, "subnet_ids", subnets)
        object.__setattr__(self, "security_group_ids", groups)
        if self.glue_database is not None:
            names.check("glue_name", self.glue_database, "glue_database")
        if self.region is not None:
            names.check("region", self.region, "region")
        names.check("role_arn", self.role_arn, "role_arn")
        lake = self.lake_uri.rstrip("/")
        if lake.startswith("s3a://"):
            lake = "s3://" + lake[len("s3a://"):]
        if not lake.startswith("s3://"):
            raise ConfigError(f"lake {self.lake_uri}: SageMaker jobs need an s3:// lake (--lake s3://bucket/prefix)")
        names.check("s3_uri", lake, "lake URI")
        object.__setattr__(self, "lake_uri", lake)
        instance_problem = names.instance_type_problem(self.instance_type)
        if instance_problem:
            raise ConfigError(f"instance_type: {instance_problem}")
        names.check("job_prefix", self.job_prefix, "job_prefix")
        if self.config_s3_uri is not None:
            names.check("s3_uri", self.config_s3_uri, "config_s3_uri")
            if self.config_s3_uri.endswith("/"):
                raise ConfigError(f"config_s3_uri {self.config_s3_uri}: give the YAML file, not a folder")
        object.__setattr__(self, "stages", check_chain(tuple(self.stages)))
        names.check_tags(dict(self.tags), "tags")
        for key, low, high in (("instance_count", 1, 1), ("volume_size_gb", 1, 16_384),
                               ("max_runtime_seconds", 60, 777_600)):
            value = getattr(self, key)
            if not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{key} = {value!r}: expected a whole number from {low} to {high}")
        wait = self.max_wait_seconds
        if wait is not None and not (isinstance(wait, int) and self.max_runtime_seconds <= wait <= MAX_WAIT):
            raise ConfigError(f"max_wait_seconds = {self.max_wait_seconds!r}: expected a whole number from "
                              f"max_runtime_seconds ({self.max_runtime_seconds}) to {MAX_WAIT} (spot jobs wait and run "
                              "within it)")
        for key in ("forecast_training", "spot_training"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key} = {getattr(self, key)!r}: expected true or false")
        if self.kms_key_id is not None:
            names.check("kms_key_id", self.kms_key_id, "kms_key_id")
        if self.forecast_training and (problem := names.instance_type_problem(self.instance_type, True)):
            raise ConfigError(f"instance_type (forecast as a training job): {problem}")
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level '{self.log_level}': expected DEBUG, INFO, WARNING or ERROR")
        for key, value in self.environment.items():
            if not _ENV_NAME.fullmatch(key) or not isinstance(value, str):
                raise ConfigError(f"environment variable {key!r}: names are letters, digits and '_'; values text")
            if _SECRET_NAME.search(key) or key.startswith("AWS_"):
                raise ConfigError(f"environment variable {key}: credentials and AWS_* settings are never passed "
                                  "to jobs; the job's IAM role (role_arn) supplies access")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> JobSpec:
        """Build from a JSON-like mapping (the Lambda's ``CAPFC_JOB`` variable); stages may be "a,b".

        Raises:
            ConfigError: unknown keys or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"job settings: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        values = dict(data)
        if isinstance(values.get("stages"), str):
            values["stages"] = tuple(s.strip() for s in values["stages"].split(",") if s.strip())
        for key in ("instance_count", "volume_size_gb", "max_runtime_seconds", "max_wait_seconds"):
            if isinstance(values.get(key), str) and values[key].strip().isdigit():
                values[key] = int(values[key])
        for key in ("forecast_training", "spot_training"):  # CloudFormation substitutes text
            if isinstance(values.get(key), str) and values[key].strip().lower() in ("true", "false"):
                values[key] = values[key].strip().lower() == "true"
        for key in ("config_s3_uri", "max_wait_seconds", "kms_key_id", "glue_database", "region"):
            if values.get(key) == "":
                values[key] = None
        for key in ("subnet_ids", "security_group_ids"):  # CloudFormation joins a list parameter with ','
            if isinstance(values.get(key), str):
                values[key] = tuple(v.strip() for v in values[key].split(",") if v.strip())
            elif isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        missing = [k for k in ("image_uri", "role_arn", "lake_uri") if not values.get(k)]
        if missing:
            raise ConfigError(f"job settings: missing {', '.join(missing)}")
        return cls(**values)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> JobSpec:
        """Build from the ``aws`` and ``lake`` sections; ``overrides`` (not None) win.

        Raises:
            ConfigError: ``aws.image_uri`` or ``aws.role_arn`` is not set, or a value is invalid.
        """
        aws = settings.aws
        environment: dict[str, str] = {}
        if settings.lake.sse != "AES256":  # the default needs no variable
            environment["CAPFC_LAKE__SSE"] = settings.lake.sse
        if settings.lake.sse_kms_key_id:
            environment["CAPFC_LAKE__SSE_KMS_KEY_ID"] = settings.lake.sse_kms_key_id
        values: dict[str, Any] = {
            "image_uri": aws.image_uri, "role_arn": aws.role_arn, "lake_uri": settings.lake.uri,
            "instance_type": aws.instance_type, "instance_count": aws.instance_count,
            "volume_size_gb": aws.volume_size_gb, "max_runtime_seconds": aws.max_runtime_seconds,
            "job_prefix": aws.job_prefix, "config_s3_uri": aws.config_s3_uri,
            "stages": tuple(aws.scheduled_stages), "tags": dict(aws.tags), "environment": environment,
            "log_level": settings.log_level, "forecast_training": aws.forecast_training_job,
            "spot_training": aws.spot_training, "max_wait_seconds": aws.max_wait_seconds,
            "kms_key_id": settings.lake.sse_kms_key_id if settings.lake.sse == "aws:kms" else None,
            "subnet_ids": tuple(aws.subnet_ids), "security_group_ids": tuple(aws.security_group_ids),
            "glue_database": aws.glue_database if aws.verify_registers_glue else None, "region": aws.region,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        for key, option in (("image_uri", "--image-uri"), ("role_arn", "--role-arn")):
            if not values[key]:
                raise ConfigError(f"aws.{key} is not set; put it in the config file, CAPFC_AWS__{key.upper()} "
                                  f"or {option}")
        return cls(**values)

    def vpc_config(self) -> dict[str, list[str]] | None:
        """The ``VpcConfig`` of the jobs, or None when they run in SageMaker's own network."""
        if not self.subnet_ids:
            return None
        return {"SecurityGroupIds": list(self.security_group_ids), "Subnets": list(self.subnet_ids)}

    def to_json(self) -> str:
        """The spec as JSON (what the Lambda's ``CAPFC_JOB`` variable holds)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def job_name(prefix: str, stage: str, when: dt.datetime, token: str) -> str:
    """A valid, deterministic SageMaker job name: the same inputs always give the same name.

    Args:
        prefix: checked job prefix.
        stage: a stage of ``STAGES``.
        when: the time the job is for (UTC); to the second.
        token: what makes the name unique (an event id, the previous job's name, a random id).
    """
    names.check("job_prefix", prefix, "job_prefix")
    check_chain((stage,))
    stamp = when.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S") if when.tzinfo else when.strftime("%Y%m%d-%H%M%S")
    digest = hashlib.sha256(f"{prefix}|{stage}|{stamp}|{token}".encode()).hexdigest()[:8]
    return names.check("job_name", f"{prefix}-{stage}-{stamp}-{digest}", "job name")


def processing_job_request(
    spec: JobSpec, stage: str, name: str, chain: tuple[str, ...] | None = None
) -> dict[str, Any]:
    """The ``CreateProcessingJob`` request for one stage (pure).

    Args:
        spec: how jobs run.
        stage: the stage to run.
        name: the job name (see ``job_name``).
        chain: the chain the stage belongs to (default: the stage alone); recorded in a tag so the
            Lambda can start the next stage when this job completes.
    """
    chain = check_chain(chain or (stage,))
    if stage not in chain:
        raise ConfigError(f"stage '{stage}' is not part of the chain {list(chain)}")
    names.check("job_name", name, "job name")
    command = [stage]
    if stage == VERIFY:
        command = ["aws", VERIFY, "--delete"]
        if spec.glue_database:  # keep the Glue columns in step with the Delta schemas the stages just wrote
            command += ["--glue-database", spec.glue_database] + (["--region", spec.region] if spec.region else [])
    arguments = [*command, "--lake", spec.lake_uri, "--log-level", spec.log_level]
    request: dict[str, Any] = {
        "ProcessingJobName": name,
        "RoleArn": spec.role_arn,
        "AppSpecification": {"ImageUri": spec.image_uri, "ContainerEntrypoint": ["capfc"]},
        "ProcessingResources": {"ClusterConfig": {
            "InstanceCount": spec.instance_count, "InstanceType": spec.instance_type,
            "VolumeSizeInGB": spec.volume_size_gb,
        }},
        "StoppingCondition": {"MaxRuntimeInSeconds": spec.max_runtime_seconds},
        # Never network isolation: capfc reads and writes the lake itself (s3fs, delta-rs) from inside the
        # container, which isolation cuts off from S3; in a VPC the traffic goes through its S3 endpoint.
        "NetworkConfig": {"EnableNetworkIsolation": False},
        "Environment": {"PYTHONUNBUFFERED": "1", **spec.environment},
        "Tags": [{"Key": k, "Value": v} for k, v in sorted(spec.tags.items())]
        + [{"Key": STAGE_TAG, "Value": stage}, {"Key": CHAIN_TAG, "Value": _CHAIN_SEP.join(chain)}],
    }
    if (vpc := spec.vpc_config()) is not None:
        request["NetworkConfig"]["VpcConfig"] = vpc
    if spec.config_s3_uri:
        request["ProcessingInputs"] = [{
            "InputName": "capfc-config",
            "S3Input": {"S3Uri": spec.config_s3_uri, "LocalPath": CONFIG_DIR, "S3DataType": "S3Prefix",
                        "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"},
        }]
        arguments += ["--config", posixpath.join(CONFIG_DIR, posixpath.basename(spec.config_s3_uri))]
    request["AppSpecification"]["ContainerArguments"] = arguments
    return request


def parse_chain(value: str) -> tuple[str, ...]:
    """The chain recorded in a job's ``capfc:chain`` tag."""
    return check_chain(tuple(value.split(_CHAIN_SEP)), CHAIN_TAG)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else None


def job_status(name: str, clients: AwsClients | None = None) -> dict[str, Any]:
    """The state of a processing job, JSON-able.

    Returns:
        ``job_name, arn, stage, status`` (InProgress, Completed, Failed, Stopping, Stopped),
        ``failure_reason, exit_message, created, ended`` (ISO timestamps or None).

    Raises:
        AwsError: the job does not exist or the call failed.
    """
    names.check("job_name", name, "job name")
    sagemaker = (clients or AwsClients()).client("sagemaker")
    with translated(f"sagemaker DescribeProcessingJob {name}"):
        job = sagemaker.describe_processing_job(ProcessingJobName=name)
    arguments = job.get("AppSpecification", {}).get("ContainerArguments") or [None]
    if arguments[:2] == ["aws", VERIFY]:
        arguments = arguments[1:]
    return {
        "job_name": job["ProcessingJobName"],
        "arn": job.get("ProcessingJobArn"),
        "stage": arguments[0],
        "status": job.get("ProcessingJobStatus"),
        "failure_reason": job.get("FailureReason"),
        "exit_message": job.get("ExitMessage"),
        "created": _iso(job.get("CreationTime")),
        "ended": _iso(job.get("ProcessingEndTime")),
    }


def running_jobs(prefix: str, clients: AwsClients, kind: str = "Processing") -> list[str]:
    """Names of in-progress ``kind`` (Processing or Training) jobs whose names start with ``<prefix>-``."""
    sagemaker = clients.client("sagemaker")
    found: list[str] = []
    with translated(f"sagemaker List{kind}Jobs {prefix}-*"):
        for status in ("InProgress", "Stopping"):
            paginator = sagemaker.get_paginator(f"list_{kind.lower()}_jobs")
            for page in paginator.paginate(NameContains=prefix, StatusEquals=status):
                found += [s[f"{kind}JobName"] for s in page.get(f"{kind}JobSummaries", [])
                          if s[f"{kind}JobName"].startswith(f"{prefix}-")]
    return found


def create_once(
    name: str,
    kind: str,
    clients: AwsClients,
    status: Callable[[str, AwsClients], dict[str, Any]],
    create: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """Create the ``kind`` (processing or training) job ``name`` unless it exists (idempotent on retries).

    Returns:
        ``(create response, True)``, or ``(the existing job's status with submitted False, False)``.
    """
    try:
        existing = status(name, clients)
    except AwsError as err:
        if not is_missing(err):
            raise
    else:
        log.info("%s job %s exists already (%s); not submitted again", kind, name, existing["status"])
        return {**existing, "submitted": False}, False
    try:
        with translated(f"sagemaker Create{kind.title()}Job {name}"):
            return create(), True
    except AwsError as err:
        if is_exists(err):  # a concurrent retry won the race
            return {**status(name, clients), "submitted": False}, False
        raise


def submit_job(
    spec: JobSpec,
    stage: str,
    *,
    clients: AwsClients | None = None,
    name: str | None = None,
    chain: tuple[str, ...] | None = None,
    when: dt.datetime | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Create the processing job for ``stage`` unless a job of the same name exists already.

    Args:
        spec: how jobs run.
        stage: the stage to run.
        clients: boto3 client factory.
        name: the job name (default: ``job_name(spec.job_prefix, stage, when, token)``).
        chain: the chain the stage belongs to (default: the stage alone).
        when: time the job is for (default: now).
        token: uniqueness token for the name (default: random, i.e. never a duplicate).

    Returns:
        ``job_name, arn, stage, status, submitted`` (False when the job existed already).

    Raises:
        AwsError: the call failed (e.g. the caller may not create jobs or pass the role).
    """
    clients = clients or AwsClients()
    when = when or dt.datetime.now(dt.UTC)
    name = name or job_name(spec.job_prefix, stage, when, token or uuid.uuid4().hex)
    request = processing_job_request(spec, stage, name, chain)
    response, created = create_once(name, "processing", clients, job_status,
                                    lambda: clients.client("sagemaker").create_processing_job(**request))
    if not created:
        return response
    log.info("submitted processing job %s: capfc %s on %s (%s)", name, stage, spec.lake_uri, spec.instance_type)
    return {"job_name": name, "arn": response.get("ProcessingJobArn"), "stage": stage, "status": "InProgress",
            "submitted": True}


def submit_stage_job(
    stage: str,
    settings: Settings,
    image_uri: str | None = None,
    role_arn: str | None = None,
    instance_type: str | None = None,
    *,
    clients: AwsClients | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Submit ``capfc <stage> --lake <settings.lake.uri>`` as a SageMaker Processing job.

    Args:
        stage: generate, etl, forecast, risk, report or run.
        settings: the effective settings (``aws`` and ``lake`` sections are used).
        image_uri: overrides ``aws.image_uri``.
        role_arn: overrides ``aws.role_arn``.
        instance_type: overrides ``aws.instance_type``.
        clients: boto3 client factory (default: region and endpoint from ``aws``).
        name: the job name (default: generated, unique).

    Returns:
        See ``submit_job``.

    Raises:
        ConfigError: missing image or role, a lake not on S3, or invalid values.
        AwsError: the call failed.
    """
    spec = JobSpec.from_settings(settings, image_uri=image_uri, role_arn=role_arn, instance_type=instance_type,
                                 stages=(stage,))
    clients = clients or AwsClients(settings.aws.region, settings.aws.endpoint_url)
    return submit_job(spec, stage, clients=clients, name=name)
