"""The inventory looks like a bank fleet: names, owners, environments, sizes and costs."""

from __future__ import annotations

import pandas as pd

from capacity_forecaster.generate import SyntheticFleet
from capacity_forecaster.schema import INVENTORY_COLUMNS

STANDARD_CORES = {2, 4, 8, 16, 24, 32, 48, 64}
STANDARD_MEMORY_GB = {8, 16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024}


def test_columns_and_identity(default_fleet: SyntheticFleet) -> None:
    inventory = default_fleet.inventory
    assert tuple(inventory.columns) == INVENTORY_COLUMNS
    assert inventory["server_id"].is_unique and inventory["hostname"].is_unique
    assert inventory.notna().all().all()
    assert inventory["hostname"].str.fullmatch(r"[a-z]+\d-[a-z]{3}-[a-z]+-[pud]\d{3}").all()


def test_hostnames_agree_with_the_other_columns(default_fleet: SyntheticFleet) -> None:
    inventory = default_fleet.inventory
    parts = inventory["hostname"].str.extract(r"^(?P<dc>[a-z0-9]+)-[a-z]{3}-[a-z]+-(?P<env>[pud])\d{3}$")
    assert (parts["dc"] == inventory["datacenter"].str.lower()).all()
    assert (parts["env"] == inventory["environment"].str[0]).all()


def test_ownership_and_placement_mix(default_fleet: SyntheticFleet) -> None:
    inventory = default_fleet.inventory
    env = inventory["environment"].value_counts(normalize=True)
    assert set(env.index) == {"prod", "uat", "dev"}
    assert 0.5 <= env["prod"] <= 0.7 and 0.1 <= env["uat"] <= 0.3 and 0.1 <= env["dev"] <= 0.3
    assert inventory["datacenter"].nunique() >= 3
    assert inventory["business_unit"].nunique() >= 6
    assert set(inventory["server_type"]) == {"physical", "virtual"}
    apps = inventory.groupby("application")["business_unit"].nunique()
    assert (apps == 1).all(), "an application belongs to one business unit"


def test_sizes_are_standard_and_costs_plausible(default_fleet: SyntheticFleet) -> None:
    inventory = default_fleet.inventory
    assert set(inventory["cpu_cores"]) <= STANDARD_CORES
    assert set(inventory["memory_gb"]) <= STANDARD_MEMORY_GB
    per_core = inventory["monthly_cost_usd"] / inventory["cpu_cores"]
    by_type = per_core.groupby(inventory["server_type"]).median()
    assert by_type["physical"] > 1.5 * by_type["virtual"]
    assert inventory["monthly_cost_usd"].between(50.0, 20_000.0).all()
    physical = inventory[inventory["server_type"] == "physical"]
    assert physical["cpu_cores"].min() >= 16


def test_servers_close_to_capacity_are_production(default_fleet: SyntheticFleet) -> None:
    merged = pd.merge(default_fleet.inventory, default_fleet.truth_servers, on="server_id")
    assert (merged.loc[merged["fate"] != "normal", "environment"] == "prod").all()
