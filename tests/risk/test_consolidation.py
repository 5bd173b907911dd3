"""Packing never overloads a host, keeps the bank's placement rules, and MILP is never worse than FFD."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from risk_frames import make_forecast, make_inventory

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.consolidation import consolidate, fits, kept_cost, pack_ffd, pack_milp


def _host_load(load: np.ndarray, host: np.ndarray) -> np.ndarray:
    total = np.zeros_like(load)
    np.add.at(total, host, load)
    return total


@st.composite
def fleets(draw: st.DrawFn, max_servers: int = 12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, max_servers))
    days = draw(st.integers(1, 6))
    capacity = np.array(draw(st.lists(st.tuples(st.sampled_from([2, 4, 8, 16]), st.sampled_from([8, 16, 64])),
                                      min_size=n, max_size=n)), dtype=float)
    share = np.array(draw(st.lists(st.floats(0.0, 0.6), min_size=n * days * 2, max_size=n * days * 2)))
    load = share.reshape(n, days, 2) * capacity[:, None, :]
    cost = np.array(draw(st.lists(st.floats(10, 1000), min_size=n, max_size=n)))
    return load, capacity, cost


@settings(max_examples=80, deadline=None)
@given(fleets(max_servers=20), st.floats(0.6, 0.9), st.integers(2, 6))
def test_ffd_never_exceeds_capacity_or_the_per_host_cap(fleet: tuple, limit: float, cap: int) -> None:
    load, capacity, _ = fleet
    packing = pack_ffd(load, capacity, limit, cap)
    host = packing.host
    assert (host[host] == host).all()  # every host keeps its own workload
    kept = np.unique(host)
    assert fits(_host_load(load, host)[kept], capacity[kept], limit).all()  # shares <= 0.6 <= limit
    assert np.bincount(host).max() <= cap


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fleets(max_servers=6), st.floats(0.6, 0.9))
def test_milp_is_never_worse_than_ffd_and_stays_feasible(fleet: tuple, limit: float) -> None:
    load, capacity, cost = fleet
    load = np.minimum(load, 0.5 * limit * capacity[:, None, :])  # every server fits on itself
    ffd = pack_ffd(load, capacity, limit, 4)
    exact = pack_milp(load, capacity, cost, limit, 4, time_limit=5.0)
    assert kept_cost(exact, cost) <= kept_cost(ffd, cost) + 1e-6
    kept = np.unique(exact.host)
    assert fits(_host_load(load, exact.host)[kept], capacity[kept], limit).all()
    assert np.bincount(exact.host).max() <= 4


def test_milp_finds_the_cheaper_host_that_ffd_misses() -> None:
    # FFD opens the biggest box first and keeps it; keeping a small cheap box is cheaper.
    capacity = np.array([[10.0, 10.0], [6.0, 6.0], [6.0, 6.0]])
    load = np.ones((3, 1, 2))
    cost = np.array([100.0, 10.0, 10.0])
    ffd = pack_ffd(load, capacity, 1.0, 8)
    exact = pack_milp(load, capacity, cost, 1.0, 8, time_limit=5.0)
    assert ffd.host.tolist() == [0, 0, 0] and kept_cost(ffd, cost) == 100.0
    assert kept_cost(exact, cost) == 10.0 and exact.method == "milp"


def test_daily_sum_packs_what_a_sum_of_peaks_would_not() -> None:
    # Two servers peaking on different days fit together although their peaks add up to 120 %.
    load = np.array([[[6.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [6.0, 1.0]]])
    capacity = np.array([[10.0, 10.0], [10.0, 10.0]])
    assert pack_ffd(load, capacity, 0.7, 8).host.tolist() == [0, 0]


def _placement_case(mix: bool) -> pd.DataFrame:
    rows, frames = [], []
    for i, (dc, env) in enumerate([(dc, env) for dc in ("NYC1", "LON1") for env in ("prod", "uat", "dev")] * 3):
        sid = f"s{i:02d}"
        rows.append({"server_id": sid, "datacenter": dc, "environment": env, "cpu_cores": 16, "memory_gb": 64,
                     "monthly_cost_usd": 500.0 + i})
        frames += [make_forecast(sid, "cpu", np.full(10, 8.0), spread=2.0),
                   make_forecast(sid, "memory", np.full(10, 10.0), spread=2.0)]
    inv = make_inventory(rows)
    forecasts = pd.concat(frames, ignore_index=True)
    cfg = RiskConfig(mix_nonprod_environments=mix, max_servers_per_host=3)
    placed = consolidate(pd.Index(inv["server_id"]), forecasts, inv, cfg)
    return placed.merge(inv, on="server_id").merge(
        inv[["server_id", "datacenter", "environment"]].rename(
            columns={"server_id": "host_server_id", "datacenter": "host_dc", "environment": "host_env"}),
        on="host_server_id")


def test_same_datacenter_and_environment_and_a_cap_per_host() -> None:
    placed = _placement_case(mix=False)
    assert (placed["datacenter"] == placed["host_dc"]).all()
    assert (placed["environment"] == placed["host_env"]).all()
    assert placed.groupby("host_server_id").size().max() <= 3
    assert (placed["server_id"] != placed["host_server_id"]).sum() == 12  # 6 groups of 3 -> 1 host each


def test_prod_never_mixes_with_non_prod_even_when_non_prod_may_mix() -> None:
    placed = _placement_case(mix=True)
    assert ((placed["environment"] == "prod") == (placed["host_env"] == "prod")).all()
    assert (placed["datacenter"] == placed["host_dc"]).all()
    mixed = placed[(placed["environment"] != placed["host_env"])]
    assert len(mixed) > 0  # uat and dev did share hosts
    assert (placed["host_peak_cpu"] <= 70.0).all() and (placed["host_peak_memory"] <= 70.0).all()
