"""Fill short gaps in (series x days) grids: seasonal interpolation or scikit-learn's KNNImputer.

Seasonal: the expected value of the day (local level x day-type factor + month-end effect, from
``outliers.decompose``) plus the residual carried in from the nearest known days on both sides with
the series' own lag-1 autocorrelation (the conditional mean of an AR(1) bridge): a busy day next to
the gap makes the gap busier, fading with distance.

KNN: per server, one row per day with the standardised residuals of its metrics plus a time index;
``KNNImputer`` averages the residuals of the nearest days, then the expected value is added back.
Fitting per server keeps the cost linear in the fleet size (a global KNN grows quadratically).

``imputation="auto"`` compares both on held-out known values of a seeded sample of the fleet's servers
(``holdout_servers``; mean absolute error) and keeps the better; the comparison is made once per run,
before the first batch, so the choice is the same whatever the batch size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.impute import KNNImputer

from capacity_forecaster.etl.calendar import DayCalendar
from capacity_forecaster.etl.grid import run_lengths
from capacity_forecaster.etl.outliers import Decomposition, decompose

logger = logging.getLogger(__name__)

# Residuals beyond this many noise scales (events) are not carried into a gap.
BRIDGE_CLIP = 3.0
MAX_AUTOCORRELATION = 0.95
# Time-index unit of the KNN feature space, in days: two days apart weigh like one noise scale.
KNN_DAYS_PER_UNIT = 2.0
# The auto comparison holds out this share of the known normal days of a few servers (seeded, so a
# run is reproducible); KNN costs ~0.1 s per server, so the sample stays small. Short histories hold out
# a larger share (up to HOLDOUT_MAX_SHARE) to reach HOLDOUT_MIN_VALUES: on fastStorage's 30 days the
# choice rested on 11 values and flipped between knn and seasonal with the fleet's size (helper-42).
HOLDOUT_SHARE = 0.03
HOLDOUT_MAX_SHARE = 0.1
HOLDOUT_MIN_VALUES = 200
HOLDOUT_SERVERS = 16
HOLDOUT_SEED = 0
# KNN replaces the seasonal fill (the default, which needs no neighbours) only when it is clearly better.
KNN_MARGIN = 0.9


@dataclass(frozen=True)
class ImputationChoice:
    """Which method fills gaps, and the held-out evidence behind an ``auto`` choice.

    Attributes:
        method: "seasonal" or "knn".
        requested: the configured ``imputation`` ("auto", "seasonal" or "knn").
        mae_seasonal / mae_knn: held-out mean absolute error (points) of each method; NaN if not measured.
        n_holdout: number of held-out values the comparison used.
    """

    method: str
    requested: str
    mae_seasonal: float = float("nan")
    mae_knn: float = float("nan")
    n_holdout: int = 0


def autocorrelation(resid: np.ndarray) -> np.ndarray:
    """Lag-1 autocorrelation per series over pairs of known residuals, clipped to [0, MAX_AUTOCORRELATION]."""
    if resid.shape[1] < 2:
        return np.zeros(resid.shape[0])
    a, b = resid[:, 1:], resid[:, :-1]
    ok = ~np.isnan(a) & ~np.isnan(b)
    a, b = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
    with np.errstate(all="ignore"):
        phi = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.clip(np.nan_to_num(phi), 0.0, MAX_AUTOCORRELATION)


def seasonal_fill(values: np.ndarray, decomp: Decomposition) -> np.ndarray:
    """Estimate every cell: expected value plus the AR(1) bridge of the residuals around it.

    Args:
        values: (series x days) matrix, NaN where unknown.
        decomp: decomposition of ``values``.

    Returns:
        Matrix of estimates (NaN only where the series has no value at all).
    """
    n_series, n_days = values.shape
    with np.errstate(invalid="ignore"):
        resid = np.clip(values - decomp.expected, -BRIDGE_CLIP * decomp.scale, BRIDGE_CLIP * decomp.scale)
    phi = autocorrelation(resid)[:, None]
    known = ~np.isnan(resid)
    day = np.broadcast_to(np.arange(n_days), values.shape)
    left = np.maximum.accumulate(np.where(known, day, -1), axis=1)
    right = np.minimum.accumulate(np.where(known, day, n_days)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(n_series)[:, None]
    has_left, has_right = left >= 0, right < n_days
    e_left = np.where(has_left, resid[rows, np.maximum(left, 0)], 0.0)
    e_right = np.where(has_right, resid[rows, np.minimum(right, n_days - 1)], 0.0)
    t = (day - left).astype(np.float64)
    u = (right - day).astype(np.float64)
    with np.errstate(all="ignore"):
        total = t + u
        denom = 1.0 - phi ** (2 * total)
        w_left = np.where(has_right, (phi**t - phi ** (t + 2 * u)) / denom, phi**t)
        w_right = np.where(has_left, (phi**u - phi ** (u + 2 * t)) / denom, phi**u)
    w_left = np.where(has_left, np.nan_to_num(w_left), 0.0)
    w_right = np.where(has_right, np.nan_to_num(w_right), 0.0)
    return decomp.expected + w_left * e_left + w_right * e_right


def knn_fill(
    values: np.ndarray, decomp: Decomposition, server_index: np.ndarray, neighbors: int,
    wanted: np.ndarray | None = None,
) -> np.ndarray:
    """Estimate cells with KNNImputer fitted per server on standardised residuals and a time index.

    Args:
        values: (series x days) matrix, NaN where unknown.
        decomp: decomposition of ``values``.
        server_index: server number per series (rows of one server are contiguous).
        neighbors: k of the nearest-neighbour average.
        wanted: optional mask of cells that need an estimate; servers without any are skipped.

    Returns:
        Matrix of estimates (NaN for skipped servers).
    """
    out = np.full(values.shape, np.nan)
    with np.errstate(invalid="ignore"):
        std_resid = (values - decomp.expected) / decomp.scale
    time_feature = (np.arange(values.shape[1]) / KNN_DAYS_PER_UNIT)[:, None]
    starts = np.flatnonzero(np.diff(server_index, prepend=-1))
    for start, stop in zip(starts, [*starts[1:], len(server_index)], strict=True):
        rows = slice(start, stop)
        if wanted is not None and not wanted[rows].any():
            continue
        # Days where the server has no value and none is wanted neither help nor need an estimate.
        days = ~np.isnan(std_resid[rows]).all(axis=0)
        if wanted is not None:
            days |= wanted[rows].any(axis=0)
        features = np.hstack([std_resid[rows][:, days].T, time_feature[days]])
        imputer = KNNImputer(n_neighbors=neighbors, keep_empty_features=True)
        filled = imputer.fit_transform(features)[:, : stop - start].T
        out[rows, days] = (decomp.expected[rows][:, days] + filled * decomp.scale[rows][:, days])
    return out


# A gap is not bridged to a side that is a single known day the ETL judged anomalous: a series that
# stopped and came back for one odd day (fastStorage VMs 190 and 205 read with their 0-vCPU rows: saturated
# until 6 September, one idle sample on the 11th) has nothing trustworthy to bridge to, and a fill from the
# level before invents days.
MIN_SIDE_DAYS = 2


def fillable_cells(missing: np.ndarray, max_gap_days: int, known: np.ndarray | None = None,
                   anomalous: np.ndarray | None = None) -> np.ndarray:
    """Missing cells in a run of at most ``max_gap_days`` consecutive missing days.

    With ``known`` (the cells with a value) and ``anomalous`` (known cells flagged as anomalies), a run
    is left out when one of its sides has fewer than ``MIN_SIDE_DAYS`` known days of its series and
    the known day next to the run on that side is anomalous.
    """
    out = missing & (run_lengths(missing) <= max_gap_days)
    if known is None or anomalous is None or not out.any():
        return out
    seen = known.astype(np.int32)
    before = np.cumsum(seen, axis=1)
    after = np.cumsum(seen[:, ::-1], axis=1)[:, ::-1]
    n_days = known.shape[1]
    days = np.arange(n_days)
    rows = np.arange(known.shape[0])[:, None]
    previous = np.maximum.accumulate(np.where(known, days, -1), axis=1)
    following = np.minimum.accumulate(np.where(known, days, n_days)[:, ::-1], axis=1)[:, ::-1]
    odd = np.zeros((known.shape[0], n_days + 1), dtype=bool)  # a last column for "no known day"
    odd[:, :n_days] = anomalous & known
    thin_before = (before < MIN_SIDE_DAYS) & odd[rows, np.where(previous < 0, n_days, previous)]
    thin_after = (after < MIN_SIDE_DAYS) & odd[rows, following]
    return out & ~thin_before & ~thin_after


def holdout_servers(server_ids: list[str], n_servers: int = HOLDOUT_SERVERS, seed: int = HOLDOUT_SEED) -> list[str]:
    """The servers ``imputation = auto`` compares the methods on: a seeded sample of the whole fleet.

    Drawn from every server id (sorted) before any batch is read, so the choice does not depend on
    how the fleet is split into batches (the batch size follows the machine's memory).
    """
    ids = sorted(server_ids)
    if len(ids) <= n_servers:
        return ids
    picked = np.random.default_rng(seed).choice(len(ids), size=n_servers, replace=False)
    return [ids[i] for i in np.sort(picked)]


def choose_method(
    values: np.ndarray, cal: DayCalendar, server_index: np.ndarray, usable: np.ndarray, neighbors: int,
    n_servers: int = HOLDOUT_SERVERS, seed: int = HOLDOUT_SEED,
) -> ImputationChoice:
    """Compare seasonal and KNN imputation on held-out known values of a sample of servers (KNN must be
    clearly better to be chosen: ``KNN_MARGIN``).

    Args:
        values: (series x days) matrix of the batch, NaN where unknown.
        cal: calendar of the grid's days.
        server_index: server number per series.
        usable: known cells that may be held out (normal days: no anomaly, no glitch).
        neighbors: k for KNN.
        n_servers: servers to sample.
        seed: seed of the sample and of the held-out cells.

    Returns:
        The ImputationChoice (seasonal when nothing could be held out).
    """
    rng = np.random.default_rng(seed)
    servers = np.unique(server_index)
    sample = np.sort(rng.choice(servers, size=min(n_servers, len(servers)), replace=False))
    rows = np.flatnonzero(np.isin(server_index, sample))
    sub_values, sub_usable, sub_server = values[rows], usable[rows], server_index[rows]
    share = min(HOLDOUT_MAX_SHARE, max(HOLDOUT_SHARE, HOLDOUT_MIN_VALUES / max(int(sub_usable.sum()), 1)))
    holdout = sub_usable & (rng.random(sub_values.shape) < share)
    if not holdout.any():
        return ImputationChoice(method="seasonal", requested="auto")
    masked = np.where(holdout, np.nan, sub_values)
    decomp = decompose(masked, cal)
    truth = sub_values[holdout]

    def mae(estimate: np.ndarray) -> float:
        errors = np.abs(np.clip(estimate[holdout], 0.0, 100.0) - truth)
        errors = errors[~np.isnan(errors)]
        return float(errors.mean()) if len(errors) else float("nan")

    mae_seasonal = mae(seasonal_fill(masked, decomp))
    mae_knn = mae(knn_fill(masked, decomp, sub_server, neighbors, wanted=holdout))
    method = "knn" if mae_knn < KNN_MARGIN * mae_seasonal else "seasonal"
    logger.debug("imputation auto: seasonal MAE %.3f, knn MAE %.3f on %d held-out values -> %s",
                 mae_seasonal, mae_knn, int(holdout.sum()), method)
    return ImputationChoice(method=method, requested="auto", mae_seasonal=mae_seasonal, mae_knn=mae_knn,
                            n_holdout=int(holdout.sum()))
