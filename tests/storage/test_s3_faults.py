"""S3 faults on a moto server in its own process: killed, frozen (SIGSTOP), slow, or down at start.

Each ends with one clear line naming the endpoint and the operation, within the configured timeouts
(short here: 1 s connect/read, 2 attempts), never a traceback or a hang.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.cli import main
from capacity_forecaster.config import LakeConfig
from capacity_forecaster.errors import StorageError
from capacity_forecaster.storage import Lake

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
FAST = {"s3_connect_timeout": 1.0, "s3_read_timeout": 1.0, "s3_max_attempts": 2}
# Worst case with FAST: 2 attempts x (up to twice the read timeout) + backoff + process start.
BOUND_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoProcess:
    """moto's S3 server as a child process, so it can be killed or frozen."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        moto = Path(sys.executable).with_name("moto_server")
        self.proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.proc.kill()
                    raise
                time.sleep(0.1)
        self.frozen = False

    def kill(self) -> None:
        if self.frozen:
            self.thaw()
        self.proc.kill()
        self.proc.wait()

    def freeze(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False


@pytest.fixture()
def moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoProcess]:
    server = MotoProcess()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    for key, value in FAST.items():
        monkeypatch.setenv(f"CAPFC_LAKE__{key.upper()}", str(value))
    try:
        yield server
    finally:
        if server.frozen:
            server.thaw()
        server.proc.kill()
        server.proc.wait()


@pytest.fixture()
def s3_lake(moto: MotoProcess) -> Lake:
    import boto3

    boto3.client("s3", endpoint_url=moto.endpoint, region_name="us-east-1").create_bucket(Bucket="bkt")
    lake = Lake.open("s3://bkt/lake", LakeConfig(**FAST), for_writing=True)
    days = pd.date_range("2025-01-01", periods=40)
    lake.write_table("raw_metrics", pd.DataFrame({"server_id": "srv-1", "ds": days, "metric": "cpu",
                                                  "value": np.arange(40.0)}))
    return lake


