"""QuickSight: an Athena data source on the capfc workgroup, and optional direct-query data sets per table.

QuickSight reads the Glue tables through Athena, so register them first (``capfc aws glue``).
Data sources and data sets created through the API are visible in the QuickSight console only
to the principals granted on them: pass ``principal_arn`` (a QuickSight user or group ARN).
QuickSight itself must be allowed to use Athena and the lake bucket (console: Manage QuickSight >
Security & permissions); that account-level setting has no API here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from capacity_forecaster.aws import names
from capacity_forecaster.aws.catalog import TableDefinition
from capacity_forecaster.aws.clients import AwsClients, is_exists, translated
from capacity_forecaster.errors import AwsError, CapacityForecasterError

log = logging.getLogger(__name__)

DEFAULT_DATASETS = ("server_risk", "recommendations", "forecasts", "metrics", "clusters", "inventory")
_SOURCE_ACTIONS = ["quicksight:DescribeDataSource", "quicksight:DescribeDataSourcePermissions",
                   "quicksight:PassDataSource", "quicksight:UpdateDataSource", "quicksight:DeleteDataSource",
                   "quicksight:UpdateDataSourcePermissions"]
_DATASET_ACTIONS = ["quicksight:DescribeDataSet", "quicksight:DescribeDataSetPermissions", "quicksight:PassDataSet",
                    "quicksight:DescribeIngestion", "quicksight:ListIngestions", "quicksight:UpdateDataSet",
                    "quicksight:DeleteDataSet", "quicksight:CreateIngestion", "quicksight:CancelIngestion",
                    "quicksight:UpdateDataSetPermissions"]

_SOURCE_UPDATE_KEYS = ("AwsAccountId", "DataSourceId", "Name", "DataSourceParameters", "SslProperties")
_DATASET_UPDATE_KEYS = ("AwsAccountId", "DataSetId", "Name", "ImportMode", "PhysicalTableMap")


def quicksight_type(hive: str) -> str:
    """The QuickSight input column type of an Athena column type."""
    base = hive.split("(", 1)[0].split("<", 1)[0]
    if base in ("tinyint", "smallint", "int", "bigint"):
        return "INTEGER"
    if base in ("float", "double", "decimal"):
        return "DECIMAL"
    if base in ("date", "timestamp"):
        return "DATETIME"
    if base == "boolean":
        return "BOOLEAN"
    return "STRING"


def physical_table_id(table: str) -> str:
    """The ``PhysicalTableMap`` key of a table: QuickSight allows only ``[0-9a-zA-Z-]`` (no underscores)."""
    return table.replace("_", "-")


def data_source_request(account: str, data_source_id: str, name: str, workgroup: str, principal_arn: str | None,
                        tag_list: list[dict[str, str]]) -> dict[str, Any]:
    """The ``CreateDataSource`` request of the Athena data source (pure; ``UpdateDataSource`` takes a subset)."""
    args: dict[str, Any] = {
        "AwsAccountId": account, "DataSourceId": data_source_id, "Name": name, "Type": "ATHENA",
        "DataSourceParameters": {"AthenaParameters": {"WorkGroup": workgroup}},
        "SslProperties": {"DisableSsl": False},
    }
    if principal_arn:
        args["Permissions"] = [{"Principal": principal_arn, "Actions": _SOURCE_ACTIONS}]
    if tag_list:
        args["Tags"] = tag_list
    return args


def data_set_request(account: str, data_source_id: str, source_arn: str, database: str, table: TableDefinition,
                     principal_arn: str | None, tag_list: list[dict[str, str]]) -> dict[str, Any]:
    """The ``CreateDataSet`` request of a direct-query data set over one table (pure).

    Raises:
        ConfigError: the data set id ``<data_source_id>-<table>`` breaks QuickSight's id rule.
    """
    # The data set id keeps the table name as is (ids allow '_'; changing them would orphan existing sets).
    dataset_id = names.check("resource_id", f"{data_source_id}-{table.name}",
                             f"QuickSight data set id of {table.name}")
    dataset: dict[str, Any] = {
        "AwsAccountId": account, "DataSetId": dataset_id, "Name": f"capfc {table.name}",
        "ImportMode": "DIRECT_QUERY",
        "PhysicalTableMap": {physical_table_id(table.name): {"RelationalTable": {
            "DataSourceArn": source_arn, "Catalog": "AwsDataCatalog", "Schema": database, "Name": table.name,
            "InputColumns": [{"Name": c.name, "Type": quicksight_type(c.type)} for c in table.columns],
        }}},
    }
    if principal_arn:
        dataset["Permissions"] = [{"Principal": principal_arn, "Actions": _DATASET_ACTIONS}]
    if tag_list:
        dataset["Tags"] = tag_list
    return dataset


def caller_account(clients: AwsClients) -> str:
    """The caller's AWS account id (STS GetCallerIdentity)."""
    with translated("sts GetCallerIdentity"):
        return str(clients.client("sts").get_caller_identity()["Account"])


