"""Validation: every rejected row lands in quarantine with a reason code; clips keep the original."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from etl_frames import day, inventory, raw_frame

from capacity_forecaster import schema
from capacity_forecaster.config import EtlConfig
from capacity_forecaster.errors import SchemaError
from capacity_forecaster.etl.validate import validate


def _rows(*rows: tuple) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(schema.RAW_METRIC_COLUMNS))


def _kept_values(result, raw: pd.DataFrame) -> dict[int, tuple[float, float]]:
    return {int(r): (v, vr) for r, v, vr in zip(result.rows, result.value, result.value_raw, strict=True)}


def _codes(result) -> list[str]:
    return [r.split(":")[0] for r in result.quarantine["reason"]]


def test_clean_rows_are_all_kept() -> None:
    raw = raw_frame(n_days=30)
    result = validate(raw, inventory(), EtlConfig())
    assert len(result.rows) == len(raw) and result.quarantine.empty
    assert list(result.server_ids) == ["srv-a"]


def test_saturation_is_kept_and_only_impossible_values_quarantined() -> None:
    raw = _rows(("srv-a", day(0), "cpu", 100.3), ("srv-a", day(1), "cpu", 150.0),
                ("srv-a", day(2), "cpu", -0.4), ("srv-a", day(3), "cpu", -1.0),
                ("srv-a", day(4), "cpu", 200.0), ("srv-a", day(5), "cpu", 2600.0),
                ("srv-a", day(6), "cpu", 100.0), ("srv-a", day(7), "cpu", 99.9))
    result = validate(raw, inventory(), EtlConfig(value_tolerance=0.5))
    kept = _kept_values(result, raw)
    assert kept == {0: (100.0, 100.3), 1: (100.0, 150.0), 2: (0.0, -0.4), 4: (100.0, 200.0),
                    6: (100.0, 100.0), 7: (99.9, 99.9)}
    saturated = dict(zip(result.rows.tolist(), result.saturated.tolist(), strict=True))
    assert saturated == {0: True, 1: True, 2: False, 4: True, 6: True, 7: False}
    assert _codes(result) == ["out_of_range", "out_of_range"]
    assert list(result.quarantine[schema.VALUE]) == ["-1.0", "2600.0"]
    reasons = list(result.quarantine["reason"])
    assert "below 0 beyond the tolerance of 0.5" in reasons[0]
    assert "above etl.saturation_max (200 % of capacity)" in reasons[1] and "unit error" in reasons[1]


def test_saturation_max_is_configurable() -> None:
    raw = _rows(("srv-a", day(0), "cpu", 120.0), ("srv-a", day(1), "cpu", 180.0))
    result = validate(raw, inventory(), EtlConfig(saturation_max=150.0))
    assert _kept_values(result, raw) == {0: (100.0, 120.0)}
    assert list(result.quarantine[schema.VALUE]) == ["180.0"]


def test_unknown_server_metric_and_null_keys_are_quarantined() -> None:
    raw = _rows(("srv-zz", day(0), "cpu", 10.0), ("srv-a", day(0), "gpu", 10.0),
                (None, day(0), "cpu", 10.0), ("srv-a", pd.NaT, "cpu", 10.0), ("  ", day(1), "cpu", 1.0),
                ("srv-a", day(0), "cpu", 10.0))
    result = validate(raw, inventory(), EtlConfig())
    assert list(result.rows) == [5]
    assert _codes(result) == ["unknown_server", "unknown_metric", "null_key", "null_key", "null_key"]
    reasons = list(result.quarantine["reason"])
    assert "'srv-zz'" in reasons[0] and "'gpu'" in reasons[1]
    assert result.quarantine[schema.SERVER_ID].tolist()[:3] == ["srv-zz", "srv-a", None]
    assert set(result.quarantine["source"]) == {"raw_metrics"} and set(result.quarantine["stage"]) == {"etl"}


def test_text_values_and_dates_are_parsed_and_junk_quarantined() -> None:
    raw = pd.DataFrame({
        schema.SERVER_ID: ["srv-a"] * 6,
        schema.DS: ["2024-01-01", "2024-01-02", "2024-01-03", "01/04/2024", "2024-01-05 10:30", "1970-01-01"],
        schema.METRIC: ["cpu"] * 6,
        schema.VALUE: ["42.5", "abc", "", "1", "2", "3"],
    })
    result = validate(raw, inventory(), EtlConfig())
    kept = _kept_values(result, raw)
    assert kept[0] == (42.5, 42.5)
    assert np.isnan(kept[2][0]), "an empty value is a missing value, kept for imputation"
    assert _codes(result) == ["invalid_value", "invalid_date", "invalid_date", "invalid_date"]
    dates = ["2024-01-02", "01/04/2024", "2024-01-05 10:30", "1970-01-01"]
    assert list(result.quarantine[schema.DS]) == dates


def test_exact_duplicates_keep_the_first_row() -> None:
    raw = _rows(*[("srv-a", day(0), "cpu", 10.0)] * 3)
    result = validate(raw, inventory(), EtlConfig())
    assert list(result.rows) == [0]
    assert _codes(result) == ["duplicate", "duplicate"]


def test_conflicting_duplicate_keeps_the_value_closest_to_the_local_median() -> None:
    raw = raw_frame(n_days=20).assign(value=40.0)
    conflict = _rows(("srv-a", day(10), "cpu", 75.0))
    result = validate(pd.concat([raw, conflict], ignore_index=True), inventory(), EtlConfig())
    assert len(result.rows) == 20
    assert result.value[result.rows == 10] == [40.0]
    assert _codes(result) == ["conflicting_duplicate"]
    assert "40" in result.quarantine["reason"].iloc[0]
    assert result.quarantine[schema.VALUE].iloc[0] == "75.0"


def test_conflict_without_neighbours_keeps_the_larger_and_a_number_beats_nan() -> None:
    raw = _rows(("srv-a", day(0), "cpu", 30.0), ("srv-a", day(0), "cpu", 35.0),
                ("srv-b", day(0), "cpu", np.nan), ("srv-b", day(0), "cpu", 5.0))
    result = validate(raw, inventory(("srv-a", "srv-b")), EtlConfig())
    assert sorted(result.value.tolist()) == [5.0, 35.0]
    assert _codes(result) == ["conflicting_duplicate", "conflicting_duplicate"]


def test_keys_are_normalised_to_text() -> None:
    raw = _rows((101, day(0), "cpu", 1.0), ("101", day(1), "cpu", 2.0))
    result = validate(raw, inventory(("101",)), EtlConfig())
    assert list(result.server_ids) == ["101"] and list(result.server_codes) == [0, 0]


def test_missing_column_is_a_schema_error_naming_it() -> None:
    with pytest.raises(SchemaError, match="value"):
        validate(raw_frame().drop(columns="value"), inventory(), EtlConfig())


def test_input_frames_are_not_mutated() -> None:
    raw = _rows(("srv-a", day(0), "cpu", "100.3"), ("x", day(0), "cpu", "1"))
    inv = inventory()
    before, inv_before = raw.copy(deep=True), inv.copy(deep=True)
    validate(raw, inv, EtlConfig())
    pd.testing.assert_frame_equal(raw, before)
    pd.testing.assert_frame_equal(inv, inv_before)
