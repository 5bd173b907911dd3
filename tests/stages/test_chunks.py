"""Chunk sizes of the streaming stages: the configured value wins, else memory decides within bounds."""

from __future__ import annotations

from capacity_forecaster.stages.chunks import available_memory, servers_per_chunk


def test_configured_size_wins() -> None:
    assert servers_per_chunk(7, 1 << 20, 50, 1000, "generate.chunk_servers", available=1 << 40) == 7


def test_derived_size_follows_memory_within_bounds() -> None:
    mb = 1 << 20
    assert servers_per_chunk(None, mb, 50, 1000, "k", available=400 * mb) == 100  # a quarter of 400 MB
    assert servers_per_chunk(None, mb, 50, 1000, "k", available=mb) == 50
    assert servers_per_chunk(None, mb, 50, 1000, "k", available=1 << 40) == 1000


def test_available_memory_is_positive() -> None:
    assert available_memory() > 0
