"""``capfc aws ...``: Athena/Glue tables, SageMaker stage jobs, the EventBridge schedule, QuickSight."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from capacity_forecaster import pipeline
from capacity_forecaster.cli.common import (
    HELP_OPTIONS,
    ConfigOpt,
    LakeOpt,
    LogFormatOpt,
    LogLevelOpt,
    QuietOpt,
    SilentOpt,
    app,
    out,
    quiet_level,
    setup_command,
)
from capacity_forecaster.config import Settings

log = logging.getLogger("capacity_forecaster.cli")

aws_app = typer.Typer(
    name="aws",
    help="Deploy to AWS: Athena/Glue tables, SageMaker stage jobs, the EventBridge schedule, QuickSight.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
)
app.add_typer(aws_app, name="aws")

RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region [default: aws.region or the chain].")]
DatabaseOpt = Annotated[str | None, typer.Option("--database", help="Glue database [default: aws.glue_database].")]
S3UriOpt = Annotated[
    str | None,
    typer.Option("--s3-uri", help="S3 location Athena reads the lake from [default: the lake, if it is on S3]."),
]
TablesOpt = Annotated[str | None, typer.Option("--tables", help="Comma-separated tables [default: all written].")]


def _aws_setup(config: Path | None, lake: str | None, log_level: str | None, log_format: str | None, quiet: int,
               silent: bool, region: str | None, **overrides: Any) -> tuple[Settings, Any]:
    """Settings with ``aws.*`` overrides, and the boto3 client factory they describe."""
    from capacity_forecaster.aws.clients import AwsClients

    settings = setup_command(config, lake, log_level, log_format, quiet, silent, **{"aws.region": region, **overrides})
    return settings, AwsClients(settings.aws.region, settings.aws.endpoint_url)


def _table_list(tables: str | None) -> list[str] | None:
    return [t.strip() for t in tables.split(",") if t.strip()] if tables else None


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@aws_app.command("athena-ddl")
def aws_athena_ddl(
    database: DatabaseOpt = None,
    s3_uri: S3UriOpt = None,
    tables: TablesOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Print Athena CREATE DATABASE / CREATE EXTERNAL TABLE (Delta) statements for the lake's written tables."""
    from capacity_forecaster.aws.athena import lake_ddl
    from capacity_forecaster.aws.catalog import lake_definitions

    settings = setup_command(config, lake, log_level, log_format, quiet, silent, **{"aws.glue_database": database})
    definitions, skipped = lake_definitions(pipeline.open_lake(settings, for_writing=False),
                                            tables=_table_list(tables), s3_uri=s3_uri)
    sys.stdout.write(lake_ddl(settings.aws.glue_database, definitions))
    if skipped:
        log.info("not written yet (no DDL): %s", ", ".join(skipped))


