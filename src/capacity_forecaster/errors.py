"""One exception tree for the whole package; the CLI maps it to exit code 2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from capacity_forecaster.messages import examples


class CapacityForecasterError(Exception):
    """Base of every error the tool raises on purpose.

    The message must say what was wrong, where (file, column, key, series) and
    how to fix it; the CLI prints it as one line and exits with code 2.
    """


class ConfigError(CapacityForecasterError):
    """A configuration key, value or command-line option is invalid."""


class SchemaError(CapacityForecasterError):
    """A frame or file does not have the columns or types a stage expects."""


class StorageError(CapacityForecasterError):
    """The lake cannot be read or written (missing bucket, permissions, corrupt table)."""


class VacuumedError(StorageError):
    """A table version asked for by time travel (``--as-of``) is recorded, but its files were vacuumed."""


class InputError(CapacityForecasterError):
    """A source file given by the user cannot be used (unreadable, wrong layout)."""


class ForecastError(CapacityForecasterError):
    """Forecasting cannot proceed (no usable series, unknown model)."""


class ArtifactError(CapacityForecasterError):
    """A stored model artefact is missing or fails its checksum."""


class AwsError(CapacityForecasterError):
    """An AWS API call failed (access denied, missing resource, no credentials, unreachable endpoint).

    Attributes:
        code: the AWS error code (e.g. ``AccessDeniedException``), empty when there is none.
    """

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def other_problems(problems: Sequence[Mapping[str, Any]], shown: Mapping[str, Any], prefix: str = "") -> str:
    """`` (also: key 'a.b': message; ...)`` for validation problems besides ``shown``, for a one-line error.

    A problem that only follows from another (a list too short once its bad item is dropped, a
    section missing a key that is misspelt below it) is left out: it would send the reader after a
    second cause that is not there.

    Args:
        problems: pydantic's ``ValidationError.errors()``.
        shown: the problem the message already describes.
        prefix: text before each dotted key (``report.`` when the keys are relative).
    """
    def key(problem: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(str(p) for p in problem["loc"] if p != "[key]")

    others = []
    for problem in problems:
        if problem == shown:
            continue
        below = [q for q in problems if len(key(q)) > len(key(problem)) and key(q)[: len(key(problem))] == key(problem)]
        if problem["type"] in ("too_short", "missing") and below:
            continue
        # A misspelt key also makes the key it meant "missing": the misspelling (shown or listed) is the cause.
        misspelt = [q for q in problems if q["type"] == "extra_forbidden" and key(q)[:-1] == key(problem)[:-1]]
        if problem["type"] == "missing" and misspelt:
            continue
        others.append(f"key '{prefix}{'.'.join(key(problem))}': {str(problem['msg']).removeprefix('Value error, ')}")
    if not others:
        return ""
    return f" (also: {examples(others, sep='; ')})"
