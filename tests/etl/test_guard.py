"""The quarantine-share guard: rows, and the values of each series (server, metric)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.errors import InputError
from capacity_forecaster.etl.extract import quarantine_frame
from capacity_forecaster.etl.guard import check_quarantine_share, check_value_shares, value_counts

NAMES = ["a", "b"]


def counts(accepted: dict[tuple[int, int], int], reasons: list[tuple[str, str, str]]) -> pd.DataFrame:
    server = np.concatenate([np.full(n, s, dtype=np.int32) for (s, _), n in accepted.items()] or
                            [np.empty(0, np.int32)])
    metric = np.concatenate([np.full(n, m, dtype=np.int8) for (_, m), n in accepted.items()] or
                            [np.empty(0, np.int8)])
    quarantine = quarantine_frame([r[0] for r in reasons], None, [r[1] for r in reasons], "x", "f.csv",
                                  [r[2] for r in reasons])
    return value_counts(server, metric, NAMES, quarantine, {"cpu": "cpu_pct", "memory": "mem_used"})


def test_value_counts_count_only_values_that_were_there_but_unreadable() -> None:
    frame = counts({(0, 0): 10, (0, 1): 4, (1, 1): 5}, [
        ("a", "memory", "unparseable_value: '1.0.2' in column 'mem_used'"),
        ("a", "memory", "value_out_of_range: '1e9' in column 'mem_used' (|percent| > 1e+06)"),
        ("a", "memory", "missing_value: column 'mem_used' is empty"),       # nothing was there
        ("a", "memory", "zero_capacity: column 'mem_total' is '0'"),         # not a measurement
        ("b", "cpu", "unparseable_value: 'n/a' in column 'cpu_pct'"),        # a series without a good value
        ("b", "cpu", "unparseable_timestamp: 'x' (expected ISO 8601 text)"),  # the row rule's business
    ])
    got = frame.set_index(["server_id", "metric"])
    assert got.loc[("a", "cpu"), ["values", "unreadable"]].tolist() == [10, 0]
    assert got.loc[("a", "memory"), ["values", "unreadable"]].tolist() == [6, 2]
    assert got.loc[("b", "memory"), ["values", "unreadable"]].tolist() == [5, 0]
    assert got.loc[("b", "cpu"), ["values", "unreadable", "column"]].tolist() == [1, 1, "cpu_pct"]
    assert got.loc[("a", "memory"), "example"].startswith("unparseable_value: '1.0.2'")


def test_a_series_over_the_share_stops_naming_column_server_and_share() -> None:
    frame = counts({(0, 0): 30, (1, 0): 9}, [("b", "cpu", "unparseable_value: '1.0.2' in column 'cpu_pct'")] * 21)
    check_value_shares("ingest", frame, 0.7, "ingest.max_quarantine_share", "kept")  # 21 of 30: not more
    with pytest.raises(InputError) as caught:
        check_value_shares("ingest", frame, 0.5, "ingest.max_quarantine_share", "nothing was written")
    assert str(caught.value).startswith(
        "ingest: column 'cpu_pct' (cpu): 21 of 30 values of server b (70%) could not be read, more than "
        "ingest.max_quarantine_share = 0.5 (1 of 2 series over it; 21 of 60 values in the column), e.g. "
        "\"unparseable_value: '1.0.2' in column 'cpu_pct'\" at f.csv; nothing was written.")  # helper-64: the file
    assert "--force" in str(caught.value)
    check_value_shares("ingest", frame, 1.0, "ingest.max_quarantine_share", "kept")  # --force
    check_value_shares("ingest", counts({}, []), 0.0, "ingest.max_quarantine_share", "kept")


def test_one_bad_cell_of_a_series_with_few_values_does_not_stop_the_ingest_but_a_bad_column_does() -> None:
    """A server with one row reading '#VALUE!' in a 2,593-row export stopped the whole ingest (1 of 1: 100 %)."""
    one = counts({(0, 0): 2592}, [("b", "cpu", "unparseable_value: '#VALUE!' in column 'cpu_pct'")])
    check_value_shares("ingest", one, 0.5, "ingest.max_quarantine_share", "kept")
    # Every server has few values, but the column as a whole is mostly unreadable: that still stops.
    few = counts({(0, 0): 5, (1, 0): 5}, [("a", "cpu", "unparseable_value: 'x' in column 'cpu_pct'")] * 8
                 + [("b", "cpu", "unparseable_value: 'x' in column 'cpu_pct'")] * 8)
    with pytest.raises(InputError, match="values in the column"):
        check_value_shares("ingest", few, 0.5, "ingest.max_quarantine_share", "nothing was written")


def test_the_row_rule_is_unchanged() -> None:
    check_quarantine_share("etl", 10, 5, 0.5, "etl.max_quarantine_share", {}, "kept")
    with pytest.raises(InputError, match=r"^etl: 6 of 10 rows \(60%\) would be quarantined"):
        check_quarantine_share("etl", 10, 6, 0.5, "etl.max_quarantine_share", {}, "kept")
