"""The forecast stage as one pure function: processed metrics in, forecasts + backtests + artefacts out.

Order of work, per chunk of series (``chunked``): prepare a regular grid -> triage every series ->
backtest every model at every cutoff (units fanned out by ``engine``) -> the ensemble's backtest;
then over the fleet: per-series selection and the pooled conformal calibration; then per chunk:
honest backtest intervals and scores -> final fits of the chosen models (and ensemble members) only
-> calibrated forecasts. The published model's backtest forecasts are kept (``backtest_forecasts``)
with the leave-one-window-out intervals they were scored with. This module holds the per-chunk
steps; ``run_forecast`` runs them over an in-memory frame.

Progress is reported per named phase (``PHASES``), each with a total known when the phase starts:
``backtests`` and ``final fits`` count series (advanced as a chunk's work units finish),
``scoring`` counts passes over the chunks; the stage adds ``writing`` (tables).

The baseline is always backtested (it is the fallback, so its intervals must be calibrated too),
but it is a candidate only when it is in the model set (always for ``auto``). ``selected`` in the
backtests marks the model whose forecast was published: the chosen one, or the baseline where the
chosen model's final fit failed (that failure is in ``failures`` with stage ``final``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast import backtest as bt
from capacity_forecaster.forecast.engine import (
    BASELINE,
    FittedModel,
    Progress,
    UnitResult,
)
from capacity_forecaster.forecast.intervals import (
    BUCKET_WIDTH_UNIT,
    MIN_BUCKET_STEPS,
    MIN_RESIDUALS,
    apply_bounds,
    calibrate,
    conformal_quantile,
    horizon_bucket,
)
from capacity_forecaster.forecast.metrics import score, seasonal_scale
from capacity_forecaster.forecast.registry import available_models, get_model
from capacity_forecaster.forecast.runs import lookup
from capacity_forecaster.forecast.selection import (
    ENSEMBLE,
    choose,
    combine,
    ensemble_backtest,
    rank_models,
    top_members,
)
from capacity_forecaster.forecast.units import Inputs, make_model
from capacity_forecaster.schema import (
    BACKTEST_FORECAST_COLUMNS,
    DS,
    FORECAST_COLUMNS,
    METRIC,
    RAW_METRIC_COLUMNS,
    SERIES_KEY,
    SERVER_ID,
    VALUE,
    require_columns,
)

log = logging.getLogger(__name__)

FAILURE_COLUMNS = ("server_id", "metric", "model", "stage", "cutoff", "error", "fallback")
BACKTEST_EXTRA = ("smape", "n_points", "window")
# The baseline of a series too short for models (``backtest.triage``) or for any complete backtest,
# when the model set has it: the median of its last week. Without a backtest nothing shows that a
# weekly profile exists; a few weeks of days barely define one, and seasonal naive would copy one
# noisy week, or one day (a new server's boot or migration spike), into every week of the horizon.
SHORT_BASELINE = "recent_level"
# Forecast column: the step lies beyond the lead the series' backtests validated.
EXTRAPOLATION = "is_extrapolation"
# The phases reported to ``progress`` in order (``stages.forecast`` adds the last one, writing).
PHASES = ("backtests", "scoring", "final fits", "writing")
_SERIES = list(SERIES_KEY)
_PRED = ["yhat", "yhat_lower", "yhat_upper"]


@dataclass(frozen=True)
class ForecastResult:
    """Everything the forecast stage produces.

    Attributes:
        forecasts: ``FORECAST_COLUMNS`` + ``is_extrapolation``: one row per series per horizon step,
            chosen model only; ``is_extrapolation`` marks steps beyond the lead its backtests validated.
        backtests: ``BACKTEST_COLUMNS`` + ``smape, n_points, window``: one row per series, model
            and cutoff; ``selected`` marks the chosen model's rows.
        failures: ``server_id, metric, model, stage, cutoff, error, fallback``: one row per series
            of every failed unit (``stage`` backtest or final; ``fallback`` = the model used instead).
        triage: ``server_id, metric, n_obs, first_ds, last_ds, status, reason``.
        fitted: final fitted models, to persist with ``artifacts.save_models``.
        summary: counts, models chosen, backtest error and coverage per metric, seconds.
        backtest_forecasts: ``BACKTEST_FORECAST_COLUMNS``: the published model's forecast at every
            backtest cutoff of its series, the actual ``y`` and the interval calibrated on the other
            windows (``backtest.published_paths``).
    """

    forecasts: pd.DataFrame
    backtests: pd.DataFrame
    failures: pd.DataFrame
    triage: pd.DataFrame
    fitted: list[FittedModel] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    backtest_forecasts: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=list(BACKTEST_FORECAST_COLUMNS)))


# helper-60: after an ETL of an empty raw_metrics the message said "run 'capfc etl' first", which had just run.
NO_ROWS = ("metrics: the processed metrics have no rows to forecast (an ETL of raw metrics without rows?); ingest "
           "an export with data rows, then run 'capfc etl'")


def resolve_models(spec: str, freq: str = "D") -> list[str]:
    """Model names of ``auto`` or a comma-separated list, validated, in declared order.

    ``auto`` is the baseline, every registered model that supports ``freq`` (optional class
    attribute ``freqs``) and does not opt out (optional class attribute ``auto = False``, for very
    slow models), then the ensemble.

    Raises:
        ForecastError: an unknown name (listing the valid ones) or a model that cannot handle ``freq``.
    """
    registered = available_models()

    def supports(name: str) -> bool:
        return name == ENSEMBLE or freq in getattr(make_model(name), "freqs", ("D", "h"))

    if spec.strip() == "auto":
        others = [n for n in registered if n != BASELINE and supports(n) and getattr(get_model(n), "auto", True)]
        return [BASELINE, *others, ENSEMBLE]
    names = list(dict.fromkeys(n.strip() for n in spec.split(",") if n.strip()))
    valid = {BASELINE, ENSEMBLE, *registered}
    for name in names:
        if name not in valid:
            raise ForecastError(f"forecast.models: unknown model '{name}'; valid: auto or a comma-separated list of "
                                f"{', '.join(sorted(valid))}")
        if not supports(name):
            raise ForecastError(f"forecast.models: model '{name}' does not support forecast.freq '{freq}'")
    if not names:
        raise ForecastError("forecast.models is empty; use 'auto' or a comma-separated list of model names")
    return names


def failures(results: list[UnitResult], used: pd.DataFrame) -> pd.DataFrame:
    """One row per series of every failed unit; a backtest failure's fallback is the model finally used."""
    rows = [(s, m, r.model_name, r.phase, r.cutoff, "; ".join(r.errors), r.used or "none")
            for r in results if r.errors for s, m in r.series]
    out = pd.DataFrame(rows, columns=list(FAILURE_COLUMNS))
    out = out.merge(used.rename(columns={"model": "_used"}), on=_SERIES, how="left")
    is_bt = (out["stage"] == "backtest").to_numpy()
    out.loc[is_bt, "fallback"] = out.loc[is_bt, "_used"].fillna("none")
    return out.drop(columns="_used").sort_values([*_SERIES, "model", "stage"], kind="mergesort").reset_index(drop=True)


