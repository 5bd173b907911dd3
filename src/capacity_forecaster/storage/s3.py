"""S3 for the lake: s3fs with bounded timeouts and retries, and one clear error for an unreachable endpoint.

Every S3 call of the lake goes through ``s3fs`` (wrapped as a pyarrow filesystem). botocore does
the retrying (``lake.s3_max_attempts`` attempts, standard mode: exponential backoff with jitter),
each attempt bounded by ``lake.s3_connect_timeout`` and ``lake.s3_read_timeout``; s3fs's own retry
loop is switched off so the two do not multiply. A connection that is refused, times out or drops
becomes a ``StorageError`` naming the endpoint, the operation and the path, raised from the
filesystem handler and from the file objects it opens (reads and uploads happen there).
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.fs as pafs

from capacity_forecaster.config import LakeConfig
from capacity_forecaster.errors import StorageError

T = TypeVar("T")

# What each handler method does, for messages.
_OPERATIONS = {
    "get_file_info": "listing", "get_file_info_selector": "listing", "create_dir": "creating",
    "delete_dir": "deleting", "delete_dir_contents": "deleting", "delete_root_dir_contents": "deleting",
    "delete_file": "deleting", "move": "moving", "copy_file": "copying", "open_input_stream": "reading",
    "open_input_file": "reading", "open_output_stream": "writing", "open_append_stream": "writing",
}


def endpoint_of(cfg: LakeConfig) -> str | None:
    """The S3 endpoint the lake uses: config, then ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``."""
    return cfg.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def botocore_config(cfg: LakeConfig) -> Any:
    """A ``botocore.config.Config`` with the lake's timeouts and retries, for boto3 clients of the lake."""
    from botocore.config import Config

    return Config(**botocore_kwargs(cfg))


def botocore_kwargs(cfg: LakeConfig) -> dict[str, Any]:
    """Keyword arguments of ``botocore.config.Config`` for the lake's timeouts and retries."""
    return {
        "connect_timeout": cfg.s3_connect_timeout,
        "read_timeout": cfg.s3_read_timeout,
        "retries": {"max_attempts": cfg.s3_max_attempts, "mode": "standard"},
    }


def _connectivity_types() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    types: list[type[BaseException]] = [BotoConnectionError, HTTPClientError, socket.timeout,
                                        asyncio.TimeoutError, ConnectionError]
    try:
        from fsspec.exceptions import FSTimeoutError

        types.append(FSTimeoutError)
    except ImportError:  # older fsspec
        pass
    try:
        import aiohttp

        types.append(aiohttp.ClientError)
    except ImportError:  # aiobotocore without aiohttp
        pass
    return tuple(types)


def unreachable(err: BaseException) -> BaseException | None:
    """The connection failure in ``err``'s chain (refused, timed out, dropped), or None."""
    types = _connectivity_types()
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, types):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def unreachable_error(cfg: LakeConfig, operation: str, target: str, err: BaseException) -> StorageError:
    """The one-line error for an S3 endpoint that did not answer."""
    endpoint = endpoint_of(cfg) or "the default AWS S3 endpoint"
    reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
    return StorageError(
        f"S3 endpoint {endpoint} did not answer while {operation} {target} ({reason}; "
        f"{cfg.s3_max_attempts} attempt(s), {cfg.s3_connect_timeout:g} s connect / {cfg.s3_read_timeout:g} s "
        "read timeout); check that the endpoint is up and reachable (lake.s3_endpoint_url, AWS_ENDPOINT_URL) "
        "or raise lake.s3_read_timeout / lake.s3_max_attempts"
    )


class Breaker:
    """Remembers an endpoint that just failed, so later calls fail at once instead of waiting again.

    Without it a failing stage would wait out the timeouts a second time to write its run manifest.
    The memory lasts ``cool_down`` seconds (a long-running dashboard recovers when S3 comes back).
    """

    def __init__(self, cool_down: float) -> None:
        self.cool_down = cool_down
        self._failed: tuple[float, StorageError] | None = None

    def check(self) -> None:
        """Raise the remembered error while the endpoint is considered down."""
        if self._failed is not None:
            when, error = self._failed
            if time.monotonic() - when < self.cool_down:
                ago = time.monotonic() - when
                raise StorageError(f"{error} (failing at once: the endpoint failed {ago:.0f} s ago)")
            self._failed = None

    def trip(self, error: StorageError) -> None:
        """Remember that the endpoint failed now."""
        self._failed = (time.monotonic(), error)


