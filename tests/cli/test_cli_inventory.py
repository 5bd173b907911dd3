"""capfc ingest + etl with an inventory file whose ids do not match the metrics' exactly, and its correction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.cli import main
from capacity_forecaster.etl.inventory import ids_only_inventory
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import list_runs

SERVERS = ("AMS-APP-01.bank.local", "AMS-DB-01.bank.local", "AMS-WEB-02.bank.local")


def export(path: Path, servers: tuple[str, ...] = SERVERS, days: int = 10) -> Path:
    """A long cpu export, hourly samples; AMS-DB-01 runs at 95 %, the others at 20-30 %."""
    times = pd.date_range("2024-01-01", periods=days * 24, freq="h").strftime("%Y-%m-%d %H:%M:%S")
    rng = np.random.default_rng(1)
    pd.concat([pd.DataFrame({"server": s, "time": times,
                             "cpu": np.round((95.0 if "DB" in s else 20.0) + 5 * rng.random(len(times)), 2)})
               for s in servers]).to_csv(path, index=False)
    return path


def mapping(path: Path, inventory: Path) -> Path:
    path.write_text("name: ams\nlayout: long\nserver_id: {column: server}\ntimestamp: {column: time}\n"
                    "long: {value: cpu, metric: cpu}\n"
                    f"inventory: {{source: '{inventory}', columns: {{server_id: id, cpu_cores: cores, "
                    "monthly_cost_usd: cost}}\n", encoding="utf-8")
    return path


def inventory_rows(lake: str) -> dict[str, tuple[float, float]]:
    frame = Lake.open(lake).read_table("inventory")
    return {str(r.server_id): (r.cpu_cores, r.monthly_cost_usd) for r in frame.itertuples()}


def test_misspelt_inventory_ids_join_and_no_server_with_metrics_is_dropped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = export(tmp_path / "cpu.csv")
    inventory = tmp_path / "inventory.csv"
    inventory.write_text("id,cores,cost\nams-app-01.bank.local,4,420\n AMS-DB-01.BANK.LOCAL ,1,180\n"
                         "AMS-OLD-07.bank.local,8,1250\n", encoding="utf-8")
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(data), "--mapping", str(mapping(tmp_path / "m.yaml", inventory)),
                 "--lake", lake, "--quiet"]) == 0
    err = capsys.readouterr().err
    assert ("ams-app-01.bank.local -> AMS-APP-01.bank.local, AMS-DB-01.BANK.LOCAL -> AMS-DB-01.bank.local"
            in err)
    assert "1 server(s) have metrics but no inventory row: kept with an id-only row" in err
    assert "AMS-WEB-02.bank.local" in err
    assert "1 inventory row(s) have no metrics in the lake" in err and "AMS-OLD-07.bank.local" in err
    (run,) = list_runs(Lake.open(lake), "ingest")
    assert any("AMS-DB-01.BANK.LOCAL -> AMS-DB-01.bank.local" in w for w in run["counts"]["warnings"])
    rows = inventory_rows(lake)
    assert rows["AMS-APP-01.bank.local"] == (4.0, 420.0) and rows["AMS-DB-01.bank.local"] == (1.0, 180.0)
    assert np.isnan(rows["AMS-WEB-02.bank.local"][0]) and set(rows) == {*SERVERS, "AMS-OLD-07.bank.local"}
    assert main(["etl", "--lake", lake]) == 0
    out = capsys.readouterr().out
    assert "30 rows in, 30 out, 0 quarantined" in out and "without an inventory row" not in out
    assert set(Lake.open(lake).read_table("metrics")["server_id"]) == set(SERVERS)


def test_a_corrected_inventory_replaces_the_rows_of_the_first(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    data = export(tmp_path / "cpu.csv")
    first, fixed = tmp_path / "inventory.csv", tmp_path / "inventory_fixed.csv"
    first.write_text("id,cores,cost\nAMS-DB-01.BANK.LOCAL,1,180\nAMS-DB-01.bank.local-old,2,200\n"
                     "ams-old-07,8,600\n", encoding="utf-8")
    fixed.write_text("id,cores,cost\nAMS-APP-01.bank.local,4,420\nAMS-DB-01.bank.local,2,190\n"
                     "AMS-WEB-02.bank.local,2,150\n", encoding="utf-8")
    lake = str(tmp_path / "lake")
    other = Lake.open(lake, for_writing=True)
    other.write_table("inventory", ids_only_inventory(["cmdb-b-1"]).assign(cpu_cores=16.0,
                                                                           inventory_source="cmdb-b"))
    for inventory in (first, fixed):
        assert main(["ingest", str(data), "--mapping", str(mapping(tmp_path / f"{inventory.stem}.yaml", inventory)),
                     "--lake", lake, "--quiet"]) == 0
    err = capsys.readouterr().err
    # Same mapping name, another file: the first delivery's rows without metrics are gone, other sources stay.
    assert "the inventory of 'ams' no longer lists 2 server(s) without metrics" in err
    rows = inventory_rows(lake)
    assert set(rows) == {*SERVERS, "cmdb-b-1"}
    assert rows["AMS-DB-01.bank.local"] == (2.0, 190.0) and rows["AMS-WEB-02.bank.local"] == (2.0, 150.0)
    assert rows["cmdb-b-1"][0] == 16.0


def test_etl_keeps_a_server_the_inventory_table_lacks_and_says_so(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lake = str(tmp_path / "lake")
    store = Lake.open(lake, for_writing=True)
    days = pd.date_range("2025-01-01", periods=10)
    store.write_table("raw_metrics", pd.DataFrame({"server_id": np.repeat(["srv-1", "srv-2"], 10),
                                                   "ds": np.tile(days, 2), "metric": "cpu", "value": 50.0}))
    store.write_table("inventory", ids_only_inventory(["srv-1"]).assign(cpu_cores=4.0))
    assert main(["etl", "--lake", lake]) == 0
    captured = capsys.readouterr()
    assert "20 rows in, 20 out, 0 quarantined" in captured.out
    assert "1 server(s) without an inventory row kept (size and cost unknown)" in captured.out
    assert "1 server(s) in raw metrics have no inventory row (e.g. srv-2)" in captured.err
    assert set(Lake.open(lake).read_table("metrics")["server_id"]) == {"srv-1", "srv-2"}
    (run,) = list_runs(Lake.open(lake), "etl")
    assert run["counts"]["servers_without_inventory"] == 1


def test_etl_warns_about_a_server_whose_data_run_past_today(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A server clock 15 years ahead put a Prometheus instance in 2028: the report read 'data 2013-07-31 to
    2028-09-29' and nothing said why."""
    lake = str(tmp_path / "lake")
    store = Lake.open(lake, for_writing=True)
    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    normal = pd.date_range(end=today - pd.Timedelta(days=1), periods=20)
    ahead = normal + pd.DateOffset(years=2)
    store.write_table("raw_metrics", pd.DataFrame({"server_id": np.repeat(["ok", "skewed"], 20),
                                                   "ds": np.concatenate([normal, ahead]), "metric": "cpu",
                                                   "value": 50.0}))
    store.write_table("inventory", ids_only_inventory(["ok", "skewed"]))
    assert main(["etl", "--lake", lake]) == 0
    captured = capsys.readouterr()
    assert "1 server(s) with data dated after today" in captured.out
    assert f"skewed up to {ahead[-1]:%Y-%m-%d}" in captured.err and "clocks" in captured.err
    (run,) = list_runs(Lake.open(lake), "etl")
    assert run["counts"]["servers_dated_after_today"] == 1


