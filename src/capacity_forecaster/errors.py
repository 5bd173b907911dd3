"""One exception tree for the whole package; the CLI maps it to exit code 2."""

from __future__ import annotations


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
