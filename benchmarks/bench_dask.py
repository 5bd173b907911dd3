"""Forecast on a Dask cluster started from the CLI vs the local engine, on the same 2 cores.

One lake of N servers x 3 years (default 50 servers = 200 series; CAPFC_BENCH_DASK_SERVERS) goes
through `capfc generate` and `capfc etl` once; `capfc forecast` then runs on two copies of it, side
by side in one benchmark run: first `--engine local` (2 loky workers), then `--engine dask
--scheduler` against `dask scheduler` + 2 x `dask worker --nthreads 1` started beforehand (their
start-up is not in the time, as with a cluster that is already up). Target: dask / local wall
time <= 1.2; the two runs' forecast tables must be identical.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.harness import Result

SERVERS = int(os.environ.get("CAPFC_BENCH_DASK_SERVERS", "50"))
RATIO_LIMIT = 1.2
TABLES = ("forecasts", "backtests", "backtest_forecasts", "forecast_failures", "forecast_triage")
_CAPFC = [sys.executable, "-m", "capacity_forecaster.cli"]
_DASK = str(Path(sys.executable).with_name("dask"))


def _capfc(*args: str) -> float:
    """Run ``capfc <args>`` quietly; returns its wall seconds."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPFC_BENCH_")}
    started = time.perf_counter()
    proc = subprocess.run([*_CAPFC, *args, "-qq"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=env)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"capfc {' '.join(args)} failed ({proc.returncode}): {tail[0]}")
    return time.perf_counter() - started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _same_tables(a: Path, b: Path) -> bool:
    from capacity_forecaster.storage import Lake

    left, right = Lake.open(str(a)), Lake.open(str(b))
    for name in TABLES:
        x, y = left.read_table(name), right.read_table(name)
        x = x.sort_values(list(x.columns)).reset_index(drop=True)
        y = y.sort_values(list(y.columns)).reset_index(drop=True)
        try:
            pd.testing.assert_frame_equal(x, y, check_exact=True)
        except AssertionError:
            return False
    return True


def bench_dask_cli_vs_local() -> list[Result]:
    from distributed import Client

    with tempfile.TemporaryDirectory(prefix="capfc-bench-dask-") as tmp:
        root = Path(tmp)
        lake = root / "lake"
        _capfc("generate", "--servers", str(SERVERS), "--lake", str(lake))
        _capfc("etl", "--lake", str(lake))
        shutil.copytree(lake, root / "local")
        shutil.copytree(lake, root / "dask")
        address = f"tcp://127.0.0.1:{_free_port()}"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            started = time.perf_counter()
            procs.append(subprocess.Popen([_DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                           address.rsplit(":", 1)[1], "--no-dashboard"], cwd=root,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
            for _ in range(2):
                procs.append(subprocess.Popen([_DASK, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                               "--no-dashboard"], cwd=root, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, start_new_session=True))
            with Client(address, timeout=60) as client:
                client.wait_for_workers(2, timeout=120)
            cluster_up = time.perf_counter() - started
            local = _capfc("forecast", "--engine", "local", "--lake", str(root / "local"))
            dask = _capfc("forecast", "--engine", "dask", "--scheduler", address, "--lake", str(root / "dask"))
        finally:
            for proc in procs:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        same = _same_tables(root / "local", root / "dask")
    ratio = dask / local
    return [Result(f"forecast, dask 2 workers (CLI scheduler) vs local, same 2 cores: wall ratio "
                   f"({SERVERS * 4} series)", ratio, "ratio", f"<= {RATIO_LIMIT:g}", ratio <= RATIO_LIMIT and same,
                   f"local {local:.1f} s, dask {dask:.1f} s (cluster start {cluster_up:.1f} s, not counted); "
                   f"tables identical: {'yes' if same else 'NO'}")]


BENCHMARKS = [bench_dask_cli_vs_local]
