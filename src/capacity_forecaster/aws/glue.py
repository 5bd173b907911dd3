"""Register the lake's tables in the Glue Data Catalog (the catalog Athena and QuickSight read).

Idempotent: the database is created if missing (an existing one is left as it is); each table is
created, or updated in place when capfc registered it before (``capfc.managed`` table property).
A table of the same name that capfc did not create is never touched: the call stops with an error.
See ``catalog.py`` for the layout, the partition projection and the pointer caveat.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

from capacity_forecaster.aws import names
from capacity_forecaster.aws.catalog import (
    FUTURE_YEARS,
    MANAGED_KEY,
    PARQUET_INPUT,
    PARQUET_OUTPUT,
    PARQUET_SERDE,
    TableDefinition,
    lake_definitions,
)
from capacity_forecaster.aws.clients import AwsClients, is_exists, translated
from capacity_forecaster.errors import AwsError
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)


@dataclass
class GlueRegistration:
    """What ``register_glue_tables`` did.

    Attributes:
        database: the Glue database.
        database_created: whether the database was created by this call.
        created: tables created.
        updated: tables that existed (registered by capfc) and were updated.
        skipped: tables never written to the lake, so not registered.
    """

    database: str
    database_created: bool = False
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def glue_table_input(table: TableDefinition) -> dict[str, Any]:
    """The Glue ``TableInput`` of a table definition (external Parquet table)."""
    return {
        "Name": table.name,
        "Description": table.description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": dict(table.properties),
        "PartitionKeys": [{"Name": c.name, "Type": c.type} for c in table.partition_keys],
        "StorageDescriptor": {
            "Columns": [{"Name": c.name, "Type": c.type} for c in table.columns],
            "Location": table.location,
            "InputFormat": PARQUET_INPUT,
            "OutputFormat": PARQUET_OUTPUT,
            "Compressed": False,
            "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE, "Parameters": {"serialization.format": "1"}},
        },
    }


def database_request(database: str, description: str = "") -> dict[str, Any]:
    """The ``CreateDatabase`` request of the lake's Glue database (pure)."""
    return {"DatabaseInput": {"Name": database,
                              "Description": description or "AWS-CapacityForecaster lake tables (capfc aws glue)"}}


def table_request(database: str, table: TableDefinition) -> dict[str, Any]:
    """The ``CreateTable`` / ``UpdateTable`` request of one lake table (pure)."""
    return {"DatabaseName": database, "TableInput": glue_table_input(table)}


def ensure_database(database: str, clients: AwsClients, description: str = "") -> bool:
    """Create the Glue database if it does not exist; returns whether it was created."""
    names.check("glue_name", database, "Glue database")
    glue = clients.client("glue")
    try:
        with translated(f"glue CreateDatabase {database}"):
            glue.create_database(**database_request(database, description))
    except AwsError as err:
        if is_exists(err):
            return False
        raise
    return True


def upsert_table(database: str, table: TableDefinition, clients: AwsClients) -> str:
    """Create or update one table; returns "created" or "updated".

    Raises:
        AwsError: the call failed, or a table of that name exists that capfc did not register.
    """
    glue = clients.client("glue")
    request = table_request(database, table)
    try:
        with translated(f"glue CreateTable {database}.{table.name}"):
            glue.create_table(**request)
        return "created"
    except AwsError as err:
        if not is_exists(err):
            raise
    with translated(f"glue GetTable {database}.{table.name}"):
        existing = glue.get_table(DatabaseName=database, Name=table.name)["Table"]
    if existing.get("Parameters", {}).get(MANAGED_KEY) != "true":
        raise AwsError(f"Glue table {database}.{table.name} exists and was not created by capfc; it is left "
                       "alone: choose another database (aws.glue_database / --database)")
    with translated(f"glue UpdateTable {database}.{table.name}"):
        glue.update_table(**request)
    return "updated"


def register_glue_tables(
    lake: Lake,
    database: str,
    *,
    tables: list[str] | tuple[str, ...] | None = None,
    s3_uri: str | None = None,
    clients: AwsClients | None = None,
    today: dt.date | None = None,
    future_years: int = FUTURE_YEARS,
) -> GlueRegistration:
    """Create or update the Glue database and one external table per written lake table.

    Args:
        lake: the lake (its pointers give the schemas).
        database: Glue database name (lowercase letters, digits, underscores; checked).
        tables: table names to register (default: every written table).
        s3_uri: S3 location Athena reads (default: the lake's URI, which must then be s3://).
        clients: boto3 client factory (region, endpoint, session); default: the standard chain.
        today: the current date, for the projected years.
        future_years: years projected beyond the data; see ``catalog.table_definition``.

    Returns:
        What was created, updated and skipped.

    Raises:
        ConfigError: invalid database name or a lake not on S3.
        SchemaError: a column Athena cannot represent.
        AwsError: a Glue call failed.
    """
    names.check("glue_name", database, "Glue database")
    clients = clients or AwsClients()
    definitions, skipped = lake_definitions(lake, tables=tables, s3_uri=s3_uri, today=today,
                                            future_years=future_years)
    result = GlueRegistration(database, skipped=skipped)
    result.database_created = ensure_database(database, clients)
    for definition in definitions:
        action = upsert_table(database, definition, clients)
        (result.created if action == "created" else result.updated).append(definition.name)
    log.info("glue database %s: %d table(s) created, %d updated, %d never written (skipped)", database,
             len(result.created), len(result.updated), len(result.skipped))
    return result
