"""Reading a user's YAML file (config, ingest mapping, what-if scenario): ``safe_load`` and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from capacity_forecaster.errors import ConfigError


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data, no tags that build objects) that refuses a key given twice in one mapping:
    the plain loader keeps the last one silently (helper-51: ``layout:`` written twice gave an unrelated error)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key '{key}' is given twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader: plain data only)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{what} {file} is not valid YAML{where}: {getattr(err, 'problem', err)}") from err
