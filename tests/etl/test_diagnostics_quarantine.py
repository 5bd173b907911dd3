"""Series the ETL quarantines whole keep a diagnostics row (``with_quarantine``), so the risk stage can name them."""

from __future__ import annotations

import pandas as pd

from capacity_forecaster.etl.diagnostics import with_quarantine


def _diagnostics(*keys: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame({"server_id": [k[0] for k in keys], "metric": [k[1] for k in keys], "n_obs": 5,
                         "first_ds": pd.Timestamp("2024-01-01"), "longest_gap_days": 0, "noise_scale": 1.0,
                         "is_stationary": pd.array([True] * len(keys), dtype="boolean"), "imputation_method": "knn"})


def test_only_series_of_the_fleet_can_be_lost() -> None:
    """A null id or an unknown metric names no series: listing them crashed the risk stage (helper-39)."""
    raw = pd.DataFrame({"server_id": ["a", "a", "b", None, "a"], "metric": ["cpu", "cpu", "cpu", "cpu", "gpu"]})
    quarantine = pd.DataFrame({"server_id": ["b", None, "a"], "metric": ["cpu", "cpu", "gpu"],
                               "reason": ["out_of_range: 5000", "null_key: server_id", "unknown_metric: gpu"]})
    out = with_quarantine(_diagnostics(("a", "cpu")), raw, quarantine).set_index(["server_id", "metric"])
    assert list(out.index) == [("a", "cpu"), ("b", "cpu")]
    assert out.loc[("b", "cpu"), ["n_obs", "n_quarantined", "quarantine_reason"]].tolist() == [0, 1, "out_of_range"]
    assert out.loc[("a", "cpu"), ["n_obs", "n_quarantined", "quarantine_reason"]].tolist() == [5, 0, ""]
    assert pd.isna(out.loc[("b", "cpu"), "first_ds"]) and out.loc[("b", "cpu"), "longest_gap_days"] == 0


def test_nothing_quarantined_changes_nothing_but_the_two_columns() -> None:
    raw = pd.DataFrame({"server_id": ["a"], "metric": ["cpu"]})
    empty = pd.DataFrame(columns=["server_id", "metric", "reason"])
    out = with_quarantine(_diagnostics(("a", "cpu")), raw, empty)
    assert len(out) == 1 and out["n_quarantined"].tolist() == [0] and out["quarantine_reason"].tolist() == [""]
