"""Fitted-model artefacts as data only: a JSON manifest plus a Parquet file, re-fitted on load.

No model object is ever serialised, so nothing in the lake can make the loader run code. Each
fitted model becomes two files under the lake's ``models/`` prefix:

- ``<metric>-<n>.json``: format version, registry name, constructor parameters (JSON scalars and
  lists), ``freq``, time zone, metric, the series keys, the training cutoff, and the sha256 of
- ``<metric>-<n>.parquet``: the training history the final fit saw (``server_id, metric, ds,
  value``, rebuilt from the model's training panel; missing points are NaN rows).

Loading checks both checksums, validates the name against the registry and the parameters as
plain data, then builds the model with ``registry.get_model(name, **params)`` and fits it on the
stored history: every registered model is deterministic, so the reloaded model predicts exactly
what the original did, at the cost of a refit. The engine's built-in fallback baseline (which has
no training panel) is stored as its own per-series state instead (``form: baseline_state``).

The run manifest records the sha256 of each JSON manifest, which records that of its data file.
The checksums catch accidental corruption; they are no defence against someone who can write the
bucket, and need not be: all they could change is data, which the loader validates. The module
gets ``write(relpath, data)`` / ``read(relpath) -> bytes | None`` callables (e.g.
``Lake.write_bytes`` / ``Lake.read_bytes``) and never touches storage itself.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from capacity_forecaster.errors import ArtifactError, CapacityForecasterError
from capacity_forecaster.forecast.base import FREQUENCIES
from capacity_forecaster.forecast.engine import BASELINE, NAIVE_SEASON, BuiltinSeasonalNaive, FittedModel
from capacity_forecaster.forecast.models.panel import Panel
from capacity_forecaster.forecast.registry import available_models, get_model

MODELS_PREFIX = "models"
FORMAT = "capfc-model"
FORMAT_VERSION = 1
REFIT = "refit"
BASELINE_STATE = "baseline_state"
Writer = Callable[[str, bytes], None]
Reader = Callable[[str], "bytes | None"]
_HISTORY_SCHEMA = pa.schema([("server_id", pa.string()), ("metric", pa.string()),
                             ("ds", pa.timestamp("ns")), ("value", pa.float64())])
_STATE_SCHEMA = pa.schema([("server_id", pa.string()), ("metric", pa.string()), ("ds", pa.timestamp("ns")),
                           ("pattern", pa.list_(pa.float64())), ("diffs", pa.list_(pa.float64()))])
# What a refit may raise on data it does not accept (tampered or foreign history).
_FIT_ERRORS = (CapacityForecasterError, ValueError, TypeError, KeyError, ArithmeticError, RuntimeError,
               np.linalg.LinAlgError)


@dataclass(frozen=True)
class ArtifactRecord:
    """One stored artefact, as recorded in the run manifest.

    Attributes:
        path: lake-relative path of the JSON manifest.
        sha256: hex digest of its bytes.
        bytes: its size.
        model: registry name of the fitted model.
        metric: metric of its series.
        n_series: number of series it forecasts.
        data_path: lake-relative path of its Parquet data file (informative: the loader derives it).
        data_sha256: hex digest of the data file (informative: the loader checks the one inside the
            manifest, which ``sha256`` covers).
        data_bytes: size of the data file.
    """

    path: str
    sha256: str
    bytes: int
    model: str
    metric: str
    n_series: int
    data_path: str = ""
    data_sha256: str = ""
    data_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return asdict(self)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "_"


def data_path_of(path: str) -> str:
    """The data file beside a manifest (derived, never read from the manifest)."""
    if not path.endswith(".json"):
        raise ArtifactError(f"model artefact {path} is not a .json manifest; list the artefacts from the run manifest")
    return path[: -len(".json")] + ".parquet"


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return bool(np.isfinite(value))
    return isinstance(value, list) and all(_is_plain(v) and not isinstance(v, list) for v in value)


def constructor_params(obj: Any, name: str) -> dict[str, Any]:
    """The keyword arguments that rebuild ``obj`` (its constructor's parameters, read back as attributes).

    Raises:
        ArtifactError: a parameter is not kept as an attribute or is not a plain JSON value.
    """
    params: dict[str, Any] = {}
    for param in inspect.signature(type(obj)).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if not hasattr(obj, param.name):
            raise ArtifactError(f"model '{name}' does not keep its constructor parameter '{param.name}' as an "
                                "attribute; it cannot be saved as data")
        value = getattr(obj, param.name)
        value = list(value) if isinstance(value, tuple) else value
        value = value.item() if isinstance(value, np.generic) else value
        if not _is_plain(value):
            raise ArtifactError(f"model '{name}' parameter '{param.name}' = {value!r} is not a JSON scalar or list")
        params[param.name] = value
    return params


def panel_history(panel: Panel) -> pd.DataFrame:
    """The long history a panel was built from: every grid step of each series (NaN where missing).

    Returns:
        ``server_id, metric, ds, value``, sorted by series key then ``ds``; ``ds`` naive UTC.
    """
    n, width = panel.values.shape
    inside = np.arange(width)[None, :] >= (width - np.asarray(panel.length))[:, None]
    rows, cols = np.nonzero(inside)
    step = panel.step.astype("timedelta64[ns]")
    ds = panel.end[rows] - (width - 1 - cols).astype(np.int64) * step
    return pd.DataFrame({"server_id": np.asarray(panel.server_id, dtype=str)[rows],
                         "metric": np.asarray(panel.metric, dtype=str)[rows],
                         "ds": ds.astype("datetime64[ns]"), "value": panel.values[rows, cols]})


def _parquet(columns: dict[str, Any], schema: pa.Schema) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table(columns, schema=schema), sink, compression="zstd")
    return sink.getvalue()


def _encode(item: FittedModel) -> tuple[dict[str, Any], bytes]:
    """(manifest without the data checksum, data file bytes) of one fitted model."""
    obj = item.obj
    if isinstance(obj, BuiltinSeasonalNaive):
        # The engine's last-resort baseline keeps no panel: store its per-series state.
        state = obj._series  # noqa: SLF001 - the engine's own baseline, saved as plain arrays
        last = [pd.Timestamp(s[2]) for s in state]
        tz = next((str(t.tz) for t in last if t.tz is not None), None)
        data = _parquet({"server_id": [s[0] for s in state], "metric": [s[1] for s in state],
                         "ds": [t.tz_convert("UTC").tz_localize(None) if t.tz is not None else t for t in last],
                         "pattern": [np.asarray(s[3], dtype=float) for s in state],
                         "diffs": [np.asarray(s[4], dtype=float) for s in state]}, _STATE_SCHEMA)
        return {"form": BASELINE_STATE, "params": {}, "freq": obj._freq, "tz": tz}, data  # noqa: SLF001
    if item.model not in available_models():
        raise ArtifactError(f"fitted model '{item.model}' is not a registered model; it cannot be saved")
    panel = getattr(obj, "_panel", None)
    if not isinstance(panel, Panel):
        raise ArtifactError(f"fitted model '{item.model}' for metric '{item.metric}' keeps no training panel "
                            "('_panel'); it cannot be saved as data")
    params = constructor_params(obj, item.model)
    if type(get_model(item.model, **params)) is not type(obj):
        raise ArtifactError(f"fitted model '{item.model}' is a {type(obj).__name__}, not the registered class")
    hist = panel_history(panel)
    data = _parquet({c: hist[c].to_numpy() for c in _HISTORY_SCHEMA.names}, _HISTORY_SCHEMA)
    return {"form": REFIT, "params": params, "freq": panel.freq, "tz": panel.tz}, data


def save_models(fitted: Iterable[FittedModel], write: Writer, prefix: str = MODELS_PREFIX,
                counters: dict[tuple[str, str], int] | None = None) -> list[ArtifactRecord]:
    """Store every fitted model as ``<prefix>/<model>/<metric>-<n>.json`` + ``.parquet`` (data only).

    Args:
        fitted: the fitted models (``ForecastResult.fitted``), in a deterministic order.
        write: stores bytes at a lake-relative path.
        prefix: folder under the lake root.
        counters: files numbered so far per (model, metric), updated in place: pass the same dict
            to save a fleet's models chunk by chunk without reusing a name.

    Returns:
        One record per artefact, in input order.

    Raises:
        ArtifactError: a model cannot be expressed as parameters + training data (naming it).
    """
    records: list[ArtifactRecord] = []
    counters = {} if counters is None else counters
    for item in fitted:
        key = (item.model, item.metric)
        counters[key] = counters.get(key, 0) + 1
        path = f"{prefix}/{_slug(item.model)}/{_slug(item.metric)}-{counters[key]:04d}.json"
        head, data = _encode(item)
        manifest = {"format": FORMAT, "version": FORMAT_VERSION, "model": item.model, **head,
                    "metric": item.metric, "series": [list(s) for s in item.series],
                    "cutoff": pd.Timestamp(item.cutoff).isoformat(),
                    "data": {"sha256": sha256_hex(data), "bytes": len(data)}}
        text = json.dumps(manifest, indent=1, sort_keys=True).encode()
        data_path = data_path_of(path)
        write(data_path, data)
        write(path, text)
        records.append(ArtifactRecord(path, sha256_hex(text), len(text), item.model, item.metric, len(item.series),
                                      data_path, sha256_hex(data), len(data)))
    return records


def _verified(path: str, sha256: str, read: Reader) -> bytes:
    data = read(path)
    if data is None:
        raise ArtifactError(f"model artefact {path} does not exist; re-run 'capfc forecast' to rebuild models/")
    digest = sha256_hex(data)
    if digest != str(sha256).lower():
        raise ArtifactError(f"model artefact {path} fails its checksum (expected sha256 {sha256}, found {digest}); "
                            "it was changed after it was written; re-run 'capfc forecast' to rebuild models/")
    return data


def _field(manifest: dict[str, Any], key: str, kind: type | tuple[type, ...], path: str) -> Any:
    value = manifest.get(key)
    if not isinstance(value, kind):
        raise ArtifactError(f"model artefact {path}: field '{key}' is missing or not a {kind}")
    return value


def _read_manifest(path: str, data: bytes) -> dict[str, Any]:
    """Parse and validate a manifest: only known names, plain parameters, known frequency."""
    try:
        manifest = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise ArtifactError(f"model artefact {path} is not valid JSON: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"model artefact {path} is not a '{FORMAT}' manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise ArtifactError(f"model artefact {path} has format version {manifest.get('version')!r}; this release "
                            f"reads version {FORMAT_VERSION}; re-run 'capfc forecast' to rebuild models/")
    name, form = _field(manifest, "model", str, path), _field(manifest, "form", str, path)
    known = available_models()
    if (form == BASELINE_STATE and name != BASELINE) or form not in (REFIT, BASELINE_STATE):
        raise ArtifactError(f"model artefact {path}: unknown form '{form}' for model '{name}'")
    if name not in known:
        raise ArtifactError(f"model artefact {path} names unknown model '{name}'; valid models: {', '.join(known)}")
    params = _field(manifest, "params", dict, path)
    bad = [k for k, v in params.items() if not _is_plain(v)]
    if bad:
        raise ArtifactError(f"model artefact {path}: parameter(s) {', '.join(bad)} are not JSON scalars or lists")
    if manifest.get("freq") not in FREQUENCIES:
        raise ArtifactError(f"model artefact {path}: freq {manifest.get('freq')!r} is not one of {FREQUENCIES}")
    if manifest.get("tz") is not None and not isinstance(manifest["tz"], str):
        raise ArtifactError(f"model artefact {path}: tz must be a string or null")
    series = _field(manifest, "series", list, path)
    if not all(isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s) for s in series):
        raise ArtifactError(f"model artefact {path}: series must be [server_id, metric] string pairs")
    _field(manifest, "metric", str, path)
    _field(manifest, "cutoff", str, path)
    _field(_field(manifest, "data", dict, path), "sha256", str, path)
    return manifest


def _read_table(path: str, data: bytes, schema: pa.Schema) -> pa.Table:
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as err:
        raise ArtifactError(f"model artefact {path} is not a readable Parquet file: {err}") from err
    if not table.schema.equals(schema):
        raise ArtifactError(f"model artefact {path} has columns {table.schema.names} of types "
                            f"{[str(t) for t in table.schema.types]}; expected {schema}")
    return table


def _refit(manifest: dict[str, Any], table: pa.Table, path: str) -> Any:
    history = pd.DataFrame({"server_id": table["server_id"].to_numpy(zero_copy_only=False).astype(str),
                            "metric": table["metric"].to_numpy(zero_copy_only=False).astype(str),
                            "ds": table["ds"].to_numpy(zero_copy_only=False).astype("datetime64[ns]"),
                            "value": table["value"].to_numpy(zero_copy_only=False).astype(float)})
    try:
        if manifest["tz"] is not None:
            history["ds"] = history["ds"].dt.tz_localize("UTC").dt.tz_convert(manifest["tz"])
        model = get_model(manifest["model"], **manifest["params"])
    except _FIT_ERRORS as err:
        raise ArtifactError(f"model artefact {path}: model '{manifest['model']}' refuses its stored parameters or "
                            f"time zone: {err}") from err
    try:
        return model.fit(history, freq=manifest["freq"])
    except _FIT_ERRORS as err:
        raise ArtifactError(f"model artefact {path}: re-fitting '{manifest['model']}' on its stored history failed: "
                            f"{type(err).__name__}: {err}") from err


def _baseline(manifest: dict[str, Any], table: pa.Table, path: str) -> BuiltinSeasonalNaive:
    season = NAIVE_SEASON[manifest["freq"]]
    rows = table.to_pylist()
    if any(len(r["pattern"] or ()) != season or r["ds"] is None or None in (r["pattern"] + (r["diffs"] or []))
           for r in rows):
        raise ArtifactError(f"model artefact {path}: baseline state must hold {season} pattern values per series")
    tz = manifest["tz"]
    try:
        last = [pd.Timestamp(r["ds"]) if tz is None else pd.Timestamp(r["ds"]).tz_localize("UTC").tz_convert(tz)
                for r in rows]
    except _FIT_ERRORS as err:
        raise ArtifactError(f"model artefact {path}: time zone {tz!r} is not valid: {err}") from err
    obj = BuiltinSeasonalNaive()
    obj._freq = manifest["freq"]  # noqa: SLF001 - restoring the engine's own baseline state
    obj._series = [(str(r["server_id"]), str(r["metric"]), t, np.asarray(r["pattern"], dtype=float),  # noqa: SLF001
                    np.asarray(r["diffs"] or [], dtype=float)) for r, t in zip(rows, last, strict=True)]
    return obj


def load_model(path: str, sha256: str, read: Reader) -> FittedModel:
    """Load one artefact: verify both checksums, validate the manifest, rebuild the model from data.

    Args:
        path: lake-relative path of the JSON manifest, from the record.
        sha256: the manifest's recorded hex digest.
        read: returns the bytes at a lake-relative path, or None when absent.

    Returns:
        The FittedModel (its ``obj`` re-fitted and ready to ``predict``).

    Raises:
        ArtifactError: a file is missing or fails its checksum, the manifest names an unknown model or
            holds non-plain parameters, the data file is not the expected Parquet table, the refit
            fails, or the re-fitted series differ from the manifest's.
    """
    data_path = data_path_of(path)
    manifest = _read_manifest(path, _verified(path, sha256, read))
    data = _verified(data_path, manifest["data"]["sha256"], read)
    series = tuple((s, m) for s, m in manifest["series"])
    if manifest["form"] == BASELINE_STATE:
        obj: Any = _baseline(manifest, _read_table(data_path, data, _STATE_SCHEMA), data_path)
        got = {(s[0], s[1]) for s in obj._series}  # noqa: SLF001
    else:
        obj = _refit(manifest, _read_table(data_path, data, _HISTORY_SCHEMA), data_path)
        panel = getattr(obj, "_panel", None)
        got = set(zip(panel.server_id, panel.metric, strict=True)) if isinstance(panel, Panel) else set()
        targets = getattr(obj, "targets", None)  # a global model's training-only series are not its forecasts
        if targets is not None:
            got = {key for key in got if key[0] in set(targets)}
    if got != set(series):
        raise ArtifactError(f"model artefact {path}: its data holds {len(got)} series that differ from the "
                            f"{len(series)} its manifest lists; re-run 'capfc forecast' to rebuild models/")
    try:
        cutoff = pd.Timestamp(manifest["cutoff"])
    except ValueError as err:
        raise ArtifactError(f"model artefact {path}: cutoff {manifest['cutoff']!r} is not a timestamp") from err
    return FittedModel(manifest["model"], manifest["metric"], series, cutoff, obj)


def load_models(records: Iterable[ArtifactRecord | dict[str, Any]], read: Reader) -> list[FittedModel]:
    """Load every artefact of a manifest (records or their dicts), verifying each checksum first."""
    out = []
    for record in records:
        rec = record if isinstance(record, ArtifactRecord) else ArtifactRecord(**record)
        out.append(load_model(rec.path, rec.sha256, read))
    return out
