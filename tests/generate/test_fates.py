"""The default fleet's holdout outcomes: enough breaches, near misses and idle servers, and honest labels."""

from __future__ import annotations

import pandas as pd
import pytest

from capacity_forecaster.generate import SyntheticFleet


def _cpu_memory(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["metric"].isin(["cpu", "memory"])]


def _breaching(fleet: SyntheticFleet) -> set[str]:
    """Servers whose true cpu or memory exceeds 80 on at least 3 holdout days."""
    future = _cpu_memory(fleet.truth_future)
    days_over = future[future["value"] > 80.0].groupby(["server_id", "metric"]).size()
    return set(days_over[days_over >= 3].index.get_level_values("server_id"))


def _borderline(fleet: SyntheticFleet) -> set[str]:
    """Servers whose holdout maximum over cpu and memory lies in [70, 80)."""
    peak = _cpu_memory(fleet.truth_future).groupby("server_id")["value"].max()
    return set(peak[(peak >= 70.0) & (peak < 80.0)].index)


def _idle(fleet: SyntheticFleet) -> set[str]:
    """Servers whose daily cpu P95 is below 15 % on at least 90 % of observed days."""
    cpu = fleet.truth_actual[fleet.truth_actual["metric"] == "cpu"]
    low = (cpu["value"] < 15.0).groupby(cpu["server_id"]).mean()
    return set(low[low >= 0.9].index)


def _labelled(fleet: SyntheticFleet, fate: str) -> set[str]:
    servers = fleet.truth_servers
    return set(servers.loc[servers["fate"] == fate, "server_id"])


def test_default_fleet_has_breaches_near_misses_and_idle_servers(default_fleet: SyntheticFleet) -> None:
    assert len(_breaching(default_fleet)) >= 8
    assert len(_borderline(default_fleet)) >= 3
    assert len(_idle(default_fleet)) >= 10


@pytest.mark.parametrize("which", ["default", "small"])
def test_fate_labels_match_the_holdout(request: pytest.FixtureRequest, which: str) -> None:
    fleet = request.getfixturevalue(f"{which}_fleet")
    assert _breaching(fleet) == _labelled(fleet, "breach")
    assert _borderline(fleet) == _labelled(fleet, "borderline")
    normal = _labelled(fleet, "normal")
    peak = _cpu_memory(fleet.truth_future).groupby("server_id")["value"].max()
    assert (peak[sorted(normal)] < 70.0).all()


def test_fate_metric_is_the_one_that_breaches(default_fleet: SyntheticFleet) -> None:
    servers = default_fleet.truth_servers.set_index("server_id")
    future = _cpu_memory(default_fleet.truth_future)
    peak = future.groupby(["server_id", "metric"])["value"].max().unstack()
    fated = servers[servers["fate"] != "normal"]
    for server, row in fated.iterrows():
        assert peak.loc[server].idxmax() == row["fate_metric"], server
    assert set(servers.loc[servers["fate"] == "normal", "fate_metric"]) == {""}


def test_breaches_are_foreshadowed_in_history(default_fleet: SyntheticFleet) -> None:
    """A breach comes from a visible rise (trend, growing batch peaks or year-end season), not noise."""
    servers = default_fleet.truth_servers.set_index("server_id")
    breach = servers[servers["fate"] == "breach"]
    actual = default_fleet.truth_actual.merge(breach["fate_metric"], left_on="server_id", right_index=True)
    actual = actual[actual["metric"] == actual["fate_metric"]]
    assert actual["server_id"].nunique() == len(breach)
    for server, series in actual.groupby("server_id")["value"]:
        first_year, last_year = series.iloc[:365], series.iloc[-365:]
        assert last_year.quantile(0.95) > first_year.quantile(0.95) + 5.0, server
        assert (series > 80.0).mean() < 0.03, server


def test_history_mostly_stays_below_80(default_fleet: SyntheticFleet) -> None:
    history = _cpu_memory(default_fleet.truth_actual)
    assert (history["value"] > 80.0).mean() < 0.005
    per_server = (history["value"] > 80.0).groupby(history["server_id"]).mean()
    assert (per_server < 0.03).all()


def test_idle_servers_are_oversized(default_fleet: SyntheticFleet) -> None:
    inventory = default_fleet.inventory.set_index("server_id")
    idle = sorted(_idle(default_fleet))
    busy = inventory.index.difference(idle)
    assert inventory.loc[idle, "cpu_cores"].median() > inventory.loc[busy, "cpu_cores"].median()
