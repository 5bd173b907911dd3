"""Ingest of run-length rows (mapping ``weight``) and of capacities joined from the inventory file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from capacity_forecaster.config import IngestConfig
from capacity_forecaster.errors import ConfigError, InputError
from capacity_forecaster.etl.ingest import ingest
from capacity_forecaster.etl.mapping import parse_mapping

MAPPING = {
    "layout": "wide",
    "server_id": {"column": "vm"},
    "timestamp": {"column": "t", "kind": "epoch", "unit": "s"},
    "interval_seconds": 300,
    "weight": {"column": "runs"},
    "metrics": {"cpu": {"usage": "mhz", "inventory_capacity": "cap_mhz"}},
    "inventory": {"source": "{source_dir}/meta.csv", "columns": {"server_id": "vm", "cpu_cores": "cores"}},
}


def local(uri: str) -> tuple[pafs.FileSystem, str]:
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def test_weights_capacities_and_their_quarantine(tmp_path: Path) -> None:
    (tmp_path / "meta.csv").write_text("vm,cores,cap_mhz\na,2,2000\nb,1,0\n")
    lines = ["vm,t,runs,mhz",
             "a,0,3,1000",     # 3 samples at 50 %
             "a,900,1,2000",   # 1 sample at 100 %
             "a,1200,0,500",   # invalid weight
             "a,1500,,500",    # missing weight
             "b,0,1,100",      # capacity 0 in the inventory file
             "c,0,2,100"]      # no inventory row: no capacity
    (tmp_path / "trace.csv").write_text("\n".join(lines) + "\n")
    result = ingest([str(tmp_path / "trace.csv")], parse_mapping(MAPPING), IngestConfig(), local)
    daily = result.raw_metrics
    assert daily["server_id"].tolist() == ["a"] and daily["samples"].tolist() == [4]
    assert daily["value"].iloc[0] == np.percentile([50, 50, 50, 100], 95)
    assert daily["value_mean"].iloc[0] == 62.5 and daily["coverage"].iloc[0] == 4 / 288
    assert result.rows_read == 6 and result.rows_used == 2 and result.rows_quarantined == 4
    reasons = result.quarantine.set_index("source")["reason"]
    where = str(tmp_path / "trace.csv")
    assert reasons[f"{where}:4"] == "invalid_weight: '0' in column 'runs' (must be > 0)"
    assert reasons[f"{where}:5"] == "missing_weight: column 'runs' is empty"
    assert reasons[f"{where}:6"].startswith("zero_capacity: column 'inventory.cap_mhz'")
    assert reasons[f"{where}:7"] == ("missing_capacity: column 'inventory.cap_mhz' is empty or the server has no "
                                     "row in the inventory file")
    assert result.inventory["server_id"].tolist() == ["a", "b"] and result.inventory["cpu_cores"].tolist() == [2, 1]
    assert not any("no inventory row" in w for w in result.warnings)  # c has no accepted sample
    # b and c lost every row: said, with each one's main reason, not left to the quarantine table alone.
    said = ("2 server(s) had every row quarantined, so they are not in raw/: b (1 row, mostly zero_capacity), "
            "c (1 row, mostly missing_capacity)")
    # About what the run writes: returned, and logged by capfc ingest only once its guards let it write.
    assert any(w.startswith(said) for w in result.deferred) and any(w.startswith(said) for w in result.warnings)


def test_duration_weights_round_to_whole_samples(tmp_path: Path) -> None:
    (tmp_path / "meta.csv").write_text("vm,cores,cap_mhz\na,2,1000\n")
    (tmp_path / "trace.csv").write_text("vm,t,ms,mhz\na,0,599000,100\na,600,38000,900\n")
    mapping = {**MAPPING, "weight": {"column": "ms", "unit": "ms"}}
    result = ingest([str(tmp_path / "trace.csv")], parse_mapping(mapping), IngestConfig(), local)
    daily = result.raw_metrics
    # 599,000 ms is 2 samples (clock jitter), 38,000 ms still the one sample the row reports.
    assert daily["samples"].tolist() == [3] and daily["value"].iloc[0] == np.percentile([10, 10, 90], 95)


@pytest.mark.parametrize(("unit", "runs", "why"), [
    ("ms", "1e30", "a run of more than 366 days of samples; is weight.unit 'ms' right?"),
    ("ms", "3153600000000", "a run of more than 366 days of samples; is weight.unit 'ms' right?"),
    ("count", "1e308", "a run of more than 366 days of samples; is weight.unit 'count' right?"),
    ("count", "2.5", "a count of samples is whole")])
def test_runs_no_export_writes_are_quarantined(tmp_path: Path, unit: str, runs: str, why: str) -> None:
    """helper-51: 1e30 ms crashed the roll-up ('repeats may not contain negative values'), a 100-year run made
    36,501 daily rows up to 2123, and a count of 2.5 samples was taken as a fractional weight."""
    (tmp_path / "meta.csv").write_text("vm,cores,cap_mhz\na,2,1000\n")
    (tmp_path / "trace.csv").write_text(f"vm,t,runs,mhz\na,0,1,100\na,300,{runs},900\n")
    mapping = {**MAPPING, "weight": {"column": "runs", "unit": unit}}
    result = ingest([str(tmp_path / "trace.csv")], parse_mapping(mapping), IngestConfig(), local)
    assert result.raw_metrics["samples"].tolist() == [1] and result.rows_quarantined == 1
    assert result.quarantine["reason"].tolist() == [f"invalid_weight: '{runs}' in column 'runs' ({why})"]


def test_overfull_days_from_run_lengths_hint_at_the_weight_unit(tmp_path: Path) -> None:
    """helper-51: milliseconds read as seconds gave coverage 1140 and only 'two exports overlapping?'."""
    (tmp_path / "meta.csv").write_text("vm,cores,cap_mhz\na,2,1000\n")
    (tmp_path / "trace.csv").write_text("vm,t,ms,mhz\na,0,300000,100\na,300,300000,900\n")
    mapping = {**MAPPING, "weight": {"column": "ms", "unit": "s"}}
    result = ingest([str(tmp_path / "trace.csv")], parse_mapping(mapping), IngestConfig(), local)
    assert any("does weight.unit 's' make each row stand for too many samples?" in w for w in result.deferred)


def test_runs_stop_at_the_servers_last_sample(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """weight.until: a stopped VM's trailing idle run does not become days of observed zeros."""
    (tmp_path / "meta.csv").write_text("vm,cores,cap_mhz,stop\na,2,1000,1970-01-02T00:05:00Z\n"
                                       "b,1,1000,1970-01-01T00:00:00Z\nc,1,1000,\n")
    day = 86_400
    lines = ["vm,t,runs,mhz",
             "a,0,288,900",                 # day 1: 288 samples at 90 %
             f"a,{day},2880,0",             # from day 2 00:00: 10 days claimed; the last sample is 00:05
             f"b,{day},1,500",              # starts after b's last sample: quarantined
             "c,0,576,100"]                 # no known last sample: the run is kept (2 days)
    (tmp_path / "trace.csv").write_text("\n".join(lines) + "\n")
    mapping = {**MAPPING, "weight": {"column": "runs", "until": "stop"}}
    result = ingest([str(tmp_path / "trace.csv")], parse_mapping(mapping), IngestConfig(), local)
    daily = result.raw_metrics.set_index(["server_id", "ds"])["samples"]
    # a: day 1 whole, day 2 only the 00:00 and 00:05 samples, nothing after.
    assert daily.loc["a"].tolist() == [288, 2] and len(daily.loc["c"]) == 2
    assert "b" not in daily.index.get_level_values(0)
    reasons = result.quarantine.set_index("source")["reason"]
    assert reasons[f"{tmp_path / 'trace.csv'}:4"].startswith(
        "after_last_sample: the run starts after the server's last sample 1970-01-01 00:00:00 UTC")
    assert result.rows_read == 4 and result.rows_used == 3 and result.rows_quarantined == 1
    assert "1 run(s) cut at their server's last sample (inventory column 'stop', weight.until): 2,878 sample(s)" \
        in caplog.text
    assert sum("run(s) cut" in w for w in result.warnings) == 1  # kept in the run's warnings (the manifest)


