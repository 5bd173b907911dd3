"""Key lookups on long frames whose keys come in runs, without hashing every row.

The stage's long frames hold their keys in long runs: a prepared history is one run of steps per
series, a unit's predictions one run of ``horizon`` rows per series. A hash join (``merge``) on the
string keys factorises every row, which made the joins with the history and the backtest plan the
costliest part of the stage after the model fits. Here neighbouring rows are compared once
(vectorised) and each run is looked up in a dictionary of the small table; the answers are the
same rows a merge would pair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.schema import DS, SERIES_KEY


def _key_column(column: pd.Series) -> np.ndarray:
    """A key column as a numpy array whose items compare and hash like the values (datetimes as ns)."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return column.to_numpy(dtype="datetime64[ns]").view(np.int64)
    return column.to_numpy()


def run_starts(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, list[np.ndarray]]:
    """First row of every run of equal ``keys`` and the key columns (``_key_column``)."""
    columns = [_key_column(frame[k]) for k in keys]
    change = np.zeros(len(frame), dtype=bool)
    if len(frame):
        change[0] = True
        try:
            for column in columns:
                change[1:] |= column[1:] != column[:-1]
        except TypeError:  # a key without a truth value (pd.NA): every row a run of its own
            change[:] = True
    return np.flatnonzero(change), columns


def lookup(frame: pd.DataFrame, table: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Per row of ``frame``: the position of the row of ``table`` with equal ``keys``, -1 where none.

    Args:
        frame: a long frame whose equal keys come in runs (any order of runs).
        table: a small frame with unique ``keys``.
        keys: the key columns (strings, integers or datetimes; the same kinds in both frames).

    Returns:
        int64 positions (``iloc``) into ``table``, aligned with ``frame``.
    """
    starts, columns = run_starts(frame, keys)
    own = [_key_column(table[k]).tolist() for k in keys]
    where = {key: i for i, key in enumerate(zip(*own, strict=True))}
    found = np.array([where.get(tuple(c[s] for c in columns), -1) for s in starts.tolist()], dtype=np.int64)
    return np.repeat(found, np.diff(np.append(starts, len(frame))))


def series_spans(history: pd.DataFrame, step: np.timedelta64) -> pd.DataFrame | None:
    """Each series' rows of a prepared history (one contiguous run on a gap-free grid), or None if not so.

    Returns:
        ``server_id, metric, start, n, first`` (first ``ds`` as int64 ns), one row per series; None
        when a series is split over several runs or its ``ds`` are not consecutive grid steps.
    """
    keys = list(SERIES_KEY)
    starts, columns = run_starts(history, keys)
    n = np.diff(np.append(starts, len(history)))
    ds = _key_column(history[DS])
    first = ds[starts]
    offset = np.arange(len(history)) - np.repeat(starts, n)
    if not np.array_equal(ds, np.repeat(first, n) + offset * np.int64(step.astype("timedelta64[ns]").astype(np.int64))):
        return None
    spans = pd.DataFrame({k: c[starts] for k, c in zip(keys, columns, strict=True)})
    if spans.duplicated(keys).any():
        return None
    return spans.assign(start=starts, n=n, first=first)


def sorted_groups(frame: pd.DataFrame, keys: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Group number of every row in sorted key order (as ``groupby(keys, sort=True)`` numbers them).

    Returns:
        ``(code per row, first row of each group)``; None when a key is missing (NaN, None), its
        values cannot be ordered or it is categorical (grouped in category order), where the caller
        groups the usual way.
    """
    if any(isinstance(frame[k].dtype, pd.CategoricalDtype) for k in keys):
        return None
    starts, columns = run_starts(frame, keys)
    # A missing key (NaN, None, NaT) starts a run or continues a run of missing keys.
    if any(frame[k].iloc[starts].isna().any() for k in keys):
        return None
    seen: dict[tuple[object, ...], int] = {}
    run_keys = [tuple(c[s] for c in columns) for s in starts.tolist()]
    for key, start in zip(run_keys, starts.tolist(), strict=True):
        seen.setdefault(key, start)
    try:
        ordered = sorted(seen)
    except TypeError:
        return None
    rank = {key: i for i, key in enumerate(ordered)}
    codes = np.repeat(np.array([rank[key] for key in run_keys], dtype=np.int64),
                      np.diff(np.append(starts, len(frame))))
    return codes, np.array([seen[key] for key in ordered], dtype=np.int64)

