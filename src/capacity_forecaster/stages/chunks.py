"""Chunk sizes of the streaming stages: configured, or derived from the memory available now."""

from __future__ import annotations

import logging
import os

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
