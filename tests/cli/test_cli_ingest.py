"""capfc ingest + etl end to end: metrics-only exports, the shipped real-data mappings, bad mapping keys."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.cli import main
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import list_runs

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "mappings"
NAB_CPU = REPO / ".." / "shared" / "data" / "real" / "nab" / "realKnownCause" / (
    "cpu_utilization_asg_misconfiguration.csv")


def metrics_only_csv(path: Path, servers: tuple[str, ...] = ("db-1", "db-2"), days: int = 20) -> Path:
    """A long export with one CPU column: server, time, cpu (hourly samples), no inventory."""
    times = pd.date_range("2024-01-01", periods=days * 24, freq="h")
    rng = np.random.default_rng(0)
    frames = [pd.DataFrame({"server": s, "time": times.strftime("%Y-%m-%d %H:%M:%S"),
                            "cpu": np.round(30 + 10 * rng.random(len(times)), 2)}) for s in servers]
    pd.concat(frames).to_csv(path, index=False)
    return path


def write_mapping(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


LONG_CPU = "layout: long\nserver_id: {column: server}\ntimestamp: {column: time}\nlong: {value: cpu, metric: cpu}\n"


def sql(lake: str, query: str, capsys: pytest.CaptureFixture[str]) -> list[dict]:
    capsys.readouterr()  # drop the summaries of earlier commands (--quiet keeps them)
    assert main(["sql", query, "--lake", lake, "--format", "json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_metrics_only_export_ingests_and_runs_etl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = metrics_only_csv(tmp_path / "cpu.csv")
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU)
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", lake, "--quiet"]) == 0
    assert main(["etl", "--lake", lake, "--quiet"]) == 0
    inventory = Lake.open(lake).read_table("inventory")
    assert inventory["server_id"].tolist() == ["db-1", "db-2"]
    assert inventory["hostname"].tolist() == ["db-1", "db-2"] and inventory["cpu_cores"].isna().all()
    rows = sql(lake, "SELECT server_id, count(*) AS n, sum(CASE WHEN is_saturated THEN 1 ELSE 0 END) AS sat "
                     "FROM metrics GROUP BY 1 ORDER BY 1", capsys)
    assert rows == [{"server_id": "db-1", "n": 20, "sat": 0}, {"server_id": "db-2", "n": 20, "sat": 0}]


def test_reingest_of_ids_never_overwrites_a_richer_inventory(tmp_path: Path) -> None:
    lake = str(tmp_path / "lake")
    store = Lake.open(lake, for_writing=True)
    known = pd.DataFrame({"server_id": ["db-1"], "hostname": ["db-1.bank"], "application": ["ledger"],
                          "business_unit": ["bu"], "environment": ["prod"], "datacenter": ["dc1"],
                          "server_type": ["vm"], "cpu_cores": [8.0], "memory_gb": [32.0],
                          "monthly_cost_usd": [400.0]})
    store.write_table("inventory", known)
    data = metrics_only_csv(tmp_path / "cpu.csv", servers=("db-1", "db-3"), days=3)
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU)
    for _ in range(2):
        assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", lake, "--quiet"]) == 0
    inventory = Lake.open(lake).read_table("inventory").sort_values("server_id", ignore_index=True)
    assert inventory["server_id"].tolist() == ["db-1", "db-3"]
    assert inventory.loc[0, "application"] == "ledger" and inventory.loc[0, "cpu_cores"] == 8.0
    assert inventory.loc[1, "application"] == "unknown" and np.isnan(inventory.loc[1, "cpu_cores"])


def test_etl_without_an_inventory_table_takes_the_raw_servers(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    days = pd.date_range("2025-01-01", periods=10)
    lake.write_table("raw_metrics", pd.DataFrame({"server_id": "srv-1", "ds": days, "metric": "cpu",
                                                  "value": np.linspace(10, 120, 10)}))
    assert main(["etl", "--lake", lake.uri, "--quiet"]) == 0
    metrics = Lake.open(lake.uri).read_table("metrics")
    assert len(metrics) == 10 and metrics["is_saturated"].sum() == 2 and metrics["value"].max() == 100.0


@pytest.mark.skipif(not NAB_CPU.is_file(), reason=f"shared NAB data not found at {NAB_CPU}")
def test_nab_two_column_file_with_the_shipped_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(NAB_CPU), "--mapping", str(MAPPINGS / "nab.yaml"), "--lake", lake, "--quiet"]) == 0
    assert main(["etl", "--lake", lake, "--quiet"]) == 0
    rows = sql(lake, "SELECT server_id, metric, count(*) AS n, max(value) AS top FROM metrics GROUP BY 1, 2", capsys)
    assert rows == [{"server_id": "nab-cpu_utilization_asg_misconfiguration", "metric": "cpu", "n": 63,
                     "top": pytest.approx(rows[0]["top"])}]
    assert 0 < rows[0]["top"] <= 100
    assert sql(lake, "SELECT server_id FROM inventory", capsys) == [
        {"server_id": "nab-cpu_utilization_asg_misconfiguration"}]


def test_an_export_read_without_a_mapping_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ingest", str(NAB_CPU), "--lake", str(tmp_path / "lake"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "column 'server_id' not found; columns are: timestamp, value" in err
    assert "no --mapping was given, so the file was read as the contract's server_id, ds, metric, value layout" in err


BAD_MAPPINGS = [
    (LONG_CPU + "weight: {column: n}\n", "'weight' needs 'interval_seconds'"),
    (LONG_CPU + "interval_seconds: 300\nweight: {column: n, unit: minutes}\n", "key 'weight.unit' = 'minutes'"),
    (LONG_CPU + "interval_seconds: 300\nweight: {colum: n}\n", "key 'weight.colum': unknown key; allowed keys here: "
                                                              "column, unit, time, until"),
    ("layout: wide\nserver_id: {column: server}\ntimestamp: {column: time}\n"
     "metrics: {cpu: {usage: u, inventory_capacity: cap}}\n",
     "'metrics.cpu.inventory_capacity' needs 'inventory.source'"),
    ("layout: wide\nserver_id: {column: server}\ntimestamp: {column: time}\n"
     "metrics: {cpu: {usage: u, capacity: c, inventory_capacity: cap}}\n", "set only one of 'capacity'"),
    (LONG_CPU + "inventory: {source: '{data_dir}/meta.csv', columns: {server_id: id}}\n",
     "the only placeholder allowed in inventory.source is {source_dir}"),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_MAPPINGS)
def test_bad_mapping_keys_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               text: str, fragment: str) -> None:
    data = metrics_only_csv(tmp_path / "cpu.csv", days=1)
    mapping = write_mapping(tmp_path / "m.yaml", text)
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", str(tmp_path / "lake")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(mapping) in err and fragment in err, err


def test_missing_weight_or_joined_file_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = metrics_only_csv(tmp_path / "cpu.csv", days=1)
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU + "interval_seconds: 300\nweight: {column: runs}\n")
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", str(tmp_path / "lake")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "column 'runs' not found" in err and "weight.column" in err
    mapping = write_mapping(tmp_path / "m.yaml", "layout: wide\nserver_id: {column: server}\n"
                            "timestamp: {column: time}\nmetrics: {cpu: {usage: cpu, inventory_capacity: mhz}}\n"
                            "inventory: {source: '{source_dir}/meta.csv', columns: {server_id: id}}\n")
    (tmp_path / "meta.csv").write_text("id,cores\ndb-1,4\n")
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", str(tmp_path / "lake")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "meta.csv" in err and "column 'mhz' not found" in err
    assert "metrics.cpu.inventory_capacity" in err
    # The inventory file the mapping names is not there: the message names the key, not only an OS error.
    (tmp_path / "meta.csv").unlink()
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", str(tmp_path / "lake")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inventory.source" in err and "meta.csv': no such file; write" in err


def test_a_wrong_epoch_unit_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    times = pd.date_range("2024-03-01", periods=10 * 24, freq="h")
    export = tmp_path / "prom.csv"
    pd.DataFrame({"server": "db-1", "time": times.astype("int64") // 10**9, "cpu": 40.0}).to_csv(export, index=False)
    # With interval_seconds (the Bitbrains case) 10 days packed into one read as an overfull day: that warning
    # must not come first with a wrong cause (helper-39).
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU.replace("{column: time}", "{column: time, kind: epoch, "
                                                                  "unit: ms}") + "interval_seconds: 3600\n")
    lake = tmp_path / "lake"
    assert main(["ingest", str(export), "--mapping", str(mapping), "--lake", str(lake)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "set timestamp.unit: s" in err and "column 'time'" in err
    assert not (lake / "raw").exists()  # ten days packed into 1970-01-20 would fail every later ETL


def test_a_series_the_etl_quarantines_whole_is_kept_in_risk_with_the_reason(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A German-locale file read as thousands: every day of one server out of range; it vanished from risk."""
    data = metrics_only_csv(tmp_path / "cpu.csv", servers=("db-1", "db-2", "db-3"), days=70)
    frame = pd.read_csv(data)
    frame.loc[frame["server"] == "db-3", "cpu"] *= 1000
    frame.to_csv(data, index=False)
    lake = str(tmp_path / "lake")
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU)
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", lake, "--quiet"]) == 0
    assert main(["etl", "--lake", lake]) == 0
    said = capsys.readouterr()
    assert "1 series quarantined whole (every day; see the warning)" in said.out
    assert ("1 series have no usable day, so they are not forecast: db-3 cpu (70 days quarantined, mostly "
            "out_of_range)") in said.err
    store = Lake.open(lake)
    diagnostics = store.read_table("series_diagnostics").set_index("server_id")
    assert diagnostics.loc["db-3", ["n_obs", "n_quarantined", "quarantine_reason"]].tolist() == [0, 70, "out_of_range"]
    assert diagnostics.loc["db-1", ["n_quarantined", "quarantine_reason"]].tolist() == [0, ""]
    for stage in ("forecast", "risk"):
        assert main([stage, "--lake", lake, "--quiet", *(["--horizon", "14"] if stage == "forecast" else [])]) == 0
    risk = store.read_table("server_risk").set_index("server_id")
    assert risk.loc["db-3", "status"] == "no_data" and pd.isna(risk.loc["db-3", "risk_level"])
    reason = "cpu: all 70 of its days were quarantined by the ETL (mostly out_of_range): nothing to assess"
    assert risk.loc["db-3", "reason"].startswith(reason)
    assert risk.loc[["db-1", "db-2"], "risk_level"].notna().all()
    recs = store.read_table("recommendations").set_index("server_id")
    assert recs.loc["db-3", "action"] == "keep" and reason in recs.loc["db-3", "rationale"]
    assert "no metrics were delivered" not in recs.loc["db-3", "rationale"]