def _guard(cfg: LakeConfig, breaker: Breaker, operation: str, target: str, call: Callable[[], T]) -> T:
    breaker.check()
    try:
        return call()
    except StorageError:
        raise
    except Exception as err:  # noqa: BLE001 - only connection failures are translated; others re-raised
        cause = unreachable(err)
        if cause is None:
            raise
        error = unreachable_error(cfg, operation, target, cause)
        breaker.trip(error)
        raise error from err


class _GuardedFile:
    """An s3fs file whose reads, writes and close turn connection failures into ``StorageError``."""

    def __init__(self, inner: Any, cfg: LakeConfig, breaker: Breaker, path: str, operation: str) -> None:
        self._inner = inner
        self._cfg = cfg
        self._breaker = breaker
        self._path = path
        self._operation = operation

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in ("read", "readinto", "read1", "write", "flush", "close", "seek", "readall"):
            return attr

        @functools.wraps(attr)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            return _guard(self._cfg, self._breaker, self._operation, self._path, lambda: attr(*args, **kwargs))

        return guarded

    def __enter__(self) -> _GuardedFile:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class GuardedHandler(pafs.FSSpecHandler):
    """``FSSpecHandler`` whose every call reports an unreachable endpoint as one ``StorageError``."""

    def __init__(self, fs: Any, cfg: LakeConfig) -> None:
        super().__init__(fs)
        self._cfg = cfg
        self._breaker = Breaker(cool_down=cfg.s3_max_attempts * (cfg.s3_connect_timeout + cfg.s3_read_timeout))

    def __getattribute__(self, name: str) -> Any:
        attr = super().__getattribute__(name)
        operation = _OPERATIONS.get(name)
        if operation is None:
            return attr
        cfg = super().__getattribute__("_cfg")
        breaker = super().__getattribute__("_breaker")

        def guarded(*args: Any, **kwargs: Any) -> Any:
            target = str(getattr(args[0], "base_dir", args[0])) if args else "the bucket"
            return _guard(cfg, breaker, operation, f"s3://{target}", lambda: attr(*args, **kwargs))

        return guarded

    def create_dir(self, path: str, recursive: bool) -> None:
        """Nothing below a bucket: S3 has no folders, and the bucket was checked when the lake opened.

        (s3fs would probe the bucket with two more requests per call, each with its own retries.)
        """
        if "/" not in path.strip("/"):
            super().create_dir(path, recursive)

    def _file(self, path: str, mode: str, operation: str) -> Any:
        target = f"s3://{path}"
        inner = _guard(self._cfg, self._breaker, operation, target, lambda: self.fs.open(path, mode=mode))
        return pa.PythonFile(_GuardedFile(inner, self._cfg, self._breaker, target, operation), mode=mode[0])

    def open_input_stream(self, path: str) -> Any:
        """A stream over an object; reads are guarded too."""
        return self._file(path, "rb", "reading")

    def open_input_file(self, path: str) -> Any:
        """A random-access file over an object; reads are guarded too."""
        return self._file(path, "rb", "reading")

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        """An upload stream; writes and the final upload on close are guarded too."""
        return self._file(path, "wb", "writing")


@functools.cache
def _bounded_class() -> type:
    """``s3fs.S3FileSystem`` whose every request has a wall-clock deadline.

    botocore's timeouts bound connecting and each socket read, but not sending a request body: a
    large upload to a frozen endpoint blocks once the socket buffers are full. The deadline is the
    retries' worst case plus one second per MiB of body.
    """
    import s3fs
    from fsspec.asyn import sync_wrapper

    class BoundedS3FileSystem(s3fs.S3FileSystem):
        deadline_base = 60.0

        async def _call_s3(self, method: str, *akwarglist: Any, **kwargs: Any) -> Any:
            body = kwargs.get("Body")
            size = len(body) if isinstance(body, bytes | bytearray | memoryview) else 0
            deadline = self.deadline_base + size / 2**20
            return await asyncio.wait_for(super()._call_s3(method, *akwarglist, **kwargs), deadline)

        call_s3 = sync_wrapper(_call_s3)

    return BoundedS3FileSystem