@aws_app.command("glue")
def aws_glue(
    database: DatabaseOpt = None,
    s3_uri: S3UriOpt = None,
    tables: TablesOpt = None,
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Create or update the Glue database and the lake's Delta tables (Athena reads them natively)."""
    from capacity_forecaster.aws.glue import register_glue_tables

    settings, clients = _aws_setup(config, lake, log_level, log_format, quiet, silent, region,
                                   **{"aws.glue_database": database})
    result = register_glue_tables(pipeline.open_lake(settings, for_writing=False), settings.aws.glue_database,
                                  tables=_table_list(tables), s3_uri=s3_uri, clients=clients)
    if quiet_level(quiet, silent) < 2:
        out.print(f"glue database {result.database}{' (created)' if result.database_created else ''}: "
                  f"{len(result.created)} table(s) created, {len(result.updated)} updated"
                  + (f"; not written yet: {', '.join(result.skipped)}" if result.skipped else ""))


@aws_app.command("submit")
def aws_submit(
    stage: Annotated[str, typer.Argument(help="generate, etl, forecast, risk, report, run or verify.")],
    image_uri: Annotated[str | None, typer.Option("--image-uri", help="Container image [default: aws.image_uri].")]
    = None,
    role_arn: Annotated[str | None, typer.Option("--role-arn", help="Job IAM role [default: aws.role_arn].")] = None,
    instance_type: Annotated[
        str | None, typer.Option("--instance-type", help="Instance type [default: aws.instance_type].")
    ] = None,
    training: Annotated[
        bool | None,
        typer.Option("--training/--processing",
                     help="forecast only: run as a SageMaker (spot) training job that resumes from checkpoints "
                          "[default: aws.forecast_training_job]."),
    ] = None,
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Run one stage as a SageMaker Processing job (capfc STAGE --lake s3://...), or forecast as a spot training
    job (--training); prints the job as JSON."""
    from capacity_forecaster.aws.sagemaker import JobSpec, submit_stage_job
    from capacity_forecaster.aws.training import submit_training_job
    from capacity_forecaster.errors import ConfigError

    settings, clients = _aws_setup(config, lake, log_level, log_format, quiet, silent, region, **{
        "aws.image_uri": image_uri, "aws.role_arn": role_arn, "aws.instance_type": instance_type,
        "aws.forecast_training_job": training})
    if settings.aws.forecast_training_job and stage == "forecast":
        spec = JobSpec.from_settings(settings, stages=("forecast",))
        print_json(submit_training_job(spec, clients=clients))
        return
    if training:
        raise ConfigError(f"--training: only the forecast stage runs as a training job, not '{stage}'")
    print_json(submit_stage_job(stage, settings, clients=clients))


@aws_app.command("status")
def aws_status(
    job_name: Annotated[str, typer.Argument(help="Processing or training job name (printed by capfc aws submit).")],
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Print the state of a stage job as JSON (InProgress, Completed, Failed, ...; training jobs add
    secondary_status, e.g. Interrupted or Restarting on spot, and the billable seconds)."""
    from capacity_forecaster.aws.training import job_state

    _settings, clients = _aws_setup(config, lake, log_level, log_format, quiet, silent, region)
    print_json(job_state(job_name, clients))


@aws_app.command("schedule")
def aws_schedule(
    lambda_arn: Annotated[
        str | None, typer.Option("--lambda-arn", help="The capfc Lambda [default: aws.lambda_arn].")
    ] = None,
    expression: Annotated[
        str | None, typer.Option("--schedule", help="cron(...) or rate(...) [default: aws.schedule_expression].")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Rule name [default: aws.schedule_rule].")] = None,
    dead_letter_arn: Annotated[
        str | None,
        typer.Option("--dead-letter-arn", help="SQS queue for events EventBridge cannot deliver (stack output "
                     "DeadLetterQueueArn) [default: none]."),
    ] = None,
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Create or update the EventBridge schedule (and job-chain) rules invoking the capfc Lambda."""
    from capacity_forecaster.aws.scheduling import schedule
    from capacity_forecaster.errors import ConfigError

    settings, clients = _aws_setup(config, lake, log_level, log_format, quiet, silent, region, **{
        "aws.lambda_arn": lambda_arn, "aws.schedule_expression": expression, "aws.schedule_rule": rule})
    aws = settings.aws
    if not aws.lambda_arn:
        raise ConfigError("aws.lambda_arn is not set; pass --lambda-arn (the stack output FunctionArn)")
    print_json(schedule(aws.schedule_rule, aws.schedule_expression, aws.lambda_arn, job_prefix=aws.job_prefix,
                         chain_rule=len(aws.scheduled_stages) > 1, dead_letter_arn=dead_letter_arn,
                         tags=dict(aws.tags), clients=clients))


@aws_app.command("quicksight")
def aws_quicksight(
    account_id: Annotated[
        str | None, typer.Option("--account-id", help="AWS account id [default: the caller's].")
    ] = None,
    principal_arn: Annotated[
        str | None,
        typer.Option("--principal-arn",
                     help="QuickSight user/group to own them [default: aws.quicksight_principal_arn]."),
    ] = None,
    datasets: Annotated[
        str | None,
        typer.Option("--datasets", help="Comma-separated tables to expose as data sets; 'none' for none "
                     "[default: server_risk,recommendations,forecasts,metrics,clusters,inventory]."),
    ] = None,
    s3_uri: S3UriOpt = None,
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Create or update the QuickSight Athena data source (and direct-query data sets); prints JSON."""
    from capacity_forecaster.aws.catalog import lake_definitions
    from capacity_forecaster.aws.quicksight import DEFAULT_DATASETS, register_quicksight

    settings, clients = _aws_setup(config, lake, log_level, log_format, quiet, silent, region,
                                   **{"aws.quicksight_principal_arn": principal_arn})
    aws = settings.aws
    wanted = DEFAULT_DATASETS if datasets is None else [] if datasets.strip() == "none" else _table_list(datasets)
    definitions: list[Any] = []
    if wanted:
        definitions, _skipped = lake_definitions(pipeline.open_lake(settings, for_writing=False),
                                                 tables=list(wanted), s3_uri=s3_uri)
    result = register_quicksight(
        account_id, data_source_id=aws.quicksight_data_source_id, workgroup=aws.athena_workgroup,
        database=aws.glue_database, tables=definitions, principal_arn=aws.quicksight_principal_arn,
        tags=dict(aws.tags), clients=clients)
    print_json(result)
    if result["failed"]:
        from capacity_forecaster.errors import AwsError

        raise AwsError(f"{len(result['failed'])} QuickSight data set(s) failed: {', '.join(result['failed'])} "
                       "(the others were created or updated; see the log or the JSON above)")


@aws_app.command("verify")
def aws_verify(
    delete: Annotated[
        bool, typer.Option("--delete", help="Vacuum: remove the orphans (files no retained version uses).")
    ] = False,
    retention_hours: Annotated[
        float | None,
        typer.Option("--retention-hours", min=0.0,
                     help="Keep versions replaced, and files written, less than this long ago "
                          "[default: lake.retention_hours]."),
    ] = None,
    min_age_minutes: Annotated[
        int, typer.Option("--min-age-minutes", min=0,
                          help="Never remove younger files, whatever the retention (a write may be in progress).")
    ] = 60,
    tables: TablesOpt = None,
    glue_database: Annotated[
        str | None,
        typer.Option("--glue-database",
                     help="Then create/update the written tables in this Glue database (as capfc aws glue), so "
                          "columns a stage added reach the catalog; the scheduled chain's last step does this."),
    ] = None,
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Check each lake table's Delta log and files; flag (or --delete) files no retained version uses.

    capfc and Athena read a table's files from its Delta log: files of crashed or conflicting writes
    and versions older than the retention only take space (--delete vacuums them). Unreadable logs,
    missing files and foreign files are reported. Prints the findings as JSON; exit 2 unless clean.
    """
    import datetime as dt

    from capacity_forecaster.aws.verify import verify_lake
    from capacity_forecaster.errors import StorageError

    settings, clients = _aws_setup(config, lake, log_level, log_format, quiet, silent, region,
                                   **{"aws.glue_database": glue_database})
    opened = pipeline.open_lake(settings, for_writing=delete)
    result = verify_lake(opened, tables=_table_list(tables), delete=delete, retention_hours=retention_hours,
                         min_age=dt.timedelta(minutes=min_age_minutes))
    if glue_database is not None and (result["problems"] or result["missing"]):
        result["glue"] = {"database": settings.aws.glue_database, "skipped": "damaged tables (see above)"}
    elif glue_database is not None:
        from capacity_forecaster.aws.glue import register_glue_tables

        registered = register_glue_tables(opened, settings.aws.glue_database, tables=_table_list(tables),
                                          clients=clients)
        result["glue"] = {"database": registered.database, "created": registered.created,
                          "updated": registered.updated}
    print_json(result)
    if not result["clean"]:
        left = result["orphans"] - result["deleted"]
        hints = [hint for count, hint in ((left, "re-run with --delete"),
                                          (result["missing"], "re-run the stages writing the damaged tables"),
                                          (result["foreign"], "move the foreign files out of the table folders"),
                                          (result["problems"], "see each table's 'problem' in the JSON"))
                 if count]
        raise StorageError(f"lake {result['lake']} is not clean: {left} orphan file(s) kept, {result['missing']} "
                           f"missing, {result['foreign']} foreign, {result['problems']} table(s) with a problem; "
                           f"{'; '.join(hints)}")


@aws_app.command("lambda-zip")
def aws_lambda_zip(
    target: Annotated[Path, typer.Argument(help="Where to write the zip, e.g. build/capfc-lambda.zip.")],
) -> None:
    """Build the Lambda bundle (handler + the few modules it imports; boto3 comes with the runtime)."""
    from capacity_forecaster.aws.bundle import HANDLER, build_lambda_zip

    path = build_lambda_zip(target)
    out.print(f"wrote {path} ({path.stat().st_size:,} bytes); handler {HANDLER}")
