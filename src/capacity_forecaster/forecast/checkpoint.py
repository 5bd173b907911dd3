"""Resumable forecast runs: each finished chunk of the backtest and final-fit passes kept in a local folder.

A SageMaker managed-spot job (``aws.training``) runs ``capfc forecast --checkpoint-dir
/opt/ml/checkpoints``; SageMaker copies that folder to S3 while the job runs and restores it when an
interrupted job restarts. The folder holds:

- ``progress.json``: the fingerprint of the run's inputs (metrics table version, a digest of the
  forecast configuration, a digest of the chunk plan, the package version, digests of external
  model inputs) and the chunks done in pass 1 (backtests) and pass 3 (final fits), with the
  counters needed to continue (work units, model-file numbering);
- ``points/``: pass 1's backtest points per chunk (the ``chunked.Spill``) and the bounds of pass 2;
- ``backtests/<i>/``: what pass 1 keeps of chunk ``i`` (per-series summaries, failed units);
- ``finals/<i>/``: pass 3's output tables of chunk ``i`` and its fitted models as data (``artifacts``).

Files are written before the progress record names them, and the record is replaced atomically, so
a kill at any moment leaves a consistent folder. A record whose fingerprint differs from the run's
(other inputs, other configuration, another version) is discarded with the reason logged, and the
run starts over. Every pass is deterministic, so a resumed run produces the rows an uninterrupted
one would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from capacity_forecaster import __version__
from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.errors import ConfigError, StorageError
from capacity_forecaster.forecast.engine import UnitResult

log = logging.getLogger(__name__)

PROGRESS = "progress.json"
FORMAT = "capfc-forecast-checkpoint"
FORMAT_VERSION = 1
_FOLDERS = ("points", "backtests", "finals")


def digest(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def fingerprint(metrics_version: str | None, cfg: ForecastConfig, chunks: list[list[str]],
                inputs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What a checkpoint must match to be resumed.

    Args:
        metrics_version: the ``metrics`` table version read.
        cfg: the forecast configuration (``checkpoint_dir`` aside).
        chunks: the server ids of each chunk, in order.
        inputs: input name -> digest of each external model input (``units.Inputs``).
    """
    return {"format": FORMAT, "version": FORMAT_VERSION, "capfc": __version__, "metrics_version": metrics_version,
            "config": digest(cfg.model_dump(mode="json", exclude={"checkpoint_dir"})),
            "chunks": digest(chunks), "n_chunks": len(chunks), "inputs": dict(sorted((inputs or {}).items()))}


def _write_frame(path: Path, frame: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, compression="lz4")


