"""The public Python API: what the CLI does, as functions over DataFrames and lakes (docs/api.md).

Everything here is importable from the top-level package::

    import capacity_forecaster as cf
    lake = cf.open_lake("./lake")
    risk = cf.read_table(lake, "server_risk")

Frames are long: ``server_id, metric, ds, value`` (series key ``(server_id, metric)``). Functions
never modify their input frames. Settings are the same ``Settings`` the CLI builds: built-in
defaults, then an optional YAML file, then keyword overrides with dotted keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from pydantic import BaseModel, ValidationError

from capacity_forecaster.config import Settings, load_settings
from capacity_forecaster.errors import ConfigError, SchemaError
from capacity_forecaster.forecast.stage import ForecastResult, run_forecast
from capacity_forecaster.risk.stage import RiskResult, run_risk
from capacity_forecaster.schema import DS, METRIC, SERVER_ID, TABLES, VALUE
from capacity_forecaster.storage.lake import Lake
from capacity_forecaster.storage.manifest import StageRun

if TYPE_CHECKING:
    from capacity_forecaster.report.accuracy_history import AccuracyHistory

SectionT = TypeVar("SectionT", bound=BaseModel)
STAGES = ("generate", "ingest", "etl", "forecast", "risk", "report")
# A frame given to ``forecast_series`` without these columns is taken as one series with these keys.
DEFAULT_SERVER = "series-1"
DEFAULT_METRIC = "cpu"


def settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """The configuration: built-in defaults, then ``config_file``, then ``overrides``.

    Args:
        config_file: a YAML file (the CLI's ``--config``); None uses the defaults only.
        **overrides: dotted keys with ``__`` for the dot, e.g. ``forecast__horizon=30``.

    Returns:
        The validated, frozen Settings.

    Raises:
        ConfigError: an unknown key or a value out of range, naming it.

    Example:
        >>> settings(forecast__horizon=30).forecast.horizon
        30
    """
    dotted = {key.replace("__", "."): value for key, value in overrides.items()}
    return load_settings(Path(config_file) if config_file is not None else None, dotted, environ={})


def open_lake(uri: str | Path = "./lake", config: Settings | None = None, *, for_writing: bool = False) -> Lake:
    """Open a lake: a local folder or ``s3://bucket/prefix`` (S3 settings from ``config.lake``).

    Args:
        uri: where the lake is.
        config: settings (for S3 endpoint, region and encryption); None uses the defaults.
        for_writing: create the folder / check the bucket for writes.

    Returns:
        The Lake; ``lake.read_table(name)`` reads any table (see ``tables``).

    Example:
        >>> import tempfile
        >>> lake = open_lake(tempfile.mkdtemp(), for_writing=True)
        >>> lake.has_table("metrics")
        False
    """
    cfg = config or settings()
    return Lake.open(str(uri), cfg.lake, for_writing=for_writing)


def tables() -> list[str]:
    """The names of the lake tables (the SQL view names), in pipeline order.

    Example:
        >>> tables()[:3]
        ['inventory', 'raw_metrics', 'metrics']
    """
    return list(TABLES)


def read_table(lake: Lake | str | Path, name: str, columns: Sequence[str] | None = None, *,
               as_of: str | None = None) -> pd.DataFrame:
    """One lake table as a DataFrame.

    Args:
        lake: an open Lake, or its URI.
        name: a table name (``tables()``), e.g. ``server_risk``.
        columns: the columns to read (all when None).
        as_of: time travel: a run id (the version that run wrote, or the one current when it
            finished) or an ISO time (UTC when naive); default the current version.

    Returns:
        The table (partition columns ``year``/``month`` are not included).

    Raises:
        SchemaError: an unknown table name, listing the valid ones.
        StorageError: the table has not been written yet (naming the stage that writes it).
    """
    if name not in TABLES:
        raise SchemaError(f"unknown table {name!r}; tables: {', '.join(TABLES)}")
    store = lake if isinstance(lake, Lake) else open_lake(lake)
    return store.read_table(name, columns=list(columns) if columns is not None else None, as_of=as_of)


def run_stage(stage: str, lake: Lake | str | Path, config: Settings | None = None, **options: Any) -> StageRun:
    """Run one pipeline stage on a lake, as ``capfc <stage>`` does.

    Args:
        stage: one of ``generate, ingest, etl, forecast, risk, report``.
        lake: an open Lake, or its URI (opened for writing).
        config: settings; None uses the defaults.
        **options: stage options: ``ingest`` takes ``sources`` (list of paths or URIs) and
            ``mapping`` (a mapping YAML file or None); ``risk`` takes ``growth`` and
            ``scenario_file``.

    Returns:
        The stage's run record (rows in/out/quarantined, run id, tables written).

    Raises:
        ConfigError: an unknown stage or option.
    """
    from capacity_forecaster import pipeline

    cfg = config or settings()
    store = lake if isinstance(lake, Lake) else open_lake(lake, cfg, for_writing=True)
    if stage == "ingest":
        if "sources" not in options:
            raise ConfigError("run_stage('ingest'): pass sources=[...] (files, folders or s3:// URIs)")
        return pipeline.ingest_stage(store, cfg, [str(s) for s in options.pop("sources")],
                                     _optional_str(options.pop("mapping", None)), **options)
    runners = {"generate": pipeline.generate_stage, "etl": pipeline.etl_stage, "forecast": pipeline.forecast_stage}
    if stage in runners:
        _no_options(stage, options)
        return runners[stage](store, cfg)
    if stage == "risk":
        return pipeline.risk_stage(store, cfg, **options)[0]
    if stage == "report":
        _no_options(stage, options)
        return pipeline.report_stage(store, cfg)[0]
    raise ConfigError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")


def forecast_series(frame: pd.DataFrame, *, horizon: int = 30, models: str = "auto", config: Settings | None = None,
             **forecast_options: Any) -> ForecastResult:
    """Forecast one or many series with the stage's models, backtests, selection and intervals.

    Args:
        frame: ``ds, value`` for one series, or ``server_id, metric, ds, value`` for many (daily
            P95 utilisation in percent; NaN where unknown). Missing key columns are filled with
            ``DEFAULT_SERVER`` / ``DEFAULT_METRIC``.
        horizon: days to forecast.
        models: ``auto`` or a comma-separated list of model names (``forecast.registry``).
        config: settings (the ``forecast`` section is used); None uses the defaults.
        **forecast_options: any other ``forecast`` setting, e.g. ``interval=0.9``, ``n_jobs=1``.

    Returns:
        ForecastResult: ``forecasts`` (server_id, metric, ds, model, yhat, yhat_lower, yhat_upper,
        is_extrapolation), ``backtests``, ``backtest_forecasts``, ``triage``, ``summary``.

    Raises:
        SchemaError: ``ds`` or ``value`` is missing.

    Example:
        >>> import numpy as np
        >>> days = pd.date_range("2025-01-01", periods=90, freq="D")
        >>> history = pd.DataFrame({"ds": days, "value": 40 + 10 * np.sin(np.arange(90) * 2 * np.pi / 7)})
        >>> result = forecast_series(history, horizon=14, models="seasonal_naive,recent_level", n_jobs=1)
        >>> len(result.forecasts), bool(result.forecasts["yhat"].between(0, 100).all())
        (14, True)
    """
    missing = [c for c in (DS, VALUE) if c not in frame.columns]
    if missing:
        raise SchemaError(f"forecast: the frame lacks {missing}; expected ds, value (and server_id, metric)")
    data = frame.copy()
    if SERVER_ID not in data.columns:
        data[SERVER_ID] = DEFAULT_SERVER
    if METRIC not in data.columns:
        data[METRIC] = DEFAULT_METRIC
    cfg = _section((config or settings()).forecast, "forecast",
                   {"horizon": horizon, "models": models, **forecast_options})
    return run_forecast(data[[SERVER_ID, DS, METRIC, VALUE]], cfg)


def assess_risk(forecasts: pd.DataFrame, history: pd.DataFrame, inventory: pd.DataFrame | None = None, *,
                threshold: float | None = None, config: Settings | None = None,
                backtests: pd.DataFrame | None = None, **risk_options: Any) -> RiskResult:
    """Breach risk, current state, clusters and recommendations for a forecast frame.

    Args:
        forecasts: ``forecast_series(...).forecasts`` or the lake's ``forecasts`` table.
        history: the history the forecasts came from (``server_id, metric, ds, value``, optional
            ``is_imputed``).
        inventory: servers (only ``server_id`` is required); None derives one from ``history``.
        threshold: breach threshold in percent (``risk.threshold``); None keeps the configured one.
        config: settings (the ``risk`` section; its interval follows ``forecast.interval``).
        backtests: ``forecast_series(...).backtest_forecasts``, to check and calibrate breach probabilities.
        **risk_options: any other ``risk`` setting, e.g. ``growth=20``.

    Returns:
        RiskResult: ``server_risk`` (risk_level, status, breach_ds, breach_probability, ...),
        ``clusters``, ``recommendations``, ``summary``.
    """
    cfg = config or settings()
    update = {**risk_options, "interval": cfg.forecast.interval}
    if threshold is not None:
        update["threshold"] = threshold
    risk_cfg = _section(cfg.risk, "risk", update)
    data = history.copy()
    for key, default in ((SERVER_ID, DEFAULT_SERVER), (METRIC, DEFAULT_METRIC)):
        if key not in data.columns:
            data[key] = default
    servers = inventory if inventory is not None else pd.DataFrame(
        {SERVER_ID: sorted(data[SERVER_ID].astype(str).unique())})
    return run_risk(data, forecasts, servers, risk_cfg, backtests=backtests)


def plot_series(server_id: str, metric: str, *, history: pd.DataFrame, forecasts: pd.DataFrame,
                backtests: pd.DataFrame | None = None, threshold: float = 80.0,
                backend: str = "matplotlib") -> Any:
    """Chart one series: history, forecast, interval, threshold, first forecast breach, backtest forecasts.

    Args:
        server_id: the server.
        metric: ``cpu``, ``memory``, ``disk`` or ``network``.
        history: ``server_id, metric, ds, value`` (e.g. the lake's ``metrics``).
        forecasts: ``server_id, metric, ds, yhat, yhat_lower, yhat_upper``.
        backtests: the backtest forecasts (``backtest_forecasts``: ``cutoff, ds, yhat`` ...), drawn
            faintly, one line per cutoff; None draws none.
        threshold: the breach threshold in percent.
        backend: ``matplotlib`` (a ``matplotlib.figure.Figure``) or ``plotly`` (a ``go.Figure``).

    Returns:
        The figure.

    Raises:
        ConfigError: an unknown backend.
        SchemaError: the series is in neither frame.

    Example:
        >>> import numpy as np
        >>> days = pd.date_range("2025-01-01", periods=60, freq="D")
        >>> history = pd.DataFrame({"server_id": "s1", "metric": "cpu", "ds": days, "value": np.linspace(50, 75, 60)})
        >>> result = forecast_series(history, horizon=30, models="robust_trend", n_jobs=1)
        >>> figure = plot_series("s1", "cpu", history=history, forecasts=result.forecasts)
        >>> [t.get_text() for t in figure.axes[0].get_legend().get_texts()][:3]
        ['observed (daily P95)', 'forecast interval', 'forecast']
    """
    from capacity_forecaster.report import series_plot

    key = (str(server_id), str(metric))
    past, future, paths = series_plot.series_frames(key, history, forecasts, backtests)
    if backend == "matplotlib":
        return series_plot.matplotlib_figure(key, past, future, paths, threshold)
    if backend == "plotly":
        return series_plot.plotly_figure(key, past, future, paths, threshold)
    raise ConfigError(f"plot_series: backend must be 'matplotlib' or 'plotly', got {backend!r}")


def accuracy_history(lake: Lake | str | Path, runs: int | None = None,
                     config: Settings | None = None) -> AccuracyHistory:
    """Forecast vs actual over time: the current forecast run and up to ``runs`` earlier ones, each as it
    was written (time travel by run id), scored against the actuals observed since it was made.

    Args:
        lake: an open Lake, or its URI.
        runs: earlier forecast runs to compare; None uses ``report.accuracy_runs`` (1-52).
        config: settings; None uses the defaults.

    Returns:
        AccuracyHistory: ``runs`` (runs_ago, run_id, made, origin, status, horizon_days, days, points,
        series, mae, bias, coverage, note: one row per forecast run, the current one first),
        ``buckets`` (run_id, runs_ago, horizon, points, mae, bias, coverage per days-ahead bucket)
        and ``message`` (one line when there is nothing to compare yet).

    Raises:
        ConfigError: ``runs`` is out of range.

    Example:
        >>> import tempfile
        >>> accuracy_history(open_lake(tempfile.mkdtemp(), for_writing=True)).message
        'No forecast run is recorded in the lake yet: run capfc forecast.'
    """
    from capacity_forecaster.report import accuracy_history as history

    cfg = config or settings()
    report = _section(cfg.report, "report", {} if runs is None else {"accuracy_runs": runs})
    store = lake if isinstance(lake, Lake) else open_lake(lake, cfg)
    return history.accuracy_history(store, report.accuracy_runs, chunk_servers=report.chunk_servers)


def _section(current: SectionT, name: str, updates: Mapping[str, Any]) -> SectionT:
    """``current`` with ``updates`` applied and validated (bounds, unknown keys) like a config file."""
    try:
        return type(current).model_validate({**current.model_dump(), **updates})
    except ValidationError as err:
        problems = "; ".join(f"{name}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors())
        raise ConfigError(problems) from err


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _no_options(stage: str, options: Mapping[str, Any]) -> None:
    if options:
        raise ConfigError(f"run_stage({stage!r}) takes no options; got {', '.join(sorted(options))}")


__all__ = ["STAGES", "accuracy_history", "assess_risk", "forecast_series", "open_lake", "plot_series", "read_table",
           "run_stage", "settings", "tables"]
