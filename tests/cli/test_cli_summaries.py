"""The one-screen summaries: savings as every report says them, the ETL line that adds up, plain singulars."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from capacity_forecaster.cli.common import out
from capacity_forecaster.cli.summaries import etl_line, print_risk_summary, savings_line, stage_line

# The 100-server demo's numbers: 34,080.34 / 112,656.32 = 30.2516 %, which the risk summary stores as 30.25.
DEMO = {"servers": 100, "fleet_monthly_cost": 112656.32, "net_monthly_savings": 34080.34, "net_savings_pct": 30.25,
        "gross_monthly_savings": 40000.0, "upsize_monthly_cost": 5919.66, "servers_without_cost": 0}


def test_net_share_is_the_one_every_report_prints() -> None:
    line = savings_line(DEMO)
    assert "(30.3 % of $112,656)" in line and "30.2 %" not in line
    assert line.startswith("savings: $34,080/month net")
    # Upsizing can outweigh the savings: the packs' "-$493", never "$-493" (helper-46).
    costly = savings_line({**DEMO, "net_monthly_savings": -493.4, "fleet_monthly_cost": 5000.0})
    assert costly.startswith("savings: -$493/month net (-9.9 % of $5,000)") and "$-" not in costly


def test_an_inventory_without_prices_is_not_priced_not_zero() -> None:
    unpriced = {**DEMO, "servers": 14, "fleet_monthly_cost": 0.0, "net_monthly_savings": 0.0,
                "net_savings_pct": 0.0, "gross_monthly_savings": 0.0, "upsize_monthly_cost": 0.0,
                "servers_without_cost": 14}
    line = savings_line(unpriced)
    assert line.startswith("savings: not priced (no monthly cost in the inventory") and "$0" not in line
    assert "0.0 %" not in line


def test_a_partly_priced_inventory_says_how_many_are_not_priced() -> None:
    line = savings_line({**DEMO, "servers_without_cost": 1})
    assert "1 of 100 servers has no monthly cost" in line and "(30.3 %" in line


def test_risk_summary_says_one_recent_day(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out, "width", 10_000)  # as the CLI sets it when piped: no table cell wraps
    row = {"server_id": "srv-0009", "metric": "cpu", "risk_level": "high", "status": "already_breaching",
           "days_over_recent": 1, "breach_ds": "2026-07-31", "days_to_breach": 31, "breach_probability": 0.6,
           "seasonal_peak": None}
    actions = {"decommission": 18, "keep": 46, "rightsize": 25, "upsize": 11}
    print_risk_summary({**DEMO, "scenario": "base", "at_risk": [row], "clusters": {}, "actions": actions})
    text = capsys.readouterr().out
    assert "now (1 recent day over)" in text and "1 recent days" not in text
    assert "(30.3 % of $112,656)" in text
    assert "recommended actions (servers): 11 upsize, 25 rightsize, 18 decommission, 46 keep" in text



def test_risk_table_names_stale_rows_and_drops_an_empty_seasonal_peak_column(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """fastStorage: 6 at risk beside 8 rows (2 stale), and a "seasonal peak" column no row filled."""
    monkeypatch.setattr(out, "width", 10_000)
    row = {"server_id": "fs-1", "metric": "cpu", "risk_level": "critical", "status": "already_breaching",
           "days_over_recent": 11, "breach_ds": None, "days_to_breach": 0, "breach_probability": 1.0,
           "seasonal_peak": ""}
    stale = {**row, "server_id": "fs-626", "status": "stale", "stale_since": "2013-08-27",
             "last_observed": "2013-09-11", "breach_probability": 0.99}
    print_risk_summary({**DEMO, "scenario": "base", "at_risk": [row, stale], "clusters": {}, "actions": {}})
    text = capsys.readouterr().out
    assert "stale ones last, levels as of their last data, not counted at risk" in text
    assert "stale: data stopped after 2013-08-27 (last seen 2013-09-11)" in text
    assert "seasonal peak" not in text
    print_risk_summary({**DEMO, "scenario": "base", "clusters": {}, "actions": {},
                        "at_risk": [{**row, "seasonal_peak": "month-end"}]})
    text = capsys.readouterr().out
    assert "seasonal peak" in text and "month-end" in text and "stale ones" not in text
    # A critical level whose median never crosses: the day the breach becomes likely (helper-48).
    likely = {**row, "status": "assessed", "breach_ds": None, "days_to_breach": None,
              "likely_breach_ds": "2024-12-17"}
    print_risk_summary({**DEMO, "scenario": "base", "at_risk": [likely], "clusters": {}, "actions": {}})
    assert "likely by 2024-12-17" in capsys.readouterr().out
    # ... and when the median crosses later, the earlier likely day (helper-73), as the packs say it.
    later = {**likely, "breach_ds": "2025-03-05", "days_to_breach": 85}
    print_risk_summary({**DEMO, "scenario": "base", "at_risk": [later], "clusters": {}, "actions": {}})
    text = capsys.readouterr().out
    assert "likely by 2024-12-17" in text and "2025-03-05" not in text
    line = next(row for row in text.splitlines() if "likely by" in row)
    assert "85" not in line  # no days to the median's crossing beside the likely day (helper-74)

def _etl(**counts: object) -> SimpleNamespace:
    return SimpleNamespace(stage="etl", rows_in=435282, rows_out=438397, rows_quarantined=1403, run_id="4b4b96a5ebf1",
                           counts={"rows_created": 4518, "rows_imputed_created": 4467, "rows_unfilled_created": 51,
                                   "rows_unfilled": 204, "rows_anomalies": 971, "imputation": "seasonal", **counts})


def test_etl_line_adds_up() -> None:
    """The demo lake's ETL manifest: in = out + quarantined - created, with the 51 days left empty counted."""
    stage = _etl()
    assert stage.rows_in == stage.rows_out + stage.rows_quarantined - stage.counts["rows_created"]
    line = etl_line(stage)
    assert ("etl: 435,282 rows in, 438,397 out, 1,403 quarantined, 4,518 days created (4,467 filled by imputation "
            "(seasonal), 51 left empty in gaps too long to fill or at a series' thin edge): in = out + quarantined - "
            "created") in line
    assert "204" not in line  # values left empty in source rows are not created days
    assert stage_line(stage) == line
    assert "stuck-sensor" not in line
    replaced = etl_line(_etl(rows_glitches=20))
    assert "in = out + quarantined - created; 20 stuck-sensor values replaced (value_raw keeps them); 971" in replaced


