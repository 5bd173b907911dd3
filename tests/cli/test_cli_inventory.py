"""capfc etl on a lake whose inventory table lacks a server with metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.cli import main
from capacity_forecaster.etl.inventory import ids_only_inventory
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import list_runs


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
