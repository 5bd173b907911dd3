"""Checkpointed forecast runs: a run killed after some chunks resumes and writes what an uninterrupted run does."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.forecast.test_chunked import fleet

from capacity_forecaster.config import ForecastConfig, Settings
from capacity_forecaster.forecast import chunked
from capacity_forecaster.forecast.chunked import OUTPUTS
from capacity_forecaster.stages.forecast import forecast_stage
from capacity_forecaster.storage import Lake

SORT = {"forecasts": ["server_id", "metric", "ds"], "backtests": ["server_id", "metric", "model", "cutoff"],
        "backtest_forecasts": ["server_id", "metric", "model", "cutoff", "ds"],
        "forecast_failures": ["server_id", "metric", "model", "stage", "cutoff"],
        "forecast_triage": ["server_id", "metric"]}


class Killed(RuntimeError):
    """Stands in for a spot interruption."""


def config(**kw: Any) -> ForecastConfig:
    base: dict[str, Any] = {"models": "seasonal_naive,harmonic,recent_level,ensemble", "horizon": 21,
                            "backtest_windows": 2, "n_jobs": 1, "chunk_series": 2}
    return ForecastConfig(**{**base, **kw})


def lake_with_metrics(folder: Path) -> Lake:
    data = fleet(servers=4, days=200)
    lake = Lake.open(str(folder), for_writing=True)
    lake.write_table("metrics", data.assign(value_raw=data["value"], is_imputed=False, is_outlier=False,
                                            is_anomaly=False, anomaly_score=0.0))
    return lake


def tables(lake: Lake) -> dict[str, pd.DataFrame]:
    return {name: lake.read_table(name).sort_values(SORT[name], kind="mergesort").reset_index(drop=True)
            for name in OUTPUTS}


def model_files(lake: Lake, run: Any) -> dict[str, bytes]:
    """Model files by their path below ``models/<run_id>/``."""
    prefix = f"models/{run.run_id}/"
    return {p[len(prefix):]: lake.read_bytes(p) or b"" for p in lake.list_files("models")}


def kill_after(monkeypatch: pytest.MonkeyPatch, name: str, done: int) -> None:
    """Make ``chunked.<name>`` raise once ``done`` chunks have finished."""
    real = getattr(chunked, name)
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if calls[0] == done:
            raise Killed(f"killed in {name} after {done} chunk(s)")
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(chunked, name, wrapped)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, pd.DataFrame], dict[str, bytes]]:
    lake = lake_with_metrics(tmp_path_factory.mktemp("plain"))
    run = forecast_stage(lake, Settings(forecast=config()))
    assert run.counts["chunks"] == 4
    return tables(lake), model_files(lake, run)


@pytest.mark.parametrize(("step", "done"), [("_backtest_chunk", 2), ("_final_chunk", 1), ("_final_chunk", 3)])
def test_a_killed_run_resumes_and_writes_what_an_uninterrupted_run_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, done: int,
        uninterrupted: tuple[dict[str, pd.DataFrame], dict[str, bytes]]) -> None:
    lake = lake_with_metrics(tmp_path / "lake")
    settings = Settings(forecast=config(checkpoint_dir=str(tmp_path / "ckpt")))
    with monkeypatch.context() as patch:
        kill_after(patch, step, done)
        with pytest.raises(Killed):
            forecast_stage(lake, settings)
    progress = json.loads((tmp_path / "ckpt" / "progress.json").read_text())
    assert len(progress["backtests"]) == (done if step == "_backtest_chunk" else 4)
    assert len(progress["finals"]) == (0 if step == "_backtest_chunk" else done)
    assert lake.table_info("forecasts") is None  # nothing was committed

    calls = {"backtest": 0, "final": 0}
    for name, key in (("_backtest_chunk", "backtest"), ("_final_chunk", "final")):
        real = getattr(chunked, name)

        def counted(*args: Any, _real: Any = real, _key: str = key, **kwargs: Any) -> Any:
            calls[_key] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(chunked, name, counted)
    run = forecast_stage(lake, settings)
    assert calls == {"backtest": 4 - len(progress["backtests"]), "final": 4 - len(progress["finals"])}
    want_tables, want_models = uninterrupted
    for name, frame in tables(lake).items():
        pd.testing.assert_frame_equal(frame, want_tables[name], obj=name)
    assert model_files(lake, run) == want_models
    assert sorted(run.artifacts) == sorted(p for p in lake.list_files("models") if p.endswith(".json"))
    assert not (tmp_path / "ckpt" / "progress.json").exists()  # committed: nothing left to resume


def test_other_inputs_start_over_and_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    lake = lake_with_metrics(tmp_path / "lake")
    folder = str(tmp_path / "ckpt")
    with monkeypatch.context() as patch:
        kill_after(patch, "_final_chunk", 2)
        with pytest.raises(Killed):
            forecast_stage(lake, Settings(forecast=config(checkpoint_dir=folder)))
    with caplog.at_level(logging.INFO, logger="capacity_forecaster.forecast.checkpoint"):
        run = forecast_stage(lake, Settings(forecast=config(checkpoint_dir=folder, horizon=14)))
    assert "inputs differ from the stored run (config); starting over" in caplog.text
    assert run.counts["forecast_rows"] == 8 * 14  # every series forecast 14 steps


def test_a_remote_checkpoint_dir_is_a_config_error(tmp_path: Path) -> None:
    from capacity_forecaster.errors import ConfigError

    lake = lake_with_metrics(tmp_path / "lake")
    with pytest.raises(ConfigError, match="local folder"):
        forecast_stage(lake, Settings(forecast=config(checkpoint_dir="s3://bucket/ckpt")))


def test_a_horizon_past_what_most_backtests_checked_is_a_warning(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    """helper-46: capfc run's default 180 days on 91 days of history doubled the servers at risk, and nothing
    on stderr said the forecasts were mostly extrapolation."""
    lake = lake_with_metrics(tmp_path / "lake")
    with caplog.at_level(logging.WARNING, logger="capacity_forecaster.stages.forecast"):
        forecast_stage(lake, Settings(forecast=config()))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with caplog.at_level(logging.WARNING, logger="capacity_forecaster.stages.forecast"):
        run = forecast_stage(lake, Settings(forecast=config(horizon=250)))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert run.counts["extrapolated_series"] * 2 >= run.counts["series"]
    assert warned == [f"forecast: {run.counts['extrapolated_series']} of {run.counts['series']} series reach beyond "
                      "the lead their history let the backtests check (horizon 250 days): the later days are "
                      "extrapolation with widened intervals, and breach dates there are less certain; a shorter "
                      "--horizon keeps the forecasts to what was checked"]