def _create_or_update(create: Any, update: Any, create_args: dict[str, Any], update_keys: Iterable[str],
                      action: str) -> tuple[str, str]:
    try:
        with translated(f"quicksight Create{action}"):
            response = create(**create_args)
        return "created", str(response.get("Arn", ""))
    except AwsError as err:
        if not is_exists(err):
            raise
    with translated(f"quicksight Update{action}"):
        response = update(**{k: create_args[k] for k in update_keys if k in create_args})
    return "updated", str(response.get("Arn", ""))


def register_quicksight(
    account_id: str | None = None,
    *,
    data_source_id: str = "capfc-athena",
    name: str = "AWS-CapacityForecaster (Athena)",
    workgroup: str = "primary",
    database: str | None = None,
    tables: Iterable[TableDefinition] = (),
    principal_arn: str | None = None,
    tags: dict[str, str] | None = None,
    clients: AwsClients | None = None,
) -> dict[str, Any]:
    """Create or update the Athena data source, and a direct-query data set per given table.

    Args:
        account_id: AWS account id (default: the caller's, from STS).
        data_source_id: QuickSight id of the data source; data sets get ``<id>-<table>``.
        name: display name of the data source.
        workgroup: Athena workgroup the data source queries through.
        database: Glue database of the tables (needed when ``tables`` is given).
        tables: catalog definitions of the tables to expose as data sets.
        principal_arn: QuickSight user/group granted ownership (else only API callers see them).
        tags: tags for the new resources.
        clients: boto3 client factory.

    Returns:
        ``account, data_source_id, data_source_arn, data_source`` (created/updated) and
        ``data_sets``: table -> created/updated, and ``failed``: table -> error message for the data
        sets that could not be created or updated (the others are still processed).

    Raises:
        ConfigError: an invalid id, workgroup, database or ARN.
        AwsError: the data source call failed (e.g. the account has no QuickSight subscription).
    """
    clients = clients or AwsClients()
    account = names.check("account_id", account_id, "account id") if account_id else caller_account(clients)
    names.check("resource_id", data_source_id, "QuickSight data source id")
    names.check("athena_workgroup", workgroup, "Athena workgroup")
    if principal_arn:
        names.check("principal_arn", principal_arn, "QuickSight principal")
    tables = list(tables)
    if tables:
        names.check("glue_name", database or "", "Glue database")
    tag_list = [{"Key": k, "Value": v} for k, v in sorted(names.check_tags(dict(tags or {})).items())]
    quicksight = clients.client("quicksight")
    args = data_source_request(account, data_source_id, name, workgroup, principal_arn, tag_list)
    source_action, source_arn = _create_or_update(
        quicksight.create_data_source, quicksight.update_data_source, args, _SOURCE_UPDATE_KEYS, "DataSource")
    result: dict[str, Any] = {"account": account, "data_source_id": data_source_id,
                              "data_source_arn": source_arn, "data_source": source_action, "data_sets": {},
                              "failed": {}}
    for table in tables:
        # One data set failing (a quota, a permission, a table QuickSight cannot read) must not hide
        # the others: record it, go on, and let the caller decide (the CLI exits 2 when any failed).
        try:
            dataset = data_set_request(account, data_source_id, source_arn, str(database), table, principal_arn,
                                       tag_list)
            action, _arn = _create_or_update(quicksight.create_data_set, quicksight.update_data_set, dataset,
                                             _DATASET_UPDATE_KEYS, "DataSet")
        except CapacityForecasterError as err:
            log.error("quicksight data set for %s failed: %s", table.name, err)
            result["failed"][table.name] = str(err)
            continue
        result["data_sets"][table.name] = action
    log.info("quicksight data source %s (%s) on workgroup %s; %d data set(s), %d failed", data_source_id,
             source_action, workgroup, len(result["data_sets"]), len(result["failed"]))
    return result
