"""The dashboard's growth slider: each position's breach risk and recommendations from one streamed what-if, cached."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from capacity_forecaster.errors import CapacityForecasterError
from capacity_forecaster.report.data import not_available
from capacity_forecaster.report.risks import ordered_recommendations
from capacity_forecaster.report.text import NO_PRICES, NOT_PRICED, money, priced_servers
from capacity_forecaster.risk.levels import Action
from capacity_forecaster.risk.streaming import GrowthAssessor

log = logging.getLogger(__name__)

# What a position keeps of the what-if's server_risk (the risk table, KPI cards and drill-down read these;
# the last five, where the risk stage wrote them, say a breach as the packs do: ``risks.breach_when``).
RISK_COLUMNS = ("server_id", "metric", "risk_level", "breach_ds", "status", "likely_breach_ds", "stale_since",
                "last_observed", "raw_last_observed", "last_over_ds")
# Positions kept besides the slider's own (a client may ask for any growth in range).
_EXTRA_POSITIONS = 16


# The Recommendations tab's table: its columns and those the filter row compares as numbers.
SAVINGS_COLUMNS = {"server_id": "Server", "action": "Action", "target_server_id": "Target",
                   "recommended_cpu_cores": "Cores", "recommended_memory_gb": "Memory GB",
                   "current_monthly_cost": "Current / month", "projected_monthly_cost": "Projected / month",
                   "monthly_savings": "Savings / month", "rationale": "Rationale"}
SAVINGS_NUMERIC = frozenset({"recommended_cpu_cores", "recommended_memory_gb", "current_monthly_cost",
                             "projected_monthly_cost", "monthly_savings"})


@dataclass(frozen=True)
class Savings:
    """Recommendations of the whole fleet and their headline numbers.

    Attributes:
        recommendations: the ``recommendations`` table (one row per server).
        net: net monthly savings (upsizes count negative; unpriced servers skipped).
        fleet_cost: current monthly cost of the priced servers.
        upsizes: servers whose action is ``upsize``.
        priced: servers with a monthly cost (without any, savings are unknown, not zero).
    """

    recommendations: pd.DataFrame
    net: float
    fleet_cost: float
    upsizes: int
    priced: int = 0

    def net_text(self) -> str:
        """The net savings as the packs say it: ``not priced`` when no server has a monthly cost."""
        return money(self.net) if self.priced else NOT_PRICED

    def table(self) -> pd.DataFrame:
        """The dashboard's Recommendations table: ``SAVINGS_COLUMNS``, most savings first (without any price, the
        most urgent action first, as the packs list them), whole cores and dollars, GB to one decimal (a 0.2 GB
        VM is not 0 GB); no projected cost or savings where today's cost is unknown."""
        ordered = (self.recommendations.sort_values("monthly_savings", ascending=False, kind="stable") if self.priced
                   else ordered_recommendations(self.recommendations))
        digits = {c: 1 if c.endswith("_gb") else 0 for c in SAVINGS_NUMERIC}
        table = ordered[list(SAVINGS_COLUMNS)].round(digits).reset_index(drop=True)
        # Unknown cost today: a decommission's projected $0 would read as a priced figure (blank, as today's cost).
        unpriced = table["current_monthly_cost"].isna()
        table["projected_monthly_cost"] = table["projected_monthly_cost"].where(~unpriced)
        table["monthly_savings"] = table["monthly_savings"].where(~unpriced)  # unknown, not $0
        # A server that goes away has no new size: blank, as the packs' "-" (helper-52: "0 cores, 0 GB").
        gone = table["action"].isin((Action.DECOMMISSION.value, Action.CONSOLIDATE.value))
        for column in ("recommended_cpu_cores", "recommended_memory_gb"):
            table[column] = table[column].where(~gone)
        return table

    @classmethod
    def of(cls, recs: pd.DataFrame) -> Savings:
        """The headline numbers of a recommendations table, summed as the risk stage's summary sums them."""
        return cls(recs, float(np.nansum(recs["monthly_savings"].to_numpy(float))),
                   float(np.nansum(recs["current_monthly_cost"].to_numpy(float))),
                   int((recs["action"] == Action.UPSIZE.value).sum()), priced_servers(recs))


