"""Forecast vs actual over time: earlier forecast runs' forecasts scored against the actuals that arrived since."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from capacity_forecaster.errors import StorageError
from capacity_forecaster.report.forecast_rows import chunk_size
from capacity_forecaster.stages.chunks import server_ids
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import list_runs

log = logging.getLogger(__name__)

SCORED = "scored"
NO_ACTUALS = "no actuals yet"
UNREADABLE = "no longer readable"
# Days ahead of the forecast origin (day 1 = the first forecast day), as (first, last); None: open-ended.
HORIZON_BUCKETS: tuple[tuple[int, int | None], ...] = ((1, 7), (8, 30), (31, 90), (91, None))
RUN_COLUMNS = ("runs_ago", "run_id", "made", "origin", "status", "horizon_days", "days", "points", "series",
               "mae", "bias", "coverage", "note")
BUCKET_COLUMNS = ("run_id", "runs_ago", "horizon", "points", "mae", "bias", "coverage")
_KEY = ["run_id", "server_id", "metric"]


def bucket_label(first: int, last: int | None) -> str:
    """``days 1-7``, ``days 91+``."""
    return f"days {first}+" if last is None else f"days {first}-{last}"


@dataclass(frozen=True)
class AccuracyHistory:
    """How the last forecast runs did against what actually happened.

    Attributes:
        runs: one row per forecast run, the current one first (``RUN_COLUMNS``): runs_ago (0 = the
            run whose forecasts the lake holds now), run_id, made (when the run finished, naive UTC),
            origin (last observed day before its forecasts), status (``scored``, ``no actuals yet`` or
            ``no longer readable``), horizon_days (furthest day ahead scored), days (distinct days
            scored), points (forecast days with an actual), series, mae, bias (mean forecast - actual,
            percentage points: > 0 over-forecast), coverage (share of actuals inside the forecast
            interval; NaN without interval bounds), note (why a run is not scored).
        buckets: run_id, runs_ago, horizon (``days 1-7`` ...), points, mae, bias, coverage for every
            scored run and horizon bucket that has points.
        message: one line to show when there is nothing to compare (a single run, or no run whose
            forecast days have been observed since); None when earlier runs were scored.
        last_actual: the latest observed day in the metrics (None without metrics).
    """

    runs: pd.DataFrame
    buckets: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(BUCKET_COLUMNS)))
    message: str | None = None
    last_actual: dt.date | None = None

    @property
    def scored(self) -> pd.DataFrame:
        """The rows of ``runs`` that have actuals."""
        return self.runs[self.runs["status"] == SCORED]


def forecast_runs(manifests: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The last ``limit`` succeeded forecast runs that wrote ``forecasts``, newest first.

    Args:
        manifests: run manifests (``storage.manifest.list_runs``), oldest first.
        limit: how many runs at most.
    """
    wrote = [m for m in manifests if m.get("stage") == "forecast" and m.get("status", "succeeded") == "succeeded"
             and str(((m.get("tables") or {}).get("forecasts") or {}).get("version", "")).isdigit()]
    return list(reversed(wrote))[:limit]


