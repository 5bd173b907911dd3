"""``capfc lake ...``: the lake's Delta tables: versions (history), vacuum, and migrating an old lake."""

from __future__ import annotations

import logging
from typing import Annotated

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
    setup_command,
)
from capacity_forecaster.errors import StorageError

log = logging.getLogger("capacity_forecaster.cli")

lake_app = typer.Typer(
    name="lake",
    help="The lake's Delta tables: versions of a table, vacuum, and converting a pre-Delta lake.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
)
app.add_typer(lake_app, name="lake")


@lake_app.command("migrate")
def lake_migrate(
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Convert a lake written before Delta Lake (_table.json pointers): every table rewritten, rows checked."""
    from capacity_forecaster.storage.legacy import migrate

    settings = setup_command(config, lake, log_level, log_format, quiet, silent)
    done = migrate(pipeline.open_lake(settings))
    if not done:
        out.print("nothing to migrate: every table is a Delta table")
    for item in done:
        out.print(f"{item.table}: {item.rows_before:,} rows -> {item.rows_after:,} rows "
                  f"(Delta), {item.files_removed} old file(s) removed")


@lake_app.command("vacuum")
def lake_vacuum(
    retention_hours: Annotated[
        float | None, typer.Option("--retention-hours", min=0.0,
                                   help="Keep versions this young [default: lake.retention_hours].")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the files without deleting them.")] = False,
    full: Annotated[bool, typer.Option("--full", help="Also delete files no version names (killed or refused "
                                       "writes, foreign files) once older than the retention.")] = False,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """Delete the files of table versions older than the retention (and, with --full, of writes never committed)."""
    from capacity_forecaster.schema import TABLES

    settings = setup_command(config, lake, log_level, log_format, quiet, silent)
    opened = pipeline.open_lake(settings, for_writing=not dry_run)
    hours = settings.lake.retention_hours if retention_hours is None else retention_hours
    total = 0
    for name in TABLES:
        if not opened.delta.exists(TABLES[name].path):
            continue
        files = opened.vacuum(name, hours, dry_run=dry_run, full=full)
        total += len(files)
        if files:
            out.print(f"{name}: {len(files)} file(s) {'to delete' if dry_run else 'deleted'}")
    out.print(f"{total} file(s) {'would be' if dry_run else 'were'} deleted (versions older than {hours:g} h)")


@lake_app.command("history")
def lake_history(
    table: Annotated[str, typer.Argument(help="A lake table, e.g. forecasts.")],
    limit: Annotated[int, typer.Option(min=1, help="Newest versions shown.")] = 20,
    config: ConfigOpt = None,
    lake: LakeOpt = None,
    log_level: LogLevelOpt = None,
    log_format: LogFormatOpt = None,
    quiet: QuietOpt = 0,
    silent: SilentOpt = False,
) -> None:
    """The versions of a table, newest first, with the run that wrote each (for --as-of)."""
    from rich.table import Table

    from capacity_forecaster.schema import TABLES

    if table not in TABLES:
        raise StorageError(f"unknown table '{table}'; tables: {', '.join(TABLES)}")
    settings = setup_command(config, lake, log_level, log_format, quiet, silent)
    entries = pipeline.open_lake(settings, for_writing=False).history(table, limit)
    if not entries:
        raise StorageError(f"table '{table}' has not been written in lake {settings.lake.uri}")
    shown = Table(show_lines=False)
    for column in ("version", "committed (UTC)", "operation", "stage", "run_id"):
        shown.add_column(column)
    for entry in entries:
        shown.add_row(str(entry["version"]), str(entry["timestamp"])[:19], str(entry["operation"] or ""),
                      str(entry["stage"] or ""), str(entry["run_id"] or ""))
    out.print(shown)
