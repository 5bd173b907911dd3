"""The stage commands: generate, ingest, etl, forecast, risk, report, dashboard, run, sql, config, version."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from capacity_forecaster import __version__, pipeline
from capacity_forecaster.cli.common import (
    ConfigOpt,
    LakeOpt,
    LogFormatOpt,
    LogLevelOpt,
    ModelsHelpCommand,
    QuietOpt,
    SilentOpt,
    app,
    out,
    print_tables,
    progress_bars,
    quiet_level,
    setup_command,
)
from capacity_forecaster.cli.summaries import (
    etl_line,
    ingest_line,
    print_forecast_summary,
    print_risk_summary,
    stage_line,
)
from capacity_forecaster.cli.tables import format_frame, is_numeric
from capacity_forecaster.stages.forecast import summary_line

IngestForceOpt = Annotated[bool, typer.Option(
    "--force", help="Write the result even if more than ingest.max_quarantine_share (default 0.5) of the "
    "rows read, or of one series' values, would be quarantined (the same as setting it to 1.0).")]
EtlForceOpt = Annotated[bool, typer.Option(
    "--force", help="Write the result even if more than etl.max_quarantine_share (default 0.5) of the raw "
    "rows would be quarantined (the same as setting it to 1.0).")]


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
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
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
    settings = setup_command(
        config, lake, log_level, log_format, quiet, silent,
        **{"generate.servers": servers, "generate.years": years, "generate.end_date": parsed_end,
           "generate.holdout_days": holdout_days, "generate.seed": seed, "generate.format": fmt},
    )
    lake_obj = pipeline.open_lake(settings)
    run = pipeline.generate_stage(lake_obj, settings)
    if quiet_level(quiet, silent) < 2:
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
    replace: Annotated[bool, typer.Option(help="Replace raw/ instead of merging into it.", show_default=False)] = False,
    force: IngestForceOpt = False,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Read monitoring exports (any sampling interval) into raw/ as daily P95 per server and metric."""
    settings = setup_command(config, lake, log_level, log_format, quiet, silent,
                             **{"ingest.max_quarantine_share": 1.0 if force else None})
    lake_obj = pipeline.open_lake(settings)
    stage = pipeline.ingest_stage(lake_obj, settings, sources, mapping, replace=replace)
    if quiet_level(quiet, silent) < 2:
        out.print(ingest_line(stage))


