"""The forecasts table as the reports read it: one summary row per series in memory, daily rows on demand."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from capacity_forecaster.schema import FORECAST_COLUMNS
from capacity_forecaster.stages.chunks import server_filter, servers_per_chunk, text_ids
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)

SERIES_COLUMNS = ("server_id", "metric", "model", "days", "weeks", "first", "last", "extrapolated_from")
# Peak memory of one server's forecasts in a report chunk (4 metrics x 180 days, the weekly roll-up
# and the workbook rows made from them), and the bounds of the derived chunk size.
REPORT_BYTES_PER_SERVER = 1 << 20
REPORT_CHUNK_BOUNDS = (50, 500)


def series_summary(con: Any) -> pd.DataFrame:
    """One row per forecast series (DuckDB over the ``forecasts`` view).

    Returns:
        server_id, metric, model (the series' model; a series has one), days (forecast rows), weeks
        (distinct weeks, Monday start), first and last (forecast days, datetime64), extrapolated_from
        (its first day beyond the lead the backtests validated, ``is_extrapolation``; NaT if none);
        sorted by server_id, metric.
    """
    names = {row[0] for row in con.execute("DESCRIBE forecasts").fetchall()}
    # A lake written before forecasts carried is_extrapolation has none.
    extrapolated = ("min(ds) FILTER (WHERE is_extrapolation)" if "is_extrapolation" in names
                    else "CAST(NULL AS TIMESTAMP)")
    frame = con.execute(
        "SELECT server_id, metric, min(model) AS model, count(*) AS days, "
        "count(DISTINCT date_trunc('week', ds)) AS weeks, min(ds) AS first, max(ds) AS last, "
        f"{extrapolated} AS extrapolated_from FROM forecasts GROUP BY ALL ORDER BY server_id, metric"
    ).df()
    for column in ("first", "last", "extrapolated_from"):
        frame[column] = pd.to_datetime(frame[column])
    return frame[list(SERIES_COLUMNS)]


@dataclass(frozen=True)
class Forecasts:
    """The lake's forecasts for a report: the per-series summary, and the daily rows read when a section needs them.

    Attributes:
        lake: the lake the rows are read from (inside a stage run, at the version the summary read).
        series: ``series_summary`` (server_id, metric, model, days, weeks, first, last, extrapolated_from).
        chunk_servers: servers whose rows ``chunks`` reads at a time.
    """

    lake: Lake
    series: pd.DataFrame
    chunk_servers: int

    @property
    def rows(self) -> int:
        """Daily forecast rows in the table."""
        return int(self.series["days"].sum())

    @property
    def weekly_rows(self) -> int:
        """Rows of the weekly roll-up (one per series and week)."""
        return int(self.series["weeks"].sum())

    def of(self, pairs: list[tuple[str, str]]) -> pd.DataFrame:
        """The daily rows of a few series (the ones a chart shows).

        Returns:
            server_id, metric, ds (datetime64), model, yhat, yhat_lower, yhat_upper; sorted by series and ds.
        """
        frame = read_series(self.lake, "forecasts", pairs, None, FORECAST_COLUMNS)
        return frame.sort_values(["server_id", "metric", "ds"], kind="stable").reset_index(drop=True)

    def chunks(self) -> Iterator[pd.DataFrame]:
        """Every daily row, ``chunk_servers`` servers at a time in server order (memory: one chunk).

        Yields:
            server_id, metric, ds (datetime64), model, yhat, yhat_lower, yhat_upper of whole servers.
        """
        ids = sorted(self.series["server_id"].dropna().unique())
        text = text_ids(self.lake, "forecasts")
        for start in range(0, max(len(ids), 1), self.chunk_servers):
            batch = ids[start: start + self.chunk_servers]
            frame = self.lake.read_table("forecasts", columns=list(FORECAST_COLUMNS),
                                         filter=server_filter(batch, start == 0, text))
            log.debug("report: forecast rows of servers %d-%d: %d", start, start + len(batch), len(frame))
            yield frame


def read_series(lake: Lake, table: str, series: list[tuple[str, str]], since: dt.date | None,
                columns: tuple[str, ...]) -> pd.DataFrame:
    """Rows of a few series of ``table`` from day ``since`` on (None: all), in the table's order.

    The read filters on the series' servers, whose id range lets the scan skip files and row groups, so
    memory follows the rows read, not the table (a DuckDB join with the wanted keys scans it all).

    Returns:
        ``columns`` (ds and cutoff as datetime64); empty without the table or without series.
    """
    info = lake.table_info(table)
    if not series or info is None:
        return pd.DataFrame(columns=list(columns))
    wanted = server_filter(sorted({server for server, _ in series}), False, text_ids(lake, table))
    if since is not None:
        wanted &= pc.field("ds") >= pa.scalar(since, pa.date32()).cast(info.schema.field("ds").type)
    frame = lake.read_table(table, columns=list(columns), filter=wanted)
    keys = pd.DataFrame(series, columns=["server_id", "metric"]).drop_duplicates()
    frame = frame.merge(keys, on=["server_id", "metric"])[list(columns)]
    for column in ("ds", "cutoff"):
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column])
    return frame


def chunk_size(configured: int | None) -> int:
    """Servers a report reads at a time: ``report.chunk_servers``, or derived from the available memory."""
    return servers_per_chunk(configured, REPORT_BYTES_PER_SERVER, *REPORT_CHUNK_BOUNDS, "report.chunk_servers")


def load_forecasts(lake: Lake, con: Any, chunk_servers: int) -> Forecasts | None:
    """The lake's forecasts for a report (None without the table).

    Args:
        lake: the lake.
        con: a DuckDB connection with the lake's views (``storage.sql.connect``).
        chunk_servers: servers whose rows ``Forecasts.chunks`` reads at a time (``chunk_size``).
    """
    if not lake.has_table("forecasts"):
        return None
    return Forecasts(lake, series_summary(con), chunk_servers)
