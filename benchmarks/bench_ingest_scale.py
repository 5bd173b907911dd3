"""Ingest memory on a real-format fleet: fastStorage's 50 VMs copied to 500 and 5,000 servers.

Each copy of a VM gets a new id, a seeded shift of whole days (-5..+5) and ~10 % multiplicative noise
on its CPU usage, in the same ``trace.parquet`` + ``meta.parquet`` layout the shipped mapping reads.
``capfc ingest`` runs in a child process per size, so each peak RSS is its own. Memory must not grow
with the export: past ``ingest.spill_rows`` samples are spilled to disk by server group
(docs/ingest.md, *Performance*). Before the spill, 5,000 copies took 7.96 GB and 33 s.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.bench_real import FAST, REPO
from benchmarks.harness import Result, below, timed

SIZES = (500, 5_000)
PEAK_TARGET_MB = 1_000.0
# Peak at 5,000 servers / peak at 500: 10x the rows, bounded memory. The fixed base (~0.45 GB) hides a slope:
# 1.55 here was 15 bytes per row read, 1.33 GB at 10,000 servers (helper-45); reading Parquet one row group at
# a time made it 1.10.
GROWTH_TARGET = 1.3
DAY_MS = 86_400_000


def write_copies(n: int, folder: Path, seed: int = 42) -> int:
    """fastStorage copied to ``n`` VMs in ``folder`` (trace.parquet, meta.parquet); returns the trace rows."""
    rng = np.random.default_rng(seed)
    trace, meta = pq.read_table(FAST / "trace.parquet"), pq.read_table(FAST / "meta.parquet")
    ids = meta["id"].to_pylist()
    by_id = {i: trace.filter(pc.equal(trace["id"], i)) for i in ids}
    folder.mkdir(parents=True, exist_ok=True)
    metas, batch, rows = [], [], 0
    with pq.ParquetWriter(folder / "trace.parquet", trace.schema) as writer:
        for k in range(n):
            source = ids[k % len(ids)]
            rows_of, shift = by_id[source], int(rng.integers(-5, 6)) * DAY_MS
            new_id = f"{source}{k:05d}"
            stamps = pc.cast(rows_of["timestamp"], pa.int64()).to_numpy() + shift
            batch.append(pa.table({
                "id": pa.array([new_id] * rows_of.num_rows, pa.string()),
                "timestamp": pa.array(stamps, pa.timestamp("ms", tz="UTC")),
                "duration": rows_of["duration"], "cpu_count": rows_of["cpu_count"],
                "cpu_usage": pa.array(rows_of["cpu_usage"].to_numpy() * rng.lognormal(0.0, 0.1, rows_of.num_rows),
                                      pa.float64())}, schema=trace.schema))
            row = meta.filter(pc.equal(meta["id"], source))
            metas.append(pa.table({
                "id": pa.array([new_id], pa.string()),
                **{c: pa.array(pc.cast(row[c], pa.int64()).to_numpy() + shift, pa.timestamp("ms", tz="UTC"))
                   for c in ("start_time", "stop_time")},
                "cpu_count": row["cpu_count"], "cpu_capacity": row["cpu_capacity"],
                "mem_capacity": row["mem_capacity"]}, schema=meta.schema))
            rows += rows_of.num_rows
            if len(batch) == 100 or k == n - 1:
                writer.write_table(pa.concat_tables(batch), row_group_size=1_000_000)
                batch = []
    pq.write_table(pa.concat_tables(metas), folder / "meta.parquet")
    return rows


def _child_ingest(folder: Path, lake: Path) -> tuple[float, float]:
    """(seconds, peak RSS MB) of ``capfc ingest`` of the copies in a child process."""
    mapping = str(REPO / "mappings" / "bitbrains_faststorage.yaml")
    code = ("import sys; from capacity_forecaster.cli import main; sys.argv = ['capfc', 'ingest', "
            f"{str(folder / 'trace.parquet')!r}, '--mapping', {mapping!r}, '--lake', {str(lake)!r}, '--quiet']; main()")
    with timed() as clock:
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=900)
    return clock.seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0


def bench_ingest_faststorage_copies() -> list[Result]:
    """Peak memory and time of ingesting fastStorage copied to 500 and 5,000 servers."""
    if not (FAST / "trace.parquet").is_file():
        return [Result("ingest fastStorage copies", float("nan"), "", "info", False, f"no data under {FAST}")]
    measured = {}
    with tempfile.TemporaryDirectory() as scratch:
        for n in SIZES:
            rows = write_copies(n, Path(scratch) / f"copies-{n}")
            seconds, peak = _child_ingest(Path(scratch) / f"copies-{n}", Path(scratch) / f"lake-{n}")
            measured[n] = (rows, seconds, peak)
    rows = []
    for n, (count, seconds, peak) in measured.items():
        rows.append(Result(f"ingest fastStorage x{n // 50} ({n:,} servers): seconds", seconds, "s", "info", True,
                           f"{count:,} run-length rows"))
        rows.append(below(f"ingest fastStorage x{n // 50} ({n:,} servers): peak memory", peak, PEAK_TARGET_MB, "MB",
                          "child process; max RSS of the children so far"))
    small, large = measured[SIZES[0]][2], measured[SIZES[-1]][2]
    rows.append(below(f"ingest peak memory {SIZES[-1]:,} / {SIZES[0]:,} servers", large / small, GROWTH_TARGET,
                      "ratio", "10x the rows: memory must not grow with the export (ingest.spill_rows)"))
    return rows


def _child_peak(args: list[str]) -> float:
    """Peak RSS (MB) of one ``capfc`` command in a child process (its own, not the largest child's so far)."""
    code = ("import resource, sys\nfrom capacity_forecaster.cli import main\n"
            f"code = main({args!r})\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\nsys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=900)
    return float(done.stderr.strip().splitlines()[-1]) / 1024.0


def bench_ingest_beside_a_large_quarantine() -> list[Result]:
    """Peak memory of a small ingest and of the ETL into a lake whose quarantine holds a million records.

    Both rewrite the quarantine; they copy the lake's records batch by batch (``stages/raw.keep_quarantine``).
    Read whole, the ingest of 2,000 rows peaked at 1.29 GB and the ETL at 0.87 GB.
    """
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        mapping = folder / "long.yaml"
        mapping.write_text("layout: long\nserver_id: {column: server}\ntimestamp: {column: time, kind: epoch, "
                           "unit: s}\nlong: {value: value, metric_column: metric}\n")
        step = np.arange(1_500_000)
        bad = folder / "bad.csv"
        with bad.open("w") as out:
            out.write("server,time,metric,value\n")
            for start in range(0, len(step), 100_000):  # two of three values unreadable: 1,000,000 records
                i = step[start:start + 100_000]
                out.writelines(f"srv-{k % 2000:05d},{1_700_000_000 + (k // 2000) * 300},cpu,"
                               f"{'n/a' if k % 3 else '12.5'}\n" for k in i)
        small = folder / "small.csv"
        small.write_text("server,time,metric,value\n" + "".join(
            f"new-{k % 10},{1_700_000_000 + k * 300},cpu,20\n" for k in range(2000)))
        lake = str(folder / "lake")
        subprocess.run([sys.executable, "-m", "capacity_forecaster.cli", "ingest", str(bad), "--mapping",
                        str(mapping), "--lake", lake, "--quiet", "--force"], check=True, capture_output=True,
                       timeout=900)
        ingest = _child_peak(["ingest", str(small), "--mapping", str(mapping), "--lake", lake, "--quiet"])
        etl = _child_peak(["etl", "--lake", lake, "--quiet"])
    note = "child process; the lake's quarantine: 1,000,000 records"
    rows.append(below("ingest of 2,000 rows beside a large quarantine: peak memory", ingest, PEAK_TARGET_MB, "MB",
                      note + " (read whole: 1,286 MB)"))
    rows.append(below("etl beside a large quarantine: peak memory", etl, PEAK_TARGET_MB, "MB",
                      note + " (read whole: 867 MB)"))
    return rows


BENCHMARKS = [bench_ingest_faststorage_copies, bench_ingest_beside_a_large_quarantine]
