"""The model registry: models register themselves by name; ``get_model`` builds one by name."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from capacity_forecaster.errors import ForecastError
from capacity_forecaster.forecast.base import Model

_REGISTRY: dict[str, Callable[..., Model]] = {}
# Modules under forecast/models/ that register models; imported on first use of the registry so
# that heavy adapters (Prophet, statsforecast) load only when asked for.
MODEL_MODULES: tuple[str, ...] = (
    "seasonal_naive",
    "recent_level",
    "robust_trend",
    "robust_combo",
    "harmonic",
    "autoets",
    "autoarima",
    "mstl",
    "prophet_model",
    "gbm_global",
    "amazon_forecast",
)

T = TypeVar("T")


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator: make a model class available as ``name``."""

    def decorate(cls: T) -> T:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name '{name}' registered twice")
        _REGISTRY[name] = cls  # type: ignore[assignment]
        return cls

    return decorate


def _load_all() -> None:
    # The stage asks for models per work unit: look in sys.modules first (import_module of a loaded
    # module still costs ~0.1 ms, ~1 ms for the whole list).
    for module in MODEL_MODULES:
        name = f"capacity_forecaster.forecast.models.{module}"
        if name not in sys.modules:
            importlib.import_module(name)


def available_models() -> list[str]:
    """Names of every registered model, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def get_model(name: str, **params: Any) -> Model:
    """Build the model registered as ``name`` with ``params``.

    Raises:
        ForecastError: unknown name; the message lists the valid names.
    """
    _load_all()
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ForecastError(
            f"unknown model '{name}'; valid models: {', '.join(sorted(_REGISTRY))}"
        ) from None
    return factory(**params)
