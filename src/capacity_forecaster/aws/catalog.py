"""Catalog definitions of the lake's Delta tables for Athena and Glue, built from ``schema.TABLES`` and the Delta log.

Every table folder is a Delta table (``_delta_log/`` + Parquet files, see ``storage/lake.py``).
Athena (engine v3) reads Delta tables natively: it takes the files of the newest version from the
log, never from a folder listing, so files of uncommitted writes, replaced versions kept for time
travel and orphans are invisible to it, and partitions (``year``/``month`` of metric tables) are
tracked by the log: no partition projection, ``MSCK REPAIR TABLE`` or crawler.

A ``TableDefinition`` is computed from a table's spec, the Arrow schema of the version capfc reads
and the lake's S3 URI (pure, except ``lake_definitions``, which reads the lake); ``athena.py``
renders it as DDL (location and ``table_type`` only: Athena reads the columns from the log) and
``glue.py`` registers it with the columns declared too, so the Glue catalog shows the schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pyarrow as pa

from capacity_forecaster.aws import names
from capacity_forecaster.errors import ConfigError, SchemaError
from capacity_forecaster.schema import PARTITION_SCHEMA, TABLES, TableSpec, table_spec
from capacity_forecaster.storage.lake import Lake, TableInfo

# Table property marking tables capfc registered: only those (or Delta tables at the table's own
# location) are ever updated.
MANAGED_KEY = "capfc.managed"
DELTA_PROPERTIES = {"table_type": "DELTA", "spark.sql.sources.provider": "delta"}

_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The integer types a Delta table stores (byte, short, integer, long): the lake writes no unsigned ones.
_INTEGERS = {pa.int8(): "tinyint", pa.int16(): "smallint", pa.int32(): "int", pa.int64(): "bigint"}


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
        location: S3 URI of the table folder (the one holding ``_delta_log/``), ending in '/'.
        columns: the columns in Delta schema order; the partition columns ``year``, ``month``
            (strings) of metric tables come last, as in the Delta log.
        properties: table properties (``table_type`` DELTA, the capfc marker).
        description: one line for the catalog.
    """

    name: str
    location: str
    columns: tuple[Column, ...]
    properties: dict[str, str] = field(default_factory=dict)
    description: str = ""


def hive_type(dtype: pa.DataType, where: str) -> str:
    """The Athena (Hive DDL) type of an Arrow type of a stored Delta column.

    Args:
        dtype: the Arrow type of a stored column.
        where: "table.column", for the message.

    Raises:
        SchemaError: the type is not one a Delta table stores (unsigned, time of day, null, ...).
    """
    if pa.types.is_dictionary(dtype):
        return hive_type(dtype.value_type, where)
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "string"
    if pa.types.is_boolean(dtype):
        return "boolean"
    if dtype in _INTEGERS:
        return _INTEGERS[dtype]
    if pa.types.is_float32(dtype):
        return "float"
    if pa.types.is_float64(dtype):
        return "double"
    if pa.types.is_decimal(dtype):
        return f"decimal({dtype.precision},{dtype.scale})"
    if pa.types.is_date32(dtype):
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
    raise SchemaError(f"{where}: Arrow type {dtype} is not a Delta/Athena column type; store it as string, "
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


def table_definition(spec: TableSpec, info: TableInfo, lake_uri: str) -> TableDefinition:
    """The catalog definition of one lake table.

    Args:
        spec: the table's spec from ``schema.TABLES``.
        info: the version capfc reads (its Arrow schema, without the partition columns).
        lake_uri: ``s3://bucket/prefix`` of the lake.

    Returns:
        The definition; metric tables get their Delta partition columns ``year``, ``month`` last.

    Raises:
        ConfigError: the lake is not on S3 or its URI is unsafe.
        SchemaError: a column cannot be represented in Athena.
    """
    names.check("glue_name", spec.name, "table name")
    location = f"{athena_root(lake_uri)}/{spec.path.strip('/')}/"
    schema = pa.unify_schemas([info.schema, PARTITION_SCHEMA]) if spec.partitioned else info.schema
    properties = {**DELTA_PROPERTIES, "EXTERNAL": "TRUE", MANAGED_KEY: "true"}
    return TableDefinition(spec.name, location, columns(schema, spec.name), properties,
                           f"capfc lake table {spec.name} (Delta, {spec.path}/)")


def lake_definitions(
    lake: Lake,
    *,
    tables: list[str] | tuple[str, ...] | None = None,
    s3_uri: str | None = None,
) -> tuple[list[TableDefinition], list[str]]:
    """Definitions of the written tables of a lake, in pipeline order.

    Args:
        lake: the lake whose Delta logs give the schemas.
        tables: table names to include (default: every table in ``schema.TABLES``).
        s3_uri: S3 URI the tables are read from by Athena (default: the lake's own URI); lets a
            local lake describe its copy on S3.

    Returns:
        The definitions, and the names of requested tables that were never written (skipped).

    Raises:
        SchemaError: an unknown table name, or a column Athena cannot represent.
        ConfigError: the location is not on S3.
        StorageError: a table's Delta log cannot be read.
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
        definitions.append(table_definition(TABLES[name], info, root))
    return definitions, skipped
