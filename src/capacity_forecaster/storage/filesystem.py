"""Resolve a lake or source URI (local folder or ``s3://bucket/prefix``) to a pyarrow filesystem."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from capacity_forecaster.config import LakeConfig
from capacity_forecaster.errors import StorageError
from capacity_forecaster.storage.s3 import GuardedHandler, check_bucket, s3_filesystem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Location:
    """A filesystem plus the path inside it.

    Attributes:
        fs: the pyarrow filesystem (local, or S3 through s3fs).
        path: path inside ``fs``: an absolute local path, or ``bucket/prefix`` on S3.
        uri: the URI as the user wrote it, for messages.
        is_s3: whether this is an S3 location.
        region: the bucket's region as S3 reported it (None for a local folder, or when it did not say).
    """

    fs: pafs.FileSystem
    path: str
    uri: str
    is_s3: bool
    region: str | None = None


def is_s3_uri(uri: str) -> bool:
    """True for ``s3://`` (and ``s3a://``) URIs."""
    return uri.startswith(("s3://", "s3a://"))


def resolve(
    uri: str, cfg: LakeConfig | None = None, *, for_writing: bool = False, role: str = "lake", existing: bool = False
) -> Location:
    """Turn a URI into a Location, checking that it can be used.

    Args:
        uri: a local path or ``s3://bucket/prefix``.
        cfg: lake settings (endpoint, region, server-side encryption); defaults apply if None.
        for_writing: create a missing local folder and check it is writable.
        role: what the URI is, for messages: "lake" (must be a folder) or "source" (a file,
            folder or glob to read).
        existing: a local folder must exist already (a stage that reads the lake: a mistyped
            ``--lake`` is refused instead of created, and nothing is written there).

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
        fs = s3_filesystem(cfg, role)
        region = check_bucket(fs, cfg, bucket, uri, role)
        return Location(pafs.PyFileSystem(GuardedHandler(fs, cfg)), path, uri, True, region)
    if "://" in uri and not uri.startswith("file://"):
        scheme = uri.split("://", 1)[0]
        raise StorageError(f"{role} {uri}: unsupported scheme '{scheme}://'; use a local folder or s3://")
    local = Path(uri.removeprefix("file://")).expanduser().resolve()
    odd = sorted({c for c in "#?%" if c in str(local)})
    if role == "lake" and odd:
        # The Delta log names files by URL: '#' starts a fragment, '?' a query, '%20' decodes to a space (helper-51:
        # a lake in 'lake#1' lost its own commits; 'lake%201' read 'lake 1').
        raise StorageError(f"{role} {uri}: the folder path holds {' and '.join(repr(c) for c in odd)}, which the "
                           "table logs read as URL syntax; choose a folder without them")
    if existing and not local.exists():
        raise StorageError(f"{role} {uri}: no such folder {local}; a lake is made by capfc run, generate or "
                           "ingest (check --lake)")
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
