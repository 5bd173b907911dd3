"""One-screen summaries printed at the end of ``capfc forecast`` and ``capfc risk``."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from capacity_forecaster.cli.common import (
    kv_table,
    out,
)
from capacity_forecaster.forecast.backtest import FIT_FLOOR_DAYS, MIN_LEAD_DAYS


def print_forecast_summary(summary: dict[str, Any]) -> None:
    """One screen: the stage's summary line, models chosen, backtest error and coverage, failures."""
    from capacity_forecaster.stages.forecast import summary_line

    out.print(summary_line(summary))
    out.print(kv_table("Models chosen", summary.get("chosen", {}), "model", "series"))
    mae, coverage = summary.get("backtest_mae", {}), summary.get("backtest_coverage", {})
    if mae:
        table = Table(title="Backtest of the chosen models (mean over series and windows)", title_justify="left")
        for column in ("metric", "MAE (pp)", "interval coverage"):
            table.add_column(column, justify="right" if column != "metric" else "left")
        for metric in mae:
            table.add_row(metric, f"{mae[metric]:.2f}", f"{coverage.get(metric, float('nan')):.0%}")
        out.print(table)
    else:
        out.print(f"backtests: none scored: no series has the history a backtest window needs ({FIT_FLOOR_DAYS} "
                  f"days to fit + a {MIN_LEAD_DAYS}-day lead; docs/forecast.md), or forecast.backtest_windows is 0; "
                  "so no model was chosen on accuracy")
    extrapolated = summary.get("extrapolated_series", 0)
    if extrapolated:
        out.print(f"extrapolation: {extrapolated:,} of {summary.get('series', 0):,} series have a horizon beyond "
                  "the lead their history let the backtests validate; those steps are marked is_extrapolation in "
                  "forecasts and their intervals are widened (docs/forecast.md)")
    for reason, count in summary.get("failure_reasons", {}).items():
        out.print(f"failed x{count:,}: {reason}")


def etl_line(stage: Any) -> str:
    """The ETL stage's line: rows in = out + quarantined - created, with every created day counted (imputed,
    and left empty in gaps too long to fill or at a series' thin, anomalous edge; docs/etl.md, "Nothing lost")."""
    counts = stage.counts
    imputed = int(counts.get("rows_imputed_created", 0))
    empty = int(counts.get("rows_unfilled_created", 0))
    created = int(counts.get("rows_created", imputed + empty))
    glitches = int(counts.get("rows_glitches", 0))
    replaced = (f"{glitches:,} stuck-sensor {'value' if glitches == 1 else 'values'} replaced (value_raw keeps "
                f"{'it' if glitches == 1 else 'them'}); " if glitches else "")
    unlisted = int(counts.get("servers_without_inventory", 0))
    replaced += (f"{unlisted:,} server(s) without an inventory row kept (size and cost unknown); " if unlisted else "")
    lost = int(counts.get("series_all_quarantined", 0))
    replaced += (f"{lost:,} series quarantined whole (every day; see the warning); " if lost else "")
    at_ingest = int(counts.get("series_lost_at_ingest", 0))
    replaced += (f"{at_ingest:,} series quarantined whole at ingest (listed as no_data in risk); " if at_ingest
                 else "")
    valueless = int(counts.get("series_without_values", 0))
    replaced += (f"{valueless:,} series without any value (see the warning); " if valueless else "")
    anomalies = int(counts.get("rows_anomalies", 0))
    ahead = int(counts.get("servers_dated_after_today", 0))
    replaced += (f"{ahead:,} server(s) with data dated after today (check their clocks; see the warning); "
                 if ahead else "")
    return (f"etl: {stage.rows_in:,} rows in, {stage.rows_out:,} out, {stage.rows_quarantined:,} quarantined, "
            f"{created:,} days created ({imputed:,} filled by imputation ({counts.get('imputation')}), {empty:,} "
            f"left empty in gaps too long to fill or at a series' thin edge): in = out + quarantined - created; "
            f"{replaced}"
            f"{anomalies:,} {'anomaly' if anomalies == 1 else 'anomalies'} flagged (run {stage.run_id})")


def stage_line(stage: Any) -> str:
    """One line per stage for ``capfc run`` (the forecast stage has its own ``summary_line``)."""
    if stage.stage == "etl":
        return etl_line(stage)
    if stage.stage == "generate":
        # capfc run generates only into a lake without raw metrics: say so, -q or not (a mistyped --lake too).
        return (f"generate: the lake had no raw metrics, so a synthetic demonstration fleet was written "
                f"({stage.rows_out:,} raw rows; capfc ingest brings your own exports) (run {stage.run_id})")
    if stage.stage == "ingest":
        return ingest_line(stage)
    if stage.stage == "report":
        return f"report: {stage.rows_out:,} {'file' if stage.rows_out == 1 else 'files'} written (run {stage.run_id})"
    if stage.stage == "risk" and (stage.counts or {}).get("summary"):
        summary = stage.counts["summary"]
        return f"{risk_headline(summary)}; {savings_line(summary)} (run {stage.run_id})"
    return (f"{stage.stage}: {stage.rows_out:,} rows out, {stage.rows_quarantined:,} quarantined "
            f"(run {stage.run_id})")


