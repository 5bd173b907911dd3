"""The forecast stage's work units: which series each model fits together, at which cutoff.

A unit is one model on one batch of series of one metric at one backtest cutoff (or the final fit),
with its history already truncated (``engine.UnitTask``). Local models get batches sized for the
workers (``engine.auto_batch_size``); a global model gets every series of its metric at the cutoff
in one unit, topped up from the fleet-wide ``reserve``; an external model's unit carries the rows
of its series from the stage's ``Inputs``, its covered and uncovered series in separate units.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.forecast import backtest as bt
from capacity_forecaster.forecast.engine import BASELINE, BuiltinSeasonalNaive, UnitTask, auto_batch_size, batches
from capacity_forecaster.forecast.registry import available_models, get_model
from capacity_forecaster.forecast.reserve import Reserve
from capacity_forecaster.forecast.selection import ENSEMBLE
from capacity_forecaster.schema import METRIC, SERIES_KEY

_SERIES = list(SERIES_KEY)
# Frames some models read instead of training, by input name (a model's ``external`` class
# attribute), e.g. ``{"amazon_forecast": imported rows}``; each unit gets the rows of its series.
Inputs = Mapping[str, pd.DataFrame]


def make_model(name: str) -> Any:
    """A new instance of a model by name (the engine's built-in baseline for an unregistered baseline)."""
    return get_model(name) if name in available_models() else BuiltinSeasonalNaive()


def is_global(name: str) -> bool:
    """Does the model learn across the series of its unit (``kind = "global"``)?"""
    return bool(make_model(name).kind == "global")


def external_input(name: str) -> str | None:
    """The input a model reads instead of training (its ``external`` class attribute), or None."""
    return getattr(make_model(name), "external", None)


def _unit_model(name: str, batch: pd.DataFrame, inputs: Inputs | None) -> Any:
    """The model of one unit; an external model gets the rows of the batch's series from ``inputs``."""
    source = external_input(name)
    if source is None:
        return make_model(name)
    rows = (inputs or {}).get(source)
    if rows is not None:
        keys = batch[_SERIES].astype(str).drop_duplicates()
        rows = rows.merge(keys, on=_SERIES)
    return get_model(name, rows=rows)


def _covered(group: pd.DataFrame, model: str, inputs: Inputs | None) -> pd.Series:
    """Per series of ``group``: has the model's external input any rows for it (all True for other models).

    Units of an external model keep covered and uncovered series apart, so a series the input lacks
    does not make its batch-mates fall back too.
    """
    source = external_input(model)
    rows = (inputs or {}).get(source) if source is not None else None
    if rows is None:
        return pd.Series(True, index=group.index)
    held = rows[_SERIES].astype(str).drop_duplicates().assign(_held=True)
    flag = group[_SERIES].astype(str).merge(held, on=_SERIES, how="left")["_held"].notna()
    return pd.Series(flag.to_numpy(), index=group.index)


def _fallbacks() -> tuple[Any, ...]:
    if BASELINE in available_models():
        return make_model(BASELINE), BuiltinSeasonalNaive()
    return (BuiltinSeasonalNaive(),)


def _tasks(model: str, rows: pd.DataFrame, history: pd.DataFrame, cfg: ForecastConfig, phase: str,
           workers: int, first_uid: int, inputs: Inputs | None = None, reserve: Reserve | None = None
           ) -> list[UnitTask]:
    """Units of one model: series grouped by cutoff (None = final) and metric, then batched; a global
    model's unit is topped up with ``reserve`` series it learns from (``reserve.Reserve.top_up``)."""
    made = make_model(model)
    is_global = made.kind == "global"
    tasks: list[UnitTask] = []
    key = rows["cutoff"] if phase == "backtest" else pd.Series(0, index=rows.index)
    for _, at_cutoff in rows.groupby(key, sort=True):
        size = len(at_cutoff) if is_global else cfg.batch_size or auto_batch_size(len(at_cutoff), workers)
        cutoff = at_cutoff["cutoff"].iloc[0] if phase == "backtest" else None
        for _, by_metric in at_cutoff.groupby(METRIC, sort=True):
            for _, group in by_metric.groupby(_covered(by_metric, model, inputs), sort=False):
                for batch in batches(group, size):
                    fallbacks = _fallbacks() if phase == "final" else ()
                    if model == BASELINE:
                        fallbacks = fallbacks[1:]
                    extra = (reserve.top_up(batch, cutoff, made.min_history, cfg.freq)
                             if is_global and reserve is not None else None)
                    tasks.append(UnitTask(first_uid + len(tasks), model, phase, cutoff,  # type: ignore[arg-type]
                                          bt.history_until(history, batch, cutoff, cfg.freq),
                                          _unit_model(model, batch, inputs), cfg.horizon, cfg.freq, cfg.interval,
                                          fallbacks, extra))
    return tasks


def backtest_tasks(plan: pd.DataFrame, index: pd.DataFrame, history: pd.DataFrame, names: list[str],
                   cfg: ForecastConfig, workers: int, inputs: Inputs | None = None,
                   reserve: Reserve | None = None) -> list[UnitTask]:
    """Backtest units of the baseline and every selectable model over the planned cutoffs."""
    tasks: list[UnitTask] = []
    located = plan.merge(index[[*_SERIES, "status", "start", "stop", "first_ds"]], on=_SERIES)
    for model in dict.fromkeys([BASELINE, *[n for n in names if n != ENSEMBLE]]):
        rows = located
        if model != BASELINE:
            rows = rows[(rows["status"] == "model") & (rows["n_train"] >= make_model(model).min_history)]
        tasks += _tasks(model, rows, history, cfg, "backtest", workers, len(tasks), inputs, reserve)
    return tasks


def final_tasks(chosen: pd.DataFrame, members: pd.DataFrame, index: pd.DataFrame, history: pd.DataFrame,
                cfg: ForecastConfig, workers: int, inputs: Inputs | None = None,
                reserve: Reserve | None = None) -> list[UnitTask]:
    """Final-fit units of each series' chosen model and its ensemble members."""
    need = pd.concat([chosen.loc[chosen["model"] != ENSEMBLE, [*_SERIES, "model"]], members], ignore_index=True)
    need = need.merge(index[[*_SERIES, "start", "stop", "first_ds"]], on=_SERIES)
    tasks: list[UnitTask] = []
    for needed, rows_m in need.groupby("model", sort=False):
        tasks += _tasks(str(needed), rows_m.drop(columns="model"), history, cfg, "final", workers, len(tasks), inputs,
                        reserve)
    return tasks
