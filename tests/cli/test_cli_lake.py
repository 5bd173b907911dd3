"""capfc lake history / vacuum / migrate and capfc sql --as-of, through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from tests.storage.test_delta import _legacy_table
from tests.storage.test_lake import metrics_frame

from capacity_forecaster.cli import main
from capacity_forecaster.config import Settings
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import stage_run


def _two_runs(root: Path) -> tuple[str, str]:
    lake = Lake.open(str(root), for_writing=True)
    settings = Settings.model_validate({"lake": {"uri": str(root)}})
    ids = []
    for servers in (["a", "b"], ["c"]):
        with stage_run(lake, "ingest", settings) as run:
            run.wrote(lake.write_table("inventory", pd.DataFrame({"server_id": servers}), validate=False))
        ids.append(run.run_id)
    return ids[0], ids[1]


def test_history_names_each_version_and_its_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _two_runs(tmp_path / "lake")
    capsys.readouterr()
    assert main(["lake", "history", "inventory", "--lake", str(tmp_path / "lake")]) == 0
    out = capsys.readouterr().out
    assert first in out and second in out and out.index(second) < out.index(first)  # newest first
    assert main(["lake", "history", "nosuch", "--lake", str(tmp_path / "lake")]) == 2
    assert "unknown table 'nosuch'" in capsys.readouterr().err


def test_sql_as_of_a_run_and_vacuum(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "lake"
    first, _ = _two_runs(root)
    capsys.readouterr()
    query = "SELECT count(*) AS n FROM inventory"
    assert main(["sql", query, "--lake", str(root), "--format", "json", "--as-of", first]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 2}]
    assert main(["sql", query, "--lake", str(root), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 1}]
    assert main(["lake", "vacuum", "--retention-hours", "0", "--dry-run", "--lake", str(root)]) == 0
    assert "1 file(s) would be deleted" in capsys.readouterr().out
    assert main(["lake", "vacuum", "--retention-hours", "0", "--lake", str(root)]) == 0
    assert main(["sql", query, "--lake", str(root), "--format", "json", "--as-of", first]) == 2
    assert "capfc: error:" in capsys.readouterr().err                      # that version is gone now


def test_migrate_converts_an_old_lake(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa

    root = tmp_path / "lake"
    _legacy_table(root, "raw/metrics", pa.Table.from_pandas(metrics_frame(days=5, start="2024-12-01"),
                                                            preserve_index=False), partitioned=True)
    assert main(["sql", "SELECT 1", "--lake", str(root)]) == 2
    assert "capfc lake migrate" in capsys.readouterr().err
    assert main(["lake", "migrate", "--lake", str(root)]) == 0
    assert "raw_metrics: 15 rows -> 15 rows" in capsys.readouterr().out
    assert main(["sql", "SELECT count(*) AS n FROM raw_metrics", "--lake", str(root), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 15}]
