"""Chaos trials for the lake (issue 14): concurrent writers and ``kill -9`` mid-run, then checks.

Each trial runs real ``capfc`` processes on a real lake and then inspects it through the product's
own readers. A trial passes when:

- every process exited 0, or non-zero with exactly one ``capfc: error:`` line and no traceback;
- no lost update: every ingest that exited 0 has all of its rows in ``raw_metrics``;
- the lake is readable: every table written so far reads without error;
- no mixed runs: the tables of one stage that a reader sees all carry the same run id;
- after a kill, a rerun of ``capfc run`` exits 0 and leaves every table present (truth included).

``make test`` runs a few trials (tests/test_chaos.py); ``make bench`` runs 20 of each kind and 10
kill points (benchmarks/bench_chaos.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# Tables of a stage that must come from one run when read together.
STAGE_TABLES = {
    "etl": ("metrics", "features", "series_diagnostics", "quarantine"),
    "forecast": ("forecasts", "backtests", "backtest_forecasts", "forecast_failures", "forecast_triage"),
    "generate": ("inventory", "raw_metrics", "truth_servers", "truth_actual", "truth_future", "truth_anomalies"),
}
SMALL = ("--servers", "6", "--years", "1", "--holdout-days", "30")


@dataclass
class Trial:
    """The outcome of one trial."""

    kind: str
    exits: list[int] = field(default_factory=list)
    unclear: list[str] = field(default_factory=list)
    lost_updates: int = 0
    unreadable: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.unclear or self.lost_updates or self.unreadable or self.mixed or self.missing)


def capfc(*args: str) -> list[str]:
    """The command line of ``capfc`` in this interpreter."""
    return [sys.executable, "-m", "capacity_forecaster.cli", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CAPFC_LOG_FORMAT", "plain")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parents[1] / "src"),
                                                    env.get("PYTHONPATH", "")) if p)
    return env


def start(args: Sequence[str], cwd: Path) -> subprocess.Popen[str]:
    """Start a ``capfc`` process (quiet, plain logs)."""
    return subprocess.Popen(capfc(*args, "-q"), cwd=cwd, env=_env(), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], trial: Trial, timeout: float = 900) -> int:
    """Wait for a process; record its exit and whether a failure said one clear line."""
    _, err = proc.communicate(timeout=timeout)
    trial.exits.append(proc.returncode)
    if proc.returncode != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("capfc: error:")]
        trial.errors.extend(errors)
        if "Traceback" in err or len(errors) != 1:
            trial.unclear.append(err.strip()[-400:])
    return proc.returncode


def run_ok(args: Sequence[str], cwd: Path) -> None:
    """Run ``capfc`` to completion; raise with its stderr when it fails."""
    done = subprocess.run(capfc(*args, "-q"), cwd=cwd, env=_env(), text=True, capture_output=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"capfc {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")


def inspect(lake_uri: str, trial: Trial, *, require: Sequence[str] = ()) -> None:
    """Read every table through a fresh lake; record unreadable, missing and mixed-run tables."""
    from capacity_forecaster.errors import CapacityForecasterError
    from capacity_forecaster.schema import TABLES
    from capacity_forecaster.storage import Lake

    lake = Lake.open(lake_uri)
    run_of: dict[str, str | None] = {}
    for name in TABLES:
        try:
            info = lake.table_info(name)
            if info is None:
                if name in require:
                    trial.missing.append(name)
                continue
            lake.read_table(name)
            run_of[name] = info.run_id
        except CapacityForecasterError as err:
            trial.unreadable.append(f"{name}: {err}")
    for stage, names in STAGE_TABLES.items():
        ids = {run_of[n] for n in names if n in run_of}
        if len(ids) > 1:
            trial.mixed.append(f"{stage}: {sorted(map(str, ids))}")


def write_export(path: Path, servers: Sequence[str], days: int, seed: int) -> int:
    """A long CSV export (server, timestamp, cpu) of hourly samples; returns the rows."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2025-01-01", periods=days * 24, freq="h")
    frame = pd.DataFrame({
        "server_id": np.repeat(list(servers), len(stamps)),
        "ds": np.tile(stamps.strftime("%Y-%m-%d %H:%M:%S"), len(servers)),
        "value": rng.uniform(5, 95, len(servers) * len(stamps)).round(2),
    })
    frame.to_csv(path, index=False)
    return len(frame)


