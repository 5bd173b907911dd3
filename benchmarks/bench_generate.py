"""Synthetic fleet generation at scale: 1000 servers x 3 years (about 4.4 M raw rows)."""

from __future__ import annotations

from benchmarks.harness import Result, below, peak_rss_mb, timed
from capacity_forecaster.config import GenerateConfig
from capacity_forecaster.generate import generate_fleet

SERVERS, YEARS = 1000, 3.0


def bench_generate_fleet() -> list[Result]:
    """Wall time and peak memory of generate_fleet for 1000 servers x 3 years (frames only, no writing)."""
    generate_fleet(GenerateConfig(servers=10, years=0.1))  # warm imports and the holiday tables
    with timed() as timer:
        fleet = generate_fleet(GenerateConfig(servers=SERVERS, years=YEARS))
    truth_rows = len(fleet.truth_actual) + len(fleet.truth_future)
    rows = f"{len(fleet.raw_metrics):,} raw rows, {truth_rows:,} truth rows"
    name = f"generate {SERVERS} servers x {YEARS:g} years"
    return [
        below(f"{name}: time", timer.seconds, 3.0, "s", rows),
        below(f"{name}: peak memory", peak_rss_mb(), 2000.0, "MB", "peak RSS of the process"),
    ]


BENCHMARKS = [bench_generate_fleet]
