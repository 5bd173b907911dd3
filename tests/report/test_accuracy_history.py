"""Forecast vs actual over time: earlier forecast runs read by time travel and scored against later actuals."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from openpyxl import load_workbook

from capacity_forecaster.config import Settings
from capacity_forecaster.report.accuracy_history import (
    BUCKET_HEADERS,
    NO_ACTUALS,
    SCORED,
    UNREADABLE,
    accuracy_history,
    score_runs,
    server_ranges,
)
from capacity_forecaster.report.data import load_report_data
from capacity_forecaster.report.excel import SHEETS, build_workbook
from capacity_forecaster.report.html import build_html
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import stage_run

START = pd.Timestamp("2026-01-01")
HISTORY = 60  # 2026-01-01 .. 2026-03-01
LATER = 20    # actuals that arrive after the first forecast: 2026-03-02 .. 2026-03-21
HORIZON = 30
ORIGIN = START + pd.Timedelta(days=HISTORY - 1)


def _metrics(days: int) -> pd.DataFrame:
    """s1 cpu: 50 in the history, then 50 + k on the k-th later day; s2 cpu: 40 throughout, except later
    day 3 (imputed, 99: not an actual) and later day 4 (missing)."""
    ds = pd.date_range(START, periods=days, freq="D")
    k = np.arange(days) - (HISTORY - 1)  # 1 on the first day after the origin
    s1 = np.where(k >= 1, 50.0 + k, 50.0)
    s2 = np.where(k == 3, 99.0, np.where(k == 4, np.nan, 40.0))
    frames = [pd.DataFrame({"server_id": server, "ds": ds, "metric": "cpu", "value": value, "value_raw": value,
                            "is_imputed": (k == 3) & (server == "s2"), "is_outlier": False, "is_anomaly": False,
                            "anomaly_score": 0.0}) for server, value in (("s1", s1), ("s2", s2))]
    return pd.concat(frames, ignore_index=True)


def _forecasts(origin: pd.Timestamp) -> pd.DataFrame:
    """s1: 52 in [48, 56]; s2: 40 in [35, 45], for HORIZON days after ``origin``."""
    ds = pd.date_range(origin + pd.Timedelta(days=1), periods=HORIZON, freq="D")
    return pd.concat([pd.DataFrame({"server_id": server, "metric": "cpu", "ds": ds, "model": "toy", "yhat": yhat,
                                    "yhat_lower": yhat - half, "yhat_upper": yhat + half})
                      for server, yhat, half in (("s1", 52.0, 4.0), ("s2", 40.0, 5.0))], ignore_index=True)


def _etl(lake: Lake, settings: Settings, days: int) -> None:
    with stage_run(lake, "etl", settings) as run:
        run.wrote(lake.write_table("metrics", _metrics(days), validate=False))


def _forecast(lake: Lake, settings: Settings, origin: pd.Timestamp) -> str:
    with stage_run(lake, "forecast", settings) as run:
        run.wrote(lake.write_table("forecasts", _forecasts(origin), validate=False))
    return run.run_id


def _lake(root: Path, *, retention_hours: float = 168.0, extend: bool = True) -> tuple[Lake, Settings, list[str]]:
    """Metrics of 60 days, forecast run 1, then (``extend``) 20 more days of metrics, forecast run 2."""
    settings = Settings.model_validate({"lake": {"uri": str(root), "retention_hours": retention_hours}})
    lake = Lake.open(str(root), settings.lake, for_writing=True)
    _etl(lake, settings, HISTORY)
    first = _forecast(lake, settings, ORIGIN)
    days = HISTORY + (LATER if extend else 0)
    if extend:
        _etl(lake, settings, days)
    second = _forecast(lake, settings, START + pd.Timedelta(days=days - 1))
    return lake, settings, [first, second]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Lake, Settings, list[str]]:
    return _lake(tmp_path_factory.mktemp("accuracy") / "lake")


# By hand: s1 errors 52 - (50 + k) = 2 - k for k = 1..20, inside [48, 56] for k <= 6; s2 scores 18 days
# (day 3 imputed, day 4 missing) with error 0, all inside.
S1_ABS, S1_SUM = 1 + 0 + sum(range(1, 19)), sum(2 - k for k in range(1, 21))  # 172, -170
POINTS = 20 + 18


def test_earlier_run_is_scored_against_the_actuals_that_arrived_later(two_runs) -> None:
    lake, _, (first, second) = two_runs
    history = accuracy_history(lake, runs=5)
    runs = history.runs.set_index("run_id")
    assert list(history.runs["run_id"]) == [second, first] and list(history.runs["runs_ago"]) == [0, 1]
    assert history.message is None and history.last_actual == pd.Timestamp("2026-03-21").date()
    old = runs.loc[first]
    assert old["status"] == SCORED and old["origin"] == ORIGIN
    assert (old["points"], old["series"], old["days"], old["horizon_days"]) == (POINTS, 2, LATER, LATER)
    assert old["mae"] == pytest.approx(S1_ABS / POINTS) == pytest.approx(172 / 38)
    assert old["bias"] == pytest.approx(S1_SUM / POINTS) == pytest.approx(-170 / 38)
    assert old["coverage"] == pytest.approx((6 + 18) / POINTS)
    made = {r["run_id"]: r["finished"] for r in _manifests(lake)}
    assert old["made"] == pd.Timestamp(made[first]).tz_convert("UTC").tz_localize(None)
    new = runs.loc[second]
    assert new["status"] == NO_ACTUALS and new["points"] == 0 and np.isnan(new["mae"])
    assert new["origin"] == pd.Timestamp("2026-03-21") and "2026-03-21" in new["note"]
    # Per horizon bucket: days 1-7 (s1 k=1..7, s2 five days), days 8-30 (13 days each).
    buckets = history.buckets.set_index("horizon")
    assert list(buckets.index) == ["days 1-7", "days 8-30"] and set(history.buckets["run_id"]) == {first}
    assert buckets.loc["days 1-7", "points"] == 12 and buckets.loc["days 8-30", "points"] == 26
    assert buckets.loc["days 1-7", "mae"] == pytest.approx(16 / 12)
    assert buckets.loc["days 1-7", "bias"] == pytest.approx(-14 / 12)
    assert buckets.loc["days 1-7", "coverage"] == pytest.approx(11 / 12)
    assert buckets.loc["days 8-30", "mae"] == pytest.approx(6.0) and buckets.loc["days 8-30", "bias"] == -6.0
    assert buckets.loc["days 8-30", "coverage"] == pytest.approx(0.5)


def _manifests(lake: Lake) -> list[dict]:
    from capacity_forecaster.storage.manifest import list_runs

    return list_runs(lake, "forecast")


def test_a_rerun_on_the_same_data_has_no_actuals_yet(tmp_path: Path) -> None:
    lake, _, _ = _lake(tmp_path / "lake", extend=False)
    history = accuracy_history(lake, runs=5)
    assert list(history.runs["status"]) == [NO_ACTUALS, NO_ACTUALS] and history.scored.empty
    assert history.message is not None and history.message.startswith("No actuals yet")
    assert "metrics end 2026-03-01" in history.message


def test_one_run_failed_runs_and_the_runs_bound(tmp_path: Path) -> None:
    settings = Settings.model_validate({"lake": {"uri": str(tmp_path / "lake")}})
    lake = Lake.open(str(tmp_path / "lake"), settings.lake, for_writing=True)
    _etl(lake, settings, HISTORY)
    only = _forecast(lake, settings, ORIGIN)
    history = accuracy_history(lake, runs=5)
    assert history.message is not None and history.message.startswith(f"Only one forecast run so far ({only})")
    with pytest.raises(RuntimeError), stage_run(lake, "forecast", settings) as run:  # failed: never compared
        run.wrote(lake.write_table("forecasts", _forecasts(ORIGIN), validate=False))
        raise RuntimeError("boom")
    assert list(accuracy_history(lake, runs=5).runs["run_id"]) == [only]
    _etl(lake, settings, HISTORY + LATER)
    later = [_forecast(lake, settings, ORIGIN) for _ in range(2)]
    # runs=1: the current run and one earlier one.
    assert list(accuracy_history(lake, runs=1).runs["run_id"]) == [later[1], later[0]]
    assert len(accuracy_history(lake, runs=5).runs) == 3


def test_a_vacuumed_run_says_why_it_is_not_compared(tmp_path: Path) -> None:
    lake, _, (first, second) = _lake(tmp_path / "lake", retention_hours=0.0)
    # the stage's own vacuum kept the earlier forecasts (report.accuracy_runs + 1 versions) ...
    assert accuracy_history(lake, runs=5).runs.set_index("run_id").loc[first, "status"] != UNREADABLE
    lake.vacuum("forecasts", retention_hours=0)  # ... a vacuum by retention alone (capfc lake vacuum) does not
    history = accuracy_history(lake, runs=5)
    runs = history.runs.set_index("run_id")
    assert runs.loc[first, "status"] == UNREADABLE and "vacuumed" in runs.loc[first, "note"]
    assert runs.loc[second, "status"] == NO_ACTUALS
    assert history.message is not None and history.message.startswith("Nothing to compare yet: 1 of the last 2")


def test_score_runs_without_interval_columns_leaves_coverage_empty() -> None:
    forecasts = _forecasts(ORIGIN).drop(columns=["yhat_lower", "yhat_upper"]).assign(run_id="r1")
    actuals = _metrics(HISTORY + LATER)
    actuals = actuals[~actuals["is_imputed"] & actuals["value"].notna()]
    runs, buckets = score_runs(forecasts, actuals)
    assert runs["points"].iloc[0] == POINTS and runs["mae"].iloc[0] == pytest.approx(172 / 38)
    assert runs["coverage"].isna().all() and buckets["coverage"].isna().all()


def test_the_reports_show_the_section(two_runs) -> None:
    lake, settings, (first, _) = two_runs
    data = load_report_data(lake, settings)
    assert data.accuracy is not None and len(data.accuracy.scored) == 1
    page = build_html(data, pd.DataFrame(columns=["server_id", "ds", "metric", "value"]), []).decode()
    section = re.search(r'<section id="accuracy-history">(.*?)</section>', page, re.S)
    assert section is not None and "Forecast vs actual over time" in section[1]
    assert first in section[1] and "4.53" in section[1] and "-4.47" in section[1] and "63%" in section[1]
    assert "no actuals yet" in section[1] and "days 8-30" in section[1]
    book = load_workbook(io.BytesIO(build_workbook(data)), read_only=True)
    assert "Forecast vs actual" in SHEETS and book.sheetnames == list(SHEETS)
    rows = list(book["Forecast vs actual"].iter_rows(values_only=True))
    header = rows[0]
    scored = next(r for r in rows[1:] if r[header.index("Forecast run")] == first)
    assert scored[header.index("MAE (pts)")] == pytest.approx(172 / 38)
    assert scored[header.index("Actuals in interval")] == pytest.approx(24 / 38)
    start = next(i for i, r in enumerate(rows) if r[:len(BUCKET_HEADERS)] == tuple(BUCKET_HEADERS.values()))
    buckets = [r[:len(BUCKET_HEADERS)] for r in rows[start + 1:]]
    assert [r[2] for r in buckets] == ["days 1-7", "days 8-30"]
    assert buckets[0][3:] == (12, pytest.approx(16 / 12), pytest.approx(-14 / 12), pytest.approx(11 / 12))


def test_the_reports_say_so_in_one_line_when_nothing_overlaps(tmp_path: Path) -> None:
    lake, settings, _ = _lake(tmp_path / "lake", extend=False)
    data = load_report_data(lake, settings)
    page = build_html(data, pd.DataFrame(columns=["server_id", "ds", "metric", "value"]), []).decode()
    section = re.search(r'<section id="accuracy-history">(.*?)</section>', page, re.S)
    assert section is not None and "No actuals yet" in section[1] and "<table" not in section[1]
    book = load_workbook(io.BytesIO(build_workbook(data)), read_only=True)
    assert str(book["Forecast vs actual"]["A1"].value).startswith("No actuals yet")


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) is not installed")
def test_the_pdf_has_the_section(two_runs, tmp_path: Path) -> None:
    from capacity_forecaster.report.charts import render_charts
    from capacity_forecaster.report.data import HISTORY_COLUMNS
    from capacity_forecaster.report.pdf import build_pdf

    lake, settings, (first, _) = two_runs
    data = load_report_data(lake, settings)
    path = tmp_path / "pack.pdf"
    path.write_bytes(build_pdf(data, render_charts(data, pd.DataFrame(columns=list(HISTORY_COLUMNS)))))
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout
    assert "Forecast vs actual over time" in text
    assert re.search(rf"1\s+{first}.*\b38\b.*4\.53\s+-4\.47\s+63%", text)


def test_the_report_stage_says_so_in_one_line_with_one_forecast_run(full_report) -> None:
    from report_lake import report_file

    from capacity_forecaster.report.stage import HTML_FILE, XLSX_FILE

    _, result = full_report
    page = report_file(result, HTML_FILE).read_text(encoding="utf-8")
    section = re.search(r'<section id="accuracy-history">(.*?)</section>', page, re.S)
    assert section is not None and "<table" not in section[1]
    assert section[1].count("<p") == 1 and "Only one forecast run so far" in section[1]
    book = load_workbook(report_file(result, XLSX_FILE), read_only=True)
    assert str(book["Forecast vs actual"]["A1"].value).startswith("Only one forecast run so far")


def test_scores_are_the_same_whatever_the_chunk_of_servers(two_runs) -> None:
    lake, _, _ = two_runs
    whole, one_by_one = accuracy_history(lake, runs=5), accuracy_history(lake, runs=5, chunk_servers=1)
    pd.testing.assert_frame_equal(one_by_one.runs, whole.runs)
    pd.testing.assert_frame_equal(one_by_one.buckets, whole.buckets)
    assert (one_by_one.message, one_by_one.last_actual) == (whole.message, whole.last_actual)


def test_server_ranges_put_every_id_in_exactly_one_range() -> None:
    ids = ["s02", "s04", "s06", "s08", "s10"]
    ranges = server_ranges(ids, 2)
    table = pa.table({"server_id": ["s01", "s02", "s03", "s05", "s08", "s09", "s10", "s11", None]})
    parts = [pads.dataset(table).to_table(filter=r)["server_id"].to_pylist() for r in ranges]
    assert len(ranges) == 3 and sorted(sum(parts, []), key=str) == sorted(table["server_id"].to_pylist(), key=str)
    assert parts == [["s01", "s02", "s03", "s05", None], ["s08", "s09"], ["s10", "s11"]]
    assert server_ranges(ids, 5) == [None]
