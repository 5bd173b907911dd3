"""Fan-out: run work units (model, batch of series, cutoff) on a local process pool or a Dask cluster.

A unit fits one model on one batch of already-truncated history and predicts the horizon. The
only ``except`` of the forecast stage sits in ``run_unit``, around that one fit: the error is
recorded on the result and, for final fits, the batch falls back to the declared baseline (and,
should that fail too, to the built-in seasonal naive that cannot fail on a known value). Results
come back in unit order whatever the completion order, so local and Dask runs are identical.

A unit carries its own slice of history (the parent truncates it), so workers never read the lake.
On a real Dask cluster (``dask scheduler`` + ``dask worker`` on EC2, or dask-kubernetes on EKS) the
workers need the same ``aws-capacity-forecaster`` version and model extras installed (the unit holds
pickled model objects), ``--engine dask --scheduler tcp://HOST:8786`` connects to it, batch sizes
follow the cluster's thread count when it connects, and the client holds one chunk's returned
predictions at a time (``chunked``). Worker processes run native code (BLAS, OpenMP) on one thread
each (``pin_threads``). A lost worker loses no series: Dask reruns its units elsewhere and units
whose scattered input it held are sent again (``dask_run``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from capacity_forecaster.config import ForecastConfig
from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.backtest import step_delta
from capacity_forecaster.forecast.base import PREDICTION_COLUMNS, Model
from capacity_forecaster.forecast.runs import run_starts
from capacity_forecaster.schema import DS, METRIC, SERIES_KEY, SERVER_ID, VALUE

log = logging.getLogger(__name__)

BASELINE = "seasonal_naive"
# The baseline's season: a week of days, a day of hours (as the registered seasonal_naive).
NAIVE_SEASON = {"D": 7, "h": 24}
MAX_BATCH = 256
TASKS_PER_WORKER = 4
# Called with (phase, done, total): done = 0 when the phase starts; total is fixed within a phase.
Progress = Callable[[str, int, int], None]


class BuiltinSeasonalNaive:
    """Seasonal naive, the engine's last-resort baseline (pure numpy, tolerant of gaps).

    Each phase of the last season is the most recent known value of that phase (the last known
    value overall where a phase was never observed). Its own interval is the ``level`` quantile
    of in-sample absolute seasonal differences, widened by ``sqrt(seasons ahead)``.
    """

    name: ClassVar[str] = BASELINE
    kind: ClassVar[Literal["local", "global"]] = "local"
    min_history: ClassVar[int] = 1

    def __init__(self) -> None:
        self._freq = "D"
        self._series: list[tuple[str, str, pd.Timestamp, np.ndarray, np.ndarray]] = []

    def fit(self, history: pd.DataFrame, *, freq: str = "D") -> BuiltinSeasonalNaive:
        """Remember each series' last season and its in-sample seasonal differences."""
        season = NAIVE_SEASON[freq]
        self._freq = freq
        self._series = []
        for (server, metric), group in history.groupby(list(SERIES_KEY), sort=True, observed=True):
            values = group[VALUE].to_numpy(dtype=float)
            pad = (-len(values)) % season
            table = pd.DataFrame(np.concatenate([np.full(pad, np.nan), values]).reshape(-1, season))
            pattern = table.ffill().iloc[-1].to_numpy()
            known = values[~np.isnan(values)]
            pattern = np.where(np.isnan(pattern), known[-1] if known.size else np.nan, pattern)
            diffs = np.abs(values[season:] - values[:-season]) if len(values) > season else np.array([])
            self._series.append((str(server), str(metric), group[DS].iloc[-1], pattern, diffs[~np.isnan(diffs)]))
        return self

    def predict(self, horizon: int, *, level: float = 80.0) -> pd.DataFrame:
        """Repeat the last season ``horizon`` steps ahead; columns ``PREDICTION_COLUMNS``."""
        season = NAIVE_SEASON[self._freq]
        delta = step_delta(self._freq)
        steps = np.arange(1, horizon + 1)
        frames = []
        for server, metric, last, pattern, diffs in self._series:
            yhat = np.resize(pattern, horizon)
            spread = float(np.quantile(diffs, level / 100.0)) if diffs.size else 0.0
            half = spread * np.sqrt(np.ceil(steps / season))
            frames.append(pd.DataFrame({
                SERVER_ID: server, METRIC: metric, DS: last + steps * delta,
                "yhat": yhat, "yhat_lower": yhat - half, "yhat_upper": yhat + half,
            }))
        if not frames:
            return pd.DataFrame(columns=list(PREDICTION_COLUMNS))
        out = pd.concat(frames, ignore_index=True)
        for col in ("yhat", "yhat_lower", "yhat_upper"):
            out[col] = out[col].clip(0.0, 100.0)
        return out


