"""The SQL sandbox: read-only over the lake's views by default, full DuckDB only when asked (--unsafe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.sql import SqlError, query, sqlalchemy_engine


@pytest.fixture()
def local_lake(tmp_path: Path) -> Lake:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    days = pd.date_range("2025-01-01", periods=10)
    lake.write_table("raw_metrics", pd.DataFrame({"server_id": "srv-1", "ds": days, "metric": "cpu",
                                                  "value": np.arange(10.0)}))
    return lake


def _commit_file(lake: Lake) -> str:
    return lake.path("raw", "metrics", "_delta_log", "00000000000000000001.json")


@pytest.mark.parametrize("sql", [
    "SELECT sum(value) AS total FROM raw_metrics",
    "WITH x AS (SELECT * FROM raw_metrics) SELECT count(*) AS total FROM x",
    "SELECT count(*) AS total FROM raw_metrics r JOIN raw_metrics s USING (server_id, ds)",
])
def test_queries_over_views_are_allowed(local_lake: Lake, sql: str) -> None:
    total = query(local_lake, sql)["total"].iloc[0]
    assert total in (45.0, 10)


@pytest.mark.parametrize("sql", ["DESCRIBE raw_metrics", "SHOW TABLES", "EXPLAIN SELECT * FROM raw_metrics",
                                 "PRAGMA version", "SUMMARIZE raw_metrics"])
def test_inspection_statements_are_allowed(local_lake: Lake, sql: str) -> None:
    assert len(query(local_lake, sql)) >= 1


@pytest.mark.parametrize(("sql", "refused"), [
    ("SELECT * FROM read_csv('/etc/passwd')", "Cannot access file"),
    ("SELECT * FROM '/etc/hostname'", "/etc/hostname does not exist"),  # no file replacement scans
    ("SELECT * FROM glob('/etc/*')", "Cannot access file"),
    ("SELECT * FROM read_text('/etc/hostname')", "Cannot access file"),
    ("COPY (SELECT 1) TO '{tmp}/out.csv'", "COPY statements are not allowed"),
    ("ATTACH '{tmp}/x.duckdb' AS x", "ATTACH statements are not allowed"),
    ("INSTALL httpfs", "LOAD statements are not allowed"),
    ("LOAD httpfs", "LOAD statements are not allowed"),
    ("EXPORT DATABASE '{tmp}/dump'", "EXPORT statements are not allowed"),
    ("SET enable_external_access = true", "SET statements are not allowed"),
    ("CREATE TABLE t AS SELECT 1", "CREATE statements are not allowed"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
])
def test_file_access_and_side_effects_are_refused(local_lake: Lake, tmp_path: Path, sql: str, refused: str) -> None:
    with pytest.raises(SqlError, match=f"SQL (refused|failed): .*{refused}"):
        query(local_lake, sql.format(tmp=tmp_path))
    assert not any(p.name in ("out.csv", "x.duckdb", "dump") for p in tmp_path.iterdir())


def test_lake_files_cannot_be_overwritten_from_sql(local_lake: Lake) -> None:
    before = Path(_commit_file(local_lake)).read_bytes()
    with pytest.raises(SqlError, match="SQL refused"):
        query(local_lake, f"COPY (SELECT 1) TO '{_commit_file(local_lake)}' (FORMAT json)")
    with pytest.raises(SqlError, match="SQL refused"):
        query(local_lake, f"SELECT * FROM read_json('{_commit_file(local_lake)}')")
    assert Path(_commit_file(local_lake)).read_bytes() == before
    assert query(local_lake, "SELECT count(*) AS n FROM raw_metrics")["n"].iloc[0] == 10


def test_unsafe_mode_is_full_duckdb(local_lake: Lake, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    query(local_lake, f"COPY (SELECT sum(value) AS total FROM raw_metrics) TO '{out}'", unsafe=True)
    assert out.read_text().splitlines() == ["total", "45.0"]
    assert len(query(local_lake, f"SELECT * FROM read_csv('{out}')", unsafe=True)) == 1


def test_sqlalchemy_engine_is_read_only_by_default(local_lake: Lake, tmp_path: Path) -> None:
    from sqlalchemy.exc import DBAPIError

    engine = sqlalchemy_engine(local_lake)
    assert int(pd.read_sql("SELECT count(*) AS n FROM raw_metrics", engine)["n"].iloc[0]) == 10
    with pytest.raises(DBAPIError, match="Cannot access file"):
        pd.read_sql("SELECT * FROM read_csv('/etc/passwd')", engine)
    out = tmp_path / "x.csv"
    unsafe = sqlalchemy_engine(local_lake, unsafe=True)
    with unsafe.connect() as con:
        con.exec_driver_sql(f"COPY (SELECT 1 AS a) TO '{out}'")
    assert out.exists()
