"""What every ``capfc`` command shares: the app, consoles, global options, settings + logging set-up."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperCommand

from capacity_forecaster import __version__, pipeline
from capacity_forecaster.cli.logs import configure_logging, resolve_format
from capacity_forecaster.cli.progress import phase_progress
from capacity_forecaster.config import Settings, load_settings
from capacity_forecaster.stages.forecast import Progress

log = logging.getLogger("capacity_forecaster.cli")

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(
    name="capfc",
    help="AWS-CapacityForecaster: forecast server capacity, find risks and savings.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
)
# soft_wrap: a line longer than the terminal (or than 80 columns when piped) is never broken.
out = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
PIPED_WIDTH = 10_000


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the package version and exit.")] = False,
) -> None:
    """AWS-CapacityForecaster: forecast server capacity, find risks and savings."""


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", envvar="CAPFC_CONFIG", help="YAML config file (default: built-in defaults)."),
]
# The environment and config keys are named in the help only: the config loader reads them, so that
# the precedence (option > environment > config file) and its error messages stay in one place.
LakeOpt = Annotated[
    str | None, typer.Option("--lake", help="Lake location: a folder or s3://bucket/prefix "
                             "[default: ./lake; env var CAPFC_LAKE, config lake.uri].")
]
LogLevelOpt = Annotated[str | None, typer.Option(
    "--log-level", help="DEBUG, INFO, WARNING or ERROR [default: INFO; env var CAPFC_LOG_LEVEL, "
    "config log_level].")]
LogFormatOpt = Annotated[str | None, typer.Option(
    "--log-format", help="auto (rich on a terminal, plain otherwise), rich, plain or json "
    "[default: auto; env var CAPFC_LOG_FORMAT, config log_format].")]
QuietOpt = Annotated[int, typer.Option(
    "--quiet", "-q", count=True, show_default=False, help="Hide logs but warnings and errors; keep the "
    "final summary. Twice (-qq): as --silent.")]
SilentOpt = Annotated[bool, typer.Option("--silent", help="Print nothing but errors (and a command's result).")]


def quiet_level(quiet: int, silent: bool) -> int:
    """0 normal, 1 quiet (summary kept), 2 silent (errors only)."""
    return 2 if silent else min(int(quiet), 2)


def setup_command(
    config: Path | None, lake: str | None, log_level: str | None, log_format: str | None = None, quiet: int = 0,
    silent: bool = False, **overrides: Any
) -> Settings:
    """Read .env, merge the configuration once and configure logging.

    Commands print their stage summary on stdout (unless silent), so a stage's own summary log
    record is not repeated on stderr in rich and plain logs.

    Args:
        config, lake, log_level, log_format: the global options (``None``: file, environment, default).
        quiet: ``--quiet`` count; 1 hides logs below WARNING, 2 (or ``silent``) below ERROR.
        silent: ``--silent``.
        overrides: dotted config keys set by the command's own options (``None`` values are ignored).
    """
    try:
        from dotenv import load_dotenv

        load_dotenv(Path.cwd() / ".env", override=False)
    except ImportError:  # python-dotenv is a core dependency; tolerate a trimmed install
        pass
    settings = load_settings(
        config, {"lake.uri": lake, "log_level": log_level, "log_format": log_format, **overrides}
    )
    if not out.is_terminal:  # piped or redirected: tables take their natural width, never squeezed to 80
        out.width = PIPED_WIDTH
    level = (getattr(logging, settings.log_level), logging.WARNING, logging.ERROR)[quiet_level(quiet, silent)]
    configure_logging(level, settings.log_format, err_console,
                      summary_on_stdout=quiet_level(quiet, silent) < 2)
    return settings


def progress_bars(settings: Settings, quiet: int, silent: bool) -> AbstractContextManager[Progress | None]:
    """Phase progress bars on stderr (a context yielding the callback, or ``None`` when there are none).

    Bars need a terminal, rich logs and no ``--quiet``.
    """
    rich_logs = resolve_format(settings.log_format, err_console) == "rich"
    return phase_progress(quiet_level(quiet, silent) == 0 and rich_logs, err_console)


class ModelsHelpCommand(TyperCommand):
    """A command whose ``--models`` help lists the registered models, looked up only when help is shown."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # The registry imports every model module (not Prophet or StatsForecast themselves, which the
        # adapters import on first fit): ~0.4 s, paid by `-h` only, not by every command start.
        from capacity_forecaster.forecast.registry import available_models

        for param in self.params:
            if param.name == "models" and hasattr(param, "help"):
                param.help = ("auto, or a comma-separated list of: " + ", ".join(available_models())
                              + ", ensemble [default: auto].")
        super().format_help(ctx, formatter)


def print_tables(settings: Settings) -> None:
    lake = pipeline.open_lake(settings, for_writing=False)
    table = Table(title=f"Lake {lake.uri}", title_justify="left")
    table.add_column("table (SQL view)")
    table.add_column("rows", justify="right")
    table.add_column("location")
    for item in pipeline.summarize(lake):
        table.add_row(item.name, f"{item.rows:,}", item.location)
    out.print(table)


def kv_table(title: str, mapping: dict[str, Any], key: str, value: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    table.add_column(value, justify="right")
    for name, count in mapping.items():
        table.add_row(str(name), f"{count:,}" if isinstance(count, int) else f"{count:.3f}")
    return table
