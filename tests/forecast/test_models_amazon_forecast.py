"""The amazon_forecast model: imported rows looked up per series and date, "no answer" with a reason elsewhere."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.config import ForecastConfig, Settings
from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.models.amazon_forecast import IMPORTED
from capacity_forecaster.forecast.registry import get_model
from capacity_forecaster.forecast.stage import resolve_models, run_forecast
from capacity_forecaster.stages.forecast import forecast_stage
from capacity_forecaster.storage import Lake

DS = pd.date_range("2024-01-01", periods=60, freq="D")
LAST = DS[-1]


def history(servers: tuple[str, ...] = ("a", "b", "c")) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.concat([pd.DataFrame({"server_id": s, "metric": "cpu", "ds": DS,
                                    "value": 40 + 5 * np.sin(np.arange(60)) + rng.normal(0, 1, 60)})
                      for s in servers], ignore_index=True)


def imported(servers: tuple[str, ...] = ("a", "b"), steps: int = 14) -> pd.DataFrame:
    """A tiny import (``forecast_rows`` layout): P50 = 50 + step, P10/P90 = -/+ 5."""
    frames = []
    for s in servers:
        step = np.arange(1, steps + 1)
        frames.append(pd.DataFrame({"server_id": s, "metric": "cpu", "ds": LAST + pd.to_timedelta(step, "D"),
                                    "model": "amazon_forecast", "yhat": 50.0 + step, "yhat_lower": 45.0 + step,
                                    "yhat_upper": 55.0 + step, "interval": 0.8}))
    return pd.concat(frames, ignore_index=True)


def test_it_returns_the_stored_rows_of_each_series() -> None:
    model = get_model("amazon_forecast", rows=imported())
    pred = model.fit(history(("a", "b")), freq="D").predict(7, level=80.0)
    assert list(pred.columns) == ["server_id", "metric", "ds", "yhat", "yhat_lower", "yhat_upper"]
    assert len(pred) == 14
    first = pred[pred["server_id"] == "b"].iloc[0]
    assert (first["ds"], first["yhat"], first["yhat_lower"], first["yhat_upper"]) == \
        (LAST + pd.Timedelta(days=1), 51.0, 46.0, 56.0)


def test_series_or_dates_not_imported_are_no_answer_with_a_reason() -> None:
    with pytest.raises(ForecastError, match=r"no imported forecast for 1 of 2 series .* e\.g\. c/cpu"):
        get_model("amazon_forecast", rows=imported()).fit(history(("a", "c")), freq="D").predict(7)
    with pytest.raises(ForecastError, match=r"a/cpu at .*the import holds 2024-03-01 00:00:00 to 2024-03-14"):
        get_model("amazon_forecast", rows=imported()).fit(history(("a",)), freq="D").predict(30)
    with pytest.raises(ForecastError, match="P10-P90 intervals"):
        get_model("amazon_forecast", rows=imported()).fit(history(("a",)), freq="D").predict(7, level=90.0)
    with pytest.raises(ForecastError, match="forecast-import"):
        get_model("amazon_forecast").fit(history(("a",)), freq="D")


def test_it_is_not_in_auto() -> None:
    assert "amazon_forecast" not in resolve_models("auto")
    assert resolve_models("amazon_forecast") == ["amazon_forecast"]


def test_named_without_backtests_it_publishes_the_import_and_falls_back_where_it_has_none() -> None:
    cfg = ForecastConfig(models="amazon_forecast", horizon=14, backtest_windows=0, n_jobs=1)
    result = run_forecast(history(), cfg, inputs={"amazon_forecast": imported()})
    fc = result.forecasts
    assert set(fc.loc[fc["server_id"].isin(["a", "b"]), "model"]) == {"amazon_forecast"}
    a = fc[fc["server_id"] == "a"].reset_index(drop=True)
    want = imported().query("server_id == 'a'").reset_index(drop=True)
    np.testing.assert_allclose(a[["yhat", "yhat_lower", "yhat_upper"]], want[["yhat", "yhat_lower", "yhat_upper"]])
    # c is not in the import: the baseline, recorded (never silently).
    assert set(fc.loc[fc["server_id"] == "c", "model"]) == {"seasonal_naive"}
    failures = result.failures
    assert failures[["server_id", "model", "stage", "fallback"]].values.tolist() == \
        [["c", "amazon_forecast", "final", "seasonal_naive"]]
    assert "no imported forecast for 1 of 1 series" in failures["error"].iloc[0]
    assert not any(f.model == "amazon_forecast" for f in result.fitted)  # the import is its state


def test_backtests_score_it_only_where_the_import_covers_the_window() -> None:
    cfg = ForecastConfig(models="seasonal_naive,amazon_forecast", horizon=14, backtest_windows=2, n_jobs=1)
    result = run_forecast(history(("a",)), cfg, inputs={"amazon_forecast": imported(("a",))})
    bt = result.failures[result.failures["stage"] == "backtest"]
    assert set(bt["model"]) == {"amazon_forecast"} and len(bt) == 2  # both windows end before the import starts
    assert set(result.forecasts["model"]) == {"seasonal_naive"}


def test_the_stage_reads_the_import_from_the_lake(tmp_path: Path) -> None:
    data = history()
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    lake.write_table("metrics", data.assign(value_raw=data["value"], is_imputed=False, is_outlier=False,
                                            is_anomaly=False, anomaly_score=0.0))
    settings = Settings(forecast=ForecastConfig(models="amazon_forecast", horizon=14, backtest_windows=0, n_jobs=1))
    with pytest.raises(ForecastError, match="forecast-import"):
        forecast_stage(lake, settings)
    buffer = io.BytesIO()
    imported().to_parquet(buffer, index=False)
    lake.write_bytes(IMPORTED, buffer.getvalue())
    run = forecast_stage(lake, settings)
    assert run.counts["chosen"] == {"amazon_forecast": 2, "seasonal_naive": 1}
    assert run.counts["failed_series"] == 1