@dataclass(frozen=True)
class Position:
    """The what-if at one growth of the slider.

    Attributes:
        risk: ``RISK_COLUMNS`` of the what-if's ``server_risk`` (one row per series).
        savings: its recommendations (``scenario_recommendations`` of ``capfc risk --growth``).
    """

    risk: pd.DataFrame
    savings: Savings


class GrowthPositions:
    """Slider positions, each computed once by ``risk.streaming.GrowthAssessor`` and kept.

    The assessor (the lake's history observed chunk by chunk) is built on first use. One position is
    computed at a time (``_lock``). Interactions that need a value now (``get``) count as waiting, and the
    background thread (``start``) steps aside between positions until they are served; a position asked
    for without waiting (``request``, the KPI cards) is the thread's next one. Reading a finished
    position never takes a lock.
    """

    def __init__(self, build: Callable[[], GrowthAssessor], values: list[float]) -> None:
        """Positions of the assessor ``build`` returns, warmed in the order of ``values`` (the slider's)."""
        self._build = build
        self._assessor: GrowthAssessor | None = None
        self.values = [key(v) for v in values]
        self._done: dict[float, Position] = {}
        self._failed: dict[float, str] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition()  # a position finished or failed, or one was requested
        self._wanted: float | None = None
        self._waiters = 0
        self._thread: threading.Thread | None = None

    # -- reading -------------------------------------------------------------------------------
    def cached(self, growth: float) -> Position | None:
        """The position at ``growth`` if computed, else None (never waits)."""
        return self._done.get(key(growth))

    def failed(self, growth: float) -> str | None:
        """Why the background thread could not compute ``growth`` (None unless it failed; ``get`` tries again)."""
        return self._failed.get(key(growth))

    def computed(self) -> list[float]:
        """The growth values computed so far."""
        return sorted(self._done)

    def wait(self, growth: float, timeout: float) -> Position | None:
        """The position at ``growth`` once computed (or failed), waiting at most ``timeout`` seconds."""
        growth = key(growth)
        with self._changed:
            self._changed.wait_for(lambda: growth in self._done or growth in self._failed, timeout)
        return self._done.get(growth)

    def get(self, growth: float) -> Position:
        """The position at ``growth``, computed now if needed (the background thread steps aside).

        Raises:
            CapacityForecasterError: the lake could not be read.
        """
        found = self.cached(growth)
        if found is not None:
            return found
        with self._waiting():
            return self._fill(key(growth))

    def at(self, growth: float) -> Position:
        """The position at ``growth`` computed afresh (not kept)."""
        with self._waiting(), self._lock:
            return self._compute(key(growth))

    # -- computing -----------------------------------------------------------------------------
    def request(self, growth: float) -> None:
        """Have ``growth`` computed next in the background (the thread starts if it has not)."""
        growth = key(growth)
        if growth in self._done:
            return
        with self._changed:
            self._wanted = growth
            self._changed.notify_all()
        self.start(warm=False)

    def start(self, warm: bool) -> None:
        """Start the background thread (once): requested positions, then with ``warm`` every slider value."""
        with self._changed:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(target=self._serve, args=(warm,), name="capfc-whatif-warmup",
                                            daemon=True)
        self._thread.start()

    def warm(self) -> None:
        """Compute every slider position now (nearest to 0 % first), stepping aside for interactions."""
        started = time.perf_counter()
        for growth in self.values:
            self._step_aside()
            self._fill(growth)
        log.debug("what-if cache warm (breaches and recommendations): %d growth values in %.1f s",
                  len(self.values), time.perf_counter() - started)

    def _serve(self, warm: bool) -> None:
        pending = list(self.values) if warm else []
        started = time.perf_counter()
        try:
            # Observe first, so a position asked for meanwhile is the first one computed.
            with self._lock:
                self._observed()
        except CapacityForecasterError as err:
            log.warning("dashboard: cannot observe the history for the what-if: %s", err)
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._wanted is not None or bool(pending))
                growth = self._wanted if self._wanted is not None else pending.pop(0)
                self._wanted = None
            self._step_aside()
            try:
                self._fill(growth)
            except CapacityForecasterError as err:
                # Said on the KPI cards (``failed``); asking for the position again retries it.
                log.warning("dashboard: what-if at %+g %% growth failed: %s", growth, err)
                with self._changed:
                    self._failed[growth] = str(err)
                    self._changed.notify_all()
            if warm and not pending:
                warm = False
                log.debug("what-if cache warm (breaches and recommendations): %d growth values in %.1f s",
                          len(self.values), time.perf_counter() - started)

    def _step_aside(self) -> None:
        while self._waiters > 0:
            time.sleep(0.02)

    @contextmanager
    def _waiting(self) -> Iterator[None]:
        """Count an interaction as waiting, so the background thread steps aside until it is served."""
        with self._changed:
            self._waiters += 1
        try:
            yield
        finally:
            with self._changed:
                self._waiters -= 1

    def _fill(self, growth: float) -> Position:
        with self._lock:
            found = self._done.get(growth)
            if found is not None:
                return found
            found = self._compute(growth)
            extra = [g for g in self._done if g not in self.values]
            if growth not in self.values and len(extra) >= _EXTRA_POSITIONS:
                del self._done[extra[0]]  # the oldest position off the slider's steps
            self._done[growth] = found
        with self._changed:
            self._failed.pop(growth, None)
            self._changed.notify_all()
        return found

    def _observed(self) -> GrowthAssessor:
        if self._assessor is None:
            self._assessor = self._build()
        return self._assessor

    def _compute(self, growth: float) -> Position:
        assessor = self._observed()
        started = time.perf_counter()
        result = assessor.at(growth)
        log.debug("dashboard: what-if at %+g %% growth in %.1f s", growth, time.perf_counter() - started)
        risk = result.server_risk
        return Position(risk[[c for c in RISK_COLUMNS if c in risk.columns]].reset_index(drop=True),
                        Savings.of(result.recommendations))


