"""Server inventory of a bank fleet: names, ownership, placement, sizes and monthly cost."""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.generate.archetypes import FleetPlan
from capacity_forecaster.schema import INVENTORY_COLUMNS

# Business unit -> (hostname code, applications).
BUSINESS_UNITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Retail Banking": (
        "rtl",
        ("online-banking", "mobile-api", "core-deposits", "loan-origination", "atm-switch"),
    ),
    "Markets": ("mkt", ("trade-capture", "market-data", "pricing-engine", "fix-gateway")),
    "Payments": ("pay", ("swift-gateway", "ach-processor", "card-auth", "wire-transfer")),
    "Risk": ("rsk", ("credit-risk", "market-risk-var", "aml-screening", "fraud-detection")),
    "Treasury": ("trs", ("liquidity-mgmt", "alm-engine", "cash-forecast")),
    "Wealth": ("wlt", ("portfolio-mgmt", "advisor-portal", "client-statements")),
    "Corporate IT": ("cit", ("active-directory", "email-relay", "hr-portal", "file-transfer", "monitoring")),
}
DATACENTERS = {"NYC1": 0.35, "NJ2": 0.3, "LON1": 0.25, "SGP1": 0.1}
ENVIRONMENTS = ("prod", "uat", "dev")
# Archetypes lean towards the units that run such workloads (year-end: wealth and retail statements,
# tax; month-end batches: payments, risk, treasury); others are spread evenly.
_BU_WEIGHTS = {
    "seasonal": {"Retail Banking": 3.0, "Wealth": 3.0, "Treasury": 2.0},
    "batch": {"Payments": 3.0, "Risk": 3.0, "Treasury": 2.0, "Markets": 1.5},
}
_ROLE_WEIGHTS = {
    "idle": {"app": 3.0, "web": 2.0, "db": 1.0, "util": 2.0},
    "steady": {"app": 3.0, "web": 2.0, "db": 2.0, "mq": 1.0},
    "growing": {"app": 3.0, "db": 2.0, "web": 1.0},
    "batch": {"bat": 4.0, "etl": 2.0, "db": 1.0},
    "memory_leak": {"app": 4.0, "mq": 1.0},
    "seasonal": {"app": 2.0, "web": 2.0, "db": 1.0},
    "migrated": {"app": 2.0, "db": 2.0, "web": 1.0},
}
# Environment mix: idle boxes are often forgotten test machines; servers that near capacity are prod.
# The others are weighted so the whole fleet is about 60/20/20.
_ENV_WEIGHTS = {"idle": (0.3, 0.3, 0.4), "fated": (1.0, 0.0, 0.0), "other": (0.56, 0.23, 0.21)}
_PHYSICAL_PROB = {"batch": 0.5, "idle": 0.35}
# Standard sizes: (choices, probabilities) for cores; memory = cores x GB-per-core.
_CORES = {
    "virtual": ((2, 4, 8, 16), (0.15, 0.35, 0.35, 0.15)),
    "physical": ((16, 24, 32, 48, 64), (0.2, 0.2, 0.3, 0.2, 0.1)),
    # Idle servers are usually oversized, which is what makes them worth consolidating.
    "idle-virtual": ((8, 16), (0.5, 0.5)),
    "idle-physical": ((32, 48, 64), (0.4, 0.35, 0.25)),
}
_GB_PER_CORE = {"default": ((4, 8, 16), (0.45, 0.45, 0.1)), "memory_leak": ((8, 16), (0.5, 0.5))}
# Monthly cost: fixed + per core + per GB; physical carries hardware, power, rack space and licences.
_COST = {"physical": (300.0, 42.0, 3.2), "virtual": (30.0, 21.0, 2.4)}


def _weighted_choice(
    rng: np.random.Generator, options: list[str], weights: dict[str, float], size: int
) -> np.ndarray:
    w = np.array([weights.get(o, 1.0) for o in options])
    return np.array(options, dtype=object)[rng.choice(len(options), size=size, p=w / w.sum())]


