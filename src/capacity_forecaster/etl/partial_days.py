"""Days split across ingest runs: the samples of incomplete days, kept until a later run completes them.

An export cut at any time of day (a cron job exporting "everything since the last run") delivers
the first and last day of each series in part, and the next export delivers the rest. An ingest
can only roll up the samples it has, so each run stages the samples of its days that are not
complete (coverage < 1) and that another run can still extend: the first and last day of each
series in the run, and days already staged. The lake keeps them in ``raw/partial_days``; the next
run that delivers samples of such a (server, metric, day) pools the staged samples with its own
before the roll-up, so the daily row is the one a single ingest of all the samples gives. A day
leaves the staging once complete. Days inside a run's time range are not staged (an export covers
a time range; a later export does not extend days in its middle), which bounds the staging to
about two days per series.

A staged sample and a sample of the new run at the same (server, metric, time) are one sample: the
new run's is used (a re-ingest of a corrected export corrects its partial days too) and the repeat
is counted, so re-ingesting a file never counts its samples twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster.etl.days import DAY_NS, day_starts, local_days
from capacity_forecaster.etl.rollup import Samples
from capacity_forecaster.etl.runs import split_runs
from capacity_forecaster.schema import METRICS, PARTIAL_DAY_COLUMNS, require_columns

# A (series, day) key in one int64: days since 1970 stay within +-2**19 over the nanosecond range.
_DAY_BITS = 20
_DAY_OFFSET = 1 << 19


def _keys(series: np.ndarray, day: np.ndarray) -> np.ndarray:
    return (series.astype(np.int64) << _DAY_BITS) | (day.astype(np.int64) + _DAY_OFFSET)


def _series(server: np.ndarray, metric: np.ndarray) -> np.ndarray:
    return server.astype(np.int64) * len(METRICS) + metric


@dataclass(frozen=True)
class Carryover:
    """What one ingest took from the staged partial days and left there.

    Attributes:
        days_combined: daily rows that pooled samples staged by earlier runs.
        days_completed: of those, the days now complete (coverage >= 1); they left the staging.
        samples_combined: staged samples pooled into this run's days.
        repeats: staged samples at a (server, metric, time) this run delivered again (the run's
            sample is used; the staged one is not counted twice).
        conflicts: of the repeats, those whose value (or run length) differs.
        days_staged: incomplete days staged after this run, over all series.
        days_expired: staged days dropped unpooled because the run delivered days of their series
            more than the window later (their raw rows stay as they are).
        example: one conflicting repeat (server, metric, time, staged -> new value; the smallest server,
            metric and time of them), or "".
    """

    days_combined: int = 0
    days_completed: int = 0
    samples_combined: int = 0
    repeats: int = 0
    conflicts: int = 0
    days_staged: int = 0
    days_expired: int = 0
    example: str = ""


@dataclass(frozen=True)
class Pooled:
    """A run's samples with the staged samples of the days it delivers.

    Attributes:
        samples: the run's samples first (``row`` >= 0), then the staged ones (``row`` -1).
        day: the local day of each entry.
        new: how many entries are the run's.
        staged_keys: (series, day) keys that had staged samples.
        remaining: staged rows of days the run does not deliver.
        remaining_keys: their (series, day) keys in this run's codes (-1: a server the run lacks).
        repeats, conflicts, example: see Carryover.
    """

    samples: Samples
    day: np.ndarray
    new: int
    staged_keys: np.ndarray
    remaining: pd.DataFrame
    remaining_keys: np.ndarray
    repeats: int = 0
    conflicts: int = 0
    example: str = ""


def empty_partial_days() -> pd.DataFrame:
    """The staging table without rows, with its column types."""
    return pd.DataFrame({
        "server_id": pd.Series(dtype=object), "metric": pd.Series(dtype=object),
        "ds": pd.Series(dtype="datetime64[ns]"), "ts": pd.Series(dtype="datetime64[ns]"),
        "value": pd.Series(dtype=np.float64), "weight": pd.Series(dtype=np.float64),
    })


def day_pieces(samples: Samples, interval_seconds: float, timezone: str) -> Samples:
    """Run-length samples cut at local midnight: one entry per (run, day), none crossing a day.

    A piece starts at the run's first sample in its day and stands for the run's samples in that
    day, so the weighted roll-up of the pieces is the roll-up of the runs, and a day's pieces can be
    staged without the other days of a run that crosses midnight.

    Args:
        samples: weighted samples (``weight`` set).
        interval_seconds: the spacing of a run's samples.
        timezone: zone of the calendar days.

    Returns:
        The pieces, in run order; ``row`` names the run's source row.
    """
    assert samples.weight is not None
    run, day, piece = split_runs(samples.ts, samples.weight, interval_seconds, timezone)
    if len(run) == len(samples):
        return samples  # no run crosses midnight
    keep = piece > 0
    run, day, piece = run[keep], day[keep], piece[keep]
    interval = interval_seconds * 1e9
    ts = samples.ts[run]
    first = np.maximum(np.ceil((day_starts(day, timezone) - ts) / interval), 0.0)
    return Samples(samples.server[run], samples.metric[run], ts + (first * interval).astype(np.int64),
                   samples.value[run], samples.row[run], piece)


def _isin(values: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """``np.isin`` by hashing: fast for many values and few wanted ones (no sort of the values)."""
    return pd.Series(values).isin(wanted).to_numpy()


def _codes(names: Sequence[str], values: pd.Series) -> np.ndarray:
    """Position of each value in ``names`` (-1 where absent)."""
    return pd.Index(names).get_indexer(pd.Index(values.astype(str)))


def _staged_arrays(staged: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Server and metric codes of staged rows in this run's code space (-1: not in this run)."""
    return _codes(names, staged["server_id"]), _codes(METRICS, staged["metric"])


