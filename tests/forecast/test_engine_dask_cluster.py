"""The same `capfc forecast` on a real Dask cluster (scheduler and workers from the `dask` CLI) equals the local run.

Every run is a `capfc` process on a copy of one small generated lake; the tables are compared
sorted and exactly (a unit is the same computation on the same batch whichever engine runs it).
One test SIGKILLs a worker's process group (nanny and worker: a lost node) while units run.
Together ~75 s on 2 cores, so the plain cluster run and the LocalCluster one are ``slow`` (make bench).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pandas as pd
import pytest

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.base import Model
from capacity_forecaster.forecast.engine import Executor, UnitTask
from capacity_forecaster.storage import Lake

distributed = pytest.importorskip("distributed")

DASK = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
pytestmark = pytest.mark.skipif(DASK is None, reason="the dask CLI ('dask scheduler', 'dask worker') is not installed")

TABLES = ("forecasts", "backtests", "backtest_forecasts", "forecast_failures", "forecast_triage")
CLI = [sys.executable, "-m", "capacity_forecaster.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _capfc(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert proc.returncode == 0, f"capfc {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return proc


def _tables(lake: Path) -> dict[str, pd.DataFrame]:
    opened = Lake.open(str(lake))
    out = {}
    for name in TABLES:
        frame = opened.read_table(name)
        out[name] = frame.sort_values(list(frame.columns)).reset_index(drop=True)
    return out


def _assert_same(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for name in TABLES:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)


class Cluster:
    """`dask scheduler` and `dask worker` processes on 127.0.0.1, each in its own process group."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.workers: list[subprocess.Popen[bytes]] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen([str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                start_new_session=True, env={**os.environ, **(env or {})})
        log.close()
        self._procs.append(proc)
        return proc

    def start(self, n_workers: int, env: dict[str, str] | None = None) -> None:
        port = self.address.rsplit(":", 1)[1]
        self._spawn("scheduler", "scheduler", "--host", "127.0.0.1", "--port", port, "--no-dashboard", env=env)
        for i in range(n_workers):
            self.workers.append(self._spawn(f"worker-{i}", "worker", self.address, "--nthreads", "1",
                                            "--nworkers", "1", "--no-dashboard", env=env))
        with distributed.Client(self.address, timeout=60) as client:
            client.wait_for_workers(n_workers, timeout=120)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(self.workdir.glob("*.log")))

    def stop(self) -> None:
        for proc in self._procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def start(n_workers: int, env: dict[str, str] | None = None) -> Cluster:
        folder = tmp_path / f"cluster-{len(started)}"
        folder.mkdir()
        new = Cluster(folder)
        started.append(new)
        new.start(n_workers, env)
        return new

    try:
        yield start
    finally:
        for each in started:
            each.stop()


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dask-cluster")
    _capfc("generate", "--servers", "6", "--years", "1", "--lake", "lake", "-qq", cwd=root)
    _capfc("etl", "--lake", "lake", "-qq", cwd=root)
    return root / "lake"


def _copy(lake: Path, dest: Path) -> Path:
    shutil.copytree(lake, dest)
    return dest


@pytest.fixture(scope="module")
def local(lake: Path) -> dict[str, pd.DataFrame]:
    copy = _copy(lake, lake.parent / "local")
    _capfc("forecast", "--engine", "local", "--lake", str(copy), "-qq", cwd=lake.parent)
    tables = _tables(copy)
    assert len(tables["forecasts"]) and len(tables["backtest_forecasts"])
    return tables


@pytest.mark.slow  # the kill test below runs the same cluster and comparison in `make test`
def test_cli_cluster_matches_local(lake: Path, local: dict[str, pd.DataFrame], tmp_path: Path,
                                   cluster: Callable[..., Cluster]) -> None:
    started = cluster(2)
    copy = _copy(lake, tmp_path / "lake")
    _capfc("forecast", "--engine", "dask", "--scheduler", started.address, "--lake", str(copy), "-qq",
           cwd=tmp_path)
    _assert_same(_tables(copy), local)


def test_worker_killed_mid_run_loses_no_series(lake: Path, local: dict[str, pd.DataFrame], tmp_path: Path,
                                               cluster: Callable[..., Cluster]) -> None:
    started = cluster(2)
    copy = _copy(lake, tmp_path / "lake")
    run = subprocess.Popen([*CLI, "forecast", "--engine", "dask", "--scheduler", started.address, "--lake",
                            str(copy), "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           cwd=tmp_path)
    try:
        with distributed.Client(started.address, timeout=30) as client:
            deadline = time.monotonic() + 120
            busy: list[str] = []
            while not busy and run.poll() is None and time.monotonic() < deadline:
                busy = [w for w, keys in client.processing().items() if keys]
                time.sleep(0.02)
            assert busy, f"no unit started on the cluster (run exit code {run.poll()})\n{started.logs()}"
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            victim = next(p for p in started.workers if os.getpgid(pid) == p.pid)
            assert run.poll() is None, "the run ended before a worker could be killed"
            os.killpg(victim.pid, signal.SIGKILL)  # the nanny and its worker: a lost node
            victim.wait()
            _, stderr = run.communicate(timeout=300)
            assert run.returncode == 0, f"forecast exited {run.returncode}:\n{stderr[-3000:]}\n{started.logs()}"
            assert "lost their input with a Dask worker" in stderr  # the resend path ran
            assert len(client.scheduler_info()["workers"]) == 1
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    _assert_same(_tables(copy), local)


@pytest.mark.slow
def test_local_process_cluster_matches_local(lake: Path, local: dict[str, pd.DataFrame], tmp_path: Path) -> None:
    # No --scheduler: the engine starts a LocalCluster of n_jobs (2) worker processes and closes it.
    copy = _copy(lake, tmp_path / "lake")
    _capfc("forecast", "--engine", "dask", "--lake", str(copy), "-qq", cwd=tmp_path)
    _assert_same(_tables(copy), local)


class Crash:
    """A model whose fit takes its worker process down (as a segfault or the OOM killer would)."""

    name = "crash"

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> Crash:
        os._exit(1)


def test_a_unit_that_kills_its_workers_fails_with_one_clear_error(cluster: Callable[..., Cluster]) -> None:
    # Its input sits on the worker it kills: sent 1 + LOST_INPUT_RESENDS times, then one ForecastError.
    # Workers import the model's class from this file (distributed pickles the task by reference).
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    started = cluster(1, {"PYTHONPATH": path})
    history = pd.DataFrame({"server_id": ["srv-1"], "metric": ["cpu"], "ds": [pd.Timestamp("2025-01-01")],
                            "value": [1.0]})
    task = UnitTask(7, "crash", "final", None, history, cast(Model, Crash()), 1, "D", 0.8)
    cfg = ForecastConfig(engine="dask", scheduler=started.address)
    with Executor(cfg) as executor, pytest.raises(ForecastError, match=r"lost unit 7 \(crash, final, 1 server"):
        executor.run([task])
