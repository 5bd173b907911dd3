"""What capfc prints: piped output without bars or wrapping, JSON logs, quiet/silent, --version, -h, SQL cells."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer.main

from capacity_forecaster import __version__
from capacity_forecaster.cli import app, main
from capacity_forecaster.storage import Lake

PLAIN_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) [\w.]+: \S")
FAST = ["--horizon", "14", "--models", "seasonal_naive,recent_level"]


@pytest.fixture()
def metrics_lake(tmp_path: Path) -> str:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    days = pd.date_range("2025-01-01", periods=70)
    rows = [pd.DataFrame({"server_id": server, "ds": days, "metric": "cpu",
                          "value": np.linspace(10, 40, len(days)) + offset, "value_raw": 1.0, "is_imputed": False,
                          "is_outlier": False, "is_anomaly": False, "anomaly_score": 0.0})
            for server, offset in (("srv-1", 0.0), ("srv-2", 5.0))]
    lake.write_table("metrics", pd.concat(rows, ignore_index=True), validate=False)
    return lake.uri


def run_piped(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CAPFC_FORECAST__N_JOBS": "1", "COLUMNS": "80"}
    env.pop("FORCE_COLOR", None)
    return subprocess.run([sys.executable, "-m", "capacity_forecaster.cli", *args], capture_output=True,
                          text=True, check=False, env=env, timeout=300)


def summary_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("forecast:")]


def test_piped_forecast_has_no_bars_no_ansi_no_wrapping_and_one_summary(metrics_lake: str) -> None:
    proc = run_piped("forecast", "--lake", metrics_lake, *FAST, "--log-level", "DEBUG")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    log_lines = proc.stderr.splitlines()
    assert log_lines, "DEBUG logs expected on stderr"
    for line in log_lines:  # every line is a whole record: none continues a wrapped one
        assert PLAIN_LINE.match(line), line
        assert line == line.rstrip()
    assert any(len(line) > 80 for line in log_lines)  # long records stay on one line
    assert not any(word in proc.stderr for word in ("backtests ━", "fits/s"))  # no progress bars
    summaries = summary_lines(proc.stdout) + summary_lines(proc.stderr.replace(": forecast:", "\nforecast:"))
    assert len(summaries) == 1, summaries
    assert "{" not in summaries[0] and "[" not in summaries[0]
    assert summaries[0].startswith("forecast: 2 series (2 for model selection); chosen ")


def test_forecast_without_any_backtest_says_why_instead_of_an_empty_table(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    days = pd.date_range("2025-01-01", periods=15)  # under the 14 + 7 days a backtest window needs
    lake.write_table("metrics", pd.DataFrame({
        "server_id": "srv-1", "ds": days, "metric": "cpu", "value": np.linspace(10, 40, len(days)),
        "value_raw": 1.0, "is_imputed": False, "is_outlier": False, "is_anomaly": False, "anomaly_score": 0.0}),
        validate=False)
    assert main(["forecast", "--lake", lake.uri, *FAST]) == 0
    printed = capsys.readouterr().out
    assert "backtests: none scored: no series has the history a backtest window needs (14 days to fit" in printed
    assert "Backtest of the chosen models" not in printed


def test_json_logs_parse_line_by_line(metrics_lake: str) -> None:
    proc = run_piped("forecast", "--lake", metrics_lake, *FAST, "--log-format", "json", "--log-level", "DEBUG")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", r["time"]) for r in records)
    # JSON logs keep the stage summary (machines read them), still exactly once.
    assert [r["message"] for r in records if r["message"].startswith("forecast:")] == summary_lines(proc.stdout)


def test_json_error_line_is_json(tmp_path: Path) -> None:
    proc = run_piped("etl", "--lake", str(tmp_path / "empty"), "--log-format", "json")
    assert proc.returncode == 2
    (record,) = [json.loads(line) for line in proc.stderr.splitlines()]
    assert record["level"] == "ERROR" and record["message"].startswith("capfc: error:")


def test_quiet_keeps_the_summary_silent_prints_nothing(metrics_lake: str, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPFC_FORECAST__N_JOBS", "1")
    assert main(["forecast", "--lake", metrics_lake, *FAST, "--quiet"]) == 0
    captured = capsys.readouterr()
    assert len(summary_lines(captured.out)) == 1 and captured.err == ""
    assert main(["forecast", "--lake", metrics_lake, *FAST, "--silent"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["forecast", "--lake", metrics_lake, *FAST, "-qq"]) == 0
    assert capsys.readouterr() == ("", "")


def test_log_format_from_the_environment(metrics_lake: str, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPFC_LOG_FORMAT", "JSON")
    assert main(["config", "--lake", metrics_lake, "--log-level", "debug"]) == 0
    assert json.loads(capsys.readouterr().out)["log_format"] == "json"
    assert main(["config", "--log-format", "xml"]) == 2
    assert "log_format" in capsys.readouterr().err


def test_version_and_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__
    assert main(["-h"]) == 0
    assert "forecast" in capsys.readouterr().out
    assert main(["forecast", "-h"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "seasonal_naive" in help_text and "robust_combo" in help_text and "--log-format" in help_text
    assert main(["aws", "glue", "-h"]) == 0
    assert "--database" in capsys.readouterr().out


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return paths


def test_every_help_names_real_defaults_and_settings(capsys: pytest.CaptureFixture[str]) -> None:
    paths = _command_paths()
    assert ["ingest"] in paths and ["etl"] in paths and ["lake", "vacuum"] in paths
    for path in paths:
        assert main([*path, "-h"]) == 0, path
        text = " ".join(capsys.readouterr().out.split())
        # No placeholders, no config-key names where a default belongs, no count default of 0.
        assert "*.max" not in text and "[default: log_format" not in text and "[default: 0]" not in text, path
        if "--log-format" in text:
            assert "[default: auto; env var CAPFC_LOG_FORMAT, config log_format]" in text, path
    assert main(["ingest", "-h"]) == 0
    assert "ingest.max_quarantine_share (default 0.5)" in " ".join(capsys.readouterr().out.split())
    assert main(["etl", "-h"]) == 0
    etl_help = " ".join(capsys.readouterr().out.split())
    assert "etl.max_quarantine_share (default 0.5)" in etl_help and "ingest." not in etl_help


def test_sql_table_cells_are_readable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    lake.write_table("raw_metrics", pd.DataFrame({
        "server_id": ["srv-1", "srv-1"], "ds": pd.to_datetime(["2026-07-30", "2026-07-31"]),
        "metric": "cpu", "value": [12.3456789, 45.0]}))
    sql = ("SELECT ds, value, CASE WHEN value > 20 THEN NULL ELSE value / 100 END AS share, "
           "CASE WHEN value > 20 THEN NULL ELSE ds END AS maybe_ds FROM raw_metrics ORDER BY ds")
    assert main(["sql", sql, "--lake", lake.uri]) == 0
    table = capsys.readouterr().out
    assert "2026-07-31" in table and "00:00:00" not in table
    assert "12.35" in table and "12.3456789" not in table and "0.1235" in table
    assert "NaT" not in table and "<NA>" not in table and "nan" not in table.lower() and "…" not in table
    assert main(["sql", sql, "--lake", lake.uri, "--format", "csv"]) == 0
    assert "12.3456789" in capsys.readouterr().out  # csv keeps full precision
