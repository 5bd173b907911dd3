"""Real monitoring data end to end at default settings: the two Bitbrains sets in ``../shared/data/real``.

Each set goes through the path a user takes: ``capfc ingest`` with the shipped mapping into a fresh
local lake, then the ETL, forecast and risk stages at the default configuration (only the horizon is
set, as ``capfc forecast --horizon`` would).

- Rnd (14 VMs, cpu + memory): ingest July and August, forecast September (h = 30).
- fastStorage (50 VMs, cpu): ingest the samples before 2013-09-04 (a copy of ``trace.parquet``
  cut there, as an export up to that day would be), forecast 2013-09-04..09-10 (h = 7).

Truth is computed here, independently of the product: the daily P95 of the raw samples on each target
day (a fastStorage row stands for ``duration / 5 min`` samples ending at its time; rows with 0 vCPU are
no sample), days with under half their samples left out; MAE and interval coverage compare forecasts
with the truth clipped to [0, 100].
Reference models (seasonal naive, Prophet with defaults, StatsForecast AutoETS and MSTL) forecast
the same processed metrics through the same engine and calibration (``--models NAME``). The
product is also run at the default horizon (180 days, as ``capfc run`` without ``--horizon``) and
scored on the same target days: asking for a longer horizon must not make those days' intervals
dishonest.

Breach truth: a target daily P95 above 80 on >= 3 days (Rnd) or >= 2 days (fastStorage). The
product flags a series when its ``risk_level`` is medium or above; the history rule flags it when
>= 3 of its last 14 observed days are above 80.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from benchmarks.harness import Result, timed
from capacity_forecaster.config import Settings, load_settings
from capacity_forecaster.etl.mapping import load_mapping
from capacity_forecaster.forecast.stage import run_forecast
from capacity_forecaster.stages.etl import etl_stage
from capacity_forecaster.stages.forecast import forecast_stage
from capacity_forecaster.stages.raw import ingest_stage
from capacity_forecaster.stages.risk import risk_stage
from capacity_forecaster.storage.lake import Lake

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
REAL = REPO / ".." / "shared" / "data" / "real"
RND = REAL / "bitbrains_rnd" / "rnd"
FAST = REAL / "bitbrains_faststorage"
REFERENCES = ("seasonal_naive", "prophet", "autoets", "mstl")
THRESHOLD = 80.0
FLAG_LEVELS = ("medium", "high", "critical")
SAMPLE_SECONDS = 300
FAST_SPLIT = pd.Timestamp("2013-09-04", tz="UTC")
DEFAULT_HORIZON = load_settings(None, {}, environ={}).forecast.horizon  # what a user gets without --horizon
HISTORY_RULE = (3, 14)  # >= 3 of the last 14 observed days above the threshold


@dataclass(frozen=True)
class RealSet:
    """One real data set: its name, forecast horizon and breach-truth rule (days over the threshold)."""

    name: str
    horizon: int
    breach_days: int


def _settings(lake: Path, horizon: int) -> Settings:
    return load_settings(None, {"lake.uri": str(lake), "forecast.horizon": horizon}, environ={})


def _daily_p95(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Daily P95 per (server_id, metric, ds) of sample rows; days with under half a day of samples dropped."""
    grouped = frame.groupby(["server_id", "metric", "ds"])[value]
    out = grouped.quantile(0.95).rename("truth").to_frame()
    out["samples"] = grouped.size()
    out = out[out["samples"] >= 0.5 * 86_400 / SAMPLE_SECONDS].reset_index()
    return out[["server_id", "metric", "ds", "truth"]]


def _rnd_truth(months: tuple[str, ...] = ("2013-9",)) -> pd.DataFrame:
    """Daily P95 of the raw Rnd samples in the given month folders (cpu %, memory used / provisioned)."""
    frames = []
    for path in (p for month in months for p in sorted((RND / month).glob("*.csv"))):
        raw = pd.read_csv(path, sep=";", skipinitialspace=True)
        raw.columns = [c.strip() for c in raw.columns]
        ds = pd.to_datetime(raw["Timestamp [ms]"], unit="s").dt.floor("D")
        server = f"bitbrains-{path.stem}"
        cpu = raw["CPU capacity provisioned [MHZ]"] > 0
        mem = raw["Memory capacity provisioned [KB]"] > 0
        frames.append(pd.DataFrame({"server_id": server, "metric": "cpu", "ds": ds[cpu],
                                    "value": raw.loc[cpu, "CPU usage [%]"]}))
        frames.append(pd.DataFrame({"server_id": server, "metric": "memory", "ds": ds[mem],
                                    "value": raw.loc[mem, "Memory usage [KB]"]
                                    / raw.loc[mem, "Memory capacity provisioned [KB]"] * 100.0}))
    return _daily_p95(pd.concat(frames, ignore_index=True), "value")


