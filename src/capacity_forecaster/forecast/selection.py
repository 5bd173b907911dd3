"""Per-series model choice by backtest error, and the ensemble of each series' best models.

Ranking: a model is *eligible* for a series when it has a scored backtest in every window planned
for that series (a failed or skipped window disqualifies it). Eligible models are ranked by mean
window MAE; ties go to the lower mean RMSE, then to the earlier model in the declared order (the
baseline first, then the model set as given, the ensemble last), so the simpler model wins a tie.

Choice: with three windows a series' own ranking is noisy, and the plain minimum favours whichever
model was lucky (the winner's curse). Each metric therefore has a *default*: the model with the
lowest relative backtest MAE across the fleet for that metric (geometric mean of each series' MAE
over its median across models; see ``metric_defaults``). A series keeps the default unless another
eligible model's MAE is lower by more than ``margin`` (a fraction of the default's MAE; larger for
series whose backtests scored few points, see ``series_margin``); among those it takes the
best-ranked. ``margin = 0`` is the plain per-series minimum. On the default synthetic fleet a
margin of 0.15 cut the holdout MAE of the chosen forecasts by ~4 % against the plain minimum.

The ensemble is the mean of the top-``k`` base models of a series. It is backtested like any other
model without peeking: its members in window ``w`` are ranked on the *other* windows only (a
series with a single window ranks on that window), so it can be chosen only if it earns it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from capacity_forecaster.schema import METRIC, SERIES_KEY

ENSEMBLE = "ensemble"
# Points added to every MAE before the relative comparison of ``metric_defaults``: differences of a
# hundredth of a point on an idle series are noise, not evidence.
MAE_FLOOR = 0.01
# Backtest points per series at which ``choose`` applies the configured margin unchanged (three
# windows of a quarter), and the largest margin it grows to for series scored on fewer points.
MARGIN_POINTS = 270
MAX_MARGIN = 0.9
_SERIES = list(SERIES_KEY)
_SERIES_MODEL = [*SERIES_KEY, "model"]


def rank_models(scores: pd.DataFrame, planned: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Rank the eligible models of every series by backtest error.

    Args:
        scores: one row per ``server_id, metric, model, window`` with ``mae`` and ``rmse``.
        planned: ``server_id, metric, n_windows`` (windows planned per series).
        order: model names in tie-break order.

    Returns:
        ``server_id, metric, model, mae, rmse, n_windows, rank`` (0 = best) for eligible models,
        sorted by series then rank; ``n_points`` (scored points) too when ``scores`` has it.
    """
    points = {"n_points": ("n_points", "sum")} if "n_points" in scores.columns else {}
    agg = scores.groupby(_SERIES_MODEL, sort=False, observed=True).agg(
        mae=("mae", "mean"), rmse=("rmse", "mean"), n_windows=("window", "nunique"), **points
    ).reset_index()
    agg = agg.merge(planned[[*_SERIES, "n_windows"]].rename(columns={"n_windows": "_planned"}), on=_SERIES)
    agg = agg[(agg["n_windows"] == agg["_planned"]) & agg["mae"].notna()].drop(columns="_planned")
    return _ordered(agg, order)


