"""Model artefacts: a forecast run replaces earlier runs' models/<run>/ files and their folders."""

from __future__ import annotations

from pathlib import Path

from capacity_forecaster.stages.forecast import _replace_models
from capacity_forecaster.storage import Lake


def test_earlier_runs_model_folders_are_removed(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    for run in ("run-a", "run-b"):
        lake.write_bytes(f"models/{run}/seasonal_naive/cpu-0001.pkl", b"old")
    assert _replace_models(lake, [], "run-c") == {}
    assert lake.list_files("models") == []
    models = tmp_path / "lake" / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_prune_keeps_folders_with_files(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    lake.write_bytes("models/keep/m.pkl", b"x")
    (tmp_path / "lake" / "models" / "empty" / "deeper").mkdir(parents=True)
    lake.prune_empty_dirs("models")
    assert sorted(p.name for p in (tmp_path / "lake" / "models").iterdir()) == ["keep"]
