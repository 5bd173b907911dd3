"""Fitted-model artefacts: pickles under the lake's ``models/`` prefix, each with a sha256 checksum.

Unpickling runs code, so a pickle is only ever loaded after its bytes hash to the checksum that was
recorded when it was written (in the run manifest): a changed or truncated file is refused before
``pickle.loads`` sees it. The module gets ``write(relpath, data)`` / ``read(relpath) -> bytes | None``
callables (e.g. ``Lake.write_bytes`` / ``Lake.read_bytes``) and never touches storage itself.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from capacity_forecaster.errors import ArtifactError
from capacity_forecaster.forecast.engine import FittedModel

MODELS_PREFIX = "models"
Writer = Callable[[str, bytes], None]
Reader = Callable[[str], "bytes | None"]


@dataclass(frozen=True)
class ArtifactRecord:
    """One stored artefact, as recorded in the run manifest.

    Attributes:
        path: lake-relative path of the pickle.
        sha256: hex digest of its bytes.
        bytes: its size.
        model: registry name of the fitted model.
        metric: metric of its series.
        n_series: number of series it forecasts.
    """

    path: str
    sha256: str
    bytes: int
    model: str
    metric: str
    n_series: int

    def to_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return asdict(self)


def sha256_hex(data: bytes) -> str:
    """Hex sha256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text) or "_"


def save_models(fitted: Iterable[FittedModel], write: Writer, prefix: str = MODELS_PREFIX) -> list[ArtifactRecord]:
    """Pickle every fitted model to ``<prefix>/<model>/<metric>-<n>.pkl`` and record its checksum.

    Args:
        fitted: the fitted models (``ForecastResult.fitted``), in a deterministic order.
        write: stores bytes at a lake-relative path.
        prefix: folder under the lake root.

    Returns:
        One record per artefact, in input order.

    Raises:
        ArtifactError: a model object cannot be pickled (naming it).
    """
    records: list[ArtifactRecord] = []
    counters: dict[tuple[str, str], int] = {}
    for item in fitted:
        key = (item.model, item.metric)
        counters[key] = counters.get(key, 0) + 1
        path = f"{prefix}/{_slug(item.model)}/{_slug(item.metric)}-{counters[key]:04d}.pkl"
        try:
            data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as err:
            raise ArtifactError(f"fitted model '{item.model}' for metric '{item.metric}' cannot be pickled: "
                                f"{err}") from err
        write(path, data)
        records.append(ArtifactRecord(path, sha256_hex(data), len(data), item.model, item.metric,
                                      len(item.series)))
    return records


def load_model(path: str, sha256: str, read: Reader) -> FittedModel:
    """Load one artefact after checking its bytes against the recorded checksum.

    Args:
        path: lake-relative path from the record.
        sha256: the recorded hex digest.
        read: returns the bytes at a lake-relative path, or None when absent.

    Returns:
        The FittedModel (its ``obj`` is ready to ``predict``).

    Raises:
        ArtifactError: the artefact is missing, its checksum differs (it is never unpickled), or
            it does not hold a FittedModel.
    """
    data = read(path)
    if data is None:
        raise ArtifactError(f"model artefact {path} does not exist; re-run 'capfc forecast' to rebuild models/")
    digest = sha256_hex(data)
    if digest != sha256.lower():
        raise ArtifactError(
            f"model artefact {path} fails its checksum (expected sha256 {sha256}, found {digest}); it was "
            f"changed after it was written and is not loaded; re-run 'capfc forecast' to rebuild models/"
        )
    item = pickle.loads(data)  # noqa: S301 - bytes verified against the recorded sha256 above
    if not isinstance(item, FittedModel):
        raise ArtifactError(f"model artefact {path} holds {type(item).__name__}, expected a FittedModel")
    return item


def load_models(records: Iterable[ArtifactRecord | dict[str, Any]], read: Reader) -> list[FittedModel]:
    """Load every artefact of a manifest (records or their dicts), verifying each checksum first."""
    out = []
    for record in records:
        rec = record if isinstance(record, ArtifactRecord) else ArtifactRecord(**record)
        out.append(load_model(rec.path, rec.sha256, read))
    return out