def _ordered(frame: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    position = {name: i for i, name in enumerate(order)}
    out = frame.assign(_order=frame["model"].map(position).fillna(len(order)).astype(int))
    out = out.sort_values([*_SERIES, "mae", "rmse", "_order", "model"], kind="mergesort")
    out["rank"] = out.groupby(_SERIES, sort=False).cumcount()
    return out.drop(columns="_order").reset_index(drop=True)


def metric_defaults(ranked: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per metric, the model with the lowest relative backtest error over the series it is eligible for.

    The fleet comparison is scale-free: each series' MAE of a model is divided by that series'
    median MAE over its eligible models (plus ``MAE_FLOOR`` on both sides), and models are compared
    by the geometric mean of that ratio (Davydenko & Fildes' AvgRelMAE). A plain mean of MAE would
    let the one or two most volatile servers of a fleet choose the default for every other series.

    Returns:
        ``metric, model, mae`` (``mae``: the model's mean MAE over those series; ties on the ratio go
        to the lower mean RMSE, then the declared order).
    """
    reference = ranked.groupby(_SERIES, sort=False, observed=True)["mae"].transform("median")
    logs = np.log((ranked["mae"].to_numpy(dtype=float) + MAE_FLOOR) / (reference.to_numpy(dtype=float) + MAE_FLOOR))
    fleet = ranked.assign(_rel=logs).groupby([METRIC, "model"], sort=False, observed=True)[
        ["_rel", "mae", "rmse"]].mean().reset_index()
    position = {name: i for i, name in enumerate(order)}
    fleet["_order"] = fleet["model"].map(position).fillna(len(order))
    fleet["_rel"] = fleet["_rel"].round(12)  # equal ratios compare equal whatever the summation order
    fleet = fleet.sort_values([METRIC, "_rel", "rmse", "_order", "model"], kind="mergesort")
    return fleet.drop_duplicates(METRIC)[[METRIC, "model", "mae"]].reset_index(drop=True)


def choose(ranked: pd.DataFrame, order: list[str], margin: float = 0.0) -> pd.DataFrame:
    """The chosen model of every series: its metric's default unless another beats it by ``margin``.

    Args:
        ranked: output of ``rank_models``.
        order: tie-break order (for the metric defaults).
        margin: fraction of the default's MAE another model must undercut it by (0 = plain minimum).

    Returns:
        ``server_id, metric, model, mae``.
    """
    defaults = metric_defaults(ranked, order)[[METRIC, "model"]].rename(columns={"model": "_default"})
    table = ranked.merge(defaults, on=METRIC, how="left")
    own = table.loc[table["model"] == table["_default"], [*_SERIES, "mae"]].rename(columns={"mae": "_dmae"})
    table = table.merge(own, on=_SERIES, how="left")
    keeps = table["model"] == table["_default"]
    beats = table["mae"] < (1.0 - series_margin(table, margin)) * table["_dmae"]
    # Series where the default is not eligible simply take their best-ranked model.
    allowed = keeps | beats | table["_dmae"].isna()
    best = table[allowed].sort_values([*_SERIES, "rank"], kind="mergesort").drop_duplicates(_SERIES)
    return best[[*_SERIES_MODEL, "mae"]].reset_index(drop=True)


def series_margin(table: pd.DataFrame, margin: float) -> np.ndarray:
    """The margin each row's series must clear: ``margin``, grown where its backtests scored few points.

    A mean of ``n`` backtest errors is noisier the smaller ``n`` is (its spread shrinks as
    ``1 / sqrt(n)``), so a series scored on fewer than ``MARGIN_POINTS`` points needs a larger gain
    to leave its metric's default: ``margin * sqrt(MARGIN_POINTS / n)``, at most ``MAX_MARGIN``. Two
    months of history with 15-day leads (45 points) need ~37 %, a single 7-day window ~90 %.

    Returns:
        One margin per row of ``table`` (``margin`` everywhere when ``n_points`` is absent).
    """
    if "n_points" not in table.columns or margin == 0.0:
        return np.full(len(table), margin)
    points = table["n_points"].to_numpy(dtype=float)
    grown = margin * np.sqrt(MARGIN_POINTS / np.maximum(points, 1.0))
    return np.clip(np.where(np.isnan(points), margin, grown), margin, max(margin, MAX_MARGIN))


def top_members(ranked: pd.DataFrame, k: int) -> pd.DataFrame:
    """The top-``k`` base models of each series with at least two of them (the ensemble's members).

    Returns:
        ``server_id, metric, model`` rows, in rank order within each series.
    """
    base = ranked[ranked["model"] != ENSEMBLE]
    base = base.assign(_r=base.groupby(_SERIES, sort=False).cumcount())
    members = base[base["_r"] < k]
    size = members.groupby(_SERIES, sort=False)["model"].transform("size")
    return members.loc[size >= 2, _SERIES_MODEL].reset_index(drop=True)


def ensemble_backtest(predictions: pd.DataFrame, scores: pd.DataFrame, planned: pd.DataFrame,
                      order: list[str], k: int) -> pd.DataFrame:
    """Backtest predictions of the ensemble, members chosen on the other windows.

    Args:
        predictions: backtest predictions of the base models: ``server_id, metric, model, window,
            cutoff, ds, yhat, yhat_lower, yhat_upper``.
        scores: window scores of the base models (``server_id, metric, model, window, mae, rmse``).
        planned: ``server_id, metric, n_windows``.
        order: tie-break order.
        k: members per series.

    Returns:
        Ensemble rows with the same columns as ``predictions`` (``model`` = ``ensemble``); the
        bounds are the members' mean bounds (the engine recalibrates them).
    """
    eligible = rank_models(scores, planned, order)[_SERIES_MODEL]
    usable = scores.merge(eligible, on=_SERIES_MODEL)
    frames = []
    for w in np.unique(usable["window"].to_numpy()):
        having = usable.loc[usable["window"] == w, _SERIES].drop_duplicates()
        candidates = usable.merge(having, on=_SERIES)
        n_win = candidates.groupby(_SERIES, sort=False)["window"].transform("nunique")
        train = candidates[(candidates["window"] != w) | (n_win == 1)]
        ranked = _ordered(train.groupby(_SERIES_MODEL, sort=False, observed=True)
                          .agg(mae=("mae", "mean"), rmse=("rmse", "mean")).reset_index(), order)
        members = top_members(ranked, k)
        part = predictions[predictions["window"] == w].merge(members, on=_SERIES_MODEL)
        if part.empty:
            continue
        frames.append(part.groupby([*_SERIES, "window", "cutoff", "ds"], sort=True, observed=True)
                      [["yhat", "yhat_lower", "yhat_upper"]].mean().reset_index())
    if not frames:
        return predictions.iloc[0:0].copy()
    out = pd.concat(frames, ignore_index=True)
    out["model"] = ENSEMBLE
    return out[list(predictions.columns)]


def combine(predictions: pd.DataFrame, members: pd.DataFrame) -> pd.DataFrame:
    """Final ensemble forecasts: the mean of each series' members' forecasts.

    Args:
        predictions: final forecasts of base models: ``server_id, metric, model, ds, yhat, ...``.
        members: ``server_id, metric, model`` (from ``top_members``).

    Returns:
        ``server_id, metric, ds, yhat, yhat_lower, yhat_upper`` for series whose every member has a
        forecast, ``model`` = ``ensemble``.
    """
    part = predictions.merge(members, on=_SERIES_MODEL)
    want = members.groupby(_SERIES, sort=False).size().rename("_want")
    have = part.groupby(_SERIES, sort=False)["model"].nunique().rename("_have")
    complete = pd.concat([want, have], axis=1)
    complete = complete[complete["_want"] == complete["_have"]].reset_index()[_SERIES]
    part = part.merge(complete, on=_SERIES)
    out = part.groupby([*_SERIES, "ds"], sort=True, observed=True)[["yhat", "yhat_lower", "yhat_upper"]].mean()
    out = out.reset_index()
    out["model"] = ENSEMBLE
    return out
