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
