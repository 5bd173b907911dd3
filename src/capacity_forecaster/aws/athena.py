"""Athena DDL for the lake: ``CREATE DATABASE`` and one Delta ``CREATE EXTERNAL TABLE`` per written table.

Pure text from ``catalog.TableDefinition``; identifiers are checked names quoted with backticks,
the location is a checked S3 URI quoted with single quotes. For a Delta table Athena accepts only
``LOCATION`` and the ``table_type`` property (no columns, comment, format or other properties): it
reads the schema and the partitions from the table's ``_delta_log/`` and copies the schema to Glue.
Running the DDL in the Athena console and registering through the Glue API
(``glue.register_glue_tables``) give tables Athena reads the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

from capacity_forecaster.aws import names
from capacity_forecaster.aws.catalog import DELTA_PROPERTIES, TableDefinition
from capacity_forecaster.errors import ConfigError


def _quote(value: str) -> str:
    if "'" in value or "\\" in value or "\n" in value:
        raise ConfigError(f"value {value!r} cannot be quoted safely in Athena DDL")
    return f"'{value}'"


def create_database_ddl(database: str) -> str:
    """``CREATE DATABASE IF NOT EXISTS`` for a checked database name."""
    names.check("glue_name", database, "Glue database")
    return f"CREATE DATABASE IF NOT EXISTS `{database}`;"


def create_table_ddl(database: str, table: TableDefinition) -> str:
    """``CREATE EXTERNAL TABLE`` of one lake table as a Delta table Athena reads natively.

    No ``IF NOT EXISTS``: an existing table of that name (for example one registered before the lake
    became Delta, which Athena would read as a plain Parquet folder) must fail the statement rather
    than stay as it is; drop it first (``DROP TABLE`` leaves the files alone).

    Args:
        database: Glue/Athena database name (checked).
        table: the table's catalog definition.

    Returns:
        One DDL statement ending in ';'.
    """
    names.check("glue_name", database, "Glue database")
    names.check("glue_name", table.name, "table name")
    return (f"CREATE EXTERNAL TABLE `{database}`.`{table.name}`\n"
            f"LOCATION {_quote(table.location)}\n"
            f"TBLPROPERTIES ({_quote('table_type')}={_quote(DELTA_PROPERTIES['table_type'])});")


def lake_ddl(database: str, tables: Iterable[TableDefinition]) -> str:
    """The database statement and one table statement per definition, separated by blank lines."""
    return "\n\n".join([create_database_ddl(database), *(create_table_ddl(database, t) for t in tables)]) + "\n"
