"""Standard sizes never below the need, and prices from the fleet's own inventory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from risk_frames import make_forecast, make_inventory

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.risk.sizing import CostModel, capacity_needs, standard_size

SIZES = (2, 4, 8, 16, 32)


def test_standard_size_rounds_up_and_flags_too_big() -> None:
    size, too_big = standard_size(np.array([0.5, 4.0, 4.2, 31.0, 40.0, np.nan]), SIZES)
    assert size[:5].tolist() == [2, 4, 8, 32, 32] and np.isnan(size[5])
    assert too_big.tolist() == [False, False, False, False, True, False]


@settings(max_examples=60, deadline=None)
@given(st.floats(0.0, 32.0))
def test_standard_size_is_never_below_the_need(need: float) -> None:
    size, too_big = standard_size(np.array([need]), SIZES)
    assert size[0] >= need - 1e-9 and not too_big[0]


@settings(max_examples=30, deadline=None)
@given(st.floats(1.0, 99.0), st.floats(1.0, 99.0), st.sampled_from([2, 4, 8, 16, 64]), st.floats(0.0, 1.0))
def test_sized_capacity_keeps_the_upper_bound_plus_headroom_under_target(cpu: float, memory: float, cores: int,
                                                                        headroom: float) -> None:
    cfg = RiskConfig(headroom=headroom, target_utilisation=70.0, consolidation_target=70.0)
    forecasts = pd.concat([make_forecast("a", "cpu", [cpu - 1, cpu - 1], spread=1.0),
                           make_forecast("a", "memory", [memory - 1, memory - 1], spread=1.0)])
    inv = make_inventory([{"server_id": "a", "cpu_cores": cores, "memory_gb": cores * 4}])
    row = capacity_needs(forecasts, inv, cfg).iloc[0]
    used_cores = row["cpu_peak_upper"] / 100 * cores * (1 + headroom)
    assert row["sized_cpu_cores"] >= row["cpu_needed"] - 1e-9 or row["exceeds_largest_size"]
    if not row["exceeds_largest_size"]:
        assert used_cores / row["sized_cpu_cores"] * 100 <= 70.0 + 1e-6
        assert row["sized_memory_gb"] >= row["memory_needed"] - 1e-9


def test_capacity_needs_example() -> None:
    forecasts = pd.concat([make_forecast("a", "cpu", [20.0, 35.0], spread=5.0),
                           make_forecast("a", "memory", [50.0, 45.0], spread=10.0)])
    inv = make_inventory([{"server_id": "a", "cpu_cores": 16, "memory_gb": 64}, {"server_id": "b"}])
    needs = capacity_needs(forecasts, inv, RiskConfig()).set_index("server_id")
    # cpu: 40 % of 16 cores = 6.4 cores x 1.2 / 0.8 = 9.6 -> 12; memory: 60 % of 64 = 38.4 GB x 1.5 = 57.6 -> 64
    assert needs.loc["a", "cpu_needed"] == pytest.approx(9.6)
    assert needs.loc["a", "sized_cpu_cores"] == 12 and needs.loc["a", "sized_memory_gb"] == 64
    assert np.isnan(needs.loc["b", "sized_cpu_cores"])


def test_cost_model_recovers_prices_and_keeps_a_servers_premium() -> None:
    rows = [{"server_id": f"v{i}", "server_type": "virtual", "cpu_cores": c, "memory_gb": g,
             "monthly_cost_usd": 30 + 20 * c + 2 * g} for i, (c, g) in enumerate([(2, 8), (4, 16), (8, 64), (16, 64),
                                                                                  (4, 32)])]
    inv = make_inventory(rows)
    model = CostModel.fit(inv)
    assert model.rates.loc["virtual"].to_numpy() == pytest.approx([30, 20, 2], abs=1e-6)
    premium = inv.iloc[[2]].assign(monthly_cost_usd=2 * (30 + 160 + 128))
    assert model.project(premium, np.array([4]), np.array([32]))[0] == pytest.approx(2 * (30 + 80 + 64))


def test_cost_model_without_enough_servers_scales_with_capacity() -> None:
    inv = make_inventory([{"server_id": "a", "cpu_cores": 8, "memory_gb": 32, "monthly_cost_usd": 400.0}])
    model = CostModel.fit(inv)
    assert model.rates.empty
    assert model.project(inv, np.array([4]), np.array([16]))[0] == pytest.approx(200.0)
