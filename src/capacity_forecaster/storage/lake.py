"""The lake: Delta Lake tables of Parquet files on a local folder or S3.

Every table folder is a Delta table (``_delta_log/`` plus Parquet files named
``part-<version>-<n>.parquet``, below ``year=YYYY/month=MM/`` for metric tables). A write puts its
files beside the current ones and makes them the new version with one Delta commit
(``storage.delta``): atomic across all files, and refused (``ConflictError``) when another writer
changed the table since this process read it, so concurrent writers never lose each other's rows
silently. Older versions stay readable (time travel, ``as_of``) until ``vacuum`` removes them.

Readers go through the log, never through a folder listing: files of a write that never committed
(a crash, a refused conflict) are invisible to capfc, DuckDB through ``capfc sql`` and Athena (which
reads Delta tables natively). A stage's tables become visible together: each stage run, when it
completes, writes a stage record naming every table version it produced (``storage.consistency``);
a table version committed by a run that has not completed is not read while an earlier complete
run's version exists.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import posixpath
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from capacity_forecaster.config import LakeConfig
from capacity_forecaster.errors import StorageError, VacuumedError
from capacity_forecaster.schema import PARTITION_SCHEMA, TABLES, TableSpec, table_spec
from capacity_forecaster.storage.consistency import (
    StageRecord,
    find_run,
    parse_time,
    read_records,
    recorded_version,
    succeeded_runs,
)
from capacity_forecaster.storage.delta import COMMIT_KEY, RUN_KEY, STAGE_KEY, ConflictError, DeltaStore, Snapshot
from capacity_forecaster.storage.filesystem import Location, resolve
from capacity_forecaster.storage.lease import LEASE_SECONDS, running
from capacity_forecaster.storage.writer import TableInfo, TableWriter, delta_schema, read_schema

log = logging.getLogger(__name__)

LEGACY_POINTER = "_table.json"  # the pre-Delta layout (storage.legacy)
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


def _finite(value: Any) -> Any:
    """``value`` with every float that is NaN or infinite (numpy's too) replaced by None, through dicts and lists."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _not_found(err: OSError) -> bool:
    """Whether a filesystem error says the object does not exist (local or S3 wording)."""
    text = str(err)
    return isinstance(err, FileNotFoundError) or "not exist" in text or "NoSuchKey" in text


class Lake:
    """A lake root with one folder per table (see ``schema.TABLES``)."""

    def __init__(self, location: Location, cfg: LakeConfig | None = None) -> None:
        self.location = location
        self.fs = location.fs
        self.root = location.path
        self.uri = location.uri
        self.cfg = cfg or LakeConfig()
        self.delta = DeltaStore(location, self.cfg)
        # (run id, stage) of the stage running in this process: its commits carry them, and its
        # own uncommitted-stage tables are visible to it.
        self.run: tuple[str, str] | None = None
        # table -> newest version this process has seen: the base a write is checked against. None:
        # the table did not exist when this process read it, so a write must create it and is refused
        # when another writer created it since (the write was derived from no rows of it).
        self._seen: dict[str, int | None] = {}
        # table -> the run still running whose commit a write of this process is refused on (its lease).
        self._running: dict[str, str] = {}
        # table -> the version the running stage read it at: a stage reading an input in several passes
        # (chunks) reads one version even when another run completes meanwhile (``pin_reads``).
        self._pins: dict[str, int] = {}
        self._records: dict[str, StageRecord] | None = None
        self._records_cached = False

    @classmethod
    def open(cls, uri: str, cfg: LakeConfig | None = None, *, for_writing: bool = False,
             existing: bool = False) -> Lake:
        """Open the lake at ``uri`` (local folder or ``s3://bucket/prefix``); ``existing``: a local folder
        must exist already (never created).

        Raises:
            StorageError: the location is missing, unreachable or not writable.
        """
        return cls(resolve(uri, cfg, for_writing=for_writing, existing=existing), cfg)

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
        except OSError as err:
            if _not_found(err):
                return None
            raise StorageError(f"cannot read {self.display(relpath)}: {err}") from err

    def delete_file(self, relpath: str) -> None:
        """Delete one object; nothing happens when it does not exist."""
        try:
            self.fs.delete_file(self.path(relpath))
        except OSError as err:
            if not _not_found(err):
                raise StorageError(f"cannot delete {self.display(relpath)}: {err}") from err

    def write_json(self, relpath: str, payload: dict[str, Any]) -> None:
        """Write a JSON object atomically; NaN and infinite numbers as null (strict JSON: helper-51 found a run
        manifest with a bare ``NaN`` that strict parsers refuse)."""
        text = json.dumps(_finite(payload), indent=2, sort_keys=True, default=str, allow_nan=False)
        self.write_bytes(relpath, text.encode())

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
    def refresh(self) -> None:
        """Forget cached stage records (a long-lived reader calls this to see newer runs)."""
        self._records = None

    def stage_records(self) -> dict[str, StageRecord]:
        """The last complete record of each stage (see ``storage.consistency``), cached until ``refresh``."""
        self._records_cached = self._records is not None
        if self._records is None:
            self._records = read_records(self)
        return self._records

    def _snapshot(self, name: str, as_of: str | dt.datetime | None = None) -> Snapshot | None:
        """The version of ``name`` a reader should see: the consistent one, or the one ``as_of`` asks for."""
        spec = table_spec(name)
        if as_of is not None:
            return self._as_of(name, as_of)
        if name in self._pins:
            return self.delta.snapshot(spec.path, version=self._pins[name])
        chosen = self._consistent(name)
        if self.run is not None and chosen is not None and chosen.run_id != self.run[0]:
            self._pins[name] = chosen.version
        return chosen

    def pin_reads(self, pins: dict[str, int] | None = None) -> dict[str, int]:
        """Start a new set of read pins (``pins``, default none) and return the set it replaces.

        A pinned table is read at its pinned version until the pins change. ``storage.manifest.stage_run``
        calls it when a stage starts and ends: inside a stage, the first read of an input table fixes
        the version every later read of that table gets. A long-lived reader pins ``current_versions()``.
        """
        previous, self._pins = self._pins, dict(pins or {})
        return previous

    def current_versions(self) -> dict[str, int]:
        """The version readers see now of every table the lake has: ``pin_reads`` it for one consistent view.

        Raises:
            StorageError: a table's log cannot be read.
        """
        versions = {}
        for name in TABLES:
            snap = self._snapshot(name)
            if snap is not None:
                versions[name] = snap.version
        return versions

    def _consistent(self, name: str) -> Snapshot | None:
        """The newest version of ``name`` from a complete run (or from the running stage itself)."""
        spec = table_spec(name)
        latest = self.delta.snapshot(spec.path)
        if latest is None:
            self._refuse_legacy(name)
            self._seen.setdefault(name, None)
            return None
        self._seen[name] = latest.version
        if latest.run_id is None or (self.run is not None and latest.run_id == self.run[0]):
            return latest
        # A vacuum's own commits come after the write they clean up: the data's version counts.
        data_version = latest.version if latest.data_version is None else latest.data_version
        recorded = recorded_version(self.stage_records(), name)
        if (recorded is None or recorded < data_version) and self._records_cached:
            # Records read earlier may predate a run that completed since (a table's first run among them,
            # helper-57): read them again once.
            recorded = self._recorded_afresh(name)
        if recorded is not None and recorded >= data_version:
            return latest
        # The newest version comes from a run that has not completed (still running, or crashed):
        # readers keep the version the last complete run of that stage produced, with its siblings.
        # A write may replace a crashed run's version, but not a running one's: it would be derived
        # from the older version and drop that run's rows, so it is based on the older version and
        # refused (``storage.lease``).
        alive = running(self, latest.run_id)
        if alive is None:
            # The run may have completed between reading the records and its lease (a run deletes
            # its lease after writing its record).
            recorded = self._recorded_afresh(name)
            if recorded is not None and recorded >= data_version:
                return latest
            self._running.pop(name, None)
            if recorded is None:
                # Only runs that died before completing ever wrote it (helper-51: a first ingest that failed
                # on a later table's commit left raw_metrics readable without its quarantine and inventory):
                # readers see no table; a writer builds on the newest commit.
                log.debug("table %s: only incomplete runs wrote it (newest: %s, %s); it reads as absent",
                          name, latest.run_id, latest.stage)
                return None
        elif recorded is None:
            return latest  # a running first run's version: readable, and built on by a run beside it
        else:
            self._seen[name] = recorded
            self._running[name] = alive
        log.debug("table %s: version %d is from run %s (%s) which has not completed (%s); reading version %d",
                  name, latest.version, latest.run_id, latest.stage, alive or "not running", recorded)
        return self.delta.snapshot(spec.path, version=recorded)

    def _recorded_afresh(self, name: str) -> int | None:
        """The recorded version of ``name`` from the stage records read again."""
        self.refresh()
        return recorded_version(self.stage_records(), name)

    def _refuse_legacy(self, name: str) -> None:
        """Raise when table ``name`` is still in the pre-Delta layout (a pointer and no Delta log)."""
        if self.read_bytes(posixpath.join(table_spec(name).path, LEGACY_POINTER)) is not None:
            raise StorageError(
                f"lake {self.uri} uses the pre-Delta layout (table '{name}' has {LEGACY_POINTER}); "
                f"convert it once with: capfc lake migrate --lake {self.uri}")

    def _as_of(self, name: str, as_of: str | dt.datetime) -> Snapshot | None:
        spec = table_spec(name)
        when = as_of if isinstance(as_of, dt.datetime) else parse_time(as_of)
        if when is None:
            run = find_run(self, str(as_of))
            if run.get("status", "succeeded") != "succeeded":
                # helper-55: --as-of a refused run showed rows it committed but never published.
                raise StorageError(f"run {as_of} did not complete ({run.get('status')}): what it wrote was never "
                                   "published; give a succeeded run id, or a time")
            written = (run.get("tables") or {}).get(name) or {}
            if written.get("version") is not None and str(written["version"]).isdigit():
                return self.delta.snapshot(spec.path, version=int(written["version"]))
            when = dt.datetime.fromisoformat(str(run["finished"]))
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        snap = self.delta.snapshot(spec.path, as_of=when)
        if snap is None or snap.run_id is None:
            return snap
        # The newest version then whose rows a completed run (or a write outside any run) committed: a failed or
        # running run's commit was never published (helper-57: --as-of a time showed a killed ingest's rows).
        done = succeeded_runs(self)
        if snap.run_id in done:
            return snap
        for entry in self.history(name):
            if (int(entry["version"]) < snap.version
                    and not str(entry.get("operation", "")).startswith(("VACUUM", "CREATE"))
                    and (entry.get("run_id") is None or entry["run_id"] in done)):
                return self.delta.snapshot(spec.path, version=int(entry["version"]))
        return None

    def table_info(self, name: str, *, as_of: str | dt.datetime | None = None) -> TableInfo | None:
        """The version of table ``name`` readers see (None when it was never written).

        Args:
            name: a table from ``schema.TABLES``.
            as_of: a run id (the version that run read or wrote) or a time (ISO 8601, UTC when
                naive): the table as it was then. Default: the current consistent version.

        Raises:
            StorageError: the table cannot be read, or ``as_of`` names no run or precedes the table.
        """
        snap = self._snapshot(name, as_of)
        if snap is None:
            return None
        return TableInfo(
            name=name, version=str(snap.version), files=snap.files, rows=snap.rows,
            schema=read_schema(snap.schema, snap.partition_by), written_at=snap.written_at,
            run_id=snap.run_id, data_version=None if snap.data_version is None else str(snap.data_version),
        )

    def has_table(self, name: str) -> bool:
        """Whether table ``name`` has been written."""
        return self.table_info(name) is not None

    def history(self, name: str, limit: int | None = None) -> list[dict[str, Any]]:
        """The versions of table ``name``, newest first: version, timestamp, operation, run id, stage."""
        return self.delta.history(table_spec(name).path, limit)

    def write_table(self, name: str, frame: pd.DataFrame | pa.Table, *, validate: bool = True) -> TableInfo:
        """Replace table ``name`` with ``frame`` in one commit.

        Args:
            name: a table from ``schema.TABLES``.
            frame: the rows (pandas or Arrow); metric tables are partitioned by the year and month
                of ``ds``.
            validate: check the contract columns first.

        Returns:
            The new version.

        Raises:
            SchemaError: required columns are missing.
            ConflictError: another writer changed the table since this process read it.
            StorageError: the write failed; the previous version is still the current one.
        """
        writer = self.writer(name, validate=validate)
        writer.write(frame)
        return writer.commit()

    def writer(self, name: str, *, validate: bool = True) -> TableWriter:
        """A writer that replaces table ``name`` with rows given in several batches.

        Nothing is visible to readers until ``commit()``; without it the previous version stays.
        """
        spec = table_spec(name)
        if name not in self._seen:
            # The base is what a reader would see now (a running run's commit is not built on).
            self._consistent(name)
        return TableWriter(self, spec, validate=validate, base_version=self._seen.get(name))

    def _commit(self, spec: TableSpec, files: list[tuple[str, int, dict[str, str], str]], schema: pa.Schema,
                base_version: int | None) -> int:
        """Commit written files as the table's new version (called by ``TableWriter.commit``)."""
        run_id, stage = self.run if self.run is not None else (None, None)
        metadata = {COMMIT_KEY: uuid.uuid4().hex}
        if run_id is not None:
            metadata[RUN_KEY] = run_id
            metadata[STAGE_KEY] = str(stage)
        partition_by = list(PARTITION_SCHEMA.names) if spec.partitioned else []
        try:
            version = self.delta.commit(spec.path, files, delta_schema(schema, spec.partitioned), partition_by,
                                        base_version=base_version, metadata=metadata)
        except ConflictError as err:
            if spec.name in self._running:
                raise ConflictError(
                    f"table {spec.path}/ has a newer version from {self._running[spec.name]}, which has not "
                    f"completed; this write was not committed, and nothing this run committed before it is "
                    f"published (readers keep the last complete run's tables): run the command again when it has "
                    f"finished (a killed run's lease expires {LEASE_SECONDS:g} s after its last heartbeat)") from err
            raise
        self._seen[spec.name] = version
        self._pins.pop(spec.name, None)  # the stage reads its own write from now on
        log.debug("committed table %s version %d (%d files)", spec.name, version, len(files))
        return version

    def vacuum(self, name: str, retention_hours: float, *, dry_run: bool = False, full: bool = False,
               keep_latest: int = 0) -> list[str]:
        """Delete files of table ``name`` that only versions older than ``retention_hours`` use.

        Time travel ends there. The version readers resolve to (``stage_records``) is always kept,
        and so are the newest ``keep_latest`` versions that wrote data, whatever their age (the
        forecasts of earlier runs that forecast-vs-actual tracking scores). With ``full``, files no
        version names at all go too once older than the retention: writes that never committed
        (killed or refused writers) and any foreign file in the folder.

        Returns:
            The lake-relative paths deleted (or, with ``dry_run``, that would be).
        """
        spec = table_spec(name)
        keep = set()
        recorded = recorded_version(self.stage_records(), name)
        if recorded is not None:
            keep.add(recorded)
        if keep_latest:
            writes = [e["version"] for e in self.history(name, keep_latest * 3 + 10) if e["operation"] == "WRITE"]
            keep.update(writes[:keep_latest])
        removed = self.delta.vacuum(spec.path, retention_hours, dry_run=dry_run, full=full,
                                    keep_versions=sorted(keep) or None)
        if not dry_run:
            self._past_own_vacuum(name)
            if removed:
                self.prune_empty_dirs(spec.path)
        return [posixpath.join(spec.path, self._relative(spec, path)) for path in removed]

    def _past_own_vacuum(self, name: str) -> None:
        """Base later writes on the vacuum's own commits (they change no data; not a concurrent writer)."""
        if name not in self._seen:
            return
        entries = self.history(name, 10)
        data = [e for e in entries if not str(e["operation"]).startswith("VACUUM")]
        if entries and data and data[0]["version"] == self._seen[name]:
            self._seen[name] = entries[0]["version"]

    def _relative(self, spec: TableSpec, path: str) -> str:
        base = self.delta.uri(spec.path).rstrip("/") + "/"
        path = path.removeprefix("file://")
        return path[len(base):] if path.startswith(base) else path

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

    def dataset(self, name: str, *, as_of: str | dt.datetime | None = None, zoned: bool = False
                ) -> pads.Dataset | None:
        """A pyarrow dataset over the version of ``name`` readers see (None if never written).

        Partitioned tables expose ``year`` and ``month`` as typed columns; timestamps are naive UTC, or with
        ``zoned`` the UTC instants they are stored as (a filter pushed into the scan must match the files' type).
        """
        info = self.table_info(name, as_of=as_of)
        if info is None:
            return None
        return self._dataset(info, zoned)

    def _dataset(self, info: TableInfo, zoned: bool = False) -> pads.Dataset:
        spec = table_spec(info.name)
        base = self.path(spec.path)
        files = [posixpath.join(base, f) for f in info.files]
        schema = info.schema if not zoned else pa.schema(
            [f.with_type(pa.timestamp("us", "UTC")) if pa.types.is_timestamp(f.type) else f for f in info.schema])
        try:
            if spec.partitioned:
                schema = pa.unify_schemas([schema, PARTITION_SCHEMA])
                return pads.dataset(
                    files, schema=schema, filesystem=self.fs, format="parquet",
                    partitioning=_PARTITIONING, partition_base_dir=base,
                )
            return pads.dataset(files, schema=schema, filesystem=self.fs, format="parquet")
        except FileNotFoundError as err:
            raise VacuumedError(
                f"table '{info.name}' version {info.version}: its files were vacuumed ({err}); time travel "
                f"reaches back lake.retention_hours, and the current version is always readable") from err

    def read_table(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        filter: pads.Expression | None = None,  # noqa: A002 - pyarrow's own name
        *,
        as_of: str | dt.datetime | None = None,
    ) -> pd.DataFrame:
        """Read table ``name`` into pandas (the consistent current version, or the one ``as_of``).

        Args:
            name: a table from ``schema.TABLES``.
            columns: columns to read (default: the stored columns, without partition keys).
            filter: a pyarrow expression pushed down to the scan.
            as_of: a run id or a time: read the table as it was then (see ``table_info``).

        Returns:
            The rows; ``ds`` and other date columns as ``datetime64[ns]``.

        Raises:
            StorageError: the table was never written or cannot be read.
        """
        for attempt in (1, 2):
            info = self.table_info(name, as_of=as_of)
            if info is None:
                spec = table_spec(name)
                raise StorageError(f"table '{name}' not found in lake {self.uri} ({spec.path}/ is not a "
                                   f"Delta table); run {spec.producer} first")
            wanted = list(columns) if columns is not None else list(info.schema.names)
            try:
                return _to_pandas(self._dataset(info).to_table(columns=wanted, filter=filter))
            except FileNotFoundError as err:
                # A vacuum removed the files of this version between the log read and the scan.
                if attempt == 2:
                    raise StorageError(f"table '{name}' changed while being read: {err}") from err
            except (OSError, pa.ArrowInvalid) as err:
                raise StorageError(f"cannot read table '{name}' from {self.uri}: {err}") from err
        raise AssertionError("unreachable")