def build_inventory(ids: np.ndarray, plan: FleetPlan, rng: np.random.Generator) -> pd.DataFrame:
    """The server inventory, consistent with each server's archetype and fate.

    Args:
        ids: server ids, one per server of ``plan``.
        plan: the fleet plan.
        rng: random generator (consumed).

    Returns:
        Frame with exactly the columns of ``schema.INVENTORY_COLUMNS``: server_id, hostname,
        application, business_unit, environment, datacenter, server_type, cpu_cores, memory_gb,
        monthly_cost_usd.
    """
    n = len(ids)
    units = list(BUSINESS_UNITS)
    business_unit = np.empty(n, dtype=object)
    role = np.empty(n, dtype=object)
    environment = np.empty(n, dtype=object)
    server_type = np.empty(n, dtype=object)
    for name in np.unique(plan.archetype):
        members = np.flatnonzero(plan.archetype == name)
        business_unit[members] = _weighted_choice(rng, units, _BU_WEIGHTS.get(name, {}), len(members))
        weights = _ROLE_WEIGHTS.get(name, {"app": 1.0})
        role[members] = _weighted_choice(rng, list(weights), weights, len(members))
        physical = rng.random(len(members)) < _PHYSICAL_PROB.get(name, 0.3)
        server_type[members] = np.where(physical, "physical", "virtual")
    group = np.where(plan.archetype == "idle", "idle", np.where(plan.fate == "normal", "other", "fated"))
    for name, shares in _ENV_WEIGHTS.items():
        members = np.flatnonzero(group == name)
        environment[members] = _weighted_choice(
            rng, list(ENVIRONMENTS), dict(zip(ENVIRONMENTS, shares, strict=True)), len(members)
        )

    application = np.empty(n, dtype=object)
    for unit, (_, apps) in BUSINESS_UNITS.items():
        members = np.flatnonzero(business_unit == unit)
        application[members] = np.array(apps, dtype=object)[rng.integers(0, len(apps), len(members))]
    datacenter = _weighted_choice(rng, list(DATACENTERS), DATACENTERS, n)

    cores = np.zeros(n, dtype=np.int64)
    size_class = np.where(plan.archetype == "idle", "idle-", "") + server_type
    for name, (choices, probs) in _CORES.items():
        members = np.flatnonzero(size_class == name)
        cores[members] = rng.choice(choices, size=len(members), p=probs)
    gb_per_core = np.zeros(n, dtype=np.int64)
    for name, (choices, probs) in _GB_PER_CORE.items():
        members = np.flatnonzero(
            (plan.archetype == name) if name != "default" else (plan.archetype != "memory_leak")
        )
        gb_per_core[members] = rng.choice(choices, size=len(members), p=probs)
    memory_gb = cores * gb_per_core

    fixed, per_core, per_gb = (
        np.where(server_type == "physical", _COST["physical"][i], _COST["virtual"][i]) for i in range(3)
    )
    cost = (fixed + per_core * cores + per_gb * memory_gb) * rng.uniform(0.92, 1.08, n)

    codes = {unit: code for unit, (code, _) in BUSINESS_UNITS.items()}
    prefix = pd.Series(
        [
            f"{dc.lower()}-{codes[bu]}-{r}-{env[0]}"
            for dc, bu, r, env in zip(datacenter, business_unit, role, environment, strict=True)
        ]
    )
    number = prefix.groupby(prefix).cumcount().to_numpy() + 1
    hostname = [f"{p}{k:03d}" for p, k in zip(prefix, number, strict=True)]

    frame = pd.DataFrame(
        {
            "server_id": ids,
            "hostname": hostname,
            "application": application,
            "business_unit": business_unit,
            "environment": environment,
            "datacenter": datacenter,
            "server_type": server_type,
            "cpu_cores": cores,
            "memory_gb": memory_gb,
            "monthly_cost_usd": np.round(cost, 2),
        }
    )
    return frame[list(INVENTORY_COLUMNS)]
