"""Reading the lake for reports: tables, DuckDB aggregates, ranking, KPIs, and absent tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_lake import RISKIEST, SERVERS

from capacity_forecaster.report.data import WHATIF_MISSING, applied_thresholds, load_report_data, profile_features
from capacity_forecaster.report.risks import ranked_risks
from capacity_forecaster.report.summary import assumptions, cluster_map, kpis, model_accuracy
from capacity_forecaster.storage import Lake
from capacity_forecaster.storage.sql import connect


def test_full_lake_loads_every_table_and_aggregate(report_lake: Lake, settings) -> None:
    data = load_report_data(report_lake, settings)
    assert data.missing == {"risk_comparison": WHATIF_MISSING}  # every stage table but a stored what-if
    # Forecasts are summarised per series (their daily rows grow with the fleet and are read on demand).
    assert set(data.tables) == {"inventory", "server_risk", "clusters", "recommendations", "backtests"}
    rows = report_lake.read_table("forecasts")
    by_series = rows.groupby(["server_id", "metric"])
    assert data.forecasts is not None and data.forecasts.rows == len(rows)
    series = data.forecasts.series.set_index(["server_id", "metric"])
    assert (series["days"] == by_series.size()).all() and (series["model"] == by_series["model"].first()).all()
    assert (series["first"] == by_series["ds"].min()).all() and (series["last"] == by_series["ds"].max()).all()
    assert str(data.period[1]) == "2026-06-30"
    assert set(data.weekly["server_id"]) == set(SERVERS)
    assert data.weekly["value"].between(0, 100).all()
    # The heatmap's weekly peak is the week's highest daily P95, never below the weekly mean.
    both = data.peaks.merge(data.weekly, on=["server_id", "week"], suffixes=("_peak", "_mean"))
    assert len(both) == len(data.weekly) and (both["value_peak"] >= both["value_mean"] - 1e-9).all()
    # Weeks of 4+ observed days, and the data's last week in part (the days that make a server breaching now
    # were off the heatmap: helper-52); the weekly mean leaves it out.
    last = data.peaks["week"] == data.peaks["week"].max()
    assert data.peaks.loc[~last, "days"].between(4, 7).all() and data.peaks.loc[last, "days"].eq(2).all()
    assert str(data.peaks["week"].max().date()) == "2026-06-29" and data.weekly["week"].max() < data.peaks["week"].max()
    assert len(data.profiles) == len(SERVERS) and not data.profiles.isna().any().any()


def test_ranking_puts_the_riskiest_series_first_and_kpis_count_servers(report_lake: Lake, settings) -> None:
    data = load_report_data(report_lake, settings)
    ranked = ranked_risks(data)
    assert (ranked.loc[0, "server_id"], ranked.loc[0, "metric"]) == (RISKIEST, "cpu")
    assert list(ranked["risk_level"].head(3)) == ["critical", "high", "medium"]
    assert ranked.loc[0, "hostname"] == "nyc-prd-app01" and ranked.loc[0, "model"] == "autoets"
    values = {k.key: k for k in kpis(data, ranked)}
    assert values["servers"].value == len(SERVERS)
    assert values["at_risk"].value == 3 and values["critical"].value == 1
    assert values["earliest_breach"].text == str(ranked.loc[0, "breach_ds"].date())
    assert values["net_savings"].text == "$675"
    assert values["horizon"].text == "90 days"


def test_model_accuracy_and_cluster_map(report_lake: Lake, settings) -> None:
    data = load_report_data(report_lake, settings)
    accuracy = model_accuracy(data.table("backtests"))
    assert list(accuracy["model"])[-1] == "seasonal_naive"
    assert accuracy.set_index("model").loc["autoets", "selected"] == 16
    # Per series first (the mean over its windows), then the median across series: the executive summary's
    # "median of the chosen models" is the same statistic.
    bt = data.table("backtests")
    one = bt[bt["model"] == "autoets"].groupby(["server_id", "metric"])["mase"].mean().median()
    assert accuracy.set_index("model").loc["autoets", "median_mase"] == pytest.approx(one)
    points = cluster_map(data)
    assert len(points) == len(SERVERS) and set(points["cluster_label"]) == {"growing", "idle", "steady business-day"}
    # Named profile features a planner reads (average vs peak CPU), not principal components.
    assert list(points.columns) == ["server_id", "level", "peak", "peak_ratio", "cluster_label"]
    assert set(points.attrs["axes"]) == {"level", "peak"} and "CPU" in points.attrs["axes"]["peak"]
    assert np.isfinite(points[["level", "peak"]].to_numpy(float)).all()
    assert (points["peak"] >= points["level"] - 1e-9).all() and points["level"].between(0, 100).all()
    idle = points.set_index("server_id").loc["srv-0008"]
    assert idle["level"] < 10 < points["level"].max()


def test_absent_tables_say_which_command_to_run(etl_only_lake: Lake, settings) -> None:
    data = load_report_data(etl_only_lake, settings)
    assert data.missing["forecasts"] == "not available: run capfc forecast"
    assert data.missing["server_risk"] == "not available: run capfc risk"
    assert ranked_risks(data).empty
    values = {k.key: k for k in kpis(data)}
    assert values["servers"].value == len(SERVERS)
    assert "run capfc risk" in values["at_risk"].note and values["net_savings"].value is None
    assert "run capfc forecast" in values["accuracy"].note
    rows = {a: (v, n) for a, v, n in assumptions(data)}
    assert rows["Breach threshold"][0] == "80 % of capacity" and rows["Data period"][0].startswith("2025-11-03")


def test_forecasts_without_a_backtest_say_the_histories_were_too_short(report_lake: Lake, settings) -> None:
    """helper-72: a day or two of data, forecast run: the MASE card said "run capfc forecast"."""
    import dataclasses

    data = load_report_data(report_lake, settings)
    short = dataclasses.replace(data, tables={k: v for k, v in data.tables.items() if k != "backtests"})
    note = {k.key: k for k in kpis(short)}["accuracy"].note
    assert note == "no backtest: the histories are too short to check a forecast on"


def test_heatmap_metric_is_configurable(report_lake: Lake, settings) -> None:
    custom = settings.model_copy(update={"report": settings.report.model_copy(update={"heatmap_metric": "memory"})})
    cpu = load_report_data(report_lake, settings).weekly
    memory = load_report_data(report_lake, custom).weekly
    assert len(memory) == len(cpu) and not np.allclose(memory["value"], cpu["value"])


def test_already_breaching_series_lead_the_ranking_the_cards_and_the_messages(report_lake: Lake, settings) -> None:
    import dataclasses

    from capacity_forecaster.report.html import _top_risk_rows
    from capacity_forecaster.report.risks import already_breaching, breach_when
    from capacity_forecaster.report.summary import headlines

    data = load_report_data(report_lake, settings)
    risk = data.tables["server_risk"].copy()
    calm = risk.index[risk["risk_level"] == "low"][0]
    risk.loc[calm, ["status", "risk_level", "days_over_recent"]] = ["already_breaching", "high", 9]
    data = dataclasses.replace(data, tables={**data.tables, "server_risk": risk})
    ranked = ranked_risks(data)
    first = ranked.iloc[0]
    assert (first["server_id"], first["metric"]) == (risk.loc[calm, "server_id"], risk.loc[calm, "metric"])
    assert len(already_breaching(ranked)) == 1 and breach_when(first.to_dict()) == ("now", "0")
    values = {k.key: k for k in kpis(data, ranked)}
    assert values["already_breaching"].value == 1
    # Its server has a critical cpu forecast: a critical server, although its first-ranked row (breaching now on
    # another metric) is high; the critical card has nothing to explain.
    breaching_server = risk.loc[calm, "server_id"]
    assert (risk.loc[risk["server_id"] == breaching_server, "risk_level"] == "critical").any()
    assert values["critical"].value == 1 and "already breaching is high" not in values["critical"].note
    # A server breaching now whose forecasts are all under the threshold is high: the critical card says why.
    calm_servers = risk.groupby("server_id")["risk_level"].transform(lambda v: (v == "low").all())
    quiet = risk.index[calm_servers & (risk["server_id"] != breaching_server)][0]
    risk.loc[quiet, ["status", "risk_level", "days_over_recent"]] = ["already_breaching", "high", 4]
    both = dataclasses.replace(data, tables={**data.tables, "server_risk": risk})
    note = {k.key: k for k in kpis(both, ranked_risks(both))}["critical"].note
    assert note.endswith("already breaching is high, not critical: its forecast makes no new breach likely within "
                         "30 days") and "1 of the 2 already breaching" in note
    assert values["earliest_breach"].text == "now" and values["earliest_breach"].note.startswith(
        f"{first['server_id']} {first['metric']}: over on 9 of the last 14")
    said = headlines(data, ranked)
    assert said[0].startswith("The data end on ")  # the fixture's data end months before today
    assert said[1].startswith("1 server is already breaching (over the threshold on >= 3")
    # Beside it, what breaches next and when (helper-69: page 1 said "now" and nothing of the forecast breaches).
    coming = ranked[(ranked["status"] != "already_breaching") & ranked["risk_level"].isin(("critical", "high",
                                                                                             "medium"))]
    coming = coming.dropna(subset=["breach_ds"]).sort_values(["breach_ds", "server_id"], kind="stable")
    assert len(coming)
    nxt = coming.iloc[0]
    (line,) = [s for s in said if s.startswith("Next forecast breaches: ")]
    assert line.startswith(f"Next forecast breaches: {nxt['server_id']} {nxt['metric']} on "
                           f"{nxt['breach_ds']:%Y-%m-%d} (day {int(nxt['days_to_breach'])})")
    table = _top_risk_rows(ranked, 5)
    first_row = table.split("<tbody>")[1].split("</tr>")[0]
    assert str(first["server_id"]) in first_row and ">now<" in first_row


def test_profile_features_are_the_same_whatever_the_chunk_of_servers(report_lake: Lake) -> None:
    con = connect(report_lake)
    try:
        whole, one_by_one = profile_features(con), profile_features(con, 1)
    finally:
        con.close()
    assert len(whole) == len(SERVERS)
    pd.testing.assert_frame_equal(one_by_one, whole, rtol=1e-12)


def test_a_generated_fleet_is_called_synthetic_an_ingested_one_is_not(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A mistyped --lake makes capfc run generate a fleet: no pack may pass it off as the user's servers."""
    from capacity_forecaster.config import Settings
    from capacity_forecaster.report.summary import fleet_text
    from capacity_forecaster.stages.raw import generate_stage, ingest_stage
    from capacity_forecaster.storage import Lake

    settings = Settings.model_validate({"generate": {"servers": 2, "years": 0.2}})
    generated = Lake.open(str(tmp_path / "generated"), for_writing=True)
    generate_stage(generated, settings)
    assert fleet_text(load_report_data(generated, settings)) == "2 servers (synthetic demonstration fleet)"
    csv = tmp_path / "export.csv"
    csv.write_text("server_id,ds,metric,value\nweb-1,2025-01-01,cpu,40\n")
    ingested = Lake.open(str(tmp_path / "ingested"), for_writing=True)
    ingest_stage(ingested, settings, [str(csv)], None)
    assert fleet_text(load_report_data(ingested, settings)) == "1 server"


