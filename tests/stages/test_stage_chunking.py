"""Generate and ETL stages stream the fleet in chunks: the lake tables do not depend on the chunk size."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from capacity_forecaster.config import EtlConfig, GenerateConfig, LakeConfig, Settings
from capacity_forecaster.stages.etl import etl_stage
from capacity_forecaster.stages.raw import generate_stage
from capacity_forecaster.storage import Lake

GENERATED = ("inventory", "raw_metrics", "truth_servers", "truth_actual", "truth_future", "truth_anomalies")
PROCESSED = ("metrics", "features", "quarantine", "series_diagnostics")


def _settings(chunk: int) -> Settings:
    return Settings(
        generate=GenerateConfig(servers=11, years=0.4, holdout_days=20, seed=5, chunk_servers=chunk),
        etl=EtlConfig(batch_servers=chunk, imputation="seasonal"),
    )


def _tables(lake: Lake, names: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    out = {}
    for name in names:
        frame = lake.read_table(name)
        keys = [c for c in ("server_id", "metric", "ds", "kind", "reason", "value") if c in frame.columns]
        out[name] = frame.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
    return out


def _run(tmp_path: Path, chunk: int) -> tuple[Lake, dict[str, int | None]]:
    lake = Lake.open(str(tmp_path / f"lake-{chunk}"), LakeConfig(), for_writing=True)
    generated = generate_stage(lake, _settings(chunk))
    processed = etl_stage(lake, _settings(chunk))
    return lake, {"raw": generated.rows_out, "in": processed.rows_in, "out": processed.rows_out,
                  "quarantined": processed.rows_quarantined,
                  "created": processed.counts.get("rows_created")}


def test_tables_do_not_depend_on_the_chunk_size(tmp_path: Path) -> None:
    small, small_counts = _run(tmp_path, 3)
    big, big_counts = _run(tmp_path, 1000)
    assert small_counts == big_counts
    for name, frame in _tables(small, GENERATED + PROCESSED).items():
        pd.testing.assert_frame_equal(frame, _tables(big, (name,))[name], check_exact=True, obj=name)


def test_rows_are_conserved_across_batches(tmp_path: Path) -> None:
    lake, counts = _run(tmp_path, 4)
    assert counts["in"] == counts["raw"] == len(lake.read_table("raw_metrics"))
    assert counts["in"] == counts["out"] + counts["quarantined"] - counts["created"]
    assert counts["out"] == len(lake.read_table("metrics")) == len(lake.read_table("features"))
    etl_rows = lake.read_table("quarantine")
    assert (etl_rows["stage"] == "etl").sum() == counts["quarantined"]


def test_auto_imputation_is_chosen_the_same_whatever_the_batch_size(tmp_path: Path) -> None:
    """The choice is made on a seeded sample of the fleet before the first batch, not on the first batch."""
    runs = {}
    for chunk in (1, 1000):
        settings = _settings(chunk)
        settings = settings.model_copy(update={"etl": settings.etl.model_copy(update={"imputation": "auto"})})
        lake = Lake.open(str(tmp_path / f"auto-{chunk}"), LakeConfig(), for_writing=True)
        generate_stage(lake, settings)
        run = etl_stage(lake, settings)
        runs[chunk] = ({k: run.counts[k] for k in ("imputation", "imputation_mae_seasonal", "imputation_mae_knn")},
                       _tables(lake, ("metrics",))["metrics"])
    assert runs[1][0] == runs[1000][0]
    assert runs[1][0]["imputation_mae_seasonal"] is not None
    pd.testing.assert_frame_equal(runs[1][1], runs[1000][1], check_exact=True)


def test_the_server_filter_takes_ids_in_any_order() -> None:
    import pyarrow as pa
    import pyarrow.dataset as pads

    from capacity_forecaster.stages.chunks import server_filter

    data = pads.dataset(pa.table({"server_id": ["a", "b", "c", None], "value": [1, 2, 3, 4]}))
    picked = data.to_table(filter=server_filter(["c", "a"], False, True)).column("server_id").to_pylist()
    assert sorted(picked) == ["a", "c"]
    first = data.to_table(filter=server_filter(["b"], True, True)).column("server_id").to_pylist()
    assert first == ["b", None]


def test_a_series_with_only_empty_raw_days_is_counted_and_said_apart(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """helper-56: it was counted as quarantined whole and read "(0 days, mostly )"."""
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    generate_stage(lake, Settings(generate=GenerateConfig(servers=2, years=0.1, holdout_days=5)))
    raw = lake.read_table("raw_metrics")
    first = raw["server_id"].astype(str).min()
    raw.loc[(raw["server_id"].astype(str) == first) & (raw["metric"].astype(str) == "cpu"), "value"] = float("nan")
    lake.write_table("raw_metrics", raw)
    with caplog.at_level("WARNING"):
        run = etl_stage(lake, _settings(500))
    assert run.counts["series_without_values"] == 1 and run.counts["series_all_quarantined"] == 0
    assert f"1 series have no usable day, so they are not forecast: {first} cpu (no observed value)" in caplog.text


def test_a_series_whose_last_days_were_quarantined_is_said(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """helper-64: a VM at 210-260 % (above etl.saturation_max) for its last 20 days ended 20 days early after the ETL
    and read "no data since ..., check its monitoring" in risk, with nothing said at the ETL."""
    lake = Lake.open(str(tmp_path / "lake"), for_writing=True)
    generate_stage(lake, Settings(generate=GenerateConfig(servers=2, years=0.2, holdout_days=5)))
    raw = lake.read_table("raw_metrics")
    first = raw["server_id"].astype(str).min()
    last_day = raw["ds"].max()
    tail = ((raw["server_id"].astype(str) == first) & (raw["metric"].astype(str) == "cpu")
            & (raw["ds"] > last_day - pd.Timedelta(days=20)))
    raw.loc[tail, "value"] = 250.0
    lake.write_table("raw_metrics", raw)
    with caplog.at_level("WARNING"):
        run = etl_stage(lake, _settings(500))
    assert run.counts["series_cut_short"] == 1
    assert (f"1 series end long before their raw data because their last days were quarantined, so the risk stage "
            f"reads them as stale: {first} cpu (raw to {last_day:%Y-%m-%d}, usable to "
            f"{last_day - pd.Timedelta(days=20):%Y-%m-%d}, mostly out_of_range)") in caplog.text
    # The risk stage reads it among the ETL's lost series, with its last raw day (the reason says the ETL quarantined
    # its last days, not "check its monitoring").
    from capacity_forecaster.stages.risk import LakeSource

    lost = LakeSource(lake).lost_series()
    assert lost[["server_id", "metric"]].astype(str).values.tolist() == [[first, "cpu"]]
    assert lost["raw_last_ds"].tolist() == [last_day] and lost["n_obs"].tolist()[0] > 0
