"""Delta Lake (delta-rs) under the lake's tables: snapshots, commits, time travel, vacuum.

The lake writes its own Parquet files (``storage.writer``) and makes them a table version with one
Delta commit: the ``_delta_log/<version>.json`` entry is created only if absent (an atomic rename
locally, a conditional ``PutObject`` with ``If-None-Match`` on S3), so of two writers racing for
the same version exactly one wins. The loser's overwrite is checked against what it read: when
another writer has replaced the files it was based on, delta-rs refuses the commit
(``CommitFailedError``) and this module raises ``ConflictError``; nothing of the losing write
becomes visible. Readers list a version's files from the log, never from the folder.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import posixpath
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from capacity_forecaster.errors import StorageError

if TYPE_CHECKING:
    from capacity_forecaster.storage.filesystem import Location

log = logging.getLogger(__name__)

LOG_DIR = "_delta_log"
RUN_KEY = "capfc.run_id"
STAGE_KEY = "capfc.stage"
COMMIT_KEY = "capfc.commit"


# Delta truncates string statistics to a prefix; a longer max would not bound the column, so it is left out.
STATS_STRING_CHARS = 32


def file_stats(table: pa.Table) -> str:
    """The Delta ``stats`` JSON of one data file: numRecords, nullCount and min/max per column.

    Readers (Athena, Spark, delta-rs, DuckDB) skip files whose min/max cannot match a filter, so a
    bound must never be tighter than the data: timestamps are floored (min) and ceiled (max) to the
    millisecond the format keeps, a float column holding NaN gets no bounds, strings only when the
    bound fits in ``STATS_STRING_CHARS``, booleans and nested types none.
    """
    import pyarrow.compute as pc

    nulls: dict[str, int] = {}
    low: dict[str, Any] = {}
    high: dict[str, Any] = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = field.type
        nulls[field.name] = column.null_count
        if column.null_count == len(column) or not (
                pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_string(kind)
                or pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
            continue
        if pa.types.is_floating(kind) and pc.any(pc.is_nan(column)).as_py():
            continue
        bounds = pc.min_max(column)
        lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
        if pa.types.is_string(kind):
            if len(hi) > STATS_STRING_CHARS:
                continue
            low[field.name], high[field.name] = lo[:STATS_STRING_CHARS], hi
        elif pa.types.is_timestamp(kind):
            low[field.name], high[field.name] = _stat_time(lo, up=False), _stat_time(hi, up=True)
        elif pa.types.is_date(kind):
            low[field.name], high[field.name] = lo.isoformat(), hi.isoformat()
        else:
            low[field.name], high[field.name] = lo, hi
    return json.dumps({"numRecords": table.num_rows, "minValues": low, "maxValues": high, "nullCount": nulls})


def _stat_time(value: dt.datetime, *, up: bool) -> str:
    """A timestamp as Delta statistics spell it (ISO 8601, milliseconds), rounded outwards."""
    millis = value.replace(microsecond=value.microsecond // 1000 * 1000)
    if up and millis != value:
        millis += dt.timedelta(milliseconds=1)
    text = millis.isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z") if millis.tzinfo is not None else text


class ConflictError(StorageError):
    """Another writer committed a table this run read or replaced; this run's write was not committed."""


@dataclass(frozen=True)
class Snapshot:
    """One version of a Delta table as the lake reads it.

    Attributes:
        version: Delta version number.
        files: data files relative to the table folder.
        rows: row count (from the commit's per-file statistics).
        schema: Arrow schema of the table, partition columns included.
        partition_by: partition columns.
        written_at: commit time (UTC, ISO 8601).
        run_id: the capfc run that committed this version (None for writes outside a stage).
        stage: the stage of that run.
        data_version: the newest version up to ``version`` that changed data (a vacuum's own
            commits come after the write they clean up); None when the log does not say.
    """

    version: int
    files: tuple[str, ...]
    rows: int
    schema: pa.Schema
    partition_by: tuple[str, ...]
    written_at: str
    run_id: str | None
    stage: str | None
    data_version: int | None = None


def _credential_source() -> Any:
    """The standard chain's credentials (env, profile, .env via the CLI, role), or None.

    Refreshable ones (an instance or job role, SSO, ``credential_process``) renew themselves when
    ``get_frozen_credentials`` is asked near their expiry, so delta-rs is given them afresh per call
    (helper-62: keys frozen when the lake was opened expired under a long ``capfc run``).
    """
    import botocore.session

    return botocore.session.get_session().get_credentials()


