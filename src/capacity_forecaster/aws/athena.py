"""Athena DDL for the lake: ``CREATE DATABASE`` and one ``CREATE EXTERNAL TABLE`` per written table.

Pure text from ``catalog.TableDefinition``; identifiers are checked names quoted with backticks,
the location and property values are checked S3 URIs or fixed strings quoted with single quotes.
Running the DDL in the Athena console and registering through the Glue API
(``glue.register_glue_tables``) give the same tables.
"""

from __future__ import annotations

from collections.abc import Iterable

from capacity_forecaster.aws import names
from capacity_forecaster.aws.catalog import TableDefinition
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
    """``CREATE EXTERNAL TABLE IF NOT EXISTS`` for one lake table (Parquet, optional partition projection).

    Args:
        database: Glue/Athena database name (checked).
        table: the table's catalog definition.

    Returns:
        One DDL statement ending in ';'.
    """
    names.check("glue_name", database, "Glue database")
    names.check("glue_name", table.name, "table name")
    cols = ",\n".join(f"  `{c.name}` {c.type}" for c in table.columns)
    lines = [f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table.name}` (", cols, ")"]
    lines.append(f"COMMENT {_quote(table.description)}")
    if table.partition_keys:
        keys = ", ".join(f"`{c.name}` {c.type}" for c in table.partition_keys)
        lines.append(f"PARTITIONED BY ({keys})")
    lines.append("STORED AS PARQUET")
    lines.append(f"LOCATION {_quote(table.location)}")
    properties = {k: v for k, v in table.properties.items() if k != "EXTERNAL"}
    props = ",\n".join(f"  {_quote(k)}={_quote(v)}" for k, v in properties.items())
    lines.append(f"TBLPROPERTIES (\n{props}\n);")
    return "\n".join(lines)


def lake_ddl(database: str, tables: Iterable[TableDefinition]) -> str:
    """The database statement and one table statement per definition, separated by blank lines."""
    return "\n\n".join([create_database_ddl(database), *(create_table_ddl(database, t) for t in tables)]) + "\n"