@dataclass(frozen=True)
class FittedModel:
    """A final fitted model and the series it forecasts (what ``artifacts`` persists).

    Attributes:
        model: registry name.
        metric: the metric of its series.
        series: ``(server_id, metric)`` pairs it was fitted on.
        cutoff: last timestamp of its training history (the latest of the batch).
        obj: the fitted model object.
    """

    model: str
    metric: str
    series: tuple[tuple[str, str], ...]
    cutoff: pd.Timestamp
    obj: Any


@dataclass(frozen=True)
class UnitTask:
    """One work unit: fit ``model`` on ``history`` (already truncated at ``cutoff``) and predict.

    ``fallbacks`` are tried in order when the model fails (final fits only; backtests record the
    failure and the model is left out of the selection for those series). ``extra`` is history a
    global model also learns from without forecasting it (``reserve``; None for local models).
    """

    uid: int
    model_name: str
    phase: Literal["backtest", "final"]
    cutoff: pd.Timestamp | None
    history: pd.DataFrame
    model: Model
    horizon: int
    freq: str
    level: float
    fallbacks: tuple[Model, ...] = ()
    extra: pd.DataFrame | None = None


@dataclass(frozen=True)
class UnitResult:
    """What a unit produced.

    Attributes:
        uid, model_name, phase, cutoff: copied from the task.
        predictions: ``PREDICTION_COLUMNS`` (clipped, ``lower <= yhat <= upper``) or None.
        used: the model whose numbers ``predictions`` are (the fallback's name after a failure).
        fitted: the fitted model object (final fits only).
        errors: ``"<model>: <ExceptionType>: message"`` for every failed attempt, in order.
        series: the ``(server_id, metric)`` pairs of the batch.
    """

    uid: int
    model_name: str
    phase: str
    cutoff: pd.Timestamp | None
    predictions: pd.DataFrame | None
    used: str | None
    fitted: Any
    errors: tuple[str, ...] = field(default_factory=tuple)
    series: tuple[tuple[str, str], ...] = ()