def _credentials(found: Any) -> dict[str, str]:
    """delta-rs options of ``found`` (botocore credentials; None: none), in memory only."""
    if found is None:
        return {}
    frozen = found.get_frozen_credentials()
    out = {"AWS_ACCESS_KEY_ID": frozen.access_key, "AWS_SECRET_ACCESS_KEY": frozen.secret_key}
    if frozen.token:
        out["AWS_SESSION_TOKEN"] = frozen.token
    return out


def _profile_region() -> str | None:
    """The region of the standard chain's profile (``~/.aws/config``), if any."""
    import botocore.session

    return botocore.session.get_session().get_config_variable("region") or None


def storage_options(location: Location, cfg: Any) -> dict[str, str]:
    """delta-rs storage options for the lake's location (empty for a local folder), credentials left out
    (``DeltaStore.options`` adds them per call).

    The region is the configured ``lake.s3_region``, else the bucket's own (as S3 reported it when the lake
    was opened), else ``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the profile's: delta-rs does not follow
    S3's redirect to another region as s3fs and boto3 do (helper-62: a profile in eu-west-1 left it on
    us-east-1, "Generic S3 error").
    """
    if not location.is_s3:
        return {}
    from capacity_forecaster.storage.s3 import endpoint_of

    options: dict[str, str] = {}
    region = (cfg.s3_region or location.region or os.environ.get("AWS_REGION")
              or os.environ.get("AWS_DEFAULT_REGION") or _profile_region() or "us-east-1")
    options["AWS_REGION"] = region
    endpoint = endpoint_of(cfg)
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    if cfg.sse != "none":
        options["AWS_SERVER_SIDE_ENCRYPTION"] = cfg.sse
        if cfg.sse == "aws:kms" and cfg.sse_kms_key_id:
            options["AWS_SSE_KMS_KEY_ID"] = cfg.sse_kms_key_id
    # The object store's own client, bounded like the lake's boto clients. Its timeout covers a
    # whole request (botocore's read timeout is per socket read), hence connect + two reads.
    request = cfg.s3_connect_timeout + 2 * cfg.s3_read_timeout
    options["connect_timeout"] = f"{cfg.s3_connect_timeout:g}s"
    options["timeout"] = f"{request:g}s"
    options["max_retries"] = str(max(cfg.s3_max_attempts - 1, 0))
    options["retry_timeout"] = f"{cfg.s3_max_attempts * request:g}s"
    return options


def _lines(err: BaseException) -> list[str]:
    """The non-empty lines of a delta-rs error, without its colour codes and arrows."""
    lines = [re.sub(r"\x1b\[[0-9;]*m|↳", "", line).strip() for line in str(err).splitlines()]
    return [line for line in lines if line]


def _detail(err: BaseException) -> str:
    """delta-rs's error in one line: its first line, and its last where that says more (the cause: helper-62,
    "Generic S3 error" alone hid "... incorrectly configured region")."""
    lines = _lines(err)
    if not lines:
        return type(err).__name__
    first, last = lines[0], lines[-1]
    return first if last == first or last in first else f"{first} ({last})"


# What delta-rs / object_store say when the endpoint does not answer (they raise untyped errors).
_UNREACHABLE = ("error sending request", "operation timed out", "connection refused", "timed out",
                "connect error", "dns error", "connection reset")


