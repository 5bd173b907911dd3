"""Real operational events in the observed history: outages (load near 0) and one-day spikes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from capacity_forecaster.generate.grid import CPU, MEMORY, METRIC_ORDER, NETWORK
from capacity_forecaster.generate.placement import Cells, MaskDraw, Occupancy, Runs

ANOMALY_KINDS = (
    "outage",
    "spike",
    "negative",
    "over_100",
    "stuck",
    "duplicate",
    "conflict",
    "missing_day",
    "missing_value",
)
# Cells touched by an average outage: 2 days x (cpu, memory, network).
_OUTAGE_CELLS = 6.0
# Value range during an outage (the box is down or hung), per metric index.
_OUTAGE_RANGE = {CPU: (0.0, 1.5), MEMORY: (0.5, 3.0), NETWORK: (0.0, 0.5)}
_SPIKE_POINTS = (30.0, 50.0)
_SPIKE_METRIC_PROB = {CPU: 0.6, NETWORK: 0.25, MEMORY: 0.15}


@dataclass(frozen=True)
class Injected:
    """Cells that received an event or fault: grid indices and the kind (index into ANOMALY_KINDS)."""

    server: np.ndarray
    metric: np.ndarray
    day: np.ndarray
    kind: np.ndarray

    @classmethod
    def of(cls, runs: Runs, kind: str | np.ndarray) -> Injected:
        """Every cell covered by ``runs``; ``kind`` is one name, or a code per run."""
        run, server, metric, day = runs.cells()
        if isinstance(kind, str):
            codes = np.full(len(run), ANOMALY_KINDS.index(kind), dtype=np.int64)
        else:
            codes = np.asarray(kind, dtype=np.int64)[run]
        return cls(server, metric, day, codes)

    @classmethod
    def concat(cls, parts: list[Injected]) -> Injected:
        """All cells of ``parts`` in one record set."""
        if not parts:
            empty = np.zeros(0, dtype=np.int64)
            return cls(empty, empty, empty, empty)
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("server", "metric", "day", "kind"))
        )

    def __len__(self) -> int:
        return len(self.server)


def one_metric(probabilities: dict[int, float]) -> MaskDraw:
    """A metric-mask draw that picks one metric per run with the given probabilities."""
    metrics = np.array(list(probabilities))
    weights = np.array(list(probabilities.values()))
    weights = weights / weights.sum()

    def draw(rng: np.random.Generator, k: int) -> np.ndarray:
        return np.eye(len(METRIC_ORDER), dtype=bool)[rng.choice(metrics, size=k, p=weights)]

    return draw


@dataclass(frozen=True)
class EventPlan:
    """Where the events go and what they write, for the whole fleet (small: a few cells per server).

    Attributes:
        outages: outage cells, value = the level written (the box is down or hung).
        spikes: spike cells, value = the points added (the sum is capped at 100).
        injected: the same cells with their kinds.
    """

    outages: Cells
    spikes: Cells
    injected: Injected

    def chunk(self, lo: int, hi: int) -> EventPlan:
        """The events of servers ``lo:hi`` (server numbers relative to ``lo``; ``injected`` left empty)."""
        return EventPlan(self.outages.chunk(lo, hi), self.spikes.chunk(lo, hi), Injected.concat([]))


def plan_events(shape: tuple[int, int, int], occupancy: Occupancy, rate: float, rng: np.random.Generator) -> EventPlan:
    """Place outages and spikes on the observed grid and draw what they write.

    Half of the ``rate`` share of cells goes to outages (1-3 days; cpu, memory and network drop
    near 0, disk is unchanged), half to one-day spikes of +30-50 points (capped at 100). Only the
    grid's shape is needed: ``apply_events`` writes the plan into the values, chunk by chunk.

    Args:
        shape: observed grid shape (servers, metrics, days).
        occupancy: cells already taken; updated.
        rate: share of the grid's cells affected.
        rng: random generator (consumed).

    Returns:
        The EventPlan; kinds "outage" and "spike".
    """
    n_cells = int(np.prod(shape))
    outage_mask = np.zeros(len(METRIC_ORDER), dtype=bool)
    outage_mask[list(_OUTAGE_RANGE)] = True
    outages = occupancy.place(
        round(rate * n_cells / 2 / _OUTAGE_CELLS),
        lambda g, k: g.integers(1, 4, k),
        lambda g, k: np.broadcast_to(outage_mask, (k, len(outage_mask))).copy(),
        rng,
    )
    _, server, metric, day = outages.cells()
    lo = np.array([_OUTAGE_RANGE.get(m, (0.0, 0.0))[0] for m in range(len(METRIC_ORDER))])
    hi = np.array([_OUTAGE_RANGE.get(m, (0.0, 0.0))[1] for m in range(len(METRIC_ORDER))])
    outage_cells = Cells.of(server, metric, day, rng.uniform(lo[metric], hi[metric]))

    spikes = occupancy.place(
        round(rate * n_cells / 2),
        lambda g, k: np.ones(k, dtype=np.int64),
        one_metric(_SPIKE_METRIC_PROB),
        rng,
    )
    _, server, metric, day = spikes.cells()
    spike_cells = Cells.of(server, metric, day, rng.uniform(*_SPIKE_POINTS, len(server)))
    injected = Injected.concat([Injected.of(outages, "outage"), Injected.of(spikes, "spike")])
    return EventPlan(outage_cells, spike_cells, injected)


def apply_events(values: np.ndarray, events: EventPlan) -> None:
    """Write the events into the observed grid ``values`` (in place; server numbers match its rows)."""
    values[events.outages.index] = events.outages.value
    values[events.spikes.index] = np.minimum(100.0, values[events.spikes.index] + events.spikes.value)