def test_scenarios_stored_within_one_second_are_ordered_by_when_they_were_stored() -> None:
    """Lakes before microsecond stamps: 'created' ties, and the index row stored last is the most recent."""
    from capacity_forecaster.report.data import ordered_scenarios

    comparison = pd.DataFrame({"scenario": ["growth-20pct", "growth-40pct-step"]})
    same_second = "2026-12-06T19:30:01+00:00"
    index = pd.DataFrame({"scenario": ["growth-40pct-step", "growth-20pct"], "created": [same_second] * 2})
    assert ordered_scenarios(comparison, index) == ["growth-20pct", "growth-40pct-step"]
    index["created"] = ["2026-12-06T19:30:02.000001+00:00", same_second]  # a later second wins over position
    assert ordered_scenarios(comparison, index) == ["growth-40pct-step", "growth-20pct"]


def _with_risk(data, **risk):
    import dataclasses

    settings = data.settings.model_copy(update={"risk": data.settings.risk.model_copy(update=risk)})
    return dataclasses.replace(data, settings=settings)


def test_level_definitions_fit_the_thresholds_and_the_forecast_horizon(report_lake: Lake, settings) -> None:
    """A 7- or 30-day forecast cannot find a breach "within 90 days": the assumptions said so anyway."""
    data = load_report_data(report_lake, settings)  # the fixture's forecasts run 90 days
    rows = {a: (v, n) for a, v, n in assumptions(data)}
    assert rows["Critical"][0] == "breach likely within 30 days" and rows["High"][0] == "breach likely within 90 days"
    # The horizon between critical_days and high_days: High covers the rest of the forecast, no further.
    rows = {a: (v, n) for a, v, n in assumptions(_with_risk(data, critical_days=14, high_days=180))}
    assert rows["Critical"][0] == "breach likely within 14 days"
    assert rows["High"][0] == "breach likely on days 15-90 (the end of the forecast)"
    assert "the high window (180 days) reaches past the forecast" in rows["High"][1]
    # The whole horizon within critical_days (fastStorage: 7 days, critical_days 30): High is already breaching.
    short = _with_risk(data, critical_days=120, high_days=200)
    rows = {a: (v, n) for a, v, n in assumptions(short)}
    assert rows["Critical"][0] == "breach likely within the 90-day forecast"
    assert rows["High"][0].startswith("already breaching") and "200 days" not in " ".join(rows["High"])
    # The rule is the probability, not the median (helper-50: VM 206 critical with a median peak of 78 %).
    assert rows["High"][0].endswith("a new breach not likely within the forecast (probability < 0.5)")
    assert "whether or not the median forecast crosses" in rows["Critical"][1]
    assert rows["Medium"][0] == "a breach on at least 3 days within the 90-day forecast has probability >= 0.3"
    assert {k.key: k for k in kpis(short)}["critical"].note == "breach likely within the 90-day forecast"
    assert not any("within 120 days" in " ".join(r) or "within 200 days" in " ".join(r) for r in assumptions(short))


