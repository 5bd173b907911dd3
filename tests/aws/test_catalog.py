"""Catalog definitions and Athena DDL: type mapping, partition projection covering the data, safe quoting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from aws_helpers import write_small_lake

from capacity_forecaster.aws.athena import create_table_ddl, lake_ddl
from capacity_forecaster.aws.catalog import (
    columns,
    hive_type,
    lake_definitions,
    partition_years,
    table_definition,
    uncovered_partitions,
)
from capacity_forecaster.errors import ConfigError, SchemaError
from capacity_forecaster.schema import TABLES
from capacity_forecaster.storage import Lake, TableInfo

TODAY = dt.date(2026, 1, 10)


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
        (pa.int64(), "bigint"), (pa.uint32(), "bigint"), (pa.float32(), "float"), (pa.float64(), "double"),
        (pa.decimal128(12, 2), "decimal(12,2)"), (pa.date32(), "date"), (pa.timestamp("ns"), "timestamp"),
        (pa.timestamp("us", tz="UTC"), "timestamp"), (pa.binary(), "binary"), (pa.null(), "string"),
        (pa.list_(pa.float64()), "array<double>"), (pa.map_(pa.string(), pa.int64()), "map<string,bigint>"),
        (pa.struct([("a", pa.int32()), ("B", pa.string())]), "struct<a:int,b:string>"),
    ],
)
def test_arrow_to_athena_types(arrow: pa.DataType, hive: str) -> None:
    assert hive_type(arrow, "t.c") == hive


@pytest.mark.parametrize("arrow", [pa.uint64(), pa.time64("us"), pa.duration("s")])
def test_types_without_athena_equivalent_name_the_column(arrow: pa.DataType) -> None:
    with pytest.raises(SchemaError, match="t.c: Arrow type .* no Athena equivalent"):
        hive_type(arrow, "t.c")


def test_column_names_athena_cannot_use_are_refused() -> None:
    with pytest.raises(SchemaError, match="column name 'bad name'"):
        columns(pa.schema([("bad name", pa.string())]), "inventory")
    with pytest.raises(SchemaError, match="differ only in case"):
        columns(pa.schema([("Value", pa.float64()), ("value", pa.float64())]), "metrics")


def test_definitions_follow_schema_and_pointers(local_lake: Lake) -> None:
    definitions, skipped = lake_definitions(local_lake, s3_uri="s3://bucket/capfc/", today=TODAY)
    by_name = {d.name: d for d in definitions}
    assert list(by_name) == [n for n in TABLES if n in by_name]  # pipeline order
    assert set(by_name) == {"raw_metrics", "forecasts", "inventory", "server_risk", "clusters"}
    assert "metrics" in skipped and "backtests" in skipped
    raw = by_name["raw_metrics"]
    assert raw.location == "s3://bucket/capfc/raw/metrics/"
    assert [(c.name, c.type) for c in raw.columns] == [("server_id", "string"), ("ds", "date"),
                                                       ("metric", "string"), ("value", "double")]
    assert [(c.name, c.type) for c in raw.partition_keys] == [("year", "string"), ("month", "string")]
    risk = {c.name: c.type for c in by_name["server_risk"].columns}
    assert risk["peak_ds"] == "date" and risk["days_to_breach"] == "bigint"
    assert risk["written_at"] == "timestamp" and risk["urgent"] == "boolean"
    assert {c.name: c.type for c in by_name["clusters"].columns}["cluster_id"] == "int"
    assert by_name["inventory"].partition_keys == () and by_name["inventory"].year_range is None


def test_projection_covers_every_partition_with_headroom(local_lake: Lake) -> None:
    info = local_lake.table_info("raw_metrics")
    assert info is not None
    assert partition_years(info) == [2025, 2026]
    definition = table_definition(TABLES["raw_metrics"], info, "s3://bucket/capfc", today=TODAY, future_years=5)
    assert definition.year_range == (2025, 2031)
    props = definition.properties
    assert props["projection.enabled"] == "true"
    assert props["projection.year.range"] == "2025,2031" and props["projection.year.digits"] == "4"
    assert props["projection.month.range"] == "1,12" and props["projection.month.digits"] == "2"
    assert props["storage.location.template"] == "s3://bucket/capfc/raw/metrics/year=${year}/month=${month}/"
    assert uncovered_partitions(definition, info) == []
    # The template reproduces every partition folder the pointer lists.
    for file in info.files:
        year, month = file.split("/")[:2]
        assert props["storage.location.template"].replace("${year}", year[5:]).replace("${month}", month[6:]) \
            == f"{definition.location}{year}/{month}/"


def test_projection_reaches_data_beyond_the_current_year() -> None:
    info = TableInfo("forecasts", "v", ("year=2024/month=03/p.parquet", "year=2029/month=12/p.parquet"), 2,
                     pa.schema([("ds", pa.date32())]), "now")
    definition = table_definition(TABLES["forecasts"], info, "s3://bkt/p", today=TODAY, future_years=1)
    assert definition.year_range == (2024, 2030)
    assert uncovered_partitions(definition, info) == []
    narrow = table_definition(TABLES["forecasts"], info, "s3://bkt/p", today=TODAY, future_years=1)
    object.__setattr__(narrow, "year_range", (2024, 2028))
    assert uncovered_partitions(narrow, info) == ["year=2029/month=12"]


def test_empty_partitioned_table_projects_from_this_year() -> None:
    info = TableInfo("metrics", "v", (), 0, pa.schema([("ds", pa.date32())]), "now")
    assert table_definition(TABLES["metrics"], info, "s3://bkt/p", today=TODAY).year_range == (2026, 2031)


def test_ddl_is_parquet_external_table_with_projection(local_lake: Lake) -> None:
    definitions, _ = lake_definitions(local_lake, s3_uri="s3://bucket/capfc", today=TODAY)
    text = lake_ddl("capacity_forecaster", definitions)
    assert text.startswith("CREATE DATABASE IF NOT EXISTS `capacity_forecaster`;")
    assert text.count("CREATE EXTERNAL TABLE IF NOT EXISTS") == len(definitions)
    raw = create_table_ddl("capacity_forecaster", next(d for d in definitions if d.name == "raw_metrics"))
    assert "CREATE EXTERNAL TABLE IF NOT EXISTS `capacity_forecaster`.`raw_metrics` (" in raw
    assert "  `ds` date," in raw and "PARTITIONED BY (`year` string, `month` string)" in raw
    assert "STORED AS PARQUET\nLOCATION 's3://bucket/capfc/raw/metrics/'" in raw
    assert "'projection.year.range'='2025,2031'" in raw and raw.endswith(");")
    inventory = create_table_ddl("capacity_forecaster", next(d for d in definitions if d.name == "inventory"))
    assert "PARTITIONED BY" not in inventory and "projection" not in inventory


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
        definitions, _ = lake_definitions(local_lake, s3_uri=uri if uri.startswith("s3") else None, today=TODAY)
        lake_ddl(database, definitions)


def test_unknown_table_names_the_valid_ones(local_lake: Lake) -> None:
    with pytest.raises(SchemaError, match="unknown lake table 'metricz'; valid tables:"):
        lake_definitions(local_lake, tables=["metricz"], s3_uri="s3://bucket/capfc")
