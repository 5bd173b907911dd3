"""Source expansion: files, folders and globs (local or S3) into a de-duplicated list of files."""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow.fs as pafs

from capacity_forecaster.errors import InputError

logger = logging.getLogger(__name__)

FilesystemFor = Callable[[str], tuple[pafs.FileSystem, str]]
# Compressed CSV as the readers decompress it (helper-51: a folder skipped .csv.bz2, .csv.zst and .csv.lz4 silently).
FOLDER_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst", ".csv.lz4", ".parquet")
PARQUET_SUFFIXES = (".parquet", ".pq")
_GLOB_CHARS = "*?["


@dataclass(frozen=True)
class SourceFile:
    """One file to read.

    Attributes:
        label: how messages and quarantine rows name the file (a path, or ``s3://bucket/key``).
        filesystem: the pyarrow filesystem holding it.
        path: its path within ``filesystem``.
        size: its size in bytes as listed, or None when not known.
    """

    label: str
    filesystem: pafs.FileSystem
    path: str
    size: int | None = None

    @property
    def name(self) -> str:
        """The file name without folders."""
        return posixpath.basename(self.path.replace("\\", "/"))

    def is_parquet(self, declared: str = "auto") -> bool:
        """Whether to read the file as Parquet (``declared`` is the mapping's ``format``)."""
        if declared != "auto":
            return declared == "parquet"
        return self.name.lower().endswith(PARQUET_SUFFIXES)


def _label(uri: str, path: str) -> str:
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        return f"{scheme}://{path.lstrip('/')}"
    return path


def _hidden(relative: str) -> bool:
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def _walk_folder(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=True))
    base = folder.rstrip("/") + "/"
    return sorted((
        info for info in infos
        if info.type == pafs.FileType.File
        and info.path.lower().endswith(FOLDER_SUFFIXES)
        and not _hidden(info.path[len(base):] if info.path.startswith(base) else info.base_name)
    ), key=lambda info: info.path)


def _expand_glob(fs: pafs.FileSystem, pattern: str) -> list[pafs.FileInfo]:
    first = min(i for i in (pattern.find(c) for c in _GLOB_CHARS) if i >= 0)
    base = pattern[: pattern.rfind("/", 0, first) + 1] or "."
    rest = pattern[len(base):]
    recursive = "/" in rest or "**" in rest
    selector = pafs.FileSelector(base.rstrip("/") or "/", recursive=recursive, allow_not_found=True)
    infos = fs.get_file_info(selector)
    # fnmatch's '*' also matches '/', so '**/' is tried both as "any folders" and as "no folder".
    patterns = {pattern, pattern.replace("**/", "")}
    return sorted((
        info for info in infos
        if info.type == pafs.FileType.File and any(fnmatch.fnmatchcase(info.path, p) for p in patterns)
    ), key=lambda info: info.path)


def expand_sources(sources: Sequence[str], filesystem_for: FilesystemFor) -> list[SourceFile]:
    """Turn files, folders and glob patterns into the list of files to read.

    Folders are walked recursively for the ``FOLDER_SUFFIXES`` (CSV, compressed CSV, Parquet; skipping
    names that start with ``.`` or ``_``); a path that does not exist but holds ``*``, ``?`` or ``[`` is
    a glob, matched against the filesystem with fnmatch (an existing file or folder is read as named,
    whatever its name); a file given or matched more than once is read once, at its first position.

    Args:
        sources: paths, folders or glob patterns, local or ``s3://``.
        filesystem_for: returns (filesystem, path within it) for a source.

    Returns:
        The files, in the order given (each folder or glob sorted by path).

    Raises:
        InputError: a source does not exist, is not a regular file (a pipe), cannot be listed, or a
            glob matches nothing.
    """
    if not sources:
        raise InputError("no sources given; pass at least one file, folder or glob pattern")
    seen: set[tuple[str, str]] = set()
    files: list[SourceFile] = []
    repeated = 0
    for uri in sources:
        fs, path = filesystem_for(uri)
        try:
            # An existing file or folder is read as named, even when its name holds glob characters
            # ('exp?', 'run[1]'); only a path that does not exist is matched as a pattern.
            info = fs.get_file_info(path)
            if info.type == pafs.FileType.Directory:
                paths = _walk_folder(fs, path)
                if not paths:
                    logger.warning("%s: folder holds no %s files", uri, ", ".join(f"*{s}" for s in FOLDER_SUFFIXES))
            elif info.type == pafs.FileType.File:
                paths = [info]
            elif info.type == pafs.FileType.Unknown:
                raise InputError(f"{uri}: not a regular file (a pipe or a device?); save the export to a file first")
            elif any(c in path for c in _GLOB_CHARS):
                paths = _expand_glob(fs, path)
                if not paths:
                    raise InputError(f"{uri}: no files match this pattern")
            else:
                raise InputError(f"{uri}: no such file or folder")
        except OSError as err:
            raise InputError(f"{uri}: cannot be listed: {err}") from err
        for found in paths:
            key = (fs.type_name, found.path)
            if key in seen:
                repeated += 1
                continue
            seen.add(key)
            files.append(SourceFile(_label(uri, found.path), fs, found.path, found.size))
    if repeated:
        logger.info("skipped %s file(s) named more than once in the sources", repeated)
    return files


_HASH_BLOCK = 1 << 20
_PREFIX = 1 << 16


def _digest(source: SourceFile, limit: int | None = None) -> str:
    """SHA-256 of the file's bytes (its first ``limit`` bytes when given)."""
    digest = hashlib.sha256()
    try:
        with source.filesystem.open_input_stream(source.path) as stream:
            left = limit
            while left is None or left > 0:
                block = stream.read(_HASH_BLOCK if left is None else min(_HASH_BLOCK, left))
                if not block:
                    break
                digest.update(block)
                left = None if left is None else left - len(block)
    except OSError as err:
        raise InputError(f"{source.label}: cannot be opened: {err}") from err
    return digest.hexdigest()


def identical_files(files: Sequence[SourceFile]) -> list[tuple[SourceFile, SourceFile]]:
    """Files whose bytes equal an earlier file's, each with that file: ``(copy, original)``.

    Sizes come from the listing; only files of equal, non-zero size are read: their first 64 KiB, and
    all of it only where those agree too (a day's export beside the next day's of the same size differs
    in its first lines). Helper-60: "export.csv" beside "export (1).csv" and "export - Copy.csv"
    quarantined every sample twice as duplicate_timestamp and stopped at the quarantine share.

    Raises:
        InputError: a file that must be compared cannot be read.
    """
    by_size: dict[tuple[str, int], list[SourceFile]] = {}
    for source in files:
        if source.size:  # an empty file has no rows to count twice
            by_size.setdefault((source.filesystem.type_name, source.size), []).append(source)
    copies: list[tuple[SourceFile, SourceFile]] = []
    for group in by_size.values():
        if len(group) < 2:
            continue
        by_prefix: dict[str, list[SourceFile]] = {}
        for source in group:
            by_prefix.setdefault(_digest(source, _PREFIX), []).append(source)
        for same in by_prefix.values():
            if len(same) < 2:
                continue
            first: dict[str, SourceFile] = {}
            for source in same:
                whole = _digest(source) if (source.size or 0) > _PREFIX else ""
                original = first.setdefault(whole, source)
                if original is not source:
                    copies.append((source, original))
    return copies