def test_headlines_say_why_servers_without_a_full_history_are_only_kept(report_lake: Lake, settings) -> None:
    """fastStorage: 31 days of history for a 60-day assessment; its idle servers were kept and nothing said why."""
    import dataclasses

    from capacity_forecaster.report.summary import headlines

    data = load_report_data(report_lake, settings)
    recs = data.tables["recommendations"].copy()
    said = " ".join(headlines(data, ranked_risks(data)))
    assert "without a sizing review" not in said
    recs["finding"] = ["insufficient_data"] * 3 + ["optimized"] * (len(recs) - 3)
    thin = dataclasses.replace(data, tables={**data.tables, "recommendations": recs})
    said = " ".join(headlines(thin, ranked_risks(thin)))
    assert ("3 servers are kept without a sizing review: cpu and memory are not both forecast on at least 60 days "
            "of history") in said
    # fastStorage has no memory at all: more history will not help, and the sentence says what will not.
    risk = thin.tables["server_risk"]
    blind = risk[~((risk["metric"] == "memory") & risk["server_id"].isin(recs["server_id"].head(2)))]
    no_memory = dataclasses.replace(thin, tables={**thin.tables, "server_risk": blind})
    said = " ".join(headlines(no_memory, ranked_risks(no_memory)))
    assert ("2 servers are kept without a sizing review: the data have no memory utilisation for them" in said
            and "1 server is kept without a sizing review: cpu and memory are not both forecast" in said)
    # A server only in the inventory has no metrics at all: it is not "without memory utilisation".
    gone = blind[blind["server_id"] != recs["server_id"].iloc[0]]
    absent = dataclasses.replace(thin, tables={**thin.tables, "server_risk": gone})
    said = " ".join(headlines(absent, ranked_risks(absent)))
    assert ("1 server of the inventory has no metrics in the data: nothing could be assessed for it." in said
            and "1 server is kept without a sizing review: the data have no memory utilisation for it," in said)
    # A memory series quarantined whole (no_data) is no memory utilisation either: more data would not help.
    lost = risk.copy()
    lost.loc[(lost["metric"] == "memory") & (lost["server_id"] == recs["server_id"].iloc[2]), "status"] = "no_data"
    quarantined = dataclasses.replace(thin, tables={**thin.tables, "server_risk": lost})
    said = " ".join(headlines(quarantined, ranked_risks(quarantined)))
    assert "kept without a sizing review: the data have no memory utilisation" in said
    assert "3 servers are kept without a sizing review: cpu and memory" not in said
    # A stale server has its own message (helper-46: a stale NAB server "has no memory utilisation").
    stale = lost.copy()
    stale.loc[stale["server_id"] == recs["server_id"].iloc[2], "status"] = "stale"
    stale_lake = dataclasses.replace(thin, tables={**thin.tables, "server_risk": stale})
    said = " ".join(headlines(stale_lake, ranked_risks(stale_lake)))
    assert "no memory utilisation" not in said and "2 servers are kept without a sizing review: cpu and memory" in said


