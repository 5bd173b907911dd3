"""Fleet scale: every stage of `capfc run` as its own process, wall time and peak RSS each.

N servers (default 2,000; CAPFC_BENCH_SCALE_SERVERS=10000 for the ceiling run) x 3 years, plus a
fleet of N/2 for the linearity check (seconds per series at both sizes within 1.3x). A comma list,
e.g. CAPFC_BENCH_SCALE_SERVERS=100,1000,10000 (400, 4,000 and 40,000 series), runs every size and
checks the largest against each smaller one. Targets: every process under 4 GB (generate under 2 GB),
no stage above 45 minutes. CAPFC_BENCH_SCALE_STAGES=generate,etl limits the run to the first stages
(the forecast of 2,000 servers takes tens of minutes on 2 cores). Each stage's numbers are also
printed to stderr as soon as it ends, so a long ceiling run shows its progress.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import Result, below

_SIZES = sorted({int(n) for n in os.environ.get("CAPFC_BENCH_SCALE_SERVERS", "2000").split(",") if n.strip()})
SERVERS = _SIZES[-1]
# The fleets the largest is compared with for linearity: the given smaller sizes, else half of it.
SMALLER = _SIZES[:-1] or [max(SERVERS // 2, 1)]
METRICS = 4
RSS_LIMIT_MB = 4096.0
GENERATE_RSS_LIMIT_MB = 2048.0
LINEARITY_LIMIT = 1.3
_CAPFC = [sys.executable, "-m", "capacity_forecaster.cli"]


@dataclass(frozen=True)
class Run:
    """One measured subprocess: wall seconds and peak resident memory (MB)."""

    seconds: float
    peak_mb: float


def _measure(args: list[str]) -> Run:
    """Run ``capfc <args>`` and measure it alone.

    The peak RSS comes from ``wait4`` (the child's own rusage), so it is per process even when
    several run one after the other; wall time includes interpreter start-up and imports.
    """
    # The benchmark's own settings are not config keys (capfc rejects unknown CAPFC_ variables).
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPFC_BENCH_")}
    started = time.perf_counter()
    proc = subprocess.Popen([*_CAPFC, *args, "-qq"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"capfc {' '.join(args)} failed ({proc.returncode}): {tail[0]}")
    # ru_maxrss is in KiB on Linux.
    return Run(seconds, usage.ru_maxrss / 1024.0)


def generate(lake: Path, servers: int) -> Run:
    """``capfc generate`` of ``servers`` servers x 3 years into ``lake``."""
    return _measure(["generate", "--lake", str(lake), "--servers", str(servers)])


def etl(lake: Path, servers: int) -> Run:
    """``capfc etl`` over the lake ``generate`` filled."""
    return _measure(["etl", "--lake", str(lake)])


def forecast(lake: Path, servers: int) -> Run:
    """``capfc forecast`` (chunks of series, default models and horizon)."""
    return _measure(["forecast", "--lake", str(lake)])


def risk(lake: Path, servers: int) -> Run:
    """``capfc risk`` over the forecasts."""
    return _measure(["risk", "--lake", str(lake)])


def report(lake: Path, servers: int) -> Run:
    """``capfc report`` (PNG, HTML, Excel, PDF)."""
    return _measure(["report", "--lake", str(lake)])


STAGE_LIMIT_S = 45 * 60.0
# The stages in pipeline order; each reads what the previous ones wrote to the same lake.
ALL_STAGES: list[tuple[str, Callable[[Path, int], Run], float]] = [
    ("generate", generate, GENERATE_RSS_LIMIT_MB),
    ("etl", etl, RSS_LIMIT_MB),
    ("forecast", forecast, RSS_LIMIT_MB),
    ("risk", risk, RSS_LIMIT_MB),
    ("report", report, RSS_LIMIT_MB),
]
_WANTED = [s.strip() for s in os.environ.get("CAPFC_BENCH_SCALE_STAGES", "").split(",") if s.strip()]
STAGES = [stage for stage in ALL_STAGES if not _WANTED or stage[0] in _WANTED]


def _fleet(servers: int) -> dict[str, Run]:
    root = Path(tempfile.mkdtemp(prefix="capfc-scale-"))
    runs: dict[str, Run] = {}
    try:
        for name, stage, _ in STAGES:
            runs[name] = stage(root / "lake", servers)
            print(f"bench_scale: {name} {servers:,} servers: {runs[name].seconds:.1f} s, "
                  f"peak {runs[name].peak_mb:.0f} MB", file=sys.stderr, flush=True)
        return runs
    finally:
        shutil.rmtree(root, ignore_errors=True)


def bench_scale() -> list[Result]:
    """Wall time and peak RSS per stage process at N servers; s/series linearity against smaller fleets."""
    big = _fleet(SERVERS)
    smaller = {n: _fleet(n) for n in SMALLER}
    results: list[Result] = []
    for name, _, limit in STAGES:
        run = big[name]
        others = ", ".join(f"{smaller[n][name].seconds:.1f} s at {n:,}" for n in SMALLER)
        results.append(below(f"{name} {SERVERS:,} servers: peak RSS", run.peak_mb, limit, "MB",
                             f"{run.seconds:.1f} s wall ({others})"))
        results.append(below(f"{name} {SERVERS:,} servers: wall", run.seconds, STAGE_LIMIT_S, "s"))
        per_series = run.seconds / (SERVERS * METRICS)
        for n in SMALLER:
            small = smaller[n][name]
            ratio = per_series / (small.seconds / (n * METRICS))
            results.append(below(
                f"{name} {SERVERS:,} servers: s/series vs {n:,}", ratio, LINEARITY_LIMIT, "ratio",
                f"{per_series * 1e3:.2f} ms/series; {small.seconds / (n * METRICS) * 1e3:.2f} ms/series and "
                f"peak {small.peak_mb:.0f} MB at {n:,}",
            ))
    return results


BENCHMARKS = [bench_scale]