def test_a_decimal_comma_export_is_refused_in_one_line_that_names_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = metrics_only_csv(tmp_path / "cpu.csv", days=3)
    frame = pd.read_csv(data)
    frame["cpu"] = frame["cpu"].map(lambda v: f"{v:.2f}".replace(".", ","))
    frame.to_csv(data, index=False, sep=";")
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU)
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", str(tmp_path / "lake"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # no "no row could be used" warning before the refusal
    assert "unparseable_value" in err and "set csv: {decimal: ','} in the mapping" in err
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU + "csv: {decimal: ','}\n")
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", str(tmp_path / "lake"), "--quiet"]) == 0
    capsys.readouterr()
    # One server of four in the German locale: the per-series guard refuses, and nothing warns before it.
    mixed = metrics_only_csv(tmp_path / "mixed.csv", servers=("db-1", "db-2", "db-3", "db-4"), days=3)
    frame = pd.read_csv(mixed)
    frame["cpu"] = [f"{v:.2f}".replace(".", ",") if s == "db-4" else f"{v:.2f}"
                    for s, v in zip(frame["server"], frame["cpu"], strict=True)]
    frame.to_csv(mixed, index=False, sep=";")
    plain = write_mapping(tmp_path / "p.yaml", LONG_CPU)
    assert main(["ingest", str(mixed), "--mapping", str(plain), "--lake", str(tmp_path / "l2"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "server db-4" in err and "not in raw/" not in err, err


def test_ids_that_differ_only_in_case_across_monthly_exports_are_said(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """WEB-04 in July's export, web-04 in August's: two servers in the lake, each with half the history."""
    lake = str(tmp_path / "lake")
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU)
    july = metrics_only_csv(tmp_path / "july.csv", servers=("WEB-04", "db-1"), days=3)
    august = metrics_only_csv(tmp_path / "august.csv", servers=("web-04", "db-1"), days=3)
    assert main(["ingest", str(july), "--mapping", str(mapping), "--lake", lake, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["ingest", str(august), "--mapping", str(mapping), "--lake", lake]) == 0
    err = capsys.readouterr().err
    assert ("1 server id(s) of this export differ from ids already in the lake only in case, spaces or Unicode form "
            "and are kept as separate servers: 'WEB-04' / 'web-04'") in err
    assert "db-1" not in err.split("Unicode form")[1].split("\n")[0]


def test_ingest_manifest_names_rows_and_records_and_warns_once(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "wide.csv"
    data.write_text("host,ts,a,b\nh1,2024-01-01T00:00:00,1,2\nh1,2024-01-01T01:00:00,x,y\n", encoding="utf-8")
    (tmp_path / "empty.csv").write_text("host,ts,a,b\n", encoding="utf-8")
    mapping = write_mapping(tmp_path / "m.yaml", "layout: wide\nserver_id: {column: host}\ntimestamp: {column: ts}\n"
                            "metrics: {cpu: {percent: a}, memory: {percent: b}}\n")
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(data), str(tmp_path / "empty.csv"), "--mapping", str(mapping), "--lake", lake]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("no data rows") == 1
    assert ("2 rows read, 1 used, 1 quarantined (2 quarantine records: a wide row can give one per metric)"
            in captured.out)
    (manifest,) = list_runs(Lake.open(lake), "ingest")
    assert (manifest["rows_in"], manifest["rows_quarantined"], manifest["quarantine_records"]) == (2, 1, 2)
    assert manifest["counts"]["rows_used"] == 1


def test_etl_that_would_quarantine_everything_stops_and_keeps_the_tables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = metrics_only_csv(tmp_path / "cpu.csv")
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU)
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", lake, "--quiet"]) == 0
    assert main(["etl", "--lake", lake, "--quiet"]) == 0
    store = Lake.open(lake, for_writing=True)
    before = {name: store.table_info(name).version for name in ("metrics", "quarantine", "features")}
    raw = store.read_table("raw_metrics")
    store.write_table("raw_metrics", raw.assign(value=500.0))  # a unit error in every value
    capsys.readouterr()
    assert main(["etl", "--lake", lake, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("capfc: error: etl: 40 of 40 rows (100%) would be quarantined, more than "
                          "etl.max_quarantine_share = 0.5; mostly out_of_range") and "Traceback" not in err
    assert "--force" in err and len(err.strip().splitlines()) == 1
    assert {name: store.table_info(name).version for name in before} == before
    assert len(store.read_table("metrics")) == 40
    assert main(["etl", "--lake", lake, "--quiet", "--force"]) == 0
    assert len(store.read_table("metrics")) == 0


def test_ingest_that_would_quarantine_most_rows_writes_nothing_unless_forced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "cpu.csv"
    data.write_text("server,time,cpu\na,2024-01-01T00:00:00,1\na,bad,2\na,worse,3\n", encoding="utf-8")
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU)
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", lake, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "ingest: 2 of 3 rows (67%) would be quarantined" in err and "unparseable_timestamp" in err
    assert not Lake.open(lake).has_table("raw_metrics")
    config = tmp_path / "c.yaml"
    config.write_text("ingest: {max_quarantine_share: 0.7}\n", encoding="utf-8")
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", lake, "--quiet",
                 "--config", str(config)]) == 0
    assert len(Lake.open(lake).read_table("raw_metrics")) == 1


def test_ingest_that_cannot_read_most_of_one_columns_values_writes_nothing_unless_forced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every row is used (its cpu reads), but most memory values of one server do not: the ingest stops."""
    lines = ["host;time;cpu;used;total"]
    for hour in range(24):
        used = "1.0.26,7" if hour % 4 else "480,6"  # a broken grouping on 3 of 4 rows of db-1
        lines += [f"db-1;2024-01-01T{hour:02d}:00:00;12,5;{used};16.384",
                  f"db-2;2024-01-01T{hour:02d}:00:00;20,0;1.024,0;16.384"]
    data = tmp_path / "eu.csv"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    mapping = write_mapping(tmp_path / "m.yaml", (
        "layout: wide\ncsv: {delimiter: ';', decimal: ','}\nserver_id: {column: host}\ntimestamp: {column: time}\n"
        "metrics: {cpu: {percent: cpu}, memory: {usage: used, capacity: total}}\n"))
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", lake, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("capfc: error: ingest: column 'used' (memory): 18 of 24 values of server db-1 (75%) "
                          "could not be read, more than ingest.max_quarantine_share = 0.5 (1 of 4 series over "
                          "it; 18 of 48 values in the column), e.g. \"unparseable_value: '1.0.26,7' in column "
                          f"'used'\" at {data}:4; nothing was written to the lake")
    assert not Lake.open(lake).has_table("raw_metrics")
    assert main(["ingest", str(data), "--mapping", str(mapping), "--lake", lake, "--quiet", "--force"]) == 0
    memory = Lake.open(lake).read_table("raw_metrics").set_index(["server_id", "metric"])["value"]
    assert memory[("db-2", "memory")] == pytest.approx(6.25)  # 1.024,0 of 16.384 MB


def test_ingest_in_increments_says_how_many_days_it_completed(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = pd.read_csv(metrics_only_csv(tmp_path / "cpu.csv", days=3))
    cut = data["time"] < "2024-01-02 06:00:00"  # a 06:00 export job: day 2 arrives in two parts
    data[cut].to_csv(tmp_path / "a.csv", index=False)
    data[~cut].to_csv(tmp_path / "b.csv", index=False)
    mapping = write_mapping(tmp_path / "m.yaml", LONG_CPU)
    lake = str(tmp_path / "lake")
    for part in ("a.csv", "b.csv"):
        assert main(["ingest", str(tmp_path / part), "--mapping", str(mapping), "--lake", lake]) == 0
    out = capsys.readouterr().out
    assert "0 day(s) completed from earlier runs (2 partial day(s) staged)" in out
    assert "2 day(s) completed from earlier runs (0 partial day(s) staged)" in out
    rows = sql(lake, "SELECT server_id, min(samples) AS n FROM raw_metrics GROUP BY 1 ORDER BY 1", capsys)
    assert rows == [{"server_id": "db-1", "n": 24}, {"server_id": "db-2", "n": 24}]


def test_metrics_the_mapping_excludes_do_not_trip_the_quarantine_guard(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """helper-60: a CloudWatch CSV with NetworkIn/NetworkOut beside CPU could not be read without --force."""
    times = pd.date_range("2024-01-01", periods=48, freq="h").strftime("%Y-%m-%dT%H:%M:%SZ")
    rows = [f"i-1,{name},{t},{value}" for t in times
            for name, value in (("CPUUtilization", 20), ("NetworkIn", 1e6), ("NetworkOut", 2e6))]
    export = tmp_path / "cw.csv"
    export.write_text("InstanceId,MetricName,Timestamp,Value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    mapping = ("layout: long\nserver_id: {column: InstanceId}\ntimestamp: {column: Timestamp}\n"
               "long: {value: Value, metric_column: MetricName, metric_names: {CPUUtilization: cpu}}\n")
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(export), "--mapping", str(write_mapping(tmp_path / "m.yaml", mapping)),
                 "--lake", lake]) == 2
    assert "96 of 144 rows (67%) would be quarantined" in capsys.readouterr().err
    excluded = mapping + "exclude_rows: {column: MetricName, values: [NetworkIn, NetworkOut], reason: not used}\n"
    assert main(["ingest", str(export), "--mapping", str(write_mapping(tmp_path / "x.yaml", excluded)),
                 "--lake", lake]) == 0
    assert ("48 used, 96 quarantined (96 of them excluded by the mapping; 2 quarantine records: a wide row can give "
            "one per metric)"
            in capsys.readouterr().out)
    assert list_runs(Lake.open(lake), "ingest")[-1]["counts"]["rows_excluded"] == 96
    # One record per file, server and excluded value, with its rows: not one per row of data left out.
    assert sorted(Lake.open(lake).read_table("quarantine")["reason"]) == [
        "excluded_row: 48 row(s) whose column 'MetricName' is 'NetworkIn' (mapping exclude_rows: not used)",
        "excluded_row: 48 row(s) whose column 'MetricName' is 'NetworkOut' (mapping exclude_rows: not used)"]
