"""The ``capfc`` command line: one sub-command per stage; the only place that configures logging.

``common`` holds the app and the global options, ``commands`` the stage commands, ``aws`` the
``capfc aws`` group, ``lake`` the ``capfc lake`` group, ``summaries`` the one-screen summaries.
"""

from __future__ import annotations

import logging
import sys

import typer

from capacity_forecaster.cli import aws, aws_forecast, commands, lake  # noqa: F401  (importing them registers the commands)
from capacity_forecaster.cli.common import app
from capacity_forecaster.cli.logs import json_logging_active
from capacity_forecaster.errors import CapacityForecasterError

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``capfc`` console script; returns the process exit code."""
    try:
        result = app(args=argv, prog_name="capfc", standalone_mode=False)
    except CapacityForecasterError as err:
        message = " ".join(str(err).split())
        if json_logging_active():  # every stderr line stays JSON
            logging.getLogger("capacity_forecaster.cli").error("capfc: error: %s", message)
        else:
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
