"""The risk stage streams the fleet in chunks of servers: its tables do not depend on the chunk size."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from capacity_forecaster.config import EtlConfig, ForecastConfig, GenerateConfig, LakeConfig, RiskConfig, Settings
from capacity_forecaster.risk.calibration import from_summary
from capacity_forecaster.risk.scenarios import scenario_name
from capacity_forecaster.risk.stage import run_risk
from capacity_forecaster.risk.streaming import GrowthAssessor
from capacity_forecaster.stages.etl import etl_stage
from capacity_forecaster.stages.forecast import forecast_stage
from capacity_forecaster.stages.raw import generate_stage
from capacity_forecaster.stages.risk import LakeSource, risk_stage
from capacity_forecaster.storage import Lake

RISK_TABLES = ("server_risk", "clusters", "recommendations", "risk_calibration", "recommendation_options",
               "capacity_by_group", "risk_comparison", "scenario_risk", "scenario_recommendations")
GROWTH = 40.0


def _settings(chunk: int | None) -> Settings:
    return Settings(
        generate=GenerateConfig(servers=20, years=1.3, holdout_days=20, seed=11),
        etl=EtlConfig(imputation="seasonal"),
        forecast=ForecastConfig(models="seasonal_naive", horizon=45, backtest_windows=3, backtest_step=30, n_jobs=1),
        # Loose limits, so that every fleet-wide step has something to do: the calibration fit, the
        # analogue, consolidation across chunks.
        risk=RiskConfig(threshold=60.0, cluster_k_min=2, cluster_k_max=4, calibration_min_breaches=2,
                        isotonic_min_breaches=2, seasonal_min_uplift=0.02, analogue_min_days=1,
                        consolidation_candidate_max=50.0, consolidation_target=60.0, mix_nonprod_environments=True,
                        chunk_servers=chunk),
    )


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lake = Lake.open(str(tmp_path_factory.mktemp("risk-chunks") / "lake"), LakeConfig(), for_writing=True)
    for stage in (generate_stage, etl_stage, forecast_stage):
        stage(lake, _settings(None))
    return lake


def _risk_tables(lake: Lake, chunk: int | None) -> tuple[dict[str, pd.DataFrame], dict[str, object]]:
    run, _result = risk_stage(lake, _settings(chunk), growth=GROWTH)
    return {name: lake.read_table(name) for name in RISK_TABLES}, {"rows_in": run.rows_in, "rows_out": run.rows_out,
                                                                   "summary": run.counts["summary"]}


def test_risk_tables_do_not_depend_on_the_chunk_size(lake: Lake) -> None:
    small, small_run = _risk_tables(lake, 3)
    whole, whole_run = _risk_tables(lake, 1000)
    assert small_run == whole_run
    # Every fleet-wide step had something to do, so its inputs from the chunks are compared too.
    summary = small_run["summary"]
    assert isinstance(summary, dict) and summary["servers"] == 20
    assert {"upsize", "decommission", "consolidate", "rightsize", "keep"} <= set(summary["actions"])
    assert summary["calibration"]["method"] != "none" and summary["k"] >= 2
    assert (small["server_risk"]["analogue_days_above"] > 0).any()
    for name, frame in small.items():
        assert len(frame), name
        pd.testing.assert_frame_equal(frame, whole[name], check_exact=True, obj=name)


def test_run_risk_over_frames_is_the_one_chunk_stage(lake: Lake) -> None:
    tables, _run = _risk_tables(lake, 1000)
    cfg = _settings(None).risk.model_copy(update={"interval": _settings(None).forecast.interval})
    result = run_risk(lake.read_table("metrics"), lake.read_table("forecasts"), lake.read_table("inventory"), cfg,
                      growth=GROWTH, backtests=lake.read_table("backtest_forecasts"))
    assert result.scenario is not None
    for name, frame in (("server_risk", result.server_risk), ("recommendations", result.recommendations),
                        ("scenario_risk", result.scenario.server_risk)):
        stored = tables[name].drop(columns=["scenario"], errors="ignore")
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), stored, check_exact=True, check_dtype=False,
                                      obj=name)


SCENARIO = """
name: reshuffle
growth: 15
add:
  - {like: srv-0003, count: 2, scale: 1.3}
  - {cluster: steady, count: 1, id_prefix: clu}