def test_until_needs_the_inventory_file() -> None:
    mapping = {**MAPPING, "weight": {"column": "runs", "until": "stop"}, "metrics": {"cpu": {"percent": "mhz"}},
               "inventory": {"defaults": {"server_type": "vm"}}}
    with pytest.raises(ConfigError, match="'weight.until' needs 'inventory.source'"):
        parse_mapping(mapping)


def test_a_row_stamped_at_its_runs_last_sample(tmp_path: Path) -> None:
    """weight.time 'last': the run ends at the row's time, so a run stamped after midnight starts the day before."""
    (tmp_path / "meta.csv").write_text("vm,cores,cap_mhz\na,2,1000\n")
    day = 86_400
    lines = ["vm,t,runs,mhz",
             f"a,{day - 600},286,100",     # day 1: 286 samples at 10 %, the last at 23:50
             f"a,{day + 300},3,900"]       # 23:55, 00:00 and 00:05: one sample on day 1, two on day 2
    (tmp_path / "trace.csv").write_text("\n".join(lines) + "\n")
    mapping = {**MAPPING, "weight": {"column": "runs", "time": "last"}}
    daily = ingest([str(tmp_path / "trace.csv")], parse_mapping(mapping), IngestConfig(), local).raw_metrics
    assert daily["samples"].tolist() == [287, 2] and daily["coverage"].iloc[0] == 287 / 288
    assert daily["value_max"].tolist() == [90.0, 90.0]
    assert daily["value"].iloc[0] == np.percentile([10.0] * 286 + [90.0], 95)
    first = ingest([str(tmp_path / "trace.csv")], parse_mapping(MAPPING), IngestConfig(), local).raw_metrics
    assert first["samples"].tolist() == [2, 287]  # read as starting at the row's time, both runs go on to day 2