def test_assumptions_say_how_many_days_rest_on_few_samples(tmp_path, settings) -> None:
    """Rnd in UTC days: the first day and 31 July hold 2 hours of samples each; the pack never said so."""
    from capacity_forecaster.config import LakeConfig
    from capacity_forecaster.storage.manifest import stage_run

    lake = Lake.open(str(tmp_path / "lake"), LakeConfig(), for_writing=True)
    assert load_report_data(lake, settings).coverage is None  # no raw rows: no row in the assumptions
    days = pd.date_range("2013-06-30", periods=10).date
    raw = pd.DataFrame({"server_id": "vm-1", "ds": list(days) * 2, "metric": ["cpu"] * 10 + ["memory"] * 10,
                        "value": 50.0, "coverage": 1.0, "low_coverage": False})
    raw.loc[[0, 10, 9], ["coverage", "low_coverage"]] = [0.083, True]
    with stage_run(lake, "ingest", settings) as run:
        run.wrote(lake.write_table("raw_metrics", raw))
    data = load_report_data(lake, settings)
    assert data.coverage == (3, 20)
    rows = {a: (v, n) for a, v, n in assumptions(data)}
    assert rows["Sample coverage"][0] == "3 of 20 server-metric days under 50 % of their samples"
    assert "partial first and last days" in rows["Sample coverage"][1]


