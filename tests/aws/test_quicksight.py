"""QuickSight Athena data source (and direct-query data sets) against moto."""

from __future__ import annotations

import uuid

import pytest
from aws_helpers import ACCOUNT

from capacity_forecaster.aws.catalog import lake_definitions
from capacity_forecaster.aws.clients import AwsClients
from capacity_forecaster.aws.quicksight import quicksight_type, register_quicksight
from capacity_forecaster.errors import ConfigError
from capacity_forecaster.storage import Lake


def test_data_source_on_the_workgroup(clients: AwsClients) -> None:
    source_id = f"capfc-{uuid.uuid4().hex[:8]}"
    result = register_quicksight(data_source_id=source_id, workgroup="capfc", tags={"team": "cap"}, clients=clients)
    assert result["account"] == ACCOUNT  # from STS, as no account was given
    assert result["data_source"] == "created" and result["data_source_arn"].endswith(f"datasource/{source_id}")
    described = clients.client("quicksight").describe_data_source(AwsAccountId=ACCOUNT, DataSourceId=source_id)
    source = described["DataSource"]
    assert source["Type"] == "ATHENA"
    assert source["DataSourceParameters"] == {"AthenaParameters": {"WorkGroup": "capfc"}}


def test_data_sets_for_lake_tables(s3_lake: Lake, clients: AwsClients) -> None:
    tables, _ = lake_definitions(s3_lake, tables=["server_risk", "forecasts"])
    principal = f"arn:aws:quicksight:us-east-1:{ACCOUNT}:user/default/analyst"
    result = register_quicksight(ACCOUNT, data_source_id=f"capfc-{uuid.uuid4().hex[:8]}", database="capfc_db",
                                 tables=tables, principal_arn=principal, clients=clients)
    assert result["data_sets"] == {"server_risk": "created", "forecasts": "created"} and result["failed"] == {}


def test_one_failing_data_set_does_not_stop_the_others(s3_lake: Lake, clients: AwsClients) -> None:
    tables, _ = lake_definitions(s3_lake, tables=["server_risk", "forecasts", "inventory"])
    # 118 + "-forecasts"/"-inventory" fit QuickSight's 128-character id; "-server_risk" does not.
    source_id = f"capfc-{uuid.uuid4().hex[:8]}".ljust(118, "x")
    result = register_quicksight(ACCOUNT, data_source_id=source_id, database="capfc_db", tables=tables,
                                 clients=clients)
    assert result["data_sets"] == {"forecasts": "created", "inventory": "created"}
    assert list(result["failed"]) == ["server_risk"] and "QuickSight id" in result["failed"]["server_risk"]


def test_column_types_map_to_quicksight() -> None:
    assert [quicksight_type(t) for t in ("string", "bigint", "double", "decimal(12,2)", "date", "timestamp",
                                         "boolean", "array<double>")] == \
        ["STRING", "INTEGER", "DECIMAL", "DECIMAL", "DATETIME", "DATETIME", "BOOLEAN", "STRING"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"account_id": "12345"}, "AWS account id '12345'"),
        ({"workgroup": "my workgroup"}, "Athena workgroup"),
        ({"principal_arn": "analyst"}, "QuickSight principal ARN"),
        ({"data_source_id": "capfc athena"}, "QuickSight id"),
    ],
)
def test_bad_inputs_fail_before_any_call(kwargs: dict[str, str], message: str) -> None:
    unreachable = AwsClients(region="us-east-1", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match=message):
        register_quicksight(**({"account_id": ACCOUNT} | kwargs), clients=unreachable)  # type: ignore[arg-type]
