"""The recommendations under the dashboard's what-if growth: the risk stage's own evaluation, one per slider value."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster.config import RiskConfig
from capacity_forecaster.report.data import not_available
from capacity_forecaster.report.summary import money
from capacity_forecaster.risk.calibration import BreachCalibration
from capacity_forecaster.risk.inventory import complete_inventory
from capacity_forecaster.risk.levels import Action
from capacity_forecaster.risk.stage import evaluate
from capacity_forecaster.risk.whatif import apply_growth
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Savings:
    """Recommendations of the whole fleet and their headline numbers.

    Attributes:
        recommendations: the ``recommendations`` table (one row per server).
        net: net monthly savings (upsizes count negative; unpriced servers skipped).
        fleet_cost: current monthly cost of the priced servers.
        upsizes: servers whose action is ``upsize``.
    """

    recommendations: pd.DataFrame
    net: float
    fleet_cost: float
    upsizes: int

    @classmethod
    def of(cls, recs: pd.DataFrame) -> Savings:
        """The headline numbers of a recommendations table, summed as the risk stage's summary sums them."""
        return cls(recs, float(np.nansum(recs["monthly_savings"].to_numpy(float))),
                   float(np.nansum(recs["current_monthly_cost"].to_numpy(float))),
                   int((recs["action"] == Action.UPSIZE.value).sum()))


class GrowthRecommendations:
    """Recommendations with every forecast grown by a percentage, exactly as ``capfc risk --growth G`` makes them.

    The risk stage's ``evaluate`` runs on the lake's metrics, forecasts, inventory (completed as ``run_risk``
    completes it) and clusters, with the risk settings and breach calibration the last risk run used, so
    upsizes, consolidation and savings come from the one sizing path. One evaluation takes about two
    seconds on 100 servers, so each is kept per growth value (``get``) and the dashboard warms them ahead.
    """

    def __init__(self, lake: Lake, forecasts: pd.DataFrame, clusters: pd.DataFrame, cfg: RiskConfig,
                 calibration: BreachCalibration) -> None:
        self.metrics = lake.read_table("metrics")
        self.forecasts = forecasts
        self.inventory = complete_inventory(lake.read_table("inventory"), pd.Index(self.metrics["server_id"].unique()))
        self.clusters = clusters
        self.cfg = cfg
        self.calibration = calibration
        self._done: dict[float, Savings] = {}
        self._lock = threading.Lock()  # one evaluation at a time; reading a finished one needs no lock

    def cached(self, growth: float) -> Savings | None:
        """The recommendations at ``growth`` if already evaluated, else None (never waits)."""
        return self._done.get(growth)

    def get(self, growth: float) -> Savings:
        """The recommendations at ``growth``, evaluated once (``at``) and kept."""
        found = self._done.get(growth)
        if found is None:
            with self._lock:
                found = self._done.get(growth)
                if found is None:
                    found = self._done[growth] = self.at(growth)
        return found

    def at(self, growth: float) -> Savings:
        """Recommendations with the forecasts uplifted by ``growth`` percent (``risk.growth_ramp`` applies).

        Returns:
            Savings over ``risk.stage.evaluate``'s recommendations (the columns of ``RiskResult.recommendations``).
        """
        started = time.perf_counter()
        grown = apply_growth(self.forecasts, growth, ramp=self.cfg.growth_ramp)
        result = evaluate(self.metrics, grown, self.inventory, self.cfg, self.clusters, label=f"growth {growth:+g} %",
                          calibration=self.calibration)
        log.debug("dashboard: recommendations at %+g %% growth in %.1f s", growth, time.perf_counter() - started)
        return Savings.of(result.recommendations)


def savings_cards(now: Savings | None, base: Savings | None, growth: float) -> list[tuple[str, str, str]]:
    """(label, value, note) of the net savings and upsizes cards under ``growth``, the base beside them."""
    if now is None or base is None:
        return [("Net savings / month", "-", not_available("recommendations")),
                ("Upsizes", "-", not_available("recommendations"))]
    suffix = f" (growth {growth:+g} %)" if growth else ""
    share = f"{100 * now.net / now.fleet_cost:.1f} % of {money(now.fleet_cost)}" if now.fleet_cost > 0 else ""
    return [("Net savings / month" + suffix, money(now.net), f"base {money(base.net)}; {share}" if growth else share),
            ("Upsizes" + suffix, f"{now.upsizes}", f"base {base.upsizes}" if growth else "servers to grow")]
