"""Signal draws: a chunk's slice of every block equals the whole-fleet draw, in any chunking."""

from __future__ import annotations

import numpy as np
import pytest

from capacity_forecaster.generate.draws import ChunkedDraws, SequentialSource


def _layout(rng: np.random.Generator, bounds: list[int], leaking: np.ndarray) -> ChunkedDraws:
    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    draws = ChunkedDraws(rng, bounds)
    draws.add_uniform("leak_cycles", [int(leaking[lo:hi].sum()) for lo, hi in spans], 3)
    draws.add_uniform("leak_phase", [int(leaking[lo:hi].sum()) for lo, hi in spans])
    draws.add_normal("load_noise", lambda c: (c, 2, 5))
    return draws


@pytest.mark.parametrize("bounds", [[0, 4, 9], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 9]])
def test_chunk_slices_equal_the_sequential_draws(bounds: list[int]) -> None:
    leaking = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1], dtype=bool)
    whole = SequentialSource(np.random.default_rng(3))
    cycles = whole.uniform("leak_cycles", 0.75, 1.25, (int(leaking.sum()), 3))
    phase = whole.uniform("leak_phase", 0.0, 1.0, int(leaking.sum()))
    noise = whole.normal("load_noise", (9, 2, 5))

    draws = _layout(np.random.default_rng(3), bounds, leaking)
    got_cycles, got_phase, got_noise = [], [], []
    for index, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        source = draws.source(index)
        k = int(leaking[lo:hi].sum())
        got_cycles.append(source.uniform("leak_cycles", 0.75, 1.25, (k, 3)))
        got_phase.append(source.uniform("leak_phase", 0.0, 1.0, k))
        got_noise.append(source.normal("load_noise", (hi - lo, 2, 5)))
    np.testing.assert_array_equal(np.concatenate(got_cycles), cycles)
    np.testing.assert_array_equal(np.concatenate(got_phase), phase)
    np.testing.assert_array_equal(np.concatenate(got_noise), noise)


def test_layout_order_and_item_counts_are_checked() -> None:
    draws = ChunkedDraws(np.random.default_rng(0), [0, 2])
    with pytest.raises(ValueError, match="out of order"):
        draws.add_normal("load_noise", lambda c: (c, 2))
    draws.add_uniform("leak_cycles", [1], 2)
    with pytest.raises(ValueError, match="1 items, 2 asked for"):
        draws.source(0).uniform("leak_cycles", 0.0, 1.0, (2, 2))
    with pytest.raises(KeyError, match="has not been laid out"):
        draws.source(0).normal("disk_noise", (2, 3))
