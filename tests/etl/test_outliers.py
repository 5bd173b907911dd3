"""Decomposition, rolling medians and stuck-value glitches on small (series x days) grids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from etl_frames import START, series_values

from capacity_forecaster.etl.calendar import day_calendar
from capacity_forecaster.etl.outliers import (
    decompose,
    nanmedian_rows,
    outlier_cells,
    recurring_in_month,
    rolling_median,
    stuck_cells,
)

DAY0 = int((START - pd.Timestamp("1970-01-01")).days)


def _noisy(n_days: int = 140, seed: int = 0) -> np.ndarray:
    return series_values(n_days, 40.0, seed)[None, :]


def test_nanmedian_rows_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    block = rng.normal(size=(50, 17))
    block[rng.random(block.shape) < 0.3] = np.nan
    block[3] = np.nan
    expected = np.full(50, np.nan)
    has = ~np.isnan(block).all(axis=1)
    expected[has] = np.nanmedian(block[has], axis=1)
    np.testing.assert_allclose(nanmedian_rows(block), expected)


@pytest.mark.parametrize("center", [True, False])
def test_rolling_median_matches_pandas(center: bool) -> None:
    rng = np.random.default_rng(2)
    values = rng.normal(size=(3, 60))
    values[rng.random(values.shape) < 0.2] = np.nan
    expected = pd.DataFrame(values.T).rolling(7, center=center, min_periods=3).median().to_numpy().T
    np.testing.assert_allclose(rolling_median(values, 7, 3, center=center), expected)


def test_rolling_median_with_step_is_exact_on_a_line() -> None:
    line = np.arange(50.0)[None, :]
    np.testing.assert_allclose(rolling_median(line, 9, 1, step=4)[:, 4:41], line[:, 4:41])


def test_stuck_run_repeats_are_flagged_and_its_first_value_kept() -> None:
    values = _noisy()
    values[0, 50:55] = values[0, 50]
    flagged = stuck_cells(values, 3)
    assert np.flatnonzero(flagged[0]).tolist() == [51, 52, 53, 54]


def test_a_repeated_daily_p95_of_days_whose_samples_varied_is_not_stuck() -> None:
    values = _noisy()
    values[0, 50:57] = values[0, 50]  # seven equal P95s, as a quantised CPU % gives
    varied = np.zeros(values.shape, dtype=bool)
    assert stuck_cells(values, 3, varied)[0].sum() == 6  # constant samples: a stuck sensor
    varied[0, 50:57] = True  # samples up to 11 % each of those days
    assert not stuck_cells(values, 3, varied).any()
    varied[0, 53:57] = False  # from day 53 constant samples repeating day 52's value: those repeats are stuck
    assert np.flatnonzero(stuck_cells(values, 3, varied)[0]).tolist() == [53, 54, 55, 56]


def test_etl_keeps_a_quantised_p95_whose_samples_varied(tmp_path) -> None:
    """Rnd VM 100's CPU: 2.200 % seven days running with samples up to 11 % (ingest's value_max)."""
    from capacity_forecaster.config import EtlConfig
    from capacity_forecaster.etl.transform import transform

    rng = np.random.default_rng(7)
    days = pd.date_range("2013-07-01", periods=62)
    p95 = np.round(2.0 + rng.normal(0, 0.2, len(days)), 3)
    p95[23:30] = 2.2
    raw = pd.DataFrame({"server_id": "bitbrains-100", "ds": days, "metric": "cpu", "value": p95,
                        "value_mean": p95 - 0.5, "value_max": p95 + 9.0, "samples": 288})
    inventory = pd.DataFrame({"server_id": ["bitbrains-100"]})
    kept = transform(raw, inventory, EtlConfig()).metrics
    assert not kept["is_outlier"].any() and not kept["is_imputed"].any()
    np.testing.assert_array_equal(kept["value"].to_numpy(), p95)
    constant = transform(raw.assign(value_mean=p95, value_max=p95), inventory, EtlConfig()).metrics
    assert constant["is_imputed"].sum() == 6  # the same run from a sensor whose samples never moved


def test_etl_keeps_a_constant_gauge_while_another_metric_of_its_server_moves() -> None:
    """Rnd VM 250's memory read 2.00 % all day for 16 days while its CPU samples moved: a measurement,
    not a stuck agent (which repeats every reading of its server, as VM 407's CPU and memory did)."""
    from capacity_forecaster.config import EtlConfig
    from capacity_forecaster.etl.transform import transform

    rng = np.random.default_rng(11)
    days = pd.date_range("2013-07-01", periods=90)
    memory = np.round(2.0 + rng.normal(0, 0.3, len(days)), 2)
    memory[74:] = 2.0
    cpu = np.round(10 + rng.normal(0, 2, len(days)), 2)
    frames = [pd.DataFrame({"server_id": "bitbrains-250", "ds": days, "metric": "memory", "value": memory,
                            "value_mean": memory, "value_max": memory, "samples": 288}),
              pd.DataFrame({"server_id": "bitbrains-250", "ds": days, "metric": "cpu", "value": cpu,
                            "value_mean": cpu - 3, "value_max": cpu + 5, "samples": 288})]
    raw = pd.concat(frames, ignore_index=True)
    inventory = pd.DataFrame({"server_id": ["bitbrains-250"]})
    kept = transform(raw, inventory, EtlConfig()).metrics
    mem = kept[kept["metric"] == "memory"].sort_values("ds")
    assert not mem["is_imputed"].any() and mem["value"].notna().all()
    np.testing.assert_array_equal(mem["value"].to_numpy(), memory)
    # CPU on 0 for every sample of those days (VM 250 as it is): an idle VM, its memory reading is kept.
    idle = raw.copy()
    late = (idle["metric"] == "cpu") & (idle["ds"] >= days[74])
    idle.loc[late, ["value", "value_mean", "value_max"]] = 0.0
    still = transform(idle, inventory, EtlConfig()).metrics
    np.testing.assert_array_equal(still.loc[still["metric"] == "memory"].sort_values("ds")["value"], memory)
    # With the CPU's samples constant mid-range too, the whole server's agent was stuck: the repeats go.
    frozen = raw.assign(value_mean=raw["value"], value_max=raw["value"])
    frozen.loc[(frozen["metric"] == "cpu") & (frozen["ds"] >= days[74]), "value"] = cpu[74]
    frozen["value_mean"] = frozen["value_max"] = frozen["value"]
    stuck = transform(frozen, inventory, EtlConfig()).metrics
    replaced = stuck[stuck["metric"] == "memory"].sort_values("ds")
    gone = replaced["value"].isna() | replaced["is_imputed"].astype(bool)
    assert gone.iloc[75:].all() and not gone.iloc[:74].any()  # the first of the run is kept
    # A quiet NIC reading 0 on every sample says nothing of the agent: the frozen memory is still replaced.
    nic = frozen[frozen["metric"] == "cpu"].assign(metric="network", value=0.0, value_mean=0.0, value_max=0.0)
    quiet = transform(pd.concat([frozen, nic], ignore_index=True), inventory, EtlConfig()).metrics
    replaced = quiet[quiet["metric"] == "memory"].sort_values("ds")
    assert (replaced["value"].isna() | replaced["is_imputed"].astype(bool)).iloc[75:].all()


def test_runs_at_the_bounds_and_short_runs_are_not_glitches() -> None:
    values = _noisy()
    values[0, 10:20] = 0.0
    values[0, 30:35] = 100.0
    values[0, 60:62] = values[0, 60]
    assert not stuck_cells(values, 3).any()


def test_a_series_that_repeats_values_often_is_not_flagged() -> None:
    rng = np.random.default_rng(3)
    quantised = rng.integers(40, 43, size=(1, 200)).astype(float)  # ties every third day by chance
    assert not stuck_cells(quantised, 3).any()


def test_a_flat_series_is_not_a_glitch_but_a_long_run_in_a_noisy_one_is() -> None:
    flat = np.full((1, 100), 43.2)
    flat[0, 50] = 44.0
    assert not stuck_cells(flat, 3).any()
    noisy = _noisy(200)
    noisy[0, 100:130] = noisy[0, 100]
    assert stuck_cells(noisy, 3)[0].sum() == 29


def test_a_short_series_never_has_glitches() -> None:
    values = np.array([[10.0, 12.0, 12.0, 12.0, 15.0, 11.0]])
    assert not stuck_cells(values, 3).any()


def test_decomposition_follows_the_weekly_cycle_and_scores_a_spike() -> None:
    values = _noisy()
    values[0, 70] += 30.0
    decomp = decompose(values, day_calendar(DAY0, values.shape[1]))
    weekday = (np.arange(values.shape[1]) + START.dayofweek) % 7
    normal = np.ones(values.shape[1], dtype=bool)
    normal[70] = False
    resid = (values - decomp.expected)[0, normal]
    assert np.abs(resid).mean() < 1.5, "expected values track business days and weekends"
    assert decomp.expected[0, weekday == 5].mean() < 0.7 * decomp.expected[0, weekday == 2].mean()
    assert decomp.z_event[0, 70] > 10
    assert np.abs(decomp.z_event[0, normal]).max() < 4.5
    assert outlier_cells(decomp, 6.0)[0].nonzero()[0].tolist() == [70]


def test_a_level_shift_is_not_an_event() -> None:
    values = _noisy(seed=4)
    values[0, 60:] *= 1.6  # a migration: more load, the same weekly shape
    decomp = decompose(values, day_calendar(DAY0, values.shape[1]))
    assert np.nanmax(np.abs(decomp.z_event)) < 4.0


def test_a_saw_tooth_restart_is_not_an_event() -> None:
    days = np.arange(140)
    saw = 20.0 + 1.5 * (days % 20) + np.random.default_rng(5).normal(0, 0.3, 140)
    decomp = decompose(saw[None, :], day_calendar(DAY0, 140))
    assert np.nanmax(np.abs(decomp.z_event)) < 4.0


def test_decompose_handles_empty_and_tiny_grids() -> None:
    decomp = decompose(np.array([[5.0, np.nan, 7.0]]), day_calendar(DAY0, 3))
    assert decomp.expected.shape == (1, 3) and np.isfinite(decomp.expected).all()
    assert decompose(np.zeros((0, 0)), day_calendar(DAY0, 0)).z.shape == (0, 0)


def _months(first: str, last: str, seed: int) -> tuple[pd.DatetimeIndex, np.ndarray]:
    days = pd.date_range(first, last, freq="D")
    return days, np.random.default_rng(seed).normal(20.0, 1.5, len(days))


def _decompose(days: pd.DatetimeIndex, values: np.ndarray):  # noqa: ANN202 - Decomposition
    first = int((days[0] - pd.Timestamp("1970-01-01")).days)
    return decompose(values[None, :], day_calendar(first, len(days)))


@pytest.mark.parametrize("batch", ["last 3 business days", "calendar days 27-31", "first 2 business days"])
def test_a_monthly_batch_in_a_three_month_history_is_not_an_outlier(batch: str) -> None:
    # Too few months for month-end effects (3 of each kind): the batch recurs, so it is the pattern.
    days, values = _months("2025-03-01", "2025-05-31", 2)
    if batch == "calendar days 27-31":
        on = days.day >= 27
    elif batch == "last 3 business days":
        on = (days + pd.offsets.BDay(3)).month != days.month
        on &= days.dayofweek < 5
    else:
        on = ((days - pd.offsets.BDay(2)).month != days.month) & (days.dayofweek < 5)
    values[on] = 79.0 + np.random.default_rng(3).normal(0.0, 1.0, int(on.sum()))
    decomp = _decompose(days, values)
    assert on.sum() >= 6
    assert not outlier_cells(decomp, 4.0).any(), days[outlier_cells(decomp, 4.0)[0]].tolist()


def test_a_one_off_month_end_spike_stays_an_outlier() -> None:
    days, values = _months("2025-03-01", "2025-05-31", 4)
    values[days == pd.Timestamp("2025-04-29")] = 80.0
    assert days[outlier_cells(_decompose(days, values), 6.0)[0]].tolist() == [pd.Timestamp("2025-04-29")]


def test_a_month_end_rise_in_one_of_six_months_does_not_recur() -> None:
    # Two spikes two months apart at the same place: one other month of five is not half of them.
    days, values = _months("2025-01-01", "2025-06-30", 5)
    for day in ("2025-02-27", "2025-04-29"):
        values[days == pd.Timestamp(day)] = 85.0
    flagged = set(days[outlier_cells(_decompose(days, values), 6.0)[0]])
    assert {pd.Timestamp("2025-02-27"), pd.Timestamp("2025-04-29")} <= flagged


def test_recurrence_needs_two_months_and_ignores_mid_month_days() -> None:
    days, values = _months("2025-05-01", "2025-05-31", 6)
    values[-3:] = 80.0
    first = int((days[0] - pd.Timestamp("1970-01-01")).days)
    z = np.where(np.arange(len(days)) >= 28, 10.0, 0.0)[None, :]
    assert not recurring_in_month(z, day_calendar(first, len(days))).any()
    days, _ = _months("2025-05-01", "2025-06-30", 6)
    z = np.zeros((1, len(days)))
    z[0, [14, 45]] = 10.0  # 15 May and 15 June: mid-month, not a start or end batch
    first = int((days[0] - pd.Timestamp("1970-01-01")).days)
    assert not recurring_in_month(z, day_calendar(first, len(days))).any()
    assert recurring_in_month(np.zeros((0, 0)), day_calendar(first, 0)).shape == (0, 0)
