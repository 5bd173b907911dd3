"""Real operational anomalies (outages, spikes): robust event z-scores, corroborated across metrics.

The score of an observed day is the magnitude of its event z-score (see ``outliers.decompose``): how
far it lies from the series' expected value and from the levels of the days around it, in units of
the series' noise. A day is an anomaly when the score exceeds the threshold. Outages take a whole
server down, so a drop on one load metric (cpu, memory, network) that is only half as strong still
counts when another load metric of the same server drops past the full threshold on the same day.
Disk usage does not fall in an outage and is judged on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capacity_forecaster import schema
from capacity_forecaster.etl.outliers import MIN_SERIES_OBS, Decomposition

LOAD_METRICS = ("cpu", "memory", "network")


@dataclass(frozen=True)
class Anomalies:
    """Anomaly flags and scores per cell (series x days).

    Attributes:
        is_anomaly: True for observed days judged a real event.
        score: absolute event z-score for observed days (NaN where no observed value).
    """

    is_anomaly: np.ndarray
    score: np.ndarray


def detect_anomalies(
    decomp: Decomposition, metric_codes: np.ndarray, server_index: np.ndarray, threshold: float
) -> Anomalies:
    """Flag outages and spikes.

    Args:
        decomp: decomposition of the grid (with glitches already removed from the values).
        metric_codes: index into ``schema.METRICS`` per series.
        server_index: server number per series (series of one server share it).
        threshold: event z-score above which a day is an anomaly (``EtlConfig.anomaly_threshold``).

    Returns:
        Anomalies with the flag and the score per cell.
    """
    score = np.abs(decomp.z_event)
    enough = (decomp.n_obs >= MIN_SERIES_OBS)[:, None]
    with np.errstate(invalid="ignore"):
        flagged = (score > threshold) & enough
        load = np.isin(metric_codes, [schema.METRICS.index(m) for m in LOAD_METRICS])[:, None]
        strong_drop = (decomp.z_event < -threshold) & enough & load
        weak_drop = (decomp.z_event < -threshold / 2) & enough & load
    if strong_drop.any() and len(server_index):
        # Series are grouped by server (grid order), so one reduceat sums each server's rows.
        starts = np.flatnonzero(np.diff(server_index, prepend=-1))
        per_server = np.add.reduceat(strong_drop.astype(np.int64), starts, axis=0)
        flagged |= weak_drop & (per_server[np.searchsorted(server_index[starts], server_index)] > 0)
    return Anomalies(is_anomaly=flagged, score=score)