def test_recommendations_are_ordered_most_urgent_first() -> None:
    from capacity_forecaster.report.risks import ordered_recommendations

    recs = pd.DataFrame({
        "server_id": ["keep-a", "dec-a", "up-late", "up-now", "right-a", "right-b"],
        "action": ["keep", "decommission", "upsize", "upsize", "rightsize", "rightsize"],
        "needed_by": [pd.NaT, pd.NaT, pd.Timestamp("2026-09-01"), pd.Timestamp("2026-06-30"), pd.NaT, pd.NaT],
        "monthly_savings": [0.0, 900.0, -300.0, -100.0, 50.0, 400.0]})
    assert ordered_recommendations(recs)["server_id"].tolist() == [
        "up-now", "up-late", "right-b", "right-a", "dec-a", "keep-a"]


def test_a_pack_made_long_after_its_data_says_as_of_when(report_lake: Lake, settings) -> None:
    import dataclasses
    import datetime as dt

    from capacity_forecaster.report.summary import data_age_text

    data = load_report_data(report_lake, settings)
    last = data.period[1]
    late = dataclasses.replace(data, generated=dt.datetime.combine(last, dt.time(9), dt.UTC) + dt.timedelta(days=160))
    assert data_age_text(late) == (f"The data end on {last}, 160 days before this report: \u201cnow\u201d, "
                                   f"\u201calready breaching\u201d and every date here are as of {last}.")
    fresh = dataclasses.replace(data, generated=dt.datetime.combine(last, dt.time(9), dt.UTC) + dt.timedelta(days=3))
    assert data_age_text(fresh) == ""


