"""The public API: exports, doctests, and docs/api.md followed verbatim."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import capacity_forecaster as cf
from capacity_forecaster import api
from capacity_forecaster.errors import ConfigError, SchemaError

REPO = Path(__file__).resolve().parents[1]


def test_the_package_exports_the_api_and_ships_py_typed() -> None:
    assert set(api.__all__) <= set(cf.__all__)
    assert all(callable(getattr(cf, name)) for name in api.__all__ if name != "STAGES")
    assert (Path(cf.__file__).parent / "py.typed").exists()
    # A subpackage attribute would shadow a lazily exported function of the same name.
    import pkgutil
    subpackages = {m.name for m in pkgutil.iter_modules(cf.__path__)}
    assert not subpackages & set(api.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = cf.nope  # type: ignore[attr-defined]


def test_docstring_examples_run() -> None:
    failures, tried = doctest.testmod(api, optionflags=doctest.ELLIPSIS)
    assert tried >= 10 and failures == 0


def test_bad_arguments_get_one_clear_error() -> None:
    days = pd.date_range("2025-01-01", periods=30, freq="D")
    with pytest.raises(SchemaError, match="lacks \\['value'\\]"):
        cf.forecast_series(pd.DataFrame({"ds": days}))
    with pytest.raises(ConfigError, match="forecast.intervl"):
        cf.forecast_series(pd.DataFrame({"ds": days, "value": 1.0}), intervl=0.9)
    with pytest.raises(ConfigError, match="unknown stage 'train'"):
        cf.run_stage("train", "unused-lake")
    with pytest.raises(SchemaError, match="unknown table 'metric'"):
        cf.read_table("unused-lake", "metric")


def test_plotly_backend_draws_the_same_series() -> None:
    days = pd.date_range("2025-01-01", periods=60, freq="D")
    history = pd.DataFrame({"server_id": "s1", "metric": "cpu", "ds": days, "value": np.linspace(60, 79, 60)})
    result = cf.forecast_series(history, horizon=30, models="robust_trend", n_jobs=1)
    figure = cf.plot_series("s1", "cpu", history=history, forecasts=result.forecasts,
                            backtests=result.backtest_forecasts, backend="plotly")
    names = [trace.name for trace in figure.data if trace.showlegend is not False]
    assert names[:1] == ["observed (daily P95)"] and "forecast" in names


def test_docs_api_md_works_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every python block of docs/api.md, in order, in a folder holding the reader's own CSV."""
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    days = pd.date_range("2025-01-01", periods=120, freq="D")
    rng = np.random.default_rng(7)
    pd.DataFrame({"ds": days.strftime("%Y-%m-%d"),
                  "value": np.round(np.linspace(50, 78, 120) + rng.normal(0, 3, 120), 2)}).to_csv("my_server.csv",
                                                                                                   index=False)
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102 - the docs are the test
    assert Path("my_server.png").stat().st_size > 1000
    assert len(namespace["risk"]) > 0  # type: ignore[arg-type]
