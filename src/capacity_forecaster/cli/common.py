"""What every ``capfc`` command shares: the app, consoles, global options, settings + logging set-up."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from capacity_forecaster import pipeline
from capacity_forecaster.config import Settings, load_settings

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


def setup_command(
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


def print_tables(settings: Settings) -> None:
    lake = pipeline.open_lake(settings, for_writing=False)
    table = Table(title=f"Lake {lake.uri}", title_justify="left")
    table.add_column("table (SQL view)")
    table.add_column("rows", justify="right")
    table.add_column("location")
    for item in pipeline.summarize(lake):
        table.add_row(item.name, f"{item.rows:,}", item.location)
    out.print(table)


@contextmanager
def progress_bar(quiet: bool, label: str) -> Iterator[Callable[[int, int], None] | None]:
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


def kv_table(title: str, mapping: dict[str, Any], key: str, value: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    table.add_column(value, justify="right")
    for name, count in mapping.items():
        table.add_row(str(name), f"{count:,}" if isinstance(count, int) else f"{count:.3f}")
    return table
