"""``capfc aws forecast-export|forecast-run|forecast-import``: the Amazon Forecast path (existing accounts only)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Annotated

import typer

from capacity_forecaster import pipeline
from capacity_forecaster.cli.aws import RegionOpt, _aws_setup, aws_app, print_json
from capacity_forecaster.cli.common import (
    ConfigOpt,
    LakeOpt,
    LogFormatOpt,
    LogLevelOpt,
    QuietOpt,
    SilentOpt,
    setup_command,
)

log = logging.getLogger("capacity_forecaster.cli")

RunOpt = Annotated[
    str | None,
    typer.Option("--run", help="Run id (letters, digits, '_'); resources of one run share it [default: today, UTC]."),
]


@aws_app.command("forecast-export")
def aws_forecast_export(
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Write the lake's metrics and inventory as Amazon Forecast CSV files under <lake>/_amazon_forecast/input/."""
    from capacity_forecaster.aws.amazon_forecast import export_lake

    settings = setup_command(config, lake, log_level, log_format, quiet, silent)
    print_json(export_lake(pipeline.open_lake(settings, for_writing=True), settings.forecast.freq))


@aws_app.command("forecast-run")
def aws_forecast_run(
    run: RunOpt = None,
    horizon: Annotated[
        int | None, typer.Option("--horizon", min=1, help="Steps to forecast [default: forecast.horizon].")
    ] = None,
    role_arn: Annotated[
        str | None, typer.Option("--role-arn", help="Role Amazon Forecast assumes [default: aws.forecast_role_arn].")
    ] = None,
    wait: Annotated[
        int, typer.Option("--wait", min=0, help="Keep advancing for up to this many minutes (0: one step).")
    ] = 0,
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Create the next Amazon Forecast resource of a run (datasets, group, imports, predictor, forecast, export).

    Run it again (or with --wait) until the state is "done"; then capfc aws forecast-import reads the export.
    Run capfc aws forecast-export first. Prints the state as JSON.
    """
    from capacity_forecaster.aws.amazon_forecast import ForecastNames, ForecastRun, advance, run_id
    from capacity_forecaster.aws.quicksight import caller_account
    from capacity_forecaster.errors import ConfigError

    settings, clients = _aws_setup(config, lake, log_level, log_format, quiet, silent, region,
                                   **{"aws.forecast_role_arn": role_arn, "forecast.horizon": horizon})
    aws = settings.aws
    if not aws.forecast_role_arn:
        raise ConfigError("aws.forecast_role_arn is not set; pass --role-arn (a role Amazon Forecast may assume, "
                          "with read/write access to the lake prefix)")
    if not settings.lake.uri.startswith("s3://"):
        raise ConfigError(f"lake {settings.lake.uri}: Amazon Forecast reads from S3; use --lake s3://bucket/prefix")
    key = settings.lake.sse_kms_key_id if settings.lake.sse == "aws:kms" else None
    if key and not (key.startswith("arn:") and ":key/" in key):
        log.warning("lake.sse_kms_key_id %s is not a key ARN, which Amazon Forecast needs: its export is encrypted "
                    "with the bucket's default encryption", key)
    names = ForecastNames.build(aws.job_prefix, run or run_id(dt.datetime.now(dt.UTC)))
    spec = ForecastRun(lake_uri=settings.lake.uri, role_arn=aws.forecast_role_arn, account_id=caller_account(clients),
                       region=clients.client("forecast").meta.region_name, horizon=settings.forecast.horizon,
                       freq=settings.forecast.freq, tags=tuple(sorted(aws.tags.items())),
                       kms_key_arn=key if key and key.startswith("arn:") and ":key/" in key else None)
    deadline = time.monotonic() + 60 * wait
    state = advance(spec, names, clients)
    while state["state"] != "done" and time.monotonic() < deadline:
        time.sleep(60)
        state = advance(spec, names, clients)
    print_json(state)


@aws_app.command("forecast-import")
def aws_forecast_import(
    source: Annotated[
        str | None,
        typer.Option("--source", help="Lake-relative folder of the export [default: the run's "
                     "_amazon_forecast/output/<prefix>_export_<run>/]."),
    ] = None,
    run: RunOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Read an Amazon Forecast export (item_id, date, p10, p50, p90) into capfc's forecast rows
    (model amazon_forecast, 80 % interval) at <lake>/_amazon_forecast/imported/forecasts.parquet."""
    from capacity_forecaster.aws.amazon_forecast import FOLDER, ForecastNames, import_forecasts, run_id

    settings = setup_command(config, lake, log_level, log_format, quiet, silent)
    if source is None:
        names = ForecastNames.build(settings.aws.job_prefix, run or run_id(dt.datetime.now(dt.UTC)))
        source = f"{FOLDER}/output/{names.export}"
    print_json(import_forecasts(pipeline.open_lake(settings, for_writing=True), source.strip("/")))
