"""Server ids of an ingest: the id dictionary (text <-> int32 code) and ids taken from file names."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from capacity_forecaster.errors import InputError
from capacity_forecaster.etl.specs import ServerIdSpec

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

    def codes(self, text: pa.Array, spec: ServerIdSpec) -> np.ndarray:
        """Codes of a text column via its dictionary, so that Python sees each id once.

        Empty ids, ids holding undecodable bytes (U+FFFD) and values ``spec.pattern`` does not match get -1
        and are never added; the others are ``spec.server_id`` of the value.
        """
        encoded = pc.dictionary_encode(text)
        values = [spec.server_id(v) if v and REPLACEMENT_CHAR not in v else None
                  for v in encoded.dictionary.to_pylist()]
        known = [-1 if v is None else self.code(v) for v in values]
        lookup = np.array([*known, -1], dtype=np.int32)
        indices = pc.fill_null(encoded.indices, len(lookup) - 1).to_numpy(zero_copy_only=False)
        return lookup[np.asarray(indices, dtype=np.int64)]


def server_from_filename(file_name: str, pattern: str, label: str) -> str:
    """The server id that ``pattern`` (the mapping's ``from_filename``) extracts from a file name."""
    match = re.search(pattern, file_name)
    if match is None or not match.group(1):
        raise InputError(f"{label}: file name '{file_name}' does not match server_id.from_filename "
                         f"{pattern!r}; rename the file or change the pattern in the mapping")
    return match.group(1)
