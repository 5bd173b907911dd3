"""Ingest speed and memory: synthetic 5-minute exports of about one million sample rows."""

from __future__ import annotations

import os
import resource
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs

from benchmarks.harness import Result, below, peak_rss_mb, timed
from capacity_forecaster.config import IngestConfig
from capacity_forecaster.etl.ingest import ingest
from capacity_forecaster.etl.mapping import parse_mapping

ROWS = 1_000_000
SERVERS = 350
STEP_S = 300
START_S = 1_704_067_200  # 2024-01-01T00:00:00Z
SECONDS_TARGET = 4.0
MEMORY_TARGET_MB = 1_500.0

WIDE_MAPPING = {
    "name": "bench-wide",
    "layout": "wide",
    "server_id": {"column": "host"},
    "timestamp": {"column": "timestamp"},
    "metrics": {
        "cpu": {"percent": "cpu_pct"},
        "memory": {"usage": "mem_used_mb", "capacity": "mem_total_mb"},
        "disk": {"percent": "disk_pct"},
    },
}
BITBRAINS_MAPPING = {
    "name": "bench-bitbrains",
    "layout": "wide",
    "server_id": {"from_filename": r"(\d+)\.csv", "prefix": "vm-"},
    "timestamp": {"column": "Timestamp [ms]", "kind": "epoch", "unit": "s"},
    "interval_seconds": STEP_S,
    "metrics": {
        "cpu": {"percent": "CPU usage [%]", "capacity": "CPU capacity provisioned [MHZ]"},
        "memory": {"usage": "Memory usage [KB]", "capacity": "Memory capacity provisioned [KB]"},
    },
}


def _local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def write_wide_csv(path: Path, rows: int = ROWS, servers: int = SERVERS, seed: int = 7) -> int:
    """Write a wide CSV (host, ISO time, cpu %, memory used/total MB, disk %) server by server.

    Returns:
        The number of data rows written.
    """
    rng = np.random.default_rng(seed)
    per_server = rows // servers
    times = START_S + STEP_S * np.arange(per_server)
    iso = pa.array(times.astype("datetime64[s]").astype(str)).cast(pa.string())
    iso = pa.array([f"{t}Z" for t in iso.to_pylist()])
    with pacsv.CSVWriter(str(path), pa.schema([
        ("host", pa.string()), ("timestamp", pa.string()), ("cpu_pct", pa.float64()),
        ("mem_used_mb", pa.float64()), ("mem_total_mb", pa.float64()), ("disk_pct", pa.float64()),
    ])) as writer:
        for server in range(servers):
            writer.write_table(pa.table({
                "host": pa.array(np.full(per_server, f"srv-{server:04d}")),
                "timestamp": iso,
                "cpu_pct": np.round(rng.uniform(0, 100, per_server), 3),
                "mem_used_mb": np.round(rng.uniform(0, 16_000, per_server), 1),
                "mem_total_mb": np.full(per_server, 16_384.0),
                "disk_pct": np.round(rng.uniform(0, 100, per_server), 2),
            }))
    return per_server * servers


def write_bitbrains_like(folder: Path, rows: int = ROWS, files: int = 100, seed: int = 11) -> int:
    """Write Bitbrains-style files (``<id>.csv``, ';<tab>'-separated, epoch seconds).

    Returns:
        The number of data rows written.
    """
    rng = np.random.default_rng(seed)
    per_file = rows // files
    header = ("Timestamp [ms];\tCPU cores;\tCPU capacity provisioned [MHZ];\tCPU usage [MHZ];\t"
              "CPU usage [%];\tMemory capacity provisioned [KB];\tMemory usage [KB]\n")
    for vm in range(files):
        ts = START_S + STEP_S * np.arange(per_file) + rng.integers(-3, 4, per_file)
        cpu = rng.uniform(0, 100, per_file)
        mem = rng.uniform(0, 4_194_304, per_file)
        body = "\n".join(f"{t};\t2;\t5200.0;\t{c * 52:.4f};\t{c:.6f};\t4194304.0;\t{m:.2f}"
                         for t, c, m in zip(ts, cpu, mem, strict=True))
        (folder / f"{vm + 1}.csv").write_text(header + body + "\n", encoding="utf-8")
    return per_file * files


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure(name: str, sources: list[str], mapping: dict, rows: int) -> list[Result]:
    before = peak_rss_mb()
    cpu_before = _cpu_seconds()
    with timed() as timer:
        result = ingest(sources, parse_mapping(mapping, name), IngestConfig(), _local)
    cpu = _cpu_seconds() - cpu_before
    peak = peak_rss_mb()
    note = (f"{result.rows_read:,} rows, {result.raw_metrics['server_id'].nunique()} servers, "
            f"{len(result.raw_metrics):,} daily rows; {cpu:.2f} s CPU")
    return [
        below(f"ingest {name}: seconds for {rows:,} rows", timer.seconds, SECONDS_TARGET, "s", note),
        # CPU time is what a loaded machine does not inflate; DuckDB's roll-up may use both cores.
        below(f"ingest {name}: CPU seconds", cpu, SECONDS_TARGET, "s", "user + system, all threads"),
        below(f"ingest {name}: peak memory", peak, MEMORY_TARGET_MB, "MB",
              f"whole process; {before:.0f} MB before the ingest"),
    ]


def bench_wide_csv() -> list[Result]:
    """One 5-minute wide CSV, ISO times, three metrics, 350 servers."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fleet.csv"
        rows = write_wide_csv(path)
        return _measure("wide CSV (ISO times, 3 metrics)", [str(path)], WIDE_MAPPING, rows)


def bench_bitbrains_like() -> list[Result]:
    """100 Bitbrains-style files (';<tab>', epoch seconds, capacity columns) in one folder."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_bitbrains_like(Path(tmp))
        return _measure("Bitbrains-style folder (100 files)", [tmp], BITBRAINS_MAPPING, rows)


BENCHMARKS = [bench_wide_csv, bench_bitbrains_like]
