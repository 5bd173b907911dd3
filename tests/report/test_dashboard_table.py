"""The risk table's server-side filter, sort and pages: the DataTable's query syntax, hostile values get 400."""

from __future__ import annotations

import pandas as pd
import pytest

from capacity_forecaster.report.dashboard_guard import BadInput
from capacity_forecaster.report.dashboard_table import (
    MAX_QUERY_CHARS,
    Term,
    apply_filter,
    apply_sort,
    page_of,
    parse_filter,
)

COLUMNS = {"rank", "server_id", "risk_level", "days_to_breach", "breach_ds"}
NUMERIC = {"rank", "days_to_breach"}


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "rank": [1, 2, 3, 4, 5],
        "server_id": ["srv-0001", "srv-0002", "srv-0003", "web-01", "srv-0010"],
        "risk_level": ["critical", "high", "low", "Critical", None],
        "days_to_breach": pd.array([20, None, 71, 43, None], dtype="Float64"),
        "breach_ds": ["2026-07-20", None, "2026-09-09", "2026-08-12", None],
    })


def test_the_filter_rows_query_syntax_is_parsed() -> None:
    # As the DataTable's filter row writes them: s/i prefixes on words and symbols, quoted values.
    terms = parse_filter('{days_to_breach} s> 30 && {risk_level} scontains crit && {server_id} icontains "WEB" '
                         "&& {breach_ds} datestartswith 2026-08 && {rank} <= 4", COLUMNS)
    assert terms == [Term("days_to_breach", "gt", 30.0), Term("risk_level", "contains", "crit"),
                     Term("server_id", "contains", "WEB", case=False), Term("breach_ds", "datestartswith", "2026-08"),
                     Term("rank", "le", 4.0)]
    assert parse_filter("", COLUMNS) == [] and parse_filter(None, COLUMNS) == []
    # Terms the filter row would not write are ignored, like the native filter's invalid ones.
    assert parse_filter("{password} = x && garbage && {rank} ~ 3", COLUMNS) == []


def test_filters_compare_numbers_as_numbers_and_text_as_text() -> None:
    frame = _frame()

    def ranks(query: str) -> list[int]:
        return apply_filter(frame, parse_filter(query, COLUMNS), NUMERIC)["rank"].tolist()

    assert ranks("{days_to_breach} s> 30") == [3, 4]  # blanks never match a comparison
    assert ranks("{risk_level} scontains crit") == [1]
    assert ranks("{risk_level} icontains crit") == [1, 4]
    assert ranks("{risk_level} s= high") == [2]
    assert ranks("{breach_ds} datestartswith 2026-0 && {rank} s> 1") == [3, 4]
    assert ranks("{days_to_breach} s> abc") == []  # a word where a number is needed matches nothing


def test_sort_keeps_blanks_last_and_pages_clamp() -> None:
    frame = _frame()
    ordered = apply_sort(frame, [{"column_id": "days_to_breach", "direction": "desc"}], COLUMNS)
    assert ordered["rank"].tolist() == [3, 4, 1, 2, 5]
    assert apply_sort(frame, [], COLUMNS) is frame
    rows, pages = page_of(ordered, 1, 2)
    assert rows["rank"].tolist() == [1, 2] and pages == 3
    assert page_of(ordered, 99, 2)[0]["rank"].tolist() == [5]  # past the last page: the last
    assert page_of(frame.iloc[:0], 0, 2)[1] == 1


@pytest.mark.parametrize("call", [
    lambda: parse_filter(["{rank} = 1"], COLUMNS),
    lambda: parse_filter("x" * (MAX_QUERY_CHARS + 1), COLUMNS),
    lambda: parse_filter(" && ".join(["{rank} = 1"] * 40), COLUMNS),
    lambda: apply_sort(_frame(), [{"column_id": "password", "direction": "asc"}], COLUMNS),
    lambda: apply_sort(_frame(), [{"column_id": "rank", "direction": "sideways"}], COLUMNS),
    lambda: apply_sort(_frame(), "rank", COLUMNS),
    lambda: page_of(_frame(), -1, 2),
    lambda: page_of(_frame(), "2", 2),
    lambda: page_of(_frame(), True, 2),
])
def test_hostile_values_are_bad_input(call) -> None:
    with pytest.raises(BadInput):
        call()


def test_the_risk_table_callback_answers_one_page(report_lake) -> None:
    from capacity_forecaster.config import Settings
    from capacity_forecaster.report.dashboard import create_app

    app = create_app(report_lake, Settings(), warm=False)
    outputs = [{"id": "risk-table", "property": "data"}, {"id": "risk-table", "property": "page_count"}]

    def post(page: object, sort_by: object, query: object) -> object:
        inputs = [{"id": "growth", "property": "value", "value": 0},
                  {"id": "risk-table", "property": "page_current", "value": page},
                  {"id": "risk-table", "property": "sort_by", "value": sort_by},
                  {"id": "risk-table", "property": "filter_query", "value": query}]
        return app.server.test_client().post("/_dash-update-component", json={
            "output": "..risk-table.data...risk-table.page_count..", "outputs": outputs, "inputs": inputs,
            "changedPropIds": ["risk-table.page_current"]})

    answer = post(2, [{"column_id": "rank", "direction": "asc"}], "")
    assert answer.status_code == 200
    body = answer.get_json()["response"]["risk-table"]
    everything = app.state.risk_rows(0.0)
    assert body["page_count"] == 3 and body["data"] == everything[30:]
    assert post(0, [], "{risk_level} scontains critical").get_json()["response"]["risk-table"]["data"] == [
        r for r in everything if r["risk_level"] == "critical"]
    assert post(-1, [], "").status_code == 400
    assert post(0, [{"column_id": "rank"}], "").status_code == 400
