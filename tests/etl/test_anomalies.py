"""Anomalies: outages and spikes are flagged (and kept), shifts are not; outages corroborate."""

from __future__ import annotations

import numpy as np
import pandas as pd
from etl_frames import START, series_values

from capacity_forecaster import schema
from capacity_forecaster.etl.anomalies import detect_anomalies
from capacity_forecaster.etl.calendar import day_calendar
from capacity_forecaster.etl.outliers import decompose

DAY0 = int((START - pd.Timestamp("1970-01-01")).days)
N_DAYS = 140


def _server(levels: dict[str, float], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One server's series (metric order of schema.METRICS), their metric codes and server index."""
    names = [m for m in schema.METRICS if m in levels]
    values = np.vstack([series_values(N_DAYS, levels[m], seed + i, noise=0.05 * levels[m] + 0.2)
                        for i, m in enumerate(names)])
    codes = np.array([schema.METRICS.index(m) for m in names])
    return values, codes, np.zeros(len(names), dtype=np.int64)


def _detect(values: np.ndarray, codes: np.ndarray, servers: np.ndarray, threshold: float = 4.0):
    return detect_anomalies(decompose(values, day_calendar(DAY0, N_DAYS)), codes, servers, threshold)


def test_an_outage_is_flagged_on_every_load_metric_but_not_disk() -> None:
    values, codes, servers = _server({"cpu": 40.0, "memory": 50.0, "disk": 30.0, "network": 10.0})
    outage = slice(80, 83)
    values[[0, 1, 3], outage] = [[0.5], [1.5], [0.2]]
    result = _detect(values, codes, servers)
    assert result.is_anomaly[[0, 1, 3], outage].all()
    assert not result.is_anomaly[2].any()
    others = np.ones(N_DAYS, dtype=bool)
    others[outage] = False
    assert not result.is_anomaly[:, others].any()
    assert (result.score[[0, 1, 3], outage] > 4).all()


def test_a_spike_is_flagged_with_a_high_score() -> None:
    values, codes, servers = _server({"cpu": 30.0})
    values[0, 95] += 40.0
    result = _detect(values, codes, servers)
    assert np.flatnonzero(result.is_anomaly[0]).tolist() == [95]
    assert result.score[0, 95] > 10


def test_a_weak_drop_counts_when_another_load_metric_of_the_server_is_down() -> None:
    values, codes, servers = _server({"cpu": 40.0, "network": 2.0})
    values[0, 60] = 0.5
    values[1, 60] = 1.2  # a drop of ~3 noise scales on its own
    decomp = decompose(values, day_calendar(DAY0, N_DAYS))
    assert -4.0 < decomp.z_event[1, 60] < -2.0
    result = detect_anomalies(decomp, codes, servers, 4.0)
    assert result.is_anomaly[:, 60].all()
    alone = _detect(values[1:], codes[1:], servers[1:])
    assert not alone.is_anomaly[0, 60]


def test_short_series_get_no_flags_and_missing_days_no_score() -> None:
    values = np.array([[10.0, 11.0, np.nan, 60.0, 10.5, 10.2]])
    result = detect_anomalies(decompose(values, day_calendar(DAY0, 6)), np.array([0]), np.array([0]), 4.0)
    assert not result.is_anomaly.any()
    assert np.isnan(result.score[0, 2])
