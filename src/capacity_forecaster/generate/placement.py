"""Random, non-overlapping placement of injected events over a (servers x metrics x days) grid."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

LengthDraw = Callable[[np.random.Generator, int], np.ndarray]
MaskDraw = Callable[[np.random.Generator, int], np.ndarray]
_ROUNDS = 4


@dataclass(frozen=True)
class Runs:
    """Placed runs: run i covers days ``start[i] .. start[i] + length[i] - 1`` of server ``server[i]``
    for the metrics where ``metrics[i]`` is True."""

    server: np.ndarray
    start: np.ndarray
    length: np.ndarray
    metrics: np.ndarray

    def __len__(self) -> int:
        return len(self.server)

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every covered cell as (run index, server, metric, day) arrays."""
        if len(self) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, empty
        width = int(self.length.max())
        offset = np.arange(width)
        covered = self.metrics[:, :, None] & (offset[None, None, :] < self.length[:, None, None])
        run, metric, off = np.nonzero(covered)
        return run, self.server[run], metric, self.start[run] + off


@dataclass(frozen=True)
class Cells:
    """Grid cells (server, metric, day) with one value each, ordered by server so that the cells of a
    chunk of servers are one slice."""

    server: np.ndarray
    metric: np.ndarray
    day: np.ndarray
    value: np.ndarray

    @classmethod
    def of(cls, server: np.ndarray, metric: np.ndarray, day: np.ndarray, value: np.ndarray | None = None) -> Cells:
        """The cells sorted by server (stably: same-server cells keep their order)."""
        order = np.argsort(server, kind="stable")
        value = np.zeros(len(server)) if value is None else np.asarray(value)
        return cls(server[order], metric[order], day[order], value[order])

    def __len__(self) -> int:
        return len(self.server)

    def chunk(self, lo: int, hi: int) -> Cells:
        """The cells of servers ``lo:hi``, server numbers relative to ``lo``."""
        a, b = np.searchsorted(self.server, [lo, hi])
        return Cells(self.server[a:b] - lo, self.metric[a:b], self.day[a:b], self.value[a:b])

    @property
    def index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(server, metric, day) index arrays into the grid."""
        return self.server, self.metric, self.day


class Occupancy:
    """Which cells already carry an event; places new runs only on free cells.

    Args:
        n_servers: servers (axis 0).
        n_metrics: metrics (axis 1).
        n_days: days (axis 2).
    """

    def __init__(self, n_servers: int, n_metrics: int, n_days: int) -> None:
        self.used = np.zeros((n_servers, n_metrics, n_days), dtype=bool)

    def place(
        self, n_runs: int, draw_length: LengthDraw, draw_metrics: MaskDraw, rng: np.random.Generator
    ) -> Runs:
        """Place up to ``n_runs`` runs on free cells and mark them used.

        Candidates are drawn at random; one that touches a used cell, or overlaps the days of a
        same-server candidate that starts earlier, is dropped and redrawn (a few rounds at most, so a
        nearly full grid yields fewer runs).

        Args:
            n_runs: runs wanted.
            draw_length: ``(rng, k) -> k`` run lengths in days (>= 1).
            draw_metrics: ``(rng, k) -> (k, n_metrics)`` boolean masks of the metrics a run covers.
            rng: random generator (consumed).

        Returns:
            The placed runs, in placement order.
        """
        n_servers, _, n_days = self.used.shape
        found: list[Runs] = []
        missing = n_runs
        for _ in range(_ROUNDS):
            if missing <= 0 or n_servers == 0:
                break
            k = 2 * missing + 16
            length = np.minimum(draw_length(rng, k), n_days).astype(np.int64)
            server = rng.integers(0, n_servers, k)
            start = (rng.random(k) * (n_days - length + 1)).astype(np.int64)
            metrics = draw_metrics(rng, k)
            keep = self._free(server, start, length, metrics) & self._first_of_overlaps(server, start, length)
            runs = Runs(
                server[keep][:missing], start[keep][:missing], length[keep][:missing], metrics[keep][:missing]
            )
            _, srv, met, day = runs.cells()
            self.used[srv, met, day] = True
            found.append(runs)
            missing -= len(runs)
        if missing > 0:
            logger.debug("placed %d of %d runs; the grid is too full for the rest", n_runs - missing, n_runs)
        if not found:
            empty = np.zeros(0, dtype=np.int64)
            return Runs(empty, empty, empty, np.zeros((0, self.used.shape[1]), dtype=bool))
        return Runs(
            *(
                np.concatenate([getattr(r, f) for r in found])
                for f in ("server", "start", "length", "metrics")
            )
        )

    def _free(
        self, server: np.ndarray, start: np.ndarray, length: np.ndarray, metrics: np.ndarray
    ) -> np.ndarray:
        width = int(length.max())
        offset = np.arange(width)
        day = np.minimum(start[:, None] + offset[None, :], self.used.shape[2] - 1)
        taken = self.used[
            server[:, None, None], np.arange(self.used.shape[1])[None, :, None], day[:, None, :]
        ]
        in_run = metrics[:, :, None] & (offset[None, None, :] < length[:, None, None])
        return ~(taken & in_run).any(axis=(1, 2))

    @staticmethod
    def _first_of_overlaps(server: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
        """True for candidates that overlap no same-server candidate starting before them."""
        span = int((start + length).max()) + 1
        lo = server * span + start
        hi = lo + length
        order = np.lexsort((np.arange(len(server)), lo))
        reach = np.maximum.accumulate(hi[order])
        clash = np.zeros(len(server), dtype=bool)
        clash[order[1:]] = lo[order[1:]] < reach[:-1]
        return ~clash
