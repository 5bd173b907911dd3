"""Synthetic bank server fleet with ground truth (pure: returns frames)."""

from capacity_forecaster.generate.archetypes import ARCHETYPES, FATES
from capacity_forecaster.generate.events import ANOMALY_KINDS
from capacity_forecaster.generate.fleet import SyntheticFleet, fleet_chunks, generate_fleet

__all__ = ["ANOMALY_KINDS", "ARCHETYPES", "FATES", "SyntheticFleet", "fleet_chunks", "generate_fleet"]
