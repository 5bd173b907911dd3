"""Global models learn from a fleet-wide reserve: chunk size no longer changes what they learn from."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tests.forecast.test_chunked import config, fleet

from capacity_forecaster.forecast import backtest as bt
from capacity_forecaster.forecast.artifacts import load_model, save_models
from capacity_forecaster.forecast.engine import FittedModel
from capacity_forecaster.forecast.models.gbm_global import GBMGlobal
from capacity_forecaster.forecast.reserve import Reserve, sample_servers
from capacity_forecaster.forecast.stage import run_forecast

HORIZON = 30


def _reserve(history: pd.DataFrame, order: list[str], min_series: int = 250) -> Reserve:
    return Reserve.build(bt.prepare_history(history, "D"), order, 14, "D", min_series)


def test_sample_is_seeded_bounded_and_independent_of_input_order() -> None:
    servers = [f"s{i:03d}" for i in range(40)]
    picked = sample_servers(servers, size=10)
    assert len(picked) == len(set(picked)) == 10 and set(picked) <= set(servers)
    assert sample_servers(servers[::-1], size=10) == picked
    assert sample_servers(servers, size=10, seed=1) != picked
    assert sorted(sample_servers(servers[:5], size=10)) == servers[:5]


def test_top_up_adds_eligible_series_of_the_metric_in_draw_order_up_to_the_minimum() -> None:
    data = fleet(servers=6)  # srv-01 has 40 days only, srv-02 a gap
    order = ["srv-03", "srv-01", "srv-05", "srv-00", "srv-02", "srv-04"]
    reserve = _reserve(data, order, min_series=4)
    unit = pd.DataFrame({"server_id": ["srv-00", "srv-04"], "metric": "cpu"})
    extra = reserve.top_up(unit, None, 91, "D")
    assert extra is not None
    # Two more (4 - 2), srv-01 too short for 91 known days, the unit's own servers skipped.
    assert list(dict.fromkeys(extra["server_id"])) == ["srv-03", "srv-05"]
    assert set(extra["metric"]) == {"cpu"}
    cutoff = pd.Timestamp("2024-03-31")
    early = reserve.top_up(unit, cutoff, 91, "D")
    assert early is not None and early["ds"].max() == cutoff  # nothing after the unit's cutoff
    # 91 known days up to the cutoff: srv-02's ten missing days leave it 81, so srv-02 is skipped.
    assert list(dict.fromkeys(early["server_id"])) == ["srv-03", "srv-05"]
    assert reserve.top_up(unit.assign(metric="memory").head(1), pd.Timestamp("2024-03-31"), 91, "D") is not None
    big = pd.DataFrame({"server_id": [f"x{i}" for i in range(4)], "metric": "cpu"})
    assert reserve.top_up(big, None, 91, "D") is None


def test_gbm_learns_from_extra_series_and_forecasts_only_its_own() -> None:
    data = fleet(servers=6)
    history = bt.prepare_history(data[data["metric"] == "cpu"], "D")
    own = history[history["server_id"].isin(["srv-00", "srv-03"])]
    extra = history[history["server_id"].isin(["srv-02", "srv-04", "srv-05"])]
    alone = GBMGlobal().fit(own).predict(HORIZON)
    topped = GBMGlobal().fit(own, extra=extra)
    pred = topped.predict(HORIZON)
    assert topped.targets == ["srv-00", "srv-03"] and len(topped._panel) == 5  # noqa: SLF001
    assert pred[["server_id", "metric"]].drop_duplicates().values.tolist() == [["srv-00", "cpu"], ["srv-03", "cpu"]]
    assert len(pred) == 2 * HORIZON
    assert not np.allclose(pred["yhat"].to_numpy(), alone["yhat"].to_numpy())  # it did learn from the extra
    # The same model as data: its whole training panel is stored and re-fitted; it forecasts the same rows.
    store: dict[str, bytes] = {}
    item = FittedModel("gbm_global", "cpu", (("srv-00", "cpu"), ("srv-03", "cpu")), own["ds"].max(), topped)
    record = save_models([item], store.__setitem__)[0]
    assert json.loads(store[record.path])["params"]["targets"] == ["srv-00", "srv-03"]
    loaded = load_model(record.path, record.sha256, store.get)
    assert loaded.series == item.series
    pd.testing.assert_frame_equal(loaded.obj.predict(HORIZON), pred)


@pytest.mark.parametrize("chunk_series", [2, 4])
def test_global_model_gives_the_whole_fleets_rows_in_chunks(chunk_series: int) -> None:
    data = fleet(servers=6)
    cfg = {"models": "seasonal_naive,harmonic,gbm_global", "selection_margin": 0.0}
    whole = run_forecast(data, config(chunk_series=1_000, **cfg))
    chunked = run_forecast(data, config(chunk_series=chunk_series, **cfg))
    chosen = whole.forecasts.drop_duplicates(["server_id", "metric"])["model"]
    assert (chosen == "gbm_global").any()  # the comparison covers the global model's final fits
    assert (whole.backtests["model"] == "gbm_global").any()
    for name in ("forecasts", "backtests", "backtest_forecasts", "failures", "triage"):
        pd.testing.assert_frame_equal(getattr(chunked, name), getattr(whole, name), obj=name, rtol=1e-9, atol=1e-9)