remove: [srv-0006]
move:
  - {server_id: srv-0008, onto: srv-0013}
  - {server_id: srv-0010, datacenter: dc-new}
"""


def test_scenario_file_is_streamed_and_reads_only_the_servers_it_touches(lake: Lake, tmp_path: Path) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    tables = {}
    for chunk in (3, 1000):
        risk_stage(lake, _settings(chunk), scenario_file=path)
        tables[chunk] = {name: lake.read_table(name) for name in RISK_TABLES}
    for name, frame in tables[3].items():
        pd.testing.assert_frame_equal(frame, tables[1000][name], check_exact=True, obj=name)
    what_if = tables[3]["scenario_risk"].query("scenario == 'reshuffle-growth-15pct'")
    assert {"new-001", "new-002", "clu-001"} <= set(what_if["server_id"])
    assert not {"srv-0006", "srv-0008"} & set(what_if["server_id"])
    # Every server the scenario does not touch is assessed as under the plain growth what-if.
    risk_stage(lake, _settings(1000), growth=15.0)
    stored = lake.read_table("scenario_risk")  # every stored what-if, each under its name
    grown = stored[stored["scenario"].str.startswith("growth-15pct")]
    touched = {"srv-0003", "srv-0006", "srv-0008", "srv-0010", "srv-0013"}
    clones = {"new-001", "new-002", "clu-001"}
    template = set(tables[3]["clusters"].query("cluster_label == 'steady'")["server_id"])
    keep = sorted(set(what_if["server_id"]) - touched - clones - template)
    assert len(keep) >= 5

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["server_id"].isin(keep)].drop(columns="scenario").reset_index(drop=True)

    pd.testing.assert_frame_equal(rows(what_if), rows(grown), check_exact=True)
    # The host carries its own load and the moved server's: more than under growth alone.
    host = ("srv-0013", "cpu")
    peak = {name: frame.set_index(["server_id", "metric"])["peak_yhat"] for name, frame in (("scenario", what_if),
                                                                                            ("growth", grown))}
    assert peak["scenario"][host] > peak["growth"][host]


@pytest.mark.parametrize("chunk", [2, None])
def test_growth_assessor_gives_the_stored_growth_what_if_and_at_zero_the_base(lake: Lake, chunk: int | None) -> None:
    """What the dashboard's slider shows: the stored what-if of ``capfc risk --growth``, from the run's
    calibration (as its summary records it) and stored clusters, in chunks of 2 servers or in one."""
    tables, run = _risk_tables(lake, 3)
    settings = _settings(None)
    cfg = settings.risk.model_copy(update={"interval": settings.forecast.interval})
    summary = run["summary"]
    assert isinstance(summary, dict) and summary["calibration"]["method"] != "none"
    assessor = GrowthAssessor(LakeSource(lake), lake.read_table("inventory"), cfg,
                              from_summary(summary["calibration"], cfg), tables["clusters"], chunk)
    assert len(assessor.fleet.chunks) == (10 if chunk == 2 else 1)
    name = scenario_name(GROWTH, ramp=cfg.growth_ramp, file_name=None, given=None)

    def stored(table: str) -> pd.DataFrame:
        frame = tables[table]
        return frame[frame["scenario"] == name].drop(columns="scenario").reset_index(drop=True)

    for growth, risk, recs in ((GROWTH, stored("scenario_risk"), stored("scenario_recommendations")),
                               (0.0, tables["server_risk"], tables["recommendations"])):
        result = assessor.at(growth)
        assert len(risk) and len(recs)
        pd.testing.assert_frame_equal(result.server_risk.reset_index(drop=True), risk, check_exact=True,
                                      check_dtype=False, obj=f"server_risk at {growth:+g} %")
        pd.testing.assert_frame_equal(result.recommendations.reset_index(drop=True), recs, check_exact=True,
                                      check_dtype=False, obj=f"recommendations at {growth:+g} %")
    assert (tables["server_risk"]["risk_level"] != stored("scenario_risk")["risk_level"]).any()