def test_forecasts_beyond_the_validated_lead_are_said_in_the_headlines_and_assumptions(report_lake: Lake,
                                                                                        settings) -> None:
    """Rnd with 62 days of history and h = 30: backtests validate 15 days ahead, and no report said so."""
    import dataclasses

    from capacity_forecaster.report.summary import headlines

    data = load_report_data(report_lake, settings)
    assert data.forecasts is not None
    series = data.forecasts.series.copy()
    said = " ".join(headlines(data, ranked_risks(data)))
    assert ("extrapolation" in said) == bool(series["extrapolated_from"].notna().any())
    series["extrapolated_from"] = pd.NaT
    series.loc[series.index[:3], "extrapolated_from"] = series["first"].iloc[:3] + pd.Timedelta(days=15)
    beyond = dataclasses.replace(data, forecasts=dataclasses.replace(data.forecasts, series=series))
    said = " ".join(headlines(beyond, ranked_risks(beyond)))
    horizon = int(series["days"].max())
    assert (f"Forecasts of 3 of {len(series)} series reach beyond what their history let the backtests check (for the "
            f"median one, the first 15 days of {horizon}): later days are extrapolation") in said
    baseline = series.assign(extrapolated_from=series["first"])  # baseline series: extrapolated from day 1
    never = dataclasses.replace(data, forecasts=dataclasses.replace(data.forecasts, series=baseline))
    said = " ".join(headlines(never, ranked_risks(never)))
    assert (f"reach beyond what their history let the backtests check ({len(series)} of them on no backtest at "
            f"all: too short a history to check any of the {horizon} days): later days are extrapolation") in said
    assert "the first 0 days" not in said
    rows = {row[0]: row for row in assumptions(beyond)}
    assert rows["Forecast horizon"][2].endswith(
        f"; 3 of {len(series)} series extrapolated beyond the lead their backtests validated")


def test_the_appendix_names_no_earlier_report_run_as_this_one(report_lake: Lake, settings) -> None:
    """helper-40: 'Last report run 04:26' in a pack generated at 05:54 (the report being written is not a run yet)."""
    import dataclasses

    data = load_report_data(report_lake, settings)
    runs = [{"stage": "etl", "run_id": "e1", "finished": "2026-12-07T04:00:00"},
            {"stage": "report", "run_id": "r0", "finished": "2026-12-07T04:26:51"}]
    rows = {row[0] for row in assumptions(dataclasses.replace(data, runs=runs))}
    assert "Last etl run" in rows and "Last report run" not in rows and "Report generated" in rows


def test_six_breaching_series_are_all_named_not_five_and_one_more(report_lake: Lake, settings) -> None:
    from capacity_forecaster.report.summary import headlines

    data = load_report_data(report_lake, settings)
    ranked = ranked_risks(data)
    now = ranked.copy()
    now.loc[now.index[:6], ["status", "days_over_recent"]] = ["already_breaching", 5]
    said = " ".join(headlines(data, now))
    assert "and 1 more" not in said and said.count("(5 days over)") == 6
    # Under the rule's 3 days, a series qualifies by its last day alone: said (helper-50, the demo's srv-0009).
    now.loc[now.index[:6], "days_over_recent"] = [1, 2, 5, 5, 5, 5]
    said = " ".join(headlines(data, now))
    assert "(1 day over: its last observed day)" in said and "(2 days over, its last observed day among them)" in said


def test_chosen_for_counts_the_published_forecasts_baselines_included() -> None:
    """helper-46 (NAB): "Recent level ... chosen for 0 series" in the PDF while the CLI said recent_level 1: a series
    too short for any backtest publishes the baseline without a selected backtest row."""
    from capacity_forecaster.report.summary import model_accuracy

    backtests = pd.DataFrame({"server_id": ["a", "a", "b"], "metric": "cpu", "model": ["combo", "level", "level"],
                              "cutoff": pd.Timestamp("2024-01-01"), "mase": [0.7, 0.9, 1.1], "mape": 0.1,
                              "mae": 1.0, "coverage": 0.8, "selected": [True, False, False]})
    assert model_accuracy(backtests).set_index("model")["selected"].to_dict() == {"combo": 1, "level": 0}
    published = pd.Series({"combo": 1, "level": 1})
    assert model_accuracy(backtests, published).set_index("model")["selected"].to_dict() == {"combo": 1, "level": 1}


