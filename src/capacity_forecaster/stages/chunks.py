"""Chunks of servers for the streaming stages: their size (configured, or from the available memory), ids, filter."""

from __future__ import annotations

import logging
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from capacity_forecaster.errors import StorageError
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)

# Share of the available memory one stage's chunk may use; the rest is left to other processes and
# to what the stage holds for the whole fleet.
MEMORY_SHARE = 0.25
_FALLBACK_BYTES = 2 << 30


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable), or 2 GiB if it cannot be read."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return _FALLBACK_BYTES


def servers_per_chunk(configured: int | None, bytes_per_server: int, lowest: int, highest: int,
                      key: str, available: int | None = None) -> int:
    """``configured`` if set, else as many servers as fit ``MEMORY_SHARE`` of the available memory.

    Args:
        configured: the config value (None = derive).
        bytes_per_server: measured peak memory per server in a chunk (see benchmarks/bench_scale.py).
        lowest, highest: bounds of the derived size.
        key: config key, for the log line.
        available: available bytes (default: ``available_memory()``).

    Returns:
        Servers per chunk (>= 1).
    """
    if configured is not None:
        return configured
    free = available_memory() if available is None else available
    size = int(min(highest, max(lowest, free * MEMORY_SHARE // bytes_per_server)))
    log.debug("%s = %d (derived from %.1f GB available memory)", key, size, free / 2**30)
    return size


def server_ids(lake: Lake, table: str) -> list[str] | None:
    """The sorted distinct server ids of ``table``, scanned batch by batch (memory: the ids only); None without it."""
    dataset = lake.dataset(table)
    if dataset is None:
        return None
    seen: set[str] = set()
    try:
        for batch in dataset.to_batches(columns=["server_id"]):
            seen.update(pc.unique(batch.column(0)).drop_null().to_pylist())
    except (OSError, pa.ArrowInvalid) as err:
        raise StorageError(f"cannot read table '{table}' from {lake.uri}: {err}") from err
    return sorted(seen)


def text_ids(lake: Lake, table: str) -> bool:
    """Whether ``table`` stores server ids as text (their range then prunes files and row groups)."""
    info = lake.table_info(table)
    return info is not None and "server_id" in info.schema.names and pa.types.is_string(
        info.schema.field("server_id").type)


def server_filter(batch: list[str], first: bool, text: bool) -> pads.Expression:
    """The rows of ``batch`` (server ids, any order); for text ids, the id range lets the scan skip files
    and row groups by their statistics, which ``isin`` alone does not. The first batch also takes rows
    without an id."""
    server = pads.field("server_id")
    if not batch:  # no ids at all (e.g. every row lacks one); an empty isin set has no type to match
        return ~server.is_valid() if first else pads.scalar(False)
    selector = server.isin(batch)
    if text:
        selector = (server >= min(batch)) & (server <= max(batch)) & selector
    return selector | ~server.is_valid() if first else selector
