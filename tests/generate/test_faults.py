"""Raw feed vs ground truth: every difference between raw_metrics and truth_actual is a recorded fault."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.config import GenerateConfig
from capacity_forecaster.generate import SyntheticFleet

KEY = ["server_id", "metric", "ds"]
FAULT_KINDS = ("negative", "over_100", "stuck", "duplicate", "conflict", "missing_day", "missing_value")


@pytest.fixture(scope="module", params=["small", "default"])
def fleet(request: pytest.FixtureRequest) -> SyntheticFleet:
    return request.getfixturevalue(f"{request.param}_fleet")


@pytest.fixture(scope="module")
def rows(fleet: SyntheticFleet) -> pd.DataFrame:
    """Raw rows with their actual value and the fault kind of their key (NaN if none)."""
    kinds = fleet.truth_anomalies[fleet.truth_anomalies["kind"].isin(FAULT_KINDS)]
    assert not kinds.duplicated(KEY).any(), "a cell carries two faults"
    merged = fleet.raw_metrics.merge(fleet.truth_actual, on=KEY, how="left", suffixes=("", "_actual"))
    return merged.merge(kinds, on=KEY, how="left")


def test_raw_equals_actual_except_on_recorded_faults(rows: pd.DataFrame) -> None:
    assert rows["value_actual"].notna().all(), "raw has a key outside the observed window"
    clean = rows[rows["kind"].isna()]
    assert len(clean) > 0.9 * len(rows)
    np.testing.assert_array_equal(clean["value"].to_numpy(), clean["value_actual"].to_numpy())


def test_each_fault_kind_looks_like_its_name(rows: pd.DataFrame) -> None:
    by_kind = {kind: group for kind, group in rows.groupby("kind")}
    assert (by_kind["negative"]["value"] < 0).all()
    assert (by_kind["over_100"]["value"] > 100).all()
    assert by_kind["missing_value"]["value"].isna().all()
    assert rows.loc[rows["kind"] != "missing_value", "value"].notna().all()
    dup = by_kind["duplicate"]
    assert (dup.groupby(KEY).size() == 2).all()
    assert (dup["value"] == dup["value_actual"]).all()
    conflict = by_kind["conflict"].groupby(KEY)["value"].agg(["size", "first", "last"])
    actual = by_kind["conflict"].groupby(KEY)["value_actual"].first()
    assert (conflict["size"] == 2).all()
    assert (conflict["first"] == actual).all() and (conflict["last"] != actual).all()
    assert conflict["last"].between(0.0, 100.0).all()


def test_only_duplicate_and_conflict_keys_repeat(fleet: SyntheticFleet, rows: pd.DataFrame) -> None:
    repeated = rows[rows.duplicated(KEY, keep=False)]
    assert set(repeated["kind"]) == {"duplicate", "conflict"}
    listed = fleet.truth_anomalies[fleet.truth_anomalies["kind"].isin(["duplicate", "conflict"])]
    assert len(repeated) == 2 * len(listed)


def test_missing_days_are_absent_from_raw(fleet: SyntheticFleet) -> None:
    missing = fleet.truth_anomalies[fleet.truth_anomalies["kind"] == "missing_day"]
    hits = missing.merge(fleet.raw_metrics, on=KEY, how="inner")
    assert len(missing) > 0 and hits.empty
    repeats = fleet.truth_anomalies["kind"].isin(["duplicate", "conflict"]).sum()
    assert len(fleet.raw_metrics) == len(fleet.truth_actual) - len(missing) + repeats


def test_stuck_runs_repeat_the_first_value_for_3_to_10_days(rows: pd.DataFrame) -> None:
    stuck = rows[rows["kind"] == "stuck"].sort_values(KEY)
    new_run = (stuck["ds"].diff() != pd.Timedelta(days=1)) | (
        stuck[["server_id", "metric"]] != stuck[["server_id", "metric"]].shift()
    ).any(axis=1)
    runs = stuck.assign(run=new_run.cumsum()).groupby("run")
    assert runs.ngroups > 0
    assert runs.size().between(3, 10).all()
    assert (runs["value"].nunique() == 1).all()
    assert (runs["value"].first() == runs["value_actual"].first()).all()


def test_values_outside_glitches_are_percentages(rows: pd.DataFrame) -> None:
    plain = rows[~rows["kind"].isin(["negative", "over_100", "missing_value"])]
    assert plain["value"].between(0.0, 100.0).all()


def test_fault_and_event_volumes_follow_the_configured_rates(default_fleet: SyntheticFleet) -> None:
    cfg = GenerateConfig()
    cells = len(default_fleet.truth_actual)
    kinds = default_fleet.truth_anomalies["kind"].value_counts()
    missing = (kinds["missing_day"] + kinds["missing_value"]) / cells
    glitches = (kinds["negative"] + kinds["over_100"] + kinds["stuck"]) / cells
    duplicates = (kinds["duplicate"] + kinds["conflict"]) / cells
    events = (kinds["outage"] + kinds["spike"]) / cells
    assert missing == pytest.approx(cfg.missing_rate, rel=0.2)
    assert glitches == pytest.approx(cfg.glitch_rate, rel=0.3)
    assert duplicates == pytest.approx(cfg.duplicate_rate, rel=0.2)
    assert events == pytest.approx(cfg.anomaly_rate, rel=0.3)
    assert 0.3 < kinds["missing_day"] / (kinds["missing_day"] + kinds["missing_value"]) < 0.8


def test_gaps_include_contiguous_runs_longer_than_a_week(default_fleet: SyntheticFleet) -> None:
    missing = default_fleet.truth_anomalies
    missing = missing[missing["kind"].isin(["missing_day", "missing_value"])].sort_values(KEY)
    new_run = (missing["ds"].diff() != pd.Timedelta(days=1)) | (
        missing[["server_id", "metric"]] != missing[["server_id", "metric"]].shift()
    ).any(axis=1)
    lengths = missing.assign(run=new_run.cumsum()).groupby("run").size()
    assert (lengths >= 2).sum() >= 10
    assert (lengths > 7).sum() >= 1
    assert lengths.max() <= 10


def test_real_events_are_in_actual(fleet: SyntheticFleet) -> None:
    events = fleet.truth_anomalies[fleet.truth_anomalies["kind"].isin(["outage", "spike"])]
    rows = events.merge(fleet.truth_actual, on=KEY)
    outage = rows[rows["kind"] == "outage"]
    assert set(outage["metric"]) == {"cpu", "memory", "network"}
    assert (outage["value"] <= 3.0).all()
    spikes = rows[rows["kind"] == "spike"]
    assert len(spikes) > 0 and (spikes["value"] >= 30.0).all()
    future_keys = events.merge(fleet.truth_future, on=KEY)
    assert future_keys.empty