def test_rows_the_mapping_excludes_are_quarantined_with_its_reason(tmp_path: Path) -> None:
    (tmp_path / "meta.csv").write_text("vm,cores,cap_mhz\na,2,1000\n")
    lines = ["vm,t,runs,mhz,vcpu,state",
             "a,0,1,500,2,on",
             "a,300,1,0,0.0,on",     # 0 vCPU: excluded (numbers compare as numbers)
             "a,600,1,0,2, off ",    # 'off' (trimmed): excluded
             "a,900,1,700,x,on"]     # not a number and not a listed text: kept
    (tmp_path / "trace.csv").write_text("\n".join(lines) + "\n")
    mapping = {**MAPPING, "exclude_rows": {"column": "vcpu", "values": [0], "reason": "VM stopped"}}
    result = ingest([str(tmp_path / "trace.csv")], parse_mapping(mapping), IngestConfig(), local)
    assert result.rows_used == 3 and result.raw_metrics["samples"].tolist() == [3]
    assert result.quarantine["reason"].tolist() == [
        "excluded_row: 1 row(s) whose column 'vcpu' is '0.0' (mapping exclude_rows: VM stopped)"]
    mapping = {**MAPPING, "exclude_rows": {"column": "state", "values": ["off", 0], "reason": "powered off"}}
    result = ingest([str(tmp_path / "trace.csv")], parse_mapping(mapping), IngestConfig(), local)
    assert result.rows_used == 3 and result.rows_read == result.rows_used + result.rows_quarantined
    assert result.quarantine["reason"].tolist() == [
        "excluded_row: 1 row(s) whose column 'state' is 'off' (mapping exclude_rows: powered off)"]
    (tmp_path / "trace.csv").write_text("vm,t,runs,mhz\na,0,1,500\n")
    with pytest.raises(InputError, match="column .state. not found.*set exclude_rows.column in the mapping"):
        ingest([str(tmp_path / "trace.csv")], parse_mapping(mapping), IngestConfig(), local)
    with pytest.raises(ConfigError, match="values"):
        parse_mapping({**MAPPING, "exclude_rows": {"column": "state", "values": [], "reason": "x"}})
