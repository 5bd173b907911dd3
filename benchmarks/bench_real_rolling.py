"""Real data at several forecast origins: the ``bench_real`` path repeated at rolling cutoffs.

``bench_real`` scores one split per set (Rnd: September; fastStorage: 4-10 September). With 14 and 50
VMs, one split is dominated by the two or three VMs that jump in it, so a change can look better or
worse by luck. Here each set is cut at several origins and every cut goes the whole user path again:
the raw export is cut before the origin (text lines of the Rnd CSVs, rows of the fastStorage
Parquet), ingested with the shipped mapping into a fresh lake, then the ETL, forecast and risk stages
run at the default configuration. Nothing after the origin reaches the ETL (no look-ahead through
imputation or anomaly detection).

Scored as in ``bench_real``: MAE and 80 % coverage against the raw daily P95 (clipped to [0, 100]) of
the target days, for ``auto`` and the reference models run through the same engine; breach recall and
precision (medium or above) against >= 3 (Rnd) or >= 2 (fastStorage) target days above 80, beside
the ">= 3 of the last 14 days above 80" rule. Numbers are pooled over every origin.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.bench_real import (
    FAST,
    REFERENCES,
    REPO,
    RND,
    THRESHOLD,
    _accuracy_rows,
    _cut_fast,
    _fast_truth,
    _flags,
    _rnd_truth,
    _score,
    _settings,
)
from benchmarks.harness import Result, timed
from capacity_forecaster.forecast.stage import run_forecast
from capacity_forecaster.stages.etl import etl_stage
from capacity_forecaster.stages.forecast import forecast_stage
from capacity_forecaster.stages.raw import ingest_stage
from capacity_forecaster.stages.risk import risk_stage
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)
MONTHS = ("2013-7", "2013-8", "2013-9")


@dataclass(frozen=True)
class Rolling:
    """One set at several origins: horizon, breach-truth days and the cutoffs (UTC midnights)."""

    name: str
    horizon: int
    breach_days: int
    cutoffs: tuple[str, ...]


SETS = (
    Rolling("rnd", 30, 3, ("2013-08-01", "2013-08-08", "2013-08-15", "2013-08-22", "2013-09-01")),
    Rolling("faststorage", 7, 2, ("2013-08-28", "2013-08-31", "2013-09-02", "2013-09-04")),
)


def _cut_rnd(cutoff: pd.Timestamp, folder: Path) -> list[str]:
    """The Rnd CSVs with only the lines before ``cutoff`` (text kept byte for byte); the month folders."""
    limit = int(cutoff.timestamp())
    folders = []
    for month in MONTHS:
        out = folder / month
        for path in sorted((RND / month).glob("*.csv")):
            header, *lines = path.read_text().splitlines(keepends=True)
            kept = [line for line in lines if line.strip() and int(line.split(";", 1)[0]) < limit]
            if kept:
                out.mkdir(parents=True, exist_ok=True)
                (out / path.name).write_text(header + "".join(kept))
        if out.is_dir():
            folders.append(str(out))
    return folders


def _origin(real: Rolling, cutoff: pd.Timestamp, truth: pd.DataFrame, scratch: Path) -> tuple[
        dict[str, pd.DataFrame], dict[str, np.ndarray]]:
    """One origin through the user path: scored forecasts per model and the flag counts."""
    lake_path = scratch / "lake"
    settings = _settings(lake_path, real.horizon)
    lake = Lake.open(str(lake_path), settings.lake, for_writing=True)
    if real.name == "rnd":
        sources, mapping = _cut_rnd(cutoff, scratch / "raw"), REPO / "mappings" / "bitbrains.yaml"
    else:
        sources, mapping = _cut_fast(cutoff, scratch / "raw"), REPO / "mappings" / "bitbrains_faststorage.yaml"
    ingest_stage(lake, settings, sources, str(mapping))
    etl_stage(lake, settings)
    forecast_stage(lake, settings)
    risk_stage(lake, settings)
    end = cutoff.tz_localize(None) + pd.Timedelta(days=real.horizon)
    target = truth[(truth["ds"] >= cutoff.tz_localize(None)) & (truth["ds"] < end)]
    scored = {"auto": _score(lake.read_table("forecasts"), target)}
    metrics = lake.read_table("metrics", columns=["server_id", "ds", "metric", "value", "is_imputed", "is_anomaly"])
    for name in REFERENCES:
        scored[name] = _score(run_forecast(metrics, settings.forecast.model_copy(update={"models": name})).forecasts,
                              target)
    flags = {key: np.array([recall * actual, precision * flagged, actual, flagged])
             for key, (recall, precision, actual, flagged) in _flags(lake, target, real.breach_days).items()}
    return scored, flags


def _rows(real: Rolling, scored: dict[str, pd.DataFrame], flags: dict[str, np.ndarray]) -> list[Result]:
    label = f"rolling {real.name} ({len(real.cutoffs)} origins)"
    rows = _accuracy_rows(real.name, scored, label, naive_target=1.0)
    (p_hits, p_prec, actual, p_flags), (r_hits, r_prec, _, r_flags) = flags["project"], flags["history rule"]
    recall, precision = p_hits / max(actual, 1), p_prec / max(p_flags, 1)
    rule_recall, rule_precision = r_hits / max(actual, 1), r_prec / max(r_flags, 1)
    note = (f"{int(actual)} true breaches over the origins; project flags {int(p_flags)}, rule flags {int(r_flags)}; "
            f"rule recall {rule_recall:.2f}, precision {rule_precision:.2f}")
    rows.append(Result(f"{label} breach recall (medium+)", float(recall), "share", ">= rule",
                       bool(recall >= rule_recall), note))
    rows.append(Result(f"{label} breach precision (medium+)", float(precision), "share", ">= rule",
                       bool(precision >= rule_precision)))
    return rows


def bench_real_rolling() -> list[Result]:
    """Both Bitbrains sets at rolling origins through the user path: MAE, coverage, breach flags."""
    if not RND.is_dir() or not FAST.is_dir():
        return [Result("real data (rolling)", float("nan"), "", "info", False, "no shared data")]
    logging.getLogger("cmdstanpy").disabled = True
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    rows: list[Result] = []
    with timed() as clock:
        for real in SETS:
            truth = _rnd_truth(MONTHS) if real.name == "rnd" else _fast_truth()
            scored: dict[str, list[pd.DataFrame]] = {}
            flags: dict[str, np.ndarray] = {"project": np.zeros(4), "history rule": np.zeros(4)}
            for day in real.cutoffs:
                with tempfile.TemporaryDirectory() as scratch:
                    origin_scored, origin_flags = _origin(real, pd.Timestamp(day, tz="UTC"), truth, Path(scratch))
                for name, frame in origin_scored.items():
                    scored.setdefault(name, []).append(frame)
                for key, counts in origin_flags.items():
                    flags[key] = flags[key] + counts
            rows += _rows(real, {name: pd.concat(frames, ignore_index=True) for name, frames in scored.items()},
                          flags)
    rows.append(Result("bench_real_rolling wall time", clock.seconds, "s", "info", True,
                       f"threshold {THRESHOLD:g}; every origin ingested and run at default config"))
    return rows


BENCHMARKS = [bench_real_rolling]
