"""SQL over the lake with DuckDB: one view per table, local or S3 (through pyarrow datasets)."""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import pandas as pd

from capacity_forecaster.errors import CapacityForecasterError, StorageError
from capacity_forecaster.schema import TABLES
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)


class SqlError(CapacityForecasterError):
    """A query given to ``capfc sql`` failed (syntax, unknown table or column)."""


def register_views(con: Any, lake: Lake) -> list[str]:
    """Register every written lake table on a DuckDB connection as a view of the same name.

    DuckDB scans the pyarrow datasets lazily (projection and filter push-down), which also
    works for S3 lakes without DuckDB's httpfs extension (unavailable offline).

    Returns:
        The names of the registered views.
    """
    names = []
    for name in TABLES:
        dataset = lake.dataset(name)
        if dataset is None:
            continue
        con.register(name, dataset)
        names.append(name)
    log.debug("registered views: %s", ", ".join(names))
    return names


def connect(lake: Lake) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake's tables as views."""
    con = duckdb.connect(database=":memory:")
    register_views(con, lake)
    return con


def query(lake: Lake, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
    """Run one SQL statement over the lake's views.

    Args:
        lake: the lake.
        sql: the statement; use ``?`` or ``$name`` placeholders for values.
        params: values for the placeholders.

    Returns:
        The result as a frame.

    Raises:
        SqlError: the statement failed; the message lists the available views.
    """
    con = connect(lake)
    try:
        return con.execute(sql, params or []).df()
    except duckdb.Error as err:
        views = ", ".join(sorted(r[0] for r in con.execute("SELECT view_name FROM duckdb_views() "
                                                           "WHERE NOT internal").fetchall()))
        message = str(err).splitlines()[0]
        raise SqlError(f"SQL failed: {message} (views in lake {lake.uri}: {views or 'none yet'})") from err
    finally:
        con.close()


def sqlalchemy_engine(lake: Lake) -> Any:
    """A SQLAlchemy engine (duckdb-engine) whose connections see the lake's views.

    For notebooks: ``pd.read_sql("SELECT ...", sqlalchemy_engine(lake))``.
    """
    try:
        from sqlalchemy import create_engine, event
        from sqlalchemy.pool import StaticPool
    except ImportError as err:
        raise StorageError("sqlalchemy_engine needs sqlalchemy and duckdb-engine installed") from err
    engine = create_engine("duckdb:///:memory:", poolclass=StaticPool)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        register_views(dbapi_connection, lake)

    return engine
