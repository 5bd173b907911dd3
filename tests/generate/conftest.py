"""Generated fleets shared by the generator tests: the default fleet once, and a small one."""

from __future__ import annotations

import pytest

from capacity_forecaster.config import GenerateConfig
from capacity_forecaster.generate import SyntheticFleet, generate_fleet

SMALL = GenerateConfig(servers=20, years=1.0, holdout_days=60, seed=7)


@pytest.fixture(scope="session")
def small_cfg() -> GenerateConfig:
    """The configuration of ``small_fleet``."""
    return SMALL


@pytest.fixture(scope="session")
def default_fleet() -> SyntheticFleet:
    """The default fleet: 100 servers, 3 years to 2026-06-30, 180 holdout days, seed 42."""
    return generate_fleet(GenerateConfig())


@pytest.fixture(scope="session")
def small_fleet() -> SyntheticFleet:
    """20 servers x 1 year, 60 holdout days."""
    return generate_fleet(SMALL)