def pool_staged(new: Samples, staged: pd.DataFrame | None, names: list[str], timezone: str) -> Pooled:
    """Add to a run's samples the staged samples of the (server, metric, day)s the run delivers.

    Args:
        new: the run's de-duplicated samples (weighted ones cut into ``day_pieces``).
        staged: the staging table (schema.PARTIAL_DAY_COLUMNS), or None.
        names: the run's server names (codes index them).
        timezone: zone of the calendar days.

    Returns:
        The Pooled samples.
    """
    day = local_days(new.ts, timezone)
    nothing = np.empty(0, dtype=np.int64)
    if staged is None or staged.empty:
        return Pooled(new, day, len(new), nothing, empty_partial_days(), nothing)
    require_columns(staged, PARTIAL_DAY_COLUMNS, "table 'partial_days'")
    server, metric = _staged_arrays(staged, names)
    ts = staged["ts"].to_numpy(dtype="datetime64[ns]").view(np.int64) // 1000 * 1000
    st_day = local_days(ts, timezone)
    known = (server >= 0) & (metric >= 0)
    st_key = np.where(known, _keys(np.where(known, _series(server, metric), 0), st_day), -1)
    new_key = _keys(_series(new.server, new.metric), day)
    chosen = known & _isin(st_key, pd.unique(new_key))
    remaining = staged[~chosen].reset_index(drop=True)
    if not chosen.any():
        return Pooled(new, day, len(new), nothing, remaining, st_key)
    staged_keys = np.unique(st_key[chosen])
    index = np.flatnonzero(chosen)
    value = staged["value"].to_numpy(dtype=np.float64)
    weight = staged["weight"].to_numpy(dtype=np.float64)
    # A staged sample the run delivered again is one sample: the run's is used. The lake stores times
    # to the microsecond, so that is the precision two times are compared at.
    mine = _isin(new_key, staged_keys)
    ours = pd.DataFrame({"s": _series(new.server[mine], new.metric[mine]), "t": new.ts[mine] // 1000 * 1000,
                         "v": new.value[mine], "w": 1.0 if new.weight is None else new.weight[mine]})
    theirs = pd.DataFrame({"s": _series(server[index], metric[index]), "t": ts[index], "v": value[index],
                           "w": weight[index], "i": index})
    repeated = theirs.merge(ours.drop_duplicates(["s", "t"]), on=["s", "t"], suffixes=("", "_new"))
    differs = ((repeated["v"] != repeated["v_new"]) | (repeated["w"] != repeated["w_new"])).to_numpy()
    example = ""
    if differs.any():
        # The conflict of the smallest server, metric and time: the same whichever order the staging is read
        # in (an ingest spilled to disk rolls up its servers group by group).
        candidates = np.flatnonzero(differs)
        rows = staged.iloc[repeated["i"].to_numpy()[candidates]]
        at = int(candidates[np.lexsort((repeated["t"].to_numpy()[candidates], rows["metric"].astype(str).to_numpy(),
                                        rows["server_id"].astype(str).to_numpy()))[0]])
        row = staged.iloc[int(repeated["i"].iloc[at])]
        when = pd.Timestamp(int(repeated["t"].iloc[at])).strftime("%Y-%m-%dT%H:%M:%SZ")
        example = (f"{row['server_id']} {row['metric']} {when}: {float(repeated['v'].iloc[at])!r} staged, "
                   f"{float(repeated['v_new'].iloc[at])!r} now")
    single = chosen.copy()
    single[repeated["i"].to_numpy(dtype=np.int64)] = False
    index = np.flatnonzero(single)
    unit = new.weight is None and bool((weight[index] == 1.0).all())
    pooled = Samples(
        np.concatenate([new.server, server[index].astype(np.int32)]),
        np.concatenate([new.metric, metric[index].astype(np.int8)]),
        np.concatenate([new.ts, ts[index]]),
        np.concatenate([new.value, value[index]]),
        np.concatenate([new.row, np.full(len(index), -1, dtype=np.int64)]),
        None if unit else np.concatenate([np.ones(len(new)) if new.weight is None else new.weight, weight[index]]),
    )
    return Pooled(pooled, np.concatenate([day, st_day[index]]), len(new), staged_keys, remaining,
                  st_key[~chosen], len(repeated), int(differs.sum()), example)


