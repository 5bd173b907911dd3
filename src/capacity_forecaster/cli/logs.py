"""Logging set-up for ``capfc``: rich on a terminal, plain or JSON lines otherwise; ISO-8601 times with zone.

Only the CLI configures logging (the library just calls ``logging.getLogger(__name__)``). Formats:

- ``rich``: coloured, for a terminal (the default there);
- ``plain``: ``2026-12-06T04:15:02+00:00 INFO capacity_forecaster.x: message``, one line per record,
  never wrapped (the default when stderr is not a terminal);
- ``json``: one JSON object per line with ``time, level, logger, message`` (+ ``exc_info``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

# Third-party loggers that speak at INFO about their own plumbing.
NOISY = ("cmdstanpy", "prophet", "werkzeug", "botocore", "s3fs", "aiobotocore", "urllib3", "fsspec",
         "distributed", "asyncio")
# Set on a log record that is a stage's end-of-stage summary the CLI prints itself (stdout).
STAGE_SUMMARY = "stage_summary"


def iso_time(created: float) -> str:
    """A record time as ISO-8601 with the local zone, to the second: ``2026-12-06T04:15:02+00:00``."""
    return dt.datetime.fromtimestamp(created).astimezone().isoformat(timespec="seconds")


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


class PlainFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER: message`` on one line; a traceback, if any, follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{iso_time(record.created)} {record.levelname} {record.name}: {_one_line(record.getMessage())}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time, level, logger, message`` and ``exc_info`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {"time": iso_time(record.created), "level": record.levelname,
                                   "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


class _DropShownSummaries(logging.Filter):
    """Drop stage summaries from the log when the command prints the same summary on stdout."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, STAGE_SUMMARY, False)


def resolve_format(log_format: str, console: Console) -> str:
    """``auto`` -> ``rich`` on a terminal, else ``plain``; any other format unchanged."""
    if log_format == "auto":
        return "rich" if console.is_terminal else "plain"
    return log_format


def configure_logging(level: int, log_format: str, console: Console, *, summary_on_stdout: bool) -> str:
    """Install the one root handler (on stderr) and quieten noisy libraries.

    Args:
        level: the lowest level shown.
        log_format: ``auto``, ``rich``, ``plain`` or ``json``.
        console: the stderr console rich logging (and progress bars) draw on.
        summary_on_stdout: the command prints its stage summary on stdout, so the stage's own summary
            record is not repeated on stderr (JSON logs keep it: they are read by machines).

    Returns:
        The format in use (``auto`` resolved).
    """
    chosen = resolve_format(log_format, console)
    handler: logging.Handler
    if chosen == "rich":
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False,
                              log_time_format=lambda when: Text(when.astimezone().isoformat(timespec="seconds")))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter() if chosen == "json" else PlainFormatter())
    if summary_on_stdout and chosen != "json":
        handler.addFilter(_DropShownSummaries())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)  # warnings go through the handler too: JSON stays JSON
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    return chosen


def json_logging_active() -> bool:
    """Whether the root handler writes JSON lines (the CLI's error line then goes out as JSON too)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)
