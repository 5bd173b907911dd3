"""generate_fleet: frame layout, date ranges, value ranges, determinism and size invariants."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capacity_forecaster.config import GenerateConfig
from capacity_forecaster.generate import ANOMALY_KINDS, ARCHETYPES, SyntheticFleet, generate_fleet
from capacity_forecaster.generate.fleet import chunk_bounds, fleet_chunks
from capacity_forecaster.schema import INVENTORY_COLUMNS, METRICS, RAW_METRIC_COLUMNS, validate_table

KEY = ["server_id", "metric", "ds"]
METRIC_FRAMES = ("raw_metrics", "truth_actual", "truth_future")
FRAMES = ("inventory", "raw_metrics", "truth_servers", "truth_actual", "truth_future", "truth_anomalies")


def n_observed(cfg: GenerateConfig) -> int:
    return round(cfg.years * 365.25)


def test_frames_have_the_contract_columns_and_types(small_fleet: SyntheticFleet) -> None:
    assert tuple(small_fleet.inventory.columns) == INVENTORY_COLUMNS
    for name in FRAMES:
        validate_table(name, getattr(small_fleet, name))
    for name in METRIC_FRAMES:
        frame = getattr(small_fleet, name)
        assert tuple(frame.columns) == RAW_METRIC_COLUMNS
        assert frame["ds"].dtype == np.dtype("datetime64[ns]")
        assert frame["value"].dtype == np.float64
        assert (frame["ds"] == frame["ds"].dt.normalize()).all()
        assert set(frame["metric"]) == set(METRICS)
    assert list(small_fleet.truth_anomalies.columns) == ["server_id", "ds", "metric", "kind"]
    assert set(small_fleet.truth_anomalies["kind"]) <= set(ANOMALY_KINDS)


@pytest.mark.parametrize("name", [*METRIC_FRAMES, "truth_anomalies"])
def test_metric_frames_are_sorted_by_server_metric_day(small_fleet: SyntheticFleet, name: str) -> None:
    frame = getattr(small_fleet, name)
    resorted = frame.sort_values(KEY, kind="stable")
    assert (resorted.index == frame.index).all()


def test_actual_covers_the_observed_window_completely(
    small_fleet: SyntheticFleet, small_cfg: GenerateConfig
) -> None:
    actual = small_fleet.truth_actual
    days = n_observed(small_cfg)
    assert len(actual) == small_cfg.servers * days * len(METRICS)
    assert actual["ds"].max() == pd.Timestamp(small_cfg.end_date)
    assert actual["ds"].min() == pd.Timestamp(small_cfg.end_date) - pd.Timedelta(days=days - 1)
    per_series = actual.groupby(["server_id", "metric"])["ds"].agg(["nunique", "size"])
    assert (per_series["nunique"] == days).all() and (per_series["size"] == days).all()
    assert actual["value"].notna().all()
    assert actual["value"].between(0.0, 100.0).all()


def test_future_continues_the_day_after_the_end_date(
    small_fleet: SyntheticFleet, small_cfg: GenerateConfig
) -> None:
    future = small_fleet.truth_future
    first = pd.Timestamp(small_cfg.end_date) + pd.Timedelta(days=1)
    per_series = future.groupby(["server_id", "metric"])["ds"].agg(["min", "max", "nunique"])
    assert len(per_series) == small_cfg.servers * len(METRICS)
    assert (per_series["min"] == first).all()
    assert (per_series["max"] == first + pd.Timedelta(days=small_cfg.holdout_days - 1)).all()
    assert (per_series["nunique"] == small_cfg.holdout_days).all()
    assert future["value"].notna().all() and future["value"].between(0.0, 100.0).all()


def test_truth_servers_and_inventory_list_the_same_servers(
    small_fleet: SyntheticFleet, small_cfg: GenerateConfig
) -> None:
    ids = small_fleet.inventory["server_id"]
    assert ids.is_unique
    assert list(ids) == [f"srv-{i:04d}" for i in range(1, small_cfg.servers + 1)]
    assert list(small_fleet.truth_servers["server_id"]) == list(ids)
    for name in METRIC_FRAMES:
        assert set(getattr(small_fleet, name)["server_id"]) == set(ids)


def test_every_archetype_is_present(small_fleet: SyntheticFleet, default_fleet: SyntheticFleet) -> None:
    assert set(small_fleet.truth_servers["archetype"]) == set(ARCHETYPES)
    counts = default_fleet.truth_servers["archetype"].value_counts()
    assert set(counts.index) == set(ARCHETYPES)
    assert counts.min() >= 10


def test_same_config_gives_identical_frames(small_fleet: SyntheticFleet, small_cfg: GenerateConfig) -> None:
    again = generate_fleet(small_cfg)
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(again, name), getattr(small_fleet, name))


def test_another_seed_gives_other_data(small_fleet: SyntheticFleet, small_cfg: GenerateConfig) -> None:
    other = generate_fleet(small_cfg.model_copy(update={"seed": small_cfg.seed + 1}))
    assert not np.allclose(other.truth_actual["value"], small_fleet.truth_actual["value"])
    assert not other.truth_anomalies.equals(small_fleet.truth_anomalies)


def test_without_holdout_future_is_empty_and_every_fate_normal() -> None:
    fleet = generate_fleet(GenerateConfig(servers=8, years=0.5, holdout_days=0, seed=3))
    assert fleet.truth_future.empty
    assert tuple(fleet.truth_future.columns) == RAW_METRIC_COLUMNS
    assert set(fleet.truth_servers["fate"]) == {"normal"}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    servers=st.integers(1, 12),
    years=st.floats(0.02, 0.6),
    holdout=st.integers(0, 40),
    seed=st.integers(0, 2**32),
    end=st.dates(dt.date(2001, 1, 1), dt.date(2035, 12, 31)),
)
def test_any_small_fleet_has_exact_sizes_and_values_in_range(
    servers: int, years: float, holdout: int, seed: int, end: dt.date
) -> None:
    cfg = GenerateConfig(servers=servers, years=years, holdout_days=holdout, seed=seed, end_date=end)
    fleet = generate_fleet(cfg)
    days = n_observed(cfg)
    assert len(fleet.truth_actual) == servers * days * len(METRICS)
    assert len(fleet.truth_future) == servers * holdout * len(METRICS)
    for frame in (fleet.truth_actual, fleet.truth_future):
        assert frame["value"].between(0.0, 100.0).all()
    kinds = fleet.truth_anomalies["kind"].value_counts()
    expected_raw = (
        len(fleet.truth_actual)
        - kinds.get("missing_day", 0)
        + kinds.get("duplicate", 0)
        + kinds.get("conflict", 0)
    )
    assert len(fleet.raw_metrics) == expected_raw
    assert len(fleet.inventory) == servers


def test_categorical_keys_hold_the_same_values() -> None:
    cfg = GenerateConfig(servers=5, years=1, holdout_days=20)
    plain, categorical = generate_fleet(cfg), generate_fleet(cfg, categorical=True)
    for name in ("raw_metrics", "truth_actual", "truth_future"):
        frame = getattr(categorical, name)
        assert isinstance(frame["server_id"].dtype, pd.CategoricalDtype)
        pd.testing.assert_frame_equal(getattr(plain, name), frame.astype({"server_id": object, "metric": object}))


@pytest.mark.parametrize(
    "cfg",
    [
        GenerateConfig(servers=23, years=0.5, holdout_days=40, seed=11),
        GenerateConfig(servers=9, years=0.3, holdout_days=0, seed=2, missing_rate=0.1, glitch_rate=0.05),
    ],
    ids=["holdout", "no-holdout"],
)
def test_fleet_chunks_do_not_depend_on_the_chunk_size(cfg: GenerateConfig) -> None:
    whole = generate_fleet(cfg)
    for size in (1, 7, 1000):
        parts = list(fleet_chunks(cfg, size))
        assert len(parts) == -(-cfg.servers // size)
        for name in ("inventory", "raw_metrics", "truth_servers", "truth_actual", "truth_future", "truth_anomalies"):
            got = pd.concat([getattr(p, name) for p in parts], ignore_index=True)
            pd.testing.assert_frame_equal(got, getattr(whole, name), check_exact=True, obj=f"{name} ({size})")


def test_each_chunk_holds_all_rows_of_its_servers(small_cfg: GenerateConfig) -> None:
    for part in fleet_chunks(small_cfg, 6):
        ids = set(part.inventory["server_id"])
        for name in ("raw_metrics", "truth_actual", "truth_future", "truth_anomalies", "truth_servers"):
            assert set(getattr(part, name)["server_id"]) <= ids, name


def test_chunk_bounds() -> None:
    assert chunk_bounds(10, 4) == [0, 4, 8, 10]
    assert chunk_bounds(3, 10) == [0, 3]
    with pytest.raises(ValueError, match="at least 1"):
        chunk_bounds(3, 0)
