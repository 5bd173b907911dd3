"""The ``capfc`` command line: one sub-command per stage; the only place that configures logging."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
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


@app.command("run")
def run_all(
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run every stage in order; on an empty lake first generate the default synthetic fleet."""
    settings = _setup(config, lake, log_level, quiet)
    runs = pipeline.run(settings)
    if not quiet:
        for stage in runs:
            out.print(f"{stage.stage}: {stage.rows_out:,} rows out, {stage.rows_quarantined:,} quarantined "
                      f"(run {stage.run_id})")
        _print_tables(settings)
        out.print("Query it: capfc sql \"SELECT metric, count(*) FROM metrics GROUP BY metric\"")


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
