"""Server ids of an ingest: the id dictionary (text <-> int32 code) and ids taken from file names."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from capacity_forecaster.errors import InputError

# Bytes that did not decode in csv.encoding become U+FFFD; an id holding one is not a real id.
REPLACEMENT_CHAR = "\ufffd"


class ServerIds:
    """Dictionary of server ids met during one ingest (id text <-> int32 code)."""

    def __init__(self) -> None:
        self._codes: dict[str, int] = {}
        self.names: list[str] = []

    def code(self, name: str) -> int:
        """The code of ``name``, adding it on first sight."""
        found = self._codes.get(name)
        if found is None:
            found = self._codes[name] = len(self.names)
            self.names.append(name)
        return found

    def codes(self, text: pa.Array, prefix: str, pattern: str | None = None) -> np.ndarray:
        """Codes of a text column via its dictionary, so that Python sees each id once.

        Empty ids, ids holding undecodable bytes (U+FFFD) and, with ``pattern``, values it does not match
        get -1 and are never added; with ``pattern`` the id is its first group (or whole match).
        """
        encoded = pc.dictionary_encode(text)
        values = encoded.dictionary.to_pylist()
        if pattern is not None:
            values = [server_from_value(v, pattern) if v else v for v in values]
        known = [-1 if not v or REPLACEMENT_CHAR in v else self.code(prefix + v) for v in values]
        lookup = np.array([*known, -1], dtype=np.int32)
        indices = pc.fill_null(encoded.indices, len(lookup) - 1).to_numpy(zero_copy_only=False)
        return lookup[np.asarray(indices, dtype=np.int64)]


def server_from_value(value: str, pattern: str) -> str | None:
    """The id ``pattern`` (``server_id.pattern``) finds in a column value: its first group, else the whole match;
    None where it does not match (or the group is empty)."""
    match = re.search(pattern, value)
    if match is None:
        return None
    found = match.group(1) if match.re.groups else match.group(0)
    return found or None


def server_from_filename(file_name: str, pattern: str, label: str) -> str:
    """The server id that ``pattern`` (the mapping's ``from_filename``) extracts from a file name."""
    match = re.search(pattern, file_name)
    if match is None or not match.group(1):
        raise InputError(f"{label}: file name '{file_name}' does not match server_id.from_filename "
                         f"{pattern!r}; rename the file or change the pattern in the mapping")
    return match.group(1)
