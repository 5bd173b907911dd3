"""Display cells of ``capfc sql --format table``."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from capacity_forecaster.cli.tables import float_decimals, format_frame


def test_format_frame_rules() -> None:
    frame = pd.DataFrame({
        "day": pd.to_datetime(["2026-07-31", None]),
        "stamp": pd.to_datetime(["2026-07-31 10:00", "2026-07-31 00:00"]),
        "zoned": pd.to_datetime(["2026-07-31 10:00", "2026-07-31 00:00"]).tz_localize("UTC"),
        "pct": [12.3456789, np.nan],
        "share": [0.123456, 0.5],
        "big": [123456.7, 1.0],
        "count": pd.array([1, None], dtype="Int64"),
        "label": ["a", None],
        "nullable": pd.array([1.5, None], dtype="Float64"),
        "date_obj": [dt.date(2026, 1, 2), None],
    })
    original = frame.copy()
    shown = format_frame(frame)
    pd.testing.assert_frame_equal(frame, original)  # the input is not modified
    assert shown.to_dict("list") == {
        "day": ["2026-07-31", ""],
        "stamp": ["2026-07-31 10:00:00", "2026-07-31 00:00:00"],
        "zoned": ["2026-07-31 10:00:00+00:00", "2026-07-31 00:00:00+00:00"],
        "pct": ["12.35", ""],
        "share": ["0.1235", "0.5000"],
        "big": ["123,457", "1"],
        "count": ["1", ""],
        "label": ["a", ""],
        "nullable": ["1.500", ""],
        "date_obj": ["2026-01-02", ""],
    }


def test_float_decimals() -> None:
    assert float_decimals(pd.Series([99.9, 3.0])) == 2
    assert float_decimals(pd.Series([0.00012345])) == 6
    assert float_decimals(pd.Series([np.nan])) == 2
    assert float_decimals(pd.Series([0.0, 0.0])) == 0
    # A SUM DuckDB returns as a float (helper-41: "sum(low_coverage::int)" printed "3.000"): whole numbers.
    assert float_decimals(pd.Series([76.0, 3.0, np.nan])) == 0
    assert float_decimals(pd.Series([76.0, 3.5])) == 2