def _no_expect_continue(params: dict[str, Any], **_kwargs: Any) -> None:
    params.get("headers", {}).pop("Expect", None)


def s3_filesystem(cfg: LakeConfig, role: str = "lake") -> Any:
    """An ``s3fs.S3FileSystem`` with the lake's endpoint, region, encryption, timeouts and retries; ``role`` (lake,
    source) names what the s3:// URI is in messages.

    Raises:
        StorageError: s3fs is not installed or no AWS credentials are found.
    """
    try:
        import s3fs  # noqa: F401 - only checks that the aws extra is installed
    except ImportError as err:  # the aws extra is not installed
        raise StorageError(
            f"an s3:// {role} needs the 'aws' extra: pip install 'aws-capacity-forecaster[aws]'"
        ) from err
    import botocore.session

    if botocore.session.get_session().get_credentials() is None:
        raise StorageError(
            f"no AWS credentials found for the s3:// {role}; set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY (a git-ignored .env file in the working folder is read)"
        )
    extra: dict[str, Any] = {}
    if cfg.sse != "none":
        extra["ServerSideEncryption"] = cfg.sse
        if cfg.sse == "aws:kms" and cfg.sse_kms_key_id:
            extra["SSEKMSKeyId"] = cfg.sse_kms_key_id
    client_kwargs: dict[str, Any] = {}
    region = cfg.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    from aiobotocore.session import AioSession

    session = AioSession()
    # Runs after botocore's own handler (the less specific event name fires last) and removes its
    # "Expect: 100-continue": aiohttp waits for the 100 answer without any timeout, so one PUT to a
    # frozen endpoint would hang the whole run.
    session.register("before-call.s3", _no_expect_continue)
    fs = _bounded_class()(
        session=session,
        endpoint_url=endpoint_of(cfg),
        client_kwargs=client_kwargs,
        config_kwargs=botocore_kwargs(cfg),
        s3_additional_kwargs=extra,
        use_listings_cache=False,
        skip_instance_cache=True,
    )
    fs.retries = 1  # botocore retries with backoff (config_kwargs); s3fs's loop would multiply them
    fs.deadline_base = cfg.s3_max_attempts * (cfg.s3_connect_timeout + cfg.s3_read_timeout) + 2.0
    return fs


def check_bucket(fs: Any, cfg: LakeConfig, bucket: str, uri: str, role: str) -> str | None:
    """Fail with a clear message unless ``bucket`` exists and is accessible (one HEAD request).

    Returns:
        The bucket's region as S3 reported it (``x-amz-bucket-region``), or None.

    Raises:
        StorageError: the bucket is missing, access is denied, credentials are unusable or the
            endpoint does not answer.
    """
    endpoint = endpoint_of(cfg) or "the default AWS endpoint"
    try:
        response = fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError as err:
        raise StorageError(
            f"{role} {uri}: bucket '{bucket}' does not exist at {endpoint}; create it or fix --lake"
        ) from err
    except PermissionError as err:
        raise StorageError(
            f"{role} {uri}: access to bucket '{bucket}' denied at {endpoint}; check the AWS credentials "
            "(AWS_PROFILE / AWS_ACCESS_KEY_ID) and the bucket policy"
        ) from err
    except Exception as err:  # noqa: BLE001 - botocore raises many unrelated types; translate them all here
        cause = unreachable(err)
        if cause is not None:
            raise unreachable_error(cfg, "checking bucket", f"'{bucket}' of {role} {uri}", cause) from err
        name = type(err).__name__
        if "Credential" in name:
            raise StorageError(
                f"{role} {uri}: no usable AWS credentials ({name}); set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (a git-ignored .env file is read)"
            ) from err
        message = " ".join(str(err).split())[:200]
        raise StorageError(f"{role} {uri}: cannot use bucket '{bucket}' at {endpoint}: {name}: {message}") from err
    region = (response or {}).get("BucketRegion") or (response or {}).get("ResponseMetadata", {}).get(
        "HTTPHeaders", {}).get("x-amz-bucket-region")
    return str(region) if region else None
