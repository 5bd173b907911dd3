"""Event placement never overlaps what is already there, nor itself."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from capacity_forecaster.generate.placement import Occupancy


@settings(max_examples=30, deadline=None)
@given(
    servers=st.integers(1, 5),
    days=st.integers(1, 40),
    runs=st.lists(st.tuples(st.integers(0, 30), st.integers(1, 12)), min_size=1, max_size=4),
    seed=st.integers(0, 2**32),
)
def test_placed_runs_cover_only_free_cells(
    servers: int, days: int, runs: list[tuple[int, int]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    occupancy = Occupancy(servers, 4, days)
    counts = np.zeros((servers, 4, days), dtype=int)
    for n_runs, max_len in runs:
        placed = occupancy.place(
            n_runs,
            lambda g, k, m=max_len: g.integers(1, m + 1, k),
            lambda g, k: g.random((k, 4)) < 0.5,
            rng,
        )
        assert len(placed) <= n_runs
        _, server, metric, day = placed.cells()
        np.add.at(counts, (server, metric, day), 1)
        assert ((placed.start >= 0) & (placed.start + placed.length <= days)).all()
    assert counts.max(initial=0) <= 1
    assert (occupancy.used == (counts == 1)).all()


def test_an_empty_grid_takes_every_run_asked_for() -> None:
    occupancy = Occupancy(50, 4, 365)
    placed = occupancy.place(
        40, lambda g, k: g.integers(2, 11, k), lambda g, k: np.ones((k, 4), bool), np.random.default_rng(0)
    )
    assert len(placed) == 40
    assert occupancy.used.sum() == 4 * placed.length.sum()
