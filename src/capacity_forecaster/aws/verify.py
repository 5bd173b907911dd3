"""Lake check for the scheduled chain: each Delta table's log and files, and the files no version needs.

Every table folder is a Delta table (``storage/lake.py``). Readers -- capfc, ``capfc sql`` and
Athena, which reads Delta tables natively -- take a version's files from the log, never from the
folder, so files no version names (a write that crashed or lost a commit conflict) are invisible to
them, but take space; so do replaced versions once older than the time-travel retention
(``lake.retention_hours``). ``verify_lake`` checks per table that the log is readable and that the
files of the version capfc reads and of the newest one (which Athena reads) exist, and lists the
files a vacuum with that retention would remove (*orphans*), the files it keeps only because they
are younger (*recent*: retained versions, or a write in progress) and files that are not capfc's
(*foreign*); with ``delete=True`` it runs the vacuum. The scheduled chain runs it as its last step
(stage ``verify``: ``capfc aws verify --delete``).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from capacity_forecaster.errors import StorageError
from capacity_forecaster.schema import TABLES, table_spec
from capacity_forecaster.storage import Lake

log = logging.getLogger(__name__)

DEFAULT_MIN_AGE = dt.timedelta(hours=1)


@dataclass
class TableCheck:
    """What one table folder holds beyond (or short of) the versions readers use.

    Attributes:
        table: table name.
        version: the Delta version capfc reads (None: the table was never written).
        latest: the newest committed version, the one Athena reads (later than ``version`` while a
            run of the table's stage has not completed).
        files: number of files of ``version``.
        orphans: files the vacuum removes: named by no version within the retention, and older
            than it (paths relative to the lake).
        recent: files of neither ``version`` nor ``latest`` the vacuum keeps because they are
            younger than the retention (older versions for time travel, or a write in progress).
        foreign: non-Parquet files outside ``_delta_log/`` (not capfc's; never deleted: a table
            whose vacuum would remove one is not vacuumed).
        missing: files of ``version`` or ``latest`` that are not there (the table is damaged:
            re-run its stage).
        deleted: orphans removed.
        problem: why the table could not be checked or vacuumed (unreadable log, ...), else None.
    """

    table: str
    version: int | None = None
    latest: int | None = None
    files: int = 0
    orphans: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    problem: str | None = None

    @property
    def clean(self) -> bool:
        """Whether nothing is left to repair: no orphan kept, no missing or foreign file, no problem.

        Recent files do not count: the retention keeps them on purpose.
        """
        return not (set(self.orphans) - set(self.deleted)) and not self.missing and not self.foreign \
            and self.problem is None

    @property
    def findings(self) -> bool:
        """Whether the table has anything to report beyond recent files."""
        return bool(self.orphans or self.missing or self.foreign or self.problem)


def _hidden(relpath: str) -> bool:
    """Paths below ``_delta_log/`` or another ``_``/``.`` folder or file: Delta's own, never data."""
    return any(part.startswith(("_", ".")) for part in relpath.split("/"))


def vacuum_hours(retention_hours: float, min_age: dt.timedelta) -> int:
    """The retention the vacuum runs with: the larger of both, rounded up to whole hours (the
    vacuum counts whole hours; rounding down could remove the files of a write in progress)."""
    return math.ceil(max(retention_hours, min_age.total_seconds() / 3600))


def _unwritten(lake: Lake, result: TableCheck, folder: str, found: dict[str, dt.datetime | None],
               hours: int, delete: bool) -> TableCheck:
    """A folder without a Delta table: Parquet files there are from a first write that never committed."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    for path, mtime in sorted(found.items()):
        if _hidden(path[len(folder):]):
            continue
        if not path.endswith(".parquet"):
            result.foreign.append(path)
            continue
        if mtime is not None and mtime.tzinfo is None:  # pyarrow gives naive UTC for some filesystems
            mtime = mtime.replace(tzinfo=dt.UTC)
        if mtime is None or mtime > cutoff:
            result.recent.append(path)
            continue
        result.orphans.append(path)
        if delete:
            try:
                lake.fs.delete_file(lake.path(path))
            except OSError as err:
                raise StorageError(f"cannot delete orphan {lake.display(path)}: {err}") from err
            result.deleted.append(path)
    if result.deleted:
        lake.prune_empty_dirs(folder)
    return result


def check_table(lake: Lake, name: str, *, hours: int, delete: bool = False) -> TableCheck:
    """Check one table's Delta log and folder; with ``delete``, vacuum it with ``hours`` of retention.

    Raises:
        StorageError: listing the folder or the vacuum failed.
    """
    spec = table_spec(name)
    folder = spec.path.rstrip("/") + "/"
    result = TableCheck(name)
    found = lake.file_times(spec.path)
    try:
        info = lake.table_info(name)
        latest = lake.delta.snapshot(spec.path)
    except StorageError as err:
        result.problem = f"the Delta log cannot be read: {err}"
        return result
    if info is None or latest is None:
        return _unwritten(lake, result, folder, found, hours, delete)
    result.version, result.latest, result.files = int(info.version), latest.version, len(info.files)
    current = {folder + f for f in (*info.files, *latest.files)}
    result.missing = sorted(current - set(found))
    data = {p for p in found if not _hidden(p[len(folder):])}
    result.foreign = sorted(p for p in data if not p.endswith(".parquet"))
    # The vacuum also lists expired files already gone (it reads them from the log): only existing ones count.
    candidates = set(lake.vacuum(name, hours, dry_run=True, full=True)) & data
    result.orphans = sorted(candidates - set(result.foreign))
    result.recent = sorted(data - current - candidates - set(result.foreign))
    if not (delete and result.orphans):
        return result
    # The vacuum keeps the version capfc reads even when a newer one comes from an incomplete run.
    if candidates & set(result.foreign):
        result.problem = "not vacuumed: it would delete the foreign files too; move them out of the folder"
    else:
        result.deleted = sorted(set(lake.vacuum(name, hours, full=True)) & data)
    return result


def verify_lake(lake: Lake, *, tables: list[str] | None = None, delete: bool = False,
                retention_hours: float | None = None, min_age: dt.timedelta = DEFAULT_MIN_AGE) -> dict[str, Any]:
    """Check every table of the lake: Delta log readable, files present, files no retained version uses.

    Args:
        lake: the lake (local or S3).
        tables: table names (default: every table in ``schema.TABLES``).
        delete: vacuum the tables (remove the orphans).
        retention_hours: versions replaced less than this long ago are kept for time travel, and
            so are files younger than this (default: ``lake.retention_hours``).
        min_age: files younger than this are never removed, whatever the retention (a write may be
            in progress).

    Returns:
        ``lake``, ``clean`` (bool), ``retention_hours`` (the one used), ``orphans``, ``deleted``,
        ``recent``, ``missing``, ``foreign``, ``problems`` (counts) and ``tables``: table -> its
        ``TableCheck`` as a dict, for tables with orphans, missing or foreign files, or a problem.

    Raises:
        SchemaError: an unknown table name.
        StorageError: listing or deleting failed.
    """
    hours = vacuum_hours(lake.cfg.retention_hours if retention_hours is None else retention_hours, min_age)
    checks = [check_table(lake, name, hours=hours, delete=delete) for name in (tables or list(TABLES))]
    totals = {key: sum(len(getattr(c, key)) for c in checks)
              for key in ("orphans", "deleted", "recent", "missing", "foreign")}
    problems = sum(c.problem is not None for c in checks)
    result: dict[str, Any] = {"lake": lake.display(), "clean": all(c.clean for c in checks), "retention_hours": hours,
                              **totals, "problems": problems,
                              "tables": {c.table: asdict(c) for c in checks if c.findings}}
    log.info("verify %s: %d table(s), %d orphan(s) (%d deleted), %d recent, %d missing, %d foreign file(s), "
             "%d problem(s)", lake.display(), len(checks), totals["orphans"], totals["deleted"], totals["recent"],
             totals["missing"], totals["foreign"], problems)
    return result
