"""The lake: Parquet tables on a local folder or S3, written atomically through a pointer file.

Every table folder holds Parquet files named ``part-<version>-<n>.parquet`` (below
``year=YYYY/month=MM/`` for metric tables) and a pointer ``_table.json`` listing the
files of the current version. A write puts the new files beside the old ones, then
replaces the pointer in one step (an atomic rename locally, a single PUT on S3), then
deletes the files of older versions. Readers of this module go through the pointer, so
they never see half a table, and a crash mid-write leaves the previous version readable.
Tools that list the folder directly (Athena, ``pd.read_parquet``) ignore ``_``-prefixed
files and see one complete version except during the short window between the pointer
swap and the clean-up. One writer per table at a time is assumed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import posixpath
import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from capacity_forecaster.config import LakeConfig
from capacity_forecaster.errors import StorageError
from capacity_forecaster.schema import PARTITION_SCHEMA, TableSpec, table_spec
from capacity_forecaster.storage.filesystem import Location, resolve
from capacity_forecaster.storage.writer import TableInfo, TableWriter

log = logging.getLogger(__name__)

POINTER = "_table.json"
_PARTITIONING = pads.partitioning(PARTITION_SCHEMA, flavor="hive")


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """The table as pandas; naive dates and times as ``datetime64[ns]`` where they fit.

    A column holding a date outside the nanosecond range (1677-2262, e.g. a year-9999 typo in a raw
    table, which the ETL quarantines) keeps its coarser unit instead of failing the whole read.
    """
    frame = table.to_pandas(date_as_object=False, ignore_metadata=True)
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_datetime64_any_dtype(dtype) and getattr(dtype, "tz", None) is None:
            try:
                frame[name] = frame[name].astype("datetime64[ns]")
            except (pd.errors.OutOfBoundsDatetime, OverflowError):
                log.warning("column %s holds dates outside 1677-2262; read at %s precision", name, dtype)
    return frame


class Lake:
    """A lake root with one folder per table (see ``schema.TABLES``)."""

    def __init__(self, location: Location) -> None:
        self.location = location
        self.fs = location.fs
        self.root = location.path
        self.uri = location.uri

    @classmethod
    def open(cls, uri: str, cfg: LakeConfig | None = None, *, for_writing: bool = False) -> Lake:
        """Open the lake at ``uri`` (local folder or ``s3://bucket/prefix``).

        Raises:
            StorageError: the location is missing, unreachable or not writable.
        """
        return cls(resolve(uri, cfg, for_writing=for_writing))

    # -- paths -------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        """Absolute path inside the filesystem for a lake-relative path."""
        return posixpath.join(self.root, *parts)

    def display(self, *parts: str) -> str:
        """A lake-relative path as the user would write it (URI form)."""
        return posixpath.join(self.uri.rstrip("/"), *parts)

    # -- small objects ---------------------------------------------------------------------
    def write_bytes(self, relpath: str, data: bytes) -> None:
        """Write one object atomically (temp + rename locally; a single PUT on S3)."""
        final = self.path(relpath)
        try:
            self.fs.create_dir(posixpath.dirname(final), recursive=True)
            if self.location.is_s3:
                with self.fs.open_output_stream(final) as out:
                    out.write(data)
                return
            tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
            self.fs.move(tmp, final)
        except OSError as err:
            raise StorageError(f"cannot write {self.display(relpath)}: {err}") from err

    def read_bytes(self, relpath: str) -> bytes | None:
        """Read one object, or None when it does not exist."""
        try:
            with self.fs.open_input_stream(self.path(relpath)) as src:
                return bytes(src.read())
        except FileNotFoundError:
            return None
        except OSError as err:
            if "not exist" in str(err) or "NoSuchKey" in str(err) or "Path does not exist" in str(err):
                return None
            raise StorageError(f"cannot read {self.display(relpath)}: {err}") from err

    def write_json(self, relpath: str, payload: dict[str, Any]) -> None:
        """Write a JSON object atomically."""
        self.write_bytes(relpath, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, relpath: str) -> dict[str, Any] | None:
        """Read a JSON object, or None when it does not exist."""
        data = self.read_bytes(relpath)
        if data is None:
            return None
        try:
            parsed = json.loads(data)
        except json.JSONDecodeError as err:
            raise StorageError(f"{self.display(relpath)} is not valid JSON: {err}") from err
        if not isinstance(parsed, dict):
            raise StorageError(f"{self.display(relpath)} must hold a JSON object")
        return parsed

    def list_files(self, relpath: str) -> list[str]:
        """Lake-relative paths of all files below ``relpath`` (recursive, sorted)."""
        return sorted(self.file_times(relpath))

    def file_times(self, relpath: str) -> dict[str, dt.datetime | None]:
        """Lake-relative path -> modification time (None where the filesystem gives none) below ``relpath``."""
        base = self.path(relpath)
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as err:
            raise StorageError(f"cannot list {self.display(relpath)}: {err}") from err
        start = len(self.root.rstrip("/")) + 1
        return {i.path[start:]: i.mtime for i in infos if i.type == pafs.FileType.File}

    # -- tables ------------------------------------------------------------------------------
    def table_info(self, name: str) -> TableInfo | None:
        """The pointer of table ``name``, or None when it was never written."""
        spec = table_spec(name)
        pointer = self.read_json(posixpath.join(spec.path, POINTER))
        if pointer is None:
            return None
        try:
            schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(pointer["schema"])))
            return TableInfo(
                name=name,
                version=str(pointer["version"]),
                files=tuple(pointer["files"]),
                rows=int(pointer["rows"]),
                schema=schema,
                written_at=str(pointer["written_at"]),
            )
        except (KeyError, ValueError, TypeError, pa.ArrowInvalid) as err:
            raise StorageError(
                f"{self.display(spec.path, POINTER)} is damaged ({err}); re-run the stage that writes '{name}'"
            ) from err

    def has_table(self, name: str) -> bool:
        """Whether table ``name`` has been written."""
        return self.table_info(name) is not None

    def write_table(self, name: str, frame: pd.DataFrame | pa.Table, *, validate: bool = True) -> TableInfo:
        """Replace table ``name`` with ``frame`` atomically.

        Args:
            name: a table from ``schema.TABLES``.
            frame: the rows (pandas or Arrow); metric tables are partitioned by the year and month
                of ``ds``.
            validate: check the contract columns first.

        Returns:
            The new pointer.

        Raises:
            SchemaError: required columns are missing.
            StorageError: the write failed; the previous version is still the current one.
        """
        writer = self.writer(name, validate=validate)
        writer.write(frame)
        return writer.commit()

    def writer(self, name: str, *, validate: bool = True) -> TableWriter:
        """A writer that replaces table ``name`` with rows given in several batches.

        Nothing is visible to readers until ``commit()``; without it the previous version stays.
        """
        return TableWriter(self, table_spec(name), validate=validate)

    def _publish(self, spec: TableSpec, info: TableInfo) -> None:
        self.write_json(
            posixpath.join(spec.path, POINTER),
            {
                "table": info.name,
                "version": info.version,
                "files": list(info.files),
                "rows": info.rows,
                "schema": base64.b64encode(info.schema.serialize().to_pybytes()).decode(),
                "written_at": info.written_at,
            },
        )
        self._remove_stale(spec, keep=set(info.files))
        log.debug("wrote table %s: %d rows in %d files (version %s)", info.name, info.rows,
                  len(info.files), info.version)

    def _remove_stale(self, spec: TableSpec, keep: set[str]) -> None:
        prefix = spec.path.rstrip("/") + "/"
        for rel in self.list_files(spec.path):
            inner = rel[len(prefix):]
            if inner in keep or posixpath.basename(inner).startswith("_"):
                continue
            try:
                self.fs.delete_file(self.path(rel))
            except OSError as err:
                log.warning("could not delete stale file %s: %s", self.display(rel), err)
        self.prune_empty_dirs(spec.path)

    def prune_empty_dirs(self, relpath: str) -> None:
        """Remove the empty folders below ``relpath`` (local lakes; S3 has no folders)."""
        if not self.location.is_s3:
            self._prune_empty_dirs(self.path(relpath))

    def _prune_empty_dirs(self, base: str) -> None:
        infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        dirs = sorted((i.path for i in infos if i.type == pafs.FileType.Directory), key=len, reverse=True)
        for path in dirs:
            if not self.fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
                self.fs.delete_dir(path)

    def dataset(self, name: str) -> pads.Dataset | None:
        """A pyarrow dataset over the current version of ``name`` (None if never written).

        Partitioned tables expose ``year`` and ``month`` as typed columns.
        """
        info = self.table_info(name)
        if info is None:
            return None
        spec = table_spec(name)
        base = self.path(spec.path)
        files = [posixpath.join(base, f) for f in info.files]
        if spec.partitioned:
            schema = pa.unify_schemas([info.schema, PARTITION_SCHEMA])
            return pads.dataset(
                files, schema=schema, filesystem=self.fs, format="parquet",
                partitioning=_PARTITIONING, partition_base_dir=base,
            )
        return pads.dataset(files, schema=info.schema, filesystem=self.fs, format="parquet")

    def read_table(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        filter: pads.Expression | None = None,  # noqa: A002 - pyarrow's own name
    ) -> pd.DataFrame:
        """Read the current version of table ``name`` into pandas.

        Args:
            name: a table from ``schema.TABLES``.
            columns: columns to read (default: the stored columns, without partition keys).
            filter: a pyarrow expression pushed down to the scan.

        Returns:
            The rows; ``ds`` and other date columns as ``datetime64[ns]``.

        Raises:
            StorageError: the table was never written or cannot be read.
        """
        for attempt in (1, 2):
            dataset = self.dataset(name)
            if dataset is None:
                raise StorageError(
                    f"table '{name}' not found in lake {self.uri} ({table_spec(name).path}/ has no "
                    f"{POINTER}); run the stage that writes it first"
                )
            info = self.table_info(name)
            wanted = list(columns) if columns is not None else list(info.schema.names) if info else None
            try:
                return _to_pandas(dataset.to_table(columns=wanted, filter=filter))
            except FileNotFoundError as err:
                # A concurrent write replaced the table between the pointer read and the scan.
                if attempt == 2:
                    raise StorageError(f"table '{name}' changed while being read: {err}") from err
            except (OSError, pa.ArrowInvalid) as err:
                raise StorageError(f"cannot read table '{name}' from {self.uri}: {err}") from err
        raise AssertionError("unreachable")