def key(growth: float) -> float:
    """The cache key of a growth value."""
    return round(float(growth), 3)


def savings_cards(now: Savings | None, base: Savings | None, growth: float,
                  pending: str | None = None) -> list[tuple[str, str, str]]:
    """(label, value, note) of the net savings and upsizes cards under ``growth``, the base beside them.

    ``pending`` (the position is still being computed, or why it failed) shows the base with that note.
    """
    if base is None:
        return [("Net savings / month", "-", not_available("recommendations")),
                ("Upsizes", "-", not_available("recommendations"))]
    suffix = f" (growth {growth:+g} %)" if growth else ""
    if pending is not None or now is None:
        note = pending or "computing\u2026"
        return [("Net savings / month" + suffix, base.net_text(), note),
                ("Upsizes" + suffix, f"{base.upsizes}", note)]
    share = (f"{100 * now.net / now.fleet_cost:.1f} % of {money(now.fleet_cost)}" if now.fleet_cost > 0 else
             NO_PRICES if not now.priced else "")
    servers = len(now.recommendations)
    if 0 < now.priced < servers:  # the rest save or cost an unknown amount (helper-52: an upsize's cost was missing)
        share += f"{'; ' if share else ''}priced servers only ({now.priced:,} of {servers:,})"
    return [("Net savings / month" + suffix, now.net_text(), f"base {base.net_text()}; {share}" if growth else share),
            ("Upsizes" + suffix, f"{now.upsizes}", f"base {base.upsizes}" if growth else "servers to grow")]
