"""The engines agree: in-process, the loky process pool and Dask (a real LocalCluster) give identical output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.forecast import registry
from capacity_forecaster.forecast.stage import ForecastResult, run_forecast

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")
# Ship the toy classes to worker processes by value: workers then need not import this test module
# (and pytest and distributed with it), which would dominate the pool's start-up time.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class ToyDrift:
    """Last value plus the mean daily change of the last four weeks (deterministic, local)."""

    name: ClassVar[str] = "toy_drift"
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 28

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> ToyDrift:
        self._rows = []
        for (s, m), g in history.groupby(["server_id", "metric"], sort=True):
            v = g["value"].ffill().to_numpy()[-28:]
            self._rows.append((s, m, g["ds"].max(), v[-1], (v[-1] - v[0]) / 27.0))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        steps = np.arange(1, horizon + 1)
        return pd.concat([pd.DataFrame({"server_id": s, "metric": m, "ds": last + pd.to_timedelta(steps, "D"),
                                        "yhat": np.clip(v + d * steps, 0, 100)}) for s, m, last, v, d in self._rows],
                         ignore_index=True)


class ToyFleetMean:
    """Global: every series' forecast is its last value shrunk towards the fleet mean."""

    name: ClassVar[str] = "toy_fleet_mean"
    kind: ClassVar[Literal["local", "global"]] = "global"
    min_history: ClassVar[int] = 1

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> ToyFleetMean:
        fleet = history["value"].mean()
        last = history.dropna().groupby(["server_id", "metric"], sort=True).agg(ds=("ds", "max"), v=("value", "last"))
        ends = history.groupby(["server_id", "metric"], sort=True)["ds"].max()
        self._rows = [(s, m, ends[(s, m)], 0.5 * (row.v + fleet)) for (s, m), row in last.iterrows()]
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        steps = pd.to_timedelta(np.arange(1, horizon + 1), "D")
        return pd.concat([pd.DataFrame({"server_id": s, "metric": m, "ds": last + steps, "yhat": v,
                                        "yhat_lower": v - 5, "yhat_upper": v + 5}) for s, m, last, v in self._rows],
                         ignore_index=True)


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "_REGISTRY", {ToyDrift.name: ToyDrift, ToyFleetMean.name: ToyFleetMean})
    monkeypatch.setattr(registry, "MODEL_MODULES", ())


@pytest.fixture(scope="module")
def fleet() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    days = 200
    t = np.arange(days)
    frames = []
    for i in range(6):
        for metric in ("cpu", "memory"):
            value = 30 + 10 * np.sin(2 * np.pi * t / 7) + 0.05 * i * t + rng.normal(0, 3, days)
            value[rng.random(days) < 0.03] = np.nan
            frames.append(pd.DataFrame({"server_id": f"srv-{i}", "metric": metric, "value": np.clip(value, 0, 100),
                                        "ds": pd.Timestamp("2025-01-01") + pd.to_timedelta(t, "D")}))
    return pd.concat(frames, ignore_index=True)


def _cfg(**kw: object) -> ForecastConfig:
    return ForecastConfig(**{"horizon": 21, "backtest_windows": 2, "batch_size": 2, **kw})


def _same(a: ForecastResult, b: ForecastResult) -> None:
    pd.testing.assert_frame_equal(a.forecasts, b.forecasts)
    pd.testing.assert_frame_equal(a.backtests, b.backtests)
    pd.testing.assert_frame_equal(a.failures, b.failures)
    assert [(f.model, f.series) for f in a.fitted] == [(f.model, f.series) for f in b.fitted]


@pytest.fixture(scope="module")
def inline(fleet: pd.DataFrame) -> Iterator[ForecastResult]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "_REGISTRY", {ToyDrift.name: ToyDrift, ToyFleetMean.name: ToyFleetMean})
        mp.setattr(registry, "MODEL_MODULES", ())
        yield run_forecast(fleet, _cfg(n_jobs=1))


def test_local_process_pool_matches_in_process(fleet: pd.DataFrame, inline: ForecastResult) -> None:
    pooled = run_forecast(fleet, _cfg(n_jobs=2))
    _same(inline, pooled)
    assert set(inline.forecasts["model"]) <= {"seasonal_naive", "toy_drift", "toy_fleet_mean", "ensemble"}


def test_dask_cluster_matches_local(fleet: pd.DataFrame, inline: ForecastResult) -> None:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        result = run_forecast(fleet, _cfg(engine="dask", scheduler=cluster.scheduler_address))
        assert result.summary["workers"] == 2
        # The engine closed its client, not the cluster it did not start.
        assert cluster.scheduler.status.name == "running"
    _same(inline, result)


@pytest.mark.slow
def test_dask_starts_and_closes_its_own_process_cluster(fleet: pd.DataFrame, inline: ForecastResult) -> None:
    result = run_forecast(fleet, _cfg(engine="dask", n_jobs=2))
    _same(inline, result)


def test_unreachable_scheduler_fails_fast_with_one_clear_line(tmp_path: Path) -> None:
    from capacity_forecaster.errors import ForecastError
    from capacity_forecaster.forecast.engine import Executor

    start = time.monotonic()
    with pytest.raises(ForecastError, match=r"Dask scheduler tcp://127\.0\.0\.1:1 within 1 s .*scheduler_timeout"):
        with Executor(ForecastConfig(engine="dask", scheduler="tcp://127.0.0.1:1", scheduler_timeout=1.0)):
            pass
    assert time.monotonic() - start < 10
    with pytest.raises(ForecastError, match="invalid address"):
        with Executor(ForecastConfig(engine="dask", scheduler="nonsense::", scheduler_timeout=1.0)):
            pass


_ORPHAN_SCRIPT = """
import os, sys, time
import pandas as pd
from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.forecast.engine import Executor, UnitTask

class Sleepy:
    name = "sleepy"
    def fit(self, history, *, freq="D"):
        # One write(2) of a short line is atomic on a pipe; print() writes its pieces separately, so two
        # workers starting together could interleave them and the reader would never see its line.
        os.write(1, f"worker {os.getpid()}\\n".encode())
        time.sleep(60)
        return self

history = pd.DataFrame({"server_id": ["s"], "metric": ["cpu"], "ds": [pd.Timestamp("2025-01-01")], "value": [1.0]})
tasks = [UnitTask(i, "sleepy", "final", None, history, Sleepy(), 1, "D", 0.8) for i in range(2)]
with Executor(ForecastConfig(n_jobs=2)) as ex:
    ex.run(tasks)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_loky_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(_ORPHAN_SCRIPT)
    errors = tmp_path / "stderr.txt"
    with errors.open("w") as err:
        parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=err, text=True)
    workers: list[int] = []
    try:
        assert parent.stdout is not None
        while len(workers) < 2:
            line = parent.stdout.readline()
            assert line, f"the parent ended before its workers started: {errors.read_text()[-2000:]}"
            if line.startswith("worker "):  # anything else on stdout (a library's notice) is not ours
                workers.append(int(line.split()[1]))
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in workers if _running(pid)]
    for pid in alive:  # clean up before failing
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their killed parent"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
