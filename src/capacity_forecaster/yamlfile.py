"""Reading a user's YAML file (config, ingest mapping, what-if scenario): ``safe_load`` and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from capacity_forecaster.errors import ConfigError


def read_yaml(path: str | Path, what: str, option: str) -> Any:
    """The parsed content of a YAML file (``yaml.safe_load``; None for an empty file).

    Args:
        path: the local file.
        what: what the file is, for messages ("config file", "mapping file", ...).
        option: the command-line option that names such a file ("--config"), for the missing-file hint.

    Raises:
        ConfigError: the file is missing, unreadable, or not YAML (with the line and column of the problem).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {file} does not exist; pass an existing YAML file to {option}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{what} {file} cannot be read: {err}") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{what} {file} is not valid YAML{where}: {getattr(err, 'problem', err)}") from err