def _fast_trace() -> pd.DataFrame:
    """The fastStorage samples: each row expanded to its ``duration / 5 min`` samples, the last at its time
    (OpenDC's duration is the time since the previous sample), rows with 0 vCPU (a stopped VM) left out."""
    trace = pd.read_parquet(FAST / "trace.parquet")
    meta = pd.read_parquet(FAST / "meta.parquet")
    trace = trace[trace["cpu_count"] > 0].merge(meta[["id", "cpu_capacity"]], on="id")
    stamps = trace["timestamp"]
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    weight = np.maximum(np.rint(trace["duration"].to_numpy() / (SAMPLE_SECONDS * 1000)), 1).astype(np.int64)
    rows = np.repeat(np.arange(len(trace)), weight)
    before = np.arange(len(rows)) - np.repeat(np.cumsum(weight) - 1, weight)  # -(w - 1) .. 0 within each run
    return pd.DataFrame({"server_id": trace["id"].astype(str).to_numpy()[rows], "metric": "cpu",
                         "ts": stamps.to_numpy()[rows] + before * np.timedelta64(SAMPLE_SECONDS, "s"),
                         "value": (trace["cpu_usage"] / trace["cpu_capacity"] * 100.0).to_numpy()[rows]})


def _ingest_rnd(lake: Lake, settings: Settings) -> pd.DataFrame:
    ingest_stage(lake, settings, [str(RND / "2013-7"), str(RND / "2013-8")], str(REPO / "mappings" / "bitbrains.yaml"))
    return _rnd_truth()


