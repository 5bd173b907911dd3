"""AWS-CapacityForecaster: capacity planning for server fleets.

The public API (``docs/api.md``) is importable from here; it loads on first use, so that
``import capacity_forecaster`` stays cheap for the CLI::

    import capacity_forecaster as cf
    result = cf.forecast_series(frame, horizon=30)
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("aws-capacity-forecaster")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

if TYPE_CHECKING:
    from capacity_forecaster.api import (
        STAGES,
        accuracy_history,
        assess_risk,
        forecast_series,
        open_lake,
        plot_series,
        read_table,
        run_stage,
        settings,
        tables,
    )

__all__ = ["STAGES", "__version__", "accuracy_history", "assess_risk", "forecast_series", "open_lake", "plot_series",
           "read_table", "run_stage", "settings", "tables"]
_API = frozenset(__all__) - {"__version__"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("capacity_forecaster.api"), name)
    raise AttributeError(f"module 'capacity_forecaster' has no attribute {name!r}")
