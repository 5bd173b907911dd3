"""Random draws of the signal generator, served to the whole fleet at once or chunk by chunk of servers.

The signal generator draws fleet-wide blocks from one generator in a fixed order (leak cycles, load
noise, fate targets, network noise, disk clean-ups, disk noise). A chunk of servers needs its slice of
every block: a uniform draw costs exactly one 64-bit output, so its slice is reached by advancing the
generator; a normal draw costs a variable number, so the generator state at each chunk's start is
found by drawing the block through once (cheap next to the signals). Either way a chunk gets exactly
the numbers a whole-fleet pass would give it, so the fleet does not depend on the chunk size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

# The fleet-wide blocks in the order the whole-fleet pass draws them (U: uniform, N: standard normal).
BLOCKS: tuple[tuple[str, str], ...] = (
    ("leak_cycles", "U"),
    ("leak_phase", "U"),
    ("load_noise", "N"),
    ("capped", "U"),
    ("breach", "U"),
    ("border", "U"),
    ("network_noise", "N"),
    ("disk_gaps", "U"),
    ("disk_phase", "U"),
    ("disk_drops", "U"),
    ("disk_noise", "N"),
)
_KIND = dict(BLOCKS)

Shape = int | tuple[int, ...]


def _shape(shape: Shape) -> tuple[int, ...]:
    return (shape,) if isinstance(shape, int) else tuple(shape)


class SignalSource(Protocol):
    """Where the signal functions get their random numbers (see ``BLOCKS``)."""

    def uniform(self, block: str, low: float, high: float, shape: Shape) -> np.ndarray:
        """``shape`` uniform draws in [low, high) from ``block``; axis 0 is the block's items."""

    def normal(self, block: str, shape: Shape) -> np.ndarray:
        """``shape`` standard normal draws from ``block``; axis 0 is servers."""


class SequentialSource:
    """Draws in call order from one generator: the whole fleet in one pass (the reference order)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def uniform(self, block: str, low: float, high: float, shape: Shape) -> np.ndarray:
        return self.rng.uniform(low, high, _shape(shape))

    def normal(self, block: str, shape: Shape) -> np.ndarray:
        return self.rng.standard_normal(_shape(shape))


def _generator(state: Any, skip: int = 0) -> np.random.Generator:
    bits = np.random.PCG64(0)
    bits.state = state
    if skip:
        bits.advance(skip)
    return np.random.Generator(bits)


@dataclass
class _Block:
    """Where one block starts: a generator state, and items before each chunk (uniform) or the state
    at each chunk's start (normal)."""

    state: Any
    before: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    chunk_states: list[Any] = field(default_factory=list)


class ChunkedDraws:
    """The positions of every block for a fixed split of the fleet into chunks, built block by block.

    Args:
        rng: the signal generator (not consumed: its state is copied).
        bounds: chunk boundaries, ``[0, ..., n_servers]``.
    """

    def __init__(self, rng: np.random.Generator, bounds: Sequence[int]) -> None:
        self.bounds = np.asarray(bounds, dtype=np.int64)
        self.blocks: dict[str, _Block] = {}
        self._state: Any = rng.bit_generator.state
        self._next = 0

    def _check(self, name: str, kind: str) -> None:
        expected, expected_kind = BLOCKS[self._next]
        if name != expected or kind != expected_kind:
            raise ValueError(f"block {name!r} laid out out of order; expected {expected!r}")
        self._next += 1

    def add_uniform(self, name: str, items_per_chunk: Sequence[int] | np.ndarray, width: int = 1) -> None:
        """Lay out a uniform block: ``items_per_chunk[i]`` items of ``width`` draws in chunk i."""
        self._check(name, "U")
        before = np.concatenate([[0], np.cumsum(np.asarray(items_per_chunk, dtype=np.int64))])
        self.blocks[name] = _Block(self._state, before)
        bits = np.random.PCG64(0)
        bits.state = self._state
        bits.advance(int(before[-1]) * width)
        self._state = bits.state

    def add_normal(self, name: str, shape_of: Callable[[int], tuple[int, ...]]) -> None:
        """Lay out a normal block whose chunk of ``c`` servers draws ``shape_of(c)`` values."""
        self._check(name, "N")
        rng = _generator(self._state)
        states = []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:], strict=True):
            states.append(rng.bit_generator.state)
            rng.standard_normal(shape_of(int(hi - lo)))
        self.blocks[name] = _Block(self._state, chunk_states=states)
        self._state = rng.bit_generator.state

    def source(self, chunk: int) -> ChunkSource:
        """The draws of chunk ``chunk`` (blocks laid out so far)."""
        return ChunkSource(self, chunk)


class ChunkSource:
    """One chunk's slice of every laid-out block."""

    def __init__(self, draws: ChunkedDraws, chunk: int) -> None:
        self.draws = draws
        self.chunk = chunk

    def _block(self, name: str, kind: str) -> _Block:
        if _KIND.get(name) != kind or name not in self.draws.blocks:
            raise KeyError(f"block {name!r} ({kind}) has not been laid out")
        return self.draws.blocks[name]

    def uniform(self, block: str, low: float, high: float, shape: Shape) -> np.ndarray:
        dims = _shape(shape)
        laid = self._block(block, "U")
        items = int(laid.before[self.chunk + 1] - laid.before[self.chunk])
        if dims[0] != items:
            raise ValueError(f"block {block!r}: chunk {self.chunk} has {items} items, {dims[0]} asked for")
        width = math.prod(dims[1:])
        return _generator(laid.state, int(laid.before[self.chunk]) * width).uniform(low, high, dims)

    def normal(self, block: str, shape: Shape) -> np.ndarray:
        return _generator(self._block(block, "N").chunk_states[self.chunk]).standard_normal(_shape(shape))
