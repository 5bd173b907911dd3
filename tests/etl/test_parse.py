"""Number parsing: decimal separators, thousands groupings and the forms that stay unparseable."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from capacity_forecaster.etl.parse import MISSING, NON_FINITE, OK, UNPARSEABLE, parse_numbers


def parsed(texts: list[str | None], decimal: str) -> list[tuple[float | None, int]]:
    values, status = parse_numbers(pa.array(texts, pa.string()).cast(pa.binary()), decimal)
    return [(None if np.isnan(v) else float(v), int(s)) for v, s in zip(values, status, strict=True)]


@pytest.mark.parametrize(("decimal", "text", "value"), [
    (",", "1.026,7", 1026.7), (",", "16.384", 16384.0), (",", "1.250,00", 1250.0), (",", "3,75", 3.75),
    (",", "-1.234.567,8", -1234567.8), (",", "+1.000", 1000.0), (",", "1 026,5", 1026.5),
    (",", "1\u00a0026,5", 1026.5), (",", "1\u202f026,5", 1026.5), (",", "1'234,5", 1234.5), (",", "1026,7", 1026.7),
    (",", "1,5e3", 1500.0),
    (".", "1,026.7", 1026.7), (".", "16,384", 16384.0), (".", "1,234,567.8", 1234567.8), (".", "1 026.5", 1026.5),
    (".", "1'234.5", 1234.5), (".", "1\u2019234", 1234.0), (".", "0.125", 0.125), (".", "1.5e3", 1500.0),
    (".", " 7 ", 7.0),
])
def test_grouped_and_plain_numbers(decimal: str, text: str, value: float) -> None:
    assert parsed([text], decimal) == [(pytest.approx(value), OK)]


@pytest.mark.parametrize(("decimal", "text"), [
    # With decimal ',' a '.' only groups thousands: '3.75' is no number there (nor 1.5e3), and a grouping
    # needs a first group of 1-3 digits not starting with 0, then groups of exactly three, one separator kind.
    (",", "3.75"), (",", "1.00"), (",", "0.125"), (",", "1.2345"), (",", "12.34.567"), (",", "1.234 567"),
    (",", "1.5e3"), (",", "1.026.7"), (",", "1,026,7"),
    (".", "3,75"), (".", "0,125"), (".", "12,34"), (".", "1.026,7"), (".", "1,2345"), (".", "1,234.567,8"),
])
def test_malformed_or_foreign_forms_stay_unparseable(decimal: str, text: str) -> None:
    assert parsed([text], decimal) == [(None, UNPARSEABLE)]


def test_missing_and_non_finite_keep_their_status() -> None:
    for decimal in ",.":
        assert parsed([None, "", "nan", "inf", "1.000"], decimal)[:4] == [
            (None, MISSING), (None, MISSING), (None, NON_FINITE), (None, NON_FINITE)]


def test_no_measurement_markers_are_missing_not_misreads() -> None:
    """One agent's memory column read "N/A" on every row: as unparseable it stopped a 14-VM ingest."""
    markers = ["N/A", "n/a", "NA", "#N/A", "null", "NULL", "None", "-", "--", " N/A "]
    assert parsed(markers, ".") == [(None, MISSING)] * len(markers)
    assert parsed(["NAN?", "n.a.", "nil", "-1"], ".") == [(None, UNPARSEABLE)] * 3 + [(-1.0, OK)]


def _grouped(value: float, decimals: int, thousands: str, decimal: str) -> str:
    text = f"{value:,.{decimals}f}"  # '1,234.5'
    return text.replace(",", "\0").replace(".", decimal).replace("\0", thousands)


LOCALES = st.sampled_from([(".", ","), (",", "."), (",", " "), (",", "\u00a0"), (".", "'"), (".", " "),
                           (",", "'"), (".", "\u202f")])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=1, max_size=30), st.integers(0, 3), LOCALES)
def test_grouped_numbers_round_trip(values: list[float], decimals: int, locale: tuple[str, str]) -> None:
    decimal, thousands = locale
    texts = [_grouped(v, decimals, thousands, decimal) for v in values]
    expected = [float(f"{v:.{decimals}f}") for v in values]
    got = parsed(texts, decimal)
    assert [s for _, s in got] == [OK] * len(values), texts
    assert [v for v, _ in got] == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=30), st.integers(1, 4))
def test_plain_numbers_read_the_same_with_either_decimal(values: list[float], decimals: int) -> None:
    dotted = [f"{v:.{decimals}f}" for v in values]
    expected = [float(t) for t in dotted]
    assert [v for v, _ in parsed(dotted, ".")] == pytest.approx(expected)
    assert [v for v, _ in parsed([t.replace(".", ",") for t in dotted], ",")] == pytest.approx(expected)


def test_a_percent_sign_is_read_only_where_the_value_is_a_percentage() -> None:
    """helper-46: "17,43 %" in a vendor's percent column was unparseable; a fraction with a sign stays so."""
    from capacity_forecaster.etl.parse import with_percent_signs

    texts = ["17,43 %", "5%", " 3,5% ", "%", "abc %", "12", None, "1.000,5 %", "50 %"]
    array = pa.array(texts, pa.string()).cast(pa.binary())
    values, status = parse_numbers(array, ",")
    allowed = np.array([True] * 8 + [False])
    again, again_status = with_percent_signs(array, values, status, allowed, ",")
    assert [None if np.isnan(v) else float(v) for v in again] == [17.43, 5.0, 3.5, None, None, 12.0, None, 1000.5,
                                                                   None]
    assert again_status.tolist() == [OK, OK, OK, UNPARSEABLE, UNPARSEABLE, OK, MISSING, OK, UNPARSEABLE]
    assert status[0] == UNPARSEABLE  # the cached parse is not modified
    odd = pa.array(["nan %", "inf%"], pa.string())
    assert with_percent_signs(odd, *parse_numbers(odd, "."), np.ones(2, dtype=bool))[1].tolist() == [NON_FINITE] * 2