def test_a_hostname_that_is_the_id_in_another_case_adds_nothing() -> None:
    """helper-46: the heatmap read "AMS-DB-01.BANK.LOCAL" (the CMDB's spelling) where every other output said
    "AMS-DB-01.bank.local"."""
    import datetime as dt

    from capacity_forecaster.report.data import ReportData, server_names
    from capacity_forecaster.report.text import server_title

    inventory = pd.DataFrame({"server_id": ["AMS-DB-01.bank.local", "srv-1"],
                              "hostname": ["AMS-DB-01.BANK.LOCAL", "nyc-app-01"]})
    data = ReportData(lake_uri="x", settings=None, tables={"inventory": inventory},  # type: ignore[arg-type]
                      generated=dt.datetime(2026, 1, 1))
    assert server_names(data) == {"srv-1": "nyc-app-01"}
    assert server_title("AMS-DB-01.bank.local", "AMS-DB-01.BANK.LOCAL") == "AMS-DB-01.bank.local"
    assert server_title("srv-1", "nyc-app-01") == "srv-1 (nyc-app-01)"


def test_the_cluster_map_rings_no_stale_server() -> None:
    """helper-50: fastStorage's map ringed 8 (two stale) beside the packs' 6 critical servers."""
    from capacity_forecaster.report.summary import cluster_ringed

    ranked = pd.DataFrame({"server_id": ["a", "b", "c"], "metric": "cpu", "level_code": [3, 3, 1],
                           "status": ["already_breaching", "stale", "assessed"], "risk_level": ["critical", "critical",
                                                                                                  "medium"]})
    assert cluster_ringed(ranked) == {"a"}


def test_the_packs_use_the_thresholds_the_risk_run_applied(report_lake: Lake, settings) -> None:
    """helper-53: after `capfc risk --threshold 70` with memory at 85, the Assumptions said "80 %, overrides: none"
    and the Forecast data sheet counted days over 80."""
    import dataclasses

    risk = pd.DataFrame({"server_id": ["a", "a", "b", "b"], "metric": ["cpu", "memory", "cpu", "memory"],
                         "threshold": [70.0, 85.0, 70.0, 85.0]})
    applied = applied_thresholds(settings, risk)
    assert (applied.risk.threshold, applied.risk.metric_thresholds) == (70.0, {"memory": 85.0})
    assert applied.risk.threshold_for("disk") == 70.0 and applied.risk.headroom == settings.risk.headroom
    data = dataclasses.replace(load_report_data(report_lake, settings), settings=applied)
    rows = {name: (value, note) for name, value, note in assumptions(data)}
    assert rows["Breach threshold"] == ("70 % of capacity", "per-metric overrides: memory 85 %")
    # a risk run at the configured thresholds, or a lake without the column, leaves the settings as they are
    assert applied_thresholds(settings, risk.assign(threshold=80.0)) is settings
    assert applied_thresholds(settings, risk.drop(columns="threshold")) is settings
    # helper-57: a tie kept the lower as the general threshold and dropped the configured overrides of metrics
    # the run did not assess
    tie = settings.model_copy(update={"risk": settings.risk.model_copy(update={"metric_thresholds": {"disk": 90.0}})})
    applied = applied_thresholds(tie, risk.assign(threshold=[80.0, 70.0, 80.0, 70.0])).risk
    assert (applied.threshold, applied.metric_thresholds) == (80.0, {"disk": 90.0, "memory": 70.0})
    stored = report_lake.read_table("server_risk")
    assert load_report_data(report_lake, settings).settings.risk.threshold == float(stored["threshold"].mode()[0])
