"""SQL over the lake with DuckDB: one view per table, local or S3 (through pyarrow datasets).

Safe mode (the default) is read-only over the lake's views: once they are registered, DuckDB's
external access is switched off and its configuration locked, so no statement can read or write a
file (``read_csv``, ``COPY``, ``ATTACH``, ``EXPORT``, ``INSTALL``/``LOAD``) and the lake's own files
stay out of reach; only one ``SELECT`` (or ``EXPLAIN``/``PRAGMA``) per call is accepted. Unsafe mode
(``capfc sql --unsafe``, ``lake.sql_unsafe``) is plain DuckDB with the views, for local analysts.
"""

from __future__ import annotations

import logging
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from capacity_forecaster.errors import CapacityForecasterError, StorageError, VacuumedError
from capacity_forecaster.schema import TABLES
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)


class SqlError(CapacityForecasterError):
    """A query given to ``capfc sql`` failed (syntax, unknown table or column)."""


# Prefix of the Arrow scans behind the views of tables with timestamps (see ``register_views``).
_STORED = "_stored_"


def register_views(con: Any, lake: Lake, as_of: str | None = None,
                   unreadable: dict[str, str] | None = None) -> list[str]:
    """Register every written lake table on a DuckDB connection as a view of the same name.

    DuckDB scans the pyarrow datasets of the Delta tables' versions lazily (projection and filter
    push-down), which also works for S3 lakes without DuckDB's httpfs and delta extensions
    (unavailable offline). Each view is the table's consistent current version (see
    ``storage.consistency``), or its version as of a run id or time with ``as_of``.

    Args:
        con: the DuckDB connection.
        lake: the lake.
        as_of: a run id or an ISO time: the tables as they were then.
        unreadable: with ``as_of``, collects (name -> why) the tables that cannot be read as they were then
            (their files vacuumed) instead of failing on them: a statement over the other tables still runs
            (helper-55: every ``--as-of`` query failed on one vacuumed table it did not use).

    Returns:
        The names of the registered views.
    """
    names = []
    for name in TABLES:
        # Timestamps are stored as UTC instants while the readers' schema is naive: a filter such as
        # last_observed < '2025-04-01' reached the files as a naive literal against a zoned column and failed
        # (helper-51). The scan reads the stored type; the view shows naive UTC, as every reader does.
        try:
            dataset = lake.dataset(name, as_of=as_of, zoned=True)
        except VacuumedError as err:
            if unreadable is None:
                raise
            unreadable[name] = str(err)
            continue
        if dataset is None:
            continue
        stamps = [f.name for f in dataset.schema if pa.types.is_timestamp(f.type)]
        if not stamps:
            con.register(name, dataset)
        else:
            con.register(f"{_STORED}{name}", dataset)
            naive = ", ".join(f"timezone('UTC', \"{c}\") AS \"{c}\"" for c in stamps)
            con.execute(f'CREATE VIEW "{name}" AS SELECT * REPLACE ({naive}) FROM "{_STORED}{name}"')
        names.append(name)
    log.debug("registered views: %s", ", ".join(names))
    return names


# Statement types safe mode runs; everything else (COPY, ATTACH, LOAD/INSTALL, EXPORT, SET, CREATE,
# INSERT, ...) is refused before DuckDB sees it.
_SAFE_STATEMENTS = frozenset({"SELECT", "EXPLAIN", "PRAGMA"})
_UNSAFE_HINT = "capfc sql is read-only over the lake's views; 'capfc sql --unsafe' (lake.sql_unsafe) gives full DuckDB"


def lock_down(con: Any) -> None:
    """Make a DuckDB connection read-only over what is already registered (no file or network access).

    Registered Arrow datasets keep working: they are scanned through pyarrow, not DuckDB's file system.
    """
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def connect(lake: Lake, *, unsafe: bool = False, as_of: str | None = None,
            unreadable: dict[str, str] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the lake's tables as views.

    Args:
        lake: the lake.
        unsafe: keep DuckDB's file access (otherwise the connection is locked down, see ``lock_down``).
        as_of: a run id or an ISO time: the tables as they were then.
        unreadable: see ``register_views``.
    """
    con = duckdb.connect(database=":memory:")
    register_views(con, lake, as_of, unreadable)
    if not unsafe:
        lock_down(con)
    return con


def check_statement(con: Any, sql: str) -> None:
    """Refuse anything but one SELECT, EXPLAIN or PRAGMA statement (safe mode).

    Raises:
        SqlError: the text holds another kind of statement, several statements or none.
    """
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as err:
        raise SqlError(f"SQL failed: {str(err).splitlines()[0]}") from err
    if len(statements) != 1:
        raise SqlError(f"SQL refused: give exactly one statement, got {len(statements)}; {_UNSAFE_HINT}")
    kind = statements[0].type.name
    if kind not in _SAFE_STATEMENTS:
        raise SqlError(f"SQL refused: {kind} statements are not allowed; {_UNSAFE_HINT}")


def query(lake: Lake, sql: str, params: list[Any] | None = None, *, unsafe: bool = False,
          as_of: str | None = None) -> pd.DataFrame:
    """Run one SQL statement over the lake's views.

    Args:
        lake: the lake.
        sql: the statement; use ``?`` or ``$name`` placeholders for values.
        params: values for the placeholders.
        unsafe: full DuckDB (files, COPY, ATTACH, extensions); default: read-only over the views.
        as_of: a run id or an ISO time: query the tables as they were then.

    Returns:
        The result as a frame.

    Raises:
        SqlError: the statement failed or was refused; the message lists the available views.
    """
    unreadable: dict[str, str] = {}
    con = connect(lake, unsafe=unsafe, as_of=as_of, unreadable=unreadable)
    try:
        if not unsafe:
            check_statement(con, sql)
        return con.execute(sql, params or []).df()
    except duckdb.Error as err:
        views = ", ".join(sorted(r[0] for r in con.execute("SELECT view_name FROM duckdb_views() "
                                                           "WHERE NOT internal").fetchall()))
        message = " ".join(str(err).splitlines()[0].split())[:300]
        if isinstance(err, duckdb.PermissionException) and not unsafe:
            raise SqlError(f"SQL refused: {message}; {_UNSAFE_HINT}") from err
        gone = f"; not readable as of {as_of}: {'; '.join(unreadable.values())}" if unreadable else ""
        raise SqlError(f"SQL failed: {message} (views in lake {lake.uri}: {views or 'none yet'}){gone}") from err
    finally:
        con.close()


def sqlalchemy_engine(lake: Lake, *, unsafe: bool = False) -> Any:
    """A SQLAlchemy engine (duckdb-engine) whose connections see the lake's views.

    For notebooks: ``pd.read_sql("SELECT ...", sqlalchemy_engine(lake))``. Read-only over the views
    like ``capfc sql`` (no file access, configuration locked) unless ``unsafe``.
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
        if not unsafe:
            lock_down(dbapi_connection)

    return engine