def _cut_fast(cutoff: pd.Timestamp, folder: Path) -> list[str]:
    """The fastStorage export as it would be up to ``cutoff``: trace rows whose run ends before it, a run
    that crosses it ending at its last sample before it (a row stands for ``duration`` of 5-minute
    samples up to its time), meta whole."""
    table = pq.read_table(FAST / "trace.parquet")
    step = SAMPLE_SECONDS * 1000
    end = pc.cast(table.column("timestamp"), pa.int64()).to_numpy()
    samples = np.maximum(np.rint(table.column("duration").to_numpy() / step), 1).astype(np.int64)
    after = np.clip(-((cutoff.value // 1_000_000 - end) // step), 0, samples)  # samples at or after the cutoff
    keep = after < samples
    stamps = pa.array(end - after * step, pa.int64()).cast(table.schema.field("timestamp").type)
    table = table.set_column(table.schema.get_field_index("timestamp"), "timestamp", stamps)
    duration = np.where(after > 0, (samples - after) * step, table.column("duration").to_numpy())
    table = table.set_column(table.schema.get_field_index("duration"), "duration", pa.array(duration, pa.int64()))
    table = table.filter(pa.array(keep))
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / "trace.parquet")
    pq.write_table(pq.read_table(FAST / "meta.parquet"), folder / "meta.parquet")
    return [str(folder / "trace.parquet")]


def _ingest_fast(lake: Lake, settings: Settings, scratch: Path) -> pd.DataFrame:
    mapping = REPO / "mappings" / "bitbrains_faststorage.yaml"
    ingest_stage(lake, settings, _cut_fast(FAST_SPLIT, scratch / "faststorage"), str(mapping))
    truth = _fast_truth()
    return truth[(truth["ds"] >= FAST_SPLIT.tz_localize(None)) & (truth["ds"] <= pd.Timestamp("2013-09-10"))]


def _fast_truth() -> pd.DataFrame:
    """Daily P95 of every fastStorage day (a row stands for ``duration / 5 min`` samples), ids as ingested."""
    trace = _fast_trace()
    trace["ds"] = trace["ts"].dt.floor("D")
    truth = _daily_p95(trace, "value")
    truth["server_id"] = load_mapping(REPO / "mappings" / "bitbrains_faststorage.yaml").server_id.prefix \
        + truth["server_id"]
    return truth


def _score(forecasts: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    joined = forecasts.assign(ds=pd.to_datetime(forecasts["ds"])).merge(truth, on=["server_id", "metric", "ds"])
    y = joined["truth"].clip(0.0, 100.0)
    joined["ae"] = (joined["yhat"] - y).abs()
    joined["inside"] = (joined["yhat_lower"] <= y) & (y <= joined["yhat_upper"])
    return joined


def _flags(lake: Lake, truth: pd.DataFrame, breach_days: int) -> dict[str, tuple[float, float, int, int]]:
    """Recall, precision, true breaches and flags, for the product and the history rule."""
    risk = lake.read_table("server_risk")
    metrics = lake.read_table("metrics")
    days_over = truth.assign(over=truth["truth"] > THRESHOLD).groupby(["server_id", "metric"])["over"].sum()
    actual = days_over >= breach_days
    product = risk.set_index(["server_id", "metric"])["risk_level"].isin(FLAG_LEVELS)
    observed = metrics[~metrics["is_imputed"].astype(bool) & metrics["value"].notna()].sort_values("ds")
    last = observed.groupby(["server_id", "metric"]).tail(HISTORY_RULE[1])
    rule = last.assign(over=last["value"] > THRESHOLD).groupby(["server_id", "metric"])["over"].sum() >= HISTORY_RULE[0]
    out = {}
    for name, flagged in (("project", product), ("history rule", rule)):
        flagged = flagged.reindex(actual.index, fill_value=False)
        hits = int((flagged & actual).sum())
        out[name] = (hits / max(int(actual.sum()), 1), hits / max(int(flagged.sum()), 1),
                     int(actual.sum()), int(flagged.sum()))
    return out


def _missed(lake: Lake, truth: pd.DataFrame, breach_days: int) -> list[str]:
    """The true breaches the product did not flag, each with what its history showed (max, days over)."""
    risk = lake.read_table("server_risk").set_index(["server_id", "metric"])["risk_level"]
    days_over = truth.assign(over=truth["truth"] > THRESHOLD).groupby(["server_id", "metric"])["over"].sum()
    missed = [key for key in days_over[days_over >= breach_days].index
              if key not in risk.index or risk[key] not in FLAG_LEVELS]
    if not missed:
        return []
    metrics = lake.read_table("metrics", columns=["server_id", "metric", "value", "is_imputed"])
    known = metrics[~metrics["is_imputed"].astype(bool) & metrics["value"].notna()]
    history = known.assign(over=known["value"] > THRESHOLD).groupby(["server_id", "metric"]).agg(
        peak=("value", "max"), over=("over", "sum"), days=("value", "size"))
    parts = []
    for key in sorted(missed):
        seen = history.loc[key] if key in history.index else None
        said = "no history" if seen is None else \
            f"history max {seen['peak']:.0f} %, over {THRESHOLD:g} on {int(seen['over'])} of {int(seen['days'])} days"
        parts.append(f"{key[0]} {key[1]} ({said}; {int(days_over[key])} target days over)")
    return parts


def _run_set(real: RealSet) -> tuple[list[Result], dict[str, pd.DataFrame], dict[str, tuple[float, float, int, int]]]:
    rows: list[Result] = []
    with tempfile.TemporaryDirectory() as scratch, timed() as clock:
        path = Path(scratch) / "lake"
        settings = _settings(path, real.horizon)
        lake = Lake.open(str(path), settings.lake, for_writing=True)
        truth = _ingest_rnd(lake, settings) if real.name == "rnd" else _ingest_fast(lake, settings, Path(scratch))
        etl_stage(lake, settings)
        forecast_stage(lake, settings)
        risk_stage(lake, settings)
        scored = {"auto": _score(lake.read_table("forecasts"), truth)}
        chosen = lake.read_table("forecasts").drop_duplicates(["server_id", "metric"])["model"].value_counts()
        metrics = lake.read_table("metrics", columns=["server_id", "ds", "metric", "value", "is_imputed", "is_anomaly"])
        for name in REFERENCES:
            result = run_forecast(metrics, settings.forecast.model_copy(update={"models": name}))
            scored[name] = _score(result.forecasts, truth)
        default = _settings(path, DEFAULT_HORIZON).forecast
        at_default = _score(run_forecast(metrics, default).forecasts, truth)
        flags = _flags(lake, truth, real.breach_days)
        missed = _missed(lake, truth, real.breach_days)
    rows.append(Result(f"real {real.name}: stages at default config", clock.seconds, "s", "info", True,
                       f"published {chosen.to_dict()}; {truth[['server_id', 'metric']].drop_duplicates().shape[0]} "
                       "series with truth"))
    coverage, mae = float(at_default["inside"].mean()), float(at_default["ae"].mean())
    rows.append(Result(f"real {real.name} 80% coverage at the default horizon", coverage, "share", "0.75-0.85",
                       bool(0.75 <= coverage <= 0.85),
                       f"forecast.horizon {DEFAULT_HORIZON} (not {real.horizon}), scored on the same "
                       f"{real.horizon} target days: coverage {float(scored['auto']['inside'].mean()):.3f} at "
                       f"{real.horizon}; MAE {mae:.3f} vs {float(scored['auto']['ae'].mean()):.3f}"))
    rows.append(Result(f"real {real.name} breaches not flagged", float(len(missed)), "series", "info", True,
                       " | ".join(missed) or "none"))
    return rows, scored, flags


def _accuracy_rows(name: str, scored: dict[str, pd.DataFrame], label: str | None = None,
                   naive_target: float | None = None) -> list[Result]:
    """MAE per metric against every reference, auto / seasonal naive, and 80 % coverage.

    ``label`` prefixes the rows (default ``real <name>``); ``naive_target`` is the ratio to seasonal
    naive every metric must reach (default: the issue's 0.85 for Rnd cpu, else 1).
    """
    label = label or f"real {name}"
    rows = []
    auto = scored["auto"]
    for metric in sorted(auto["metric"].unique()):
        mae = {m: float(s.loc[s["metric"] == metric, "ae"].mean()) for m, s in scored.items()}
        cover = {m: float(s.loc[s["metric"] == metric, "inside"].mean()) for m, s in scored.items()}
        others = ", ".join(f"{m} {mae[m]:.2f} ({cover[m]:.2f})" for m in REFERENCES)
        if name == "faststorage" and naive_target is None:
            others += "; models needing 28 days fall back to seasonal naive on these 3-week histories"
        beats = all(mae["auto"] < mae[m] for m in REFERENCES)
        rows.append(Result(f"{label} {metric} MAE auto", mae["auto"], "pp", "< every reference", beats,
                           f"80% coverage {cover['auto']:.2f}; references MAE (coverage): {others}"))
        ratio = float(mae["auto"] / mae["seasonal_naive"])
        target = naive_target if naive_target is not None else 0.85 if (name, metric) == ("rnd", "cpu") else 1.0
        rows.append(Result(f"{label} {metric} MAE auto / seasonal naive", ratio, "ratio",
                           f"<= {target:g}", bool(ratio <= target)))
    coverage = float(auto["inside"].mean())
    rows.append(Result(f"{label} 80% interval coverage (auto)", coverage, "share", "0.75-0.85",
                       bool(0.75 <= coverage <= 0.85), f"{len(auto)} scored series-days"))
    return rows


def _flag_rows(name: str, flags: dict[str, tuple[float, float, int, int]]) -> list[Result]:
    project, rule = flags["project"], flags["history rule"]
    note = (f"{project[2]} true breaches; project flags {project[3]}, rule flags {rule[3]}; "
            f"rule recall {rule[0]:.2f}, precision {rule[1]:.2f}")
    return [
        Result(f"real {name} breach recall (medium+)", project[0], "share", ">= rule", bool(project[0] >= rule[0]),
               note),
        Result(f"real {name} breach precision (medium+)", project[1], "share", ">= rule",
               bool(project[1] >= rule[1])),
    ]


def bench_real() -> list[Result]:
    """Both Bitbrains sets at default config: MAE vs references, coverage, breach recall/precision."""
    if not RND.is_dir() or not FAST.is_dir():
        return [Result("real data", float("nan"), "", "info", False, f"no data under {REAL}")]
    logging.getLogger("cmdstanpy").disabled = True
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    rows: list[Result] = []
    pooled = {"project": np.zeros(4), "history rule": np.zeros(4)}
    with timed() as clock:
        for real in (RealSet("rnd", 30, 3), RealSet("faststorage", 7, 2)):
            run_rows, scored, flags = _run_set(real)
            rows += run_rows + _accuracy_rows(real.name, scored) + _flag_rows(real.name, flags)
            for key, (recall, precision, actual, flagged) in flags.items():
                pooled[key] += np.array([recall * actual, precision * flagged, actual, flagged])
    for key, (hits_r, hits_p, actual, flagged) in pooled.items():
        recall, precision = float(hits_r / max(actual, 1)), float(hits_p / max(flagged, 1))
        if key == "project":
            rows.append(Result("real pooled breach recall (medium+)", recall, "share", ">= 0.95", bool(recall >= 0.95),
                               f"{int(actual)} true breaches, {int(flagged)} flags"))
            rows.append(Result("real pooled breach precision (medium+)", precision, "share", ">= 0.85",
                               bool(precision >= 0.85)))
        else:
            rows.append(Result("real pooled history rule recall / precision", recall, "share", "info", True,
                               f"precision {precision:.2f}"))
    rows.append(Result("bench_real wall time", clock.seconds, "s", "<= 180", clock.seconds <= 180))
    return rows


BENCHMARKS = [bench_real]