def check_predictions(pred: Any, history: pd.DataFrame, horizon: int, freq: str) -> pd.DataFrame:
    """Validate a model's predictions against the protocol and clip them to [0, 100].

    Returns:
        ``PREDICTION_COLUMNS`` sorted by series and ``ds``, ``0 <= lower <= yhat <= upper <= 100``
        (missing bounds become ``yhat``).

    Raises:
        ForecastError: wrong columns, missing or extra series or steps, or non-finite ``yhat``.
    """
    if not isinstance(pred, pd.DataFrame):
        raise ForecastError(f"predict returned {type(pred).__name__}, expected a DataFrame")
    missing = [c for c in ("server_id", "metric", "ds", "yhat") if c not in pred.columns]
    if missing:
        raise ForecastError(f"predictions lack column(s) {', '.join(missing)}")
    ends = _run_rows(history, last=True).drop_duplicates(list(SERIES_KEY), keep="last").sort_values(
        list(SERIES_KEY), kind="stable")
    n = len(ends)
    if len(pred) != n * horizon:
        raise ForecastError(f"predictions have {len(pred)} rows, expected {horizon} steps after the last history "
                            f"row for each of {n} series")
    ds = pred[DS] if pd.api.types.is_datetime64_any_dtype(pred[DS]) else pd.to_datetime(pred[DS], cache=False)
    got = pd.DataFrame({
        SERVER_ID: pred[SERVER_ID].astype(str).to_numpy(), METRIC: pred[METRIC].astype(str).to_numpy(),
        DS: ds.to_numpy().astype("datetime64[ns]"), "yhat": pred["yhat"].to_numpy(dtype=float),
        **{c: pred[c].to_numpy(dtype=float) if c in pred else np.full(len(pred), np.nan)
           for c in ("yhat_lower", "yhat_upper")},
    })
    want_ds = (np.repeat(ends[DS].to_numpy(), horizon) + np.tile(np.arange(1, horizon + 1), n) * step_delta(freq)
               ).astype("datetime64[ns]")

    def matches(frame: pd.DataFrame) -> np.ndarray:
        return ((frame[SERVER_ID].to_numpy() == np.repeat(ends[SERVER_ID].to_numpy(), horizon))
                & (frame[METRIC].to_numpy() == np.repeat(ends[METRIC].to_numpy(), horizon))
                & (frame[DS].to_numpy() == want_ds))

    same = matches(got)
    if not same.all():  # most models return rows in order; sort only when they do not
        got = got.sort_values([SERVER_ID, METRIC, DS], kind="stable").reset_index(drop=True)
        same = matches(got)
    if not same.all():
        raise ForecastError(f"predictions do not cover exactly the {horizon} steps after the last history row of "
                            f"each of the {n} series given (first mismatch at row {int(np.argmin(same))})")
    merged = got
    yhat = merged["yhat"].to_numpy(dtype=float)
    if not np.isfinite(yhat).all():
        raise ForecastError("predictions contain non-finite yhat")
    yhat = np.clip(yhat, 0.0, 100.0)
    lo = merged["yhat_lower"].fillna(merged["yhat"]).to_numpy(dtype=float)
    hi = merged["yhat_upper"].fillna(merged["yhat"]).to_numpy(dtype=float)
    merged["yhat"] = yhat
    merged["yhat_lower"] = np.clip(np.minimum(lo, yhat), 0.0, 100.0)
    merged["yhat_upper"] = np.clip(np.maximum(hi, yhat), 0.0, 100.0)
    return merged


def _run_rows(history: pd.DataFrame, *, last: bool) -> pd.DataFrame:
    """The first (or last) row of every run of equal series keys: where a key first (last) occurs is among them.

    Deduplicating these few rows gives what deduplicating the whole history gives, without hashing
    every row's strings.
    """
    if history.empty:
        return history
    starts, _ = run_starts(history, list(SERIES_KEY))
    return history.iloc[np.append(starts[1:], len(history)) - 1 if last else starts]


def run_unit(task: UnitTask) -> UnitResult:
    """Fit and predict one unit; on failure record why and try the fallbacks (never raises)."""
    series = tuple(map(tuple, _run_rows(task.history, last=False)[list(SERIES_KEY)].drop_duplicates()
                       .to_numpy().tolist()))
    errors: list[str] = []
    for model in (task.model, *task.fallbacks):
        name = getattr(model, "name", task.model_name)
        try:
            more = {"extra": task.extra} if task.extra is not None and model is task.model else {}
            fitted = model.fit(task.history, freq=task.freq, **more)
            pred = check_predictions(fitted.predict(task.horizon, level=task.level * 100.0), task.history,
                                     task.horizon, task.freq)
        except Exception as err:  # one unit's failure must not stop the run; recorded below
            errors.append(f"{name}: {type(err).__name__}: {err}")
            continue
        return UnitResult(task.uid, task.model_name, task.phase, task.cutoff, pred, name,
                          fitted if task.phase == "final" else None, tuple(errors), series)
    return UnitResult(task.uid, task.model_name, task.phase, task.cutoff, None, None, None,
                      tuple(errors), series)


# Native thread pools (BLAS, OpenMP) get one thread per worker process: the engine is the parallelism.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMEXPR_NUM_THREADS")


def pin_threads() -> None:
    """Limit this process's BLAS/OpenMP pools to one thread (libraries loaded now and later)."""
    from threadpoolctl import threadpool_limits

    for name in THREAD_ENV:
        os.environ[name] = "1"
    threadpool_limits(limits=1)


