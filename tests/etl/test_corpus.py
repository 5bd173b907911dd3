"""The hostile-input corpus (tests/etl/corpus/) through `capfc ingest` and `capfc etl`, end to end.

For every case: exit code 0 or 2 (never 1), no traceback, the expected quarantine reason, row
accounting (in == used + quarantined; ETL in == out + quarantined - created) and no value, date or
server id in the lake that the input file does not hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from capacity_forecaster.cli import main
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import list_runs

CORPUS = Path(__file__).resolve().parent / "corpus"
MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
LONG = str(MAPPINGS / "generic_long.yaml")


@dataclass(frozen=True)
class Case:
    """One corpus file, how to load it and what must happen."""

    file: str
    mapping: str | None  # None: the contract layout (server_id, ds, metric, value)
    reason: str | None  # the quarantine code the hostile row must get
    columns: dict[str, str] = field(default_factory=lambda: {"server": "server", "time": "time",
                                                             "metric": "metric", "value": "value"})
    wide: dict[str, str] = field(default_factory=dict)  # metric -> column of a wide file
    config: str | None = None
    ingest_exit: int = 0


CONTRACT = {"server": "server_id", "time": "ds", "metric": "metric", "value": "value"}
WIDE4 = {"cpu": "cpu_pct", "memory": "mem_pct", "disk": "disk_pct", "network": "net_pct"}
CASES = [
    Case("d1_timestamp_9999.parquet", LONG, "timestamp_out_of_range"),
    Case("d1_date32_9999.parquet", LONG, "timestamp_out_of_range"),
    Case("d2_contract_ds_9999.parquet", None, "timestamp_out_of_range", CONTRACT),
    Case("d7_latin1_server_id.csv", str(CORPUS / "wide_cpu.yaml"), "undecodable_server_id",
         {"server": "host", "time": "timestamp"}, {"cpu": "cpu_pct"}),
    Case("d8_long_line.csv", LONG, "line_too_long", config=str(CORPUS / "small_lines.yaml")),
    Case("d9_all_rows_bad.csv", LONG, None, ingest_exit=2),
    Case("d16_text_year_9999.csv", LONG, "timestamp_out_of_range"),
    Case("d16_four_bad_cells.csv", str(CORPUS / "wide_four.yaml"), "unparseable_value",
         {"server": "host", "time": "timestamp"}, WIDE4),
]


def input_cells(case: Case) -> set[tuple[str, str, str, float]]:
    """(server, day, metric, value) of every cell of the input, read independently with pandas."""
    path = CORPUS / case.file
    if path.suffix == ".parquet":
        frame = pq.read_table(path).to_pandas(date_as_object=False, coerce_temporal_nanoseconds=False)
    else:
        frame = pd.read_csv(path, dtype=str, encoding="latin-1", on_bad_lines="skip", engine="python")
    cols = case.columns
    days = pd.to_datetime(frame[cols["time"]].astype(str), errors="coerce", format="ISO8601").dt.strftime("%Y-%m-%d")
    pairs = case.wide.items() if case.wide else [(None, cols["value"])]
    cells = set()
    for metric, column in pairs:
        names = frame[cols["metric"]] if metric is None else pd.Series(metric, index=frame.index)
        values = pd.to_numeric(frame[column], errors="coerce")
        for server, day, name, value in zip(frame[cols["server"]], days, names, values, strict=True):
            cells.add((str(server), str(day), str(name).replace("_util", ""), float(value)))
    return cells


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:  # one line: the error itself, after any warnings logged on the way
        errors = [line for line in err.splitlines() if line.startswith("capfc: error:")]
        assert len(errors) == 1 and err.rstrip().endswith(errors[0].rstrip()), err
    return code, err


def check_etl(lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(["etl", "--lake", lake, "--quiet"], capsys)
    if code:
        return
    manifest = list_runs(Lake.open(lake), "etl")[-1]
    counts = manifest["counts"]
    assert manifest["rows_in"] == manifest["rows_out"] + manifest["rows_quarantined"] - counts["rows_created"]
    processed = Lake.open(lake).read_table("metrics")
    raw = Lake.open(lake).dataset("raw_metrics").to_table().to_pandas(date_as_object=False,
                                                                      coerce_temporal_nanoseconds=False)
    ds = raw["ds"].dt.tz_localize(None) if isinstance(raw["ds"].dtype, pd.DatetimeTZDtype) else raw["ds"]
    keys = set(zip(raw["server_id"], ds.dt.strftime("%Y-%m-%d"), raw["metric"], raw["value"], strict=True))
    observed = processed[~processed["is_imputed"] & processed["value_raw"].notna()]
    for row in observed.itertuples():
        assert (row.server_id, row.ds.strftime("%Y-%m-%d"), row.metric, row.value_raw) in keys


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_corpus_case_through_ingest_and_etl(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = str(tmp_path / "lake")
    args = ["ingest", str(CORPUS / case.file), "--lake", lake, "--quiet"]
    args += ["--mapping", case.mapping] if case.mapping else []
    args += ["--config", case.config] if case.config else []
    code, err = run(args, capsys)
    assert code == case.ingest_exit, err
    if code == 2:
        assert "max_quarantine_share" in err and "--force" in err
        assert not Lake.open(lake).has_table("raw_metrics")
        code, _ = run([*args, "--force"], capsys)
        assert code == 0
    manifest = list_runs(Lake.open(lake), "ingest")[-1]
    assert manifest["rows_in"] == manifest["counts"]["rows_used"] + manifest["rows_quarantined"]
    quarantine = Lake.open(lake).read_table("quarantine")
    assert manifest["quarantine_records"] == len(quarantine) >= manifest["rows_quarantined"]
    if case.reason:
        assert quarantine["reason"].str.startswith(case.reason + ":").any(), quarantine["reason"].tolist()
    raw = Lake.open(lake).read_table("raw_metrics")
    cells = input_cells(case)
    for row in raw.itertuples():
        assert (row.server_id, row.ds.strftime("%Y-%m-%d"), row.metric, row.value) in cells, row
    check_etl(lake, capsys)


def test_four_bad_cells_are_one_row_and_four_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = str(tmp_path / "lake")
    run(["ingest", str(CORPUS / "d16_four_bad_cells.csv"), "--mapping", str(CORPUS / "wide_four.yaml"),
         "--lake", lake, "--quiet"], capsys)
    manifest = list_runs(Lake.open(lake), "ingest")[-1]
    assert (manifest["rows_in"], manifest["rows_quarantined"], manifest["quarantine_records"]) == (7, 1, 4)


@pytest.mark.parametrize("name", ["d2_contract_ds_9999.parquet", "d9_zoned_ds.parquet"])
def test_corpus_raw_table_through_etl(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Files in the raw_metrics layout written straight into the lake, as another tool would."""
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    table = pq.read_table(CORPUS / name)
    lake.write_table("raw_metrics", table)
    check_etl(lake.uri, capsys)
    processed = lake.read_table("metrics")
    quarantine = lake.read_table("quarantine")
    source = table.to_pandas(coerce_temporal_nanoseconds=False)
    if name.startswith("d2"):
        assert quarantine["reason"].str.startswith("invalid_date: outside the plausible range").sum() == 1
        assert len(processed) == len(source) - 1
    else:
        assert quarantine.empty
        local_days = source["ds"].dt.tz_localize(None).dt.strftime("%Y-%m-%d").tolist()
        assert processed["ds"].dt.strftime("%Y-%m-%d").tolist() == local_days
        assert processed["value_raw"].tolist() == source["value"].tolist()
