"""Catalog definitions of the lake's tables for Athena and Glue, built from ``schema.TABLES`` and the pointers.

A ``TableDefinition`` is computed from a table's spec, the Arrow schema its ``_table.json``
pointer records and the lake's S3 URI (pure, except ``lake_definitions``, which reads the pointers); ``athena.py``
renders it as DDL and ``glue.py`` registers it.

Metric tables get ``year``/``month`` string partition keys with *partition projection*: Athena
computes the partitions from table properties, so no ``MSCK REPAIR TABLE`` or crawler is needed
after a run. The projected year range starts at the first year in the data and ends
``future_years`` after the later of the last year in the data and the current year; re-register
(``capfc aws glue``) before that runs out or after ingesting older history.

Caveat: our readers go through the pointer, Athena lists the table folder. Athena ignores the
``_table.json`` pointer (``_`` files are hidden) and sees the current version, except (a) in the
short window between a pointer swap and the clean-up of the previous version's files, and (b)
after a crashed write, whose orphaned ``part-*`` files stay visible (duplicated rows) until the next
successful write of that table removes them. See ``storage/lake.py``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

import pyarrow as pa

from capacity_forecaster.aws import names
from capacity_forecaster.errors import ConfigError, SchemaError
from capacity_forecaster.schema import PARTITION_SCHEMA, TABLES, TableSpec, table_spec
from capacity_forecaster.storage.lake import Lake, TableInfo

PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
FUTURE_YEARS = 5
# Table property marking tables capfc registered: only those are ever updated or replaced.
MANAGED_KEY = "capfc.managed"

_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARTITION_FILE = re.compile(r"(?:^|/)year=(\d{4})/month=(\d{2})/")
_INTEGERS = {
    pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint",
    pa.uint8(): "smallint", pa.uint16(): "int", pa.uint32(): "bigint",
}


@dataclass(frozen=True)
class Column:
    """A catalog column: name and Hive/Athena type."""

    name: str
    type: str


@dataclass(frozen=True)
class TableDefinition:
    """Everything Athena and Glue need to know about one lake table.

    Attributes:
        name: table name (the ``capfc sql`` view name).
        location: S3 URI of the table folder, ending in '/'.
        columns: data columns in file order.
        partition_keys: ``year``, ``month`` (strings) for metric tables, else empty.
        properties: table properties (classification, partition projection).
        description: one line for the catalog.
        year_range: first and last projected year (None for unpartitioned tables).
    """

    name: str
    location: str
    columns: tuple[Column, ...]
    partition_keys: tuple[Column, ...]
    properties: dict[str, str] = field(default_factory=dict)
    description: str = ""
    year_range: tuple[int, int] | None = None


def hive_type(dtype: pa.DataType, where: str) -> str:
    """The Athena (Hive DDL) type of an Arrow type.

    Args:
        dtype: the Arrow type of a stored column.
        where: "table.column", for the message.

    Raises:
        SchemaError: the type has no Athena equivalent (time of day, unsigned 64-bit, ...).
    """
    if pa.types.is_dictionary(dtype):
        return hive_type(dtype.value_type, where)
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_null(dtype):
        # An all-null column (an empty table written from an untyped frame) is declared string.
        return "string"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if dtype in _INTEGERS:
        return _INTEGERS[dtype]
    if pa.types.is_float16(dtype) or pa.types.is_float32(dtype):
        return "float"
    if pa.types.is_float64(dtype):
        return "double"
    if pa.types.is_decimal(dtype):
        return f"decimal({dtype.precision},{dtype.scale})"
    if pa.types.is_date(dtype):
        return "date"
    if pa.types.is_timestamp(dtype):
        return "timestamp"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "binary"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
        return f"array<{hive_type(dtype.value_type, where)}>"
    if pa.types.is_map(dtype):
        return f"map<{hive_type(dtype.key_type, where)},{hive_type(dtype.item_type, where)}>"
    if pa.types.is_struct(dtype):
        inner = ",".join(f"{_column_name(f.name, where)}:{hive_type(f.type, where)}" for f in dtype)
        return f"struct<{inner}>"
    raise SchemaError(f"{where}: Arrow type {dtype} has no Athena equivalent; store it as string, "
                      "int64, double or timestamp")


def _column_name(name: str, where: str) -> str:
    if not _COLUMN.fullmatch(name) or len(name) > 255:
        raise SchemaError(f"{where}: column name '{name}' cannot be used in Athena (letters, digits and "
                          "underscores only, not starting with a digit); rename it")
    return name.lower()


def columns(schema: pa.Schema, table: str) -> tuple[Column, ...]:
    """Catalog columns of a stored Arrow schema (names lowercased, as Athena shows them).

    Raises:
        SchemaError: a name cannot be used in Athena, two names differ only in case, or a type
            has no Athena equivalent.
    """
    out: list[Column] = []
    seen: set[str] = set()
    for arrow_field in schema:
        where = f"table '{table}'"
        name = _column_name(arrow_field.name, where)
        if name in seen:
            raise SchemaError(f"{where}: columns differ only in case ('{arrow_field.name}'); Athena "
                              "column names are case-insensitive")
        seen.add(name)
        out.append(Column(name, hive_type(arrow_field.type, f"{where}, column '{arrow_field.name}'")))
    return tuple(out)


def athena_root(lake_uri: str) -> str:
    """The lake URI as Athena wants it (``s3://``, no trailing '/'), checked for safe characters.

    Raises:
        ConfigError: the lake is not on S3 or its URI has characters that are unsafe in DDL.
    """
    uri = lake_uri.strip()
    if uri.startswith("s3a://"):
        uri = "s3://" + uri[len("s3a://"):]
    if not uri.startswith("s3://"):
        raise ConfigError(f"lake {lake_uri}: Athena reads only S3; use an s3:// lake (--lake) or give the "
                          "S3 location the lake was copied to (--s3-uri)")
    uri = uri.rstrip("/")
    names.check("s3_uri", uri, "lake URI")
    return uri


def partition_years(info: TableInfo) -> list[int]:
    """The distinct years of the ``year=YYYY/month=MM/`` files listed by a pointer, sorted."""
    return sorted({int(m.group(1)) for f in info.files if (m := _PARTITION_FILE.search(f))})


def table_definition(
    spec: TableSpec,
    info: TableInfo,
    lake_uri: str,
    *,
    today: dt.date | None = None,
    future_years: int = FUTURE_YEARS,
) -> TableDefinition:
    """The catalog definition of one lake table.

    Args:
        spec: the table's spec from ``schema.TABLES``.
        info: its pointer (the Arrow schema of the stored files and their paths).
        lake_uri: ``s3://bucket/prefix`` of the lake.
        today: the current date (default: today, UTC); bounds the projected years.
        future_years: years projected beyond the later of the last year in the data and ``today``.

    Returns:
        The definition; metric tables are partitioned by ``year``, ``month`` with projection.

    Raises:
        ConfigError: the lake is not on S3 or its URI is unsafe.
        SchemaError: a column cannot be represented in Athena.
    """
    names.check("glue_name", spec.name, "table name")
    location = f"{athena_root(lake_uri)}/{spec.path.strip('/')}/"
    cols = columns(info.schema, spec.name)
    properties = {"classification": "parquet", "EXTERNAL": "TRUE", MANAGED_KEY: "true"}
    description = f"capfc lake table {spec.name} ({spec.path}/)"
    if not spec.partitioned:
        return TableDefinition(spec.name, location, cols, (), properties, description)
    today = today or dt.datetime.now(dt.UTC).date()
    years = partition_years(info) or [today.year]
    first, last = years[0], max(years[-1], today.year) + future_years
    keys = tuple(Column(f.name, hive_type(f.type, spec.name)) for f in PARTITION_SCHEMA)
    properties |= {
        "projection.enabled": "true",
        "projection.year.type": "integer",
        "projection.year.range": f"{first},{last}",
        "projection.year.digits": "4",
        "projection.month.type": "integer",
        "projection.month.range": "1,12",
        "projection.month.digits": "2",
        "storage.location.template": location + "year=${year}/month=${month}/",
    }
    return TableDefinition(spec.name, location, cols, keys, properties, description, (first, last))


def uncovered_partitions(definition: TableDefinition, info: TableInfo) -> list[str]:
    """Partition folders of the pointer's files that the projection would not show (should be empty)."""
    if definition.year_range is None:
        return []
    first, last = definition.year_range
    found = {(int(m.group(1)), int(m.group(2))) for f in info.files if (m := _PARTITION_FILE.search(f))}
    return sorted(f"year={y:04d}/month={m:02d}" for y, m in found if not (first <= y <= last and 1 <= m <= 12))


def lake_definitions(
    lake: Lake,
    *,
    tables: list[str] | tuple[str, ...] | None = None,
    s3_uri: str | None = None,
    today: dt.date | None = None,
    future_years: int = FUTURE_YEARS,
) -> tuple[list[TableDefinition], list[str]]:
    """Definitions of the written tables of a lake, in pipeline order.

    Args:
        lake: the lake whose pointers give the schemas.
        tables: table names to include (default: every table in ``schema.TABLES``).
        s3_uri: S3 URI the tables are read from by Athena (default: the lake's own URI); lets a
            local lake describe its copy on S3.
        today: the current date, for the projected years.
        future_years: see ``table_definition``.

    Returns:
        The definitions, and the names of requested tables that were never written (skipped).

    Raises:
        SchemaError: an unknown table name, or a column Athena cannot represent.
        ConfigError: the location is not on S3.
    """
    wanted = [table_spec(t).name for t in tables] if tables else list(TABLES)
    root = athena_root(s3_uri or lake.uri)
    definitions: list[TableDefinition] = []
    skipped: list[str] = []
    for name in wanted:
        info = lake.table_info(name)
        if info is None:
            skipped.append(name)
            continue
        definition = table_definition(TABLES[name], info, root, today=today, future_years=future_years)
        missing = uncovered_partitions(definition, info)
        if missing:  # cannot happen by construction; a guard against silently invisible data
            raise SchemaError(f"table '{name}': partition projection {definition.year_range} misses {missing[:3]}")
        definitions.append(definition)
    return definitions, skipped