def test_each_export_folders_inventory_is_a_source_of_its_own(tmp_path: Path) -> None:
    """A mapping with inventory '{source_dir}/inventory.csv': export B's inventory removed export A's
    inventory-only server as if B had corrected A."""
    map_file = tmp_path / "m.yaml"
    map_file.write_text("name: folders\nlayout: long\nserver_id: {column: server}\ntimestamp: {column: time}\n"
                        "long: {value: cpu, metric: cpu}\n"
                        "inventory: {source: '{source_dir}/inventory.csv',\n"
                        "            columns: {server_id: id, cpu_cores: cores}}\n", encoding="utf-8")
    lake = str(tmp_path / "lake")
    for folder, servers in (("A", ("a-1",)), ("B", ("b-1",))):
        (tmp_path / folder).mkdir()
        export(tmp_path / folder / "metrics.csv", servers=servers)
        pd.DataFrame({"id": [*servers, f"{folder.lower()}-spare"], "cores": [4, 8]}).to_csv(
            tmp_path / folder / "inventory.csv", index=False)
        assert main(["ingest", str(tmp_path / folder / "metrics.csv"), "--mapping", str(map_file),
                     "--lake", lake, "--quiet"]) == 0
    assert set(inventory_rows(lake)) == {"a-1", "a-spare", "b-1", "b-spare"}


def test_a_row_that_gives_only_the_id_is_said_apart_from_no_row(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """helper-66: a server whose row in the file had only its id read "have metrics but no inventory row"."""
    data = export(tmp_path / "cpu.csv")
    inventory = tmp_path / "inventory.csv"
    inventory.write_text("id,cores,cost\nAMS-APP-01.bank.local,4,420\nAMS-DB-01.bank.local,,\n", encoding="utf-8")
    assert main(["ingest", str(data), "--mapping", str(mapping(tmp_path / "m.yaml", inventory)),
                 "--lake", str(tmp_path / "lake"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert ("1 server(s) have metrics but no inventory row: kept with an id-only row (size and cost unknown), e.g. "
            "AMS-WEB-02.bank.local") in err
    assert ("1 server(s) with metrics have an inventory row that gives only their id (size and cost unknown), e.g. "
            "AMS-DB-01.bank.local") in err
    # The id-only rows an earlier metrics-only ingest wrote are no row of this file (helper-70).
    lake = str(tmp_path / "lake2")
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: plain\nlayout: long\nserver_id: {column: server}\ntimestamp: {column: time}\n"
                     "long: {value: cpu, metric: cpu}\n", encoding="utf-8")
    assert main(["ingest", str(export(tmp_path / "old.csv", servers=("OLD-1",))), "--mapping", str(plain), "--lake",
                 lake, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["ingest", str(data), "--mapping", str(mapping(tmp_path / "m.yaml", inventory)), "--lake", lake,
                 "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "2 server(s) have metrics but no inventory row: kept with an id-only row (size and cost unknown)" in err
    assert "OLD-1" in err and "1 server(s) with metrics have an inventory row that gives only their id" in err
