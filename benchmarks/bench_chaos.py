"""Lake chaos (issue 14): 20 trials of each kind of concurrent writers, and kill -9 at 10 points of a run.

Targets: 0 lost updates, 0 unreadable lakes, 0 unclear failures (every conflicting writer exits
non-zero with one ``capfc: error:`` line or succeeds), 0 mixed-run reads, and every rerun after a kill
completes the lake, truth tables included. The trials themselves are in ``benchmarks/chaos.py``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks.chaos import Trial, concurrent_trial, kill_trial, run_seconds
from benchmarks.harness import Result

TRIALS = int(os.environ.get("CAPFC_BENCH_CHAOS_TRIALS", "20"))
KILLS = int(os.environ.get("CAPFC_BENCH_CHAOS_KILLS", "10"))


def _summary(name: str, trials: list[Trial]) -> list[Result]:
    failed = [t for t in trials if not t.ok]
    conflicts = sum(1 for t in trials for code in t.exits if code != 0)
    lost = sum(t.lost_updates for t in trials)
    note = (f"{len(trials)} trials, {conflicts} writer(s) refused cleanly, lost updates {lost}, "
            f"unreadable {sum(bool(t.unreadable) for t in trials)}, mixed {sum(bool(t.mixed) for t in trials)}, "
            f"unclear exits {sum(len(t.unclear) for t in trials)}")
    if failed:
        first = failed[0]
        note += f"; first failure: {(first.unclear + first.unreadable + first.mixed + first.missing)[:1]}"
    return [Result(name, float(len(failed)), "failed trials", "= 0", not failed, note)]


def _trials(kind: str) -> list[Trial]:
    out = []
    for seed in range(TRIALS):
        with tempfile.TemporaryDirectory() as tmp:
            out.append(concurrent_trial(kind, Path(tmp), seed=seed))
    return out


def concurrent_etl() -> list[Result]:
    """Two ``capfc etl`` at once on one lake."""
    return _summary("2 x capfc etl at once", _trials("etl"))


def concurrent_ingest() -> list[Result]:
    """Two ``capfc ingest`` of different files at once: no file's rows may go missing silently."""
    return _summary("2 x capfc ingest (different files) at once", _trials("ingest"))


def etl_with_forecast() -> list[Result]:
    """``capfc etl`` while ``capfc forecast`` reads the processed tables."""
    return _summary("capfc etl + capfc forecast at once", _trials("etl+forecast"))


def kill_points() -> list[Result]:
    """``kill -9`` of ``capfc run`` (empty lake) at 10 points spread over its wall time, each followed by a rerun."""
    with tempfile.TemporaryDirectory() as tmp:
        total = run_seconds(Path(tmp))
    trials = []
    for k in range(KILLS):
        with tempfile.TemporaryDirectory() as tmp:
            trials.append(kill_trial(Path(tmp), after_s=total * (k + 0.5) / KILLS, seed=k))
    return _summary(f"kill -9 of capfc run at {KILLS} points (run {total:.0f} s), then rerun", trials)


BENCHMARKS = [concurrent_etl, concurrent_ingest, etl_with_forecast, kill_points]
