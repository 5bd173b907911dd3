"""Resolve a lake or source URI (local folder or ``s3://bucket/prefix``) to a pyarrow filesystem."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from capacity_forecaster.config import LakeConfig
from capacity_forecaster.errors import StorageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Location:
    """A filesystem plus the path inside it.

    Attributes:
        fs: the pyarrow filesystem (local, or S3 through s3fs).
        path: path inside ``fs``: an absolute local path, or ``bucket/prefix`` on S3.
        uri: the URI as the user wrote it, for messages.
        is_s3: whether this is an S3 location.
    """

    fs: pafs.FileSystem
    path: str
    uri: str
    is_s3: bool


def is_s3_uri(uri: str) -> bool:
    """True for ``s3://`` (and ``s3a://``) URIs."""
    return uri.startswith(("s3://", "s3a://"))


def _s3_filesystem(cfg: LakeConfig) -> Any:
    try:
        import s3fs
    except ImportError as err:  # the aws extra is not installed
        raise StorageError(
            "an s3:// lake needs the 'aws' extra: pip install 'aws-capacity-forecaster[aws]'"
        ) from err
    import botocore.session

    if botocore.session.get_session().get_credentials() is None:
        raise StorageError(
            "no AWS credentials found for the s3:// lake; set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY (a git-ignored .env file in the working folder is read)"
        )
    extra: dict[str, Any] = {}
    if cfg.sse != "none":
        extra["ServerSideEncryption"] = cfg.sse
        if cfg.sse == "aws:kms" and cfg.sse_kms_key_id:
            extra["SSEKMSKeyId"] = cfg.sse_kms_key_id
    endpoint = cfg.s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    client_kwargs: dict[str, Any] = {}
    region = cfg.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client_kwargs["region_name"] = region
    return s3fs.S3FileSystem(
        endpoint_url=endpoint,
        client_kwargs=client_kwargs,
        s3_additional_kwargs=extra,
        use_listings_cache=False,
        skip_instance_cache=True,
    )


def _check_bucket(fs: Any, bucket: str, uri: str, role: str) -> None:
    endpoint = getattr(fs, "endpoint_url", None) or "the default AWS endpoint"
    try:
        found = fs.exists(bucket)
    except PermissionError as err:
        raise StorageError(
            f"{role} {uri}: access to bucket '{bucket}' denied at {endpoint}; check the AWS credentials "
            "(AWS_PROFILE / AWS_ACCESS_KEY_ID) and the bucket policy"
        ) from err
    except Exception as err:  # botocore raises many unrelated types; translate them all here
        name = type(err).__name__
        if "Credential" in name:
            raise StorageError(
                f"{role} {uri}: no usable AWS credentials ({name}); set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (a git-ignored .env file is read)"
            ) from err
        raise StorageError(f"{role} {uri}: cannot reach S3 at {endpoint}: {name}: {err}") from err
    if not found:
        raise StorageError(
            f"{role} {uri}: bucket '{bucket}' does not exist or is not visible at {endpoint}; "
            "create it or fix --lake"
        )


def resolve(
    uri: str, cfg: LakeConfig | None = None, *, for_writing: bool = False, role: str = "lake"
) -> Location:
    """Turn a URI into a Location, checking that it can be used.

    Args:
        uri: a local path or ``s3://bucket/prefix``.
        cfg: lake settings (endpoint, region, server-side encryption); defaults apply if None.
        for_writing: create a missing local folder and check it is writable.
        role: what the URI is, for messages: "lake" (must be a folder) or "source" (a file,
            folder or glob to read).

    Returns:
        The Location.

    Raises:
        StorageError: the folder cannot be created or written, or the bucket is missing
            or inaccessible.
    """
    cfg = cfg or LakeConfig()
    if is_s3_uri(uri):
        path = uri.split("://", 1)[1].strip("/")
        bucket = path.split("/", 1)[0]
        if len(bucket) < 3:
            raise StorageError(f"{role} {uri}: '{bucket}' is not a valid bucket name (3-63 characters)")
        fs = _s3_filesystem(cfg)
        _check_bucket(fs, bucket, uri, role)
        return Location(pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path, uri, True)
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise StorageError(f"{role} {uri}: unsupported scheme '{scheme}://'; use a local folder or s3://")
    local = Path(uri.removeprefix("file://")).expanduser().resolve()
    if for_writing:
        try:
            local.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(
                f"{role} {uri}: cannot create folder {local} ({err.strerror}); choose a writable --lake"
            ) from err
        if not os.access(local, os.W_OK):
            raise StorageError(f"{role} {uri}: folder {local} is not writable; choose a writable --lake")
    elif role == "lake" and local.exists() and not local.is_dir():
        raise StorageError(f"{role} {uri}: {local} is a file, not a folder")
    return Location(pafs.LocalFileSystem(), str(local), uri, False)