@app.command()
def etl(
    force: EtlForceOpt = False,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """raw/ -> processed/ (validated, cleansed, imputed, anomaly-flagged, features) + quarantine/."""
    settings = setup_command(config, lake, log_level, log_format, quiet, silent,
                             **{"etl.max_quarantine_share": 1.0 if force else None})
    stage = pipeline.etl_stage(pipeline.open_lake(settings, existing=True), settings)
    if quiet_level(quiet, silent) < 2:
        out.print(etl_line(stage))


@app.command(cls=ModelsHelpCommand)
def forecast(
    horizon: Annotated[int | None, typer.Option(help="Days to forecast [default: 180].")] = None,
    models: Annotated[str | None, typer.Option(help="auto, or a comma-separated list of model names.")] = None,
    engine: Annotated[str | None, typer.Option(help="local (process pool) or dask.")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address (default: start a LocalCluster).")
    ] = None,
    checkpoint_dir: Annotated[
        str | None, typer.Option(help="Local folder keeping finished chunks: a killed run restarted with the same "
                                      "inputs resumes (e.g. /opt/ml/checkpoints on SageMaker).")
    ] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """processed/ -> forecasts/, backtests/ and models/: backtested models chosen per series."""
    settings = setup_command(
        config, lake, log_level, log_format, quiet, silent,
        **{"forecast.horizon": horizon, "forecast.models": models, "forecast.engine": engine,
           "forecast.scheduler": scheduler, "forecast.checkpoint_dir": checkpoint_dir},
    )
    with progress_bars(settings, quiet, silent) as progress:
        stage = pipeline.forecast_stage(pipeline.open_lake(settings, existing=True), settings, progress)
    if quiet_level(quiet, silent) < 2:
        print_forecast_summary(stage.counts)


@app.command()
def risk(
    threshold: Annotated[float | None, typer.Option(help="Breach threshold in percent [default: 80].")] = None,
    growth: Annotated[float | None, typer.Option(
        help="What-if business growth in percent per year, ramped over the horizon (stored beside the base).")] = None,
    scenario: Annotated[
        Path | None, typer.Option(help="What-if scenario YAML: add, remove or move servers.")
    ] = None,
    name: Annotated[str | None, typer.Option(
        help="Name to store the what-if under [default: from the parameters, e.g. growth-20pct].")] = None,
    step: Annotated[bool | None, typer.Option(
        "--step/--ramp", help="Growth as a step change from day one instead of an annual rate ramp.")] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """forecasts/ + processed/ -> risk/: breach dates and probabilities, clusters, recommendations."""
    settings = setup_command(config, lake, log_level, log_format, quiet, silent, **{
        "risk.threshold": threshold, "risk.growth": growth, "risk.growth_ramp": None if step is None else not step})
    _stage, result = pipeline.risk_stage(pipeline.open_lake(settings, existing=True), settings, growth=growth,
                                         scenario_file=scenario, scenario_name=name)
    if quiet_level(quiet, silent) < 2:
        print_risk_summary(result.summary, result.scenario)


@app.command()
def report(
    formats: Annotated[str | None, typer.Option(help="Comma-separated: png,html,xlsx,pdf [default: all].")] = None,
    scenario: Annotated[str | None, typer.Option(
        help="Stored what-if to show beside the base (its name) [default: the most recent].")] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Everything -> reports/: PNG charts, a self-contained HTML report, an Excel workbook, a PDF pack."""
    chosen = tuple(f.strip() for f in formats.split(",") if f.strip()) if formats else None
    settings = setup_command(config, lake, log_level, log_format, quiet, silent, **{"report.formats": chosen,
                                                                                   "report.scenario": scenario})
    _stage, result = pipeline.report_stage(pipeline.open_lake(settings, existing=True), settings)
    if quiet_level(quiet, silent) < 2:
        out.print(result.render())


@app.command()
def dashboard(
    host: Annotated[str | None, typer.Option(help="Interface to bind [default: 127.0.0.1].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: 8050].")] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Interactive dashboard over the lake (binds 127.0.0.1 unless told otherwise)."""
    from capacity_forecaster.report.dashboard import create_app, serve

    settings = setup_command(config, lake, log_level, log_format, quiet, silent,
                             **{"dashboard.host": host, "dashboard.port": port})
    app_ = create_app(pipeline.open_lake(settings, for_writing=False, existing=True), settings)
    serve(app_, settings.dashboard.host, settings.dashboard.port, announce=out.print)


def capfc_command() -> str:
    """How this capfc was started (``.venv/bin/capfc`` from make demo), for the commands a summary suggests."""
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    return str(started) if started is not None and started.name == "capfc" else "capfc"


@app.command("run", cls=ModelsHelpCommand)
def run_all(
    sources: Annotated[list[str] | None, typer.Argument(
        help="Exports to ingest first (files, folders or globs, as capfc ingest) [default: none: the lake's raw "
             "data, or a synthetic fleet on an empty lake].", show_default=False)] = None,
    mapping: Annotated[str | None, typer.Option(
        "--mapping", help="YAML mapping of the exports (as capfc ingest).")] = None,
    horizon: Annotated[int | None, typer.Option(help="Days to forecast [default: 180].")] = None,
    models: Annotated[str | None, typer.Option(help="auto, or a comma-separated list of model names.")] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Run every stage in order: ingest SOURCES first when given, else on an empty lake generate the default
    synthetic fleet."""
    if mapping is not None and not sources:
        raise typer.BadParameter("--mapping needs the exports to ingest (capfc run EXPORT... --mapping FILE)",
                                 param_hint="'--mapping'")
    settings = setup_command(config, lake, log_level, log_format, quiet, silent,
                             **{"forecast.horizon": horizon, "forecast.models": models})
    with progress_bars(settings, quiet, silent) as progress:
        runs = pipeline.run(settings, progress, sources, mapping)
    if quiet_level(quiet, silent) < 2:
        for stage in runs:
            out.print(summary_line(stage.counts) if stage.stage == "forecast" else stage_line(stage))
        print_tables(settings)
        lake_uri = settings.lake.uri
        out.print(f"Reports: {lake_uri.rstrip('/')}/reports/ (capacity_report.html, .xlsx, .pdf and PNG charts)")
        exe = capfc_command()
        out.print(f"Dashboard: {exe} dashboard --lake {lake_uri}  then open http://127.0.0.1:8050/")
        out.print(f"SQL: {exe} sql \"SELECT * FROM server_risk WHERE risk_level <> 'low'\" --lake {lake_uri}")


@app.command("sql")
def sql_query(
    statement: Annotated[str, typer.Argument(help="A DuckDB SQL statement over the lake's views.")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    limit: Annotated[int, typer.Option(help="Rows shown in table format (0 = all).")] = 50,
    unsafe: Annotated[
        bool, typer.Option("--unsafe", help="Full DuckDB: file access, COPY, ATTACH, extensions "
                           "[default: read-only over the lake's views; config lake.sql_unsafe].")
    ] = False,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Read every table as it was after this run id, or at this time "
                                 "(ISO 8601, UTC), e.g. 2026-12-01T08:00 [default: the current version].")
    ] = None,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Run SQL (DuckDB) over the lake: one view per table (inventory, raw_metrics, metrics, ...)."""
    if fmt not in ("table", "csv", "json"):
        raise typer.BadParameter(f"'{fmt}' is not one of table, csv, json", param_hint="'--format'")
    from capacity_forecaster.storage.sql import query

    settings = setup_command(config, lake, log_level, log_format, quiet, silent,
                             **{"lake.sql_unsafe": True if unsafe else None})
    frame = query(pipeline.open_lake(settings, for_writing=False, existing=True), statement,
                  unsafe=settings.lake.sql_unsafe, as_of=as_of)
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(frame.to_json(orient="records", date_format="iso") + "\n")
    else:
        shown = frame if limit == 0 else frame.head(limit)
        table = Table(show_lines=False)
        for column in shown.columns:
            table.add_column(str(column), justify="right" if is_numeric(shown[column]) else "left")
        for row in format_frame(shown).itertuples(index=False):
            table.add_row(*row)
        out.print(table)
        if len(shown) < len(frame):
            out.print(f"({len(frame):,} rows, first {len(shown)} shown; --limit 0 shows all)")


@app.command("config")
def show_config(
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Print the effective configuration (file + environment + options) as JSON."""
    settings = setup_command(config, lake, log_level, log_format, quiet, silent)
    sys.stdout.write(json.dumps(settings.model_dump(mode="json"), indent=2) + "\n")


@app.command()
def version() -> None:
    """Print the package version."""
    out.print(__version__)
