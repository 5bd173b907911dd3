"""Stages lake-to-lake: generate, ingest (local and s3:// sources), run manifests, re-runs."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from tests.conftest import REPO, SHARED_REAL

from capacity_forecaster.config import GenerateConfig, Settings, load_settings
from capacity_forecaster.pipeline import generate_stage, ingest_stage, summarize
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.manifest import list_runs
from capacity_forecaster.storage.sql import query

BITBRAINS = SHARED_REAL / "bitbrains_rnd" / "rnd"
MAPPING = REPO / "mappings" / "bitbrains.yaml"
needs_bitbrains = pytest.mark.skipif(not BITBRAINS.exists(), reason=f"shared data not found at {BITBRAINS}")


def small_settings(**generate: object) -> Settings:
    return Settings(generate=GenerateConfig(servers=6, years=1, holdout_days=30, **generate))


def test_generate_stage_writes_raw_truth_and_manifest(lake: Lake) -> None:
    run = generate_stage(lake, small_settings())
    names = {t.name for t in summarize(lake)}
    assert {"inventory", "raw_metrics", "truth_servers", "truth_actual", "truth_future", "truth_anomalies"} <= names
    (manifest,) = list_runs(lake, "generate")
    assert manifest["rows_out"] == run.rows_out == lake.table_info("raw_metrics").rows  # type: ignore[union-attr]
    assert manifest["tables"]["raw_metrics"]["rows"] == run.rows_out
    # a re-run replaces instead of appending
    generate_stage(lake, small_settings())
    assert lake.table_info("raw_metrics").rows == run.rows_out  # type: ignore[union-attr]


def test_generate_csv_format_writes_csv_copy(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    generate_stage(lake, small_settings(format="csv"))
    csv_files = [f for f in lake.list_files("raw/csv") if f.endswith(".csv")]
    assert any(f.startswith("raw/csv/inventory/") for f in csv_files)
    assert any("raw/csv/metrics/year=" in f for f in csv_files)
    header = (tmp_path / "lake" / [f for f in csv_files if "metrics" in f][0]).read_text().splitlines()[0]
    assert header.replace('"', "").split(",")[:4] == ["server_id", "ds", "metric", "value"]


@needs_bitbrains
def test_ingest_twice_does_not_duplicate(tmp_path: Path) -> None:
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    settings = load_settings(environ={})
    first = ingest_stage(lake, settings, [str(BITBRAINS / "2013-9")], str(MAPPING))
    rows = lake.table_info("raw_metrics").rows  # type: ignore[union-attr]
    quarantined = lake.table_info("quarantine").rows  # type: ignore[union-attr]
    again = ingest_stage(lake, settings, [str(BITBRAINS / "2013-9" / "*.csv")], str(MAPPING))
    assert lake.table_info("raw_metrics").rows == rows
    assert lake.table_info("quarantine").rows == quarantined
    assert first.rows_in == again.rows_in
    dupes = query(lake, "SELECT count(*) - count(DISTINCT (server_id, ds, metric)) AS d FROM raw_metrics")
    assert int(dupes["d"].iloc[0]) == 0
    (m1, m2) = list_runs(lake, "ingest")
    assert m1["rows_in"] == m2["rows_in"] > 0


@needs_bitbrains
def test_ingest_from_s3_source_into_s3_lake(s3_bucket: str, s3_endpoint: str) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for vm in ("1", "206"):
        client.upload_file(str(BITBRAINS / "2013-8" / f"{vm}.csv"), s3_bucket, f"exports/2013-8/{vm}.csv")
    lake = Lake.open(f"s3://{s3_bucket}/lake", for_writing=True)
    run = ingest_stage(lake, load_settings(environ={}), [f"s3://{s3_bucket}/exports/"], str(MAPPING))
    assert run.rows_in > 10_000
    servers = query(lake, "SELECT DISTINCT server_id FROM raw_metrics ORDER BY 1")["server_id"].tolist()
    assert len(servers) == 2


def test_forecast_and_risk_stages_write_contract_tables_and_checked_models(tmp_path: Path) -> None:
    from capacity_forecaster.config import ForecastConfig
    from capacity_forecaster.errors import ArtifactError
    from capacity_forecaster.forecast.artifacts import load_models
    from capacity_forecaster.pipeline import etl_stage, forecast_stage, risk_stage

    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    settings = Settings(
        generate=GenerateConfig(servers=4, years=1, holdout_days=30),
        forecast=ForecastConfig(horizon=30, models="seasonal_naive,harmonic", backtest_windows=2, n_jobs=1),
    )
    generate_stage(lake, settings)
    etl_stage(lake, settings)
    calls: list[tuple[str, int, int]] = []
    run = forecast_stage(lake, settings, lambda phase, done, total: calls.append((phase, done, total)))
    forecasts = lake.read_table("forecasts")
    assert len(forecasts) == 4 * 4 * 30
    assert forecasts[["yhat", "yhat_lower", "yhat_upper"]].stack().between(0, 100).all()
    assert (forecasts["yhat_lower"] <= forecasts["yhat"]).all() and (forecasts["yhat"] <= forecasts["yhat_upper"]).all()
    assert calls and calls[-1][1] == calls[-1][2]  # the last phase ends complete
    (manifest,) = list_runs(lake, "forecast")
    assert manifest["artifacts"] == run.artifacts and run.artifacts
    records = [{"path": p, "sha256": h, "bytes": 0, "model": "", "metric": "", "n_series": 0}
               for p, h in manifest["artifacts"].items()]
    assert len(load_models(records, lake.read_bytes)) == len(records)
    tampered = records[0]["path"]
    lake.write_bytes(tampered, (lake.read_bytes(tampered) or b"") + b"x")
    with pytest.raises(ArtifactError, match="fails its checksum"):
        load_models(records, lake.read_bytes)
    _run, result = risk_stage(lake, settings)
    risk = lake.read_table("server_risk")
    assert len(risk) == 16 and set(risk["risk_level"]) <= {"critical", "high", "medium", "low"}
    recs = lake.read_table("recommendations")
    assert set(recs["server_id"]) == set(lake.read_table("inventory")["server_id"])
    assert result.summary["servers"] == 4
    assert query(lake, "SELECT count(*) AS n FROM clusters")["n"].iloc[0] == 4


def test_capfc_run_after_a_first_ingest_that_died_refuses_instead_of_generating(tmp_path: Path) -> None:
    """helper-57: the dead ingest's table reads as absent, and `capfc run` generated the synthetic fleet there."""
    import pandas as pd

    from capacity_forecaster import pipeline
    from capacity_forecaster.errors import InputError
    from capacity_forecaster.storage.manifest import stage_run

    uri = str(tmp_path / "lake")
    settings = load_settings(None, {"lake.uri": uri}, environ={})
    lake = Lake.open(uri, for_writing=True)
    raw = pd.DataFrame({"server_id": ["db-1"] * 3, "ds": pd.date_range("2024-03-01", periods=3), "metric": "cpu",
                        "value": [10.0, 11.0, 12.0]})
    with pytest.raises(RuntimeError), stage_run(lake, "ingest", settings) as run:
        run.wrote(lake.write_table("raw_metrics", raw, validate=False))
        raise RuntimeError("killed before the inventory commit")
    with pytest.raises(InputError, match=rf"the first ingest into .* \(run {run.run_id}\) did not complete"):
        pipeline.run(settings)
    assert [r["stage"] for r in list_runs(Lake.open(uri))] == ["ingest"]  # nothing generated