def watch_parent(parent: int, interval: float = 0.5) -> None:
    """Worker initializer: pin native threads to one, and exit soon after ``parent`` dies (even by SIGKILL).

    loky keeps idle workers for minutes and nothing tells them that a killed parent is gone; a
    daemon thread notices the re-parenting (``os.getppid()`` changes) and ends the worker.
    """
    pin_threads()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="capfc-parent-watch", daemon=True).start()


def batches(series: pd.DataFrame, size: int) -> list[pd.DataFrame]:
    """Split rows (series) into consecutive batches of at most ``size`` rows, in order."""
    return [series.iloc[i:i + size] for i in range(0, len(series), max(1, size))]


def auto_batch_size(n_series: int, workers: int) -> int:
    """Series per local-model batch: ~``TASKS_PER_WORKER`` tasks per worker, at most ``MAX_BATCH``."""
    return max(1, min(MAX_BATCH, math.ceil(n_series / max(1, workers * TASKS_PER_WORKER))))


class Executor:
    """Runs unit tasks: in-process (``n_jobs == 1``), on a loky process pool, or on Dask.

    Use as a context manager; a Dask client (and the LocalCluster, when no scheduler address is
    configured) is started on entry and whatever was started is closed on exit.
    """

    def __init__(self, cfg: ForecastConfig) -> None:
        self.cfg = cfg
        self._client: Any = None
        self._cluster: Any = None
        self._slots = 1

    def __enter__(self) -> Executor:
        if self.cfg.engine == "dask":
            from distributed import Client, LocalCluster

            if self.cfg.scheduler:
                self._client = self._connect(Client, self.cfg.scheduler)
            else:
                self._cluster = LocalCluster(n_workers=self.cfg.n_jobs, threads_per_worker=1,
                                             dashboard_address=None)
                self._client = Client(self._cluster)
            self._client.run(pin_threads)
            self._slots = max(1, sum(self._client.nthreads().values()))
        return self

    def _connect(self, client_type: Any, address: str) -> Any:
        timeout = self.cfg.scheduler_timeout
        try:
            return client_type(address, timeout=timeout)
        except (OSError, ValueError, TypeError) as err:
            reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
            raise ForecastError(
                f"cannot connect to the Dask scheduler {address} within {timeout:g} s ({reason}); start it "
                "('dask scheduler'), fix --scheduler / forecast.scheduler (e.g. tcp://HOST:8786), raise "
                "forecast.scheduler_timeout, or leave the address out to start a local cluster"
            ) from err

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()

    @property
    def workers(self) -> int:
        """Parallel slots: ``n_jobs`` locally, the cluster's threads when the client connected on Dask.

        Fixed for the run: batch sizes follow it, so a worker lost (or added) mid-run changes where
        units run, not how the series are batched.
        """
        if self._client is not None:
            return self._slots
        return self.cfg.n_jobs

    def run(self, tasks: Sequence[UnitTask], on_done: Callable[[], None] | None = None) -> list[UnitResult]:
        """Run every task; returns the results sorted by ``uid``."""
        tick = on_done or (lambda: None)
        results: list[UnitResult] = []
        if not tasks:
            return results
        if self._client is not None:
            from capacity_forecaster.forecast.dask_run import run_on_dask

            results = run_on_dask(self._client, tasks, tick)
        elif self.cfg.n_jobs == 1 or len(tasks) == 1:
            for task in tasks:
                results.append(run_unit(task))
                tick()
        else:
            from joblib import Parallel, delayed
            from joblib.parallel import LokyBackend

            backend = LokyBackend(initializer=watch_parent, initargs=(os.getpid(),), inner_max_num_threads=1)
            parallel = Parallel(n_jobs=self.cfg.n_jobs, backend=backend, return_as="generator_unordered")
            for result in parallel(delayed(run_unit)(task) for task in tasks):
                results.append(result)
                tick()
        log.debug("ran %d units (%d failed) on %s", len(results), sum(1 for r in results if r.errors),
                  "dask" if self._client is not None else f"{self.cfg.n_jobs} local worker(s)")
        return sorted(results, key=lambda r: r.uid)
