"""Register the lake's tables in the Glue Data Catalog (the catalog Athena and QuickSight read).

Each table is a Delta table (``table_type`` DELTA, ``spark.sql.sources.provider`` delta, the table
folder as location and as the SerDe ``path``): Athena reads its files and partitions from the Delta
log. The columns are declared too (what Athena's own ``CREATE EXTERNAL TABLE`` copies from the log),
for the Glue console, Lake Formation and views; no partition keys (Delta tracks the partitions).

Idempotent: the database is created if missing (an existing one is left as it is); each table is
created, or updated in place when capfc registered it before (``capfc.managed`` table property) or
it is a Delta table over the same folder (created by ``capfc aws athena-ddl``, which may not add
the property). An update also turns a table registered before the lake became Delta (Parquet,
partition projection) into the Delta one. Any other table of the same name is never touched: the
call stops with an error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from capacity_forecaster.aws import names
from capacity_forecaster.aws.catalog import DELTA_PROPERTIES, MANAGED_KEY, TableDefinition, lake_definitions
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
    """The Glue ``TableInput`` of a table definition (external Delta table, no partition keys)."""
    return {
        "Name": table.name,
        "Description": table.description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": dict(table.properties),
        "PartitionKeys": [],
        "StorageDescriptor": {
            "Columns": [{"Name": c.name, "Type": c.type} for c in table.columns],
            "Location": table.location,
            "Compressed": False,
            # Spark and Glue jobs find a Delta table's folder through the SerDe "path".
            "SerdeInfo": {"Parameters": {"path": table.location}},
        },
    }


def is_ours(existing: dict[str, Any], table: TableDefinition) -> bool:
    """Whether an existing Glue table may be replaced by ``table``: capfc registered it, or it is a
    Delta table over the same folder (what ``capfc aws athena-ddl`` creates)."""
    params = {k.lower(): str(v).lower() for k, v in (existing.get("Parameters") or {}).items()}
    if params.get(MANAGED_KEY) == "true":
        return True
    delta = params.get("table_type") == DELTA_PROPERTIES["table_type"].lower()
    location = str((existing.get("StorageDescriptor") or {}).get("Location", "")).rstrip("/")
    return delta and location == table.location.rstrip("/")


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
    if not is_ours(existing, table):
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
) -> GlueRegistration:
    """Create or update the Glue database and one external Delta table per written lake table.

    Args:
        lake: the lake (its Delta logs give the schemas).
        database: Glue database name (lowercase letters, digits, underscores; checked).
        tables: table names to register (default: every written table).
        s3_uri: S3 location Athena reads (default: the lake's URI, which must then be s3://).
        clients: boto3 client factory (region, endpoint, session); default: the standard chain.

    Returns:
        What was created, updated and skipped.

    Raises:
        ConfigError: invalid database name or a lake not on S3.
        SchemaError: a column Athena cannot represent.
        StorageError: a table's Delta log cannot be read.
        AwsError: a Glue call failed.
    """
    names.check("glue_name", database, "Glue database")
    clients = clients or AwsClients()
    definitions, skipped = lake_definitions(lake, tables=tables, s3_uri=s3_uri)
    result = GlueRegistration(database, skipped=skipped)
    result.database_created = ensure_database(database, clients)
    for definition in definitions:
        action = upsert_table(database, definition, clients)
        (result.created if action == "created" else result.updated).append(definition.name)
    log.info("glue database %s: %d table(s) created, %d updated, %d never written (skipped)", database,
             len(result.created), len(result.updated), len(result.skipped))
    return result