def predictions(results: list[UnitResult]) -> pd.DataFrame:
    """Every unit's predictions with ``model`` (used), ``requested`` and ``cutoff`` columns, in unit order."""
    done = [r for r in results if r.predictions is not None]
    if not done:
        return pd.DataFrame({**{c: pd.Series(dtype=object) for c in (*_SERIES, "model", "requested")},
                             DS: pd.Series(dtype="datetime64[ns]"), "cutoff": pd.Series(dtype="datetime64[ns]"),
                             **{c: pd.Series(dtype=float) for c in _PRED}})
    frames: list[pd.DataFrame] = [r.predictions for r in done]  # type: ignore[misc]
    added = ("model", "requested", "cutoff")
    cutoffs = [r.cutoff for r in done]
    same = all(list(f.columns) == list(frames[0].columns) and len(f) for f in frames) and not any(
        c in frames[0].columns for c in added)
    stamps = all(isinstance(c, pd.Timestamp) and c.tz is None and c.unit == "ns" for c in cutoffs)
    if not (same and (stamps or all(c is None for c in cutoffs))):
        return pd.concat([f.assign(model=r.used, requested=r.model_name, cutoff=r.cutoff)
                          for f, r in zip(frames, done, strict=True)], ignore_index=True)
    # What assigning the three scalars to every frame gives, without copying each frame first.
    out = pd.concat(frames, ignore_index=True)
    sizes = [len(f) for f in frames]
    out["model"] = np.repeat(np.array([r.used for r in done], dtype=object), sizes)
    out["requested"] = np.repeat(np.array([r.model_name for r in done], dtype=object), sizes)
    stamped = np.array([c.to_datetime64() for c in cutoffs if c is not None], dtype="datetime64[ns]")
    out["cutoff"] = np.repeat(stamped, sizes) if stamps else np.full(len(out), None, dtype=object)
    return out


