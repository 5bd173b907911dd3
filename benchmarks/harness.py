"""A tiny harness: each bench_*.py module exposes ``BENCHMARKS``, a list of callables returning Results."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One measured number against its target.

    Attributes:
        name: what was measured, e.g. "generate 1000 servers x 3 years".
        measured: the number.
        unit: its unit ("s", "MB", "pp", "ratio", ...).
        target: the target as text, e.g. "< 5".
        ok: whether the target is met.
        note: extra context (rows, series, peak memory).
    """

    name: str
    measured: float
    unit: str
    target: str
    ok: bool
    note: str = ""


@dataclass
class Timer:
    """Wall time of a ``with timed():`` block, in seconds."""

    seconds: float = 0.0


@contextmanager
def timed() -> Iterator[Timer]:
    """Measure the wall time of a block."""
    timer = Timer()
    start = time.perf_counter()
    try:
        yield timer
    finally:
        timer.seconds = time.perf_counter() - start


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def below(name: str, measured: float, limit: float, unit: str, note: str = "") -> Result:
    """A Result that passes when ``measured < limit``."""
    return Result(name, measured, unit, f"< {limit:g}", measured < limit, note)


def at_least(name: str, measured: float, limit: float, unit: str, note: str = "") -> Result:
    """A Result that passes when ``measured >= limit``."""
    return Result(name, measured, unit, f">= {limit:g}", measured >= limit, note)


Benchmark = Callable[[], list[Result]]
