"""The capfc command line: exit codes, one-line errors, SQL output formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from capacity_forecaster.cli import main
from capacity_forecaster.storage import Lake


@pytest.fixture()
def small_lake(tmp_path: Path) -> str:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    days = pd.date_range("2025-01-01", periods=10)
    lake.write_table(
        "raw_metrics",
        pd.DataFrame({"server_id": "srv-1", "ds": days, "metric": "cpu", "value": np.arange(10.0)}),
    )
    return lake.uri


def test_bad_option_value_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["generate", "--servers", "0", "--lake", str(tmp_path / "l")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "generate.servers" in err and "greater than or equal to 1" in err


def test_an_unknown_model_is_a_usage_error_that_records_no_run(small_lake: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    runs = Path(small_lake) / "_runs"
    before = sorted(runs.glob("*.json")) if runs.exists() else []
    code = main(["forecast", "--models", "foo", "--lake", small_lake])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "unknown model 'foo'" in err
    # A rejected option is not a failed forecast: the report's lineage must not say one ran.
    assert (sorted(runs.glob("*.json")) if runs.exists() else []) == before


def test_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("risk:\n  threshhold: 70\n")
    assert main(["config", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "risk.threshhold" in err and "allowed keys" in err and str(cfg) in err


def test_config_file_from_its_environment_variable(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("risk:\n  threshold: 70\n")
    monkeypatch.setenv("CAPFC_CONFIG", str(cfg))  # --help says: [env var: CAPFC_CONFIG]
    assert main(["config"]) == 0
    assert json.loads(capsys.readouterr().out)["risk"]["threshold"] == 70


def test_unknown_option_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELECT 1", "--bogus"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_unwritable_lake_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["generate", "--servers", "2", "--lake", str(blocker / "lake")]) == 2
    assert "cannot create folder" in capsys.readouterr().err


def test_sql_formats(small_lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    sql = "SELECT server_id, sum(value) AS total FROM raw_metrics GROUP BY 1"
    assert main(["sql", sql, "--lake", small_lake, "--format", "json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"server_id": "srv-1", "total": 45.0}]
    assert main(["sql", sql, "--lake", small_lake, "--format", "csv", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines() == ["server_id,total", "srv-1,45.0"]
    assert main(["sql", sql, "--lake", small_lake]) == 0
    assert "srv-1" in capsys.readouterr().out


def test_bad_sql_exits_2(small_lake: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sql", "SELEC nonsense", "--lake", small_lake]) == 2
    err = capsys.readouterr().err
    assert err.startswith("capfc: error: SQL failed") and err.count("\n") == 1


def test_console_script_prints_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "capacity_forecaster.cli", "generate", "--years", "-1",
         "--lake", str(tmp_path / "l")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "generate.years" in proc.stderr


def test_environment_overrides_reach_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAPFC_RISK__THRESHOLD", "75")
    assert main(["config", "--lake", str(tmp_path)]) == 0
    effective = json.loads(capsys.readouterr().out)
    assert effective["risk"]["threshold"] == 75.0
    assert effective["lake"]["uri"] == str(tmp_path)


def test_generate_then_etl_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = str(tmp_path / "lake")
    assert main(["generate", "--servers", "3", "--years", "1", "--holdout-days", "10", "--lake", lake]) == 0
    assert main(["etl", "--lake", lake]) == 0
    assert "quarantined" in capsys.readouterr().out
    assert main(["sql", "SELECT count(*) AS n FROM metrics WHERE is_imputed", "--lake", lake,
                 "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n"] > 0


def test_ingest_of_an_undecodable_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\x00\xff\xfe garbage\n")
    assert main(["ingest", str(bad), "--lake", str(tmp_path / "lake")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "utf-8" in err and err.count("\n") == 1


def test_etl_on_an_empty_lake_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lake").mkdir()
    assert main(["etl", "--lake", str(tmp_path / "lake")]) == 2
    assert "has no raw metrics; run `capfc generate` or `capfc ingest` first" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["etl"], ["forecast"], ["risk"], ["report"], ["dashboard"], ["sql", "select 1"]])
def test_a_mistyped_lake_is_refused_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                command: list[str]) -> None:
    """helper-52: `capfc dashboard --lake <typo>` served an empty page, and `capfc report` exited 2 but left the
    folder behind with a run manifest in it."""
    missing = tmp_path / "typo"
    assert main([*command, "--lake", str(missing)]) == 2
    err = capsys.readouterr().err
    assert f"no such folder {missing}" in err and err.count("\n") == 1 and not missing.exists()


def test_sql_is_read_only_unless_unsafe(small_lake: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "copy.csv"
    for statement in ("SELECT * FROM read_csv('/etc/passwd')", f"COPY (SELECT 1) TO '{out}'",
                      f"ATTACH '{tmp_path / 'x.duckdb'}' AS x", "INSTALL httpfs"):
        assert main(["sql", statement, "--lake", small_lake]) == 2
        err = capsys.readouterr().err
        assert err.startswith("capfc: error: SQL refused") and err.count("\n") == 1 and "--unsafe" in err
    assert not out.exists()
    assert main(["sql", f"COPY (SELECT 1 AS a) TO '{out}'", "--lake", small_lake, "--unsafe", "--quiet"]) == 0
    assert out.read_text().splitlines() == ["a", "1"]


def test_unreachable_dask_scheduler_exits_2_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    days = pd.date_range("2025-01-01", periods=60)
    lake.write_table("metrics", pd.DataFrame({
        "server_id": "srv-1", "ds": days, "metric": "cpu", "value": np.linspace(10, 40, 60), "value_raw": 1.0,
        "is_imputed": False, "is_outlier": False, "is_anomaly": False, "anomaly_score": 0.0}), validate=False)
    monkeypatch.setenv("CAPFC_FORECAST__SCHEDULER_TIMEOUT", "1")
    start = time.monotonic()
    code = main(["forecast", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1", "--lake", lake.uri, "--quiet"])
    assert code == 2 and time.monotonic() - start < 20
    err = capsys.readouterr().err
    assert err.startswith("capfc: error: cannot connect to the Dask scheduler tcp://127.0.0.1:1 within 1 s")
    assert err.count("\n") == 1 and "forecast.scheduler_timeout" in err


def test_run_takes_the_forecast_horizon_and_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CAPFC_GENERATE__SERVERS", "3")
    lake = str(tmp_path / "lake")
    assert main(["run", "--lake", lake, "--horizon", "21", "--models", "seasonal_naive", "-q"]) == 0
    forecasts = Lake.open(lake).read_table("forecasts")
    assert forecasts.groupby(["server_id", "metric"]).size().eq(21).all()
    assert set(forecasts["model"]) == {"seasonal_naive"}
    printed = capsys.readouterr().out
    assert "risk (base): 3 servers; already breaching" in printed and "rows out, 0 quarantined (run" not in \
        printed.split("risk (base)")[1].splitlines()[0]
    assert main(["run", "--lake", str(tmp_path / "other"), "--models", "foo"]) == 2
    # Refused before any stage writes (helper-51: an export was ingested and ETL'd first).
    export = tmp_path / "m.csv"
    export.write_text("server_id,ds,metric,value\na,2025-01-01,cpu,5\n")
    assert main(["run", str(export), "--lake", str(tmp_path / "third"), "--models", "harmonic,bogus"]) == 2
    assert not (tmp_path / "third").exists() and not (tmp_path / "other").exists()
    # An empty export folder (helper-51: it ended in "metrics: no rows to forecast; run 'capfc etl' first").
    (tmp_path / "empty").mkdir()
    assert main(["run", str(tmp_path / "empty"), "--lake", str(tmp_path / "fourth"), "-q"]) == 2
    assert "no data rows to ingest (no files, or empty or header-only ones)" in capsys.readouterr().err


def test_forecast_after_an_etl_of_no_rows_says_what_to_ingest(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """helper-60: it said "run 'capfc etl' first" right after capfc etl had run."""
    export = tmp_path / "header.csv"
    export.write_text("server_id,ds,metric,value\n")
    lake = str(tmp_path / "lake")
    assert main(["ingest", str(export), "--lake", lake, "-q"]) == 0
    assert main(["etl", "--lake", lake, "-q"]) == 0
    capsys.readouterr()
    assert main(["forecast", "--lake", lake, "-q"]) == 2
    assert ("the processed metrics have no rows to forecast (an ETL of raw metrics without rows?); ingest an export "
            "with data rows, then run 'capfc etl'") in capsys.readouterr().err
