"""Glue registration against the moto server: Delta tables created, updated in place, foreign tables left alone."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.aws.clients import AwsClients
from capacity_forecaster.aws.glue import register_glue_tables
from capacity_forecaster.errors import AwsError, ConfigError
from capacity_forecaster.storage import Lake


@pytest.fixture()
def database() -> str:
    return f"capfc_{uuid.uuid4().hex[:8]}"


def test_register_creates_database_and_tables(s3_lake: Lake, clients: AwsClients, database: str) -> None:
    result = register_glue_tables(s3_lake, database, clients=clients)
    assert result.database_created
    assert sorted(result.created) == ["clusters", "forecasts", "inventory", "raw_metrics", "server_risk"]
    assert result.updated == [] and "metrics" in result.skipped
    glue = clients.client("glue")
    table = glue.get_table(DatabaseName=database, Name="raw_metrics")["Table"]
    location = f"{s3_lake.uri.rstrip('/')}/raw/metrics/"
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["StorageDescriptor"]["Location"] == location
    assert table["StorageDescriptor"]["SerdeInfo"]["Parameters"] == {"path": location}
    assert [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]] == [
        ("server_id", "string"), ("ds", "date"), ("metric", "string"), ("value", "double"),
        ("year", "string"), ("month", "string")]
    assert table.get("PartitionKeys", []) == []  # Delta tracks the partitions, not Glue
    params = table["Parameters"]
    assert params["table_type"] == "DELTA" and params["spark.sql.sources.provider"] == "delta"
    assert params["capfc.managed"] == "true" and not any(k.startswith("projection.") for k in params)


def test_a_table_registered_before_delta_is_turned_into_the_delta_one(s3_lake: Lake, clients: AwsClients,
                                                                     database: str) -> None:
    glue = clients.client("glue")
    glue.create_database(DatabaseInput={"Name": database})
    location = f"{s3_lake.uri.rstrip('/')}/raw/metrics/"
    glue.create_table(DatabaseName=database, TableInput={  # what capfc registered for the pointer layout
        "Name": "raw_metrics", "TableType": "EXTERNAL_TABLE",
        "Parameters": {"classification": "parquet", "capfc.managed": "true", "projection.enabled": "true"},
        "PartitionKeys": [{"Name": "year", "Type": "string"}, {"Name": "month", "Type": "string"}],
        "StorageDescriptor": {"Columns": [{"Name": "value", "Type": "double"}], "Location": location}})
    result = register_glue_tables(s3_lake, database, tables=["raw_metrics"], clients=clients)
    assert result.updated == ["raw_metrics"]
    table = glue.get_table(DatabaseName=database, Name="raw_metrics")["Table"]
    assert table["Parameters"]["table_type"] == "DELTA" and "projection.enabled" not in table["Parameters"]
    assert table.get("PartitionKeys", []) == []


def test_a_delta_table_from_the_athena_ddl_is_updated(s3_lake: Lake, clients: AwsClients, database: str) -> None:
    """Athena's DDL for a Delta table cannot carry the capfc property: same folder and Delta is enough."""
    glue = clients.client("glue")
    glue.create_database(DatabaseInput={"Name": database})
    location = f"{s3_lake.uri.rstrip('/')}/risk/clusters/"
    glue.create_table(DatabaseName=database, TableInput={
        "Name": "clusters", "Parameters": {"table_type": "DELTA"}, "StorageDescriptor": {"Location": location}})
    assert register_glue_tables(s3_lake, database, tables=["clusters"], clients=clients).updated == ["clusters"]
    glue.create_table(DatabaseName=database, TableInput={  # a Delta table elsewhere is someone else's
        "Name": "inventory", "Parameters": {"table_type": "DELTA"},
        "StorageDescriptor": {"Location": "s3://other-bucket/inventory/"}})
    with pytest.raises(AwsError, match="inventory exists and was not created by capfc"):
        register_glue_tables(s3_lake, database, tables=["inventory"], clients=clients)


def test_rerun_updates_in_place(s3_lake: Lake, clients: AwsClients, database: str) -> None:
    register_glue_tables(s3_lake, database, clients=clients)
    inventory = s3_lake.read_table("inventory").assign(rack=["r1"])
    s3_lake.write_table("inventory", inventory)
    again = register_glue_tables(s3_lake, database, clients=clients)
    assert not again.database_created and again.created == []
    assert sorted(again.updated) == ["clusters", "forecasts", "inventory", "raw_metrics", "server_risk"]
    columns = clients.client("glue").get_table(DatabaseName=database, Name="inventory")["Table"]
    assert columns["StorageDescriptor"]["Columns"][-1] == {"Name": "rack", "Type": "string"}


def test_only_requested_tables(s3_lake: Lake, clients: AwsClients, database: str) -> None:
    result = register_glue_tables(s3_lake, database, tables=["server_risk", "metrics"], clients=clients)
    assert result.created == ["server_risk"] and result.skipped == ["metrics"]


def test_a_table_capfc_did_not_create_is_left_alone(s3_lake: Lake, clients: AwsClients, database: str) -> None:
    glue = clients.client("glue")
    glue.create_database(DatabaseInput={"Name": database})
    glue.create_table(DatabaseName=database, TableInput={"Name": "inventory", "Parameters": {"owner": "finance"}})
    with pytest.raises(AwsError, match=rf"{database}.inventory exists and was not created by capfc"):
        register_glue_tables(s3_lake, database, tables=["inventory"], clients=clients)
    assert glue.get_table(DatabaseName=database, Name="inventory")["Table"]["Parameters"] == {"owner": "finance"}


@pytest.mark.parametrize("bad", ["Capacity", "capfc-db", "1capfc", "", "a" * 256, "db`; DROP"])
def test_invalid_database_name_fails_before_any_call(bad: str, tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path), for_writing=True)
    lake.write_table("clusters", pd.DataFrame({"server_id": ["s"], "cluster_id": np.array([1]),
                                               "cluster_label": ["x"]}))
    unreachable = AwsClients(region="us-east-1", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="Glue database: Glue/Athena name .* lowercase letters"):
        register_glue_tables(lake, bad, s3_uri="s3://bucket/capfc", clients=unreachable)


def test_unreachable_endpoint_is_one_clear_error(s3_lake: Lake, database: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore would otherwise retry with back-off for seconds
    unreachable = AwsClients(region="us-east-1", endpoint_url="http://127.0.0.1:9")
    with pytest.raises(AwsError, match=r"glue CreateDatabase .* failed: EndpointConnectionError.*aws.endpoint_url"):
        register_glue_tables(s3_lake, database, clients=unreachable)
