"""Model artefacts: data only (JSON + Parquet), re-fitted on load, never unpickled."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import capacity_forecaster
from capacity_forecaster.errors import ArtifactError
from capacity_forecaster.forecast.artifacts import load_model, load_models, save_models, sha256_hex
from capacity_forecaster.forecast.engine import BuiltinSeasonalNaive, FittedModel
from capacity_forecaster.forecast.registry import available_models, get_model

HORIZON = 30
# Files of the package allowed to deserialise code-bearing formats: none.
UNPICKLING_ALLOWED: set[str] = set()
UNSAFE = re.compile(r"\bpickle\.loads?\b|\bjoblib\.load\b|\btorch\.load\b|\b(?:cloud)?pickle\.Unpickler\b"
                    r"|\bdill\.loads?\b|read_pickle|allow_pickle\s*=\s*True|\beval\(|\bexec\(|from pickle import")


def _history(days: int = 120, tz: str | None = None) -> pd.DataFrame:
    """Two trending weekly series (one with a gap) and a flat one: enough for every registered model."""
    rng = np.random.default_rng(7)
    ds = pd.date_range("2024-01-01", periods=days, freq="D", tz=tz)
    t = np.arange(days)
    week = 8.0 * (ds.dayofweek.to_numpy() < 5)
    a = 30.0 + 0.05 * t + week + rng.normal(0.0, 1.0, days)
    b = 50.0 + week + rng.normal(0.0, 1.5, days)
    b[40:50] = np.nan
    frames = [pd.DataFrame({"server_id": s, "metric": "cpu", "ds": ds, "value": v})
              for s, v in (("a", a), ("b", b), ("flat", np.full(days, 20.0)))]
    return pd.concat(frames, ignore_index=True)


def _fitted(name: str, history: pd.DataFrame) -> FittedModel:
    model = get_model(name).fit(history, freq="D")
    series = tuple(map(tuple, history[["server_id", "metric"]].drop_duplicates().to_numpy().tolist()))
    return FittedModel(name, "cpu", series, history["ds"].max(), model)


@pytest.fixture()
def store() -> dict[str, bytes]:
    return {}


# An external model (amazon_forecast) is never stored: the stage input is its state (chunked._final_chunk).
@pytest.mark.parametrize("name", [n for n in available_models() if getattr(get_model(n), "external", None) is None])
def test_every_model_round_trips_to_identical_predictions(name: str, store: dict[str, bytes]) -> None:
    item = _fitted(name, _history())
    before = item.obj.predict(HORIZON, level=80.0)
    record = save_models([item], store.__setitem__)[0]
    assert record.path.endswith(".json") and record.data_path.endswith(".parquet")
    assert not any(path.endswith(".pkl") for path in store)
    manifest = json.loads(store[record.path])
    assert (manifest["model"], manifest["freq"]) == (name, "D")
    assert manifest["series"] == [list(s) for s in item.series]
    loaded = load_model(record.path, record.sha256, store.get)
    assert (loaded.model, loaded.metric, loaded.series, loaded.cutoff) == (name, "cpu", item.series, item.cutoff)
    assert type(loaded.obj) is type(item.obj)
    after = loaded.obj.predict(HORIZON, level=80.0)
    pd.testing.assert_frame_equal(before, after, check_exact=False, rtol=0.0, atol=1e-9)


def test_parameters_and_time_zone_survive(store: dict[str, bytes]) -> None:
    history = _history(tz="Asia/Tokyo")
    model = get_model("harmonic", damping=0.97, yearly_order=3, robust=False).fit(history, freq="D")
    item = FittedModel("harmonic", "cpu", (("a", "cpu"), ("b", "cpu"), ("flat", "cpu")), history["ds"].max(), model)
    record = save_models([item], store.__setitem__)[0]
    manifest = json.loads(store[record.path])
    assert manifest["params"]["damping"] == 0.97 and manifest["params"]["robust"] is False
    assert manifest["tz"] == "Asia/Tokyo"
    loaded = load_models([record.to_dict()], store.get)[0]
    pd.testing.assert_frame_equal(model.predict(HORIZON), loaded.obj.predict(HORIZON))


def test_engine_baseline_round_trips_as_state(store: dict[str, bytes]) -> None:
    history = _history(40)
    model = BuiltinSeasonalNaive().fit(history)
    items = [FittedModel("seasonal_naive", "cpu", (("a", "cpu"), ("b", "cpu"), ("flat", "cpu")),
                         history["ds"].max(), model)] * 2
    records = save_models(items, store.__setitem__)
    assert [r.path for r in records] == ["models/seasonal_naive/cpu-0001.json", "models/seasonal_naive/cpu-0002.json"]
    assert records[0].sha256 == sha256_hex(store[records[0].path]) and records[0].n_series == 3
    assert json.loads(store[records[0].path])["form"] == "baseline_state"
    loaded = load_models([r.to_dict() for r in records], store.get)
    assert isinstance(loaded[1].obj, BuiltinSeasonalNaive)
    pd.testing.assert_frame_equal(model.predict(HORIZON), loaded[1].obj.predict(HORIZON))


def _resign(store: dict[str, bytes], path: str, manifest: dict[str, object]) -> str:
    """Rewrite a manifest as an attacker with write access would; returns its new sha256."""
    store[path] = json.dumps(manifest).encode()
    return sha256_hex(store[path])


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def test_crafted_pickles_with_matching_checksums_never_run(store: dict[str, bytes], tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(marker))
    record = save_models([_fitted("recent_level", _history())], store.__setitem__)[0]
    manifest = json.loads(store[record.path])

    # The data file replaced, its checksum updated in the manifest and the manifest re-signed.
    store[record.data_path] = payload
    manifest["data"]["sha256"] = sha256_hex(payload)
    sha = _resign(store, record.path, manifest)
    with pytest.raises(ArtifactError, match="not a readable Parquet file"):
        load_model(record.path, sha, store.get)

    # The manifest itself replaced by the pickle, with the record's checksum updated.
    store[record.path] = payload
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_model(record.path, sha256_hex(payload), store.get)
    assert not marker.exists()


def test_unknown_model_and_non_plain_parameters_are_refused(store: dict[str, bytes]) -> None:
    record = save_models([_fitted("robust_trend", _history())], store.__setitem__)[0]
    manifest = json.loads(store[record.path])
    for change, message in [({"model": "os.system"}, "unknown model 'os.system'"),
                            ({"form": "pickle"}, "unknown form 'pickle'"),
                            ({"params": {"factory": {"module": "os", "name": "system"}}}, "not JSON scalars"),
                            ({"params": {"factory": "os.system"}}, "refuses its stored parameters"),
                            ({"version": 99}, "format version 99"),
                            ({"series": [["a", "cpu"]]}, "differ from the 1 its manifest lists")]:
        sha = _resign(store, record.path, {**manifest, **change})
        with pytest.raises(ArtifactError, match=re.escape(message)):
            load_model(record.path, sha, store.get)


def test_missing_and_corrupted_artefacts(store: dict[str, bytes]) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_model("models/x.json", "0" * 64, store.get)
    with pytest.raises(ArtifactError, match=r"not a \.json manifest"):
        load_model("models/x.pkl", "0" * 64, store.get)
    record = save_models([_fitted("seasonal_naive", _history())], store.__setitem__)[0]
    store[record.data_path] = store[record.data_path][:-1] + b"\x00"
    with pytest.raises(ArtifactError, match="fails its checksum"):
        load_model(record.path, record.sha256, store.get)


def test_package_never_deserialises_code() -> None:
    root = Path(capacity_forecaster.__file__).parent
    found = sorted(f"{path.relative_to(root)}:{n}: {line.strip()}"
                   for path in root.rglob("*.py")
                   for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                   if UNSAFE.search(line) and str(path.relative_to(root)) not in UNPICKLING_ALLOWED)
    assert not found, "code-bearing deserialisation in the package:\n" + "\n".join(found)
