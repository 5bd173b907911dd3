"""Catalog definitions and Athena DDL: Delta tables, the stored types mapped to Athena's, safe quoting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from aws_helpers import write_small_lake

from capacity_forecaster.aws.athena import create_table_ddl, lake_ddl
from capacity_forecaster.aws.catalog import columns, hive_type, lake_definitions, table_definition
from capacity_forecaster.errors import ConfigError, SchemaError
from capacity_forecaster.schema import TABLES
from capacity_forecaster.storage import Lake


@pytest.fixture()
def local_lake(tmp_path: Path) -> Lake:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    write_small_lake(lake)
    return lake


@pytest.mark.parametrize(
    ("arrow", "hive"),
    [
        (pa.string(), "string"), (pa.large_string(), "string"), (pa.dictionary(pa.int32(), pa.string()), "string"),
        (pa.bool_(), "boolean"), (pa.int8(), "tinyint"), (pa.int16(), "smallint"), (pa.int32(), "int"),
        (pa.int64(), "bigint"), (pa.float32(), "float"), (pa.float64(), "double"),
        (pa.decimal128(12, 2), "decimal(12,2)"), (pa.date32(), "date"), (pa.timestamp("ns"), "timestamp"),
        (pa.timestamp("us", tz="UTC"), "timestamp"), (pa.binary(), "binary"),
        (pa.list_(pa.float64()), "array<double>"), (pa.map_(pa.string(), pa.int64()), "map<string,bigint>"),
        (pa.struct([("a", pa.int32()), ("B", pa.string())]), "struct<a:int,b:string>"),
    ],
)
def test_arrow_to_athena_types(arrow: pa.DataType, hive: str) -> None:
    assert hive_type(arrow, "t.c") == hive


@pytest.mark.parametrize("arrow", [pa.uint32(), pa.uint64(), pa.null(), pa.time64("us"), pa.duration("s")])
def test_types_a_delta_table_does_not_store_name_the_column(arrow: pa.DataType) -> None:
    with pytest.raises(SchemaError, match="t.c: Arrow type .* is not a Delta/Athena column type"):
        hive_type(arrow, "t.c")


def test_column_names_athena_cannot_use_are_refused() -> None:
    with pytest.raises(SchemaError, match="column name 'bad name'"):
        columns(pa.schema([("bad name", pa.string())]), "inventory")
    with pytest.raises(SchemaError, match="differ only in case"):
        columns(pa.schema([("Value", pa.float64()), ("value", pa.float64())]), "metrics")


def test_definitions_follow_schema_and_delta_log(local_lake: Lake) -> None:
    definitions, skipped = lake_definitions(local_lake, s3_uri="s3://bucket/capfc/")
    by_name = {d.name: d for d in definitions}
    assert list(by_name) == [n for n in TABLES if n in by_name]  # pipeline order
    assert set(by_name) == {"raw_metrics", "forecasts", "inventory", "server_risk", "clusters"}
    assert "metrics" in skipped and "backtests" in skipped
    raw = by_name["raw_metrics"]
    assert raw.location == "s3://bucket/capfc/raw/metrics/"
    # The Delta partition columns are ordinary (string) columns at the end, as in the Delta log.
    assert [(c.name, c.type) for c in raw.columns] == [("server_id", "string"), ("ds", "date"),
                                                       ("metric", "string"), ("value", "double"),
                                                       ("year", "string"), ("month", "string")]
    snapshot = local_lake.delta.snapshot("raw/metrics")
    assert snapshot is not None
    delta_names = [f.name for f in snapshot.schema]
    assert [c.name for c in raw.columns] == delta_names
    assert raw.properties == {"table_type": "DELTA", "spark.sql.sources.provider": "delta", "EXTERNAL": "TRUE",
                              "capfc.managed": "true"}
    risk = {c.name: c.type for c in by_name["server_risk"].columns}
    assert risk["peak_ds"] == "date" and risk["days_to_breach"] == "bigint"
    assert risk["written_at"] == "timestamp" and risk["urgent"] == "boolean"
    assert {c.name: c.type for c in by_name["clusters"].columns}["cluster_id"] == "int"
    assert [c.name for c in by_name["inventory"].columns][-1] == "monthly_cost_usd"  # unpartitioned: no year/month


def test_column_types_are_the_stored_delta_types(local_lake: Lake) -> None:
    """What the lake stores (timestamps in us UTC, int32, all-null as string) maps to one Athena type each."""
    local_lake.write_table("clusters", pd.DataFrame({
        "server_id": ["s1"], "cluster_id": np.array([3], dtype="uint8"), "cluster_label": [None],
        "at": [pd.Timestamp("2026-01-05 03:00:00.123456789", tz="UTC")]}), validate=False)
    info = local_lake.table_info("clusters")
    assert info is not None
    definition = table_definition(TABLES["clusters"], info, "s3://bucket/capfc")
    assert {c.name: c.type for c in definition.columns} == {
        "server_id": "string", "cluster_id": "smallint", "cluster_label": "string", "at": "timestamp"}


def test_ddl_is_delta_location_and_table_type_only(local_lake: Lake) -> None:
    definitions, _ = lake_definitions(local_lake, s3_uri="s3://bucket/capfc")
    text = lake_ddl("capacity_forecaster", definitions)
    assert text.startswith("CREATE DATABASE IF NOT EXISTS `capacity_forecaster`;")
    assert text.count("CREATE EXTERNAL TABLE `capacity_forecaster`.") == len(definitions)
    raw = create_table_ddl("capacity_forecaster", next(d for d in definitions if d.name == "raw_metrics"))
    # Athena refuses anything beyond LOCATION and table_type for a Delta table: it reads the log.
    assert raw == ("CREATE EXTERNAL TABLE `capacity_forecaster`.`raw_metrics`\n"
                   "LOCATION 's3://bucket/capfc/raw/metrics/'\n"
                   "TBLPROPERTIES ('table_type'='DELTA');")
    for banned in ("PARTITIONED BY", "STORED AS", "projection", "COMMENT", "IF NOT EXISTS `capacity_forecaster`.",
                   "`ds`"):
        assert banned not in text


@pytest.mark.parametrize(
    ("database", "uri", "message"),
    [
        ("Capfc", "s3://bucket/capfc", "Glue/Athena name 'Capfc' is not valid"),
        ("capfc; DROP TABLE x", "s3://bucket/capfc", "lowercase letters, digits and underscores"),
        ("capfc", "s3://bucket/it's", "S3 URI"),
        ("capfc", "/local/folder", "Athena reads only S3"),
    ],
)
def test_unsafe_names_and_locations_are_refused(local_lake: Lake, database: str, uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        definitions, _ = lake_definitions(local_lake, s3_uri=uri if uri.startswith("s3") else None)
        lake_ddl(database, definitions)


def test_unknown_table_names_the_valid_ones(local_lake: Lake) -> None:
    with pytest.raises(SchemaError, match="unknown lake table 'metricz'; valid tables:"):
        lake_definitions(local_lake, tables=["metricz"], s3_uri="s3://bucket/capfc")
