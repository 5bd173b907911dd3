"""Severity ordering and label round-trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.risk.levels import (
    LEVEL_LABELS,
    RISK_LEVEL_DTYPE,
    RiskLevel,
    labels_from_codes,
    level_codes,
)


def test_levels_are_ordered_by_severity() -> None:
    assert RiskLevel.LOW < RiskLevel.MEDIUM < RiskLevel.HIGH < RiskLevel.CRITICAL
    assert LEVEL_LABELS == ("low", "medium", "high", "critical")
    assert max(RiskLevel.from_label("high"), RiskLevel.from_label("medium")) is RiskLevel.HIGH


def test_unknown_label_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid levels: low, medium, high, critical"):
        RiskLevel.from_label("severe")


def test_codes_round_trip_and_missing_is_minus_one() -> None:
    labels = pd.Series(["critical", None, "low"])
    codes = level_codes(labels)
    assert codes.tolist() == [3, -1, 0]
    assert labels_from_codes(np.array(codes)).tolist() == ["critical", None, "low"]


def test_dtype_sorts_by_severity_not_alphabet() -> None:
    s = pd.Series(["low", "critical", "medium", "high"], dtype=RISK_LEVEL_DTYPE)
    assert s.sort_values().tolist() == ["low", "medium", "high", "critical"]


def test_one_ranking_status_then_level_then_breach_date_then_probability() -> None:
    import pandas as pd

    from capacity_forecaster.risk.levels import percent, rank_risks

    frame = pd.DataFrame({
        "server_id": ["a", "b", "c", "d", "e", "f"], "metric": "cpu",
        "risk_level": ["medium", "critical", "high", "critical", "high", "high"],
        "status": ["already_breaching", "assessed", "already_breaching", "assessed", "assessed", "assessed"],
        "days_over_recent": [5, 0, 9, 0, 0, 0],
        "days_to_breach": [None, 20, None, 10, 40, 40],
        "breach_probability": [0.4, 0.9, 0.7, 0.8, 0.6, 0.75],
    })
    ranked = rank_risks(frame)
    # Already breaching first (high c before medium a), then level, then soonest breach, then probability.
    assert ranked["server_id"].tolist() == ["c", "a", "d", "b", "f", "e"]
    assert frame["server_id"].tolist() == ["a", "b", "c", "d", "e", "f"]  # input untouched
    # helper-54: the level comes before the days over (a critical series 3 days over before a high one 14 over)
    both = frame.iloc[:2].assign(status="already_breaching", risk_level=["high", "critical"], days_over_recent=[14, 3])
    assert rank_risks(both)["server_id"].tolist() == ["b", "a"]
    assert percent(0.3449) == "34%" and percent(0.345) == "34%" and percent(None) == "-"
    assert percent(0.0049, 1) == "0.5%"  # from the unrounded value: never rounded twice