def _one_clear_line(err: str, endpoint: str, operation: str) -> None:
    assert err.startswith("capfc: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert f"S3 endpoint {endpoint} did not answer while {operation}" in err, err


def test_endpoint_killed_mid_run_gives_storage_error(moto: MotoProcess, s3_lake: Lake) -> None:
    moto.kill()
    start = time.monotonic()
    with pytest.raises(StorageError, match=f"S3 endpoint {moto.endpoint} did not answer while reading "
                                           r"s3://bkt/lake/raw/metrics/_delta_log .*Connection refused"):
        s3_lake.read_table("raw_metrics")
    assert time.monotonic() - start < BOUND_S
    # The next call of the same lake fails at once instead of waiting out the retries again.
    frame = pd.DataFrame({"server_id": ["srv-2"], "ds": [pd.Timestamp("2025-03-01")], "metric": ["cpu"],
                          "value": [1.0]})
    with pytest.raises(StorageError, match="did not answer .*failing at once"):
        s3_lake.write_table("raw_metrics", frame)


def test_endpoint_killed_then_cli_exits_2_with_one_line(moto: MotoProcess, s3_lake: Lake,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    moto.kill()
    start = time.monotonic()
    assert main(["sql", "SELECT count(*) FROM raw_metrics", "--lake", "s3://bkt/lake"]) == 2
    assert time.monotonic() - start < BOUND_S
    _one_clear_line(capsys.readouterr().err, moto.endpoint, "checking bucket 'bkt'")


def test_frozen_endpoint_times_out_with_one_line(moto: MotoProcess, s3_lake: Lake,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    moto.freeze()
    start = time.monotonic()
    # botocore's read timeout or, on a loaded machine, the per-request wall-clock limit fires first.
    with pytest.raises(StorageError,
                       match="did not answer while reading .*(ReadTimeoutError|FSTimeoutError|timed out)"):
        s3_lake.read_table("raw_metrics")
    assert time.monotonic() - start < BOUND_S
    start = time.monotonic()
    assert main(["etl", "--lake", "s3://bkt/lake"]) == 2
    assert time.monotonic() - start < BOUND_S
    _one_clear_line(capsys.readouterr().err, moto.endpoint, "checking bucket 'bkt'")


def test_frozen_endpoint_during_an_upload_times_out(moto: MotoProcess, s3_lake: Lake) -> None:
    moto.freeze()
    start = time.monotonic()
    with pytest.raises(StorageError, match="did not answer while writing s3://bkt/lake/raw/metrics/.*parquet"):
        s3_lake.write_table("raw_metrics", pd.DataFrame({"server_id": "srv-1", "metric": "cpu", "value": 1.0,
                                                         "ds": pd.date_range("2025-01-01", periods=10)}))
    assert time.monotonic() - start < BOUND_S


def test_endpoint_down_at_start_is_not_a_missing_bucket(moto: MotoProcess,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    moto.kill()
    start = time.monotonic()
    assert main(["sql", "SELECT 1", "--lake", "s3://bkt/lake"]) == 2
    assert time.monotonic() - start < BOUND_S
    err = capsys.readouterr().err
    _one_clear_line(err, moto.endpoint, "checking bucket 'bkt'")
    assert "does not exist" not in err


def test_missing_bucket_on_a_live_endpoint_says_so(moto: MotoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELECT 1", "--lake", "s3://no-such-bkt/lake"]) == 2
    err = capsys.readouterr().err
    assert "bucket 'no-such-bkt' does not exist at " + moto.endpoint in err and err.count("\n") == 1


def test_timeouts_and_retries_reach_s3fs() -> None:
    from capacity_forecaster.storage.s3 import botocore_config

    config = botocore_config(LakeConfig(s3_connect_timeout=2, s3_read_timeout=3, s3_max_attempts=4))
    assert (config.connect_timeout, config.read_timeout) == (2, 3)
    assert config.retries == {"max_attempts": 4, "mode": "standard"}


def test_endpoint_frozen_mid_stage_fails_once_not_per_call(moto: MotoProcess, s3_lake: Lake,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The stage's first read times out; its run manifest then fails at once instead of waiting again."""
    original = Lake.table_info

    def freeze_then_read(self: Lake, name: str, **kwargs: object) -> object:
        if not moto.frozen:
            moto.freeze()
        return original(self, name, **kwargs)  # type: ignore[arg-type]

    from capacity_forecaster.storage import s3

    rounds: list[str] = []  # every round of timeouts ends in one unreachable_error
    translate = s3.unreachable_error

    def counted(*args: object, **kwargs: object) -> object:
        rounds.append(str(args[1]))
        return translate(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(s3, "unreachable_error", counted)
    monkeypatch.setattr(Lake, "table_info", freeze_then_read)
    assert main(["etl", "--lake", "s3://bkt/lake"]) == 2
    err = capsys.readouterr().err
    _one_clear_line(err, moto.endpoint, "reading")
    # One round of timeouts, not a second one for the run manifest: that write fails at once (s3.Breaker).
    assert len(rounds) == 1, rounds


class SlowProxy:
    """A TCP proxy on 127.0.0.1 that holds every response from the S3 server for ``delay`` seconds."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        import threading

        self.delay = delay
        self.upstream = upstream_port
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.endpoint = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import threading

        while not self.stopped.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.delay), daemon=True).start()

    def _pipe(self, source: socket.socket, target: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                if delay:
                    time.sleep(delay)
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        self.server.close()


@pytest.mark.parametrize(("delay", "ok"), [
    pytest.param(0.2, True, marks=pytest.mark.xfail(
        reason="delta-rs's log listing through this test's delaying TCP proxy times out even at 3 s per "
               "request (boto reads through it fine); open question noted in issue 14", strict=False)),
    (3.0, False)])
def test_slow_responses_succeed_within_the_timeout_and_fail_clearly_beyond_it(
        moto: MotoProcess, s3_lake: Lake, delay: float, ok: bool) -> None:
    """A slow endpoint: answers under the read timeout still work; slower ones end with one clear error."""
    proxy = SlowProxy(moto.port, delay)
    try:
        config = LakeConfig(s3_endpoint_url=proxy.endpoint, **FAST)
        start = time.monotonic()
        if ok:
            assert len(Lake.open("s3://bkt/lake", config).read_table("raw_metrics")) == 40
        else:
            with pytest.raises(StorageError, match=f"S3 endpoint {proxy.endpoint} did not answer while .*timeout"):
                Lake.open("s3://bkt/lake", config).read_table("raw_metrics")
        assert time.monotonic() - start < BOUND_S
    finally:
        proxy.close()
