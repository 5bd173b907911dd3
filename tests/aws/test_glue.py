"""Glue registration against the moto server: create, idempotent update, foreign tables left alone."""

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
    bucket_prefix = s3_lake.uri.rstrip("/")
    assert table["TableType"] == "EXTERNAL_TABLE"
    assert table["StorageDescriptor"]["Location"] == f"{bucket_prefix}/raw/metrics/"
    assert table["StorageDescriptor"]["SerdeInfo"]["SerializationLibrary"].endswith("ParquetHiveSerDe")
    assert [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]] == [
        ("server_id", "string"), ("ds", "date"), ("metric", "string"), ("value", "double")]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["year", "month"]
    params = table["Parameters"]
    assert params["projection.enabled"] == "true" and params["capfc.managed"] == "true"
    first, last = map(int, params["projection.year.range"].split(","))
    assert first == 2025 and last >= 2031
    inventory = glue.get_table(DatabaseName=database, Name="inventory")["Table"]
    assert inventory["PartitionKeys"] == [] and "projection.enabled" not in inventory["Parameters"]


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