class DeltaStore:
    """Delta tables below a lake root: one per table folder."""

    def __init__(self, location: Location, cfg: Any) -> None:
        self.location = location
        self.cfg = cfg
        self._options = storage_options(location, cfg)
        self._credential_source = _credential_source() if location.is_s3 else None
        handler = getattr(location.fs, "handler", None)
        self._breaker = getattr(handler, "_breaker", None)

    @property
    def options(self) -> dict[str, str]:
        """delta-rs storage options with the credentials as they are now (refreshed when they expire)."""
        if not self._options:
            return {}
        try:
            credentials = _credentials(self._credential_source)
        except Exception as err:  # noqa: BLE001 - botocore's many credential errors (helper-65: a traceback)
            raise StorageError(f"the AWS credentials for lake {self.location.uri} could not be renewed "
                               f"({type(err).__name__}: {' '.join(str(err).split())[:200]}); log in again "
                               "(e.g. aws sso login) and rerun the command") from err
        return {**credentials, **self._options}

    def _guard(self, operation: str, relpath: str, call: Any) -> Any:
        """Run a delta-rs call; an S3 endpoint that does not answer becomes one ``StorageError``.

        Shares the lake filesystem's breaker: once the endpoint failed, later calls fail at once.
        """
        if self._breaker is not None:
            self._breaker.check()
        try:
            return call()
        except StorageError:
            raise
        except Exception as err:  # noqa: BLE001 - delta-rs raises untyped errors; translated here
            text = str(err).lower()
            if not self.location.is_s3 or not any(mark in text for mark in _UNREACHABLE):
                raise
            from capacity_forecaster.storage.s3 import unreachable_error

            reason = RuntimeError((_lines(err) or [str(err)])[-1])
            error = unreachable_error(self.cfg, operation, self.uri(posixpath.join(relpath, LOG_DIR)), reason)
            if self._breaker is not None:
                self._breaker.trip(error)
            raise error from err

    def uri(self, relpath: str) -> str:
        """The delta-rs URI of a lake-relative table folder."""
        if self.location.is_s3:
            return "s3://" + posixpath.join(self.location.path, relpath)
        return posixpath.join(self.location.path, relpath)

    def _open(self, relpath: str, version: int | None = None) -> Any:
        from deltalake import DeltaTable

        try:
            return self._guard("reading", relpath, lambda: DeltaTable(
                self.uri(relpath), version=version, storage_options=self.options or None))
        except StorageError:
            raise
        except Exception as err:  # noqa: BLE001 - delta-rs raises its own untyped errors; translated here
            if type(err).__name__ == "TableNotFoundError":
                return None
            raise StorageError(f"cannot open Delta table {relpath}/ in {self.location.uri}: "
                               f"{_detail(err)}") from err

    def exists(self, relpath: str) -> bool:
        """Whether ``relpath`` holds a Delta table."""
        from deltalake import DeltaTable

        return bool(DeltaTable.is_deltatable(self.uri(relpath), storage_options=self.options or None))

    def snapshot(self, relpath: str, version: int | None = None, as_of: dt.datetime | None = None) -> Snapshot | None:
        """The latest version (or ``version``, or the version current at ``as_of``); None without a table then.

        Raises:
            StorageError: the table or the version cannot be read.
        """
        if as_of is not None:
            # By the commit times the log records (file times on S3 have 1 s resolution).
            stamp = as_of.timestamp() * 1000
            table = self._open(relpath)
            if table is None:
                return None
            entries = self._guard("reading", relpath, lambda: table.history())
            older = [int(e["version"]) for e in entries if int(e.get("timestamp", 0)) <= stamp]
            if not older:
                return None  # the table was created later
            version = max(older)
        table = self._open(relpath, version)
        if table is None:
            return None
        if version is None:
            return self._guard("reading", relpath, lambda: _snapshot(table, table.history(20)))
        # delta-rs numbers the history of a table loaded at an older version as if that version were
        # the newest (the newest commits come first, labelled with older numbers): the commit
        # records are read from the log's commit files themselves.
        return self._guard("reading", relpath, lambda: _snapshot(table, self._commits(relpath, int(table.version()))))

    def _commits(self, relpath: str, version: int) -> list[dict[str, Any]]:
        """Commit records of ``version`` and before it, newest first, down to the first that changed data."""
        entries: list[dict[str, Any]] = []
        for number in range(version, max(version - 20, -1), -1):
            path = posixpath.join(self.location.path, relpath, LOG_DIR, f"{number:020d}.json")
            try:
                with self.location.fs.open_input_stream(path) as stream:
                    lines = bytes(stream.read()).decode("utf-8").splitlines()
            except (FileNotFoundError, OSError):
                break  # cleaned up after a checkpoint: what is known so far
            info: dict[str, Any] = next(
                (json.loads(line)["commitInfo"] for line in lines if '"commitInfo"' in line), {})
            entries.append({**info, "version": number})
            if not str(info.get("operation", "")).startswith("VACUUM"):
                break
        return entries

    def history(self, relpath: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commit records of a table, newest first: version, timestamp, operation, run id, stage."""
        table = self._open(relpath)
        if table is None:
            return []
        return [
            {"version": int(entry["version"]),
             "timestamp": _iso(int(entry.get("timestamp", 0))),
             "operation": entry.get("operation"), "run_id": entry.get(RUN_KEY), "stage": entry.get(STAGE_KEY)}
            for entry in self._guard("reading", relpath, lambda: table.history(limit))
        ]

    def commit(
        self,
        relpath: str,
        files: list[tuple[str, int, dict[str, str], str]],
        schema: pa.Schema,
        partition_by: list[str],
        *,
        base_version: int | None,
        metadata: dict[str, str],
    ) -> int:
        """Make ``files`` the table's new version (an overwrite), based on ``base_version``.

        Args:
            relpath: table folder.
            files: ``(path relative to the folder, size in bytes, partition values, stats JSON)`` per
                file (``file_stats``).
            schema: Arrow schema of the table, partition columns included.
            partition_by: partition columns.
            base_version: the version this write was derived from (None: the table did not exist);
                a commit made by another writer after it makes this one fail.
            metadata: commit metadata (run id, stage); must hold a unique ``COMMIT_KEY``.

        Returns:
            The committed version.

        Raises:
            ConflictError: another writer committed after ``base_version``.
            StorageError: the commit failed otherwise.
        """
        from deltalake import CommitProperties, DeltaTable
        from deltalake.exceptions import CommitFailedError
        from deltalake.transaction import AddAction

        now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        actions = [AddAction(path, size, parts, now, True, stats) for path, size, parts, stats in files]
        uri = self.uri(relpath)
        options = self.options or None
        try:
            if base_version is None:
                try:
                    self._guard("writing", relpath, lambda: DeltaTable.create(
                        uri, schema, mode="error", partition_by=partition_by or None, storage_options=options))
                except StorageError:
                    raise
                except Exception as err:  # noqa: BLE001 - delta-rs: created by a concurrent writer
                    if "exist" not in str(err).lower():
                        raise
                    raise ConflictError(
                        f"table {relpath}/ was created by another writer while this run wrote it; "
                        "nothing of this run's write was committed: run the command again") from err
                base_version = 0
            table = self._open(relpath, base_version)
            self._guard("writing", relpath, lambda: table.create_write_transaction(
                actions, "overwrite", schema, partition_by=partition_by or None,
                # No retries: a commit that lands on a taken version fails, also when its base held no
                # files (an overwrite of an empty version would otherwise keep the other writer's rows).
                commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=0),
            ))
        except CommitFailedError as err:
            latest = self._open(relpath)
            raise ConflictError(
                f"table {relpath}/ was changed by another writer (now version "
                f"{latest.version() if latest is not None else '?'}, this run read version {base_version}); "
                "nothing of this run's write was committed: run the command again") from err
        except StorageError:
            raise
        except Exception as err:  # noqa: BLE001 - delta-rs / object-store errors, translated once here
            raise StorageError(f"cannot commit table {relpath}/ in {self.location.uri}: "
                               f"{_detail(err)}") from err
        committed = self._open(relpath)
        history = self._guard("reading", relpath, lambda: committed.history(10)) if committed is not None else []
        # Our commit is the newest unless another writer committed right after it: find it by its id.
        for entry in history:
            if entry.get(COMMIT_KEY) == metadata[COMMIT_KEY]:
                return int(entry["version"])
        raise StorageError(f"table {relpath}/: the commit of this run is not in the table's log")

    def vacuum(self, relpath: str, retention_hours: float, *, dry_run: bool, full: bool = False,
               keep_versions: list[int] | None = None) -> list[str]:
        """Files of versions older than ``retention_hours`` (deleted unless ``dry_run``).

        Args:
            relpath: table folder.
            retention_hours: versions younger than this stay readable (rounded up to whole hours).
            dry_run: only list the files.
            full: also delete every other file no version uses (writes that never committed, and
                foreign files) once older than the retention.
            keep_versions: versions whose files are kept whatever their age (the version readers
                resolve to while a newer one comes from an incomplete run).
        """
        table = self._open(relpath)
        if table is None:
            return []
        try:
            return [str(p) for p in self._guard("deleting", relpath, lambda: table.vacuum(
                retention_hours=math.ceil(retention_hours), dry_run=dry_run, enforce_retention_duration=False,
                full=full, keep_versions=keep_versions or None))]
        except StorageError:
            raise
        except Exception as err:  # noqa: BLE001 - delta-rs error, translated once here
            raise StorageError(f"cannot vacuum table {relpath}/: {_detail(err)}") from err


def _iso(millis: int) -> str:
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat()


def _snapshot(table: Any, entries: list[dict[str, Any]]) -> Snapshot:
    actions = pa.table(table.get_add_actions(flatten=True))
    files = tuple(str(p) for p in actions.column("path").to_pylist()) if actions.num_rows else ()
    rows = 0
    if actions.num_rows and "num_records" in actions.column_names:
        rows = int(sum(int(n or 0) for n in actions.column("num_records").to_pylist()))
    schema = pa.schema(table.schema().to_arrow())
    meta = table.metadata()
    # The newest commit up to the loaded version that changed data names the run (``entries``: the
    # commit records, newest first); a vacuum's own commits change none.
    version = int(table.version())
    data = [e for e in entries if not str(e.get("operation", "")).startswith("VACUUM")]
    entry = data[0] if data else (entries[0] if entries else {})
    return Snapshot(
        version=version, files=tuple(sorted(files)), rows=rows, schema=schema,
        partition_by=tuple(meta.partition_columns), written_at=_iso(int(entry.get("timestamp", 0))),
        run_id=entry.get(RUN_KEY), stage=entry.get(STAGE_KEY),
        data_version=int(entry["version"]) if data and "version" in entry else None,
    )
