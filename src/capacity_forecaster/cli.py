"""The ``capfc`` command line: one sub-command per stage; the only place that configures logging."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from capacity_forecaster import __version__, pipeline
from capacity_forecaster.config import Settings, load_settings
from capacity_forecaster.errors import CapacityForecasterError

log = logging.getLogger("capacity_forecaster.cli")

app = typer.Typer(
    name="capfc",
    help="AWS-CapacityForecaster: forecast server capacity, find risks and savings.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", envvar="CAPFC_CONFIG", help="YAML config file (default: built-in defaults)."),
]
LakeOpt = Annotated[
    str | None, typer.Option("--lake", help="Lake location: a folder or s3://bucket/prefix [default: ./lake]")
]
LogLevelOpt = Annotated[str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", help="Only warnings and errors.")]


def _setup(
    config: Path | None, lake: str | None, log_level: str | None, quiet: bool, **overrides: Any
) -> Settings:
    """Read .env, merge the configuration once and configure logging."""
    try:
        from dotenv import load_dotenv

        load_dotenv(Path.cwd() / ".env", override=False)
    except ImportError:  # python-dotenv is a core dependency; tolerate a trimmed install
        pass
    settings = load_settings(
        config, {"lake.uri": lake, "log_level": log_level, **overrides}
    )
    level = logging.WARNING if quiet else getattr(logging, settings.log_level)
    handler = RichHandler(console=err_console, show_path=False, rich_tracebacks=False, markup=False)
    logging.basicConfig(level=level, format="%(message)s", datefmt="[%X]", handlers=[handler], force=True)
    for noisy in ("cmdstanpy", "prophet", "werkzeug", "botocore", "s3fs", "aiobotocore", "urllib3", "fsspec"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return settings


def _print_tables(settings: Settings) -> None:
    lake = pipeline.open_lake(settings, for_writing=False)
    table = Table(title=f"Lake {lake.uri}", title_justify="left")
    table.add_column("table (SQL view)")
    table.add_column("rows", justify="right")
    table.add_column("location")
    for item in pipeline.summarize(lake):
        table.add_row(item.name, f"{item.rows:,}", item.location)
    out.print(table)


@contextmanager
def _progress(quiet: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr, fed with (done, total) callbacks; nothing when quiet."""
    if quiet:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _kv_table(title: str, mapping: dict[str, Any], key: str, value: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    table.add_column(value, justify="right")
    for name, count in mapping.items():
        table.add_row(str(name), f"{count:,}" if isinstance(count, int) else f"{count:.3f}")
    return table


def _print_forecast_summary(summary: dict[str, Any]) -> None:
    """One screen: series, triage, models chosen, backtest error and coverage, failures."""
    out.print(f"forecast: {summary.get('series', 0):,} series, {summary.get('units', 0):,} work units on "
              f"{summary.get('engine')} ({summary.get('workers')} workers), {summary.get('failures', 0):,} failed "
              f"unit-series, {summary.get('seconds', 0.0):.1f} s")
    out.print("triage: " + ", ".join(f"{k} {v:,}" for k, v in summary.get("triage", {}).items()))
    out.print(_kv_table("Models chosen", summary.get("chosen", {}), "model", "series"))
    mae, coverage = summary.get("backtest_mae", {}), summary.get("backtest_coverage", {})
    table = Table(title="Backtest of the chosen models (mean over series and windows)", title_justify="left")
    for column in ("metric", "MAE (pp)", "interval coverage"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for metric in mae:
        table.add_row(metric, f"{mae[metric]:.2f}", f"{coverage.get(metric, float('nan')):.0%}")
    out.print(table)
    for reason, count in summary.get("failure_reasons", {}).items():
        out.print(f"  failed x{count}: {reason}")


def _print_risk_summary(summary: dict[str, Any]) -> None:
    """One screen: risk levels, at-risk servers with dates, clusters, actions and savings."""
    out.print(f"risk ({summary.get('scenario')}): {summary.get('servers', 0)} servers, "
              f"{summary.get('servers_at_risk', 0)} at risk; levels: "
              + ", ".join(f"{k} {v}" for k, v in summary.get("series_by_level", {}).items()))
    at_risk = summary.get("at_risk") or []
    if at_risk:
        table = Table(title="At-risk servers (most urgent first)", title_justify="left")
        for column in ("server", "metric", "level", "breach", "days", "probability", "seasonal peak"):
            table.add_column(column)
        for row in at_risk:
            table.add_row(row["server_id"], row["metric"], row["risk_level"], row["breach_ds"] or "-",
                          "-" if row["days_to_breach"] is None else str(row["days_to_breach"]),
                          f"{row['breach_probability']:.0%}", str(row.get("seasonal_peak") or ""))
        out.print(table)
    out.print("clusters: " + ", ".join(f"{k} {v}" for k, v in summary.get("clusters", {}).items()))
    out.print("actions: " + ", ".join(f"{k} {v}" for k, v in summary.get("actions", {}).items()))
    out.print(f"savings: ${summary.get('net_monthly_savings', 0):,.0f}/month net "
              f"({summary.get('net_savings_pct', 0):.1f} % of ${summary.get('fleet_monthly_cost', 0):,.0f}), "
              f"gross ${summary.get('gross_monthly_savings', 0):,.0f}, upsizing "
              f"${summary.get('upsize_monthly_cost', 0):,.0f}")
    from capacity_forecaster.risk.stage import calibration_lines

    for line in calibration_lines(summary):
        out.print(line)


@app.command()
def generate(
    servers: Annotated[int | None, typer.Option(help="Number of servers [default: 100].")] = None,
    years: Annotated[float | None, typer.Option(help="Years of observed history [default: 3].")] = None,
    end_date: Annotated[
        str | None, typer.Option("--end-date", help="Last observed day, YYYY-MM-DD [default: 2026-06-30].")
    ] = None,
    holdout_days: Annotated[
        int | None, typer.Option("--holdout-days", help="Days of ground-truth future [default: 180].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed [default: 42].")] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="parquet, or csv (CSV copy of raw/ besides Parquet).")
    ] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Generate a synthetic fleet into raw/ and its ground truth into truth/."""
    if end_date is not None:
        try:
            parsed_end: dt.date | None = dt.date.fromisoformat(end_date)
        except ValueError:
            raise typer.BadParameter(f"'{end_date}' is not a date; expected YYYY-MM-DD",
                                     param_hint="'--end-date'") from None
    else:
        parsed_end = None
    settings = _setup(
        config, lake, log_level, quiet,
        **{"generate.servers": servers, "generate.years": years, "generate.end_date": parsed_end,
           "generate.holdout_days": holdout_days, "generate.seed": seed, "generate.format": fmt},
    )
    lake_obj = pipeline.open_lake(settings)
    run = pipeline.generate_stage(lake_obj, settings)
    if not quiet:
        out.print(f"generated {settings.generate.servers} servers, {run.rows_out:,} raw rows "
                  f"into {lake_obj.uri} (run {run.run_id})")


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Files, folders or globs (local or s3://).")],
    mapping: Annotated[
        str | None,
        typer.Option("--mapping", help="YAML mapping describing the export (see mappings/ and docs/ingest.md); "
                     "default: files already in the contract layout server_id, ds, metric, value."),
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace raw/ instead of merging into it.")] = False,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Read monitoring exports (any sampling interval) into raw/ as daily P95 per server and metric."""
    settings = _setup(config, lake, log_level, quiet)
    lake_obj = pipeline.open_lake(settings)
    stage = pipeline.ingest_stage(lake_obj, settings, sources, mapping, replace=replace)
    if not quiet:
        out.print(f"ingested {stage.counts['files']} file(s): {stage.rows_in:,} rows read, "
                  f"{stage.rows_out:,} daily values written, {stage.rows_quarantined:,} quarantine records "
                  f"(run {stage.run_id})")


@app.command()
def etl(
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """raw/ -> processed/ (validated, cleansed, imputed, anomaly-flagged, features) + quarantine/."""
    settings = _setup(config, lake, log_level, quiet)
    stage = pipeline.etl_stage(pipeline.open_lake(settings), settings)
    if not quiet:
        counts = stage.counts
        out.print(f"etl: {stage.rows_in:,} rows in, {stage.rows_out:,} out, {stage.rows_quarantined:,} quarantined, "
                  f"{counts.get('rows_imputed_created', 0):,} created by imputation "
                  f"({counts.get('imputation')}), {counts.get('rows_unfilled', 0):,} left empty in long gaps, "
                  f"{counts.get('rows_anomalies', 0):,} anomalies flagged (run {stage.run_id})")


@app.command()
def forecast(
    horizon: Annotated[int | None, typer.Option(help="Days to forecast [default: 180].")] = None,
    models: Annotated[str | None, typer.Option(help="auto, or a comma-separated list of model names.")] = None,
    engine: Annotated[str | None, typer.Option(help="local (process pool) or dask.")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address (default: start a LocalCluster).")
    ] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """processed/ -> forecasts/, backtests/ and models/: backtested models chosen per series."""
    settings = _setup(
        config, lake, log_level, quiet,
        **{"forecast.horizon": horizon, "forecast.models": models, "forecast.engine": engine,
           "forecast.scheduler": scheduler},
    )
    with _progress(quiet, "forecasting") as progress:
        stage = pipeline.forecast_stage(pipeline.open_lake(settings), settings, progress)
    if not quiet:
        _print_forecast_summary(stage.counts)


@app.command()
def risk(
    threshold: Annotated[float | None, typer.Option(help="Breach threshold in percent [default: 80].")] = None,
    growth: Annotated[float | None, typer.Option(help="What-if business growth in percent.")] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="What-if scenario YAML: add, remove or move servers.")
    ] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """forecasts/ + processed/ -> risk/: breach dates and probabilities, clusters, recommendations."""
    settings = _setup(config, lake, log_level, quiet, **{"risk.threshold": threshold, "risk.growth": growth})
    _stage, result = pipeline.risk_stage(pipeline.open_lake(settings), settings, growth=growth,
                                         scenario_file=scenario)
    if not quiet:
        _print_risk_summary(result.summary)


@app.command()
def report(
    formats: Annotated[str | None, typer.Option(help="Comma-separated: png,html,xlsx,pdf [default: all].")] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Everything -> reports/: PNG charts, a self-contained HTML report, an Excel workbook, a PDF pack."""
    chosen = tuple(f.strip() for f in formats.split(",") if f.strip()) if formats else None
    settings = _setup(config, lake, log_level, quiet, **{"report.formats": chosen})
    _stage, result = pipeline.report_stage(pipeline.open_lake(settings), settings)
    if not quiet:
        out.print(result.render())


@app.command()
def dashboard(
    host: Annotated[str | None, typer.Option(help="Interface to bind [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8050].")] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Interactive dashboard over the lake (binds 127.0.0.1 unless told otherwise)."""
    from capacity_forecaster.report.dashboard import create_app, serve

    settings = _setup(config, lake, log_level, quiet, **{"dashboard.host": host, "dashboard.port": port})
    app_ = create_app(pipeline.open_lake(settings, for_writing=False), settings)
    out.print(f"dashboard: http://{settings.dashboard.host}:{settings.dashboard.port}/ (Ctrl+C to stop)")
    serve(app_, settings.dashboard.host, settings.dashboard.port)


@app.command("run")
def run_all(
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run every stage in order; on an empty lake first generate the default synthetic fleet."""
    settings = _setup(config, lake, log_level, quiet)
    with _progress(quiet, "running the pipeline") as progress:
        runs = pipeline.run(settings, progress)
    if not quiet:
        for stage in runs:
            out.print(f"{stage.stage}: {stage.rows_out:,} rows out, {stage.rows_quarantined:,} quarantined "
                      f"(run {stage.run_id})")
        _print_tables(settings)
        lake_uri = settings.lake.uri
        out.print(f"Reports: {lake_uri.rstrip('/')}/reports/ (capacity_report.html, .xlsx, .pdf and PNG charts)")
        out.print(f"Dashboard: .venv/bin/capfc dashboard --lake {lake_uri}  then open http://127.0.0.1:8050/")
        out.print(f"SQL: .venv/bin/capfc sql \"SELECT * FROM server_risk WHERE risk_level <> 'low'\" --lake {lake_uri}")


@app.command("sql")
def sql_query(
    statement: Annotated[str, typer.Argument(help="A DuckDB SQL statement over the lake's views.")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    limit: Annotated[int, typer.Option(help="Rows shown in table format (0 = all).")] = 50,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run SQL (DuckDB) over the lake: one view per table (inventory, raw_metrics, metrics, ...)."""
    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter(f"'{fmt}' is not one of table, csv, json", param_hint="'--format'")
    from capacity_forecaster.storage.sql import query

    settings = _setup(config, lake, log_level, quiet)
    frame = query(pipeline.open_lake(settings, for_writing=False), statement)
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(frame.to_json(orient="records", date_format="iso") + "\n")
    else:
        shown = frame if limit == 0 else frame.head(limit)
        table = Table(show_lines=False)
        for column in shown.columns:
            table.add_column(str(column))
        for row in shown.itertuples(index=False):
            table.add_row(*("" if v is None else str(v) for v in row))
        out.print(table)
        if len(shown) < len(frame):
            out.print(f"({len(frame):,} rows, first {len(shown)} shown; --limit 0 shows all)")


@app.command("config")
def show_config(
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the effective configuration (file + environment + options) as JSON."""
    settings = _setup(config, lake, log_level, quiet)
    sys.stdout.write(json.dumps(settings.model_dump(mode="json"), indent=2) + "\n")


aws_app = typer.Typer(
    name="aws",
    help="Deploy to AWS: Athena/Glue tables, SageMaker stage jobs, the EventBridge schedule, QuickSight.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(aws_app, name="aws")

RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region [default: aws.region or the chain].")]
DatabaseOpt = Annotated[str | None, typer.Option("--database", help="Glue database [default: aws.glue_database].")]
S3UriOpt = Annotated[
    str | None,
    typer.Option("--s3-uri", help="S3 location Athena reads the lake from [default: the lake, if it is on S3]."),
]
TablesOpt = Annotated[str | None, typer.Option("--tables", help="Comma-separated tables [default: all written].")]


def _aws_setup(config: Path | None, lake: str | None, log_level: str | None, quiet: bool, region: str | None,
               **overrides: Any) -> tuple[Settings, Any]:
    """Settings with ``aws.*`` overrides, and the boto3 client factory they describe."""
    from capacity_forecaster.aws.clients import AwsClients

    settings = _setup(config, lake, log_level, quiet, **{"aws.region": region, **overrides})
    return settings, AwsClients(settings.aws.region, settings.aws.endpoint_url)


def _table_list(tables: str | None) -> list[str] | None:
    return [t.strip() for t in tables.split(",") if t.strip()] if tables else None


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


@aws_app.command("athena-ddl")
def aws_athena_ddl(
    database: DatabaseOpt = None,
    s3_uri: S3UriOpt = None,
    tables: TablesOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print Athena CREATE DATABASE / CREATE EXTERNAL TABLE statements for the lake's written tables."""
    from capacity_forecaster.aws.athena import lake_ddl
    from capacity_forecaster.aws.catalog import lake_definitions

    settings = _setup(config, lake, log_level, quiet, **{"aws.glue_database": database})
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
    quiet: QuietOpt = False,
) -> None:
    """Create or update the Glue database and tables (partition projection: no MSCK REPAIR needed)."""
    from capacity_forecaster.aws.glue import register_glue_tables

    settings, clients = _aws_setup(config, lake, log_level, quiet, region, **{"aws.glue_database": database})
    result = register_glue_tables(pipeline.open_lake(settings, for_writing=False), settings.aws.glue_database,
                                  tables=_table_list(tables), s3_uri=s3_uri, clients=clients)
    if not quiet:
        out.print(f"glue database {result.database}{' (created)' if result.database_created else ''}: "
                  f"{len(result.created)} table(s) created, {len(result.updated)} updated"
                  + (f"; not written yet: {', '.join(result.skipped)}" if result.skipped else ""))


@aws_app.command("submit")
def aws_submit(
    stage: Annotated[str, typer.Argument(help="generate, etl, forecast, risk, report or run.")],
    image_uri: Annotated[str | None, typer.Option("--image-uri", help="Container image [default: aws.image_uri].")]
    = None,
    role_arn: Annotated[str | None, typer.Option("--role-arn", help="Job IAM role [default: aws.role_arn].")] = None,
    instance_type: Annotated[
        str | None, typer.Option("--instance-type", help="Instance type [default: aws.instance_type].")
    ] = None,
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run one stage as a SageMaker Processing job (capfc STAGE --lake s3://...); prints the job as JSON."""
    from capacity_forecaster.aws.sagemaker import submit_stage_job

    settings, clients = _aws_setup(config, lake, log_level, quiet, region, **{
        "aws.image_uri": image_uri, "aws.role_arn": role_arn, "aws.instance_type": instance_type})
    _print_json(submit_stage_job(stage, settings, clients=clients))


@aws_app.command("status")
def aws_status(
    job_name: Annotated[str, typer.Argument(help="Processing job name (printed by capfc aws submit).")],
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Print the state of a stage job as JSON (InProgress, Completed, Failed, ...)."""
    from capacity_forecaster.aws.sagemaker import job_status

    _settings, clients = _aws_setup(config, lake, log_level, quiet, region)
    _print_json(job_status(job_name, clients))


@aws_app.command("schedule")
def aws_schedule(
    lambda_arn: Annotated[
        str | None, typer.Option("--lambda-arn", help="The capfc Lambda [default: aws.lambda_arn].")
    ] = None,
    expression: Annotated[
        str | None, typer.Option("--schedule", help="cron(...) or rate(...) [default: aws.schedule_expression].")
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Rule name [default: aws.schedule_rule].")] = None,
    region: RegionOpt = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Create or update the EventBridge schedule (and job-chain) rules invoking the capfc Lambda."""
    from capacity_forecaster.aws.scheduling import schedule
    from capacity_forecaster.errors import ConfigError

    settings, clients = _aws_setup(config, lake, log_level, quiet, region, **{
        "aws.lambda_arn": lambda_arn, "aws.schedule_expression": expression, "aws.schedule_rule": rule})
    aws = settings.aws
    if not aws.lambda_arn:
        raise ConfigError("aws.lambda_arn is not set; pass --lambda-arn (the stack output FunctionArn)")
    _print_json(schedule(aws.schedule_rule, aws.schedule_expression, aws.lambda_arn, job_prefix=aws.job_prefix,
                         chain_rule=len(aws.scheduled_stages) > 1, tags=dict(aws.tags), clients=clients))


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
    quiet: QuietOpt = False,
) -> None:
    """Create or update the QuickSight Athena data source (and direct-query data sets); prints JSON."""
    from capacity_forecaster.aws.catalog import lake_definitions
    from capacity_forecaster.aws.quicksight import DEFAULT_DATASETS, register_quicksight

    settings, clients = _aws_setup(config, lake, log_level, quiet, region,
                                   **{"aws.quicksight_principal_arn": principal_arn})
    aws = settings.aws
    wanted = DEFAULT_DATASETS if datasets is None else [] if datasets.strip() == "none" else _table_list(datasets)
    definitions: list[Any] = []
    if wanted:
        definitions, _skipped = lake_definitions(pipeline.open_lake(settings, for_writing=False),
                                                 tables=list(wanted), s3_uri=s3_uri)
    _print_json(register_quicksight(
        account_id, data_source_id=aws.quicksight_data_source_id, workgroup=aws.athena_workgroup,
        database=aws.glue_database, tables=definitions, principal_arn=aws.quicksight_principal_arn,
        tags=dict(aws.tags), clients=clients))


@aws_app.command("lambda-zip")
def aws_lambda_zip(
    target: Annotated[Path, typer.Argument(help="Where to write the zip, e.g. build/capfc-lambda.zip.")],
) -> None:
    """Build the Lambda bundle (handler + the few modules it imports; boto3 comes with the runtime)."""
    from capacity_forecaster.aws.bundle import HANDLER, build_lambda_zip

    path = build_lambda_zip(target)
    out.print(f"wrote {path} ({path.stat().st_size:,} bytes); handler {HANDLER}")


@app.command()
def version() -> None:
    """Print the package version."""
    out.print(__version__)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``capfc`` console script; returns the process exit code."""
    try:
        result = app(args=argv, prog_name="capfc", standalone_mode=False)
    except CapacityForecasterError as err:
        message = " ".join(str(err).split())
        sys.stderr.write(f"capfc: error: {message}\n")
        return 2
    except typer.Abort:
        sys.stderr.write("capfc: aborted\n")
        return 130
    except typer.TyperException as err:  # usage errors: click's message and exit code 2
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"capfc: error: {err}\n")
        return int(getattr(err, "exit_code", 2))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
