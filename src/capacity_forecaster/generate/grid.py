"""The (servers x metrics x days) value grid of the generator and its conversion to long frames."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.schema import DS, METRIC, METRICS, SERVER_ID, VALUE

# Metrics in the order of the grid's axis 1, which is also the sort order of the long frames.
METRIC_ORDER = tuple(sorted(METRICS))
CPU, DISK, MEMORY, NETWORK = (METRIC_ORDER.index(m) for m in ("cpu", "disk", "memory", "network"))
_METRIC_NAMES = np.array(METRIC_ORDER, dtype=object)


def server_ids(n_servers: int) -> np.ndarray:
    """Server ids ``srv-0001``, ``srv-0002``, ... (zero-padded to at least four digits)."""
    width = max(4, len(str(n_servers)))
    return np.array([f"srv-{i:0{width}d}" for i in range(1, n_servers + 1)], dtype=object)


def long_frame(
    ids: np.ndarray,
    dates: np.ndarray,
    values: np.ndarray,
    counts: np.ndarray | None = None,
    *,
    categorical: bool = False,
) -> pd.DataFrame:
    """Flatten a (servers, metrics, days) grid into a long frame sorted by server_id, metric, ds.

    Args:
        ids: server ids, one per grid row.
        dates: the days of axis 2 (``datetime64[D]``).
        values: the grid, (servers, len(METRIC_ORDER), days).
        counts: optional rows per cell, flattened in grid order: 0 = row absent, 2 = row repeated
            (the copies are adjacent). None means one row per cell.
        categorical: return server_id and metric as pandas categoricals (built from codes, so much
            cheaper to hand to Arrow when writing millions of rows).

    Returns:
        Frame with columns server_id (str), ds (datetime64[ns]), metric (str), value (float64).
    """
    n_servers, n_metrics, n_days = values.shape
    days = dates.astype("datetime64[ns]")
    server_codes = np.arange(n_servers, dtype=np.int32)
    series_codes = np.tile(np.arange(n_metrics, dtype=np.int8), n_servers)
    flat = values.reshape(-1)
    if counts is None:
        server_code = np.repeat(server_codes, n_metrics * n_days)
        metric_code = np.repeat(series_codes, n_days)
        ds = np.tile(days, n_servers * n_metrics)
        value = flat.astype(np.float64)
    else:
        # Repeating by counts avoids integer division of a per-row cell index (several times faster).
        server_code = np.repeat(server_codes, counts.reshape(n_servers, -1).sum(axis=1))
        metric_code = np.repeat(series_codes, counts.reshape(n_servers * n_metrics, n_days).sum(axis=1))
        ds = np.repeat(np.tile(days, n_servers * n_metrics), counts)
        value = np.repeat(flat.astype(np.float64, copy=False), counts)
    server_id: pd.Categorical | np.ndarray
    metric: pd.Categorical | np.ndarray
    if categorical:
        server_id = pd.Categorical.from_codes(server_code, categories=pd.Index(ids))
        metric = pd.Categorical.from_codes(metric_code, categories=pd.Index(_METRIC_NAMES))
    else:
        server_id, metric = ids[server_code], _METRIC_NAMES[metric_code]
    # copy=False keeps pandas from consolidating the two string columns into one block (a full copy).
    return pd.DataFrame({SERVER_ID: server_id, DS: ds, METRIC: metric, VALUE: value}, copy=False)


def cell_frame(
    ids: np.ndarray,
    dates: np.ndarray,
    cells: tuple[np.ndarray, np.ndarray, np.ndarray],
    label: str,
    codes: np.ndarray,
    names: tuple[str, ...],
) -> pd.DataFrame:
    """A frame of individual grid cells with a label, sorted by server_id, metric, ds, label code.

    Args:
        ids: server ids, one per grid row.
        dates: the days of the grid (``datetime64[D]``).
        cells: (server, metric, day) index arrays into the grid.
        label: name of the label column.
        codes: label per cell, as an index into ``names``.
        names: label names.

    Returns:
        Frame with columns server_id, ds (datetime64[ns]), metric and ``label``.
    """
    server, metric, day = cells
    order = np.lexsort((codes, day, metric, server))
    server, metric, day, codes = server[order], metric[order], day[order], codes[order]
    return pd.DataFrame(
        {
            SERVER_ID: ids[server],
            DS: dates.astype("datetime64[ns]")[day],
            METRIC: _METRIC_NAMES[metric],
            label: np.array(names, dtype=object)[codes],
        }
    )