MAPPING = """name: chaos
layout: long
server_id:
  column: server_id
timestamp:
  column: ds
  kind: text
  timezone: UTC
long:
  value: value
  metric: cpu
"""


def concurrent_trial(kind: str, workdir: Path, seed: int = 0) -> Trial:
    """Two writers at once on one lake: ``etl`` + ``etl``, ``ingest`` + ``ingest``, or ``etl`` + ``forecast``."""
    trial = Trial(kind)
    lake = str(workdir / "lake")
    if kind == "ingest":
        mapping = workdir / "mapping.yaml"
        mapping.write_text(MAPPING)
        exports = []
        for k in range(2):
            path = workdir / f"export-{k}.csv"
            write_export(path, [f"vm-{k}-{i}" for i in range(3)], days=40, seed=seed + k)
            exports.append(path)
        procs = [start(["ingest", str(p), "--mapping", str(mapping), "--lake", lake], workdir) for p in exports]
        exits = [finish(p, trial) for p in procs]
        from capacity_forecaster.storage import Lake

        raw = Lake.open(lake).read_table("raw_metrics", columns=["server_id"]) if any(
            e == 0 for e in exits) else pd.DataFrame({"server_id": []})
        present = set(raw["server_id"])
        for k, code in enumerate(exits):
            if code == 0 and not {f"vm-{k}-{i}" for i in range(3)} <= present:
                trial.lost_updates += 1
        inspect(lake, trial)
        return trial
    run_ok(["generate", *SMALL, "--seed", str(seed), "--lake", lake], workdir)
    if kind == "etl+forecast":
        run_ok(["etl", "--lake", lake], workdir)
        procs = [start(["etl", "--lake", lake], workdir), start(["forecast", "--lake", lake], workdir)]
    else:
        procs = [start(["etl", "--lake", lake], workdir) for _ in range(2)]
    for proc in procs:
        finish(proc, trial)
    inspect(lake, trial, require=STAGE_TABLES["etl"])
    return trial


def kill_trial(workdir: Path, after_s: float, seed: int = 0) -> Trial:
    """``kill -9`` a ``capfc run`` on an empty lake after ``after_s`` seconds, inspect, then rerun."""
    trial = Trial(f"kill@{after_s:.1f}s")
    lake = str(workdir / "lake")
    env_args = ["--lake", lake]
    config = workdir / "small.yaml"
    config.write_text(f"generate:\n  servers: 6\n  years: 1\n  holdout_days: 30\n  seed: {seed}\n")
    proc = subprocess.Popen(capfc("run", "--config", str(config), *env_args, "-q"), cwd=workdir, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(after_s)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    inspect(lake, trial)
    rerun = subprocess.Popen(capfc("run", "--config", str(config), *env_args, "-q"), cwd=workdir, env=_env(),
                             text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if finish(rerun, trial) != 0:
        trial.unclear.append(f"rerun after the kill exited {rerun.returncode}")
    inspect(lake, trial, require=[*STAGE_TABLES["generate"], *STAGE_TABLES["etl"], "forecasts", "server_risk"])
    return trial


def run_seconds(workdir: Path) -> float:
    """Wall time of one uninterrupted small ``capfc run`` (to spread the kill points over it)."""
    config = workdir / "small.yaml"
    config.write_text("generate:\n  servers: 6\n  years: 1\n  holdout_days: 30\n")
    begin = time.perf_counter()
    run_ok(["run", "--config", str(config), "--lake", str(workdir / "lake")], workdir)
    return time.perf_counter() - begin
