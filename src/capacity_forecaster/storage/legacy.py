"""The pre-Delta lake layout (a ``_table.json`` pointer per table) and its one-time migration.

``capfc lake migrate`` reads every table of an old lake through its pointer, writes it again as a
Delta table (same rows, stored types normalised as ``storage.writer`` does), checks the row counts,
then removes the pointer and the old files. A table that fails the check is left as it was.
"""

from __future__ import annotations

import base64
import logging
import posixpath
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.dataset as pads

from capacity_forecaster.errors import StorageError
from capacity_forecaster.schema import PARTITION_SCHEMA, TABLES, table_spec
from capacity_forecaster.storage.lake import LEGACY_POINTER, Lake
from capacity_forecaster.storage.writer import TableWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migrated:
    """One table's migration: rows read through the old pointer and rows in the new Delta version."""

    table: str
    rows_before: int
    rows_after: int
    files_removed: int


def legacy_tables(lake: Lake) -> list[str]:
    """Tables of ``lake`` still in the old layout (a pointer and no Delta log)."""
    return [name for name, spec in TABLES.items()
            if lake.read_bytes(posixpath.join(spec.path, LEGACY_POINTER)) is not None
            and not lake.delta.exists(spec.path)]


def _read_legacy(lake: Lake, name: str) -> tuple[pa.Table, list[str]]:
    spec = table_spec(name)
    pointer = lake.read_json(posixpath.join(spec.path, LEGACY_POINTER))
    if pointer is None:
        raise StorageError(f"table '{name}' has no {LEGACY_POINTER}")
    try:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(pointer["schema"])))
        files = [str(f) for f in pointer["files"]]
        rows = int(pointer["rows"])
    except (KeyError, ValueError, TypeError, pa.ArrowInvalid) as err:
        raise StorageError(f"{lake.display(spec.path, LEGACY_POINTER)} is damaged ({err}); "
                           f"re-run the stage that writes '{name}' instead of migrating it") from err
    base = lake.path(spec.path)
    paths = [posixpath.join(base, f) for f in files]
    if spec.partitioned:
        dataset = pads.dataset(paths, schema=schema, filesystem=lake.fs, format="parquet",
                               partitioning=pads.partitioning(PARTITION_SCHEMA, flavor="hive"),
                               partition_base_dir=base)
    else:
        dataset = pads.dataset(paths, schema=schema, filesystem=lake.fs, format="parquet")
    table = dataset.to_table(columns=list(schema.names))
    if table.num_rows != rows:
        raise StorageError(f"table '{name}': its pointer says {rows} rows but its files hold {table.num_rows}; "
                           "re-run the stage that writes it instead of migrating it")
    return table, files


def migrate(lake: Lake) -> list[Migrated]:
    """Convert every old-layout table of ``lake`` to a Delta table, checking row counts.

    Raises:
        StorageError: a table cannot be read or its rows do not survive the rewrite (that table and
            the ones after it keep the old layout; the ones before are converted).
    """
    done = []
    for name in legacy_tables(lake):
        spec = table_spec(name)
        table, old_files = _read_legacy(lake, name)
        writer = TableWriter(lake, spec, validate=False, base_version=None)  # lake.writer refuses old tables
        writer.write(table)
        info = writer.commit()
        after = lake.table_info(name)
        if after is None or after.rows != table.num_rows or info.rows != table.num_rows:
            raise StorageError(f"table '{name}': {table.num_rows} rows read but "
                               f"{after.rows if after else 0} written; the old files are kept")
        new_files = set(info.files)
        removed = 0
        for rel in old_files:
            if rel in new_files:
                continue
            try:
                lake.fs.delete_file(lake.path(spec.path, rel))
                removed += 1
            except OSError as err:  # left for `capfc lake vacuum`
                log.warning("could not delete old file %s: %s", lake.display(spec.path, rel), err)
        lake.fs.delete_file(lake.path(spec.path, LEGACY_POINTER))
        lake.prune_empty_dirs(spec.path)
        done.append(Migrated(name, table.num_rows, after.rows, removed))
        log.info("migrated table %s: %d rows, %d old files removed", name, table.num_rows, removed)
    return done