def _read_frame(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    return pq.read_table(path, columns=columns).to_pandas()


def _failed_json(results: list[UnitResult]) -> list[dict[str, Any]]:
    return [{"uid": r.uid, "model_name": r.model_name, "phase": r.phase,
             "cutoff": None if r.cutoff is None else pd.Timestamp(r.cutoff).isoformat(), "used": r.used,
             "errors": list(r.errors), "series": [list(s) for s in r.series]} for r in results]


def _failed_from(items: list[dict[str, Any]]) -> list[UnitResult]:
    return [UnitResult(int(d["uid"]), str(d["model_name"]), str(d["phase"]),
                       None if d["cutoff"] is None else pd.Timestamp(d["cutoff"]), None, d["used"], None,
                       tuple(d["errors"]), tuple((str(s), str(m)) for s, m in d["series"])) for d in items]


class Checkpoint:
    """A local checkpoint folder of one forecast run (see the module docstring); also its ``Spill``."""

    def __init__(self, folder: Path | str, run_fingerprint: dict[str, Any]) -> None:
        text = str(folder)
        if "://" in text:
            raise ConfigError(f"forecast.checkpoint_dir {text!r} must be a local folder (SageMaker copies "
                              "/opt/ml/checkpoints to S3 itself)")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StorageError(f"forecast.checkpoint_dir {text}: cannot create the folder ({err}); give a writable "
                               "local folder") from err
        self.fingerprint = run_fingerprint
        self.state: dict[str, Any] = {"backtests": {}, "finals": {}, "counters": {}}
        stored = self._read_progress()
        if stored is None:
            self._clear()
            log.info("forecast checkpoint %s: starting", self.folder)
        elif stored.get("fingerprint") != run_fingerprint:
            old = stored.get("fingerprint") or {}
            changed = sorted(k for k in {*old, *run_fingerprint} if old.get(k) != run_fingerprint.get(k))
            log.info("forecast checkpoint %s: inputs differ from the stored run (%s); starting over", self.folder,
                     ", ".join(changed) or "format")
            self._clear()
        else:
            self.state = {k: stored[k] for k in self.state}
            log.info("forecast checkpoint %s: resuming; %d backtest and %d final-fit chunk(s) of %d done",
                     self.folder, len(self.state["backtests"]), len(self.state["finals"]),
                     run_fingerprint.get("n_chunks", 0))

    def _read_progress(self) -> dict[str, Any] | None:
        path = self.folder / PROGRESS
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            log.info("forecast checkpoint %s: unreadable progress record (%s); starting over", self.folder, err)
            return {}
        return data if isinstance(data, dict) and all(k in data for k in self.state) else {}

    def _clear(self) -> None:
        """Remove this module's files from the folder (nothing else in it is touched)."""
        (self.folder / PROGRESS).unlink(missing_ok=True)
        for name in _FOLDERS:
            shutil.rmtree(self.folder / name, ignore_errors=True)
        self.state = {"backtests": {}, "finals": {}, "counters": {}}

    def _save(self) -> None:
        path = self.folder / PROGRESS
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, **self.state}, indent=1, sort_keys=True),
                       encoding="utf-8")
        os.replace(tmp, path)

    def finish(self) -> None:
        """The run's tables are committed: nothing is left to resume."""
        self._clear()

    # The Spill: backtest points (key >= 0) and their bounds (key < 0) per chunk.
    def put(self, key: int, frame: pd.DataFrame) -> None:
        _write_frame(self.folder / "points" / f"chunk-{key}.parquet", frame)

    def get(self, key: int, columns: list[str] | None = None) -> pd.DataFrame:
        return _read_frame(self.folder / "points" / f"chunk-{key}.parquet", columns)

    # Pass 1
    def backtest_done(self, i: int) -> bool:
        return str(i) in self.state["backtests"]

    def save_backtest(self, i: int, frames: dict[str, pd.DataFrame], failed: list[UnitResult], units: int) -> None:
        """Keep pass 1's summaries of chunk ``i`` (its points are already in ``points/``)."""
        folder = self.folder / "backtests" / str(i)
        for name, frame in frames.items():
            _write_frame(folder / f"{name}.parquet", frame)
        (folder / "failed.json").write_text(json.dumps(_failed_json(failed)), encoding="utf-8")
        self.state["backtests"][str(i)] = {"units": units, "tables": sorted(frames)}
        self._save()

    def load_backtest(self, i: int) -> tuple[dict[str, pd.DataFrame], list[UnitResult], int]:
        """Pass 1's summaries, failed units and work-unit count of chunk ``i``."""
        entry = self.state["backtests"][str(i)]
        folder = self.folder / "backtests" / str(i)
        frames = {name: _read_frame(folder / f"{name}.parquet") for name in entry["tables"]}
        failed = _failed_from(json.loads((folder / "failed.json").read_text(encoding="utf-8")))
        return frames, failed, int(entry["units"])

    # Pass 3
    def final_done(self, i: int) -> bool:
        return str(i) in self.state["finals"]

    def model_writer(self, i: int) -> Any:
        """``write(relpath, data)`` into chunk ``i``'s model folder (``artifacts.save_models``)."""
        folder = self.folder / "finals" / str(i) / "models"

        def write(relpath: str, data: bytes) -> None:
            path = folder / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

        return write

    def counters(self) -> dict[tuple[str, str], int]:
        """Model files numbered so far per (model, metric) (``artifacts.save_models``)."""
        return {tuple(k.split("\t", 1)): int(v) for k, v in self.state["counters"].items()}

    def save_final(self, i: int, frames: dict[str, pd.DataFrame], records: list[dict[str, Any]], units: int,
                   counters: dict[tuple[str, str], int]) -> None:
        """Keep pass 3's output tables of chunk ``i`` (its model files are already written)."""
        folder = self.folder / "finals" / str(i)
        for name, frame in frames.items():
            _write_frame(folder / f"{name}.parquet", frame)
        self.state["finals"][str(i)] = {"units": units, "tables": list(frames), "models": records}
        self.state["counters"] = {f"{m}\t{k}": n for (m, k), n in counters.items()}
        self._save()

    def load_final(self, i: int) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]], int]:
        """Pass 3's tables, model records (``ArtifactRecord.to_dict``) and work-unit count of chunk ``i``."""
        entry = self.state["finals"][str(i)]
        folder = self.folder / "finals" / str(i)
        return ({name: _read_frame(folder / f"{name}.parquet") for name in entry["tables"]}, entry["models"],
                int(entry["units"]))

    def model_bytes(self, i: int, relpath: str) -> bytes:
        """A model file of chunk ``i`` (a path of its records)."""
        return (self.folder / "finals" / str(i) / "models" / relpath).read_bytes()
