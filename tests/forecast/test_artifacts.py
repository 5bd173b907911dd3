"""Model artefacts: saved with a sha256, loaded only when the bytes match it."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.errors import ArtifactError
from capacity_forecaster.forecast.artifacts import load_model, load_models, save_models, sha256_hex
from capacity_forecaster.forecast.engine import BuiltinSeasonalNaive, FittedModel


@pytest.fixture()
def store() -> dict[str, bytes]:
    return {}


def _fitted() -> list[FittedModel]:
    history = pd.DataFrame({"server_id": "a", "metric": "cpu", "value": np.arange(30.0),
                            "ds": pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(30), "D")})
    model = BuiltinSeasonalNaive().fit(history)
    return [FittedModel("seasonal_naive", "cpu", (("a", "cpu"),), history["ds"].max(), model),
            FittedModel("seasonal_naive", "cpu", (("b", "cpu"),), history["ds"].max(), model)]


def test_round_trip_verifies_and_predicts(store: dict[str, bytes]) -> None:
    records = save_models(_fitted(), store.__setitem__)
    assert [r.path for r in records] == ["models/seasonal_naive/cpu-0001.pkl", "models/seasonal_naive/cpu-0002.pkl"]
    assert records[0].sha256 == sha256_hex(store[records[0].path]) and records[0].n_series == 1
    loaded = load_models([r.to_dict() for r in records], store.get)
    assert loaded[0].series == (("a", "cpu"),)
    assert loaded[0].obj.predict(3)["yhat"].tolist() == [23.0, 24.0, 25.0]


def test_tampered_artefact_is_refused_before_unpickling(store: dict[str, bytes],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    record = save_models(_fitted()[:1], store.__setitem__)[0]
    store[record.path] = store[record.path][:-1] + b"\x00"

    def never(_: bytes) -> object:
        raise AssertionError("pickle.loads must not run on unverified bytes")

    monkeypatch.setattr(pickle, "loads", never)
    with pytest.raises(ArtifactError, match="fails its checksum"):
        load_model(record.path, record.sha256, store.get)


def test_missing_and_foreign_artefacts(store: dict[str, bytes]) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_model("models/x.pkl", "0" * 64, store.get)
    data = pickle.dumps({"not": "a model"})
    store["models/y.pkl"] = data
    with pytest.raises(ArtifactError, match="expected a FittedModel"):
        load_model("models/y.pkl", sha256_hex(data), store.get)