def ingest_line(stage: Any) -> str:
    """What an ingest read, used, quarantined and wrote (``capfc ingest`` and ``capfc run`` alike)."""
    counts = stage.counts or {}
    copies, excluded = counts.get("file_copies", 0), counts.get("rows_excluded", 0)
    files = f"{counts.get('files', 0)} file(s)" + (f" ({copies} a copy of another, read once)" if copies else "")
    mapped = f"{excluded:,} of them excluded by the mapping; " if excluded else ""
    return (f"ingested {files}: {stage.rows_in:,} rows read, {counts.get('rows_used', 0):,} used, "
            f"{stage.rows_quarantined:,} quarantined ({mapped}{getattr(stage, 'quarantine_records', 0):,} quarantine "
            f"records: a wide row can give one per metric); {stage.rows_out:,} daily values written, "
            f"{counts.get('days_completed', 0):,} day(s) completed from earlier runs "
            f"({counts.get('partial_days_staged', 0):,} partial day(s) staged) (run {stage.run_id})")


def risk_headline(summary: dict[str, Any]) -> str:
    """The risk summary's first line: servers, already breaching (and the rule), servers at risk, then series
    (server x metric) by level, most urgent first."""
    return (f"risk ({summary.get('scenario')}): {summary.get('servers', 0)} servers; already breaching "
            f"{summary.get('servers_already_breaching', 0)} ({summary.get('current_rule', '?')}); "
            f"{summary.get('servers_at_risk', 0)} at risk; series by level"
            + (" (stale ones aside)" if summary.get("servers_stale") else "") + ": "
            + ", ".join(f"{k} {v}" for k, v in summary.get("series_by_level", {}).items())
            + (f"; {summary['servers_stale']} stale (no data for over {summary.get('stale_after_days', '?')} days "
               "before the latest day of the servers monitored with them, or only a day or two since: check their "
               "monitoring)"
               if summary.get("servers_stale") else ""))


def print_risk_summary(summary: dict[str, Any], scenario: Any = None) -> None:
    """One screen: servers already breaching, risk levels, at-risk servers with dates, clusters, actions, savings;
    with a what-if (``scenarios.ScenarioOutcome``), base -> scenario at-risk servers, earliest breach and savings."""
    out.print(risk_headline(summary))
    from capacity_forecaster.risk.levels import actions_text, likely_first, percent, stale_words

    at_risk = summary.get("at_risk") or []
    if at_risk:
        stale_rows = any(row.get("status") == "stale" for row in at_risk)
        title = ("At-risk servers (already breaching first, then most urgent"
                 + ("; stale ones last, levels as of their last data, not counted at risk)" if stale_rows else ")"))
        table = Table(title=title, title_justify="left")
        # A seasonal peak is named only for series whose forecast peaks at a recurring time: no empty column.
        peaks = any(row.get("seasonal_peak") for row in at_risk)
        # The probability is the forecast's (a series breaching now can have 74 %: its forecast may ease).
        for column in ("server", "metric", "level", "breach", "days", "forecast probability",
                       *(("seasonal peak",) if peaks else ())):
            table.add_column(column)
        for row in at_risk:
            now = row.get("status") == "already_breaching"
            stale = row.get("status") == "stale"
            over = int(row.get("days_over_recent") or 0)
            first = likely_first(row)  # (the earlier of the two, as the packs say it)
            breach = (f"now ({over} recent {'day' if over == 1 else 'days'} over)" if now else
                      stale_words(row) if stale else
                      f"likely by {row['likely_breach_ds']}" if first else row["breach_ds"] or "-")
            days = ("0" if now else "-" if stale or first or row["days_to_breach"] is None
                    else str(row["days_to_breach"]))
            prob = percent(row["breach_probability"])
            table.add_row(row["server_id"], row["metric"], row["risk_level"], breach, days, prob,
                          *((str(row.get("seasonal_peak") or ""),) if peaks else ()))
        out.print(table)
    from capacity_forecaster.risk.stage import calibration_lines, clusters_text

    out.print("workload clusters: " + clusters_text(summary.get("clusters", {})), markup=False, highlight=False)
    out.print("recommended actions (servers): " + actions_text(summary.get("actions", {})))
    out.print(savings_line(summary))
    for line in calibration_lines(summary):
        out.print(line)
    if scenario is not None:
        from capacity_forecaster.risk.scenarios import comparison_lines

        for line in comparison_lines(summary, scenario.summary, scenario.name, scenario.label):
            out.print(line, markup=False, highlight=False)


def savings_line(summary: dict[str, Any]) -> str:
    """The risk summary's savings line, as the reports say it: ``not priced`` (never $0) when no server has a
    monthly cost, and the net share computed once from the money (the summary's ``net_savings_pct`` is
    rounded to 2 decimals, which rounds 30.2516 % to 30.25 % and then to 30.2 %)."""
    servers = int(summary.get("servers", 0))
    unpriced = int(summary.get("servers_without_cost", 0))
    if servers and unpriced >= servers:
        return (f"savings: not priced (no monthly cost in the inventory for any of the {servers:,} servers; "
                "actions are still recommended)")
    net, cost = float(summary.get("net_monthly_savings", 0.0)), float(summary.get("fleet_monthly_cost", 0.0))
    share = f" ({100 * net / cost:.1f} % of ${cost:,.0f})" if cost > 0 else ""
    # One money format with the packs ("-$493", never "$-493").
    from capacity_forecaster.risk.levels import money

    line = (f"savings: {money(net)}/month net{share}, gross {money(summary.get('gross_monthly_savings', 0))}, "
            f"upsizing {money(summary.get('upsize_monthly_cost', 0))}")
    if unpriced:
        verb = "has" if unpriced == 1 else "have"
        line += (f"; {unpriced:,} of {servers:,} servers {verb} no monthly cost in the inventory (not priced; "
                 "actions are still recommended)")
    return line
