"""A small chaos run (issue 14; the full one is benchmarks/bench_chaos.py): concurrent writers and kill -9.

Real ``capfc`` processes on a real lake; the checks are the product's own readers (see benchmarks/chaos.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmarks.chaos import concurrent_trial, kill_trial


@pytest.mark.parametrize("kind", ["etl", "ingest", "etl+forecast"])
def test_two_writers_at_once_lose_nothing_and_fail_clearly(kind: str, tmp_path: Path) -> None:
    trial = concurrent_trial(kind, tmp_path)
    assert trial.ok, trial
    assert all(code in (0, 2) for code in trial.exits), trial


@pytest.mark.parametrize("after_s", [9.0])
def test_kill_9_mid_run_then_rerun_completes_the_lake(after_s: float, tmp_path: Path) -> None:
    trial = kill_trial(tmp_path, after_s=after_s)
    assert trial.ok, trial
