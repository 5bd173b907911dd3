"""Writes the hostile-input corpus next to this file (run once; the files are checked in).

Every case is a tiny file holding good rows and one or more hostile ones; ``cases.yaml`` says how
to ingest it and what the ingest must do. ``tests/etl/test_corpus.py`` runs them all.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
DAYS = [dt.datetime(2024, 1, 1) + dt.timedelta(days=i) for i in range(6)]


def long_table(times: pa.Array, servers: list[str] | None = None) -> pa.Table:
    n = len(times)
    return pa.table({"server": servers or ["web-01"] * n, "time": times, "metric": ["cpu"] * n,
                     "value": [10.0 + i for i in range(n)]})


def main() -> None:
    good = DAYS
    pq.write_table(long_table(pa.array([*good, dt.datetime(9999, 1, 1)], pa.timestamp("us"))),
                   HERE / "d1_timestamp_9999.parquet")
    pq.write_table(long_table(pa.array([d.date() for d in good] + [dt.date(9999, 1, 1)], pa.date32())),
                   HERE / "d1_date32_9999.parquet")
    pq.write_table(pa.table({
        "server_id": ["web-01"] * 7, "metric": ["cpu"] * 7, "value": [10.0 + i for i in range(7)],
        "ds": pa.array([d.date() for d in good] + [dt.date(9999, 12, 31)], pa.date32())}),
        HERE / "d2_contract_ds_9999.parquet")
    lines = ["host,timestamp,cpu_pct"] + [f"web-01,{d:%Y-%m-%dT%H:%M:%S},{20 + i}" for i, d in enumerate(good)]
    body = "\n".join(lines).encode() + b"\nw\xe9b-01,2024-01-02T00:00:00,55\n"
    (HERE / "d7_latin1_server_id.csv").write_bytes(body)
    long_line = "web-01,2024-01-09T00:00:00,cpu," + "9" * 600
    rows = [f"web-01,{d:%Y-%m-%dT%H:%M:%S},cpu,{30 + i}" for i, d in enumerate(good)]
    (HERE / "d8_long_line.csv").write_text("\n".join(["server,time,metric,value", *rows[:3], long_line, *rows[3:]])
                                           + "\n", encoding="utf-8")
    zoned = pa.array([d.replace(tzinfo=dt.UTC) - dt.timedelta(hours=1) for d in good],
                     pa.timestamp("us", "Europe/Paris"))
    pq.write_table(pa.table({"server_id": ["web-01"] * 6, "ds": zoned, "metric": ["cpu"] * 6,
                             "value": [40.0 + i for i in range(6)]}), HERE / "d9_zoned_ds.parquet")
    bad = ["server,time,metric,value"] + [f"web-01,{d:%d.%m.%Y},cpu,{i}" for i, d in enumerate(good)]
    (HERE / "d9_all_rows_bad.csv").write_text("\n".join(bad) + "\n", encoding="utf-8")
    text = ["server,time,metric,value"] + [f"web-01,{d:%Y-%m-%d %H:%M:%S},cpu,{50 + i}" for i, d in enumerate(good)]
    (HERE / "d16_text_year_9999.csv").write_text("\n".join([*text, "web-01,9999-01-01 00:00:00,cpu,1"]) + "\n",
                                                 encoding="utf-8")
    wide = ["host,timestamp,cpu_pct,mem_pct,disk_pct,net_pct"] + [
        f"web-01,{d:%Y-%m-%dT%H:%M:%S},{i},{i + 1},{i + 2},{i + 3}" for i, d in enumerate(good)]
    (HERE / "d16_four_bad_cells.csv").write_text("\n".join([*wide, "web-01,2024-01-03T12:00:00,x,y,z,w"]) + "\n",
                                                 encoding="utf-8")


if __name__ == "__main__":
    main()
