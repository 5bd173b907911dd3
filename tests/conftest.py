"""Shared fixtures: a real moto S3 server over HTTP on 127.0.0.1, and lakes on disk and on S3."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from capacity_forecaster.config import LakeConfig
from capacity_forecaster.storage import Lake

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = (REPO / ".." / "shared" / "data" / "real").resolve()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's standalone server in a child process on a free loopback port, with dummy credentials.

    A child process, not a thread: delta-rs keeps the GIL through some of its S3 calls, which
    would starve an in-process server thread until the request timed out.
    """
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                            "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    port = _free_port()
    moto = Path(sys.executable).with_name("moto_server")
    server = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.1)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture()
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the moto server."""
    import boto3

    name = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def lake_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A lake URI: a temporary folder, or a prefix in a fresh bucket on the moto server."""
    if request.param == "local":
        return str(tmp_path / "lake")
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/capfc"


@pytest.fixture()
def lake(lake_uri: str) -> Lake:
    """An opened, writable lake (local or S3)."""
    return Lake.open(lake_uri, LakeConfig(), for_writing=True)
