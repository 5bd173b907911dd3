"""The business patterns are really in the data: weekly cycle, holidays, month/quarter/year-end, trends."""

from __future__ import annotations

import holidays
import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.generate import SyntheticFleet


def _series(fleet: SyntheticFleet, metric: str, archetype: str | None = None) -> pd.DataFrame:
    """Wide actual values (rows = days, columns = servers) of one metric, optionally one archetype."""
    servers = fleet.truth_servers
    if archetype is not None:
        servers = servers[servers["archetype"] == archetype]
    actual = fleet.truth_actual
    actual = actual[(actual["metric"] == metric) & actual["server_id"].isin(servers["server_id"])]
    return actual.pivot(index="ds", columns="server_id", values="value")


def _business_days(index: pd.DatetimeIndex) -> pd.Series:
    closed = holidays.financial_holidays("NYSE", years=range(index.year.min(), index.year.max() + 1))
    is_holiday = index.to_series().dt.date.isin(set(closed))
    return pd.Series((index.dayofweek < 5) & ~is_holiday.to_numpy(), index=index)


def test_weekdays_are_busier_than_weekends_on_steady_servers(default_fleet: SyntheticFleet) -> None:
    cpu = _series(default_fleet, "cpu", "steady")
    weekend = cpu.index.dayofweek >= 5
    ratio = cpu[weekend].median() / cpu[~weekend].median()
    assert (ratio < 0.8).all()


def test_nyse_holidays_are_quiet(default_fleet: SyntheticFleet) -> None:
    cpu = _series(default_fleet, "cpu", "steady")
    business = _business_days(cpu.index)
    weekday_holiday = (cpu.index.dayofweek < 5) & ~business.to_numpy()
    assert weekday_holiday.sum() >= 20
    assert (cpu[weekday_holiday].mean() < 0.8 * cpu[business.to_numpy()].mean()).all()


def test_batch_servers_peak_on_the_last_business_days_of_quarters(default_fleet: SyntheticFleet) -> None:
    cpu = _series(default_fleet, "cpu", "batch")
    quarter_ends = pd.date_range(cpu.index.min(), cpu.index.max(), freq="BQE")
    business = _business_days(cpu.index)
    mid_month = business & (cpu.index.day >= 10) & (cpu.index.day <= 20)
    uplift = cpu.loc[quarter_ends].mean() - cpu[mid_month.to_numpy()].mean()
    assert (uplift > 15.0).all()
    month_ends = pd.date_range(cpu.index.min(), cpu.index.max(), freq="BME").difference(quarter_ends)
    assert (cpu.loc[quarter_ends].mean() > cpu.loc[month_ends].mean()).all()
    assert (cpu.loc[month_ends].mean() - cpu[mid_month.to_numpy()].mean() > 10.0).all()


def test_other_servers_have_no_month_end_batch(default_fleet: SyntheticFleet) -> None:
    cpu = _series(default_fleet, "cpu", "steady")
    quarter_ends = pd.date_range(cpu.index.min(), cpu.index.max(), freq="BQE")
    business = _business_days(cpu.index)
    mid_month = business & (cpu.index.day >= 10) & (cpu.index.day <= 20)
    uplift = cpu.loc[quarter_ends].mean() - cpu[mid_month.to_numpy()].mean()
    assert (uplift.abs() < 6.0).all()


def test_seasonal_servers_peak_before_year_end(default_fleet: SyntheticFleet) -> None:
    cpu = _series(default_fleet, "cpu", "seasonal")
    business = _business_days(cpu.index).to_numpy()
    december = business & (cpu.index.month == 12) & (cpu.index.day <= 20)
    spring_summer = business & cpu.index.month.isin([3, 4, 5, 6, 7, 8])
    assert (cpu[december].mean() > 1.3 * cpu[spring_summer].mean()).all()


def test_growing_servers_trend_upwards(default_fleet: SyntheticFleet) -> None:
    for metric in ("cpu", "memory"):
        series = _series(default_fleet, metric, "growing")
        assert (series.iloc[-90:].mean() > series.iloc[:90].mean() + 8.0).all()
    steady = _series(default_fleet, "cpu", "steady")
    assert ((steady.iloc[-90:].mean() - steady.iloc[:90].mean()).abs() < 6.0).all()


def test_memory_leak_servers_saw_tooth_with_restarts(default_fleet: SyntheticFleet) -> None:
    memory = _series(default_fleet, "memory", "memory_leak")
    years = len(memory) / 365.25
    restarts = (memory.diff() < -15.0).sum() / years
    assert (restarts >= 8).all()
    others = _series(default_fleet, "memory", "steady")
    assert ((others.diff() < -15.0).sum() / years < 2).all()


def test_migrated_servers_shift_level_at_the_recorded_day(default_fleet: SyntheticFleet) -> None:
    cpu = _series(default_fleet, "cpu", "migrated")
    shifts = default_fleet.truth_servers.set_index("server_id")["shift_ds"]
    for server in cpu.columns:
        day = shifts[server]
        before = cpu.loc[day - pd.Timedelta(days=60) : day - pd.Timedelta(days=1), server]
        after = cpu.loc[day + pd.Timedelta(days=10) : day + pd.Timedelta(days=70), server]
        assert after.mean() - before.mean() > 8.0, server


def test_noise_grows_with_the_level(default_fleet: SyntheticFleet) -> None:
    cpu = _series(default_fleet, "cpu")
    business = _business_days(cpu.index).to_numpy()
    spread = cpu[business].diff().abs().median()
    level = cpu[business].median()
    low, high = spread[level < 10].median(), spread[level > 30].median()
    assert high > 2 * low


def test_idle_servers_stay_low(default_fleet: SyntheticFleet) -> None:
    cpu = _series(default_fleet, "cpu", "idle")
    memory = _series(default_fleet, "memory", "idle")
    assert ((cpu < 15.0).mean() >= 0.95).all()
    assert (memory.median() < 30.0).all()


def test_disk_grows_slowly_with_cleanup_drops(default_fleet: SyntheticFleet) -> None:
    disk = _series(default_fleet, "disk")
    day_to_day = disk.diff()
    assert (day_to_day.median() > 0).mean() > 0.9
    assert (day_to_day < -3.0).any().mean() > 0.5
    assert disk.max().max() < 95.0


def test_network_is_low_with_a_weekly_cycle(default_fleet: SyntheticFleet) -> None:
    network = _series(default_fleet, "network")
    assert network.median().median() < 15.0
    busy = _series(default_fleet, "network", "steady")
    weekend = busy.index.dayofweek >= 5
    assert (busy[weekend].mean() < busy[~weekend].mean()).all()


@pytest.mark.parametrize("metric", ["cpu", "memory", "disk", "network"])
def test_future_continues_the_recent_level(default_fleet: SyntheticFleet, metric: str) -> None:
    actual = _series(default_fleet, metric)
    future = default_fleet.truth_future
    future = future[future["metric"] == metric].pivot(index="ds", columns="server_id", values="value")
    last, first = actual.iloc[-28:].median(), future.iloc[:28].median()
    assert (np.abs(first - last) < 12.0).mean() > 0.95