def stage_partial_days(pooled: Pooled, daily: pd.DataFrame, names: list[str], window: int,
                       interval_seconds: float | None) -> tuple[pd.DataFrame, pd.DataFrame, Carryover]:
    """The staging table after a run: the staged rows the run left alone plus its incomplete days to keep.

    A run stages the incomplete days (coverage < 1) that are the first or last day of their series
    in the run, or that pooled staged samples. Without ``interval_seconds`` a series with a single
    sample has no measured spacing (its coverage says nothing), so its day counts as incomplete.
    A staged day more than ``window`` days before the last day the run delivers for its series is
    dropped: a later run is not expected to extend it any more (this bounds the staging to about
    ``window`` + 1 days per series). The run's own first and last days are staged whatever the window
    (exports ingested newest first: the older export completes the newer one's first day).

    Args:
        pooled: the run's samples with the staged ones (``pool_staged``).
        daily: their roll-up (``rollup_daily``).
        names: the run's server names.
        window: days a partial day stays staged behind its series' last delivered day.
        interval_seconds: the mapping's sample spacing, or None (measured).

    Returns:
        (the new staging table with schema.PARTIAL_DAY_COLUMNS; the daily rows that pooled staged
        samples as server_id, ds, metric; the run's Carryover).
    """
    samples, day = pooled.samples, pooled.day
    # The daily rows are the (series, day)s the run delivers: staged samples join only those.
    row_series = _series(_codes(names, daily["server_id"]), _codes(METRICS, daily["metric"]))
    row_keys = _keys(row_series, daily["ds"].to_numpy(dtype="datetime64[ns]").view(np.int64) // DAY_NS)
    rows = pd.DataFrame({"s": row_series, "k": row_keys, "n": daily["samples"].to_numpy()}).groupby("s")
    # The first and last day of each series in this run (the days another run may extend).
    first, last = rows["k"].min(), rows["k"].max()
    incomplete = (daily["coverage"] < 1.0).to_numpy()
    if interval_seconds is None:
        incomplete |= rows["n"].sum().reindex(row_series).to_numpy() < 2
    combined = np.isin(row_keys, pooled.staged_keys)
    # Staged days of a series from this key on are within the window of its last day.
    oldest = last - window
    # The run's own first and last days are always staged (an older export ingested later completes the
    # first day of an export longer than the window); the window only ages days pooled from earlier runs.
    ends = np.isin(row_keys, np.union1d(first, last))
    stage = incomplete & (ends | (combined & (row_keys >= oldest.reindex(row_series).to_numpy())))
    take = _isin(_keys(_series(samples.server, samples.metric), day), row_keys[stage])
    fresh = pd.DataFrame({
        "server_id": np.asarray(names, dtype=object)[samples.server[take]],
        "metric": np.asarray(METRICS, dtype=object)[samples.metric[take]],
        "ds": (day[take] * DAY_NS).view("datetime64[ns]"),
        "ts": samples.ts[take].view("datetime64[ns]"),
        "value": samples.value[take],
        "weight": np.ones(int(take.sum())) if samples.weight is None else samples.weight[take],
    })
    left = pooled.remaining_keys
    cutoff = oldest.reindex(np.where(left >= 0, left >> _DAY_BITS, -1)).to_numpy()
    expired = (left >= 0) & (left < cutoff)  # NaN cutoff (a series the run lacks) never expires
    kept = pooled.remaining[~expired]
    parts = [p for p in (kept, fresh) if len(p)]
    table = (pd.concat(parts, ignore_index=True) if parts else empty_partial_days())[list(PARTIAL_DAY_COLUMNS)]
    carry = Carryover(
        days_combined=int(combined.sum()), days_completed=int((combined & ~incomplete).sum()),
        samples_combined=len(samples) - pooled.new, repeats=pooled.repeats, conflicts=pooled.conflicts,
        days_staged=(len(pd.unique(left[~expired & (left >= 0)])) + int(stage.sum())
                     + len(pooled.remaining.loc[left < 0, ["server_id", "metric", "ds"]].drop_duplicates())),
        days_expired=len(pd.unique(left[expired])), example=pooled.example,
    )
    return table, daily.loc[combined, ["server_id", "ds", "metric"]].reset_index(drop=True), carry
