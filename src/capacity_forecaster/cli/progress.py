"""Phase progress on the CLI's stderr console: one bar per named phase, each with its own known total.

The forecast stage reports ``(phase, done, total)`` (``forecast.stage.PHASES``); every phase gets a
line with its unit, rate and time left. Bars are drawn only on a terminal with rich logs: piped or
redirected output, and JSON logs, get no bars and no ANSI codes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from capacity_forecaster.stages.forecast import Progress as ProgressCallback

# What one step of each phase is, shown after the counts.
UNITS = {"backtests": "series", "scoring": "chunks", "final fits": "series", "writing": "tables"}


class RateColumn(ProgressColumn):
    """Steps per second (or seconds per step when slower than one a second), in the phase's unit."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", "")
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("")
        text = f"{speed:.1f} {unit}/s" if speed >= 1 else f"{1 / speed:.1f} s/{unit.rstrip('s') or 'step'}"
        return Text(text, style="progress.data.speed")


class PhaseBars:
    """A ``(phase, done, total)`` callback driving one rich task per phase."""

    def __init__(self, bar: Progress) -> None:
        self._bar = bar
        self._tasks: dict[str, TaskID] = {}
        self._current: str | None = None
        self._starting: TaskID | None = bar.add_task("starting", total=None, unit="")

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self._current:
            self._finish_current()
            self._current = phase
        if phase not in self._tasks:
            self._tasks[phase] = self._bar.add_task(phase, total=total, unit=UNITS.get(phase, "steps"))
        self._bar.update(self._tasks[phase], completed=done, total=total)

    def _finish_current(self) -> None:
        if self._starting is not None:
            self._bar.update(self._starting, total=1, completed=1, visible=False)
            self._starting = None
        if self._current is not None:
            task = self._tasks[self._current]
            total = self._bar.tasks[task].total or 0
            self._bar.update(task, completed=total)


@contextmanager
def phase_progress(enabled: bool, console: Console) -> Iterator[ProgressCallback | None]:
    """Yield a phase callback drawing bars on ``console``, or ``None`` when bars are off.

    Args:
        enabled: bars wanted (not quiet, rich logs); they are also off when ``console`` is no terminal.
        console: the stderr console shared with rich logging.
    """
    if not enabled or not console.is_terminal:
        yield None
        return
    columns = (SpinnerColumn(finished_text="✓"), TextColumn("{task.description:<10}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[unit]}"), RateColumn(), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        yield PhaseBars(bar)