def _with_plan(preds: pd.DataFrame, plan: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``preds.merge(plan[[*series, "cutoff", *columns]], on=[*series, "cutoff"])``, looked up run by run.

    Predictions come in runs of one series and cutoff (``runs.lookup``): the same rows in the same
    order as the inner join, without hashing every row's keys.
    """
    at = lookup(preds, plan, [*_SERIES, "cutoff"])
    keep = at >= 0
    return pd.concat([preds.loc[keep].reset_index(drop=True), plan[columns].iloc[at[keep]].reset_index(drop=True)],
                     axis=1)


def _residual_rows(preds: pd.DataFrame, history: pd.DataFrame, plan: pd.DataFrame, cfg: ForecastConfig) -> pd.DataFrame:
    """Backtest points scored within each window's lead (``plan.horizon``), with errors and buckets."""
    rows = bt.attach_actuals(_with_plan(preds, plan, ["window", "scale", "horizon"]), history, cfg.freq)
    rows = rows[rows["step"] <= rows["horizon"]].reset_index(drop=True)
    rows["bucket"] = horizon_bucket(rows["step"], rows.pop("horizon"), min_width=MIN_BUCKET_STEPS)
    rows["abs_error"] = (rows["y"] - rows["yhat"]).abs()
    return rows


def prepare(history: pd.DataFrame, cfg: ForecastConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Series index (with triage ``status``), triage and backtest plan (with ``scale``) of a prepared history."""
    index = bt.series_index(history)
    tri = bt.triage(index, cfg.min_history_days * bt.STEPS_PER_DAY[cfg.freq], cfg.freq)
    index = index.merge(tri[[*_SERIES, "status"]], on=_SERIES)
    step = cfg.backtest_step or max(1, cfg.horizon // 2)
    plan = bt.plan_cutoffs(history, index[index["status"] != "skip"], horizon=cfg.horizon,
                           windows=cfg.backtest_windows, step=step, freq=cfg.freq)
    plan["scale"] = seasonal_scale(history, bt.SEASON[cfg.freq], plan).to_numpy()
    return index, tri, plan


def run_forecast(metrics: pd.DataFrame, cfg: ForecastConfig, *, progress: Progress | None = None,
                 inputs: Inputs | None = None) -> ForecastResult:
    """Backtest, select and forecast every series of a processed metrics frame.

    The frame is processed in chunks of ``cfg.chunk_series`` series (``chunked``); every output is
    gathered in memory. The forecast stage streams chunks from the lake instead.

    Args:
        metrics: processed metrics: ``server_id, ds, metric, value`` (+ any other columns); value
            NaN where a gap was left. Series key ``(server_id, metric)``.
        cfg: the forecast configuration.
        progress: optional ``callback(phase, done, total)``: called with ``done = 0`` when a phase
            of ``PHASES`` starts, then as its work finishes; ``total`` is fixed within a phase.
        inputs: frames read by external models instead of training (``Inputs``), e.g.
            ``{"amazon_forecast": rows}`` for the imported Amazon Forecast rows.

    Returns:
        The ForecastResult (see its attributes for the columns of each frame).

    Raises:
        ForecastError: no series, or an unknown model name.
        SchemaError: a missing column or duplicated rows in ``metrics``.
    """
    from capacity_forecaster.forecast.chunked import OUTPUTS, default_chunk_series, plan_chunks, run_chunks

    require_columns(metrics, list(RAW_METRIC_COLUMNS), "metrics")
    if metrics[VALUE].shape[0] == 0:
        raise ForecastError(NO_ROWS)
    resolve_models(cfg.models, cfg.freq)
    keys = metrics[SERVER_ID].astype(str)
    chunks = plan_chunks(metrics[[SERVER_ID, METRIC]], cfg.chunk_series or default_chunk_series())
    sink = _MemorySink()
    summary = run_chunks(chunks, lambda servers: metrics[keys.isin(servers).to_numpy()], cfg, sink,
                         progress=progress, inputs=inputs)
    frames = {name: sink.frame(name) for name in OUTPUTS}
    return ForecastResult(frames["forecasts"], frames["backtests"], frames["forecast_failures"],
                          frames["forecast_triage"], sink.fitted, summary, frames["backtest_forecasts"])


@dataclass
class _MemorySink:
    """Collects every chunk's outputs (``chunked.Sink``)."""

    frames: dict[str, list[pd.DataFrame]] = field(default_factory=dict)
    fitted: list[FittedModel] = field(default_factory=list)

    def write(self, table: str, frame: pd.DataFrame) -> None:
        self.frames.setdefault(table, []).append(frame)

    def models(self, fitted: list[FittedModel]) -> None:
        self.fitted.extend(fitted)

    def model_files(self, records: list[Any], read: Any) -> None:
        raise ForecastError("run_forecast keeps fitted models in memory; stored model files need the forecast stage")

    def frame(self, table: str) -> pd.DataFrame:
        parts = self.frames.get(table, [])
        full = [f for f in parts if len(f)]
        if len(full) == 1:
            return full[0]
        return pd.concat(full, ignore_index=True) if full else parts[0]


def backtest_points(results: list[UnitResult], history: pd.DataFrame, plan: pd.DataFrame, planned: pd.DataFrame,
                    names: list[str], order: list[str], cfg: ForecastConfig) -> pd.DataFrame:
    """Backtest points of every model, the ensemble's included, with actuals and errors (bounds: the models' own).

    Returns:
        ``server_id, metric, model, ds, cutoff, yhat, yhat_lower, yhat_upper, window, scale, y, step,
        bucket, abs_error``.
    """
    preds = predictions(results)
    preds = preds[preds["model"] == preds["requested"]].drop(columns="requested")
    rows = _residual_rows(preds, history, plan, cfg)
    selectable = [n for n in names if n != ENSEMBLE]
    if ENSEMBLE in names and len(selectable) >= 2:
        window_scores = score(rows.assign(yhat_lower=np.nan, yhat_upper=np.nan), [*_SERIES, "model", "window"])
        ens = ensemble_backtest(_with_plan(preds, plan, ["window"]),
                                window_scores[window_scores["model"].isin(selectable)], planned, order,
                                cfg.ensemble_size)
        rows = pd.concat([rows, _residual_rows(ens.drop(columns="window"), history, plan, cfg)], ignore_index=True)
    return rows


def choose_models(backtests: pd.DataFrame, planned: pd.DataFrame, names: list[str], order: list[str],
            index: pd.DataFrame, cfg: ForecastConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Chosen model per forecastable series, the ensemble members it needs, and series left unbacktested."""
    selectable = [n for n in names if n != ENSEMBLE]
    ranked = rank_models(backtests[backtests["model"].isin(names)], planned, order)
    chosen = index.loc[index["status"] != "skip", [*_SERIES, "status"]].merge(
        choose(ranked, order, cfg.selection_margin)[[*_SERIES, "model"]], on=_SERIES, how="left")
    if cfg.backtest_windows == 0:
        # Nothing to choose on: a forced set uses its first model, auto the baseline.
        first = selectable[0] if cfg.models.strip() != "auto" and selectable else BASELINE
        chosen.loc[chosen["status"] == "model", "model"] = first
    unbacktested = chosen["model"].isna() & (chosen["status"] == "model")
    chosen.loc[chosen["model"].isna() | (chosen["status"] == "baseline"), "model"] = BASELINE
    if SHORT_BASELINE in names:
        keyed = index.set_index(_SERIES)
        short = (keyed["n_obs"] < cfg.min_history_days * bt.STEPS_PER_DAY[cfg.freq]) & \
            ((keyed["vmax"] - keyed["vmin"]).abs() >= 1e-9)  # a constant series keeps the flat baseline
        is_short = short.reindex(chosen.set_index(_SERIES).index, fill_value=False).to_numpy(dtype=bool)
        chosen.loc[(is_short & (chosen["status"] == "baseline").to_numpy()) | unbacktested.to_numpy(),
                   "model"] = SHORT_BASELINE
    members = top_members(ranked[ranked["model"].isin(selectable)], cfg.ensemble_size)
    members = members.merge(chosen.loc[chosen["model"] == ENSEMBLE, _SERIES], on=_SERIES)
    return chosen, members, unbacktested


def assemble(final: pd.DataFrame, chosen: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """Forecasts of each series' chosen model; the baseline's where that model's final fit failed."""
    ok = final[final["model"] == final["requested"]]
    ensemble = combine(ok.drop(columns=["requested", "cutoff"]), members)
    direct = ok.merge(chosen[[*_SERIES, "model"]], on=[*_SERIES, "model"])
    done = pd.concat([direct[_SERIES], ensemble[_SERIES]]).drop_duplicates()
    fallback = final[final["model"] != final["requested"]].merge(done, on=_SERIES, how="left", indicator=True)
    fallback = fallback[fallback["_merge"] == "left_only"].drop_duplicates([*_SERIES, DS])
    return pd.concat([direct, ensemble, fallback], ignore_index=True)[[*_SERIES, DS, "model", *_PRED]]


def _pooled(frame: pd.DataFrame, pooling: pd.DataFrame) -> np.ndarray:
    """Per row of ``frame``: does its model and metric use pooled quantiles."""
    keys = ["model", METRIC]
    return frame[keys].merge(pooling[[*keys, "pooled"]], on=keys, how="left")["pooled"].eq(True).to_numpy()


def calibrate_forecasts(forecasts: pd.DataFrame, rows: pd.DataFrame, pooling: pd.DataFrame, history: pd.DataFrame,
                        index: pd.DataFrame, tri: pd.DataFrame, plan: pd.DataFrame, cfg: ForecastConfig,
                        pooled: pd.DataFrame | None = None, raw: pd.DataFrame | None = None) -> pd.DataFrame:
    """Replace each forecast's bounds with conformal ones from all backtest windows; mark extrapolation.

    Steps up to a series' backtested lead use the conformal half-width of their horizon bucket.
    Steps beyond it (a horizon longer than the history allowed to test, ``backtest.design``) are
    *extrapolation*: they take the half-width of the last tested bucket grown by
    ``sqrt(step / lead)`` (the random-walk growth of a level error) and ``is_extrapolation`` is set.
    A series with no backtest at all is extrapolation at every step. One shorter than
    ``min_history_days`` has less than one season of weekly differences, so no scale of its own: it
    takes its model's pooled quantile of *raw* errors (the interval of a series drawn from the fleet),
    and past the pool's reach the last bucket grown by ``sqrt(step / reach)``, as a tested series
    extrapolates. ``pooled`` / ``raw``: the fleet's pooled quantiles of scaled / raw errors when
    ``rows`` are one chunk's backtest points (``pooled.PooledErrors``); None learns them from ``rows``.
    """
    min_steps = cfg.min_history_days * bt.STEPS_PER_DAY[cfg.freq]
    out = forecasts.merge(index[[*_SERIES, "last_ds"]], on=_SERIES)
    out["step"] = bt.steps_between(out[DS], out["last_ds"], cfg.freq)
    tested = plan.groupby(_SERIES, sort=False)["horizon"].max().rename("tested").reset_index()
    out = out.merge(tested, on=_SERIES, how="left")
    lead = out["tested"].fillna(0).to_numpy(dtype=np.int64)
    step = out["step"].to_numpy(dtype=np.int64)
    beyond = step > lead
    out["bucket"] = horizon_bucket(np.where(beyond & (lead > 0), lead, step), np.where(lead > 0, lead, cfg.horizon),
                                   min_width=MIN_BUCKET_STEPS)
    last = index[[*_SERIES, "last_ds"]].rename(columns={"last_ds": "cutoff"})
    last["scale"] = seasonal_scale(history, bt.SEASON[cfg.freq], last).to_numpy()
    out = out.merge(last[[*_SERIES, "scale"]], on=_SERIES)
    calibration = calibrate(rows, cfg.interval, pooled=pooled)
    # A series without a backtest takes its model's pooled errors at the leads the fleet's backtests reached
    # (their buckets) and its model's own interval past them: looked up by the requested horizon's buckets, a
    # longer --horizon found none and left the own interval everywhere (helper-59: a new half of an Rnd fleet
    # covered 0.78 at 1-7-day leads with h = 30 and 0.665 with h = 90). Growing the last pooled bucket past them
    # instead cut rolling Bitbrains Rnd coverage from 0.81 to 0.78 (measured twice, stops 21 and 23).
    untested = lead == 0
    reach = np.zeros(len(out), dtype=np.int64)
    if untested.any() and not calibration.pooled.empty:
        out.loc[untested, "bucket"], reach[untested] = _pooled_buckets(out.loc[untested], calibration.pooled)
    half, _ = calibration.half_widths(out, _pooled(out, pooling))
    # (Not a constant series: it keeps the flat baseline of any length, as choose_models does; helper-70.)
    varying = index.loc[(index["vmax"] - index["vmin"]).abs() >= 1e-9, _SERIES]
    short_keys = tri.loc[(tri["status"] == "baseline") & (tri["n_obs"] < min_steps), _SERIES].merge(varying)
    short = out[_SERIES].merge(short_keys.assign(_short=True), on=_SERIES, how="left")["_short"].notna().to_numpy()
    short &= untested
    # helper-68: a series under min_history_days has < 1 season of weekly differences, so its scale was NaN
    # (SCALE_FLOOR: a zero-width interval to the pool's reach) or 1-6 noisy pairs, and past the reach the
    # recent-level rule's spread interval grew with sqrt(step) from step 1 (Bitbrains Rnd short copies: coverage
    # 0.49 at 1-7 days, 0.98 at 15-30 with 78-point widths; breach probability 0.29 against a rate of 0.10).
    # The pool's raw errors and the growth of its last bucket: 0.84 / 0.81, probability 0.07, 279 flags not 872.
    if raw is None:
        raw = conformal_quantile(rows, ["model", METRIC, "bucket"], "abs_error", cfg.interval)
        raw = raw[raw["n"] >= MIN_RESIDUALS]
    pool_keys = ["model", METRIC, "bucket"]
    fleet = out[pool_keys].merge(raw[[*pool_keys, "q"]], on=pool_keys, how="left", sort=False)["q"].to_numpy(
        dtype=float)
    short &= reach > 0  # no pool for its model and metric: its model's own interval
    half = np.where(short & ~np.isnan(fleet), fleet, half)
    half = np.where(short & (step > reach), half * np.sqrt(step / np.maximum(reach, 1)), half)
    half = np.where(untested & ~short & (step > reach), np.nan, half)
    half = np.where(beyond & (lead > 0), half * np.sqrt(step / np.maximum(lead, 1)), half)
    yhat = out["yhat"].to_numpy(dtype=float)
    out["yhat_lower"], out["yhat_upper"] = apply_bounds(yhat, half, out["yhat_lower"].to_numpy(dtype=float),
                                                        out["yhat_upper"].to_numpy(dtype=float))
    out["yhat"] = np.clip(yhat, 0.0, 100.0)
    out[EXTRAPOLATION] = beyond
    return out[[*FORECAST_COLUMNS, EXTRAPOLATION]].sort_values([*_SERIES, DS], kind="mergesort").reset_index(drop=True)


def _pooled_buckets(rows: pd.DataFrame, pooled: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """For forecast rows of series without a backtest (``model, metric, step``): the pooled bucket of their step
    in the family of buckets (one bucket width) of their model and metric that reaches the longest lead (the
    last one beyond it), and that lead (0 where the pool has no bucket for the model and metric)."""
    family = pooled[["model", METRIC]].assign(width=pooled["bucket"].to_numpy() // BUCKET_WIDTH_UNIT,
                                              index=pooled["bucket"].to_numpy() % BUCKET_WIDTH_UNIT)
    family["reach"] = (family["index"] + 1) * family["width"]
    best = (family.sort_values(["reach", "width"], ascending=[False, True], kind="mergesort")
            .drop_duplicates(["model", METRIC])[["model", METRIC, "width", "reach"]])
    found = rows[["model", METRIC]].merge(best, on=["model", METRIC], how="left")
    width = found["width"].fillna(0).to_numpy(dtype=np.int64)
    reach = found["reach"].fillna(0).to_numpy(dtype=np.int64)
    step = np.minimum(rows["step"].to_numpy(dtype=np.int64), np.maximum(reach, 1))
    bucket = np.where(width > 0, width * BUCKET_WIDTH_UNIT + (step - 1) // np.maximum(width, 1),
                      rows["bucket"].to_numpy(dtype=np.int64))
    return bucket, reach


def note_triage(tri: pd.DataFrame, unbacktested: pd.DataFrame) -> pd.DataFrame:
    """Mark the series of ``unbacktested`` (keys) that passed triage but had no complete backtest (baseline)."""
    out = tri.merge(unbacktested[_SERIES].assign(_nb=True), on=_SERIES, how="left")
    mask = out["_nb"].notna().to_numpy()
    out.loc[mask, "status"] = "baseline"
    out.loc[mask, "reason"] = "no model has a complete backtest (history shorter than training + horizon, or " \
                              "every model failed): baseline"
    return out.drop(columns="_nb")