def test_run_says_files_for_the_report_stage() -> None:
    assert stage_line(SimpleNamespace(stage="report", rows_out=9, rows_quarantined=0, run_id="d902e2992ca5")) == (
        "report: 9 files written (run d902e2992ca5)")
    assert stage_line(SimpleNamespace(stage="risk", rows_out=400, rows_quarantined=0, run_id="r", counts={})) == (
        "risk: 400 rows out, 0 quarantined (run r)")


def test_run_says_when_it_generated_a_synthetic_fleet() -> None:
    """A mistyped --lake made capfc run generate the demo fleet; only an INFO line (hidden by -q) said so."""
    line = stage_line(SimpleNamespace(stage="generate", rows_out=438000, rows_quarantined=0, run_id="g"))
    assert line == ("generate: the lake had no raw metrics, so a synthetic demonstration fleet was written "
                    "(438,000 raw rows; capfc ingest brings your own exports) (run g)")
    assert etl_line(_etl(rows_anomalies=1)).endswith("1 anomaly flagged (run 4b4b96a5ebf1)")


def test_run_says_what_the_risk_stage_found() -> None:
    """capfc run's risk line is the risk summary's headline and savings, not a row count."""
    summary = {**DEMO, "scenario": "base", "servers_already_breaching": 3, "current_rule": "over the threshold on "
               ">= 3 of the last 14 observed days or on the last one", "servers_at_risk": 7,
               "series_by_level": {"critical": 2, "high": 3, "medium": 4, "low": 391}}
    line = stage_line(SimpleNamespace(stage="risk", rows_out=400, rows_quarantined=0, run_id="f1b3fe179095",
                                      counts={"summary": summary}))
    assert line.startswith("risk (base): 100 servers; already breaching 3 (over the threshold on >= 3 of the last")
    assert "7 at risk; series by level: critical 2, high 3, medium 4, low 391; savings: $34,080/month net" in line
    assert line.endswith("(run f1b3fe179095)") and "rows out" not in line


def test_cluster_labels_with_commas_stay_apart(capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Rnd's labels: "clusters: batch/month-end 2, idle, memory ~10 % 4, ..." ran one label into the next."""
    monkeypatch.setattr(out, "width", 10_000)
    clusters = {"batch/month-end": 2, "idle, memory ~10 %": 4, "idle, memory ~2 %": 1, "steady": 6}
    print_risk_summary({**DEMO, "scenario": "base", "at_risk": [], "clusters": clusters, "actions": {}})
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("workload clusters"))
    assert line == ("workload clusters: batch/month-end (2 servers); idle, memory ~10 % (4 servers); "
                    "idle, memory ~2 % (1 server); steady (6 servers)")


def test_forecast_line_says_model_fits_and_workers() -> None:
    """Not "194 units on local x2"."""
    from capacity_forecaster.stages.forecast import summary_line

    line = summary_line({"series": 28, "triage": {"model": 26, "baseline": 2}, "chosen": {"ensemble": 14},
                         "forecast_rows": 840, "units": 194, "engine": "local", "workers": 2, "seconds": 2.2})
    assert "194 model fits (backtests and final) on 2 local workers; 2.2 s" in line
    assert "units" not in line and " x2" not in line
    assert line.startswith("forecast: 28 series (26 for model selection, 2 on the baseline only (short or constant))")
    assert "extrapolated" not in line
    # capfc run prints only this line per stage: a horizon beyond the validated lead is said here too.
    line = summary_line({"series": 28, "triage": {"model": 28}, "extrapolated_series": 28})
    assert "0 failed series; 28 extrapolated beyond the lead their backtests validated" in line


def test_the_ingest_line_of_capfc_run_says_records_and_rows_apart() -> None:
    """helper-50: "6,222 quarantined" in the run's lines beside a quarantine table of 12,446 records."""
    stage = SimpleNamespace(stage="ingest", rows_in=341_702, rows_out=2_446, rows_quarantined=6_222,
                            quarantine_records=12_446, run_id="a33989c3fb78",
                            counts={"files": 42, "rows_used": 335_480})
    assert stage_line(stage) == ("ingested 42 file(s): 341,702 rows read, 335,480 used, 6,222 quarantined (12,446 "
                                 "quarantine records: a wide row can give one per metric); 2,446 daily values "
                                 "written, 0 day(s) completed from earlier runs (0 partial day(s) staged) (run "
                                 "a33989c3fb78)")
    # capfc ingest prints the same line; copies and excluded rows are said (helper-61: capfc run did not).
    stage.counts |= {"file_copies": 2, "rows_excluded": 6_000}
    assert stage_line(stage).startswith(
        "ingested 42 file(s) (2 a copy of another, read once): 341,702 rows read, 335,480 used, 6,222 quarantined "
        "(6,000 of them excluded by the mapping; 12,446 quarantine records")