def score_runs(forecasts: pd.DataFrame, actuals: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score forecasts of several runs against actuals observed after each series' forecast origin.

    A series' origin is the day before its first forecast day: a forecast day is scored only when
    the actuals hold it, i.e. it was observed after the forecast was made.

    Args:
        forecasts: run_id, server_id, metric, ds, yhat, and yhat_lower / yhat_upper where they exist.
        actuals: server_id, metric, ds, value (observed days only: no imputed values, no NaN).

    Returns:
        Per run: run_id, origin, horizon_days, days, points, series, mae, bias, coverage (one row
        per run in ``forecasts``, zero points where nothing overlaps); and per run and horizon
        bucket: run_id, horizon, points, mae, bias, coverage (buckets with points only).
    """
    return _finish(_Totals.of(forecasts, actuals))


# Sums whose ratios are the scores: mae = abs_error / points, bias = error / points, coverage = inside / bounded.
_SUMS = ["points", "abs_error", "error", "inside", "bounded"]


@dataclass(frozen=True)
class _Totals:
    """The sums behind the scores of some servers; the totals of disjoint sets of servers add up (``add``).

    Attributes:
        origins: run_id -> latest origin of its series.
        runs: per run_id: horizon_days (max), series, and ``_SUMS``.
        days: run_id, ds: the distinct days scored.
        buckets: per run_id and horizon bucket: ``_SUMS``.
    """

    origins: pd.Series
    runs: pd.DataFrame
    days: pd.DataFrame
    buckets: pd.DataFrame

    @classmethod
    def of(cls, forecasts: pd.DataFrame, actuals: pd.DataFrame) -> _Totals:
        """The totals of ``forecasts`` against ``actuals`` (see ``score_runs``)."""
        bounds = [c for c in ("yhat_lower", "yhat_upper") if c in forecasts.columns]
        frame = forecasts[[*_KEY, "ds", "yhat", *bounds]].assign(ds=pd.to_datetime(forecasts["ds"]).dt.normalize())
        first = frame.groupby(_KEY, sort=False)["ds"].transform("min")
        frame["horizon"] = (frame["ds"] - first).dt.days + 1
        frame["origin"] = first - pd.Timedelta(days=1)
        origins = frame.groupby("run_id", sort=False)["origin"].max()
        observed = actuals[["server_id", "metric", "ds", "value"]].assign(
            ds=pd.to_datetime(actuals["ds"]).dt.normalize())
        merged = frame.merge(observed, on=["server_id", "metric", "ds"], how="inner")
        merged = merged[(merged["ds"] > merged["origin"]) & merged["yhat"].notna()]
        error = merged["yhat"].to_numpy(float) - merged["value"].to_numpy(float)
        if len(bounds) == 2:
            lower, upper = merged["yhat_lower"].to_numpy(float), merged["yhat_upper"].to_numpy(float)
            value = merged["value"].to_numpy(float)
            inside = np.where(np.isnan(lower) | np.isnan(upper), np.nan, (value >= lower) & (value <= upper))
        else:
            inside = np.full(len(merged), np.nan)
        merged = merged.assign(points=1, error=error, abs_error=np.abs(error), inside=inside,
                               bounded=(~np.isnan(inside)).astype(int))
        merged["bucket"] = pd.cut(merged["horizon"], bins=[0, *(b[1] or np.inf for b in HORIZON_BUCKETS)],
                                  labels=[bucket_label(*b) for b in HORIZON_BUCKETS])
        runs = merged.groupby("run_id")[_SUMS].sum()
        runs["horizon_days"] = merged.groupby("run_id")["horizon"].max()
        runs["series"] = merged.drop_duplicates(_KEY).groupby("run_id").size()
        buckets = merged.groupby(["run_id", "bucket"], observed=True)[_SUMS].sum()
        return cls(origins, runs, merged[["run_id", "ds"]].drop_duplicates(), buckets)

    def add(self, other: _Totals) -> _Totals:
        """The totals of both sets of servers."""
        runs = pd.concat([self.runs, other.runs])
        summed = runs.groupby(level=0)[[*_SUMS, "series"]].sum()
        summed["horizon_days"] = runs.groupby(level=0)["horizon_days"].max()
        buckets = pd.concat([self.buckets, other.buckets]).groupby(level=[0, 1], observed=True).sum()
        origins = pd.concat([self.origins, other.origins])
        return _Totals(origins.groupby(level=0, sort=False).max(), summed,
                       pd.concat([self.days, other.days]).drop_duplicates(), buckets)


def _ratios(sums: pd.DataFrame) -> pd.DataFrame:
    """mae, bias and coverage from ``_SUMS`` (NaN where nothing was scored)."""
    points, bounded = sums["points"].where(sums["points"] > 0), sums["bounded"].where(sums["bounded"] > 0)
    return sums.assign(mae=sums["abs_error"] / points, bias=sums["error"] / points, coverage=sums["inside"] / bounded)


def _finish(totals: _Totals) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-run and per-bucket scores of ``score_runs`` from the totals."""
    per_run = _ratios(totals.runs)
    per_run["days"] = totals.days.groupby("run_id").size()
    per_run = per_run.reindex(totals.origins.index)
    counts = ["horizon_days", "days", "points", "series"]
    per_run[counts] = per_run[counts].fillna(0).astype(int)
    runs = per_run.assign(origin=totals.origins).rename_axis("run_id").reset_index()
    buckets = _ratios(totals.buckets).reset_index().rename(columns={"bucket": "horizon"}).astype({"horizon": str})
    return (runs[["run_id", "origin", "horizon_days", "days", "points", "series", "mae", "bias", "coverage"]],
            buckets[["run_id", "horizon", "points", "mae", "bias", "coverage"]])


_VACUUMED = "its forecasts were vacuumed (a vacuum keeps report.accuracy_runs + 1 forecast versions)"


def _first_day(lake: Lake, run: dict[str, Any]) -> pd.Timestamp | None | str:
    """The first forecast day ``run`` wrote (None: no rows), scanned batch by batch, or why it cannot be read."""
    try:
        dataset = lake.dataset("forecasts", as_of=str(run["run_id"]))
        first = None
        for batch in dataset.to_batches(columns=["ds"]) if dataset is not None else ():
            low = pc.min(batch.column(0)).as_py()
            first = low if first is None or (low is not None and low < first) else first
    except (StorageError, OSError, pa.ArrowInvalid) as err:
        # Vacuumed: older than lake.retention_hours and beyond the report.accuracy_runs + 1 kept versions.
        log.debug("forecast run %s: %s", run["run_id"], err)
        return _VACUUMED
    return None if first is None else pd.Timestamp(first)


def _read_forecasts(lake: Lake, run_id: str, servers: pads.Expression | None) -> pd.DataFrame:
    """The forecasts of some servers as run ``run_id`` wrote them."""
    wanted = ["server_id", "metric", "ds", "yhat", "yhat_lower", "yhat_upper"]
    # Every column: a version written before the interval columns existed still reads (and scores).
    frame = lake.read_table("forecasts", filter=servers, as_of=run_id)
    return frame[[c for c in wanted if c in frame.columns]].assign(run_id=run_id)


def _read_actuals(lake: Lake, since: pd.Timestamp, servers: pads.Expression | None = None) -> pd.DataFrame:
    """Observed (not imputed, not missing) daily values of some servers (default all) from ``since`` on, from the
    current metrics."""
    info = lake.table_info("metrics")
    columns = ["server_id", "metric", "ds", "value", "is_imputed"]
    if info is None:
        return pd.DataFrame(columns=columns[:4])
    first = pa.scalar(since.date(), pa.date32()).cast(info.schema.field("ds").type)
    wanted = (pc.field("ds") >= first) & pc.field("value").is_valid()
    frame = lake.read_table("metrics", columns=[c for c in columns if c in info.schema.names],
                            filter=wanted if servers is None else wanted & servers)
    if "is_imputed" in frame.columns:
        frame = frame[~frame["is_imputed"].fillna(False).astype(bool)]
    return frame[columns[:4]]


def server_ranges(ids: list[Any], size: int) -> list[pads.Expression | None]:
    """Filters splitting a table's rows by server id range, ``size`` of ``ids`` (sorted) per range: every row
    falls in exactly one, whatever ids another version of the table holds (the first also takes rows without
    an id). One range (None: no filter) when ``ids`` fit in one."""
    if len(ids) <= size:
        return [None]
    server = pc.field("server_id")
    cuts = ids[size::size]
    out = [(server < cuts[0]) | ~server.is_valid()]
    out += [(server >= low) & (server < high) for low, high in zip(cuts, cuts[1:], strict=False)]
    return [*out, server >= cuts[-1]]


def _made(run: dict[str, Any]) -> pd.Timestamp:
    stamp = pd.Timestamp(str(run.get("finished") or run.get("started")))
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def _score(lake: Lake, run_ids: list[str], since: pd.Timestamp, chunk_servers: int | None) -> tuple[_Totals, Any]:
    """The totals of every run in ``run_ids`` over chunks of servers, and the latest actual day (None: none)."""
    ids = server_ids(lake, "forecasts") or []
    parts, lasts = [], []
    for servers in server_ranges(ids, chunk_size(chunk_servers)):
        forecasts = pd.concat([_read_forecasts(lake, run_id, servers) for run_id in run_ids], ignore_index=True)
        actuals = _read_actuals(lake, since, servers)
        lasts += [actuals["ds"].max()] if len(actuals) else []
        parts.append(_Totals.of(forecasts.astype({"ds": "datetime64[ns]"}), actuals))
    return reduce(_Totals.add, parts), max(lasts, default=None)


def accuracy_history(lake: Lake, runs: int = 5, manifests: list[dict[str, Any]] | None = None,
                     chunk_servers: int | None = None) -> AccuracyHistory:
    """Score the current forecast run and up to ``runs`` earlier ones against the actuals now in ``metrics``.

    Each run's forecasts are read as that run wrote them (time travel by run id); the actuals are
    the current metrics' observed days after each series' forecast origin (imputed days are not
    actuals). A run re-made on the same data has no such days: ``no actuals yet``. Both are read a
    chunk of servers at a time, so memory follows the chunk, not the fleet.

    Args:
        lake: the lake.
        runs: earlier forecast runs to compare (``report.accuracy_runs``).
        manifests: the run manifests if already read (``list_runs(lake)``).
        chunk_servers: servers read at a time (``report.chunk_servers``; None: from the available memory).

    Returns:
        The AccuracyHistory (``runs``: runs_ago, run_id, made, origin, status, horizon_days, days,
        points, series, mae, bias, coverage, note; ``buckets`` per horizon bucket).

    Raises:
        StorageError: the metrics cannot be read.
    """
    chosen = forecast_runs(list_runs(lake) if manifests is None else manifests, runs + 1)
    if not chosen:
        return AccuracyHistory(runs=pd.DataFrame(columns=list(RUN_COLUMNS)),
                               message="No forecast run is recorded in the lake yet: run capfc forecast.")
    index = pd.DataFrame({"runs_ago": range(len(chosen)), "run_id": [str(r["run_id"]) for r in chosen],
                          "made": [_made(r) for r in chosen]})
    first = {str(r["run_id"]): _first_day(lake, r) for r in chosen}
    notes = pd.Series({run_id: f for run_id, f in first.items() if isinstance(f, str)}, dtype=object)
    days = {run_id: f for run_id, f in first.items() if isinstance(f, pd.Timestamp)}
    if days:
        # From the earliest origin on: its day tells where the metrics end when no forecast day was observed yet.
        totals, last_day = _score(lake, list(days), min(days.values()) - pd.Timedelta(days=1), chunk_servers)
        scores, buckets = _finish(totals)
    else:
        last_day = None
        scores, buckets = score_runs(pd.DataFrame(columns=[*_KEY, "ds", "yhat"]).astype({"ds": "datetime64[ns]"}),
                                     pd.DataFrame(columns=["server_id", "metric", "ds", "value"]))
    table = index.merge(scores, on="run_id", how="left")
    for column in ("horizon_days", "days", "points", "series"):
        table[column] = table[column].fillna(0).astype(int)
    last = pd.Timestamp(last_day).date() if last_day is not None else None
    table["status"] = np.where(table["run_id"].isin(notes.index), UNREADABLE,
                               np.where(table["points"] > 0, SCORED, NO_ACTUALS))
    after = pd.to_datetime(table["origin"]).dt.strftime("%Y-%m-%d").fillna("-")
    waiting = "no day after its origin " + after + " has been observed yet"
    table["note"] = np.where(table["status"] == UNREADABLE, table["run_id"].map(notes),
                             np.where(table["status"] == NO_ACTUALS, waiting, ""))
    order = {bucket_label(*b): i for i, b in enumerate(HORIZON_BUCKETS)}
    buckets = (buckets.merge(index[["run_id", "runs_ago"]], on="run_id")
               .sort_values(["runs_ago", "horizon"], key=lambda c: c.map(order) if c.name == "horizon" else c))
    result = table[list(RUN_COLUMNS)]
    scored = int((result["status"] == SCORED).sum())
    message = None
    if len(result) == 1:
        message = (f"Only one forecast run so far ({result['run_id'].iloc[0]}): there is no earlier forecast to "
                   "compare with yet.")
    elif scored == 0:
        observed = f" (metrics end {last.isoformat()})" if last is not None else ""
        gone = int((result["status"] == UNREADABLE).sum())
        message = (f"No actuals yet: none of the last {len(result)} forecast runs has a forecast day that has been "
                   f"observed since it was made{observed}." if not gone else
                   f"Nothing to compare yet: {gone} of the last {len(result)} forecast runs "
                   f"{'is' if gone == 1 else 'are'} no longer readable (vacuumed: the forecast stage's own vacuum "
                   f"keeps report.accuracy_runs + 1 versions, a manual capfc lake vacuum may keep fewer) and the "
                   f"others have no actuals yet{observed}.")
    log.debug("accuracy history: %d forecast runs, %d scored", len(result), scored)
    return AccuracyHistory(runs=result.reset_index(drop=True), buckets=buckets[list(BUCKET_COLUMNS)].reset_index(
        drop=True), message=message, last_actual=last)


# What a reader sees for the columns of ``AccuracyHistory.runs`` and ``.buckets`` (HTML, PDF, workbook).
RUN_HEADERS = {
    "runs_ago": "Runs ago", "run_id": "Forecast run", "made": "Made (UTC)", "origin": "Last observed day",
    "status": "Status", "horizon_days": "Days ahead scored", "points": "Points", "series": "Series",
    "mae": "MAE (pts)", "bias": "Bias (pts)", "coverage": "Actuals in interval", "note": "Note",
}
BUCKET_HEADERS = {
    "runs_ago": "Runs ago", "run_id": "Forecast run", "horizon": "Days ahead", "points": "Points",
    "mae": "MAE (pts)", "bias": "Bias (pts)", "coverage": "Actuals in interval",
}


def explanation(interval: float) -> str:
    """One paragraph saying what the accuracy-history numbers mean (``interval``: the nominal coverage)."""
    return ("Each forecast run's forecasts, as that run wrote them, against the daily P95 observed since it was "
            "made (imputed days are not actuals). MAE and bias are in percentage points; bias is forecast minus "
            "actual, so above 0 means the forecast was too high. Actuals in interval: the share inside the "
            f"forecast's interval (which aims at {interval:.0%}).")


def display_rows(frame: pd.DataFrame, headers: dict[str, str]) -> list[list[str]]:
    """The rows of ``runs`` or ``buckets`` as text in the order of ``headers``: numbers rounded, ``-`` for none."""
    shown = pd.DataFrame(index=frame.index)
    for column in headers:
        values = frame[column]
        if column in ("mae", "bias", "coverage"):
            fmt = {"mae": "{:.2f}", "bias": "{:+.2f}", "coverage": "{:.0%}"}[column]
            text = values.astype(float).map(fmt.format, na_action="ignore")
        elif column == "made":
            text = pd.to_datetime(values).dt.strftime("%Y-%m-%d %H:%M")
        elif column == "origin":
            text = pd.to_datetime(values).dt.strftime("%Y-%m-%d")
        else:
            text = values.astype(str)
        shown[column] = text.fillna("-").replace("", "-")
    return [list(row) for row in shown.itertuples(index=False, name=None)]
