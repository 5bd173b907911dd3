"""Archetypes are distinct enough that K-Means on simple per-server profiles recovers them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from capacity_forecaster.generate import ARCHETYPES, SyntheticFleet
from capacity_forecaster.generate.archetypes import archetype_counts


def _profiles(fleet: SyntheticFleet) -> pd.DataFrame:
    """Per-server features a capacity planner would compute from daily history (cpu and memory)."""
    wide = fleet.truth_actual.pivot_table(index="ds", columns=["metric", "server_id"], values="value")
    cpu, memory = wide["cpu"], wide["memory"]
    days = cpu.index
    business = np.asarray(days.dayofweek < 5)
    to_month_end = np.asarray((days + pd.offsets.BMonthEnd(0) - days).days)
    month_end = business & (to_month_end <= 3)
    mid_month = business & np.asarray((days.day >= 10) & (days.day <= 20))
    december = business & np.asarray((days.month == 12) & (days.day <= 20))
    spring_summer = business & np.asarray(days.month.isin([3, 4, 5, 6, 7, 8]))
    level_cpu, level_mem = cpu.mean() + 1.0, memory.mean() + 1.0
    years = (np.arange(len(days)) - len(days) / 2) / 365.25

    def slope(frame: pd.DataFrame) -> pd.Series:
        return frame.mul(years, axis=0).sum() / (years**2).sum()

    steps = cpu[business].rolling(10).median()
    return pd.DataFrame(
        {
            "cpu_mean": cpu.mean(),
            "cpu_p95": cpu.quantile(0.95),
            "memory_mean": memory.mean(),
            "weekly": (cpu[business].mean() - cpu[~business].mean()) / level_cpu,
            "month_end": (cpu[month_end].mean() - cpu[mid_month].mean()) / level_cpu,
            "year_end": (cpu[december].mean() - cpu[spring_summer].mean()) / level_cpu,
            "trend": np.maximum(slope(cpu) / level_cpu, slope(memory) / level_mem),
            "memory_per_cpu": memory.mean() / level_cpu,
            "saw_tooth": (memory.diff() < -10.0).sum(),
            "level_shift": (steps - steps.shift(10)).abs().max() / level_cpu,
        }
    )


def test_kmeans_on_profiles_recovers_the_archetypes(default_fleet: SyntheticFleet) -> None:
    profiles = _profiles(default_fleet)
    truth = default_fleet.truth_servers.set_index("server_id").loc[profiles.index, "archetype"]
    labels = KMeans(len(ARCHETYPES), n_init=20, random_state=0).fit_predict(
        StandardScaler().fit_transform(profiles)
    )
    score = adjusted_rand_score(truth, labels)
    assert score >= 0.8, pd.crosstab(truth, labels)


@pytest.mark.parametrize("servers", [1, 6, 7, 20, 100, 1001])
def test_archetype_counts_add_up_and_cover_every_archetype(servers: int) -> None:
    counts = archetype_counts(servers)
    assert sum(counts.values()) == servers
    assert set(counts) == set(ARCHETYPES)
    if servers >= len(ARCHETYPES):
        assert min(counts.values()) >= 1
