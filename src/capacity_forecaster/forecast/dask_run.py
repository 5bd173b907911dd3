"""Run work units on a Dask client so that a lost worker loses no series.

Each unit's task is scattered to a worker and ``run_unit`` submitted on it. A unit *running* on a
worker that dies is rescheduled by Dask itself (up to the scheduler's ``allowed-failures``, then
``KilledWorker``); scattered data has no recipe, so Dask instead cancels the units whose input sat
on that worker. The client still holds every task, so those are scattered and submitted anew.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.engine import UnitResult, UnitTask, run_unit
from capacity_forecaster.schema import SERVER_ID

log = logging.getLogger(__name__)

# Times a unit is sent again after its scattered input was lost with a worker (so 4 sends in all).
LOST_INPUT_RESENDS = 3


def lost_unit_error(task: UnitTask, sent: int, err: Exception) -> ForecastError:
    """The error for a unit Dask could not finish because the workers holding or running it died."""
    return ForecastError(
        f"Dask lost unit {task.uid} ({task.model_name}, {task.phase}, {task.history[SERVER_ID].nunique()} "
        f"server(s)) with its worker(s), sent {sent} time(s) ({type(err).__name__}: {err}); either that model "
        "crashes or exceeds the worker memory limit (give workers more memory, lower forecast.batch_size or "
        "leave the model out) or workers are being stopped (keep them up), then run again"
    )


def run_on_dask(client: Any, tasks: Sequence[UnitTask], tick: Callable[[], None]) -> list[UnitResult]:
    """Run ``tasks`` on ``client`` (a ``distributed.Client``), calling ``tick`` as each one finishes.

    Returns:
        One result per task, in completion order.

    Raises:
        ForecastError: a unit was lost with its worker ``1 + LOST_INPUT_RESENDS`` times, or Dask
            gave up on it (``KilledWorker``).
    """
    from distributed import KilledWorker, as_completed
    from distributed.client import FutureCancelledError

    pending: dict[Any, int] = {}
    sent = [0] * len(tasks)

    def submit(indices: Sequence[int]) -> list[Any]:
        scattered = client.scatter([tasks[i] for i in indices], hash=False)
        futures = [client.submit(run_unit, item, pure=False) for item in scattered]
        for i, future in zip(indices, futures, strict=True):
            pending[future] = i
            sent[i] += 1
        return futures

    results: list[UnitResult] = []
    queue = as_completed(submit(range(len(tasks))))
    for batch in queue.batches():
        lost: list[int] = []
        for future in batch:
            i = pending.pop(future)
            try:
                results.append(future.result())
            except FutureCancelledError as err:
                if sent[i] > LOST_INPUT_RESENDS:
                    raise lost_unit_error(tasks[i], sent[i], err) from err
                lost.append(i)
                continue
            except KilledWorker as err:
                raise lost_unit_error(tasks[i], sent[i], err) from err
            tick()
        if lost:
            log.warning("%d unit(s) lost their input with a Dask worker (first: unit %d, %s); sending them again",
                        len(lost), tasks[lost[0]].uid, tasks[lost[0]].model_name)
            queue.update(submit(lost))
    return results
