"""Lake folders vs pointers: find (and remove) the files Athena would read but capfc does not.

capfc reads a table through its ``_table.json`` pointer; Athena and QuickSight list the table folder
and read every file not starting with ``_`` or ``.``. After a write that crashed before its pointer
swap, its ``part-*`` files stay in the folder: Athena counts their rows twice until the next
successful write of that table. ``verify_lake`` compares each folder with its pointer and, with
``delete=True``, removes the orphan Parquet files older than ``min_age`` (younger ones may belong
to a write in progress, so they are only reported). The scheduled chain runs it as its last step
(stage ``verify``: ``capfc aws verify --delete``).
"""

from __future__ import annotations

import datetime as dt
import logging
import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from capacity_forecaster.errors import StorageError
from capacity_forecaster.schema import TABLES, table_spec
from capacity_forecaster.storage import Lake

log = logging.getLogger(__name__)

DEFAULT_MIN_AGE = dt.timedelta(hours=1)


@dataclass
class TableCheck:
    """What one table folder holds beyond (or short of) its pointer.

    Attributes:
        table: table name.
        pointer: whether the table has a pointer (it was written at least once).
        files: number of files the pointer names.
        orphans: Parquet files in the folder the pointer does not name (paths relative to the lake).
        recent: orphans younger than the minimum age: maybe a write in progress, never deleted.
        foreign: other non-hidden files in the folder (not capfc's; Athena reads them too; never deleted).
        missing: files the pointer names that are not there (the table is damaged: re-run its stage).
        deleted: orphans removed.
    """

    table: str
    pointer: bool
    files: int = 0
    orphans: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """Whether nothing is left to repair: no old orphan kept, no missing or foreign file.

        Recent orphans do not count: they may be a write in progress, and the next check decides.
        """
        return not (set(self.orphans) - set(self.deleted) - set(self.recent)) and not self.missing \
            and not self.foreign


# storage/writer.py names files part-<UTC timestamp>-<random>-...: the write's own start time.
_VERSION_TIME = re.compile(r"part-(\d{8}T\d{12})-")


def _written_at(path: str, mtime: dt.datetime | None) -> dt.datetime | None:
    """When a file was written: from its version id, else the filesystem's time (None if unknown)."""
    match = _VERSION_TIME.match(posixpath.basename(path))
    if match:
        return dt.datetime.strptime(match.group(1), "%Y%m%dT%H%M%S%f").replace(tzinfo=dt.UTC)
    if mtime is not None and mtime.tzinfo is None:  # pyarrow gives naive UTC for some filesystems
        return mtime.replace(tzinfo=dt.UTC)
    return mtime


def _hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def check_table(lake: Lake, name: str, *, delete: bool = False, min_age: dt.timedelta = DEFAULT_MIN_AGE,
                now: dt.datetime | None = None) -> TableCheck:
    """Compare one table folder with its pointer; with ``delete``, remove old enough orphan Parquet files."""
    spec = table_spec(name)
    folder = spec.path.rstrip("/") + "/"
    info = lake.table_info(name)
    named = {posixpath.join(folder, f) for f in (info.files if info else ())}
    found = lake.file_times(spec.path)
    result = TableCheck(name, info is not None, len(named))
    result.missing = sorted(named - set(found))
    cutoff = (now or dt.datetime.now(dt.UTC)) - min_age
    for path, mtime in sorted(found.items()):
        if path in named or any(_hidden(part) for part in path[len(folder):].split("/")):
            continue
        if not path.endswith(".parquet"):
            result.foreign.append(path)
            continue
        result.orphans.append(path)
        written = _written_at(path, mtime)
        if written is None or written > cutoff:
            result.recent.append(path)
        elif delete:
            try:
                lake.fs.delete_file(lake.path(path))
            except OSError as err:
                raise StorageError(f"cannot delete orphan {lake.display(path)}: {err}") from err
            result.deleted.append(path)
    if result.deleted:
        lake.prune_empty_dirs(spec.path)
    return result


def verify_lake(lake: Lake, *, tables: list[str] | None = None, delete: bool = False,
                min_age: dt.timedelta = DEFAULT_MIN_AGE, now: dt.datetime | None = None) -> dict[str, Any]:
    """Check every table folder of the lake against its pointer.

    Args:
        lake: the lake (local or S3).
        tables: table names (default: every table in ``schema.TABLES``).
        delete: remove orphan Parquet files older than ``min_age``.
        min_age: orphans younger than this are reported, never deleted (a write may be in progress).
        now: the current time (tests).

    Returns:
        ``clean`` (bool), ``orphans``, ``deleted``, ``recent``, ``missing``, ``foreign`` (counts) and
        ``tables``: table -> its ``TableCheck`` as a dict, for tables with any finding.

    Raises:
        SchemaError: an unknown table name.
        StorageError: listing or deleting failed.
    """
    checks = [check_table(lake, name, delete=delete, min_age=min_age, now=now) for name in (tables or list(TABLES))]
    totals = {key: sum(len(getattr(c, key)) for c in checks)
              for key in ("orphans", "deleted", "recent", "missing", "foreign")}
    result: dict[str, Any] = {"lake": lake.display(), "clean": all(c.clean for c in checks), **totals,
                              "tables": {c.table: asdict(c) for c in checks
                                         if c.orphans or c.missing or c.foreign}}
    log.info("verify %s: %d table(s), %d orphan(s) (%d deleted, %d too recent), %d missing, %d foreign file(s)",
             lake.display(), len(checks), totals["orphans"], totals["deleted"], totals["recent"], totals["missing"],
             totals["foreign"])
    return result
